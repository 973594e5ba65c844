/*
 * imap_parse: what an IMAP client sends to correod, from bytes to a
 * structured command, without I/O; and the string forms the server writes
 * back (quoted string or literal, astring, mailbox names).
 *
 * Reading (struct imap_reader): the owner feeds the bytes it read; the
 * reader assembles one command at a time, literals included, and stops at
 * every event the owner must act on:
 *
 *   n = imap_reader_feed(r, data, len, &ev);   consumes n <= len bytes
 *   IMAP_EV_NONE      everything was consumed; feed more when it comes
 *   IMAP_EV_CONTINUE  a synchronizing literal {n} was accepted: write
 *                     "+ Ready" (any text), then feed the rest
 *   IMAP_EV_COMMAND   imap_reader_command() holds a whole command: parse it
 *                     with imap_parse()
 *   IMAP_EV_LINE      imap_reader_line() holds the raw line asked for with
 *                     imap_reader_expect_line() (AUTHENTICATE responses,
 *                     IDLE's DONE)
 *   IMAP_EV_ERROR     the command being read is refused: write
 *                     "TAG BAD text" or "TAG NO text" from imap_reader_error()
 *                     ("*" when there is no tag).  The reader itself skips
 *                     what belongs to the refused command and stays in step
 *                     for the next one.
 *
 * Literals: {n} (synchronizing), {n+} (RFC 7888 LITERAL+/LITERAL-) and
 * ~{n} (RFC 3516 literal8) at the end of a line.  The size is checked
 * against the limits before anything is allocated for it; {4294967295} or
 * any size over max_literal, max_nonsync (for {n+}) or what is left of
 * max_command refuses the command: a synchronizing literal is then not
 * awaited (no continuation is asked for; the client sees the tagged answer
 * and sends nothing), a non-synchronizing one will come anyway and is read
 * and discarded without being stored.  Answers: NO [TOOBIG] for a literal
 * that is too big (a size past 2^64 included), BAD [TOOBIG] for {n+} over
 * max_nonsync (RFC 7888), BAD for a line over max_line or a command over
 * max_command (the rest is discarded as above).  "{" and "}" that do not
 * hold a size ("{}", "{1a}"), or that are inside a quoted string, announce
 * no literal: the line ends the command and the parser judges it.
 *
 * Lines end with CRLF; a bare LF is taken as a line end too.
 *
 * Parsing (imap_parse): the text of one command (as the reader assembled
 * it: lines without their CRLF, each literal as "{n}" CRLF and its n bytes)
 * into struct imap_command.  Grammar of RFC 3501 and RFC 9051 with
 * LITERAL+ (7888), BINARY (3516), MULTIAPPEND (3502), ESEARCH (4731),
 * SEARCHRES (5182), SORT/THREAD (5256), ESORT (5267), CONDSTORE/QRESYNC
 * (7162), LIST-EXTENDED (5258), LIST-STATUS (5819), SPECIAL-USE (6154),
 * UIDPLUS (4315), MOVE (6851), ID (2971), ENABLE (5161), IDLE (2177),
 * UNSELECT (3691), UTF8=ACCEPT (6855), WITHIN (5032), STATUS=SIZE (8438),
 * APPENDLIMIT (7889).  Keywords are case-insensitive; tokens are
 * separated by exactly one space.  Quoted strings may hold UTF-8 (as RFC
 * 9051 allows; invalid UTF-8, NUL, CR and LF are refused) whether or not
 * UTF8=ACCEPT is on; a literal may hold anything but NUL, a literal8 any
 * octet.  A failure fills e (ERR_PARSE, a text fit for "TAG BAD text");
 * imap_parse_tag() recovers the tag for it.  Nothing is checked against
 * the session's state: the owner decides whether a command is allowed
 * now.  The command owns copies of everything it holds (APPEND data
 * included), so it outlives the reader's buffer.
 *
 * Writing (imap_command_write): the canonical IMAP text of a parsed
 * command -- keywords upper case, macros expanded, strings as atoms,
 * quoted strings or literals as needed -- which parses back to the same
 * command.  The tests and the fuzz target compare these dumps.
 */
