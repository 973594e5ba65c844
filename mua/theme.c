/* theme: colour roles, colour values, rules and the colour commands. */
#include "theme.h"
#include "regex_guard.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    const char *desc;
} role_table[THEME_ROLE_COUNT] = {
#define THEME_ROLE_INFO(id, name, desc) [THEME_##id] = {name, desc},
    THEME_ROLES(THEME_ROLE_INFO)
#undef THEME_ROLE_INFO
};

static const char *const basic_names[8] = {
    "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white",
};

static const struct {
    const char *name;
    uint16_t bit;
} attr_names[] = {
    {"bold", THEME_A_BOLD},
    {"underline", THEME_A_UNDERLINE},
    {"reverse", THEME_A_REVERSE},
    {"standout", THEME_A_STANDOUT},
    {"dim", THEME_A_DIM},
    {"italic", THEME_A_ITALIC},
    {"blink", THEME_A_BLINK},
    {"none", 0},
    {"normal", 0},
};

/* xterm's default RGB for the 16 basic colours. */
static const uint8_t basic_rgb[16][3] = {
    {0, 0, 0},       {205, 0, 0},     {0, 205, 0},     {205, 205, 0},
    {0, 0, 238},     {205, 0, 205},   {0, 205, 205},   {229, 229, 229},
    {127, 127, 127}, {255, 0, 0},     {0, 255, 0},     {255, 255, 0},
    {92, 92, 255},   {255, 0, 255},   {0, 255, 255},   {255, 255, 255},
};

static const uint8_t cube_levels[6] = {0, 95, 135, 175, 215, 255};

int theme_role_parse(const char *name)
{
    if (strcmp(name, "quoted0") == 0)
        return THEME_QUOTED0;
    for (int i = 0; i < THEME_ROLE_COUNT; i++)
        if (strcmp(role_table[i].name, name) == 0)
            return i;
    return -1;
}

const char *theme_role_name(enum theme_role role)
{
    return (unsigned)role < THEME_ROLE_COUNT ? role_table[role].name : "?";
}

const char *theme_role_desc(enum theme_role role)
{
    return (unsigned)role < THEME_ROLE_COUNT ? role_table[role].desc : "";
}

/* ---- colour arithmetic ----------------------------------------------- */

void theme_256_to_rgb(int16_t c, uint8_t *r, uint8_t *g, uint8_t *b)
{
    if (c < 0 || c > 255) {
        *r = *g = *b = 0;
    } else if (c < 16) {
        *r = basic_rgb[c][0];
        *g = basic_rgb[c][1];
        *b = basic_rgb[c][2];
    } else if (c < 232) {
        int i = c - 16;
        *r = cube_levels[i / 36];
        *g = cube_levels[(i / 6) % 6];
        *b = cube_levels[i % 6];
    } else {
        *r = *g = *b = (uint8_t)(8 + 10 * (c - 232));
    }
}

static long dist2(int r1, int g1, int b1, int r2, int g2, int b2)
{
    long dr = r1 - r2, dg = g1 - g2, db = b1 - b2;
    return dr * dr + dg * dg + db * db;
}

static int nearest_level(int v)
{
    int best = 0;
    for (int i = 1; i < 6; i++)
        if (abs(cube_levels[i] - v) < abs(cube_levels[best] - v))
            best = i;
    return best;
}

int16_t theme_rgb_to_256(uint8_t r, uint8_t g, uint8_t b)
{
    int ri = nearest_level(r), gi = nearest_level(g), bi = nearest_level(b);
    int16_t cube = (int16_t)(16 + 36 * ri + 6 * gi + bi);
    long dc = dist2(r, g, b, cube_levels[ri], cube_levels[gi], cube_levels[bi]);
    int avg = (r + g + b) / 3;
    int gi2 = avg < 8 ? 0 : (avg - 8 + 5) / 10;
    if (gi2 > 23)
        gi2 = 23;
    int gv = 8 + 10 * gi2;
    long dg = dist2(r, g, b, gv, gv, gv);
    return dg < dc ? (int16_t)(232 + gi2) : cube;
}

int16_t theme_nearest_basic(int16_t c, int basic)
{
    uint8_t r, g, b;
    int16_t best = 0;
    long bestd = -1;

    if (basic > 16)
        basic = 16;
    if (c < basic)
        return c;
    theme_256_to_rgb(c, &r, &g, &b);
    for (int16_t i = 0; i < basic; i++) {
        long d = dist2(r, g, b, basic_rgb[i][0], basic_rgb[i][1], basic_rgb[i][2]);
        if (bestd < 0 || d < bestd) {
            bestd = d;
            best = i;
        }
    }
    return best;
}

