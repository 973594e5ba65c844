#include "charset.h"

#include <errno.h>
#include <stdint.h>
#include <iconv.h>
#include <string.h>
#include <strings.h>

#define CHARSET_NAME_MAX 48
#define CHARSET_FALLBACK_NAME "CP1252"

static const char CHARSET_REPL[] = "\xef\xbf\xbd";

struct charset_alias {
    const char *label;
    const char *iconv_name;
};

static const struct charset_alias charset_aliases[] = {
    {"utf8", "UTF-8"},
    {"utf-8", "UTF-8"},
    {"unicode-1-1-utf-8", "UTF-8"},
    {"us-ascii", "UTF-8"},
    {"ascii", "UTF-8"},
    {"ansi_x3.4-1968", "UTF-8"},
    {"us", "UTF-8"},
    {"iso-8859-1", CHARSET_FALLBACK_NAME},  /* superset, as browsers do */
    {"iso8859-1", CHARSET_FALLBACK_NAME},
    {"iso_8859-1", CHARSET_FALLBACK_NAME},
    {"latin1", CHARSET_FALLBACK_NAME},
    {"latin-1", CHARSET_FALLBACK_NAME},
    {"l1", CHARSET_FALLBACK_NAME},
    {"windows-1252", CHARSET_FALLBACK_NAME},
    {"cp1252", CHARSET_FALLBACK_NAME},
    {"x-user-defined", CHARSET_FALLBACK_NAME},
    {"unknown-8bit", CHARSET_FALLBACK_NAME},
    {"x-unknown", CHARSET_FALLBACK_NAME},
    {"iso-8859-15", "ISO-8859-15"},
    {"latin9", "ISO-8859-15"},
    {"latin-9", "ISO-8859-15"},
    {"iso-8859-8-i", "ISO-8859-8"},
    {"iso-8859-6-i", "ISO-8859-6"},
    {"x-sjis", "SHIFT_JIS"},
    {"shift-jis", "SHIFT_JIS"},
    {"sjis", "SHIFT_JIS"},
    {"ms_kanji", "CP932"},
    {"gb2312", "GB18030"},
    {"gbk", "GB18030"},
    {"x-gbk", "GB18030"},
    {"cp936", "GB18030"},
    {"ks_c_5601-1987", "CP949"},
    {"euc-kr", "CP949"},
    {"big5", "BIG5-HKSCS"},
    {"x-mac-roman", "MACINTOSH"},
    {"macintosh", "MACINTOSH"},
    {"utf-7", "UTF-7"},
    {"unicode-1-1-utf-7", "UTF-7"},
    {"koi8r", "KOI8-R"},
    {"tis-620", "CP874"},
};

static bool charset_name_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == ':';
}

/* Trim quotes/blanks, drop "*lang", lower-case; false if unsafe/empty. */
static bool charset_clean(const char *name, char *dst, size_t dstsz)
{
    size_t n = 0;
    const char *p = name;

    while (*p == ' ' || *p == '\t' || *p == '"' || *p == '\'')
        p++;
    for (; *p && *p != '*' && *p != '"' && *p != '\'' && *p != ' ' && *p != '\t'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (!charset_name_char_ok(c) || n + 1 >= dstsz)
            return false;
        dst[n++] = (char)c;
    }
    dst[n] = '\0';
    return n > 0;
}

bool charset_normalize(const char *name, char *dst, size_t dstsz)
{
    char tmp[CHARSET_NAME_MAX];
    size_t i, n;

    if (dstsz == 0)
        return false;
    dst[0] = '\0';
    if (!name || !charset_clean(name, tmp, sizeof tmp))
        return false;
    for (i = 0; i < ARRAY_LEN(charset_aliases); i++) {
        if (strcmp(tmp, charset_aliases[i].label) == 0) {
            n = strlen(charset_aliases[i].iconv_name);
            if (n + 1 > dstsz)
                return false;
            memcpy(dst, charset_aliases[i].iconv_name, n + 1);
            return true;
        }
    }
    n = strlen(tmp);
    if (n + 1 > dstsz)
        return false;
    for (i = 0; i <= n; i++)
        dst[i] = (tmp[i] >= 'a' && tmp[i] <= 'z') ? (char)(tmp[i] - 'a' + 'A') : tmp[i];
    return true;
}

