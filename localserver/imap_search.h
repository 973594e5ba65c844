/*
 * imap_search: evaluation of IMAP SEARCH, SORT and THREAD over a mailbox
 * (RFC 3501 6.4.4, RFC 9051 6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES,
 * RFC 5256 SORT and THREAD, RFC 5957 DISPLAYFROM/DISPLAYTO, RFC 7162
 * MODSEQ, RFC 5032 WITHIN), without I/O of its own.
 *
 * The mailbox is seen through struct imap_search_store, a set of callbacks
 * the owner of the mailbox implements.  Evaluation is lazy: keys that need
 * only flags, sizes, dates, UIDs or modseqs never ask for the message;
 * header keys ask for the header block only; BODY and TEXT ask for the
 * whole message.  Within an AND (and an OR), cheap keys are tried before
 * expensive ones, so "SEEN FROM x" reads headers of seen messages only.
 *
 * Text keys match a case-insensitive substring of the decoded text: header
 * values unfolded with RFC 2047 words decoded; bodies with their
 * Content-Transfer-Encoding removed and their charset converted to UTF-8
 * (text parts, and the header of attached messages).  Both sides are
 * mapped as RFC 5051 i;unicode-casemap does for the scripts mail mostly
 * uses (imap_casefold: upper case for ASCII, Latin-1, Latin Extended-A,
 * Greek and Cyrillic, precomposed Latin letters decomposed), so "the"
 * finds "Th\u00e9r\u00e8se" as in Dovecot.  HEADER name "" matches every
 * message having that field.
 *
 * Dates: BEFORE/ON/SINCE compare the day of the internal date in the zone
 * it was given in; SENTBEFORE/SENTON/SENTSINCE the day of the Date header
 * as written (its own zone), falling back to the internal date when the
 * header is missing or unparsable (as for SORT DATE, RFC 5256).
 *
 * SORT and THREAD compare base subjects, addresses and display names in
 * the same case-mapped form.  FROM/TO/CC sort on the first address's
 * mailbox (local part); when the field starts with a group ("undisclosed-
 * recipients:;") the group's name stands for it, as in the IMAP envelope,
 * and for DISPLAYFROM/DISPLAYTO too.  A subject's 8-bit octets outside
 * encoded words that are not UTF-8 become U+FFFD for SORT and THREAD (the
 * charset is unknown: no guess that could merge unrelated threads), while
 * SEARCH matches them as Windows-1252 (lib/rfc2047), the lenient reading.
 */
#ifndef CORREOD_IMAP_SEARCH_H
#define CORREOD_IMAP_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "imap_parse.h"

/* System flags as the store reports them. */
enum {
    IMAP_MSG_SEEN = 1, IMAP_MSG_ANSWERED = 2, IMAP_MSG_FLAGGED = 4,
    IMAP_MSG_DELETED = 8, IMAP_MSG_DRAFT = 16, IMAP_MSG_RECENT = 32,
};

/*
 * The mailbox.  Messages are numbered 1..count() (sequence numbers); their
 * UIDs ascend with the sequence numbers.  header and message append to out
 * (which the caller of the callback resets and owns); header may be NULL,
 * the header block is then cut from message().  Either may fail (-1 with
 * e filled): the search then fails with that error.
 */
struct imap_search_store {
    void *ctx;
    uint32_t (*count)(void *ctx);
    uint32_t (*uid)(void *ctx, uint32_t seq);
    unsigned (*flags)(void *ctx, uint32_t seq);                 /* IMAP_MSG_* */
    bool (*has_keyword)(void *ctx, uint32_t seq, const char *kw);  /* case-insensitive */
    int64_t (*internal_date)(void *ctx, uint32_t seq, int *zone);  /* UTC seconds; zone:
                                                                      minutes east */
    uint64_t (*size)(void *ctx, uint32_t seq);                  /* RFC822.SIZE */
    uint64_t (*modseq)(void *ctx, uint32_t seq);                /* may be NULL: 0 */
    int (*header)(void *ctx, uint32_t seq, struct buf *out, struct err *e);
    int (*message)(void *ctx, uint32_t seq, struct buf *out, struct err *e);
};