static bool is_light(int16_t c)
{
    uint8_t r, g, b;
    theme_256_to_rgb(c, &r, &g, &b);
    return 299L * r + 587L * g + 114L * b > 128L * 1000;
}

/* ---- parsing --------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int theme_parse_color(const char *s, int16_t *color, struct err *e)
{
    const char *p = s;
    int base = 0;

    if (strcasecmp(s, "default") == 0) {
        *color = THEME_DEFAULT_COLOR;
        return 0;
    }
    if (s[0] == '#') {
        int v[6];
        if (strlen(s) != 7)
            return err_set(e, ERR_PARSE, "%s: expected #rrggbb", s);
        for (int i = 0; i < 6; i++)
            if ((v[i] = hexval(s[1 + i])) < 0)
                return err_set(e, ERR_PARSE, "%s: expected #rrggbb", s);
        *color = theme_rgb_to_256((uint8_t)(v[0] * 16 + v[1]), (uint8_t)(v[2] * 16 + v[3]),
                                  (uint8_t)(v[4] * 16 + v[5]));
        return 0;
    }
    if (strncasecmp(p, "color", 5) == 0 || strncasecmp(p, "colour", 6) == 0) {
        const char *d = p + (strncasecmp(p, "colour", 6) == 0 ? 6 : 5);
        size_t n = strspn(d, "0123456789");
        if (n == 0 || n > 3 || d[n] != '\0' || atoi(d) > 255)
            return err_set(e, ERR_PARSE, "%s: colour numbers go from 0 to 255", s);
        *color = (int16_t)atoi(d);
        return 0;
    }
    if (strncasecmp(p, "bright", 6) == 0) {
        p += 6;
        base = 8;
    }
    for (int i = 0; i < 8; i++) {
        if (strcasecmp(p, basic_names[i]) == 0) {
            *color = (int16_t)(base + i);
            return 0;
        }
    }
    return err_set(e, ERR_PARSE, "%s: no such colour", s);
}

int theme_parse_attr(const char *s)
{
    for (size_t i = 0; i < ARRAY_LEN(attr_names); i++)
        if (strcasecmp(attr_names[i].name, s) == 0)
            return attr_names[i].bit;
    return -1;
}

/* ---- theme objects --------------------------------------------------- */

static struct theme_attr builtin_attr(enum theme_role role, bool mono)
{
    struct theme_attr a = {THEME_DEFAULT_COLOR, THEME_DEFAULT_COLOR, 0};

    switch (role) {
    case THEME_INDICATOR:
    case THEME_STATUS:
    case THEME_SEARCH:
    case THEME_MARKERS:
        a.attrs = THEME_A_REVERSE;
        break;
    case THEME_BOLD:
        a.attrs = THEME_A_BOLD;
        break;
    case THEME_UNDERLINE:
        a.attrs = THEME_A_UNDERLINE;
        break;
    case THEME_ERROR:
        a.attrs = mono ? THEME_A_BOLD : 0;
        break;
    case THEME_TAGGED:
        a.attrs = mono ? THEME_A_UNDERLINE : 0;
        break;
    default:
        break;
    }
    return a;
}

void theme_init(struct theme *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < THEME_ROLE_COUNT; i++) {
        t->color[i] = builtin_attr((enum theme_role)i, false);
        t->mono[i] = builtin_attr((enum theme_role)i, true);
    }
    t->colors = 256;
}

void theme_free(struct theme *t)
{
    for (size_t i = 0; i < t->n_rules; i++)
        free(t->rules[i].pattern);
    free(t->rules);
    t->rules = NULL;
    t->n_rules = 0;
}

void theme_copy(struct theme *dst, const struct theme *src)
{
    *dst = *src;
    dst->rules = NULL;
    dst->n_rules = 0;
    if (src->n_rules) {
        dst->rules = XNEWARRAY(struct theme_rule, src->n_rules);
        for (size_t i = 0; i < src->n_rules; i++) {
            dst->rules[i] = src->rules[i];
            dst->rules[i].pattern = xstrdup(src->rules[i].pattern);
        }
        dst->n_rules = src->n_rules;
    }
}

static void degrade_attr(struct theme_attr *a, int colors)
{
    if (a->fg >= colors)
        a->fg = theme_nearest_basic(a->fg, 16);
    if (a->bg >= colors)
        a->bg = theme_nearest_basic(a->bg, 16);
    if (colors <= 8) {
        if (a->fg >= 8) {
            a->fg = (int16_t)(a->fg - 8);
            a->attrs |= THEME_A_BOLD;
        }
        if (a->bg >= 8)
            a->bg = (int16_t)(a->bg - 8);
    }
    if (a->fg >= 0 && a->fg == a->bg)
        a->fg = is_light(a->bg) ? 0 : (colors <= 8 ? 7 : 15);
}

