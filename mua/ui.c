/* ui: curses screen, colours, keys, drawing and the line editor. */
#include "ui.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

/* keymap.h names a function key_name, as curses does; this file needs only
 * the key codes. */
#define key_name keymap_key_name_
#include "keymap.h"
#undef key_name
#include <curses.h>
#include "sanitize.h"
#include "xalloc.h"

static struct {
    bool active;
    attr_t attr[THEME_ROLE_COUNT];
    char msg[1024];
    bool msg_error;
} ui;

static attr_t bits_to_attr(unsigned bits)
{
    attr_t a = A_NORMAL;

    if (bits & THEME_A_BOLD)
        a |= A_BOLD;
    if (bits & THEME_A_UNDERLINE)
        a |= A_UNDERLINE;
    if (bits & THEME_A_REVERSE)
        a |= A_REVERSE;
    if (bits & THEME_A_STANDOUT)
        a |= A_STANDOUT;
    if (bits & THEME_A_DIM)
        a |= A_DIM;
#ifdef A_ITALIC
    if (bits & THEME_A_ITALIC)
        a |= A_ITALIC;
#endif
    if (bits & THEME_A_BLINK)
        a |= A_BLINK;
    return a;
}

void ui_set_theme(const struct theme *src)
{
    struct theme t;
    int colors = has_colors() ? COLORS : 0;

    struct theme base;
    theme_init(&base);
    theme_degrade(src ? src : &base, colors >= 256 ? 256 : colors >= 16 ? 16 : colors >= 8 ? 8 : 0,
                  &t);
    theme_free(&base);
    for (int r = 0; r < THEME_ROLE_COUNT; r++) {
        const struct theme_attr *ta = colors ? &t.color[r] : &t.mono[r];
        attr_t a = bits_to_attr(ta->attrs);
        if (colors && (ta->fg != THEME_DEFAULT_COLOR || ta->bg != THEME_DEFAULT_COLOR) &&
            r + 1 < COLOR_PAIRS) {
            short fg = ta->fg < colors ? ta->fg : -1, bg = ta->bg < colors ? ta->bg : -1;
            init_pair((short)(r + 1), fg, bg);
            a |= COLOR_PAIR(r + 1);
        }
        ui.attr[r] = a;
    }
    /* Roles with nothing of their own draw like "normal". */
    theme_free(&t);
}

int ui_init(const struct theme *theme, struct err *e)
{
    if (!initscr())
        return err_set(e, ERR_IO, "cannot initialise the terminal");
    ui.active = true;
    raw();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    set_escdelay(50);
    curs_set(0);
    if (has_colors()) {
        start_color();
        use_default_colors();
    }
    ui_set_theme(theme);
    bkgdset(ui.attr[THEME_NORMAL] | ' ');
    erase();
    return 0;
}

void ui_end(void)
{
    if (!ui.active)
        return;
    endwin();
    ui.active = false;
}

void ui_suspend(void)
{
    def_prog_mode();
    endwin();
}

void ui_resume(void)
{
    reset_prog_mode();
    clearok(curscr, TRUE);
    refresh();
}

int ui_rows(void)
{
    return LINES;
}

int ui_cols(void)
{
    return COLS;
}

static int map_curses_key(int k)
{
    switch (k) {
    case KEY_UP: return KEYC_UP;
    case KEY_DOWN: return KEYC_DOWN;
    case KEY_LEFT: return KEYC_LEFT;
    case KEY_RIGHT: return KEYC_RIGHT;
    case KEY_HOME: return KEYC_HOME;
    case KEY_END: return KEYC_END;
    case KEY_PPAGE: return KEYC_PAGEUP;
    case KEY_NPAGE: return KEYC_PAGEDOWN;
    case KEY_IC: return KEYC_INSERT;
    case KEY_DC: return KEYC_DELETE;
    case KEY_BACKSPACE: return KEYC_BACKSPACE;
    case KEY_BTAB: return KEYC_BACKTAB;
    case KEY_ENTER: return KEYC_KP_ENTER;
    case KEY_RESIZE: return UI_KEY_RESIZE;
    default:
        break;
    }
    if (k >= KEY_F(0) && k <= KEY_F(KEYC_F_MAX))
        return KEYC_F(k - KEY_F(0));
    return UI_KEY_TIMEOUT;   /* unknown: ignored */
}

int ui_getkey(int timeout_ms)
{
    wint_t ch;
    int rc;

    timeout(timeout_ms);
    rc = get_wch(&ch);
    if (rc == ERR)
        return UI_KEY_TIMEOUT;
    if (rc == KEY_CODE_YES)
        return map_curses_key((int)ch);
    return (int)ch;
}

void ui_draw(int row, int col, const char *text, size_t len, enum theme_role role,
             unsigned extra, bool fill)
{
    attr_t a = ui.attr[role] | bits_to_attr(extra);
    size_t used = 0;

    if (row < 0 || row >= LINES || col >= COLS)
        return;
    size_t room = (size_t)(COLS - col);
    size_t n = sanitize_fit(text, len, room, &used);
    attron(a);
    move(row, col);
    if (n)
        addnstr(text, (int)n);
    if (fill) {
        for (size_t i = (size_t)col + used; i < (size_t)COLS; i++)
            addch(' ');
    }
    attroff(a);
}

void ui_clear_row(int row, enum theme_role role)
{
    ui_draw(row, 0, "", 0, role, 0, true);
}

void ui_erase(void)
{
    erase();
}

void ui_refresh(void)
{
    refresh();
}

