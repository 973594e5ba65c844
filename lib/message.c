#include "message.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libetpan/libetpan.h>

#include "charset.h"
#include "codec.h"
#include "rfc2047.h"

#define MSG_MAX_WARNINGS 64
#define MSG_BOUNDARY_MAX 200
#define MSG_DATE_TEXT_MAX 256

/* ---- warnings ---------------------------------------------------------- */

static void msg_warn(struct message *m, const char *fmt, ...) CORREO_PRINTF(2, 3);

static void msg_warn(struct message *m, const char *fmt, ...)
{
    va_list ap;
    char *w;

    va_start(ap, fmt);
    w = xvasprintf(fmt, ap);
    va_end(ap);
    if (!charset_valid_utf8(w, strlen(w))) {
        /* a quoted header value with 8-bit bytes, or cut inside a character */
        char *u = charset_fix_utf8_str(w, strlen(w));
        free(w);
        w = u;
    }
    for (size_t i = 0; i < m->n_warnings; i++) {
        if (strcmp(m->warnings[i], w) == 0) {
            free(w);
            return;
        }
    }
    if (m->n_warnings >= MSG_MAX_WARNINGS) {
        free(w);
        return;
    }
    m->warnings = xreallocarray(m->warnings, m->n_warnings + 1, sizeof *m->warnings);
    m->warnings[m->n_warnings++] = w;
}

/* ---- small string helpers ---------------------------------------------- */

static bool msg_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void msg_trim(const char **s, size_t *n)
{
    while (*n > 0 && msg_ws(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && msg_ws((*s)[*n - 1]))
        (*n)--;
}

static char *msg_lower_dup(const char *s, size_t n)
{
    char *r = xmemdup0(s, n);
    for (size_t i = 0; i < n; i++)
        if (r[i] >= 'A' && r[i] <= 'Z')
            r[i] = (char)(r[i] - 'A' + 'a');
    return r;
}

/* Header text to UTF-8 (RFC 2047 + 8-bit fallback), trimmed; NULL if empty. */
static char *msg_decode_text(const char *s, size_t n)
{
    char *r;

    msg_trim(&s, &n);
    r = rfc2047_decode_str(s, n, NULL);
    if (!*r) {
        free(r);
        return NULL;
    }
    return r;
}

/* ---- ids ("<a@b>") ------------------------------------------------------ */

/* Next "<...>" at or after *i; returns a new string without <> or NULL. */
static char *msg_next_id(const char *s, size_t n, size_t *i)
{
    /* A loop, not recursion: "<><><>..." must not exhaust the stack. */
    while (*i < n) {
        const char *lt = memchr(s + *i, '<', n - *i);
        const char *gt;

        if (!lt)
            break;
        gt = memchr(lt, '>', (size_t)(s + n - lt));
        if (!gt) {
            *i = n;
            gt = s + n;
        } else {
            *i = (size_t)(gt - s) + 1;
        }
        char *id = xmalloc((size_t)(gt - lt));
        size_t k = 0;
        for (const char *p = lt + 1; p < gt; p++)
            if (!msg_ws(*p))
                id[k++] = *p;
        if (k == 0) {
            free(id);
            continue;
        }
        id[k] = '\0';
        if (charset_valid_utf8(id, k))
            return id;
        char *r = charset_fix_utf8_str(id, k);
        free(id);
        return r;
    }
    *i = n;
    return NULL;
}

/* First id; without angle brackets, the first whitespace-separated word. */
static char *msg_first_id(const char *s, size_t n)
{
    size_t i = 0, k = 0;
    char *id = msg_next_id(s, n, &i);

    if (id)
        return id;
    msg_trim(&s, &n);
    while (k < n && !msg_ws(s[k]))
        k++;
    return k ? charset_fix_utf8_str(s, k) : NULL;
}

/* ---- addresses ---------------------------------------------------------- */

/* Remove quotes and backslash escapes, keep everything else. */
static char *msg_unquote(const char *s, size_t n, size_t *outlen)
{
    char *r = xmalloc(n + 1);
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n)
            r[k++] = s[++i];
        else if (s[i] != '"')
            r[k++] = s[i];
    }
    r[k] = '\0';
    *outlen = k;
    return r;
}

static char *msg_phrase(const char *s, size_t n)
{
    size_t len;
    char *u, *r;

    msg_trim(&s, &n);
    if (n == 0)
        return NULL;
    u = msg_unquote(s, n, &len);
    r = msg_decode_text(u, len);
    free(u);
    return r;
}

