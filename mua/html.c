/* html: a linear-time HTML-to-text converter (no element stack, no recursion). */
#include "html.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "sanitize.h"

#define HTML_LIST_INDENT_MAX 8     /* nesting levels that still indent a bullet */
#define HTML_BREAKS_MAX 3          /* consecutive newlines from <br> runs */
#define HTML_NAME_MAX 32           /* longest tag or entity name we look at */
#define CP_NONE 0xFFFFFFFFu        /* entity that produces nothing (&shy;) */
#define CP_REPLACEMENT 0xFFFDu

/* ---- entities ----------------------------------------------------------- */

/* U+00A0..U+00FF in order. */
static const char *const latin1_names[96] = {
    "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect",
    "uml", "copy", "ordf", "laquo", "not", "shy", "reg", "macr",
    "deg", "plusmn", "sup2", "sup3", "acute", "micro", "para", "middot",
    "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
    "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil",
    "Egrave", "Eacute", "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml",
    "ETH", "Ntilde", "Ograve", "Oacute", "Ocirc", "Otilde", "Ouml", "times",
    "Oslash", "Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute", "THORN", "szlig",
    "agrave", "aacute", "acirc", "atilde", "auml", "aring", "aelig", "ccedil",
    "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc", "iuml",
    "eth", "ntilde", "ograve", "oacute", "ocirc", "otilde", "ouml", "divide",
    "oslash", "ugrave", "uacute", "ucirc", "uuml", "yacute", "thorn", "yuml",
};

struct named_entity {
    const char *name;
    uint32_t cp;
};

static const struct named_entity other_entities[] = {
    {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''},
    {"hellip", 0x2026}, {"mdash", 0x2014}, {"ndash", 0x2013},
    {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"sbquo", 0x201A},
    {"ldquo", 0x201C}, {"rdquo", 0x201D}, {"bdquo", 0x201E},
    {"lsaquo", 0x2039}, {"rsaquo", 0x203A}, {"euro", 0x20AC},
    {"trade", 0x2122}, {"bull", 0x2022}, {"dagger", 0x2020},
    {"Dagger", 0x2021}, {"permil", 0x2030}, {"prime", 0x2032},
    {"Prime", 0x2033}, {"oline", 0x203E}, {"frasl", 0x2044},
    {"ensp", 0x2002}, {"emsp", 0x2003}, {"thinsp", 0x2009},
    {"zwnj", 0x200C}, {"zwj", 0x200D}, {"lrm", 0x200E}, {"rlm", 0x200F},
    {"OElig", 0x0152}, {"oelig", 0x0153}, {"Scaron", 0x0160},
    {"scaron", 0x0161}, {"Yuml", 0x0178}, {"fnof", 0x0192},
    {"circ", 0x02C6}, {"tilde", 0x02DC}, {"larr", 0x2190},
    {"uarr", 0x2191}, {"rarr", 0x2192}, {"darr", 0x2193},
    {"harr", 0x2194}, {"lArr", 0x21D0}, {"rArr", 0x21D2},
    {"hArr", 0x21D4}, {"minus", 0x2212}, {"le", 0x2264}, {"ge", 0x2265},
    {"ne", 0x2260}, {"asymp", 0x2248}, {"infin", 0x221E},
    {"hearts", 0x2665}, {"spades", 0x2660}, {"clubs", 0x2663},
    {"diams", 0x2666}, {"loz", 0x25CA}, {"check", 0x2713},
};

/* HTML's reading of &#128;..&#159; as Windows-1252 (0: undefined). */
static const uint16_t cp1252_c1[32] = {
    0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
    0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
};

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
    return is_alpha(c) || is_digit(c);
}

static int hex_value(char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static uint32_t lookup_entity(const char *name, size_t n)
{
    for (size_t i = 0; i < ARRAY_LEN(latin1_names); i++)
        if (strlen(latin1_names[i]) == n && memcmp(latin1_names[i], name, n) == 0)
            return i == 0x0D ? CP_NONE : 0xA0 + (uint32_t)i;   /* &shy; is invisible */
    for (size_t i = 0; i < ARRAY_LEN(other_entities); i++)
        if (strlen(other_entities[i].name) == n && memcmp(other_entities[i].name, name, n) == 0)
            return other_entities[i].cp;
    return 0;
}

/* A numeric reference's value as something safe to output. */
static uint32_t numeric_cp(uint32_t v)
{
    if (v >= 0x80 && v <= 0x9F)
        return cp1252_c1[v - 0x80] ? cp1252_c1[v - 0x80] : CP_REPLACEMENT;
    if (v == '\t' || v == '\n' || v == '\r' || v == '\f')
        return v;
    if (v < 0x20 || v == 0x7F || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) ||
        (v >= 0xFDD0 && v <= 0xFDEF) || (v & 0xFFFE) == 0xFFFE)
        return CP_REPLACEMENT;
    return v;
}

