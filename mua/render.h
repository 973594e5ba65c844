/*
 * render: a parsed message as the pager's list of display lines (no
 * ncurses here: the pager draws the lines, colours them by role and does
 * the scrolling).
 *
 * What it produces, in order:
 *   - the headers: with opts.all_headers the raw header block line by line;
 *     otherwise the fields left by the ignore/unignore lists (mutt's
 *     "ignore" / "unignore": case-insensitive prefixes of "Name:", "*" is
 *     every field; a field is shown when an unignore entry matches it or no
 *     ignore entry does), ordered by opts.header_order (mutt's hdr_order:
 *     fields matching an entry come first, in the list's order, the rest
 *     keep the message's order), each value unfolded and RFC 2047 decoded;
 *   - an empty line;
 *   - the parts in MIME order: the best text part (message_best_text) as
 *     body text, every other leaf part as one attachment line
 *     "[-- Attachment #N: name (type, size) --]" (N counts the leaf parts
 *     from 1; a message/rfc822 part is one leaf; an alternative of a
 *     multipart/alternative that is not shown says "Alternative");
 *   - info lines "[-- ... --]" where something was not shown as sent: an
 *     unknown charset, damaged transfer encoding, a part cut at the size
 *     limit, HTML filtered (or converted by the built-in converter after the
 *     filter failed), the whole display cut at opts.max_bytes.
 *
 * Body text: text/plain as decoded; format=flowed soft line breaks are
 * joined (honouring DelSp and quote depth, space-stuffing removed) when
 * opts.reflow is set, otherwise lines are shown as sent.  text/html goes
 * through opts.html_filter when set: the string is split into words by the
 * rc syntax (lib/rcfile: quotes and backslashes; no variables, no ';') and
 * run without a shell, the UTF-8 HTML on its stdin, its stdout read as
 * UTF-8, killed after opts.filter_timeout_ms; any failure (missing
 * program, non-zero exit, timeout) falls back to the built-in html_to_text
 * with an info line saying why.  No message byte is ever on a command line.
 *
 * Lines: every line's text is sanitized (lib/sanitize) before it is stored,
 * TABs are expanded to 8-column stops, and a line wider than opts.cols
 * columns is wrapped (wide and combining characters measured right): with
 * opts.smart_wrap at the last space that fits (the space is dropped),
 * otherwise, or when no space fits, exactly at the width.  Wrapped pieces
 * keep their role and quote level and carry RENDER_LINE_CONT; they are
 * contiguous in the text arena, so out->text from the first piece's off to
 * the last piece's end is the whole logical line (with its break spaces).
 * A single character wider than opts.cols still gets a line of its own.
 *
 * Roles: quoted lines start (after optional blanks) with a quote character
 * (opts.quote_chars, default ">"); the level is the number of quote
 * characters with optional blanks between them, at most 9.  The signature
 * is everything from a line that is exactly "-- " (or "--" with
 * opts.lenient_sig) to the end of the body text.
 */
#ifndef CORREO_RENDER_H
#define CORREO_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "message.h"

enum render_role {
    RENDER_HEADER = 0,    /* "Name: value" (name_len bytes of "Name:") */
    RENDER_BODY,
    RENDER_QUOTED,        /* quote is 1..9 */
    RENDER_SIGNATURE,
    RENDER_ATTACHMENT,    /* part is the index in message.parts */
    RENDER_INFO,          /* "[-- ... --]" notes from the renderer */
};

enum render_line_flags {
    RENDER_LINE_CONT = 1u << 0,   /* continuation of the line above (wrapped) */
};

#define RENDER_QUOTE_MAX 9

struct render_line {
    uint32_t off, len;    /* sanitized UTF-8 in out->text */
    uint8_t role;         /* enum render_role */
    uint8_t quote;        /* RENDER_QUOTED: 1..RENDER_QUOTE_MAX, else 0 */
    uint16_t flags;       /* RENDER_LINE_* */
    uint32_t name_len;    /* RENDER_HEADER, first piece: bytes of "Name:" */
    uint32_t part;        /* RENDER_ATTACHMENT: index in message.parts */
};

