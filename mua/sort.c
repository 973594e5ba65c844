/* sort: sort keys and orders over message-number arrays (see sort.h). */
#include "sort.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* ---- subjects ------------------------------------------------------------ */

static inline bool is_space(unsigned char c)
{
    return c <= ' ' && (c == ' ' || c == '\t' || c == '\r' || c == '\n');
}

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline unsigned char fold(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* ASCII case-insensitive equality of s[0..n) with the lower-case word w. */
static bool word_eq(const char *s, size_t n, const char *w)
{
    if (strlen(w) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (fold((unsigned char)s[i]) != (unsigned char)w[i])
            return false;
    return true;
}

/* If p starts with a prefix word, an optional "[digits]" and ':', return the
 * position after the colon and set *reply; else NULL. */
static const char *match_prefix(const char *p, bool *reply)
{
    static const char *const replies[] = {"re", "aw", "sv", "antw"};
    static const char *const forwards[] = {"fwd", "fw"};
    size_t w = 0;
    const char *q;

    while (w < 5 && is_alpha((unsigned char)p[w]))
        w++;
    if (w == 0 || w > 4)
        return NULL;
    q = p + w;
    if (*q == '[') {
        const char *d = ++q;
        while (*q >= '0' && *q <= '9')
            q++;
        if (q == d || *q != ']')
            return NULL;
        q++;
    }
    if (*q != ':')
        return NULL;
    for (size_t i = 0; i < ARRAY_LEN(replies); i++)
        if (word_eq(p, w, replies[i])) {
            *reply = true;
            return q + 1;
        }
    for (size_t i = 0; i < ARRAY_LEN(forwards); i++)
        if (word_eq(p, w, forwards[i])) {
            *reply = false;
            return q + 1;
        }
    return NULL;
}

const char *sort_subject_base(const char *s, bool *is_reply)
{
    const char *p = s ? s : "";
    bool reply = false;

    for (;;) {
        const char *q;
        bool r;

        while (is_space((unsigned char)*p))
            p++;
        if (*p == '[') {
            const char *end = strchr(p + 1, ']');
            if (end == NULL)
                break;
            q = end + 1;
            while (is_space((unsigned char)*q))
                q++;
            if (*q == '\0')
                break;          /* the tag is the whole subject: keep it */
            p = q;
            continue;
        }
        q = match_prefix(p, &r);
        if (q == NULL)
            break;
        reply = reply || r;
        p = q;
    }
    if (is_reply)
        *is_reply = reply;
    return p;
}

/* Next byte of the normalized form of *pp, or -1 at its end. */
static int norm_next(const char **pp)
{
    const char *p = *pp;

    if (is_space((unsigned char)*p)) {
        while (is_space((unsigned char)*p))
            p++;
        *pp = p;
        return *p ? ' ' : -1;
    }
    if (*p == '\0')
        return -1;
    *pp = p + 1;
    return fold((unsigned char)*p);
}

static const char *skip_space(const char *s)
{
    if (s == NULL)
        return "";
    while (is_space((unsigned char)*s))
        s++;
    return s;
}

int sort_subject_cmp(const char *a, const char *b)
{
    const char *x = skip_space(a), *y = skip_space(b);

    for (;;) {
        unsigned char cx = (unsigned char)*x, cy = (unsigned char)*y;

        if (is_space(cx) || is_space(cy)) {
            int nx = norm_next(&x), ny = norm_next(&y);
            if (nx != ny)
                return nx < ny ? -1 : 1;
            if (nx < 0)
                return 0;
            continue;
        }
        /* the common case: two ordinary bytes (or the end) */
        cx = fold(cx);
        cy = fold(cy);
        if (cx != cy)
            return cx < cy ? -1 : 1;
        if (cx == '\0')
            return 0;
        x++;
        y++;
    }
}

/* A finalizer that spreads every input bit over the output (MurmurHash3's
 * fmix64 constants). */
static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return h;
}

uint64_t sort_subject_hash(const char *base)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    int c;

    base = skip_space(base);
    while ((c = norm_next(&base)) >= 0) {
        h ^= (uint64_t)c;
        h *= UINT64_C(0x100000001b3);
    }
    return mix64(h);
}