/* s[0..n) follows a '&'.  Returns how many bytes after the '&' form an
 * entity (0: none, the '&' is literal) and its code point in *cp. */
static size_t parse_entity(const char *s, size_t n, uint32_t *cp)
{
    size_t i = 0;

    if (n > 0 && s[0] == '#') {
        bool hex = n > 1 && (s[1] == 'x' || s[1] == 'X');
        uint32_t v = 0;
        size_t start;

        i = hex ? 2 : 1;
        start = i;
        for (; i < n; i++) {
            int d = hex ? hex_value(s[i]) : (is_digit(s[i]) ? s[i] - '0' : -1);
            if (d < 0)
                break;
            v = v > 0x10FFFF ? v : v * (hex ? 16u : 10u) + (uint32_t)d;   /* saturates */
        }
        if (i == start)
            return 0;
        if (i < n && s[i] == ';')
            i++;
        *cp = numeric_cp(v);
        return i;
    }
    while (i < n && i <= HTML_NAME_MAX && is_alnum(s[i]))
        i++;
    if (i == 0 || i > HTML_NAME_MAX)
        return 0;
    *cp = lookup_entity(s, i);
    if (*cp == 0)
        return 0;
    if (i < n && s[i] == ';')
        i++;
    return i;
}

static size_t utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the character at s (valid UTF-8), or 0 with *bad set. */
static size_t utf8_char(const char *s, size_t n, size_t *bad)
{
    uint32_t cp;
    int k = sanitize_utf8_next(s, n, &cp);

    if (k < 0) {
        *bad = (size_t)-k;
        return 0;
    }
    if (cp >= 0x80 && cp <= 0x9F) {   /* C1 controls: never output */
        *bad = (size_t)k;
        return 0;
    }
    return (size_t)k;
}

/* ---- tags --------------------------------------------------------------- */

enum tag_kind {
    T_OTHER = 0,
    T_A, T_IMG, T_BR, T_P, T_BLOCK, T_LI, T_LIST, T_BQ, T_PRE, T_HR, T_CELL,
    T_HEAD, T_BODY,
    T_RAW,       /* content skipped up to the matching end tag */
    T_META,      /* void, allowed in <head> */
};

struct tag_def {
    const char *name;
    enum tag_kind kind;
};

static const struct tag_def tag_defs[] = {
    {"a", T_A}, {"img", T_IMG}, {"br", T_BR},
    {"p", T_P}, {"h1", T_P}, {"h2", T_P}, {"h3", T_P}, {"h4", T_P}, {"h5", T_P}, {"h6", T_P},
    {"div", T_BLOCK}, {"tr", T_BLOCK}, {"table", T_BLOCK}, {"caption", T_BLOCK},
    {"dl", T_BLOCK}, {"dt", T_BLOCK}, {"dd", T_BLOCK}, {"address", T_BLOCK},
    {"article", T_BLOCK}, {"aside", T_BLOCK}, {"center", T_BLOCK}, {"details", T_BLOCK},
    {"summary", T_BLOCK}, {"fieldset", T_BLOCK}, {"figure", T_BLOCK},
    {"figcaption", T_BLOCK}, {"footer", T_BLOCK}, {"form", T_BLOCK}, {"header", T_BLOCK},
    {"main", T_BLOCK}, {"nav", T_BLOCK}, {"section", T_BLOCK}, {"legend", T_BLOCK},
    {"li", T_LI}, {"ul", T_LIST}, {"ol", T_LIST}, {"menu", T_LIST}, {"dir", T_LIST},
    {"blockquote", T_BQ}, {"pre", T_PRE}, {"listing", T_PRE}, {"hr", T_HR},
    {"td", T_CELL}, {"th", T_CELL},
    {"head", T_HEAD}, {"body", T_BODY},
    {"script", T_RAW}, {"style", T_RAW}, {"title", T_RAW}, {"template", T_RAW},
    {"iframe", T_RAW}, {"noframes", T_RAW}, {"noembed", T_RAW},
    {"meta", T_META}, {"link", T_META}, {"base", T_META}, {"noscript", T_META},
};

