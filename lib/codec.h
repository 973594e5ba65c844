/*
 * codec: content transfer decoders (base64, quoted-printable) and a base64
 * encoder.
 *
 * The decoders are incremental: keep a state struct, feed any number of
 * chunks (down to one byte at a time) and call the finish function once.
 * They are lenient: bytes that cannot belong to the encoding are skipped
 * (base64) or passed through literally (quoted-printable), and the state's
 * `bad` flag records that the input was broken.  Output is appended to a
 * caller-owned struct buf; the only failure is the buffer's ceiling, in which
 * case the function returns -1 and the buffer holds what fit before.
 */
#ifndef CORREO_CODEC_H
#define CORREO_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct codec_b64 {
    uint32_t acc;   /* pending sextets */
    unsigned n;     /* number of pending sextets (0..3) */
    bool ended;     /* saw '=' padding */
    bool bad;       /* garbage, misplaced padding or a dangling sextet */
};

void codec_b64_init(struct codec_b64 *st);
/* Decode a chunk; whitespace and garbage are skipped (garbage sets bad). */
int codec_b64_feed(struct codec_b64 *st, const char *in, size_t len, struct buf *out);
/* Flush missing-padding remainders (2 or 3 sextets still give bytes). */
int codec_b64_finish(struct codec_b64 *st, struct buf *out);

struct codec_qp {
    int state;      /* internal */
    char hex1;      /* first hex digit after '=' */
    bool q_mode;    /* RFC 2047 "Q": '_' means space */
    bool bad;       /* broken escape seen */
};

/* q_mode selects RFC 2047 Q decoding. */
void codec_qp_init(struct codec_qp *st, bool q_mode);
int codec_qp_feed(struct codec_qp *st, const char *in, size_t len, struct buf *out);
/* A dangling "=" or "=X" at the end is emitted literally and sets bad. */
int codec_qp_finish(struct codec_qp *st, struct buf *out);

/* One-shot helpers; *bad (may be NULL) says whether the input was broken. */
int codec_b64_decode(const char *in, size_t len, struct buf *out, bool *bad);
int codec_qp_decode(const char *in, size_t len, bool q_mode, struct buf *out, bool *bad);

/* Append the base64 encoding of in (no line breaks). */
int codec_b64_encode(const void *in, size_t len, struct buf *out);

#endif
