/* pattern: mutt search/limit patterns, compiled once, evaluated per message. */
#include "pattern.h"

#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wchar.h>
#include <wctype.h>

#include "regex_guard.h"

/* ------------------------------------------------------------------------ */
/* The compiled tree                                                        */

enum node_kind {
    N_AND,
    N_OR,
    N_NOT,
    N_ALL,        /* ~A */
    N_FLAGS,      /* ~D ~F ~N ~O ~R ~T ~U (op says which) */
    N_DATE,       /* ~d */
    N_RECEIVED,   /* ~r */
    N_SIZE,       /* ~z */
    N_COLLAPSED,  /* ~v */
    N_LIST,       /* ~l */
    N_SUBJECT,    /* ~s */
    N_MSGID,      /* ~i */
    N_XLABEL,     /* ~y */
    N_REFS,       /* ~x */
    N_ADDR,       /* ~c ~C ~e ~f ~t ~L (addrs says which lists) */
    N_ME,         /* ~p */
    N_HEADER,     /* ~h */
    N_BODY,       /* ~b */
    N_WHOLE,      /* ~B */
};

/* Evaluation cost classes, cheapest first. */
enum cost {
    COST_FIELD,    /* a number or flag word */
    COST_STRING,   /* one string */
    COST_LIST,     /* a walk over a list */
    COST_HEADERS,  /* fetches the header block */
    COST_BODY,     /* fetches the body */
    COST_WHOLE,    /* fetches both */
};

struct matcher {
    bool regex;
    bool icase;
    regex_t re;          /* regex */
    char *needle;        /* substring; ASCII-lower-cased when icase && !wide */
    size_t nlen;
    wchar_t *wneedle;    /* substring, icase, non-ASCII: lower-cased */
    size_t wlen;
};

struct node {
    enum node_kind kind;
    enum cost cost;
    char op;               /* a leaf's operator letter */
    unsigned addrs;        /* N_ADDR: 1u << enum pattern_addr per list */
    struct node **kids;    /* N_AND, N_OR (>= 2), N_NOT (1) */
    size_t nkids;
    struct matcher *mt;    /* string operators */
    int64_t dmin, dmax;    /* N_DATE, N_RECEIVED, inclusive */
    uint64_t zmin, zmax;   /* N_SIZE, inclusive */
};

struct pattern {
    struct node *root;
};

static void matcher_free(struct matcher *mt)
{
    if (mt == NULL)
        return;
    if (mt->regex)
        regfree(&mt->re);
    free(mt->needle);
    free(mt->wneedle);
    free(mt);
}

