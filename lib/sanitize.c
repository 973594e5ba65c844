/* sanitize: untrusted bytes to terminal-safe UTF-8 or log-safe ASCII. */
#include "sanitize.h"

#include <stdio.h>
#include <string.h>

struct range {
    uint32_t lo, hi;
};

/* Zero-width: combining marks of the common scripts, zero-width spaces and
 * joiners, variation selectors, Hangul medial/final jamo. */
static const struct range zero_width[] = {
    {0x0300, 0x036F}, {0x0483, 0x0489}, {0x0591, 0x05BD}, {0x05BF, 0x05BF},
    {0x05C1, 0x05C2}, {0x05C4, 0x05C5}, {0x05C7, 0x05C7}, {0x0610, 0x061A},
    {0x064B, 0x065F}, {0x0670, 0x0670}, {0x06D6, 0x06DC}, {0x06DF, 0x06E4},
    {0x06E7, 0x06E8}, {0x06EA, 0x06ED}, {0x0711, 0x0711}, {0x0730, 0x074A},
    {0x07A6, 0x07B0}, {0x07EB, 0x07F3}, {0x0816, 0x0819}, {0x081B, 0x0823},
    {0x0825, 0x0827}, {0x0829, 0x082D}, {0x0859, 0x085B}, {0x0898, 0x089F},
    {0x08CA, 0x08E1}, {0x08E3, 0x0902}, {0x093A, 0x093A}, {0x093C, 0x093C},
    {0x0941, 0x0948}, {0x094D, 0x094D}, {0x0951, 0x0957}, {0x0962, 0x0963},
    {0x0981, 0x0981}, {0x09BC, 0x09BC}, {0x09C1, 0x09C4}, {0x09CD, 0x09CD},
    {0x09E2, 0x09E3}, {0x0A01, 0x0A02}, {0x0A3C, 0x0A3C}, {0x0A41, 0x0A51},
    {0x0A70, 0x0A71}, {0x0A75, 0x0A75}, {0x0A81, 0x0A82}, {0x0ABC, 0x0ABC},
    {0x0AC1, 0x0AC8}, {0x0ACD, 0x0ACD}, {0x0AE2, 0x0AE3}, {0x0B01, 0x0B01},
    {0x0B3C, 0x0B3C}, {0x0B3F, 0x0B3F}, {0x0B41, 0x0B44}, {0x0B4D, 0x0B4D},
    {0x0B82, 0x0B82}, {0x0BC0, 0x0BC0}, {0x0BCD, 0x0BCD}, {0x0C00, 0x0C00},
    {0x0C3E, 0x0C40}, {0x0C46, 0x0C56}, {0x0CBC, 0x0CBC}, {0x0CCC, 0x0CCD},
    {0x0D41, 0x0D44}, {0x0D4D, 0x0D4D}, {0x0DCA, 0x0DCA}, {0x0DD2, 0x0DD6},
    {0x0E31, 0x0E31}, {0x0E34, 0x0E3A}, {0x0E47, 0x0E4E}, {0x0EB1, 0x0EB1},
    {0x0EB4, 0x0EBC}, {0x0EC8, 0x0ECE}, {0x0F18, 0x0F19}, {0x0F35, 0x0F35},
    {0x0F37, 0x0F37}, {0x0F39, 0x0F39}, {0x0F71, 0x0F7E}, {0x0F80, 0x0F84},
    {0x0F86, 0x0F87}, {0x0F8D, 0x0FBC}, {0x102D, 0x1030}, {0x1032, 0x1037},
    {0x1039, 0x103A}, {0x1160, 0x11FF}, {0x135D, 0x135F}, {0x1712, 0x1714},
    {0x17B4, 0x17B5}, {0x17B7, 0x17BD}, {0x17C6, 0x17C6}, {0x17C9, 0x17D3},
    {0x180B, 0x180F}, {0x1AB0, 0x1AFF}, {0x1B00, 0x1B03}, {0x1B34, 0x1B34},
    {0x1DC0, 0x1DFF}, {0x200B, 0x200F}, {0x2060, 0x2064}, {0x20D0, 0x20F0},
    {0x2CEF, 0x2CF1}, {0x2DE0, 0x2DFF}, {0x302A, 0x302D}, {0x3099, 0x309A},
    {0xA66F, 0xA672}, {0xA674, 0xA67D}, {0xA69E, 0xA69F}, {0xA6F0, 0xA6F1},
    {0xFB1E, 0xFB1E}, {0xFE00, 0xFE0F}, {0xFE20, 0xFE2F}, {0xFEFF, 0xFEFF},
    {0x1D167, 0x1D169}, {0x1D17B, 0x1D182}, {0x1E000, 0x1E02A},
    {0xE0001, 0xE0001}, {0xE0020, 0xE007F}, {0xE0100, 0xE01EF},
};

