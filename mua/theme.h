/*
 * theme: colour roles, their attributes, and the color/mono/uncolor commands.
 *
 * A theme maps each role (what is drawn: the indicator bar, a new message,
 * a quoted line of depth 2...) to a struct theme_attr: a foreground and a
 * background colour and a set of attributes.  Colours are abstract: -1 is the
 * terminal's default, 0..255 the xterm 256-colour palette (0..7 the basic
 * colours, 8..15 their bright variants, 16..231 a 6x6x6 cube, 232..255 a grey
 * ramp).  The UI turns them into curses colour pairs; this module never
 * includes curses.
 *
 * Two tables: colour (used when the terminal has colours) and mono (used when
 * it has none; attributes only), as mutt's color and mono commands.  Besides
 * the roles, rules colour by content: index lines by a mutt pattern, header
 * and body lines by a regular expression.  Rules are kept in the order given;
 * the UI applies every matching rule, a later one over an earlier one.
 *
 * Colour values (case-insensitive):
 *   default                 the terminal's own colour (-1)
 *   black red green yellow blue magenta cyan white           0..7
 *   brightblack ... brightwhite                             8..15
 *   colorN / colourN        palette entry N, 0..255
 *   #rrggbb                 the nearest entry of the 256-colour palette
 *                           (cube or grey ramp, by squared RGB distance;
 *                           entries 0..15 are never chosen because
 *                           terminals disagree on their exact RGB)
 * Attributes: bold underline reverse standout dim italic blink, and none
 * (clears).  Commands (rcfile syntax):
 *   color ROLE [ATTR...] FG BG
 *   color index  [ATTR...] FG BG PATTERN
 *   color header [ATTR...] FG BG REGEX
 *   color body   [ATTR...] FG BG REGEX
 *   mono  ROLE ATTR...            mono index|header|body ATTR PATTERN|REGEX
 *   uncolor ROLE                  back to the built-in default
 *   uncolor index|header|body PATTERN...|*     remove rules
 *   unmono  (the same for the mono table)
 * "color index FG BG" without a pattern sets the index role (every line).
 * "color quoted" is quoted0.
 *
 * Degrading (theme_degrade): for 16 colours, each palette entry above 15
 * becomes the nearest of the 16 basic colours (by the standard xterm RGB
 * values); for 8, the same and then a bright foreground 8..15 becomes its
 * basic colour plus bold, a bright background its basic colour.  If a
 * foreground ends up equal to its background, the foreground becomes black
 * or white, whichever contrasts.  For mono, every role takes its mono
 * attributes and colour rules are dropped (in colour modes, mono rules are
 * dropped).
 */
#ifndef CORREO_THEME_H
#define CORREO_THEME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rcfile.h"

#define THEME_ROLES(X) \
    X(NORMAL, "normal", "text with no other role") \
    X(INDICATOR, "indicator", "the cursor bar in lists") \
    X(STATUS, "status", "the status line") \
    X(TREE, "tree", "the thread tree in the index") \
    X(INDEX, "index", "an index line (default for every message)") \
    X(NEW, "new", "a new (unread) message in the index") \
    X(OLD, "old", "an old unread message in the index") \
    X(FLAGGED, "flagged", "a flagged message in the index") \
    X(DELETED, "deleted", "a message marked for deletion") \
    X(TAGGED, "tagged", "a tagged message") \
    X(HEADER, "header", "header names in the pager") \
    X(HDRDEFAULT, "hdrdefault", "header lines in the pager") \
    X(QUOTED0, "quoted", "quoted text, first level (also quoted0)") \
    X(QUOTED1, "quoted1", "quoted text, level 2") \
    X(QUOTED2, "quoted2", "quoted text, level 3") \
    X(QUOTED3, "quoted3", "quoted text, level 4") \
    X(QUOTED4, "quoted4", "quoted text, level 5") \
    X(QUOTED5, "quoted5", "quoted text, level 6") \
    X(QUOTED6, "quoted6", "quoted text, level 7") \
    X(QUOTED7, "quoted7", "quoted text, level 8") \
    X(QUOTED8, "quoted8", "quoted text, level 9") \
    X(QUOTED9, "quoted9", "quoted text, level 10 and deeper") \
    X(SIGNATURE, "signature", "the signature of a message") \
    X(ATTACHMENT, "attachment", "attachment markers in the pager") \
    X(SEARCH, "search", "search matches") \
    X(ERROR, "error", "error messages") \
    X(MESSAGE, "message", "informational messages") \
    X(PROMPT, "prompt", "questions and prompts") \
    X(MARKERS, "markers", "the + at the start of wrapped lines") \
    X(TILDE, "tilde", "the ~ after the end of a message") \
    X(BOLD, "bold", "bold text in a message body") \
    X(UNDERLINE, "underline", "underlined text in a message body")

