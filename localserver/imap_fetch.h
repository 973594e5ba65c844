/*
 * imap_fetch: the FETCH data that comes from one message's bytes (RFC 3501
 * 6.4.5 and 7.4.2, RFC 9051 6.4.5 and 7.5.2, RFC 3516 BINARY), without I/O
 * and without session state: RFC822.SIZE, ENVELOPE, BODY and BODYSTRUCTURE,
 * BODY[section]<partial> (HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT,
 * MIME, part paths), RFC822, RFC822.HEADER, RFC822.TEXT, BINARY[section]
 * <partial> and BINARY.SIZE[section]; and the compact per-message cache
 * record (envelope, structure, sizes) with its serialization.
 *
 * Line ends: messages in a Maildir usually have LF line ends, IMAP counts
 * and sends them as CRLF.  Every size, offset and <partial> here is on the
 * CRLF form (a bare LF counts as CR LF; an existing CRLF stays as it is),
 * computed over the bytes of the part concerned, never by converting the
 * whole message.
 *
 * Header strings (ENVELOPE fields, Content-ID, Content-Description, ...)
 * are sent as they are in the header, unfolded (CR and LF removed), RFC
 * 2047 words not decoded; a string with 8-bit octets goes as a literal.
 *
 * The structure comes from lib/message (part tree, header and body offsets);
 * the fields are read again from the raw header so that their text is the
 * message's, not a decoded or lower-cased copy.
 */
#ifndef CORREOD_IMAP_FETCH_H
#define CORREOD_IMAP_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "imap_parse.h"

struct imap_fetch_msg;

/* Parse raw[0..len) (borrowed: keep it alive and unchanged until
 * imap_fetch_close).  -1 with e filled only for real errors (lib/message). */
int imap_fetch_open(const char *raw, size_t len, struct imap_fetch_msg **out,
                    struct err *e);
void imap_fetch_close(struct imap_fetch_msg *fm);

/* Octets of raw[start..end) in CRLF form. */
uint64_t imap_crlf_size(const char *raw, size_t start, size_t end);
/* Append octets [origin, origin + count) of the CRLF form of raw[start..end)
 * (count UINT64_MAX: to the end).  -1 at out's ceiling. */
int imap_crlf_append(struct buf *out, const char *raw, size_t start, size_t end,
                     uint64_t origin, uint64_t count);

/* RFC822.SIZE: the whole message in CRLF form. */
uint64_t imap_fetch_size(const struct imap_fetch_msg *fm);

/* The parenthesized ENVELOPE value.  -1 at out's ceiling. */
int imap_fetch_envelope(const struct imap_fetch_msg *fm, struct buf *out);

/* The BODYSTRUCTURE value (extensible: with extension data) or the BODY
 * value (not).  -1 at out's ceiling. */
int imap_fetch_bodystructure(const struct imap_fetch_msg *fm, bool extensible,
                             struct buf *out);

/*
 * The data of a BODY[...], BINARY[...] (att->item IMAP_FETCH_BODY_SECTION or
 * IMAP_FETCH_BINARY; RFC822, RFC822.HEADER and RFC822.TEXT too) appended to
 * data, <partial> applied.  Errors (e filled):
 *   ERR_NOTFOUND     no such part, or HEADER/TEXT of a part that is not a
 *                    message/rfc822, or MIME without a part number
 *   ERR_UNSUPPORTED  BINARY of a part whose Content-Transfer-Encoding is
 *                    unknown: answer NO [UNKNOWN-CTE]
 * BINARY removes the part's own Content-Transfer-Encoding (base64 and
 * quoted-printable decoded; 7bit, 8bit, binary as they are, in CRLF form);
 * a multipart or message/rfc822 part, whose encoding is one of the
 * latter, comes as it is.  BINARY[] is the whole message.
 *   ERR_INVAL        an item that is not a section
 *   ERR_LIMIT        data's ceiling
 */
int imap_fetch_section(const struct imap_fetch_msg *fm, const struct imap_fetch_att *att,
                       struct buf *data, struct err *e);

/* BINARY.SIZE[section]: octets of the decoded part.  Errors as above. */
int imap_fetch_binary_size(const struct imap_fetch_msg *fm, const struct imap_fetch_att *att,
                           uint64_t *size, struct err *e);

/*
 * One FETCH response item "NAME SP value" appended to out, for every item
 * that comes from the message: ENVELOPE, BODY, BODYSTRUCTURE, RFC822.SIZE,
 * RFC822, RFC822.HEADER, RFC822.TEXT, BODY[...]<o>, BINARY[...] (the
 * response names no origin for BINARY: RFC 9051 ABNF, erratum 7246),
 * BINARY.SIZE[...].  Section data goes as a literal ({n} CRLF, or ~{n}
 * for BINARY data holding a NUL); an empty section is "".  A section that
 * does not exist is written as "" (BINARY.SIZE 0), as Dovecot answers, not
 * as an error.  ERR_UNSUPPORTED as for
 * imap_fetch_section (nothing written); ERR_INVAL for FLAGS,
 * INTERNALDATE, UID and MODSEQ, which are the session's.
 */
int imap_fetch_write(const struct imap_fetch_msg *fm, const struct imap_fetch_att *att,
                     struct buf *out, struct err *e);

/* ------------------------------------------------------------------ */
/* Cache record */

/*
 * What FETCH of envelopes and structures needs without reading the file
 * again.  The record is a cache: decoding refuses anything doubtful (wrong
 * magic or version, bad lengths, checksum mismatch, a file size that is not
 * raw_size) and the caller then recomputes from the message.
 *
 * Encoding: "IFC" version(1 octet), then little-endian u64 raw_size,
 * rfc822_size, and for envelope, bodystructure, body a u32 length and the
 * bytes, then a u32 FNV-1a checksum of everything before it.
 */
#define IMAP_FETCH_CACHE_VERSION 1u

struct imap_fetch_cache {
    uint64_t raw_size;         /* bytes of the file as stored */
    uint64_t rfc822_size;      /* RFC822.SIZE */
    char *envelope;            /* NUL-terminated; lengths authoritative */
    size_t envelope_len;
    char *bodystructure;
    size_t bodystructure_len;
    char *body;                /* BODY (non-extensible) */
    size_t body_len;
};

/* Fill c from the message (c's strings are new; free with
 * imap_fetch_cache_free). */
void imap_fetch_cache_make(const struct imap_fetch_msg *fm, struct imap_fetch_cache *c);
void imap_fetch_cache_free(struct imap_fetch_cache *c);
/* Append the record; -1 at out's ceiling. */
int imap_fetch_cache_encode(const struct imap_fetch_cache *c, struct buf *out);
/* Read one record from p[0..len): 0 with *c filled and *used set to its
 * length, or -1 (ERR_PARSE) for anything doubtful.  expect_raw_size is the
 * file's current size (UINT64_MAX: not checked). */
int imap_fetch_cache_decode(const char *p, size_t len, uint64_t expect_raw_size,
                            struct imap_fetch_cache *c, size_t *used, struct err *e);

#endif