#ifndef CORREOD_IMAP_PARSE_H
#define CORREOD_IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

#define IMAP_LINE_MAX_DEFAULT 65536u
#define IMAP_LITERAL_MAX_DEFAULT (64u * 1024 * 1024)
#define IMAP_COMMAND_MAX_DEFAULT (65u * 1024 * 1024)
#define IMAP_DEPTH_MAX_DEFAULT 32u
#define IMAP_LITERAL_MINUS_MAX 4096u     /* {n+} limit with LITERAL- */

/* ------------------------------------------------------------------ */
/* Reading commands from the stream */

struct imap_limits {
    size_t max_line;           /* octets in one line, CRLF not counted; 0: default */
    uint64_t max_literal;      /* octets in one literal (APPENDLIMIT); 0: default */
    uint64_t max_nonsync;      /* octets in one {n+} literal; 0: max_literal */
    uint64_t max_command;      /* octets of a whole command, lines and literals
                                  (>= max_line + max_literal); 0: default */
};

enum imap_event {
    IMAP_EV_NONE = 0,
    IMAP_EV_CONTINUE,
    IMAP_EV_COMMAND,
    IMAP_EV_LINE,
    IMAP_EV_ERROR,
};

enum imap_resp { IMAP_RESP_BAD = 0, IMAP_RESP_NO };

struct imap_read_error {
    enum imap_resp resp;
    const char *tag;           /* NULL: no usable tag (answer untagged "*") */
    const char *text;          /* e.g. "[TOOBIG] Literal too big" */
};

struct imap_reader;

struct imap_reader *imap_reader_new(const struct imap_limits *lim);
void imap_reader_free(struct imap_reader *r);

/* Consume bytes up to and including the first event (see above). */
size_t imap_reader_feed(struct imap_reader *r, const char *data, size_t len,
                        enum imap_event *ev);

/* After IMAP_EV_COMMAND: the command text (see imap_parse), valid until the
 * next feed.  *len set; the text is NUL-terminated past len. */
const char *imap_reader_command(const struct imap_reader *r, size_t *len);

/* Read the next line raw (no literal processing), reported as IMAP_EV_LINE;
 * a line over max_line is IMAP_EV_ERROR instead.  Call it between
 * commands only (after IMAP_EV_COMMAND or IMAP_EV_LINE). */
void imap_reader_expect_line(struct imap_reader *r);
const char *imap_reader_line(const struct imap_reader *r, size_t *len);

/* After IMAP_EV_ERROR; valid until the next feed. */
const struct imap_read_error *imap_reader_error(const struct imap_reader *r);

/* True while the reader is inside a command (lines or literals read but the
 * command not complete) or discarding one. */
bool imap_reader_busy(const struct imap_reader *r);

/* ------------------------------------------------------------------ */
/* Parsed commands */

enum imap_cmd {
    IMAP_CMD_CAPABILITY = 0, IMAP_CMD_NOOP, IMAP_CMD_LOGOUT, IMAP_CMD_STARTTLS,
    IMAP_CMD_AUTHENTICATE, IMAP_CMD_LOGIN, IMAP_CMD_ENABLE, IMAP_CMD_ID,
    IMAP_CMD_IDLE, IMAP_CMD_NAMESPACE, IMAP_CMD_SELECT, IMAP_CMD_EXAMINE,
    IMAP_CMD_CREATE, IMAP_CMD_DELETE, IMAP_CMD_RENAME, IMAP_CMD_SUBSCRIBE,
    IMAP_CMD_UNSUBSCRIBE, IMAP_CMD_LIST, IMAP_CMD_LSUB, IMAP_CMD_STATUS,
    IMAP_CMD_APPEND, IMAP_CMD_CHECK, IMAP_CMD_CLOSE, IMAP_CMD_UNSELECT,
    IMAP_CMD_EXPUNGE, IMAP_CMD_SEARCH, IMAP_CMD_FETCH, IMAP_CMD_STORE,
    IMAP_CMD_COPY, IMAP_CMD_MOVE, IMAP_CMD_SORT, IMAP_CMD_THREAD,
};

/* Upper-case name, e.g. "FETCH". */
const char *imap_cmd_name(enum imap_cmd cmd);