/* addr-spec: drop whitespace, comments and a source route. */
static char *msg_addr_spec(const char *s, size_t n)
{
    struct buf b = BUF_INIT;
    int depth = 0;
    char *r;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (depth > 0) {
            depth += (c == '(') - (c == ')');
            continue;
        }
        if (c == '(')
            depth = 1;
        else if (c == ':' && b.len > 0 && b.data[0] == '@')
            buf_reset(&b);
        else if (!msg_ws(c) && c != '<' && c != '>' && buf_putc(&b, c) < 0)
            die("message: unbounded buffer refused an append");
    }
    r = charset_fix_utf8_str(buf_cstr(&b), b.len);
    buf_free(&b);
    return r;
}

/* Offset of the first top-level c (outside quotes/comments) or n. */
static size_t msg_find_top(const char *s, size_t n, char c)
{
    bool inq = false;
    int depth = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && (inq || depth)) {
            i++;
        } else if (inq) {
            inq = s[i] != '"';
        } else if (depth) {
            depth += (s[i] == '(') - (s[i] == ')');
        } else if (s[i] == c) {
            return i;
        } else {
            inq = s[i] == '"';
            depth = s[i] == '(';
        }
    }
    return n;
}

/* Content of the first comment, for "addr (Name)". */
static char *msg_comment_name(const char *s, size_t n)
{
    size_t lp = msg_find_top(s, n, '('), rp;

    if (lp >= n)
        return NULL;
    rp = lp + 1 + msg_find_top(s + lp + 1, n - lp - 1, ')');
    return msg_phrase(s + lp + 1, (rp < n ? rp : n) - lp - 1);
}

static void msg_addr_entry(const char *s, size_t n, struct msg_addr_list *list)
{
    struct msg_addr a;
    size_t lt;

    msg_trim(&s, &n);
    if (n == 0)
        return;
    lt = msg_find_top(s, n, '<');
    if (lt < n) {
        const char *gt = memchr(s + lt, '>', n - lt);
        size_t end = gt ? (size_t)(gt - s) : n;
        a.addr = msg_addr_spec(s + lt + 1, end - lt - 1);
        a.name = msg_phrase(s, lt);
    } else {
        a.addr = msg_addr_spec(s, n);
        a.name = msg_comment_name(s, n);
    }
    if (!*a.addr && !a.name) {
        free(a.addr);
        return;
    }
    list->v = xreallocarray(list->v, list->n + 1, sizeof *list->v);
    list->v[list->n++] = a;
}

struct msg_addr_scan {
    bool inq, inang;
    int depth;
};

/* Update the scanner for s[*i]; returns true at a top-level separator. */
static bool msg_addr_step(struct msg_addr_scan *sc, const char *s, size_t n, size_t *i)
{
    char c = s[*i];

    if (c == '\\' && (sc->inq || sc->depth) && *i + 1 < n) {
        (*i)++;
        return false;
    }
    if (sc->inq) {
        sc->inq = c != '"';
        return false;
    }
    if (sc->depth) {
        sc->depth += (c == '(') - (c == ')');
        return false;
    }
    sc->inq = c == '"';
    sc->depth = c == '(';
    if (c == '<')
        sc->inang = true;
    else if (c == '>')
        sc->inang = false;
    return !sc->inang && (c == ',' || c == ';' || c == ':');
}

static bool msg_has_nonspace(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!msg_ws(s[i]) && s[i] != ',' && s[i] != ';')
            return true;
    return false;
}

/* Returns true if a quoted string was left open at the end. */
static bool msg_scan_addrs(struct message *m, const char *s, size_t n,
                           struct msg_addr_list *list)
{
    struct msg_addr_scan sc = {false, false, 0};
    size_t st = 0;

    for (size_t i = 0; i < n; i++) {
        if (list->n >= m->limits.max_addresses) {
            list->truncated = msg_has_nonspace(s + st, n - st);
            return false;
        }
        if (!msg_addr_step(&sc, s, n, &i))
            continue;
        if (s[i] != ':')     /* "group:" names are dropped */
            msg_addr_entry(s + st, i - st, list);
        st = i + 1;
    }
    if (sc.inq)
        return true;
    if (list->n < m->limits.max_addresses && st < n)
        msg_addr_entry(s + st, n - st, list);
    return false;
}

static void msg_parse_addrs(struct message *m, const char *s, size_t n,
                            struct msg_addr_list *list)
{
    size_t n0 = list->n;