/* ---- names --------------------------------------------------------------- */

static const struct {
    const char *name;
    enum sort_key key;
} key_names[] = {
    /* the first name of each key is its canonical one */
    {"date", SORT_DATE},
    {"date-sent", SORT_DATE},
    {"date-received", SORT_RECEIVED},
    {"received", SORT_RECEIVED},
    {"from", SORT_FROM},
    {"subject", SORT_SUBJECT},
    {"size", SORT_SIZE},
    {"threads", SORT_THREADS},
    {"unsorted", SORT_UNSORTED},
    {"mailbox-order", SORT_UNSORTED},
};

const char *sort_key_name(enum sort_key key)
{
    for (size_t i = 0; i < ARRAY_LEN(key_names); i++)
        if (key_names[i].key == key)
            return key_names[i].name;
    return NULL;
}

/* ASCII case-insensitive: does s start with the lower-case prefix? */
static bool has_prefix(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++)
        if (fold((unsigned char)*s) != (unsigned char)*prefix)
            return false;
    return true;
}

static int bad_name(const char *s, struct err *e)
{
    size_t len = strlen(s);
    bool printable = len <= 40;

    for (size_t i = 0; printable && i < len; i++)
        printable = s[i] >= 0x20 && s[i] < 0x7f;
    if (printable)
        return err_set(e, ERR_INVAL, "unknown sort order \"%s\" (expected "
                       "[reverse-][last-]date, date-received, from, subject, "
                       "size, threads or unsorted)", s);
    return err_set(e, ERR_INVAL, "unknown sort order (expected "
                   "[reverse-][last-]date, date-received, from, subject, "
                   "size, threads or unsorted)");
}

int sort_order_parse(const char *s, struct sort_order *out, struct err *e)
{
    struct sort_order o = {SORT_UNSORTED, false, false};
    const char *p;

    if (s == NULL)
        return err_set(e, ERR_INVAL, "missing sort order");
    p = s;
    if (has_prefix(p, "reverse-")) {
        o.reverse = true;
        p += strlen("reverse-");
    }
    if (has_prefix(p, "last-")) {
        o.last = true;
        p += strlen("last-");
    }
    for (size_t i = 0; i < ARRAY_LEN(key_names); i++) {
        const char *n = key_names[i].name;
        if (has_prefix(p, n) && p[strlen(n)] == '\0') {
            o.key = key_names[i].key;
            *out = o;
            return 0;
        }
    }
    return bad_name(s, e);
}

int sort_order_format(const struct sort_order *o, char *out, size_t size,
                      struct err *e)
{
    const char *name = sort_key_name(o->key);
    size_t need;

    if (size > 0)
        out[0] = '\0';
    if (name == NULL)
        return err_set(e, ERR_INVAL, "sort key %d out of range", (int)o->key);
    need = (o->reverse ? strlen("reverse-") : 0) +
           (o->last ? strlen("last-") : 0) + strlen(name) + 1;
    if (need > size)
        return err_set(e, ERR_LIMIT, "sort order name needs %zu bytes", need);
    out[0] = '\0';
    if (o->reverse)
        strcat(out, "reverse-");
    if (o->last)
        strcat(out, "last-");
    strcat(out, name);
    return 0;
}

/* ---- comparison ---------------------------------------------------------- */

struct sort_cmp {
    struct sort_spec spec;
    struct sort_columns cols;
    const char **subj;      /* subject bases, when a subject key is used */
};

static int cmp_u64(uint64_t a, uint64_t b)
{
    return (a > b) - (a < b);
}

static int cmp_i64(int64_t a, int64_t b)
{
    return (a > b) - (a < b);
}

static int cmp_fold(const char *a, const char *b)
{
    const unsigned char *x = (const unsigned char *)(a ? a : "");
    const unsigned char *y = (const unsigned char *)(b ? b : "");

    for (;; x++, y++) {
        unsigned char cx = fold(*x), cy = fold(*y);
        if (cx != cy)
            return cx < cy ? -1 : 1;
        if (cx == '\0')
            return 0;
    }
}