/* A string argument: NUL-terminated copy; len counts the octets (a literal8
 * may hold NULs).  s is NULL for NIL where NIL is allowed. */
struct imap_str {
    char *s;
    size_t len;
    bool binary;               /* came as literal8 ~{n} */
};

/* Sequence sets.  Numbers are 1 to 4294967295; IMAP_SEQ_STAR ("*") sorts
 * above every number, so "*:4" and "4:*" are both {4, STAR}, and a range
 * holds lo <= hi.  IMAP_SEQ_SAVED in both ends is "$" (RFC 5182).  The
 * ranges are kept in the order given, not merged. */
#define IMAP_SEQ_STAR UINT64_MAX
#define IMAP_SEQ_SAVED 0u
struct imap_range {
    uint64_t lo, hi;
};
struct imap_seqset {
    struct imap_range *r;
    size_t n;                  /* 0: absent */
};

struct imap_date {
    int year, month, day;      /* month 1-12 */
};
struct imap_datetime {
    struct imap_date date;
    int hour, min, sec;
    int zone;                  /* minutes east of UTC */
};

enum imap_skey {
    IMAP_SK_AND = 0,           /* "(" keys ")" or the top level: children */
    IMAP_SK_ALL, IMAP_SK_ANSWERED, IMAP_SK_BCC, IMAP_SK_BEFORE, IMAP_SK_BODY,
    IMAP_SK_CC, IMAP_SK_DELETED, IMAP_SK_DRAFT, IMAP_SK_FLAGGED, IMAP_SK_FROM,
    IMAP_SK_HEADER, IMAP_SK_KEYWORD, IMAP_SK_LARGER, IMAP_SK_NEW, IMAP_SK_NOT,
    IMAP_SK_OLD, IMAP_SK_ON, IMAP_SK_OR, IMAP_SK_RECENT, IMAP_SK_SEEN,
    IMAP_SK_SENTBEFORE, IMAP_SK_SENTON, IMAP_SK_SENTSINCE, IMAP_SK_SINCE,
    IMAP_SK_SMALLER, IMAP_SK_SUBJECT, IMAP_SK_TEXT, IMAP_SK_TO, IMAP_SK_UID,
    IMAP_SK_UNANSWERED, IMAP_SK_UNDELETED, IMAP_SK_UNDRAFT, IMAP_SK_UNFLAGGED,
    IMAP_SK_UNKEYWORD, IMAP_SK_UNSEEN, IMAP_SK_SEQSET, IMAP_SK_MODSEQ,
    IMAP_SK_OLDER, IMAP_SK_YOUNGER,
};

struct imap_search_key {
    enum imap_skey key;
    struct imap_str str;       /* BCC BODY CC FROM SUBJECT TEXT TO, HEADER value,
                                  KEYWORD/UNKEYWORD flag, MODSEQ entry name */
    struct imap_str field;     /* HEADER field name; MODSEQ entry type
                                  ("priv" "shared" "all"), s NULL if absent */
    uint64_t num;              /* LARGER SMALLER MODSEQ OLDER YOUNGER */
    struct imap_date date;     /* BEFORE ON SINCE SENT* */
    struct imap_seqset set;    /* UID, SEQSET */
    struct imap_search_key *child;  /* AND: first; NOT: operand; OR: first of two */
    struct imap_search_key *next;   /* sibling */
};

/* ESEARCH RETURN options (RFC 4731, 5182) */
enum {
    IMAP_RET_MIN = 1, IMAP_RET_MAX = 2, IMAP_RET_ALL = 4, IMAP_RET_COUNT = 8,
    IMAP_RET_SAVE = 16,
};

enum imap_sort_key {
    IMAP_SORT_ARRIVAL = 0, IMAP_SORT_CC, IMAP_SORT_DATE, IMAP_SORT_FROM,
    IMAP_SORT_SIZE, IMAP_SORT_SUBJECT, IMAP_SORT_TO, IMAP_SORT_DISPLAYFROM,
    IMAP_SORT_DISPLAYTO,
};
struct imap_sort_crit {
    enum imap_sort_key key;
    bool reverse;
};