    if (msg_scan_addrs(m, s, n, list)) {
        /* unterminated quote: drop what it swallowed, rescan without quotes */
        char *copy = xmalloc(n + 1);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (s[i] != '"')
                copy[k++] = s[i];
        while (list->n > n0) {
            list->n--;
            free(list->v[list->n].name);
            free(list->v[list->n].addr);
        }
        msg_warn(m, "unterminated quoted string in address list");
        (void)msg_scan_addrs(m, copy, k, list);
        free(copy);
    }
    if (list->truncated)
        msg_warn(m, "address list truncated at %zu entries", m->limits.max_addresses);
}

/* ---- dates -------------------------------------------------------------- */

static bool msg_date_convert(const struct mailimf_date_time *dt, time_t *out)
{
    struct tm tm;
    int year = dt->dt_year, zone = dt->dt_zone;
    long off;

    if (year < 50)
        year += 2000;
    else if (year < 1000)
        year += 1900;
    if (dt->dt_month < 1 || dt->dt_month > 12 || dt->dt_day < 1 || dt->dt_day > 31 ||
        dt->dt_hour < 0 || dt->dt_hour > 23 || dt->dt_min < 0 || dt->dt_min > 59 ||
        dt->dt_sec < 0 || dt->dt_sec > 60 || year > 9999 || zone < -2400 || zone > 2400)
        return false;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = year - 1900;
    tm.tm_mon = dt->dt_month - 1;
    tm.tm_mday = dt->dt_day;
    tm.tm_hour = dt->dt_hour;
    tm.tm_min = dt->dt_min;
    tm.tm_sec = dt->dt_sec;
    off = (long)(zone / 100) * 3600 + (long)(zone % 100) * 60;
    *out = timegm(&tm) - off;
    return true;
}

static void msg_parse_date(struct message *m, struct msg_envelope *env, const char *s, size_t n)
{
    struct mailimf_date_time *dt = NULL;
    size_t idx = 0;

    msg_trim(&s, &n);
    env->date_text = charset_fix_utf8_str(s, n);
    if (n > MSG_DATE_TEXT_MAX)
        n = MSG_DATE_TEXT_MAX;
    if (mailimf_date_time_parse(s, n, &idx, &dt) == MAILIMF_NO_ERROR) {
        env->date_valid = msg_date_convert(dt, &env->date);
        mailimf_date_time_free(dt);
    }
    if (!env->date_valid) {
        env->date = 0;
        msg_warn(m, "unparsable Date header");
    }
}

/* ---- envelope field table ----------------------------------------------- */

typedef void (*msg_env_fn)(struct message *m, struct msg_envelope *env,
                           const char *v, size_t n);

static void msg_set_once(char **dst, char *val)
{
    if (*dst)
        free(val);
    else
        *dst = val;
}

#define MSG_ADDR_FN(field)                                                      \
    static void msg_env_##field(struct message *m, struct msg_envelope *env,   \
                                const char *v, size_t n)                       \
    {                                                                          \
        msg_parse_addrs(m, v, n, &env->field);                                 \
    }
MSG_ADDR_FN(from)
MSG_ADDR_FN(to)
MSG_ADDR_FN(cc)
MSG_ADDR_FN(bcc)
MSG_ADDR_FN(reply_to)
MSG_ADDR_FN(sender)

static void msg_env_subject(struct message *m, struct msg_envelope *env, const char *v, size_t n)
{
    (void)m;
    if (!env->subject) {
        env->subject = msg_decode_text(v, n);
        if (!env->subject)
            env->subject = xstrdup("");
    }
}

static void msg_env_date(struct message *m, struct msg_envelope *env, const char *v, size_t n)
{
    if (!env->date_text)
        msg_parse_date(m, env, v, n);
}

static void msg_env_message_id(struct message *m, struct msg_envelope *env, const char *v, size_t n)
{
    (void)m;
    msg_set_once(&env->message_id, msg_first_id(v, n));
}

static void msg_env_in_reply_to(struct message *m, struct msg_envelope *env, const char *v, size_t n)
{
    (void)m;
    size_t i = 0;
    char *id = msg_next_id(v, n, &i);
    if (id)
        msg_set_once(&env->in_reply_to, id);
}

