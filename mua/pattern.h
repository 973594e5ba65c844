/*
 * pattern: mutt's search and limit patterns.
 *
 * A pattern is compiled once (pattern_compile) into a tree and evaluated per
 * message (pattern_match / pattern_eval).  The module never sees a backend's
 * structures: the caller describes one message through struct
 * pattern_msg_ops, a table of accessors that take the caller's context and a
 * message number.  No I/O happens here except through those accessors.
 *
 * Syntax
 *   ~X          operator without argument        ~F  ~N  ~A
 *   ~X EXPR     operator with a POSIX extended regular expression
 *   =X EXPR     the same operator with a plain substring instead of a regex
 *   ~X RANGE    ~d, ~r (dates) and ~z (size)
 *   A B         both (juxtaposition is AND)
 *   A | B       either; AND binds tighter than |
 *   !A          not A; binds tightest:  !~F ~N | ~s x  ==  ((!~F) ~N) | (~s x)
 *   ( ... )     grouping
 *
 * Arguments.  Whitespace between the operator and its argument is optional
 * (~d<1d).  An unquoted argument ends at whitespace, at '|' or at a ')' that
 * closes nothing opened inside the argument, so ~s re(ply|fwd) and
 * (~s foo) both work.  "..." and '...' quote (spaces, |, parentheses); quoted
 * and unquoted pieces may be adjacent and are joined.  Inside '...' every
 * byte is literal.  Elsewhere a backslash makes the next character literal
 * for this parser.  For a regex argument the backslash is kept, so regex
 * escapes (\. \( \\) reach regcomp as typed, except before whitespace and
 * quote characters, where it is dropped; for a substring (=X) argument the
 * backslash is always dropped.  An empty argument ("") is an error.
 *
 * Case.  mutt's smart case: a regex or substring is case-insensitive unless it
 * contains an upper-case letter (a letter right after a backslash in a regex
 * is an escape such as \W and does not count).  Matching works on UTF-8 under
 * the process locale (LC_CTYPE), so call setlocale() first for non-ASCII
 * letters to fold.
 *
 * Operators
 *   ~A         all messages
 *   ~b EXPR    a line of the decoded text body         (body accessor)
 *   ~B EXPR    a line of the headers or of the body    (headers + body)
 *   ~c EXPR    Cc                ~C EXPR   To or Cc
 *   ~e EXPR    Sender            ~f EXPR   From
 *   ~t EXPR    To                ~L EXPR   From, To, Cc or Sender
 *              (an address matches when its addr-spec or its display name
 *              does)
 *   ~h EXPR    an unfolded header line "Name: value"  (headers accessor)
 *   ~i EXPR    Message-ID        ~x EXPR   In-Reply-To or a References id
 *   ~s EXPR    Subject           ~y EXPR   X-Label
 *   ~d RANGE   date sent         ~r RANGE  date received
 *   ~z RANGE   size in octets
 *   ~D deleted (marked)   ~F flagged   ~T tagged   ~R read   ~U unread
 *   ~N new: unread and PATTERN_F_NEW and not PATTERN_F_OLD
 *   ~O old: unread and (PATTERN_F_OLD or not PATTERN_F_NEW)
 *      so ~N and ~O split ~U in two
 *   ~l         the message has a List-Id (mutt uses its subscribe lists)
 *   ~p         a To or Cc address is the user's (is_me accessor)
 *   ~v         member of a collapsed thread (collapsed accessor)
 *   A missing (NULL) string field or accessor never matches an EXPR.
 *
 * Dates (~d, ~r), in local time (TZ), with "now" from struct pattern_opts:
 *   D            the whole day D
 *   MIN-MAX      from the start of day MIN to the end of day MAX
 *   MIN-  -MAX   open ended
 *   D is DD[/MM[/[YY]YY]]; a missing month or year is the current one;
 *   YY < 70 is 20YY, otherwise 19YY.
 *   Each D may carry error margins N<unit>: +N extends the day forward, -N
 *   back, *N both ways, e.g. 15/1/2025*2w; margins add up.
 *   <N<unit>     less than N units ago (date >= now - N)
 *   >N<unit>     more than N units ago (date < now - N)
 *   =N<unit>     the calendar day N units ago (for H, M, S: that hour,
 *                minute or second)
 *   unit: y m w d (calendar arithmetic), H M S (hours, minutes, seconds).
 * Sizes (~z): N, MIN-MAX, MIN-, -MAX (inclusive), <N, >N (strict);
 *   N takes an optional K, M or G suffix (1024, 1024^2, 1024^3; any case).
 *
 * Simple search: with PATTERN_SIMPLE, a text containing none of ~ = ! | (
 * is a regex TERM (surrounding whitespace trimmed, no quote processing) and
 * means "~f TERM | ~s TERM".
 *
 * Not implemented (compile errors): %X address-group forms, thread operators
 * ~( ~< ~> ~$ ~#, ~Q ~P ~g ~G ~k ~m ~n ~M ~S ~u ~V ~X ~E ~H ~w ~Y, mutt's
 * simple-search keywords (all, new, ...), ISO and YYYYMMDD dates, and the
 * re-evaluation of relative dates at match time (they are fixed at compile
 * time).  An empty pattern is an error; a caller that wants "all" uses ~A.
 *
 * Errors.  pattern_compile reports the problem and the 1-based column (in
 * characters of the UTF-8 text) where it is, e.g. "~d: bad date range at 4",
 * "unbalanced '(' at 1", "~Q: unknown operator at 1",
 * "~s: bad regex at 4: Unmatched ( or \\(".
 *
 * Evaluation order.  The children of an AND or OR are evaluated cheapest
 * first (flags, dates and sizes; then strings; then addresses; then headers;
 * then the body) and evaluation stops as soon as the result is known, so a
 * pattern needs the headers or body accessor only when a header or body term
 * actually decides.  Within one evaluation the headers and the body are
 * fetched at most once each.
 */