static int key_cmp(const struct sort_cmp *c, enum sort_key key, uint32_t a,
                   uint32_t b)
{
    const struct sort_columns *k = &c->cols;

    switch (key) {
    case SORT_UNSORTED:
        return cmp_u64(a, b);
    case SORT_DATE:
        return k->date ? cmp_i64(k->date[a], k->date[b]) : 0;
    case SORT_RECEIVED:
        return k->received ? cmp_i64(k->received[a], k->received[b]) : 0;
    case SORT_SIZE:
        return k->size ? cmp_u64(k->size[a], k->size[b]) : 0;
    case SORT_FROM:
        return k->from ? cmp_fold(k->from[a], k->from[b]) : 0;
    case SORT_SUBJECT:
        return c->subj ? sort_subject_cmp(c->subj[a], c->subj[b]) : 0;
    case SORT_THREADS:
        return 0;
    }
    return 0;
}

static int cmp_msgs(const struct sort_cmp *c, uint32_t a, uint32_t b)
{
    const struct sort_spec *s = &c->spec;
    int r = key_cmp(c, s->primary.key, a, b);

    if (s->primary.reverse)
        r = -r;
    if (r == 0 && s->aux.key != s->primary.key) {
        r = key_cmp(c, s->aux.key, a, b);
        if (s->aux.reverse)
            r = -r;
    }
    if (r == 0)
        r = cmp_u64(a, b);
    return r;
}

int sort_cmp_msgs(uint32_t a, uint32_t b, void *cmp)
{
    return cmp_msgs(cmp, a, b);
}

static bool uses_key(const struct sort_spec *s, enum sort_key key)
{
    return s->primary.key == key || s->aux.key == key;
}

/* Fill c; subject bases only for the numbers in idx (all when idx NULL). */
static void cmp_init(struct sort_cmp *c, const struct sort_spec *spec,
                     const struct sort_columns *cols, const uint32_t *idx,
                     size_t n)
{
    c->spec = *spec;
    c->cols = *cols;
    c->subj = NULL;
    if (uses_key(spec, SORT_SUBJECT) && cols->subject && cols->n > 0) {
        c->subj = XNEWARRAY(const char *, cols->n);
        if (idx == NULL) {
            for (size_t i = 0; i < cols->n; i++)
                c->subj[i] = sort_subject_base(cols->subject[i], NULL);
        } else {
            for (size_t i = 0; i < n; i++)
                c->subj[idx[i]] = sort_subject_base(cols->subject[idx[i]], NULL);
        }
    }
}

struct sort_cmp *sort_cmp_new(const struct sort_spec *spec,
                              const struct sort_columns *cols)
{
    struct sort_cmp *c = XNEW(struct sort_cmp);

    cmp_init(c, spec, cols, NULL, 0);
    return c;
}

void sort_cmp_free(struct sort_cmp *c)
{
    if (c == NULL)
        return;
    free(c->subj);
    free(c);
}

/* ---- merge sort ---------------------------------------------------------- */

#define RUN 16

/*
 * Bottom-up merge sort: insertion-sorted runs of RUN, then merges that
 * alternate between v and tmp.  Stable because a merge takes from the left
 * run on ties.  SORT_BODY is shared by the generic sort and the one over
 * key records with the comparison inlined.
 */
#define SORT_BODY(TYPE, CMP)                                                  \
    do {                                                                      \
        TYPE *src = v, *dst = tmp;                                            \
        for (size_t lo = 0; lo < n; lo += RUN) {                              \
            size_t hi = lo + RUN < n ? lo + RUN : n;                          \
            for (size_t i = lo + 1; i < hi; i++) {                            \
                TYPE x = v[i];                                                \
                size_t j = i;                                                 \
                while (j > lo && CMP(v[j - 1], x) > 0) {                      \
                    v[j] = v[j - 1];                                          \
                    j--;                                                      \
                }                                                             \
                v[j] = x;                                                     \
            }                                                                 \
        }                                                                     \
        for (size_t w = RUN; w < n; w *= 2) {                                 \
            for (size_t lo = 0; lo < n; lo += 2 * w) {                        \
                size_t mid = lo + w < n ? lo + w : n;                         \
                size_t hi = lo + 2 * w < n ? lo + 2 * w : n;                  \
                size_t i = lo, j = mid, k = lo;                               \
                if (mid == hi || CMP(src[mid - 1], src[mid]) <= 0) {          \
                    memcpy(dst + lo, src + lo, (hi - lo) * sizeof *src);      \
                    continue;                                                 \
                }                                                             \
                while (i < mid && j < hi)                                     \
                    dst[k++] = CMP(src[i], src[j]) <= 0 ? src[i++] : src[j++]; \
                while (i < mid)                                               \
                    dst[k++] = src[i++];                                      \
                while (j < hi)                                                \
                    dst[k++] = src[j++];                                      \
            }                                                                 \
            TYPE *t_ = src;                                                   \
            src = dst;                                                        \
            dst = t_;                                                         \
        }                                                                     \
        if (src != v)                                                         \
            memcpy(v, src, n * sizeof *v);                                    \
    } while (0)