static void msg_env_references(struct message *m, struct msg_envelope *env, const char *v, size_t n)
{
    size_t i = 0;
    char *id;

    if (env->references)
        return;
    while ((id = msg_next_id(v, n, &i)) != NULL) {
        if (env->n_references >= m->limits.max_references) {
            free(id);
            msg_warn(m, "References truncated at %zu ids", m->limits.max_references);
            break;
        }
        env->references = xreallocarray(env->references, env->n_references + 1,
                                        sizeof *env->references);
        env->references[env->n_references++] = id;
    }
}

static void msg_env_list_id(struct message *m, struct msg_envelope *env, const char *v, size_t n)
{
    (void)m;
    msg_set_once(&env->list_id, msg_first_id(v, n));
}

static void msg_env_list_post(struct message *m, struct msg_envelope *env, const char *v, size_t n)
{
    (void)m;
    msg_set_once(&env->list_post, msg_first_id(v, n));
}

struct msg_env_field {
    const char *name;
    msg_env_fn fn;
};

static const struct msg_env_field msg_env_fields[] = {
    {"from", msg_env_from},
    {"to", msg_env_to},
    {"cc", msg_env_cc},
    {"bcc", msg_env_bcc},
    {"reply-to", msg_env_reply_to},
    {"sender", msg_env_sender},
    {"subject", msg_env_subject},
    {"date", msg_env_date},
    {"message-id", msg_env_message_id},
    {"in-reply-to", msg_env_in_reply_to},
    {"references", msg_env_references},
    {"list-id", msg_env_list_id},
    {"list-post", msg_env_list_post},
};

/* ---- part field table --------------------------------------------------- */

typedef void (*msg_part_fn)(struct message *m, struct msg_part *p, const char *v, size_t n);

static void msg_part_ctype(struct message *m, struct msg_part *p, const char *v, size_t n)
{
    const char *slash;

    if (p->params.value)    /* first Content-Type wins */
        return;
    rfc2231_parse(v, n, &p->params);
    slash = strchr(p->params.value, '/');
    if (!slash || slash == p->params.value || !slash[1]) {
        msg_warn(m, "malformed Content-Type \"%.60s\"", p->params.value);
        return;
    }
    p->type = xstrndup(p->params.value, (size_t)(slash - p->params.value));
    p->subtype = xstrdup(slash + 1);
    if (rfc2231_get(&p->params, "charset"))
        p->charset = xstrdup(rfc2231_get(&p->params, "charset"));
}

struct msg_enc_name {
    const char *name;
    enum msg_encoding enc;
};

static const struct msg_enc_name msg_encodings[] = {
    {"7bit", MSG_ENC_7BIT}, {"8bit", MSG_ENC_8BIT}, {"binary", MSG_ENC_BINARY},
    {"base64", MSG_ENC_BASE64}, {"quoted-printable", MSG_ENC_QP},
};

static void msg_part_cte(struct message *m, struct msg_part *p, const char *v, size_t n)
{
    if (p->encoding_text)
        return;
    msg_trim(&v, &n);
    p->encoding_text = msg_lower_dup(v, n);
    p->encoding = MSG_ENC_UNKNOWN;
    for (size_t i = 0; i < ARRAY_LEN(msg_encodings); i++)
        if (strcmp(p->encoding_text, msg_encodings[i].name) == 0)
            p->encoding = msg_encodings[i].enc;
    if (p->encoding == MSG_ENC_UNKNOWN)
        msg_warn(m, "unknown Content-Transfer-Encoding \"%.40s\"", p->encoding_text);
}

static void msg_part_filename(struct msg_part *p, const struct rfc2231_params *prm,
                              const char *name)
{
    const char *f = rfc2231_get(prm, name);

    if (!f || p->filename)
        return;
    p->filename = msg_decode_text(f, strlen(f));
}

static void msg_part_cdisp(struct message *m, struct msg_part *p, const char *v, size_t n)
{
    struct rfc2231_params prm;

    (void)m;
    if (p->disposition_text)
        return;
    rfc2231_parse(v, n, &prm);
    p->disposition_text = xstrdup(prm.value);
    if (strcmp(prm.value, "inline") == 0)
        p->disposition = MSG_DISP_INLINE;
    else if (strcmp(prm.value, "attachment") == 0)
        p->disposition = MSG_DISP_ATTACHMENT;
    else
        p->disposition = MSG_DISP_OTHER;
    msg_part_filename(p, &prm, "filename");
    rfc2231_free(&prm);
}

static void msg_part_cdesc(struct message *m, struct msg_part *p, const char *v, size_t n)
{
    (void)m;
    if (!p->description)
        p->description = msg_decode_text(v, n);
}

