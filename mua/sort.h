/*
 * sort: sort keys and orders over the client's message list.
 *
 * The module never sees a per-message struct.  The caller describes the
 * messages as columns (one array per key, all indexed by message number) and
 * sorts an array of message numbers.  Nothing here allocates per message:
 * sort_indexes uses two arrays of n 16-byte records and, for a subject key,
 * one pointer per message, all freed before it returns.
 *
 * Orders follow mutt's $sort and $sort_aux:
 *   date | date-sent         the Date: header
 *   date-received | received delivery time
 *   from                     the From display string
 *   subject                  the subject without "Re:"-style prefixes and
 *                            leading "[list-tag]"s (see sort_subject_base)
 *   size                     octets
 *   threads                  threaded display (mua/thread); a flat sort
 *                            with this key orders by the aux key alone
 *   unsorted | mailbox-order file order
 * with an optional "reverse-" and "last-" prefix, in that order
 * ("reverse-last-date-received").  "last-" only matters for a threaded
 * display: a thread sorts by its newest message (see thread_view).
 *
 * Ties on the primary key are broken by the aux key, then by file order
 * (the message number, ascending, whatever "reverse-" says): sorting is
 * stable, and the same input always gives the same output.
 *
 * Strings compare as bytes after folding ASCII letters to lower case; a NULL
 * string compares as "".  A NULL column makes every message equal on that
 * key.
 */
#ifndef CORREO_SORT_H
#define CORREO_SORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum sort_key {
    SORT_UNSORTED = 0,
    SORT_DATE,
    SORT_RECEIVED,
    SORT_FROM,
    SORT_SUBJECT,
    SORT_SIZE,
    SORT_THREADS,
};

struct sort_order {
    enum sort_key key;
    bool reverse;
    bool last;          /* threaded display: a thread sorts by its newest message */
};

/* mutt's $sort and $sort_aux.  aux only breaks ties of primary. */
struct sort_spec {
    struct sort_order primary;
    struct sort_order aux;
};

/* Per-message keys, each n long and indexed by message number.  Any column
 * may be NULL when no order in use needs it. */
struct sort_columns {
    size_t n;
    const int64_t *date;          /* Date: header, UTC seconds */
    const int64_t *received;      /* delivery time, UTC seconds */
    const uint64_t *size;         /* octets */
    const char *const *from;      /* display strings (UTF-8), entries may be NULL */
    const char *const *subject;   /* raw subjects (UTF-8), entries may be NULL */
};

/* Longest name sort_order_format can produce, with its NUL. */
#define SORT_NAME_MAX 32

/* Parse a $sort / $sort_aux value: "date", "reverse-subject",
 * "reverse-last-date-received", ...  ASCII case is ignored.  Returns 0, or
 * -1 with ERR_INVAL. */
int sort_order_parse(const char *s, struct sort_order *out, struct err *e);

/* Write the canonical name of o ("reverse-last-date-received") into out.
 * Returns 0, or -1 with ERR_LIMIT when size is too small (out is then "" if
 * size > 0), or ERR_INVAL for a key out of range. */
int sort_order_format(const struct sort_order *o, char *out, size_t size,
                      struct err *e);

/* Canonical name of a key without prefixes ("date-received"); NULL for a
 * value out of range. */
const char *sort_key_name(enum sort_key key);

/* Sort the n message numbers in idx (each < cols->n; a subset is fine) by
 * spec.  Stable; see the header comment for ties.  A number out of range is
 * a bug and aborts. */
void sort_indexes(uint32_t *idx, size_t n, const struct sort_spec *spec,
                  const struct sort_columns *cols);

/*
 * A prepared comparison for callers that order messages themselves (the
 * threaded display): sort_cmp_new copies spec and cols (not the arrays they
 * point to, which must outlive it) and precomputes what a key needs
 * (subject bases for all cols->n messages).  sort_cmp_msgs has the shape of
 * thread_cmp_fn: pass the struct sort_cmp as its argument.
 */
struct sort_cmp;
struct sort_cmp *sort_cmp_new(const struct sort_spec *spec,
                              const struct sort_columns *cols);
void sort_cmp_free(struct sort_cmp *c);
/* <0, 0 or >0; 0 only when a == b. */
int sort_cmp_msgs(uint32_t a, uint32_t b, void *cmp);

/* Stable merge sort of n numbers by cmp (which must be a total order for a
 * reproducible result).  tmp: room for n numbers, or NULL to allocate. */
void sort_u32(uint32_t *v, size_t n, int (*cmp)(uint32_t, uint32_t, void *),
              void *arg, uint32_t *tmp);

/*
 * Subjects, normalized the same way for sorting and for threading.
 *
 * sort_subject_base skips, repeatedly and in any order, leading whitespace,
 * reply and forward prefixes ("Re:", "RE:", "Re[2]:", "AW:", "SV:", "Antw:",
 * "Fwd:", "Fw:", ASCII case ignored) and a leading "[list-tag]" that is
 * followed by more text.  It returns a pointer into s (s NULL: "") and sets
 * *is_reply (when not NULL) if a reply prefix (Re, AW, SV, Antw) was seen;
 * forward prefixes are stripped but do not make a reply.
 *
 * sort_subject_cmp and sort_subject_hash look at a base with ASCII case
 * folded, runs of whitespace as one space and leading and trailing
 * whitespace ignored; equal bases hash equal.
 */
const char *sort_subject_base(const char *s, bool *is_reply);
int sort_subject_cmp(const char *a, const char *b);
uint64_t sort_subject_hash(const char *base);

#endif
