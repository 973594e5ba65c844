/*
 * dkim: DKIM signatures (RFC 6376) for outbound mail: rsa-sha256 with
 * relaxed/relaxed canonicalization over a fixed list of headers (From, To,
 * Cc, Subject, Date, Message-ID, In-Reply-To, References, MIME-Version,
 * Content-Type, Content-Transfer-Encoding, Reply-To), From oversigned.
 */
#ifndef CORREOD_DKIM_H
#define CORREOD_DKIM_H

#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "err.h"

struct dkim_signer;

int dkim_signer_new(const char *domain, const char *selector, const char *key_file,
                    struct dkim_signer **out, struct err *e);
void dkim_signer_free(struct dkim_signer *s);

/* Append "DKIM-Signature: ...\r\n" (folded) for msg (CRLF line ends) to
 * out.  The caller puts it in front of the message. */
int dkim_sign(const struct dkim_signer *s, const char *msg, size_t len, time_t now,
              struct buf *out, struct err *e);

/* Make a 2048-bit RSA key at key_file (0600, tmp + fsync + rename) and
 * write the TXT record to publish ("selector._domainkey.domain IN TXT
 * \"v=DKIM1; k=rsa; p=...\"") into record. */
int dkim_keygen(const char *key_file, const char *domain, const char *selector,
                struct buf *record, struct err *e);

#endif