static void msg_part_cid(struct message *m, struct msg_part *p, const char *v, size_t n)
{
    (void)m;
    msg_set_once(&p->content_id, msg_first_id(v, n));
}

struct msg_part_field {
    const char *name;
    msg_part_fn fn;
};

static const struct msg_part_field msg_part_fields[] = {
    {"content-type", msg_part_ctype},
    {"content-transfer-encoding", msg_part_cte},
    {"content-disposition", msg_part_cdisp},
    {"content-description", msg_part_cdesc},
    {"content-id", msg_part_cid},
};

/* ---- header block scanning ---------------------------------------------- */

struct msg_hdr_ctx {
    struct message *m;
    struct msg_envelope *env;   /* NULL: no envelope fields */
    struct msg_part *part;      /* NULL: no MIME fields */
};

/* Unfold a raw field value (drop CR/LF, keep the folding blanks). */
static char *msg_unfold(const char *s, size_t n, size_t *outlen)
{
    char *r = xmalloc(n + 1);
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        if (s[i] != '\r' && s[i] != '\n')
            r[k++] = s[i];
    r[k] = '\0';
    *outlen = k;
    return r;
}

static void msg_dispatch(struct msg_hdr_ctx *c, const char *name, size_t nlen,
                         const char *v, size_t vlen)
{
    size_t ulen;
    char *u;

    for (size_t i = 0; c->env && i < ARRAY_LEN(msg_env_fields); i++) {
        if (strlen(msg_env_fields[i].name) == nlen &&
            strncasecmp(msg_env_fields[i].name, name, nlen) == 0) {
            u = msg_unfold(v, vlen, &ulen);
            msg_env_fields[i].fn(c->m, c->env, u, ulen);
            free(u);
            return;
        }
    }
    for (size_t i = 0; c->part && i < ARRAY_LEN(msg_part_fields); i++) {
        if (strlen(msg_part_fields[i].name) == nlen &&
            strncasecmp(msg_part_fields[i].name, name, nlen) == 0) {
            u = msg_unfold(v, vlen, &ulen);
            msg_part_fields[i].fn(c->m, c->part, u, ulen);
            free(u);
            return;
        }
    }
}

/* One field starting at s[0..n) (including continuation lines). */
static void msg_field(struct msg_hdr_ctx *c, const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    size_t nlen;

    if (!colon) {
        msg_warn(c->m, "header line without a colon");
        return;
    }
    nlen = (size_t)(colon - s);
    while (nlen > 0 && msg_ws(s[nlen - 1]))
        nlen--;
    if (nlen == 0) {
        msg_warn(c->m, "header field without a name");
        return;
    }
    msg_dispatch(c, s, nlen, colon + 1, n - (size_t)(colon - s) - 1);
}

static size_t msg_line_end(const char *raw, size_t pos, size_t end)
{
    const char *nl = memchr(raw + pos, '\n', end - pos);
    return nl ? (size_t)(nl - raw) + 1 : end;
}

static bool msg_blank_line(const char *raw, size_t pos, size_t le)
{
    return le - pos <= 2 && (raw[pos] == '\n' || (raw[pos] == '\r' && (le - pos == 1 || raw[pos + 1] == '\n')));
}

/* Scan the header block raw[start..end); returns the body offset. */
static size_t msg_scan_headers(struct msg_hdr_ctx *c, size_t start, size_t end)
{
    const char *raw = c->m->raw;
    size_t cap = end - start > c->m->limits.max_header_bytes
                     ? start + c->m->limits.max_header_bytes : end;
    size_t pos = start, fstart = start;

    while (pos < cap) {
        size_t le = msg_line_end(raw, pos, cap);
        if (msg_blank_line(raw, pos, le)) {
            if (pos > fstart)
                msg_field(c, raw + fstart, pos - fstart);
            return le;
        }
        if (pos > fstart && raw[pos] != ' ' && raw[pos] != '\t') {
            msg_field(c, raw + fstart, pos - fstart);
            fstart = pos;
        }
        pos = le;
    }
    if (pos > fstart)
        msg_field(c, raw + fstart, pos - fstart);
    if (cap < end) {
        msg_warn(c->m, "header block larger than %zu bytes, rest ignored",
                 c->m->limits.max_header_bytes);
        size_t le = cap;
        while (le < end) {          /* skip to the real blank line */
            size_t nx = msg_line_end(raw, le, end);
            if (msg_blank_line(raw, le, nx))
                return nx;
            le = nx;
        }
    }
    return end;
}