/* East Asian Wide and Fullwidth, including the emoji presentation blocks. */
static const struct range wide[] = {
    {0x1100, 0x115F}, {0x231A, 0x231B}, {0x2329, 0x232A}, {0x23E9, 0x23EC},
    {0x23F0, 0x23F0}, {0x23F3, 0x23F3}, {0x25FD, 0x25FE}, {0x2614, 0x2615},
    {0x2648, 0x2653}, {0x267F, 0x267F}, {0x2693, 0x2693}, {0x26A1, 0x26A1},
    {0x26AA, 0x26AB}, {0x26BD, 0x26BE}, {0x26C4, 0x26C5}, {0x26CE, 0x26CE},
    {0x26D4, 0x26D4}, {0x26EA, 0x26EA}, {0x26F2, 0x26F3}, {0x26F5, 0x26F5},
    {0x26FA, 0x26FA}, {0x26FD, 0x26FD}, {0x2705, 0x2705}, {0x270A, 0x270B},
    {0x2728, 0x2728}, {0x274C, 0x274C}, {0x274E, 0x274E}, {0x2753, 0x2755},
    {0x2757, 0x2757}, {0x2795, 0x2797}, {0x27B0, 0x27B0}, {0x27BF, 0x27BF},
    {0x2B1B, 0x2B1C}, {0x2B50, 0x2B50}, {0x2B55, 0x2B55}, {0x2E80, 0x303E},
    {0x3041, 0x3247}, {0x3250, 0x4DBF}, {0x4E00, 0xA4CF}, {0xA960, 0xA97F},
    {0xAC00, 0xD7A3}, {0xF900, 0xFAFF}, {0xFE10, 0xFE19}, {0xFE30, 0xFE6F},
    {0xFF00, 0xFF60}, {0xFFE0, 0xFFE6}, {0x16FE0, 0x16FE4}, {0x17000, 0x18CFF},
    {0x1B000, 0x1B2FF}, {0x1F004, 0x1F004}, {0x1F0CF, 0x1F0CF},
    {0x1F18E, 0x1F18E}, {0x1F191, 0x1F19A}, {0x1F200, 0x1F251},
    {0x1F300, 0x1F320}, {0x1F32D, 0x1F335}, {0x1F337, 0x1F37C},
    {0x1F37E, 0x1F393}, {0x1F3A0, 0x1F3CA}, {0x1F3CF, 0x1F3D3},
    {0x1F3E0, 0x1F3F0}, {0x1F3F4, 0x1F3F4}, {0x1F3F8, 0x1F43E},
    {0x1F440, 0x1F440}, {0x1F442, 0x1F4FC}, {0x1F4FF, 0x1F53D},
    {0x1F54B, 0x1F54E}, {0x1F550, 0x1F567}, {0x1F57A, 0x1F57A},
    {0x1F595, 0x1F596}, {0x1F5A4, 0x1F5A4}, {0x1F5FB, 0x1F64F},
    {0x1F680, 0x1F6C5}, {0x1F6CC, 0x1F6CC}, {0x1F6D0, 0x1F6D2},
    {0x1F6D5, 0x1F6D7}, {0x1F6DC, 0x1F6DF}, {0x1F6EB, 0x1F6EC},
    {0x1F6F4, 0x1F6FC}, {0x1F7E0, 0x1F7EB}, {0x1F7F0, 0x1F7F0},
    {0x1F90C, 0x1F93A}, {0x1F93C, 0x1F945}, {0x1F947, 0x1F9FF},
    {0x1FA70, 0x1FAFF}, {0x20000, 0x2FFFD}, {0x30000, 0x3FFFD},
};

static bool in_table(uint32_t cp, const struct range *t, size_t n)
{
    size_t lo = 0, hi = n;

    if (cp < t[0].lo || cp > t[n - 1].hi)
        return false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp > t[mid].hi)
            lo = mid + 1;
        else if (cp < t[mid].lo)
            hi = mid;
        else
            return true;
    }
    return false;
}

/* Code points that reorder or break displayed text: bidi embeddings,
 * overrides and isolates, line and paragraph separators.  (LRM/RLM U+200E/F
 * only mark direction; they are zero-width and harmless.) */
static bool is_reordering(uint32_t cp)
{
    return (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x061C;
}

int sanitize_utf8_next(const char *s, size_t len, uint32_t *cp)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char c = p[0];
    size_t need;
    uint32_t v, min;

    *cp = 0xFFFD;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1; v = c & 0x1F; min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2; v = c & 0x0F; min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3; v = c & 0x07; min = 0x10000;
    } else {
        return -1;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= len || (p[i] & 0xC0) != 0x80)
            return -(int)i;
        /* Reject at the second byte what can only be overlong, a surrogate
         * or past U+10FFFF, so the invalid subsequence is maximal. */
        if (i == 1) {
            if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) ||
                (c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))
                return -1;
        }
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF)
        return -(int)(need + 1);
    *cp = v;
    return (int)(need + 1);
}