struct render_out {
    struct buf text;              /* arena; lines are slices of it */
    struct render_line *lines;
    size_t n_lines;
    size_t cap_lines;
    bool truncated;               /* cut at opts.max_bytes (an info line says so) */
};

struct render_opts {
    size_t cols;                        /* wrap width; 0: no wrapping */
    bool smart_wrap;                    /* break at spaces */
    bool all_headers;                   /* the raw header block instead */
    const char *const *header_order;    /* NULL-terminated; NULL: message order */
    const char *const *ignore;          /* NULL-terminated; NULL: {"*"} */
    const char *const *unignore;        /* NULL-terminated; NULL: from: subject:
                                           to: cc: date: reply-to: list-id:
                                           x-label: */
    bool reflow;                        /* join format=flowed lines */
    bool lenient_sig;                   /* "--" also starts the signature */
    const char *quote_chars;            /* NULL: ">" */
    const char *html_filter;            /* NULL or "": built-in converter */
    unsigned filter_timeout_ms;         /* 0: 10000 */
    size_t max_bytes;                   /* text plus lines; 0: 256 MiB */
};

/* cols 80, smart_wrap and reflow on, everything else off or default. */
void render_opts_default(struct render_opts *o);

void render_out_init(struct render_out *out);
void render_out_free(struct render_out *out);
/* Forget the lines, keep the storage. */
void render_out_reset(struct render_out *out);

/* Render m into out (reset first).  Never fails because of the message's
 * content: problems become info lines.  Returns -1 only for a NULL message
 * (ERR_INVAL). */
int render_message(const struct message *m, const struct render_opts *opts,
                   struct render_out *out, struct err *e);

/* Append text[0..len) (UTF-8, e.g. a viewer's copiousoutput or a text
 * attachment) as body lines: quote levels, signature, sanitizing and
 * wrapping as for a message body.  Returns -1 (ERR_LIMIT) when max_bytes
 * was reached; out then ends with an info line saying so. */
int render_text(const char *text, size_t len, const struct render_opts *opts,
                struct render_out *out, struct err *e);

/* The text of line i (not NUL-terminated). */
static inline const char *render_line_text(const struct render_out *out, size_t i)
{
    return out->text.data ? out->text.data + out->lines[i].off : "";
}

/* "name (type, size)" or "(type, size)" for part p, sanitized, as in
 * attachment lines (name: the file name, else the description, else a
 * message/rfc822 part's subject; size: the decoded size, estimated from
 * the encoded one); for an attachment menu.  Free with free(). */
char *render_part_label(const struct msg_part *p);

/* ---- search -------------------------------------------------------------- */

enum render_search_flags {
    RENDER_SEARCH_REGEX = 1u << 0,   /* POSIX extended regex, else a substring */
    RENDER_SEARCH_ICASE = 1u << 1,   /* ignore case */
    RENDER_SEARCH_SMART = 1u << 2,   /* ignore case unless the pattern has an
                                        upper-case letter (after a backslash
                                        in a regex it is an escape: not
                                        counted) */
};

struct render_hit {
    size_t line;          /* index in out->lines */
    uint32_t off, len;    /* bytes within that line's text */
};

struct render_hits {
    struct render_hit *v;
    size_t n;
    bool truncated;       /* more than RENDER_HITS_MAX matches */
};

#define RENDER_HITS_MAX (1u << 20)

/* Every match of pattern in out, in order.  Matching runs over logical
 * lines (the wrapped pieces joined), so a match that crosses a wrap is
 * found and reported once per piece it covers.  Case folding of substrings
 * is ASCII-only; regexes follow the process locale.  -1 with ERR_INVAL for
 * an empty or bad pattern. */
int render_search(const struct render_out *out, const char *pattern, unsigned flags,
                  struct render_hits *hits, struct err *e);
void render_hits_free(struct render_hits *hits);

/* For n / N: index in hits of the first hit on a line after `line`
 * (forward) or before it (backward), wrapping around; -1 if there are no
 * hits. */
long render_hit_next(const struct render_hits *hits, size_t line, bool forward);

#endif