/* ---- part tree ---------------------------------------------------------- */

static void msg_env_free(struct msg_envelope *env);

static struct msg_part *msg_parse_part(struct message *m, struct msg_part *parent,
                                       size_t start, size_t end, unsigned depth);

static void msg_add_child(struct msg_part *p, struct msg_part *c)
{
    p->children = xreallocarray(p->children, p->n_children + 1, sizeof *p->children);
    p->children[p->n_children++] = c;
}

static bool msg_is(const struct msg_part *p, const char *type, const char *subtype)
{
    return p->type && strcmp(p->type, type) == 0 &&
           (!subtype || strcmp(p->subtype, subtype) == 0);
}

/* If raw[ls..le) is a delimiter for boundary b: 1 = part, 2 = close. */
static int msg_delimiter(const char *raw, size_t ls, size_t le, const char *b, size_t blen)
{
    size_t i = ls + 2 + blen;
    int kind = 1;

    if (le - ls < 2 + blen || raw[ls] != '-' || raw[ls + 1] != '-' ||
        memcmp(raw + ls + 2, b, blen) != 0)
        return 0;
    if (i + 2 <= le && raw[i] == '-' && raw[i + 1] == '-') {
        kind = 2;
        i += 2;
    }
    for (; i < le; i++)
        if (!msg_ws(raw[i]))
            return 0;
    return kind;
}

/* End of the part before the delimiter line at ls: drop one line break. */
static size_t msg_part_end(const char *raw, size_t from, size_t ls)
{
    if (ls > from && raw[ls - 1] == '\n')
        ls--;
    if (ls > from && raw[ls - 1] == '\r')
        ls--;
    return ls;
}

static void msg_child(struct message *m, struct msg_part *p, size_t st, size_t en)
{
    struct msg_part *c;

    if (m->n_parts >= m->limits.max_parts) {
        msg_warn(m, "more than %zu MIME parts, rest ignored", m->limits.max_parts);
        return;
    }
    c = msg_parse_part(m, p, st, en, p->depth + 1);
    msg_add_child(p, c);
}

static void msg_split_multipart(struct message *m, struct msg_part *p, const char *b)
{
    size_t blen = strlen(b), pos = p->body_offset, end = p->body_offset + p->body_size;
    size_t pstart = 0;
    bool open = false, closed = false;

    while (pos < end && !closed) {
        size_t le = msg_line_end(m->raw, pos, end);
        int kind = msg_delimiter(m->raw, pos, le, b, blen);
        if (kind) {
            if (open)
                msg_child(m, p, pstart, msg_part_end(m->raw, pstart, pos));
            open = kind == 1;
            closed = kind == 2;
            pstart = le;
        }
        pos = le;
    }
    if (open) {
        msg_warn(m, "missing closing MIME boundary");
        msg_child(m, p, pstart, end);
    } else if (!closed) {
        msg_warn(m, "MIME boundary not found in multipart body");
    }
}

static void msg_parse_multipart(struct message *m, struct msg_part *p)
{
    const char *b = rfc2231_get(&p->params, "boundary");

    if (!b || !*b || strlen(b) > MSG_BOUNDARY_MAX) {
        msg_warn(m, "multipart without a usable boundary");
        return;
    }
    msg_split_multipart(m, p, b);
}

static void msg_parse_rfc822(struct message *m, struct msg_part *p)
{
    struct msg_part *c;

    if (p->encoding == MSG_ENC_BASE64 || p->encoding == MSG_ENC_QP) {
        msg_warn(m, "encoded message/rfc822 part not parsed");
        return;
    }
    if (m->n_parts >= m->limits.max_parts) {
        msg_warn(m, "more than %zu MIME parts, rest ignored", m->limits.max_parts);
        return;
    }
    p->envelope = XNEW(struct msg_envelope);
    c = msg_parse_part(m, p, p->body_offset, p->body_offset + p->body_size, p->depth + 1);
    msg_add_child(p, c);
}

static void msg_part_defaults(struct msg_part *p)
{
    bool digest = p->parent && msg_is(p->parent, "multipart", "digest");

    if (!p->type) {
        p->type = xstrdup(digest ? "message" : "text");
        p->subtype = xstrdup(digest ? "rfc822" : "plain");
    }
}

static void msg_register_part(struct message *m, struct msg_part *p)
{
    p->index = m->n_parts;
    m->parts = xreallocarray(m->parts, m->n_parts + 1, sizeof *m->parts);
    m->parts[m->n_parts++] = p;
}