int sanitize_cp_width(uint32_t cp)
{
    if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0))
        return -1;
    if (cp < 0x300)
        return 1;
    if (in_table(cp, zero_width, ARRAY_LEN(zero_width)))
        return 0;
    if (in_table(cp, wide, ARRAY_LEN(wide)))
        return 2;
    return 1;
}

static const char replacement[] = "\xEF\xBF\xBD";   /* U+FFFD */

int sanitize_term(struct buf *out, const char *s, size_t len, unsigned flags)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = (unsigned char)s[i];

        /* Fast path: a run of printable ASCII. */
        if (c >= 0x20 && c < 0x7F) {
            size_t j = i + 1;
            while (j < len && (unsigned char)s[j] >= 0x20 && (unsigned char)s[j] < 0x7F)
                j++;
            if (buf_append(out, s + i, j - i) < 0)
                return -1;
            i = j;
            continue;
        }
        if (c < 0x80) {
            char caret[2] = {'^', '?'};
            int rc;

            if (c == '\n' && (flags & SAN_KEEP_NEWLINE)) {
                rc = buf_putc(out, '\n');
            } else if (c == '\r' && (flags & SAN_KEEP_NEWLINE) && i + 1 < len &&
                       s[i + 1] == '\n') {
                rc = 0;   /* CR LF -> LF: drop the CR, the LF follows */
            } else if (c == '\t') {
                rc = buf_putc(out, (flags & SAN_KEEP_TAB) ? '\t' : ' ');
            } else if (c == '\n') {
                rc = buf_putc(out, ' ');
            } else {
                if (c != 0x7F)
                    caret[1] = (char)(c + '@');
                rc = buf_append(out, caret, 2);
            }
            if (rc < 0)
                return -1;
            i++;
            continue;
        }

        uint32_t cp;
        int n = sanitize_utf8_next(s + i, len - i, &cp);
        int rc;

        if (n < 0) {
            rc = buf_append(out, replacement, 3);
            n = -n;
        } else if (cp >= 0x80 && cp < 0xA0) {
            char vis[16];
            snprintf(vis, sizeof vis, "<U+%04X>", (unsigned)cp);
            rc = buf_puts(out, vis);
        } else if (is_reordering(cp)) {
            rc = buf_append(out, replacement, 3);
        } else {
            rc = buf_append(out, s + i, (size_t)n);
        }
        if (rc < 0)
            return -1;
        i += (size_t)n;
    }
    return 0;
}

char *sanitize_term_dup(const char *s, size_t len, unsigned flags)
{
    struct buf b = BUF_INIT;

    if (sanitize_term(&b, s, len, flags) < 0)
        die("sanitize_term: unbounded buffer refused data");
    return buf_steal(&b, NULL);
}

int sanitize_log(struct buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int rc;

        if (c == '\\') {
            rc = buf_append(out, "\\\\", 2);
        } else if (c >= 0x20 && c < 0x7F) {
            rc = buf_putc(out, (char)c);
        } else {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            rc = buf_append(out, esc, 4);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Width of one sanitized character at s; TAB and LF count one column. */
static int char_width(const char *s, size_t len, int *bytes)
{
    uint32_t cp;
    int n = sanitize_utf8_next(s, len, &cp);
    int w;

    if (n < 0) {
        *bytes = -n;
        return 1;   /* would have been U+FFFD */
    }
    *bytes = n;
    w = sanitize_cp_width(cp);
    return w < 0 ? 1 : w;
}

size_t sanitize_width(const char *s, size_t len)
{
    size_t cols = 0;

    for (size_t i = 0; i < len;) {
        int n;
        cols += (size_t)char_width(s + i, len - i, &n);
        i += (size_t)n;
    }
    return cols;
}

size_t sanitize_fit(const char *s, size_t len, size_t cols, size_t *used)
{
    size_t i = 0, w = 0;

    while (i < len) {
        int n;
        int cw = char_width(s + i, len - i, &n);
        size_t j = i + (size_t)n;

        /* Keep the combining marks that follow with their base character. */
        while (j < len) {
            int m;
            if (char_width(s + j, len - j, &m) != 0)
                break;
            j += (size_t)m;
        }
        if (w + (size_t)cw > cols)
            break;
        w += (size_t)cw;
        i = j;
    }
    if (used)
        *used = w;
    return i;
}