static enum tag_kind tag_lookup(const char *name, size_t n)
{
    for (size_t i = 0; n <= HTML_NAME_MAX && i < ARRAY_LEN(tag_defs); i++)
        if (strlen(tag_defs[i].name) == n && strncasecmp(tag_defs[i].name, name, n) == 0)
            return tag_defs[i].kind;
    return T_OTHER;
}

/* ---- output state ------------------------------------------------------- */

struct hs {
    struct buf *out;
    bool failed;          /* out's ceiling was reached: append nothing more */
    bool any;             /* visible text was written */
    bool bol;             /* the output is at the start of a line */
    unsigned trailing;    /* newlines at the end of the output */
    unsigned nl;          /* newlines owed before the next text */
    bool space;           /* a collapsed space owed before the next text */
    unsigned bq, list, pre;
    unsigned gap_bq;      /* quote depth of the blank lines owed: the least
                             depth seen since they were asked for */
    bool pre_start;       /* just after <pre>: its first newline is dropped */
    bool skip_head, in_head;
    bool in_link, link_started;
    size_t link_start;    /* offset in out of the link's text */
    struct buf href;
};

static void raw(struct hs *st, const char *s, size_t n)
{
    if (!st->failed && buf_append(st->out, s, n) < 0)
        st->failed = true;
}

static void quote_prefix(struct hs *st, unsigned depth, bool full)
{
    unsigned n = depth < HTML_QUOTE_MAX ? depth : HTML_QUOTE_MAX;

    for (unsigned i = 0; i < n; i++)
        raw(st, (i + 1 < n || full) ? "> " : ">", (i + 1 < n || full) ? 2 : 1);
}

/* Write what is owed (newlines, quote prefix, a space) before text. */
static void flush(struct hs *st)
{
    if (!st->any)
        st->nl = 0;
    for (; st->nl > 0; st->nl--) {
        if (st->bol)
            quote_prefix(st, st->gap_bq, false);
        raw(st, "\n", 1);
        st->bol = true;
        st->trailing++;
    }
    if (st->bol) {
        quote_prefix(st, st->bq, true);
        st->bol = false;
    } else if (st->space) {
        raw(st, " ", 1);
    }
    st->space = false;
}

static void put_text(struct hs *st, const char *s, size_t n)
{
    if (n == 0)
        return;
    flush(st);
    if (st->in_link && !st->link_started) {
        st->link_start = st->out->len;
        st->link_started = true;
    }
    raw(st, s, n);
    st->any = true;
    st->trailing = 0;
}

static void put_cp(struct hs *st, uint32_t cp)
{
    char u[4];
    put_text(st, u, utf8_encode(cp, u));
}

/* Make sure at least `want` newlines separate what was written from what
 * comes next (1: a line break, 2: a blank line). */
static void owe_newlines(struct hs *st, unsigned n)
{
    if (st->nl == 0)
        st->gap_bq = st->bq;
    st->nl += n;
}

static void brk(struct hs *st, unsigned want)
{
    unsigned have = st->trailing + st->nl;

    if (st->any && have < want)
        owe_newlines(st, want - have);
}

static void line_break(struct hs *st, bool cap)
{
    if (st->any && (!cap || st->trailing + st->nl < HTML_BREAKS_MAX))
        owe_newlines(st, 1);
}

static void set_quote_depth(struct hs *st, unsigned bq)
{
    st->bq = bq;
    if (st->nl > 0 && bq < st->gap_bq)
        st->gap_bq = bq;
}

static void whitespace(struct hs *st, char c)
{
    if (!st->pre) {
        st->space = true;
    } else if (c == '\n') {
        line_break(st, false);
    } else if (c == '\t') {
        put_text(st, "\t", 1);
    } else if (c != '\r') {
        put_text(st, " ", 1);
    }
}

/* ---- attributes --------------------------------------------------------- */

/* Append the entity-decoded value s[0..n) to out (which starts empty):
 * whitespace runs become one space, or vanish when drop_ws; controls and
 * bad UTF-8 become U+FFFD. */