void sort_u32(uint32_t *v, size_t n, int (*cmp)(uint32_t, uint32_t, void *),
              void *arg, uint32_t *tmp)
{
    uint32_t *own = NULL;

    if (n < 2)
        return;
    if (tmp == NULL)
        tmp = own = XNEWARRAY(uint32_t, n);
#define GENERIC_CMP(a, b) cmp((a), (b), arg)
    SORT_BODY(uint32_t, GENERIC_CMP);
#undef GENERIC_CMP
    free(own);
}

/*
 * sort_indexes sorts records that carry the primary key as an unsigned
 * number whose order is the key's order (reverse included), so that
 * comparisons touch no other memory.  A string key is taken 8 normalized
 * bytes at a time (multikey sorting): the records are sorted by their first
 * chunk, then each run of equal chunks gets the next chunk and is sorted
 * again, until the strings end.  Each string is read about once per chunk
 * instead of once per comparison.  Records whose keys are equal are then
 * ordered by the aux key and by message number.
 */
struct rec {
    uint64_t k;
    uint32_t msg;
    uint32_t off;           /* string keys: bytes of the string consumed */
};

static bool string_key(enum sort_key key)
{
    return key == SORT_FROM || key == SORT_SUBJECT;
}

/* The string behind a string key (a subject's base), never NULL. */
static const char *key_string(const struct sort_cmp *c, enum sort_key key,
                              uint32_t m)
{
    const char *s = NULL;

    if (key == SORT_FROM && c->cols.from)
        s = c->cols.from[m];
    else if (key == SORT_SUBJECT && c->subj)
        s = c->subj[m];
    return s ? s : "";
}

/* The next chunk of up to 8 normalized bytes from s + *off, big-endian and
 * zero-padded (a string that ends sorts first, as in the full comparison);
 * advances *off.  Subjects collapse whitespace (the base has none in
 * front); from strings only fold case. */
static uint64_t next_chunk(const char *s, uint32_t *off, bool subject)
{
    const char *p = s + *off;
    uint64_t k = 0;
    int i = 0;

    for (; i < 8; i++) {
        int ch;
        if (subject) {
            ch = norm_next(&p);
        } else {
            ch = *p ? fold((unsigned char)*p) : -1;
            if (ch >= 0)
                p++;
        }
        if (ch < 0)
            break;
        k = (k << 8) | (uint64_t)ch;
    }
    *off = (uint32_t)(p - s);
    return i == 0 ? 0 : k << (8 * (8 - i));
}

static uint64_t rec_key(const struct sort_cmp *c, const struct sort_order *o,
                        struct rec *r)
{
    const struct sort_columns *k = &c->cols;
    uint32_t m = r->msg;
    uint64_t v = 0;

    switch (o->key) {
    case SORT_UNSORTED:
        v = m;
        break;
    case SORT_DATE:
        v = k->date ? (uint64_t)k->date[m] ^ (UINT64_C(1) << 63) : 0;
        break;
    case SORT_RECEIVED:
        v = k->received ? (uint64_t)k->received[m] ^ (UINT64_C(1) << 63) : 0;
        break;
    case SORT_SIZE:
        v = k->size ? k->size[m] : 0;
        break;
    case SORT_FROM:
    case SORT_SUBJECT:
        v = next_chunk(key_string(c, o->key, m), &r->off,
                       o->key == SORT_SUBJECT);
        break;
    case SORT_THREADS:
        break;
    }
    return o->reverse ? ~v : v;
}