enum imap_fetch_item {
    IMAP_FETCH_ENVELOPE = 0, IMAP_FETCH_FLAGS, IMAP_FETCH_INTERNALDATE,
    IMAP_FETCH_RFC822, IMAP_FETCH_RFC822_HEADER, IMAP_FETCH_RFC822_SIZE,
    IMAP_FETCH_RFC822_TEXT, IMAP_FETCH_BODY /* structure, no section */,
    IMAP_FETCH_BODYSTRUCTURE, IMAP_FETCH_UID, IMAP_FETCH_BODY_SECTION,
    IMAP_FETCH_BINARY, IMAP_FETCH_BINARY_SIZE, IMAP_FETCH_MODSEQ,
};
enum imap_section_spec {
    IMAP_SECTION_NONE = 0,     /* BODY[] or BODY[1.2]: the whole (part) */
    IMAP_SECTION_HEADER, IMAP_SECTION_HEADER_FIELDS,
    IMAP_SECTION_HEADER_FIELDS_NOT, IMAP_SECTION_TEXT, IMAP_SECTION_MIME,
};
struct imap_fetch_att {
    enum imap_fetch_item item;
    bool peek;                 /* BODY.PEEK, BINARY.PEEK */
    uint32_t *parts;           /* section part numbers, e.g. 1.2 */
    size_t n_parts;
    enum imap_section_spec spec;
    struct imap_str *fields;   /* HEADER.FIELDS[.NOT] names */
    size_t n_fields;
    bool partial;              /* <offset.count> */
    uint64_t offset, count;
};

enum imap_store_op { IMAP_STORE_SET = 0, IMAP_STORE_ADD, IMAP_STORE_REMOVE };

/* LIST-EXTENDED selection and return options, and STATUS items */
enum {
    IMAP_LSEL_SUBSCRIBED = 1, IMAP_LSEL_REMOTE = 2, IMAP_LSEL_RECURSIVEMATCH = 4,
    IMAP_LSEL_SPECIAL_USE = 8,
};
enum {
    IMAP_LRET_SUBSCRIBED = 1, IMAP_LRET_CHILDREN = 2, IMAP_LRET_SPECIAL_USE = 4,
    IMAP_LRET_STATUS = 8,
};
enum {
    IMAP_STATUS_MESSAGES = 1, IMAP_STATUS_RECENT = 2, IMAP_STATUS_UIDNEXT = 4,
    IMAP_STATUS_UIDVALIDITY = 8, IMAP_STATUS_UNSEEN = 16, IMAP_STATUS_DELETED = 32,
    IMAP_STATUS_SIZE = 64, IMAP_STATUS_HIGHESTMODSEQ = 128,
    IMAP_STATUS_APPENDLIMIT = 256,
};

struct imap_append_msg {
    struct imap_str *flags;
    size_t n_flags;
    bool has_flags;            /* a flag list was given (maybe empty) */
    bool has_date;
    struct imap_datetime date;
    bool utf8;                 /* UTF8 (~{n}) form of RFC 6855 */
    struct imap_str data;      /* the message; data.binary for literal8 */
};

struct imap_arena;

struct imap_command {
    char *tag;
    enum imap_cmd cmd;
    bool uid;                  /* UID COPY/MOVE/FETCH/SEARCH/STORE/EXPUNGE/SORT/THREAD */

    /* mailbox: SELECT EXAMINE CREATE DELETE RENAME (from) SUBSCRIBE
     * UNSUBSCRIBE STATUS APPEND COPY MOVE (to), LIST/LSUB reference.
     * As sent (decode with imap_mailbox_decode), except that any case of
     * "INBOX" is "INBOX" (not for the LIST reference). */
    struct imap_str mailbox;
    struct imap_str mailbox2;  /* RENAME: new name */
    struct imap_seqset set;    /* FETCH STORE COPY MOVE, UID EXPUNGE */