void ui_redraw_all(void)
{
    clearok(curscr, TRUE);
}

void ui_move(int row, int col)
{
    move(row, col);
}

static void set_message(bool error, const char *fmt, va_list ap)
{
    char raw[1024];

    vsnprintf(raw, sizeof raw, fmt, ap);
    char *safe = sanitize_term_dup(raw, strlen(raw), 0);
    snprintf(ui.msg, sizeof ui.msg, "%s", safe);
    free(safe);
    ui.msg_error = error;
}

void ui_message(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(false, fmt, ap);
    va_end(ap);
}

void ui_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(true, fmt, ap);
    va_end(ap);
    if (ui.active)
        beep();
}

void ui_clear_message(void)
{
    ui.msg[0] = '\0';
}

void ui_draw_message(void)
{
    ui_draw(LINES - 1, 0, ui.msg, strlen(ui.msg), ui.msg_error ? THEME_ERROR : THEME_MESSAGE,
            0, true);
}

/* ---- line editor --------------------------------------------------------- */

static void utf8_put(struct buf *b, uint32_t cp)
{
    char s[4];
    size_t n;

    if (cp < 0x80) {
        s[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        s[0] = (char)(0xC0 | (cp >> 6));
        s[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        s[0] = (char)(0xE0 | (cp >> 12));
        s[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        s[0] = (char)(0xF0 | (cp >> 18));
        s[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        s[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    if (buf_append(b, s, n) < 0)
        beep();
}

/* Drop the last UTF-8 character of b. */
static void utf8_backspace(struct buf *b)
{
    while (b->len > 0) {
        unsigned char c = (unsigned char)b->data[--b->len];
        if ((c & 0xC0) != 0x80)
            break;
    }
    buf_truncate(b, b->len);
}

static void draw_prompt(const char *prompt, const struct buf *text)
{
    char *shown = sanitize_term_dup(text->data ? text->data : "", text->len, 0);
    size_t pw = sanitize_width(prompt, strlen(prompt));
    size_t tw = sanitize_width(shown, strlen(shown));
    size_t room = (size_t)COLS > pw + 1 ? (size_t)COLS - pw - 1 : 1;
    const char *from = shown;

    /* Show the tail of a long answer. */
    while (tw > room && *from) {
        size_t skip = sanitize_fit(from, strlen(from), 1, NULL);
        if (skip == 0)
            skip = 1;
        tw -= sanitize_width(from, skip);
        from += skip;
    }
    ui_clear_row(LINES - 1, THEME_NORMAL);
    ui_draw(LINES - 1, 0, prompt, strlen(prompt), THEME_PROMPT, 0, false);
    ui_draw(LINES - 1, (int)pw, from, strlen(from), THEME_NORMAL, 0, false);
    move(LINES - 1, (int)(pw + tw < (size_t)COLS ? pw + tw : (size_t)COLS - 1));
    free(shown);
}

int ui_prompt(const char *prompt, const char *initial, ui_complete_fn complete, void *ctx,
              char **out)
{
    struct buf text;
    int rc = -1;

    buf_init(&text, 8192);
    if (initial && buf_puts(&text, initial) < 0)
        buf_reset(&text);
    curs_set(1);
    for (;;) {
        draw_prompt(prompt, &text);
        refresh();
        int k = ui_getkey(-1);
        if (k == UI_KEY_TIMEOUT || k == UI_KEY_RESIZE)
            continue;
        if (k == '\r' || k == '\n' || k == KEYC_KP_ENTER) {
            *out = xstrdup(buf_cstr(&text));
            rc = 0;
            break;
        }
        if (k == 0x07 || k == 0x1b) {   /* ^G, Escape */
            break;
        }
        if (k == KEYC_BACKSPACE || k == 0x7f || k == 0x08) {
            if (text.len == 0)
                break;   /* backspace on an empty line aborts, as in mutt */
            utf8_backspace(&text);
            continue;
        }
        if (k == 0x15) {   /* ^U */
            buf_reset(&text);
            continue;
        }
        if (k == 0x17) {   /* ^W: the last word */
            while (text.len && text.data[text.len - 1] == ' ')
                buf_truncate(&text, text.len - 1);
            while (text.len && text.data[text.len - 1] != ' ')
                buf_truncate(&text, text.len - 1);
            continue;
        }
        if (k == '\t') {
            if (!complete || complete(ctx, &text) == 0)
                beep();
            continue;
        }
        if (k >= 0x20 && k < KEYC_BASE && k != 0x7f && !(k >= 0x80 && k < 0xa0))
            utf8_put(&text, (uint32_t)k);
    }
    curs_set(0);
    buf_free(&text);
    ui_clear_message();
    return rc;
}

int ui_yesno(const char *question, int def)
{
    char line[512];

    snprintf(line, sizeof line, "%s ([%s]/%s): ", question, def == 0 ? "no" : "yes",
             def == 0 ? "yes" : "no");
    for (;;) {
        ui_clear_row(LINES - 1, THEME_NORMAL);
        ui_draw(LINES - 1, 0, line, strlen(line), THEME_PROMPT, 0, false);
        refresh();
        int k = ui_getkey(-1);
        if (k == 'y' || k == 'Y')
            return 1;
        if (k == 'n' || k == 'N')
            return 0;
        if (k == 0x07 || k == 0x1b)
            return -1;
        if ((k == '\r' || k == '\n') && def >= 0)
            return def;
    }
}

void ui_wait_key(void)
{
    printf("Press any key to continue...");
    fflush(stdout);
    ui_resume();
    (void)ui_getkey(-1);
}