/* Order of records with equal primary keys. */
static int tie_cmp(const struct sort_cmp *c, const struct rec *a,
                   const struct rec *b)
{
    const struct sort_spec *s = &c->spec;

    if (s->aux.key != s->primary.key) {
        int r = key_cmp(c, s->aux.key, a->msg, b->msg);
        if (r)
            return s->aux.reverse ? -r : r;
    }
    return cmp_u64(a->msg, b->msg);
}

static int chunk_cmp(const struct rec *a, const struct rec *b)
{
    return (a->k > b->k) - (a->k < b->k);
}

static int rec_cmp(const struct sort_cmp *c, const struct rec *a,
                   const struct rec *b)
{
    int r = chunk_cmp(a, b);

    return r ? r : tie_cmp(c, a, b);
}

static void sort_recs(struct rec *v, size_t n, const struct sort_cmp *c,
                      struct rec *tmp)
{
#define REC_CMP(a, b) rec_cmp(c, &(a), &(b))
    SORT_BODY(struct rec, REC_CMP);
#undef REC_CMP
}

static void sort_chunks(struct rec *v, size_t n, struct rec *tmp)
{
#define CHUNK_CMP(a, b) chunk_cmp(&(a), &(b))
    SORT_BODY(struct rec, CHUNK_CMP);
#undef CHUNK_CMP
}

struct range {
    size_t lo, hi;
};

/* Multikey sort of recs[0..n) by a string primary key (see above). */
static void sort_strings(struct rec *recs, size_t n, const struct sort_cmp *c,
                         struct rec *tmp)
{
    const struct sort_order *o = &c->spec.primary;
    struct range *stack = NULL;
    size_t depth = 0, cap = 0;

    sort_chunks(recs, n, tmp);
    stack = XNEWARRAY(struct range, cap = 16);
    stack[depth++] = (struct range){0, n};
    while (depth > 0) {
        struct range r = stack[--depth];

        for (size_t a = r.lo, b; a < r.hi; a = b) {
            uint64_t raw = o->reverse ? ~recs[a].k : recs[a].k;

            for (b = a + 1; b < r.hi && recs[b].k == recs[a].k; b++)
                ;
            if (b - a < 2)
                continue;
            if ((raw & 0xff) == 0) {
                /* the strings ended inside this chunk: equal keys */
                sort_recs(recs + a, b - a, c, tmp);
                continue;
            }
            for (size_t i = a; i < b; i++)
                recs[i].k = rec_key(c, o, &recs[i]);
            sort_chunks(recs + a, b - a, tmp);
            if (depth == cap)
                stack = xreallocarray(stack, cap *= 2, sizeof *stack);
            stack[depth++] = (struct range){a, b};
        }
    }
    free(stack);
}

void sort_indexes(uint32_t *idx, size_t n, const struct sort_spec *spec,
                  const struct sort_columns *cols)
{
    struct sort_spec eff = *spec;
    struct sort_cmp c;
    struct rec *recs;

    if (n < 2)
        return;
    for (size_t i = 0; i < n; i++)
        if (idx[i] >= cols->n)
            die("sort_indexes: message %u out of range (%zu)", idx[i], cols->n);
    /* a flat sort by "threads" is a sort by the aux key */
    if (eff.primary.key == SORT_THREADS) {
        eff.primary = eff.aux;
        eff.aux.key = SORT_THREADS;
    }
    cmp_init(&c, &eff, cols, idx, n);
    recs = XNEWARRAY(struct rec, 2 * n);
    for (size_t i = 0; i < n; i++) {
        recs[i].msg = idx[i];
        recs[i].off = 0;
        recs[i].k = rec_key(&c, &eff.primary, &recs[i]);
    }
    if (string_key(eff.primary.key))
        sort_strings(recs, n, &c, recs + n);
    else
        sort_recs(recs, n, &c, recs + n);
    for (size_t i = 0; i < n; i++)
        idx[i] = recs[i].msg;
    free(recs);
    free(c.subj);
}