bool charset_is_utf8_name(const char *name)
{
    char canon[CHARSET_NAME_MAX];

    if (!name || !*name)
        return true;
    return charset_normalize(name, canon, sizeof canon) && strcmp(canon, "UTF-8") == 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t charset_utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0;
    if (len < n)
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

bool charset_valid_utf8(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n = charset_utf8_seq(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* Copy UTF-8, replacing invalid sequences (and NUL if nul_repl) by U+FFFD. */
static int charset_copy_utf8(const char *in, size_t len, bool nul_repl,
                             struct buf *out, unsigned *flags)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t i = 0, run = 0;

    while (i < len) {
        size_t n = charset_utf8_seq(p + i, len - i);
        if (n > 0 && !(nul_repl && p[i] == 0)) {
            i += n;
            continue;
        }
        if (buf_append(out, in + run, i - run) < 0 || buf_puts(out, CHARSET_REPL) < 0)
            return -1;
        if (n == 0)
            *flags |= CHARSET_REPLACED;
        i++;
        run = i;
    }
    return buf_append(out, in + run, len - run);
}

/* Handles one iconv error: returns 1 to go on, 0 at end, -1 on ceiling. */
static int charset_iconv_error(char **ip, size_t *ileft, unsigned *flags, struct buf *out)
{
    if (errno == EILSEQ || errno == EINVAL) {
        *flags |= CHARSET_REPLACED;
        if (buf_puts(out, CHARSET_REPL) < 0)
            return -1;
        if (errno == EINVAL) {
            *ileft = 0;
            return 0;
        }
        (*ip)++;
        (*ileft)--;
        return 1;
    }
    return 1;   /* E2BIG: the caller flushes and continues */
}

static int charset_iconv_run(iconv_t cd, const char *in, size_t len,
                             struct buf *out, unsigned *flags)
{
    char *ip = (char *)(uintptr_t)in;
    size_t ileft = len;
    char tmp[4096];

    while (ileft > 0) {
        char *op = tmp;
        size_t oleft = sizeof tmp;
        size_t r = iconv(cd, &ip, &ileft, &op, &oleft);
        int saved = errno;
        if (buf_append(out, tmp, sizeof tmp - oleft) < 0)
            return -1;
        if (r != (size_t)-1)
            break;
        errno = saved;
        if (charset_iconv_error(&ip, &ileft, flags, out) < 0)
            return -1;
    }
    return 0;
}

static int charset_iconv(const char *canon, const char *in, size_t len,
                         struct buf *out, unsigned *flags)
{
    iconv_t cd = iconv_open("UTF-8", canon);
    int rc;

    if (cd == (iconv_t)-1) {
        *flags |= CHARSET_FALLBACK;
        cd = iconv_open("UTF-8", CHARSET_FALLBACK_NAME);
        if (cd == (iconv_t)-1)
            die("charset: iconv cannot convert from %s", CHARSET_FALLBACK_NAME);
    }
    rc = charset_iconv_run(cd, in, len, out, flags);
    iconv_close(cd);
    return rc;
}

int charset_to_utf8(const char *charset, const char *in, size_t len,
                    struct buf *out, unsigned *flags)
{
    char canon[CHARSET_NAME_MAX];
    unsigned dummy = 0;

    if (!flags)
        flags = &dummy;
    if (!charset || !*charset)
        return charset_copy_utf8(in, len, false, out, flags);
    if (!charset_normalize(charset, canon, sizeof canon)) {
        *flags |= CHARSET_FALLBACK;
        return charset_iconv(CHARSET_FALLBACK_NAME, in, len, out, flags);
    }
    if (strcmp(canon, "UTF-8") == 0)
        return charset_copy_utf8(in, len, false, out, flags);
    return charset_iconv(canon, in, len, out, flags);
}

int charset_fix_utf8(const char *in, size_t len, struct buf *out, unsigned *flags)
{
    unsigned dummy = 0;
    struct buf tmp = BUF_INIT;
    int rc;

    if (!flags)
        flags = &dummy;
    if (charset_valid_utf8(in, len))
        return charset_copy_utf8(in, len, true, out, flags);
    rc = charset_iconv(CHARSET_FALLBACK_NAME, in, len, &tmp, flags);
    if (rc == 0)
        rc = charset_copy_utf8(buf_cstr(&tmp), tmp.len, true, out, flags);
    buf_free(&tmp);
    return rc;
}

char *charset_fix_utf8_str(const char *in, size_t len)
{
    struct buf b = BUF_INIT;

    if (charset_fix_utf8(in, len, &b, NULL) < 0)
        die("charset: unbounded buffer refused an append");
    return buf_steal(&b, NULL);
}