static struct msg_part *msg_parse_part(struct message *m, struct msg_part *parent,
                                       size_t start, size_t end, unsigned depth)
{
    struct msg_part *p = XNEW(struct msg_part);
    struct msg_hdr_ctx c = {m, NULL, p};

    p->parent = parent;
    p->depth = depth;
    p->header_offset = start;
    msg_register_part(m, p);
    if (!parent)
        c.env = &m->env;
    else if (msg_is(parent, "message", NULL) && parent->envelope)
        c.env = parent->envelope;
    p->body_offset = msg_scan_headers(&c, start, end);
    p->body_size = end - p->body_offset;
    msg_part_defaults(p);
    if (!p->filename)
        msg_part_filename(p, &p->params, "name");
    if (msg_is(p, "multipart", NULL) || msg_is(p, "message", "rfc822")) {
        if (depth >= m->limits.max_depth)
            msg_warn(m, "MIME nesting deeper than %u, treated as a leaf", m->limits.max_depth);
        else if (msg_is(p, "multipart", NULL))
            msg_parse_multipart(m, p);
        else
            msg_parse_rfc822(m, p);
    }
    return p;
}

/* ---- entry points ------------------------------------------------------- */

void message_limits_default(struct msg_limits *l)
{
    l->max_depth = 20;
    l->max_parts = 1000;
    l->max_header_bytes = 1u << 20;
    l->max_addresses = 10000;
    l->max_references = 1000;
    l->max_decoded = 64u << 20;
}

static int msg_new(const char *raw, size_t len, const struct msg_limits *limits,
                   struct message **out, struct err *e)
{
    struct message *m;

    *out = NULL;
    if (!raw && len > 0)
        return err_set(e, ERR_INVAL, "message: NULL buffer");
    if (limits && (limits->max_parts == 0 || limits->max_header_bytes == 0))
        return err_set(e, ERR_LIMIT, "message: limits allow nothing to be parsed");
    m = XNEW(struct message);
    m->raw = raw ? raw : "";
    m->raw_len = len;
    if (limits)
        m->limits = *limits;
    else
        message_limits_default(&m->limits);
    *out = m;
    return 0;
}

int message_parse_headers(const char *raw, size_t len, const struct msg_limits *limits,
                          struct message **out, struct err *e)
{
    struct msg_hdr_ctx c;

    if (msg_new(raw, len, limits, out, e) < 0)
        return -1;
    c.m = *out;
    c.env = &(*out)->env;
    c.part = NULL;
    (*out)->body_offset = msg_scan_headers(&c, 0, len);
    return 0;
}

int message_parse(const char *raw, size_t len, const struct msg_limits *limits,
                  struct message **out, struct err *e)
{
    if (msg_new(raw, len, limits, out, e) < 0)
        return -1;
    (*out)->root = msg_parse_part(*out, NULL, 0, len, 0);
    (*out)->body_offset = (*out)->root->body_offset;
    return 0;
}

static void msg_addrs_free(struct msg_addr_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].addr);
    }
    free(l->v);
}

static void msg_env_free(struct msg_envelope *env)
{
    msg_addrs_free(&env->from);
    msg_addrs_free(&env->to);
    msg_addrs_free(&env->cc);
    msg_addrs_free(&env->bcc);
    msg_addrs_free(&env->reply_to);
    msg_addrs_free(&env->sender);
    free(env->subject);
    free(env->date_text);
    free(env->message_id);
    free(env->in_reply_to);
    for (size_t i = 0; i < env->n_references; i++)
        free(env->references[i]);
    free(env->references);
    free(env->list_id);
    free(env->list_post);
}

static void msg_part_free(struct msg_part *p)
{
    free(p->type);
    free(p->subtype);
    rfc2231_free(&p->params);
    free(p->charset);
    free(p->encoding_text);
    free(p->disposition_text);
    free(p->filename);
    free(p->description);
    free(p->content_id);
    free(p->children);
    if (p->envelope) {
        msg_env_free(p->envelope);
        free(p->envelope);
    }
    free(p);
}

void message_free(struct message *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_parts; i++)
        msg_part_free(m->parts[i]);
    free(m->parts);
    msg_env_free(&m->env);
    for (size_t i = 0; i < m->n_warnings; i++)
        free(m->warnings[i]);
    free(m->warnings);
    free(m);
}

/* ---- best text ---------------------------------------------------------- */