static int attr_decode(const char *s, size_t n, bool drop_ws, struct buf *out)
{
    static const char repl[] = "\xEF\xBF\xBD";
    bool space = false;
    size_t i = 0;

    while (i < n) {
        char u[4];
        const char *piece = u;
        size_t plen, adv = 1, k, bad = 0;
        uint32_t cp;

        if (is_ws(s[i])) {
            space = true;
            i++;
            continue;
        }
        if (s[i] == '&' && (k = parse_entity(s + i + 1, n - i - 1, &cp)) > 0) {
            i += k + 1;
            if (cp == CP_NONE)
                continue;
            if (cp == 0xA0 || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f') {
                space = true;
                continue;
            }
            plen = utf8_encode(cp, u);
            adv = 0;
        } else if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F) {
            piece = repl;
            plen = 3;
        } else if ((unsigned char)s[i] < 0x80) {
            piece = s + i;
            plen = 1;
        } else if ((k = utf8_char(s + i, n - i, &bad)) > 0) {
            piece = s + i;
            plen = adv = k;
        } else {
            piece = repl;
            plen = 3;
            adv = bad;
        }
        if (space && !drop_ws && out->len > 0 && buf_putc(out, ' ') < 0)
            return -1;
        space = false;
        if (buf_append(out, piece, plen) < 0)
            return -1;
        i += adv;
    }
    return 0;
}

/* ---- elements ----------------------------------------------------------- */

struct attrs {
    const char *href, *alt;
    size_t href_len, alt_len;
};

static void finish_link(struct hs *st)
{
    const char *href = buf_cstr(&st->href), *text = "";
    size_t hlen = st->href.len, tlen = 0;

    if (!st->in_link)
        return;
    st->in_link = false;
    if (st->failed || hlen == 0 || href[0] == '#')
        return;
    if (st->link_started) {
        text = st->out->data + st->link_start;
        tlen = st->out->len - st->link_start;
    }
    while (tlen > 0 && *text == ' ') {
        text++;
        tlen--;
    }
    while (tlen > 0 && text[tlen - 1] == ' ')
        tlen--;
    if (tlen == hlen && memcmp(text, href, hlen) == 0)
        return;
    if (hlen > 7 && strncasecmp(href, "mailto:", 7) == 0 && tlen == hlen - 7 &&
        memcmp(text, href + 7, tlen) == 0)
        return;
    if (tlen > 0)
        st->space = true;
    put_text(st, "<", 1);
    put_text(st, href, hlen);
    put_text(st, ">", 1);
}

static void bullet(struct hs *st)
{
    static const char indent[] = "                ";   /* 2 * HTML_LIST_INDENT_MAX */
    unsigned depth = st->list < HTML_LIST_INDENT_MAX ? st->list : HTML_LIST_INDENT_MAX;

    brk(st, 1);
    st->space = false;
    flush(st);
    if (depth > 1)
        raw(st, indent, 2 * (size_t)(depth - 1));
    put_text(st, "*", 1);
    st->space = true;
}

static void start_tag(struct hs *st, enum tag_kind kind, const struct attrs *a)
{
    if (st->in_head) {
        if (kind == T_RAW || kind == T_META || kind == T_HEAD)
            return;
        st->in_head = false;
    }
    switch (kind) {
    case T_A:
        finish_link(st);
        if (a->href) {
            buf_reset(&st->href);
            if (attr_decode(a->href, a->href_len, true, &st->href) == 0) {
                st->in_link = true;
                st->link_started = false;
            }
        }
        break;
    case T_IMG:
        if (a->alt) {
            struct buf alt = BUF_INIT;
            if (attr_decode(a->alt, a->alt_len, false, &alt) == 0 && alt.len > 0) {
                put_text(st, "[image: ", 8);
                put_text(st, alt.data, alt.len);
                put_text(st, "]", 1);
            }
            buf_free(&alt);
        }
        break;
    case T_BR:
        line_break(st, true);
        break;
    case T_P:
        brk(st, 2);
        break;
    case T_BLOCK:
        brk(st, 1);
        break;
    case T_LI:
        bullet(st);
        break;
    case T_LIST:
        brk(st, 1);
        if (st->list < UINT32_MAX)
            st->list++;
        break;
    case T_BQ:
        brk(st, 1);
        if (st->bq < UINT32_MAX)
            set_quote_depth(st, st->bq + 1);
        break;
    case T_PRE:
        brk(st, 1);
        if (st->pre < UINT32_MAX)
            st->pre++;
        st->pre_start = true;
        break;
    case T_HR:
        brk(st, 1);
        put_text(st, "--------------------", 20);
        brk(st, 1);
        break;
    case T_CELL:
        st->space = true;
        break;
    case T_HEAD:
        if (st->skip_head && !st->any)
            st->in_head = true;
        break;
    case T_BODY:
    case T_RAW:
    case T_META:
    case T_OTHER:
        break;
    }
}