void theme_degrade(const struct theme *src, int colors, struct theme *dst)
{
    bool mono = colors < 8;
    size_t w = 0;

    theme_copy(dst, src);
    if (colors > 256)
        colors = 256;
    if (!mono && colors != 256)
        colors = colors < 16 ? 8 : 16;
    dst->colors = mono ? 0 : colors;
    for (int i = 0; i < THEME_ROLE_COUNT; i++) {
        if (mono)
            dst->color[i] = dst->mono[i];
        else if (colors < 256)
            degrade_attr(&dst->color[i], colors);
    }
    for (size_t i = 0; i < dst->n_rules; i++) {
        struct theme_rule *r = &dst->rules[i];
        if (r->mono != mono) {
            free(r->pattern);
            continue;
        }
        if (mono)
            r->attr.fg = r->attr.bg = THEME_DEFAULT_COLOR;
        else if (colors < 256)
            degrade_attr(&r->attr, colors);
        dst->rules[w++] = *r;
    }
    dst->n_rules = w;
}

/* ---- commands -------------------------------------------------------- */

bool theme_is_command(const char *name)
{
    return strcmp(name, "color") == 0 || strcmp(name, "mono") == 0 ||
           strcmp(name, "uncolor") == 0 || strcmp(name, "unmono") == 0;
}

/* What a command's object names: a role, or a kind of rule. */
struct object {
    int role;                       /* -1: none */
    int rule;                       /* enum theme_rule_kind, -1: none */
};

static int parse_object(const char *cmd, const char *name, struct object *o, struct err *e)
{
    o->role = theme_role_parse(name);
    o->rule = -1;
    if (strcmp(name, "index") == 0)
        o->rule = THEME_RULE_INDEX;
    else if (strcmp(name, "header") == 0)
        o->rule = THEME_RULE_HEADER;
    else if (strcmp(name, "body") == 0)
        o->rule = THEME_RULE_BODY;
    if (o->role < 0 && o->rule < 0)
        return err_set(e, ERR_INVAL, "%s: no such object %s", cmd, name);
    return 0;
}

static int check_pattern(const char *cmd, enum theme_rule_kind kind, const char *pattern,
                         struct err *e)
{
    regex_t re;
    struct err why;

    if (!*pattern)
        return err_set(e, ERR_PARSE, "%s: empty pattern", cmd);
    if (kind == THEME_RULE_INDEX)
        return 0;               /* a mutt pattern: compiled by its user */
    if (regex_compile(&re, pattern, REG_EXTENDED | REG_NOSUB, &why) != 0)
        return err_set(e, ERR_PARSE, "%s: bad regular expression \"%s\": %s", cmd, pattern,
                       why.text);
    regfree(&re);
    return 0;
}

static void add_rule(struct theme *t, enum theme_rule_kind kind, bool mono, const char *pattern,
                     struct theme_attr attr)
{
    for (size_t i = 0; i < t->n_rules; i++) {
        struct theme_rule *r = &t->rules[i];
        if (r->kind == kind && r->mono == mono && strcmp(r->pattern, pattern) == 0) {
            r->attr = attr;
            return;
        }
    }
    t->rules = xreallocarray(t->rules, t->n_rules + 1, sizeof *t->rules);
    t->rules[t->n_rules].kind = kind;
    t->rules[t->n_rules].mono = mono;
    t->rules[t->n_rules].pattern = xstrdup(pattern);
    t->rules[t->n_rules].attr = attr;
    t->n_rules++;
}

/* Attributes from argv[*i] on; *i is left at the first non-attribute. */
static uint16_t parse_attrs(const struct rc_cmd *cmd, size_t *i, bool *any)
{
    uint16_t attrs = 0;
    int bit;

    *any = false;
    while (*i < cmd->argc && (bit = theme_parse_attr(cmd->argv[*i])) >= 0) {
        attrs = bit ? (uint16_t)(attrs | bit) : 0;
        *any = true;
        (*i)++;
    }
    return attrs;
}