#ifndef CORREO_PATTERN_H
#define CORREO_PATTERN_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

/* Message state bits returned by pattern_msg_ops.flags. */
enum pattern_flag {
    PATTERN_F_NEW     = 1u << 0,  /* not yet seen by any client (Maildir new/, IMAP \Recent) */
    PATTERN_F_OLD     = 1u << 1,  /* seen by a client but not read (Maildir cur/ without S) */
    PATTERN_F_READ    = 1u << 2,  /* read (Maildir S, IMAP \Seen) */
    PATTERN_F_REPLIED = 1u << 3,
    PATTERN_F_FLAGGED = 1u << 4,
    PATTERN_F_DELETED = 1u << 5,  /* marked for deletion in this session */
    PATTERN_F_TAGGED  = 1u << 6,
    PATTERN_F_TRASHED = 1u << 7,  /* Maildir T, IMAP \Deleted on the server */
    PATTERN_F_DRAFT   = 1u << 8,
};

/* Which address list pattern_msg_ops.addresses walks. */
enum pattern_addr {
    PATTERN_ADDR_FROM,
    PATTERN_ADDR_TO,
    PATTERN_ADDR_CC,
    PATTERN_ADDR_SENDER,
};

/* Called once per address; name (the display name) may be NULL, addr is the
 * addr-spec.  Returns true when the matcher has its answer: the accessor may
 * then stop walking (later calls are ignored anyway). */
typedef bool (*pattern_addr_cb)(void *cbctx, const char *name, const char *addr);
/* Called once per string of a list; same return convention. */
typedef bool (*pattern_str_cb)(void *cbctx, const char *s);

/*
 * The caller's view of a message.  Every accessor gets the ctx given to
 * pattern_match and the message number from struct pattern_msg.  Any member
 * may be NULL: the field is then absent (strings, lists), zero (numbers,
 * flags) or false (is_me, collapsed).  Strings are NUL-terminated UTF-8,
 * decoded (RFC 2047) and owned by the caller; they must stay valid until the
 * accessor is called again for the same message or pattern_match returns.
 */
struct pattern_msg_ops {
    const char *(*subject)(void *ctx, uint32_t msg);
    void (*addresses)(void *ctx, uint32_t msg, enum pattern_addr which,
                      pattern_addr_cb cb, void *cbctx);
    int64_t (*date)(void *ctx, uint32_t msg);       /* Date: as UTC seconds */
    int64_t (*received)(void *ctx, uint32_t msg);   /* delivery time, UTC seconds */
    uint64_t (*size)(void *ctx, uint32_t msg);      /* octets */
    unsigned (*flags)(void *ctx, uint32_t msg);     /* enum pattern_flag bits */
    const char *(*message_id)(void *ctx, uint32_t msg);
    /* In-Reply-To, then each References id. */
    void (*references)(void *ctx, uint32_t msg, pattern_str_cb cb, void *cbctx);
    const char *(*list_id)(void *ctx, uint32_t msg);
    const char *(*x_label)(void *ctx, uint32_t msg);
    /* Expensive, called only when a ~h/~b/~B term must decide: append the
     * raw header block (lines ending in LF or CRLF; folded lines allowed) or
     * the decoded text body to out, which is empty and unbounded (cap it
     * yourself).  Return 0, or -1 and fill e. */
    int (*headers)(void *ctx, uint32_t msg, struct buf *out, struct err *e);
    int (*body)(void *ctx, uint32_t msg, struct buf *out, struct err *e);
    /* ~p: is addr (an addr-spec) one of the user's own addresses? */
    bool (*is_me)(void *ctx, const char *addr);
    /* ~v: is the message hidden in a collapsed thread? */
    bool (*collapsed)(void *ctx, uint32_t msg);
};

/* One message: the accessor table and the caller's number for it. */
struct pattern_msg {
    const struct pattern_msg_ops *ops;
    uint32_t msg;
};

/* pattern_compile flags */
#define PATTERN_SIMPLE 0x1u   /* a plain word means "~f WORD | ~s WORD" */

struct pattern_opts {
    unsigned flags;   /* PATTERN_SIMPLE */
    int64_t now;      /* reference for relative dates and for the missing
                         month/year of absolute ones; 0: time(NULL) */
};

struct pattern;

/* Compile text.  On success *out is a pattern to free with pattern_free and 0
 * is returned; on failure -1 with ERR_PARSE (or ERR_LIMIT for nesting deeper
 * than PATTERN_MAX_DEPTH) and the column in e's text, *out = NULL. */
int pattern_compile(const char *text, unsigned flags, struct pattern **out,
                    struct err *e);
/* The same with explicit options (o may be NULL). */
int pattern_compile_opts(const char *text, const struct pattern_opts *o,
                         struct pattern **out, struct err *e);

#define PATTERN_MAX_DEPTH 64   /* nested parentheses */

/* Evaluate: 1 matches, 0 does not, -1 an accessor failed (e filled). */
int pattern_eval(const struct pattern *p, const struct pattern_msg *m,
                 void *ctx, struct err *e);
/* pattern_eval for callers that treat an accessor failure as "no match". */
bool pattern_match(const struct pattern *p, const struct pattern_msg *m,
                   void *ctx);

/* What a pattern may need: a backend can prefetch or warn that a search
 * will read whole messages. */
#define PATTERN_NEEDS_HEADERS 0x1u
#define PATTERN_NEEDS_BODY    0x2u
unsigned pattern_needs(const struct pattern *p);

/* p may be NULL. */
void pattern_free(struct pattern *p);

#endif