static void node_free(struct node *n)
{
    size_t i;

    if (n == NULL)
        return;
    for (i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    matcher_free(n->mt);
    free(n);
}

static struct node *node_new(enum node_kind kind, enum cost cost, char op)
{
    struct node *n = XNEW(struct node);

    n->kind = kind;
    n->cost = cost;
    n->op = op;
    return n;
}

/* ------------------------------------------------------------------------ */
/* Text matching                                                            */

/* Code points beyond Unicode stand for bytes that are not valid UTF-8, so an
 * invalid byte only ever matches the same invalid byte. */
#define BAD_BYTE_BASE 0x110000

static size_t next_wc(const char *s, size_t len, wchar_t *wc)
{
    mbstate_t st;
    size_t r;

    memset(&st, 0, sizeof(st));
    r = mbrtowc(wc, s, len, &st);
    if (r == (size_t)-1 || r == (size_t)-2) {
        *wc = (wchar_t)(BAD_BYTE_BASE + (unsigned char)s[0]);
        return 1;
    }
    if (r == 0) {
        *wc = 0;
        return 1;
    }
    return r;
}

static wchar_t fold_wc(wchar_t wc)
{
    if (wc >= BAD_BYTE_BASE)
        return wc;
    return (wchar_t)towlower((wint_t)wc);
}

static bool is_ascii(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* mutt's smart case: any upper-case letter makes the match case-sensitive.
 * In a regex, an ASCII letter after a backslash is an escape (\W, \B). */
static bool has_upper(const char *s, size_t len, bool regex)
{
    size_t i = 0;

    while (i < len) {
        wchar_t wc;
        size_t n;

        if (regex && s[i] == '\\' && i + 1 < len) {
            unsigned char c = (unsigned char)s[i + 1];

            i += (c < 0x80) ? 2 : 1;
            continue;
        }
        n = next_wc(s + i, len - i, &wc);
        if (wc < BAD_BYTE_BASE && iswupper((wint_t)wc))
            return true;
        i += n;
    }
    return false;
}

static bool ascii_case_find(const char *h, size_t hlen, const char *n,
                            size_t nlen)
{
    size_t i, j;

    if (nlen > hlen)
        return false;
    for (i = 0; i + nlen <= hlen; i++) {
        for (j = 0; j < nlen && ascii_lower(h[i + j]) == n[j]; j++)
            ;
        if (j == nlen)
            return true;
    }
    return false;
}

static bool wide_case_find(const char *h, size_t hlen, const wchar_t *n,
                           size_t nlen)
{
    size_t i = 0;

    while (i < hlen) {
        size_t k = i, j = 0, step;
        wchar_t wc;

        while (j < nlen && k < hlen) {
            size_t used = next_wc(h + k, hlen - k, &wc);

            if (fold_wc(wc) != n[j])
                break;
            k += used;
            j++;
        }
        if (j == nlen)
            return true;
        step = next_wc(h + i, hlen - i, &wc);
        i += step;
    }
    return nlen == 0;
}

/* Match s[0..len), which need not be NUL-terminated. */
static bool match_mem(const struct matcher *mt, const char *s, size_t len)
{
    if (mt->regex) {
#ifdef REG_STARTEND
        regmatch_t pm[1];

        /* regoff_t may be an int: a longer line cannot be searched (the
         * accessors cap what they return far below that) */
        if (len > (size_t)INT_MAX)
            return false;
        pm[0].rm_so = 0;
        pm[0].rm_eo = (regoff_t)len;
        return regexec(&mt->re, s, 1, pm, REG_STARTEND) == 0;
#else
        char *copy = xmemdup0(s, len);
        bool ok = regexec(&mt->re, copy, 0, NULL, 0) == 0;

        free(copy);
        return ok;
#endif
    }
    if (mt->wneedle)
        return wide_case_find(s, len, mt->wneedle, mt->wlen);
    if (mt->icase)
        return ascii_case_find(s, len, mt->needle, mt->nlen);
    return memmem(s, len, mt->needle, mt->nlen) != NULL;
}

static bool match_str(const struct matcher *mt, const char *s)
{
    if (s == NULL)
        return false;
    if (mt->regex)
        return regexec(&mt->re, s, 0, NULL, 0) == 0;
    return match_mem(mt, s, strlen(s));
}

/* Each line of data (LF or CRLF separated) on its own. */
static bool match_lines(const struct matcher *mt, const char *data, size_t len)
{
    size_t i = 0;

    while (i < len) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - data) : len;
        size_t lend = end;

        if (lend > i && data[lend - 1] == '\r')
            lend--;
        if (match_mem(mt, data + i, lend - i))
            return true;
        i = end + 1;
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Parser state and errors                                                  */

struct parser {
    const char *s;
    size_t len;
    size_t pos;
    int depth;
    int64_t now;
    struct err *e;
};

/* 1-based column in characters (UTF-8 code points) of byte offset at. */
static size_t column(const struct parser *p, size_t at)
{
    size_t i, col = 1;

    if (at > p->len)
        at = p->len;
    for (i = 0; i < at; i++)
        if (((unsigned char)p->s[i] & 0xC0) != 0x80)
            col++;
    return col;
}

static int perr_code(struct parser *p, enum err_code code, size_t at,
                     const char *fmt, ...) CORREO_PRINTF(4, 5);

static int perr_code(struct parser *p, enum err_code code, size_t at,
                     const char *fmt, ...)
{
    char what[ERR_TEXT_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return err_set(p->e, code, "%s at %zu", what, column(p, at));
}

#define perr(p, at, ...) perr_code((p), ERR_PARSE, (at), __VA_ARGS__)

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

static void skip_ws(struct parser *p)
{
    while (p->pos < p->len && is_ws(p->s[p->pos]))
        p->pos++;
}

static bool at_end(const struct parser *p)
{
    return p->pos >= p->len;
}

static char peek(const struct parser *p)
{
    return p->pos < p->len ? p->s[p->pos] : '\0';
}

/* "~s", "=b": the operator as written, for messages. */
struct opname {
    char text[4];
};

static struct opname opname(char prefix, char letter)
{
    struct opname o;

    o.text[0] = prefix;
    o.text[1] = (letter > ' ' && letter < 0x7f) ? letter : '?';
    o.text[2] = '\0';
    return o;
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                */

/* An argument after quote and escape processing, with the source offset of
 * every byte so that errors inside it point at the right column. */
struct arg {
    char *s;
    size_t *at;
    size_t n, cap;
    size_t start;   /* source offset of the argument's first character */
};

static void arg_free(struct arg *a)
{
    free(a->s);
    free(a->at);
    memset(a, 0, sizeof(*a));
}

static void arg_push(struct arg *a, char c, size_t at)
{
    if (a->n + 1 >= a->cap) {
        a->cap = a->cap ? a->cap * 2 : 32;
        a->s = xreallocarray(a->s, a->cap, 1);
        a->at = xreallocarray(a->at, a->cap, sizeof(size_t));
    }
    a->s[a->n] = c;
    a->at[a->n] = at;
    a->n++;
    a->s[a->n] = '\0';
}

/* Source offset of argument byte i; i == n means just past the end. */
static size_t arg_pos(const struct arg *a, size_t i)
{
    if (i < a->n)
        return a->at[i];
    return a->n ? a->at[a->n - 1] + 1 : a->start;
}

/* A backslash at p->pos.  For a regex the backslash stays, except before
 * whitespace and quotes, which need no regex escape. */
static int arg_escape(struct parser *p, struct arg *a, bool regex)
{
    size_t bs = p->pos;
    char next;

    if (bs + 1 >= p->len)
        return perr(p, bs, "trailing backslash");
    next = p->s[bs + 1];
    if (regex && !is_ws(next) && next != '"' && next != '\'')
        arg_push(a, '\\', bs);
    arg_push(a, next, bs + 1);
    p->pos = bs + 2;
    return 0;
}

static int read_arg(struct parser *p, struct opname op, bool regex,
                    struct arg *a)
{
    int depth = 0;

    skip_ws(p);
    a->start = p->pos;
    if (at_end(p) || peek(p) == '|' || peek(p) == ')')
        return perr(p, p->pos, "%s: missing argument", op.text);
    while (!at_end(p)) {
        char c = p->s[p->pos];

        if (is_ws(c) || (c == '|' && depth == 0) || (c == ')' && depth == 0))
            break;
        if (c == '\'') {
            size_t open = p->pos++;

            while (!at_end(p) && p->s[p->pos] != '\'') {
                arg_push(a, p->s[p->pos], p->pos);
                p->pos++;
            }
            if (at_end(p))
                return perr(p, open, "unterminated quote");
            p->pos++;
        } else if (c == '"') {
            size_t open = p->pos++;

            for (;;) {
                if (at_end(p))
                    return perr(p, open, "unterminated quote");
                c = p->s[p->pos];
                if (c == '"') {
                    p->pos++;
                    break;
                }
                if (c == '\\') {
                    if (arg_escape(p, a, regex) < 0)
                        return -1;
                    continue;
                }
                arg_push(a, c, p->pos);
                p->pos++;
            }
        } else if (c == '\\') {
            if (arg_escape(p, a, regex) < 0)
                return -1;
        } else {
            if (c == '(')
                depth++;
            else if (c == ')')
                depth--;
            arg_push(a, c, p->pos);
            p->pos++;
        }
    }
    if (a->n == 0)
        return perr(p, a->start, "%s: empty argument", op.text);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Regex and substring arguments                                            */

static struct matcher *matcher_new(struct parser *p, struct opname op,
                                   const char *text, size_t len, bool regex,
                                   size_t at)
{
    struct matcher *mt = XNEW(struct matcher);

    mt->icase = !has_upper(text, len, regex);
    if (regex) {
        int flags = REG_EXTENDED | REG_NOSUB | (mt->icase ? REG_ICASE : 0);
        char *z;
        int rc;

        if (regex_cost(text, len) > REGEX_COST_MAX) {
            free(mt);
            err_set(p->e, ERR_PARSE, "%s: regex too complex at %zu", op.text,
                    column(p, at));
            return NULL;
        }
        z = xmemdup0(text, len);   /* text need not end at len */
        rc = regcomp(&mt->re, z, flags);
        free(z);

        if (rc != 0) {
            char msg[200];

            regerror(rc, &mt->re, msg, sizeof(msg));
            free(mt);
            err_set(p->e, ERR_PARSE, "%s: bad regex at %zu: %s", op.text,
                    column(p, at), msg);
            return NULL;
        }
        mt->regex = true;
        return mt;
    }
    mt->needle = xmemdup0(text, len);
    mt->nlen = len;
    if (!mt->icase)
        return mt;
    if (is_ascii(text, len)) {
        size_t i;

        for (i = 0; i < len; i++)
            mt->needle[i] = ascii_lower(mt->needle[i]);
        return mt;
    }
    mt->wneedle = XNEWARRAY(wchar_t, len);
    {
        size_t i = 0;

        while (i < len) {
            wchar_t wc;

            i += next_wc(text + i, len - i, &wc);
            mt->wneedle[mt->wlen++] = fold_wc(wc);
        }
    }
    return mt;
}

/* ------------------------------------------------------------------------ */
/* Dates                                                                    */

#define REL_MAX 100000   /* largest N in a date offset */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_date_unit(char c)
{
    return c != '\0' && strchr("ymwdHMS", c) != NULL;
}

static int days_in_month(int year, int mon)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return mon == 2 && leap ? 29 : days[mon - 1];
}

static int to_local(struct parser *p, struct opname op, int64_t t, size_t at,
                    struct tm *tm)
{
    time_t tt = (time_t)t;

    if ((int64_t)tt != t || localtime_r(&tt, tm) == NULL)
        return perr(p, at, "%s: date out of range", op.text);
    return 0;
}

static int from_local(struct parser *p, struct opname op, struct tm *tm,
                      size_t at, int64_t *out)
{
    time_t t;

    tm->tm_isdst = -1;
    errno = 0;
    t = mktime(tm);
    if (t == (time_t)-1 && errno != 0)
        return perr(p, at, "%s: date out of range", op.text);
    *out = (int64_t)t;
    return 0;
}

/* t moved by n units (n may be negative); calendar units in local time. */
static int add_units(struct parser *p, struct opname op, int64_t t, long n,
                     char unit, size_t at, int64_t *out)
{
    struct tm tm;

    switch (unit) {
    case 'S':
        *out = t + n;
        return 0;
    case 'M':
        *out = t + (int64_t)n * 60;
        return 0;
    case 'H':
        *out = t + (int64_t)n * 3600;
        return 0;
    default:
        break;
    }
    if (to_local(p, op, t, at, &tm) < 0)
        return -1;
    switch (unit) {
    case 'y':
        tm.tm_year += (int)n;
        break;
    case 'm':
        tm.tm_mon += (int)n;
        break;
    case 'w':
        tm.tm_mday += (int)n * 7;
        break;
    default:
        tm.tm_mday += (int)n;
        break;
    }
    return from_local(p, op, &tm, at, out);
}

/* Digits at a->s[*i]: at least one, at most maxdigits. */
static int scan_number(struct parser *p, struct opname op,
                       const struct arg *a, size_t *i, size_t maxdigits,
                       unsigned long long limit, const char *what,
                       unsigned long long *out)
{
    size_t start = *i, nd = 0, k;
    unsigned long long v = 0;

    while (start + nd < a->n && is_digit(a->s[start + nd]))
        nd++;
    if (nd == 0)
        return perr(p, arg_pos(a, start), "%s: expected a %s", op.text, what);
    if (maxdigits && nd > maxdigits)
        return perr(p, arg_pos(a, start), "%s: bad %s", op.text, what);
    for (k = start; k < start + nd; k++) {
        unsigned d = (unsigned)(a->s[k] - '0');

        if (v > (limit - d) / 10)
            return perr(p, arg_pos(a, start), "%s: number too large",
                        op.text);
        v = v * 10 + d;
    }
    *i = start + nd;
    *out = v;
    return 0;
}

/* N followed by a unit letter: a relative offset. */
static int scan_offset(struct parser *p, struct opname op, const struct arg *a,
                       size_t *i, long *n, char *unit)
{
    unsigned long long v;

    if (scan_number(p, op, a, i, 0, REL_MAX, "number", &v) < 0)
        return -1;
    if (*i >= a->n || !is_date_unit(a->s[*i]))
        return perr(p, arg_pos(a, *i),
                    "%s: expected a unit (y m w d H M S)", op.text);
    *n = (long)v;
    *unit = a->s[(*i)++];
    return 0;
}

/* Is a->s[i..] digits and a unit letter (an error margin, not a date)? */
static bool looks_like_offset(const struct arg *a, size_t i)
{
    size_t j = i;

    while (j < a->n && is_digit(a->s[j]))
        j++;
    return j > i && j < a->n && is_date_unit(a->s[j]);
}

/* DD[/MM[/[YY]YY]] with optional error margins: the window [lo, hi]. */
static int scan_date(struct parser *p, struct opname op, const struct arg *a,
                     size_t *i, int64_t *lo, int64_t *hi)
{
    struct tm now_tm, tm;
    unsigned long long day, mon, year;
    size_t start = *i, mon_at, year_at;

    if (to_local(p, op, p->now, a->start, &now_tm) < 0)
        return -1;
    mon = (unsigned long long)now_tm.tm_mon + 1;
    year = (unsigned long long)now_tm.tm_year + 1900;
    if (scan_number(p, op, a, i, 2, 99, "day", &day) < 0)
        return -1;
    mon_at = *i + 1;
    if (*i < a->n && a->s[*i] == '/') {
        (*i)++;
        if (scan_number(p, op, a, i, 2, 99, "month", &mon) < 0)
            return -1;
        year_at = *i + 1;
        if (*i < a->n && a->s[*i] == '/') {
            size_t ystart = ++(*i);

            if (scan_number(p, op, a, i, 4, 9999, "year", &year) < 0)
                return -1;
            if (*i - ystart == 2)
                year += year < 70 ? 2000 : 1900;
            else if (*i - ystart != 4)
                return perr(p, arg_pos(a, year_at), "%s: bad year", op.text);
            if (year < 1900)
                return perr(p, arg_pos(a, year_at), "%s: bad year", op.text);
        }
        if (mon < 1 || mon > 12)
            return perr(p, arg_pos(a, mon_at), "%s: invalid month", op.text);
    }
    if (day < 1 || day > (unsigned long long)days_in_month((int)year, (int)mon))
        return perr(p, arg_pos(a, start), "%s: invalid day", op.text);

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = (int)year - 1900;
    tm.tm_mon = (int)mon - 1;
    tm.tm_mday = (int)day;
    if (from_local(p, op, &tm, arg_pos(a, start), lo) < 0)
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = (int)year - 1900;
    tm.tm_mon = (int)mon - 1;
    tm.tm_mday = (int)day + 1;
    if (from_local(p, op, &tm, arg_pos(a, start), hi) < 0)
        return -1;
    (*hi)--;

    /* error margins: +N forward, -N back, *N both */
    while (*i < a->n) {
        char sign = a->s[*i];
        size_t at = *i;
        long n;
        char unit;

        if (sign != '+' && sign != '*' &&
            !(sign == '-' && looks_like_offset(a, *i + 1)))
            break;
        (*i)++;
        if (scan_offset(p, op, a, i, &n, &unit) < 0)
            return -1;
        if (sign != '-' &&
            add_units(p, op, *hi, n, unit, arg_pos(a, at), hi) < 0)
            return -1;
        if (sign != '+' &&
            add_units(p, op, *lo, -n, unit, arg_pos(a, at), lo) < 0)
            return -1;
    }
    return 0;
}

/* <N >N =N relative to now. */
static int scan_relative(struct parser *p, struct opname op,
                         const struct arg *a, int64_t *min, int64_t *max)
{
    size_t i = 1;
    long n;
    char unit, rel = a->s[0];
    int64_t t;
    struct tm tm;

    if (scan_offset(p, op, a, &i, &n, &unit) < 0)
        return -1;
    if (i != a->n)
        return perr(p, arg_pos(a, i), "%s: bad date range", op.text);
    if (add_units(p, op, p->now, -n, unit, a->start, &t) < 0)
        return -1;
    if (rel == '<') {
        *min = t;
        *max = INT64_MAX;
        return 0;
    }
    if (rel == '>') {
        *min = INT64_MIN;
        *max = t - 1;
        return 0;
    }
    /* '=': the day (or hour, minute, second) that t falls in */
    if (unit == 'S') {
        *min = *max = t;
        return 0;
    }
    if (to_local(p, op, t, a->start, &tm) < 0)
        return -1;
    tm.tm_sec = 0;
    if (unit == 'M') {
        if (from_local(p, op, &tm, a->start, min) < 0)
            return -1;
        *max = *min + 59;
        return 0;
    }
    tm.tm_min = 0;
    if (unit == 'H') {
        if (from_local(p, op, &tm, a->start, min) < 0)
            return -1;
        *max = *min + 3599;
        return 0;
    }
    tm.tm_hour = 0;
    if (from_local(p, op, &tm, a->start, min) < 0)
        return -1;
    tm.tm_mday++;
    if (from_local(p, op, &tm, a->start, max) < 0)
        return -1;
    (*max)--;
    return 0;
}

static int parse_date_range(struct parser *p, struct opname op,
                            const struct arg *a, int64_t *min, int64_t *max)
{
    size_t i = 0;
    int64_t lo, hi;

    if (strchr("<>=", a->s[0]) != NULL)
        return scan_relative(p, op, a, min, max);
    if (a->s[0] == '-') {
        i = 1;
        if (i == a->n)
            return perr(p, arg_pos(a, 0), "%s: bad date range", op.text);
        if (scan_date(p, op, a, &i, &lo, &hi) < 0)
            return -1;
        *min = INT64_MIN;
        *max = hi;
    } else {
        if (!is_digit(a->s[0]))
            return perr(p, arg_pos(a, 0), "%s: bad date range", op.text);
        if (scan_date(p, op, a, &i, min, max) < 0)
            return -1;
        if (i < a->n && a->s[i] == '-') {
            i++;
            if (i == a->n) {
                *max = INT64_MAX;
            } else {
                if (scan_date(p, op, a, &i, &lo, &hi) < 0)
                    return -1;
                *max = hi;
            }
        }
    }
    if (i != a->n)
        return perr(p, arg_pos(a, i), "%s: bad date range", op.text);
    if (*min > *max)
        return perr(p, a->start, "%s: range ends before it starts", op.text);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Sizes                                                                    */

static int scan_size(struct parser *p, struct opname op, const struct arg *a,
                     size_t *i, uint64_t *out)
{
    unsigned long long v, mult = 1;
    size_t start = *i;

    if (scan_number(p, op, a, i, 0, UINT64_MAX, "number", &v) < 0)
        return -1;
    if (*i < a->n) {
        switch (a->s[*i]) {
        case 'k': case 'K': mult = 1024ull; (*i)++; break;
        case 'm': case 'M': mult = 1024ull * 1024; (*i)++; break;
        case 'g': case 'G': mult = 1024ull * 1024 * 1024; (*i)++; break;
        default: break;
        }
    }
    if (v > UINT64_MAX / mult)
        return perr(p, arg_pos(a, start), "%s: number too large", op.text);
    *out = v * mult;
    return 0;
}

static int parse_size_range(struct parser *p, struct opname op,
                            const struct arg *a, uint64_t *min, uint64_t *max)
{
    size_t i = 0;
    uint64_t v;

    if (a->s[0] == '<' || a->s[0] == '>') {
        i = 1;
        if (scan_size(p, op, a, &i, &v) < 0)
            return -1;
        if (i != a->n)
            return perr(p, arg_pos(a, i), "%s: bad size range", op.text);
        if (a->s[0] == '<') {
            /* v == 0: nothing is smaller; an empty range */
            *min = v == 0 ? 1 : 0;
            *max = v == 0 ? 0 : v - 1;
        } else {
            *min = v == UINT64_MAX ? 1 : v + 1;
            *max = v == UINT64_MAX ? 0 : UINT64_MAX;
        }
        return 0;
    }
    if (a->s[0] == '-') {
        i = 1;
        if (i == a->n)
            return perr(p, arg_pos(a, 0), "%s: bad size range", op.text);
        *min = 0;
        if (scan_size(p, op, a, &i, max) < 0)
            return -1;
    } else {
        if (!is_digit(a->s[0]))
            return perr(p, arg_pos(a, 0), "%s: bad size range", op.text);
        if (scan_size(p, op, a, &i, min) < 0)
            return -1;
        *max = *min;
        if (i < a->n && a->s[i] == '-') {
            i++;
            if (i == a->n)
                *max = UINT64_MAX;
            else if (scan_size(p, op, a, &i, max) < 0)
                return -1;
        }
    }
    if (i != a->n)
        return perr(p, arg_pos(a, i), "%s: bad size range", op.text);
    if (*min > *max)
        return perr(p, a->start, "%s: range ends before it starts", op.text);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Operators                                                                */

enum arg_kind { ARG_NONE, ARG_EXPR, ARG_DATE, ARG_SIZE };

struct opdef {
    char letter;
    enum arg_kind arg;
    enum node_kind kind;
    enum cost cost;
    unsigned addrs;
};

#define A_(x) (1u << PATTERN_ADDR_##x)

static const struct opdef opdefs[] = {
    {'A', ARG_NONE, N_ALL, COST_FIELD, 0},
    {'b', ARG_EXPR, N_BODY, COST_BODY, 0},
    {'B', ARG_EXPR, N_WHOLE, COST_WHOLE, 0},
    {'c', ARG_EXPR, N_ADDR, COST_LIST, A_(CC)},
    {'C', ARG_EXPR, N_ADDR, COST_LIST, A_(TO) | A_(CC)},
    {'d', ARG_DATE, N_DATE, COST_FIELD, 0},
    {'D', ARG_NONE, N_FLAGS, COST_FIELD, 0},
    {'e', ARG_EXPR, N_ADDR, COST_LIST, A_(SENDER)},
    {'f', ARG_EXPR, N_ADDR, COST_LIST, A_(FROM)},
    {'F', ARG_NONE, N_FLAGS, COST_FIELD, 0},
    {'h', ARG_EXPR, N_HEADER, COST_HEADERS, 0},
    {'i', ARG_EXPR, N_MSGID, COST_STRING, 0},
    {'l', ARG_NONE, N_LIST, COST_STRING, 0},
    {'L', ARG_EXPR, N_ADDR, COST_LIST,
     A_(FROM) | A_(TO) | A_(CC) | A_(SENDER)},
    {'N', ARG_NONE, N_FLAGS, COST_FIELD, 0},
    {'O', ARG_NONE, N_FLAGS, COST_FIELD, 0},
    {'p', ARG_NONE, N_ME, COST_LIST, 0},
    {'r', ARG_DATE, N_RECEIVED, COST_FIELD, 0},
    {'R', ARG_NONE, N_FLAGS, COST_FIELD, 0},
    {'s', ARG_EXPR, N_SUBJECT, COST_STRING, 0},
    {'t', ARG_EXPR, N_ADDR, COST_LIST, A_(TO)},
    {'T', ARG_NONE, N_FLAGS, COST_FIELD, 0},
    {'U', ARG_NONE, N_FLAGS, COST_FIELD, 0},
    {'v', ARG_NONE, N_COLLAPSED, COST_FIELD, 0},
    {'x', ARG_EXPR, N_REFS, COST_LIST, 0},
    {'y', ARG_EXPR, N_XLABEL, COST_STRING, 0},
    {'z', ARG_SIZE, N_SIZE, COST_FIELD, 0},
};

static const struct opdef *find_op(char letter)
{
    size_t i;

    for (i = 0; i < ARRAY_LEN(opdefs); i++)
        if (opdefs[i].letter == letter)
            return &opdefs[i];
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Grammar: or := and ('|' and)* ; and := unary+ ; unary := '!'* primary ;  */
/* primary := '(' or ')' | ('~'|'=') letter [argument]                      */

static struct node *parse_or(struct parser *p);

static struct node *parse_term(struct parser *p)
{
    size_t tpos = p->pos;
    char prefix = p->s[p->pos++];
    char letter;
    const struct opdef *def;
    struct opname op;
    struct node *n;
    struct arg a;

    if (at_end(p) || is_ws(peek(p))) {
        perr(p, tpos, "'%c' without an operator letter", prefix);
        return NULL;
    }
    letter = p->s[p->pos++];
    op = opname(prefix, letter);
    def = find_op(letter);
    if (def == NULL) {
        perr(p, tpos, "%s: unknown operator", op.text);
        return NULL;
    }
    if (prefix == '=' && def->arg != ARG_EXPR) {
        perr(p, tpos, "%s: no substring form", op.text);
        return NULL;
    }
    n = node_new(def->kind, def->cost, letter);
    n->addrs = def->addrs;
    if (def->arg == ARG_NONE)
        return n;

    memset(&a, 0, sizeof(a));
    if (read_arg(p, op, prefix == '~' && def->arg == ARG_EXPR, &a) < 0)
        goto fail;
    switch (def->arg) {
    case ARG_EXPR:
        n->mt = matcher_new(p, op, a.s, a.n, prefix == '~', a.start);
        if (n->mt == NULL)
            goto fail;
        break;
    case ARG_DATE:
        if (parse_date_range(p, op, &a, &n->dmin, &n->dmax) < 0)
            goto fail;
        break;
    case ARG_SIZE:
        if (parse_size_range(p, op, &a, &n->zmin, &n->zmax) < 0)
            goto fail;
        break;
    case ARG_NONE:
        break;
    }
    arg_free(&a);
    return n;

fail:
    arg_free(&a);
    node_free(n);
    return NULL;
}

static struct node *parse_primary(struct parser *p)
{
    char c = peek(p);

    if (c == '(') {
        size_t open = p->pos++;
        struct node *inner;

        if (p->depth >= PATTERN_MAX_DEPTH) {
            perr_code(p, ERR_LIMIT, open, "parentheses nested too deep");
            return NULL;
        }
        skip_ws(p);
        if (at_end(p)) {
            perr(p, open, "unbalanced '('");
            return NULL;
        }
        if (peek(p) == ')') {
            perr(p, open, "empty parentheses");
            return NULL;
        }
        p->depth++;
        inner = parse_or(p);
        p->depth--;
        if (inner == NULL)
            return NULL;
        skip_ws(p);
        if (peek(p) != ')') {
            node_free(inner);
            perr(p, open, "unbalanced '('");
            return NULL;
        }
        p->pos++;
        return inner;
    }
    if (c == '~' || c == '=')
        return parse_term(p);
    if (c == '%') {
        char letter = p->pos + 1 < p->len ? p->s[p->pos + 1] : ' ';

        perr(p, p->pos, "%s: address groups are not supported",
             opname('%', letter).text);
        return NULL;
    }
    perr(p, p->pos, "expected a pattern operator such as ~s");
    return NULL;
}

static struct node *parse_unary(struct parser *p)
{
    bool neg = false;
    size_t bang = 0;
    struct node *n, *wrap;

    skip_ws(p);
    while (peek(p) == '!') {
        bang = p->pos++;
        neg = !neg;
        skip_ws(p);
        if (at_end(p) || peek(p) == '|' || peek(p) == ')') {
            perr(p, bang, "missing operand after '!'");
            return NULL;
        }
    }
    n = parse_primary(p);
    if (n == NULL || !neg)
        return n;
    if (n->kind == N_NOT) {   /* !(!x) is x */
        wrap = n;
        n = wrap->kids[0];
        wrap->nkids = 0;
        node_free(wrap);
        return n;
    }
    wrap = node_new(N_NOT, n->cost, '!');
    wrap->kids = XNEWARRAY(struct node *, 1);
    wrap->kids[0] = n;
    wrap->nkids = 1;
    return wrap;
}

/* An AND or OR of kids[0..n), flattening nested ones of the same kind and
 * ordering the children cheapest first (stable). */
static struct node *combine(enum node_kind kind, struct node **kids, size_t n)
{
    struct node *c;
    size_t i, total = 0, k = 0;

    if (n == 1) {
        struct node *only = kids[0];

        free(kids);
        return only;
    }
    for (i = 0; i < n; i++)
        total += kids[i]->kind == kind ? kids[i]->nkids : 1;
    c = node_new(kind, COST_FIELD, kind == N_AND ? '&' : '|');
    c->kids = XNEWARRAY(struct node *, total);
    for (i = 0; i < n; i++) {
        if (kids[i]->kind == kind) {
            memcpy(c->kids + k, kids[i]->kids,
                   kids[i]->nkids * sizeof(struct node *));
            k += kids[i]->nkids;
            kids[i]->nkids = 0;
            node_free(kids[i]);
        } else {
            c->kids[k++] = kids[i];
        }
    }
    free(kids);
    c->nkids = total;
    /* insertion sort by cost keeps equal-cost terms in written order */
    for (i = 1; i < total; i++) {
        struct node *x = c->kids[i];
        size_t j = i;

        while (j > 0 && c->kids[j - 1]->cost > x->cost) {
            c->kids[j] = c->kids[j - 1];
            j--;
        }
        c->kids[j] = x;
    }
    c->cost = c->kids[total - 1]->cost;
    return c;
}

static void push_kid(struct node ***kids, size_t *n, size_t *cap,
                     struct node *k)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        *kids = xreallocarray(*kids, *cap, sizeof(struct node *));
    }
    (*kids)[(*n)++] = k;
}

static void free_kids(struct node **kids, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        node_free(kids[i]);
    free(kids);
}

static struct node *parse_and(struct parser *p)
{
    struct node **kids = NULL;
    size_t n = 0, cap = 0;

    for (;;) {
        struct node *k;

        skip_ws(p);
        if (at_end(p) || peek(p) == '|' || peek(p) == ')')
            break;
        k = parse_unary(p);
        if (k == NULL) {
            free_kids(kids, n);
            return NULL;
        }
        push_kid(&kids, &n, &cap, k);
    }
    if (n == 0) {
        /* a ')' with nothing before it; the other cases are caught earlier */
        if (peek(p) == ')')
            perr(p, p->pos, "unbalanced ')'");
        else
            perr(p, p->pos, "missing operand");
        return NULL;
    }
    return combine(N_AND, kids, n);
}

static struct node *parse_or(struct parser *p)
{
    struct node **kids = NULL;
    size_t n = 0, cap = 0;

    skip_ws(p);
    if (peek(p) == '|') {
        perr(p, p->pos, "'|' without a left operand");
        return NULL;
    }
    for (;;) {
        struct node *k = parse_and(p);

        if (k == NULL) {
            free_kids(kids, n);
            return NULL;
        }
        push_kid(&kids, &n, &cap, k);
        skip_ws(p);
        if (peek(p) != '|')
            break;
        {
            size_t bar = p->pos++;

            skip_ws(p);
            if (at_end(p) || peek(p) == '|' || peek(p) == ')') {
                free_kids(kids, n);
                perr(p, bar, "missing operand after '|'");
                return NULL;
            }
        }
    }
    return combine(N_OR, kids, n);
}

/* PATTERN_SIMPLE: "~f TERM | ~s TERM" for a text without operators. */
static struct node *simple_search(struct parser *p)
{
    size_t start = p->pos, end = p->len;
    struct node *f, *s, **kids;
    struct opname op = opname('~', 'f');

    while (end > start && is_ws(p->s[end - 1]))
        end--;
    f = node_new(N_ADDR, COST_LIST, 'f');
    f->addrs = A_(FROM);
    f->mt = matcher_new(p, op, p->s + start, end - start, true, start);
    if (f->mt == NULL) {
        node_free(f);
        return NULL;
    }
    s = node_new(N_SUBJECT, COST_STRING, 's');
    s->mt = matcher_new(p, opname('~', 's'), p->s + start, end - start,
                        true, start);
    if (s->mt == NULL) {
        node_free(f);
        node_free(s);
        return NULL;
    }
    kids = XNEWARRAY(struct node *, 2);
    kids[0] = f;
    kids[1] = s;
    return combine(N_OR, kids, 2);
}

int pattern_compile_opts(const char *text, const struct pattern_opts *o,
                         struct pattern **out, struct err *e)
{
    struct parser p;
    struct node *root;
    unsigned flags = o ? o->flags : 0;

    *out = NULL;
    err_clear(e);
    memset(&p, 0, sizeof(p));
    p.s = text;
    p.len = strlen(text);
    p.e = e;
    p.now = (o && o->now) ? o->now : (int64_t)time(NULL);

    skip_ws(&p);
    if (at_end(&p))
        return err_set(e, ERR_PARSE, "empty pattern");
    if ((flags & PATTERN_SIMPLE) && strpbrk(text, "~=!|(") == NULL) {
        root = simple_search(&p);
    } else {
        root = parse_or(&p);
        if (root != NULL && !at_end(&p)) {
            /* parse_or stops only at the end or at a ')' */
            node_free(root);
            root = NULL;
            perr(&p, p.pos, "unbalanced ')'");
        }
    }
    if (root == NULL)
        return -1;
    *out = XNEW(struct pattern);
    (*out)->root = root;
    return 0;
}

int pattern_compile(const char *text, unsigned flags, struct pattern **out,
                    struct err *e)
{
    struct pattern_opts o;

    o.flags = flags;
    o.now = 0;
    return pattern_compile_opts(text, &o, out, e);
}

void pattern_free(struct pattern *p)
{
    if (p == NULL)
        return;
    node_free(p->root);
    free(p);
}

static unsigned node_needs(const struct node *n)
{
    unsigned need = 0;
    size_t i;

    if (n->kind == N_HEADER || n->kind == N_WHOLE)
        need |= PATTERN_NEEDS_HEADERS;
    if (n->kind == N_BODY || n->kind == N_WHOLE)
        need |= PATTERN_NEEDS_BODY;
    for (i = 0; i < n->nkids; i++)
        need |= node_needs(n->kids[i]);
    return need;
}

unsigned pattern_needs(const struct pattern *p)
{
    return p ? node_needs(p->root) : 0;
}

/* ------------------------------------------------------------------------ */
/* Evaluation                                                               */

struct eval {
    const struct pattern_msg_ops *ops;
    uint32_t msg;
    void *ctx;
    struct err *e;
    struct buf headers;   /* unfolded, one header per line */
    struct buf body;
    int have_headers;     /* 0 not fetched, 1 fetched, -1 no accessor */
    int have_body;
};

/* RFC 5322 unfolding of a raw header block: CRLF/LF before whitespace goes,
 * each header ends up on one LF-terminated line; stops at the blank line. */
static int unfold_headers(const struct buf *raw, struct buf *out)
{
    const char *d = buf_cstr(raw);
    size_t i = 0, len = raw->len;

    while (i < len) {
        const char *nl = memchr(d + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - d) : len;
        size_t lend = end;

        if (lend > i && d[lend - 1] == '\r')
            lend--;
        if (lend == i)
            break;
        if (out->len > 0 && (d[i] == ' ' || d[i] == '\t')) {
            /* continuation: join with the previous line */
            buf_truncate(out, out->len - 1);
        }
        if (buf_append(out, d + i, lend - i) < 0 || buf_putc(out, '\n') < 0)
            return -1;
        i = end + 1;
    }
    return 0;
}

static int fetch_headers(struct eval *st)
{
    struct buf raw = BUF_INIT;

    if (st->have_headers != 0)
        return 0;
    if (st->ops->headers == NULL) {
        st->have_headers = -1;
        return 0;
    }
    if (st->ops->headers(st->ctx, st->msg, &raw, st->e) < 0) {
        buf_free(&raw);
        return -1;
    }
    if (unfold_headers(&raw, &st->headers) < 0) {
        buf_free(&raw);
        return err_set(st->e, ERR_LIMIT, "header block too large");
    }
    buf_free(&raw);
    st->have_headers = 1;
    return 0;
}

static int fetch_body(struct eval *st)
{
    if (st->have_body != 0)
        return 0;
    if (st->ops->body == NULL) {
        st->have_body = -1;
        return 0;
    }
    if (st->ops->body(st->ctx, st->msg, &st->body, st->e) < 0)
        return -1;
    st->have_body = 1;
    return 0;
}

struct walk {
    const struct matcher *mt;
    const struct eval *st;
    bool found;
};

static bool addr_visit(void *cbctx, const char *name, const char *addr)
{
    struct walk *w = cbctx;

    if (w->found)
        return true;
    if (w->mt == NULL)   /* ~p */
        w->found = addr != NULL && w->st->ops->is_me(w->st->ctx, addr);
    else
        w->found = match_str(w->mt, addr) || match_str(w->mt, name);
    return w->found;
}

static bool str_visit(void *cbctx, const char *s)
{
    struct walk *w = cbctx;

    if (!w->found)
        w->found = match_str(w->mt, s);
    return w->found;
}

static bool walk_addrs(const struct eval *st, const struct matcher *mt,
                       unsigned addrs)
{
    struct walk w;
    unsigned which;

    if (st->ops->addresses == NULL)
        return false;
    w.mt = mt;
    w.st = st;
    w.found = false;
    for (which = PATTERN_ADDR_FROM; which <= PATTERN_ADDR_SENDER; which++) {
        if (!(addrs & (1u << which)))
            continue;
        st->ops->addresses(st->ctx, st->msg, (enum pattern_addr)which,
                           addr_visit, &w);
        if (w.found)
            return true;
    }
    return false;
}

static bool match_flags(char op, unsigned f)
{
    bool unread = !(f & PATTERN_F_READ);

    switch (op) {
    case 'D': return f & PATTERN_F_DELETED;
    case 'F': return f & PATTERN_F_FLAGGED;
    case 'T': return f & PATTERN_F_TAGGED;
    case 'R': return !unread;
    case 'U': return unread;
    case 'N': return unread && (f & PATTERN_F_NEW) && !(f & PATTERN_F_OLD);
    case 'O': return unread && ((f & PATTERN_F_OLD) || !(f & PATTERN_F_NEW));
    default: return false;
    }
}

#define CALL(st, fn, zero) \
    ((st)->ops->fn ? (st)->ops->fn((st)->ctx, (st)->msg) : (zero))

static int eval_node(const struct node *n, struct eval *st)
{
    size_t i;
    int r;
    int64_t t;
    uint64_t z;
    const char *s;

    switch (n->kind) {
    case N_AND:
        for (i = 0; i < n->nkids; i++)
            if ((r = eval_node(n->kids[i], st)) <= 0)
                return r;
        return 1;
    case N_OR:
        for (i = 0; i < n->nkids; i++)
            if ((r = eval_node(n->kids[i], st)) != 0)
                return r;
        return 0;
    case N_NOT:
        r = eval_node(n->kids[0], st);
        return r < 0 ? r : !r;
    case N_ALL:
        return 1;
    case N_FLAGS:
        return match_flags(n->op, CALL(st, flags, 0u));
    case N_DATE:
    case N_RECEIVED:
        t = n->kind == N_DATE ? CALL(st, date, 0) : CALL(st, received, 0);
        return t >= n->dmin && t <= n->dmax;
    case N_SIZE:
        z = CALL(st, size, 0);
        return z >= n->zmin && z <= n->zmax;
    case N_COLLAPSED:
        return CALL(st, collapsed, false);
    case N_LIST:
        s = CALL(st, list_id, NULL);
        return s != NULL && *s != '\0';
    case N_SUBJECT:
        return match_str(n->mt, CALL(st, subject, NULL));
    case N_MSGID:
        return match_str(n->mt, CALL(st, message_id, NULL));
    case N_XLABEL:
        return match_str(n->mt, CALL(st, x_label, NULL));
    case N_REFS: {
        struct walk w;

        if (st->ops->references == NULL)
            return 0;
        w.mt = n->mt;
        w.st = st;
        w.found = false;
        st->ops->references(st->ctx, st->msg, str_visit, &w);
        return w.found;
    }
    case N_ADDR:
        return walk_addrs(st, n->mt, n->addrs);
    case N_ME:
        if (st->ops->is_me == NULL)
            return 0;
        return walk_addrs(st, NULL, A_(TO) | A_(CC));
    case N_HEADER:
    case N_WHOLE:
        if (fetch_headers(st) < 0)
            return -1;
        if (st->have_headers > 0 &&
            match_lines(n->mt, buf_cstr(&st->headers), st->headers.len))
            return 1;
        if (n->kind == N_HEADER)
            return 0;
        /* ~B: the body too */
        __attribute__((fallthrough));
    case N_BODY:
        if (fetch_body(st) < 0)
            return -1;
        return st->have_body > 0 &&
               match_lines(n->mt, buf_cstr(&st->body), st->body.len);
    }
    return 0;
}

int pattern_eval(const struct pattern *p, const struct pattern_msg *m,
                 void *ctx, struct err *e)
{
    struct eval st;
    struct err local;
    int r;

    memset(&st, 0, sizeof(st));
    st.ops = m->ops;
    st.msg = m->msg;
    st.ctx = ctx;
    st.e = e ? e : &local;
    err_clear(st.e);
    buf_init(&st.headers, 0);
    buf_init(&st.body, 0);
    r = eval_node(p->root, &st);
    buf_free(&st.headers);
    buf_free(&st.body);
    return r;
}

bool pattern_match(const struct pattern *p, const struct pattern_msg *m,
                   void *ctx)
{
    return pattern_eval(p, m, ctx, NULL) == 1;
}