static int cmd_color(struct theme *t, const struct rc_cmd *cmd, bool mono, struct err *e)
{
    const char *name = cmd->argv[0];
    struct object o;
    struct theme_attr a = {THEME_DEFAULT_COLOR, THEME_DEFAULT_COLOR, 0};
    size_t i = 2;
    bool any;

    if (cmd->argc < 3)
        return err_set(e, ERR_PARSE, mono ? "mono: expects OBJECT ATTRIBUTE..."
                                          : "color: expects OBJECT [ATTRIBUTE...] FOREGROUND BACKGROUND");
    if (parse_object(name, cmd->argv[1], &o, e) < 0)
        return -1;
    a.attrs = parse_attrs(cmd, &i, &any);
    if (mono) {
        if (!any)
            return err_set(e, ERR_PARSE, "mono: %s: no such attribute", cmd->argv[i]);
    } else {
        if (i + 2 > cmd->argc)
            return err_set(e, ERR_PARSE,
                           "color: expects OBJECT [ATTRIBUTE...] FOREGROUND BACKGROUND");
        if (theme_parse_color(cmd->argv[i], &a.fg, e) < 0 ||
            theme_parse_color(cmd->argv[i + 1], &a.bg, e) < 0) {
            err_prefix(e, "color");
            return -1;
        }
        i += 2;
    }
    if (i < cmd->argc) {
        if (o.rule < 0)
            return err_set(e, ERR_PARSE, "%s %s: takes no pattern", name, cmd->argv[1]);
        if (i + 1 < cmd->argc)
            return err_set(e, ERR_PARSE, "%s: too many arguments (quote the pattern)", name);
        if (check_pattern(name, (enum theme_rule_kind)o.rule, cmd->argv[i], e) < 0)
            return -1;
        add_rule(t, (enum theme_rule_kind)o.rule, mono, cmd->argv[i], a);
        return 0;
    }
    if (o.role < 0)
        return err_set(e, ERR_PARSE, "%s %s: expects a regular expression", name, cmd->argv[1]);
    if (mono) {
        t->mono[o.role] = a;
        t->mono_set[o.role] = true;
    } else {
        t->color[o.role] = a;
        t->color_set[o.role] = true;
    }
    return 0;
}

static void remove_rules(struct theme *t, enum theme_rule_kind kind, bool mono,
                         const char *pattern)
{
    size_t w = 0;

    for (size_t i = 0; i < t->n_rules; i++) {
        struct theme_rule *r = &t->rules[i];
        if (r->kind == kind && r->mono == mono &&
            (strcmp(pattern, "*") == 0 || strcmp(r->pattern, pattern) == 0)) {
            free(r->pattern);
            continue;
        }
        t->rules[w++] = *r;
    }
    t->n_rules = w;
}

static int cmd_uncolor(struct theme *t, const struct rc_cmd *cmd, bool mono, struct err *e)
{
    const char *name = cmd->argv[0];
    struct object o;

    if (cmd->argc < 2)
        return err_set(e, ERR_PARSE, "%s: expects OBJECT [PATTERN...|*]", name);
    if (parse_object(name, cmd->argv[1], &o, e) < 0)
        return -1;
    if (cmd->argc == 2) {
        if (o.role < 0)
            return err_set(e, ERR_PARSE, "%s %s: expects patterns or *", name, cmd->argv[1]);
        if (mono) {
            t->mono[o.role] = builtin_attr((enum theme_role)o.role, true);
            t->mono_set[o.role] = false;
        } else {
            t->color[o.role] = builtin_attr((enum theme_role)o.role, false);
            t->color_set[o.role] = false;
        }
        return 0;
    }
    if (o.rule < 0)
        return err_set(e, ERR_PARSE, "%s %s: takes no pattern", name, cmd->argv[1]);
    for (size_t i = 2; i < cmd->argc; i++)
        remove_rules(t, (enum theme_rule_kind)o.rule, mono, cmd->argv[i]);
    return 0;
}

int theme_command(struct theme *t, const struct rc_cmd *cmd, struct err *e)
{
    const char *name = cmd->argv[0];

    if (strcmp(name, "color") == 0)
        return cmd_color(t, cmd, false, e);
    if (strcmp(name, "mono") == 0)
        return cmd_color(t, cmd, true, e);
    if (strcmp(name, "uncolor") == 0)
        return cmd_uncolor(t, cmd, false, e);
    if (strcmp(name, "unmono") == 0)
        return cmd_uncolor(t, cmd, true, e);
    return err_set(e, ERR_PARSE, "unknown command %s", name);
}

static int file_handler(void *ctx, const struct rc_cmd *cmd, struct err *e)
{
    if (!theme_is_command(cmd->argv[0]))
        return err_set(e, ERR_PARSE, "%s: not allowed in a theme file", cmd->argv[0]);
    return theme_command(ctx, cmd, e);
}

int theme_load(struct theme *t, const char *path, struct rc_diag *diag, struct err *e)
{
    struct rc_loader l;

    rc_loader_init(&l, file_handler, t, diag);
    l.no_source = true;
    return rcfile_load(&l, path, e);
}