enum theme_role {
#define THEME_ROLE_ENUM(id, name, desc) THEME_##id,
    THEME_ROLES(THEME_ROLE_ENUM)
#undef THEME_ROLE_ENUM
    THEME_ROLE_COUNT
};

enum theme_attr_bits {
    THEME_A_BOLD      = 1u << 0,
    THEME_A_UNDERLINE = 1u << 1,
    THEME_A_REVERSE   = 1u << 2,
    THEME_A_STANDOUT  = 1u << 3,
    THEME_A_DIM       = 1u << 4,
    THEME_A_ITALIC    = 1u << 5,
    THEME_A_BLINK     = 1u << 6,
};

#define THEME_DEFAULT_COLOR (-1)

struct theme_attr {
    int16_t fg, bg;         /* -1 default, 0..255 */
    uint16_t attrs;         /* enum theme_attr_bits */
};

enum theme_rule_kind { THEME_RULE_INDEX, THEME_RULE_HEADER, THEME_RULE_BODY };

struct theme_rule {
    enum theme_rule_kind kind;
    bool mono;              /* from a mono command */
    char *pattern;          /* mutt pattern (index) or POSIX ERE (header, body) */
    struct theme_attr attr;
};

struct theme {
    struct theme_attr color[THEME_ROLE_COUNT];
    struct theme_attr mono[THEME_ROLE_COUNT];
    bool color_set[THEME_ROLE_COUNT];   /* set by a color command */
    bool mono_set[THEME_ROLE_COUNT];    /* set by a mono command */
    struct theme_rule *rules;
    size_t n_rules;
    int colors;             /* 256, or what theme_degrade() made it: 16, 8, 0 */
};

/* The built-in theme: default colours, reverse for indicator, status,
 * search and markers; in mono also bold for errors and underline for
 * tagged messages. */
void theme_init(struct theme *t);
void theme_free(struct theme *t);
void theme_copy(struct theme *dst, const struct theme *src);

int theme_role_parse(const char *name);          /* -1 if unknown */
const char *theme_role_name(enum theme_role role);
const char *theme_role_desc(enum theme_role role);

/* One colour value (syntax above): 0, or -1 with *e.  One attribute name:
 * its bit (0 for none), or -1 if s is not an attribute. */
int theme_parse_color(const char *s, int16_t *color, struct err *e);
int theme_parse_attr(const char *s);

/* The 256-palette entry nearest to an RGB colour (16..255). */
int16_t theme_rgb_to_256(uint8_t r, uint8_t g, uint8_t b);
/* The RGB of a palette entry 0..255. */
void theme_256_to_rgb(int16_t c, uint8_t *r, uint8_t *g, uint8_t *b);
/* Nearest of the first `basic` (8 or 16) colours to palette entry c. */
int16_t theme_nearest_basic(int16_t c, int basic);

/* Make dst a copy of src for a terminal with `colors` colours (256, 16, 8;
 * 0 or 1 for mono).  dst must not be initialised (or must be freed). */
void theme_degrade(const struct theme *src, int colors, struct theme *dst);

/* color, mono, uncolor, unmono.  -1 with *e for anything else. */
bool theme_is_command(const char *name);
int theme_command(struct theme *t, const struct rc_cmd *cmd, struct err *e);

/* Load a theme file (rcfile syntax, no source, only the commands above) on
 * top of t.  -1 with *e only if the file cannot be read. */
int theme_load(struct theme *t, const char *path, struct rc_diag *diag, struct err *e);

#endif