static const struct msg_part *msg_best(const struct msg_part *p, bool top, bool *html)
{
    const struct msg_part *first_html = NULL;

    if (msg_is(p, "text", "plain") || msg_is(p, "text", "html")) {
        if (p->disposition == MSG_DISP_ATTACHMENT || p->disposition == MSG_DISP_OTHER)
            return NULL;
        *html = msg_is(p, "text", "html");
        return p;
    }
    if (msg_is(p, "message", NULL) && !top)
        return NULL;
    for (size_t i = 0; i < p->n_children; i++) {
        bool h = false;
        const struct msg_part *r = msg_best(p->children[i], top && msg_is(p, "message", NULL), &h);
        if (r && !h) {
            *html = false;
            return r;
        }
        if (r && !first_html)
            first_html = r;
    }
    *html = first_html != NULL;
    return first_html;
}

const struct msg_part *message_best_text(const struct message *m, bool *is_html)
{
    bool h = false;
    const struct msg_part *r = m->root ? msg_best(m->root, true, &h) : NULL;

    if (is_html)
        *is_html = r && h;
    return r;
}

/* ---- decoding ----------------------------------------------------------- */

static int msg_decode_into(const struct message *m, const struct msg_part *p,
                           struct buf *tmp, bool *broken)
{
    const char *body = m->raw + p->body_offset;
    bool bad = false;
    int rc;

    if (p->encoding == MSG_ENC_BASE64)
        rc = codec_b64_decode(body, p->body_size, tmp, &bad);
    else if (p->encoding == MSG_ENC_QP)
        rc = codec_qp_decode(body, p->body_size, false, tmp, &bad);
    else
        rc = buf_append(tmp, body, p->body_size);
    if (broken)
        *broken = bad;
    return rc;
}

int message_part_decode(const struct message *m, const struct msg_part *p,
                        struct buf *out, bool *broken, struct err *e)
{
    struct buf tmp;
    int rc;

    buf_init(&tmp, m->limits.max_decoded);
    rc = msg_decode_into(m, p, &tmp, broken);
    if (buf_append(out, tmp.data ? tmp.data : "", tmp.len) < 0)
        rc = -1;
    buf_free(&tmp);
    if (rc < 0)
        return err_set(e, ERR_LIMIT, "decoded part larger than %zu bytes", m->limits.max_decoded);
    return 0;
}

/* Charset for conversion: undeclared or ASCII text that is not UTF-8 is
 * taken as Windows-1252 (flagged as a fallback). */
static const char *msg_text_charset(const struct msg_part *p, const struct buf *bytes,
                                    unsigned *flags)
{
    const char *cs = p->charset;

    if ((!cs || strcasecmp(cs, "us-ascii") == 0 || strcasecmp(cs, "ascii") == 0) &&
        !charset_valid_utf8(buf_cstr(bytes), bytes->len)) {
        *flags |= CHARSET_FALLBACK;
        return "windows-1252";
    }
    return cs ? cs : "utf-8";
}

static int msg_crlf_to_lf(const struct buf *in, struct buf *out)
{
    const char *s = buf_cstr(in);
    size_t run = 0;

    for (size_t i = 0; i + 1 < in->len; i++) {
        if (s[i] == '\r' && s[i + 1] == '\n') {
            if (buf_append(out, s + run, i - run) < 0)
                return -1;
            run = i + 1;
        }
    }
    return buf_append(out, s + run, in->len - run);
}

int message_part_text(const struct message *m, const struct msg_part *p,
                      struct buf *out, unsigned *flags, bool *broken, struct err *e)
{
    struct buf bytes, utf;
    unsigned dummy = 0;
    int rc;

    if (!flags)
        flags = &dummy;
    buf_init(&bytes, m->limits.max_decoded);
    buf_init(&utf, m->limits.max_decoded);
    rc = msg_decode_into(m, p, &bytes, broken);
    if (charset_to_utf8(msg_text_charset(p, &bytes, flags), buf_cstr(&bytes), bytes.len,
                        &utf, flags) < 0)
        rc = -1;
    if (msg_crlf_to_lf(&utf, out) < 0)
        rc = -1;
    buf_free(&bytes);
    buf_free(&utf);
    if (rc < 0)
        return err_set(e, ERR_LIMIT, "decoded text larger than %zu bytes", m->limits.max_decoded);
    return 0;
}

char *message_part_mime_type(const struct msg_part *p)
{
    return xasprintf("%s/%s", p->type ? p->type : "text", p->subtype ? p->subtype : "plain");
}