static void end_tag(struct hs *st, enum tag_kind kind)
{
    switch (kind) {
    case T_A:
        finish_link(st);
        break;
    case T_BR:
        line_break(st, true);   /* "</br>" is read as <br>, as browsers do */
        break;
    case T_P:
        brk(st, 2);
        break;
    case T_BLOCK:
    case T_LI:
        brk(st, 1);
        break;
    case T_LIST:
        brk(st, 1);
        if (st->list)
            st->list--;
        break;
    case T_BQ:
        brk(st, 1);
        if (st->bq)
            set_quote_depth(st, st->bq - 1);
        break;
    case T_PRE:
        brk(st, 1);
        if (st->pre)
            st->pre--;
        st->pre_start = false;
        break;
    case T_CELL:
        st->space = true;
        break;
    case T_HEAD:
        st->in_head = false;
        break;
    case T_IMG:
    case T_HR:
    case T_BODY:
    case T_RAW:
    case T_META:
    case T_OTHER:
        break;
    }
}

/* ---- the scanner -------------------------------------------------------- */

static bool has_prefix_ci(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && strncasecmp(s, prefix, k) == 0;
}

/* Index just past the first `needle` at or after from, or n. */
static size_t skip_past(const char *s, size_t n, size_t from, const char *needle)
{
    size_t k = strlen(needle);
    const char *p = from < n ? memmem(s + from, n - from, needle, k) : NULL;
    return p ? (size_t)(p - s) + k : n;
}

static bool ends_name(char c)
{
    return is_ws(c) || c == '/' || c == '>';
}

/* Start of the first "</name" (any case, followed by a name end) at or after
 * from, or n. */
static size_t find_end_tag(const char *s, size_t n, size_t from, const char *name, size_t nlen)
{
    while (from < n) {
        const char *lt = memchr(s + from, '<', n - from);
        size_t k;

        if (!lt)
            break;
        k = (size_t)(lt - s);
        if (n - k >= 2 + nlen && s[k + 1] == '/' && strncasecmp(s + k + 2, name, nlen) == 0 &&
            (k + 2 + nlen == n || ends_name(s[k + 2 + nlen])))
            return k;
        from = k + 1;
    }
    return n;
}

/* Markup declarations and processing instructions at s[i] == '<', s[i+1]
 * one of '!' '?': skipped entirely.  Returns the next index. */
static size_t skip_declaration(const char *s, size_t n, size_t i)
{
    if (has_prefix_ci(s + i, n - i, "<!--")) {
        size_t j = i + 4;
        if (j < n && s[j] == '>')                       /* "<!-->" */
            return j + 1;
        if (n - j >= 2 && s[j] == '-' && s[j + 1] == '>')   /* "<!--->" */
            return j + 2;
        return skip_past(s, n, j, "-->");
    }
    if (has_prefix_ci(s + i, n - i, "<![CDATA["))
        return skip_past(s, n, i + 9, "]]>");
    return skip_past(s, n, i + 2, ">");
}

/* Parse the attributes of a start tag from s[i]; returns the index after
 * the closing '>', or n when the tag never closes (it is then dropped:
 * *closed is false). */
static size_t parse_attrs(const char *s, size_t n, size_t i, struct attrs *a, bool *closed)
{
    *closed = false;
    while (i < n) {
        size_t name, name_len, vstart = 0, vlen = 0;
        bool has_value = false;

        while (i < n && (is_ws(s[i]) || s[i] == '/'))
            i++;
        if (i >= n)
            break;
        if (s[i] == '>') {
            *closed = true;
            return i + 1;
        }
        name = i++;   /* the first character may be anything, even '=' */
        while (i < n && !is_ws(s[i]) && s[i] != '/' && s[i] != '>' && s[i] != '=')
            i++;
        name_len = i - name;
        while (i < n && is_ws(s[i]))
            i++;
        if (i < n && s[i] == '=') {
            i++;
            while (i < n && is_ws(s[i]))
                i++;
            if (i < n && (s[i] == '"' || s[i] == '\'')) {
                const char *q = memchr(s + i + 1, s[i], n - i - 1);
                if (!q)
                    return n;
                vstart = i + 1;
                vlen = (size_t)(q - s) - vstart;
                i = (size_t)(q - s) + 1;
            } else {
                vstart = i;
                while (i < n && !is_ws(s[i]) && s[i] != '>')
                    i++;
                vlen = i - vstart;
            }
            has_value = true;
        }
        if (!has_value)
            continue;
        if (name_len == 4 && strncasecmp(s + name, "href", 4) == 0 && !a->href) {
            a->href = s + vstart;
            a->href_len = vlen;
        } else if (name_len == 3 && strncasecmp(s + name, "alt", 3) == 0 && !a->alt) {
            a->alt = s + vstart;
            a->alt_len = vlen;
        }
    }
    return n;
}