    struct { struct imap_str user, password; } login;
    struct {
        struct imap_str mechanism;
        bool has_initial;
        struct imap_str initial;   /* base64 as sent, "" for "=" */
    } auth;
    struct { struct imap_str *caps; size_t n; } enable;
    struct {
        bool nil;
        struct imap_str *fields, *values;   /* values[i].s NULL for NIL */
        size_t n;
    } id;
    struct {
        bool condstore, qresync;
        uint32_t uidvalidity;
        uint64_t modseq;
        struct imap_seqset known_uids;     /* n 0: absent */
        struct imap_seqset match_seqs, match_uids;
    } select;
    struct { struct imap_str *use; size_t n_use; } create;   /* (USE (\Drafts)) */
    struct {
        unsigned sel;              /* IMAP_LSEL_* */
        bool extended;             /* selection options or a pattern list given */
        struct imap_str *patterns;
        size_t n_patterns;
        unsigned ret;              /* IMAP_LRET_* */
        bool has_return;
        unsigned status_items;     /* for IMAP_LRET_STATUS */
    } list;
    unsigned status_items;         /* STATUS */
    struct { struct imap_append_msg *msgs; size_t n; } append;
    struct {
        bool has_return;           /* SEARCH/SORT RETURN (...): ESEARCH/ESORT */
        unsigned ret;              /* IMAP_RET_*; 0 with has_return is "()" = ALL */
        struct imap_str charset;   /* s NULL if absent */
        struct imap_search_key *keys;   /* an IMAP_SK_AND at the top */
        struct imap_sort_crit *sort;
        size_t n_sort;
        struct imap_str algorithm; /* THREAD */
    } search;
    struct {
        struct imap_fetch_att *atts;
        size_t n;
        bool has_changedsince;
        uint64_t changedsince;
        bool vanished;
    } fetch;
    struct {
        enum imap_store_op op;
        bool silent;
        struct imap_str *flags;
        size_t n_flags;
        bool has_unchangedsince;
        uint64_t unchangedsince;
    } store;

    struct imap_arena *arena;      /* owns everything above */
};

struct imap_parse_opts {
    unsigned max_depth;        /* parentheses and NOT/OR nesting; 0: default */
    bool utf8;                 /* UTF8=ACCEPT is enabled: UTF-8 in quoted strings */
};

/* Parse one command (text as imap_reader_command() gives it).  Returns 0
 * with *out set (free with imap_command_free), or -1 with e filled and
 * *out NULL. */
int imap_parse(const char *text, size_t len, const struct imap_parse_opts *opts,
               struct imap_command **out, struct err *e);
void imap_command_free(struct imap_command *c);

/* The tag at the start of text, when there is a valid one (appended to
 * out, which is reset first).  Returns 0, or -1 when there is none. */
int imap_parse_tag(const char *text, size_t len, struct buf *out);

/* Canonical text of c (see above) appended to out; -1 at out's ceiling. */
int imap_command_write(const struct imap_command *c, struct buf *out);

/* ------------------------------------------------------------------ */
/* Response side */

/* s[0..len) as a quoted string when it can be one (no CR, LF or NUL, at
 * most 1024 octets, 8-bit only when utf8 is set and it is valid UTF-8),
 * else as a literal "{n}" CRLF bytes.  -1 at out's ceiling. */
int imap_write_string(struct buf *out, const char *s, size_t len, bool utf8);
/* As an atom when it is one (ASTRING-CHARs, not empty), else as above. */
int imap_write_astring(struct buf *out, const char *s, size_t len, bool utf8);
/* NIL for s == NULL, else imap_write_string. */
int imap_write_nstring(struct buf *out, const char *s, size_t len, bool utf8);

/* A mailbox name as received, to UTF-8: modified UTF-7 is decoded unless
 * utf8 (UTF8=ACCEPT enabled, the name is then UTF-8 and must be valid);
 * any case of "INBOX" becomes "INBOX".  Appends to out; -1 with e filled
 * (ERR_PARSE) for a bad name or one holding a control character. */
int imap_mailbox_decode(const char *name, size_t len, bool utf8, struct buf *out,
                        struct err *e);
/* A UTF-8 mailbox name as an astring: modified UTF-7 unless utf8.  -1 with
 * e filled for a name that is not valid UTF-8, or at out's ceiling. */
int imap_write_mailbox(struct buf *out, const char *name, size_t len, bool utf8,
                       struct err *e);

#endif