struct imap_search_opts {
    const char *charset;       /* CHARSET argument; NULL: UTF-8 */
    const uint32_t *saved;     /* "$" (RFC 5182): UIDs of the saved result */
    size_t n_saved;
    int64_t now;               /* UTC seconds, for OLDER/YOUNGER */
};

/* Matching messages as sequence numbers, ascending (after imap_sort: in
 * sort order). */
struct imap_search_result {
    uint32_t *seq;
    size_t n;
};
void imap_search_result_free(struct imap_search_result *r);

/*
 * Evaluate keys (an IMAP_SK_AND tree as imap_parse builds it) over st.
 * opts may be NULL.  Errors (e filled, res empty):
 *   ERR_UNSUPPORTED  a charset we cannot convert from: answer
 *                    NO [BADCHARSET (UTF-8 US-ASCII)]
 *   ERR_INVAL        "$" used without a saved result is not an error (it is
 *                    empty, RFC 5182); a key the evaluator does not know
 *   others           from the store's callbacks
 */
int imap_search(const struct imap_search_store *st, const struct imap_search_key *keys,
                const struct imap_search_opts *opts, struct imap_search_result *res,
                struct err *e);

/* Reorder res by the criteria (RFC 5256 SORT; DISPLAYFROM/DISPLAYTO of
 * RFC 5957); ties by sequence number. */
int imap_sort(const struct imap_search_store *st, const struct imap_sort_crit *crit,
              size_t n_crit, struct imap_search_result *res, struct err *e);

enum imap_thread_alg { IMAP_THREAD_ORDEREDSUBJECT = 0, IMAP_THREAD_REFERENCES };
/* "REFERENCES" or "ORDEREDSUBJECT" (any case): 0, else -1. */
int imap_thread_alg_parse(const char *name, enum imap_thread_alg *alg);

/* Thread the messages of res (RFC 5256) and append the thread list, e.g.
 * "(1 2 (3)(4))(5)", to out: UIDs when uid is set, else sequence numbers. */
int imap_thread(const struct imap_search_store *st, enum imap_thread_alg alg,
                const struct imap_search_result *res, bool uid, struct buf *out,
                struct err *e);

/*
 * RFC 5256 base subject of a Subject field's text (RFC 2047 words decoded
 * here), as a new UTF-8 string (free()), not case-folded.  *is_reply (may
 * be NULL) is set when a "Re:"/"Fw:"/"Fwd:" leader, a "(fwd)" trailer or a
 * "[fwd: ...]" wrapper was removed.
 */
char *imap_base_subject(const char *subject, size_t len, bool *is_reply);

/* UTF-8 text case-mapped into out (see above; invalid sequences kept as
 * they are).  -1 at out's ceiling. */
int imap_casefold(const char *s, size_t len, struct buf *out);

/* Values (any order; sorted and deduplicated in place) as a compressed
 * sequence set "1:5,9".  -1 at out's ceiling. */
int imap_seqset_compress(uint32_t *v, size_t n, struct buf *out);

/* "* SEARCH 1 2 3" CRLF (name "SEARCH" or "SORT"; values as given). */
int imap_search_write(struct buf *out, const char *name, const uint32_t *v, size_t n);

/*
 * The ESEARCH response (RFC 4731) for values v (ascending: UIDs when uid)
 * and RETURN options ret (IMAP_RET_*; 0 means ALL):
 *   * ESEARCH (TAG "t") UID MIN 2 MAX 9 COUNT 3 ALL 2,5:9 CRLF
 * MIN, MAX and ALL are left out when nothing matched.  With ret exactly
 * IMAP_RET_SAVE nothing is written (RFC 5182).
 */
int imap_esearch_write(struct buf *out, const char *tag, bool uid, unsigned ret,
                       const uint32_t *v, size_t n);

/* What SAVE keeps (RFC 5182): all of v, or only its MIN and/or MAX when
 * those are asked for without ALL or COUNT.  v ascending; *out new array
 * (free()), may be NULL when *n_out is 0. */
void imap_search_saved(unsigned ret, const uint32_t *v, size_t n, uint32_t **out,
                       size_t *n_out);

#endif