/* s[i] == '<'.  Returns the index to go on from. */
static size_t tag(struct hs *st, const char *s, size_t n, size_t i)
{
    size_t j = i + 1, name, nlen;
    bool end = false, closed;
    enum tag_kind kind;
    struct attrs a = {NULL, NULL, 0, 0};

    if (j < n && (s[j] == '!' || s[j] == '?'))
        return skip_declaration(s, n, i);
    if (j < n && s[j] == '/') {
        end = true;
        j++;
        if (j < n && s[j] == '>')
            return j + 1;                    /* "</>" */
        if (j < n && !is_alpha(s[j]))
            return skip_past(s, n, j, ">");  /* "</ junk>": a bogus comment */
    }
    if (j >= n)
        return n;
    if (!is_alpha(s[j])) {                   /* "a < b": text */
        if (!st->in_head)
            put_text(st, "<", 1);
        return i + 1;
    }
    name = j;
    while (j < n && !ends_name(s[j]))
        j++;
    nlen = j - name;
    kind = tag_lookup(s + name, nlen);
    if (end) {
        end_tag(st, kind);
        return skip_past(s, n, j, ">");
    }
    j = parse_attrs(s, n, j, &a, &closed);
    if (!closed)
        return n;
    start_tag(st, kind, &a);
    return kind == T_RAW ? find_end_tag(s, n, j, s + name, nlen) : j;
}

/* Text outside tags, from s[i]; returns the index to go on from. */
static size_t text(struct hs *st, const char *s, size_t n, size_t i)
{
    static const char repl[] = "\xEF\xBF\xBD";
    char c = s[i];
    size_t k, bad = 0;
    uint32_t cp;

    if (st->pre_start && c != '\r') {
        st->pre_start = false;
        if (c == '\n')
            return i + 1;
    }
    if (is_ws(c)) {
        whitespace(st, c);
        return i + 1;
    }
    if (c == '&') {
        k = parse_entity(s + i + 1, n - i - 1, &cp);
        if (k == 0) {
            put_text(st, "&", 1);
            return i + 1;
        }
        if (cp == 0xA0)
            put_text(st, " ", 1);     /* a space that does not collapse */
        else if (cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f')
            whitespace(st, (char)cp);
        else if (cp != CP_NONE)
            put_cp(st, cp);
        return i + 1 + k;
    }
    if ((unsigned char)c < 0x20 || c == 0x7F) {
        put_text(st, repl, 3);
        return i + 1;
    }
    if ((unsigned char)c < 0x80) {
        k = i + 1;
        while (k < n && (unsigned char)s[k] > 0x20 && (unsigned char)s[k] < 0x7F &&
               s[k] != '<' && s[k] != '&')
            k++;
        put_text(st, s + i, k - i);
        return k;
    }
    k = utf8_char(s + i, n - i, &bad);
    if (k == 0) {
        put_text(st, repl, 3);
        return i + bad;
    }
    put_text(st, s + i, k);
    return i + k;
}

static void convert(struct hs *st, const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && !st->failed) {
        if (s[i] == '<') {
            i = tag(st, s, n, i);
        } else if (st->in_head) {
            const char *lt = memchr(s + i, '<', n - i);
            i = lt ? (size_t)(lt - s) : n;
        } else {
            i = text(st, s, n, i);
        }
    }
    finish_link(st);
    if (st->any && !st->bol)
        raw(st, "\n", 1);
}

int html_to_text(const char *html, size_t len, struct buf *out)
{
    size_t start = out->len;
    struct hs st;
    bool retry;

    if (!html)
        len = 0;
    memset(&st, 0, sizeof st);
    st.out = out;
    st.bol = true;
    st.skip_head = true;
    buf_init(&st.href, 0);
    convert(&st, html, len);
    /* A <head> that never ended hid everything: show the document again
     * without skipping it. */
    retry = !st.failed && !st.any && st.in_head;
    buf_free(&st.href);
    if (retry) {
        buf_truncate(out, start);
        memset(&st, 0, sizeof st);
        st.out = out;
        st.bol = true;
        buf_init(&st.href, 0);
        convert(&st, html, len);
        buf_free(&st.href);
    }
    return st.failed ? -1 : 0;
}
