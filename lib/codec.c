#include "codec.h"

static int codec_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static bool codec_is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

void codec_b64_init(struct codec_b64 *st)
{
    st->acc = 0;
    st->n = 0;
    st->ended = false;
    st->bad = false;
}

static int codec_b64_emit(struct codec_b64 *st, struct buf *out)
{
    char bytes[3];
    size_t nbytes = st->n == 4 ? 3 : st->n - 1;
    uint32_t v = st->acc << (6 * (4 - st->n));

    bytes[0] = (char)((v >> 16) & 0xff);
    bytes[1] = (char)((v >> 8) & 0xff);
    bytes[2] = (char)(v & 0xff);
    st->acc = 0;
    st->n = 0;
    return buf_append(out, bytes, nbytes);
}

int codec_b64_feed(struct codec_b64 *st, const char *in, size_t len, struct buf *out)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        int v = codec_b64_value(c);
        if (v < 0) {
            if (c == '=') {
                if (st->n >= 2 && codec_b64_emit(st, out) < 0)
                    return -1;
                st->ended = true;
            } else if (!codec_is_space(c)) {
                st->bad = true;
            }
            continue;
        }
        if (st->ended) {
            /* data after padding: concatenated base64, keep decoding */
            st->ended = false;
        }
        st->acc = (st->acc << 6) | (uint32_t)v;
        if (++st->n == 4 && codec_b64_emit(st, out) < 0)
            return -1;
    }
    return 0;
}

int codec_b64_finish(struct codec_b64 *st, struct buf *out)
{
    if (st->n == 1) {
        st->bad = true;
        st->n = 0;
        st->acc = 0;
        return 0;
    }
    if (st->n >= 2)
        return codec_b64_emit(st, out);
    return 0;
}

enum { QP_TEXT, QP_EQ, QP_HEX, QP_EQ_CR, QP_EQ_WS };

void codec_qp_init(struct codec_qp *st, bool q_mode)
{
    st->state = QP_TEXT;
    st->hex1 = 0;
    st->q_mode = q_mode;
    st->bad = false;
}

static int codec_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int codec_qp_text(struct codec_qp *st, char c, struct buf *out)
{
    if (c == '=') {
        st->state = QP_EQ;
        return 0;
    }
    if (c == '_' && st->q_mode)
        c = ' ';
    return buf_putc(out, c);
}

/* Handles one byte; a byte that ends a broken escape is re-run as text. */
static int codec_qp_byte(struct codec_qp *st, char c, struct buf *out)
{
    unsigned char u = (unsigned char)c;

    switch (st->state) {
    case QP_TEXT:
        return codec_qp_text(st, c, out);
    case QP_EQ:
        if (codec_hex(u) >= 0) {
            st->hex1 = c;
            st->state = QP_HEX;
            return 0;
        }
        if (c == '\r' || c == '\n') {
            st->state = c == '\r' ? QP_EQ_CR : QP_TEXT;
            return 0;
        }
        if (c == ' ' || c == '\t') {
            st->state = QP_EQ_WS;   /* "=  \r\n": padded soft break */
            return 0;
        }
        st->bad = true;
        st->state = QP_TEXT;
        if (buf_putc(out, '=') < 0)
            return -1;
        return codec_qp_text(st, c, out);
    case QP_HEX: {
        int lo = codec_hex(u);
        st->state = QP_TEXT;
        if (lo >= 0)
            return buf_putc(out, (char)(codec_hex((unsigned char)st->hex1) * 16 + lo));
        st->bad = true;
        if (buf_putc(out, '=') < 0 || buf_putc(out, st->hex1) < 0)
            return -1;
        return codec_qp_text(st, c, out);
    }
    case QP_EQ_CR:
        st->state = QP_TEXT;
        return c == '\n' ? 0 : codec_qp_text(st, c, out);
    case QP_EQ_WS:
        if (c == ' ' || c == '\t')
            return 0;
        if (c == '\r' || c == '\n') {
            st->state = c == '\r' ? QP_EQ_CR : QP_TEXT;
            return 0;
        }
        st->bad = true;
        st->state = QP_TEXT;
        if (buf_puts(out, "= ") < 0)
            return -1;
        return codec_qp_text(st, c, out);
    default:
        die("codec_qp: bad state %d", st->state);
    }
}

int codec_qp_feed(struct codec_qp *st, const char *in, size_t len, struct buf *out)
{
    for (size_t i = 0; i < len; i++)
        if (codec_qp_byte(st, in[i], out) < 0)
            return -1;
    return 0;
}

int codec_qp_finish(struct codec_qp *st, struct buf *out)
{
    int rc = 0;

    if (st->state == QP_EQ || st->state == QP_EQ_WS) {
        st->bad = true;
        rc = buf_putc(out, '=');
    } else if (st->state == QP_HEX) {
        st->bad = true;
        rc = buf_putc(out, '=') < 0 ? -1 : buf_putc(out, st->hex1);
    }
    st->state = QP_TEXT;
    return rc;
}

int codec_b64_decode(const char *in, size_t len, struct buf *out, bool *bad)
{
    struct codec_b64 st;
    int rc;

    codec_b64_init(&st);
    rc = codec_b64_feed(&st, in, len, out);
    if (rc == 0)
        rc = codec_b64_finish(&st, out);
    if (bad)
        *bad = st.bad;
    return rc;
}

int codec_qp_decode(const char *in, size_t len, bool q_mode, struct buf *out, bool *bad)
{
    struct codec_qp st;
    int rc;

    codec_qp_init(&st, q_mode);
    rc = codec_qp_feed(&st, in, len, out);
    if (rc == 0)
        rc = codec_qp_finish(&st, out);
    if (bad)
        *bad = st.bad;
    return rc;
}

int codec_b64_encode(const void *in, size_t len, struct buf *out)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = in;

    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        size_t rem = len - i;
        char q[4];
        if (rem > 1)
            v |= (uint32_t)p[i + 1] << 8;
        if (rem > 2)
            v |= p[i + 2];
        q[0] = tab[(v >> 18) & 63];
        q[1] = tab[(v >> 12) & 63];
        q[2] = rem > 1 ? tab[(v >> 6) & 63] : '=';
        q[3] = rem > 2 ? tab[v & 63] : '=';
        if (buf_append(out, q, 4) < 0)
            return -1;
    }
    return 0;
}
