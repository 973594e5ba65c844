/* Unit tests for mua/config, mua/keymap and mua/theme. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "keymap.h"
#include "theme.h"

/* ---- fixture: a private HOME and XDG_CONFIG_HOME, data from the tree -- */

static char tmpdir[64];
static char homedir[128];
static char xdgdir[128];
static char srcdir[4096];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static void mkdirs(const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0700);
            *p = '/';
        }
    }
    mkdir(buf, 0700);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    const char *s = getenv("CORREO_SRCDIR");
    (void)state;

    if (!s)
        return -1;
    snprintf(srcdir, sizeof srcdir, "%s", s);
    snprintf(tmpdir, sizeof tmpdir, "%s/correo-config-XXXXXX",
             getenv("TMPDIR") && getenv("TMPDIR")[0] == '/' && strlen(getenv("TMPDIR")) < 30
                 ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(homedir, sizeof homedir, "%s/home", tmpdir);
    snprintf(xdgdir, sizeof xdgdir, "%s/xdg", tmpdir);
    mkdirs(homedir);
    mkdirs(xdgdir);
    setenv("HOME", homedir, 1);
    setenv("XDG_CONFIG_HOME", xdgdir, 1);
    setenv("CORREO_DATADIR_OVERRIDE", srcdir, 1);
    unsetenv("VISUAL");
    unsetenv("EDITOR");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Run text as commands; return the diagnostics joined by '\n' (xmalloc'd). */
static char *run(struct config *cfg, const char *text)
{
    struct rc_diag d;
    struct buf b = BUF_INIT;

    rc_diag_init(&d);
    config_exec(cfg, "t", text, &d);
    for (size_t i = 0; i < d.n; i++)
        assert_int_equal(buf_printf(&b, "%s%s", i ? "\n" : "", d.msgs[i]), 0);
    rc_diag_free(&d);
    return buf_steal(&b, NULL);
}

static void run_clean(struct config *cfg, const char *text)
{
    char *diag = run(cfg, text);
    if (*diag)
        fail_msg("unexpected diagnostics for [%s]: %s", text, diag);
    free(diag);
}

static char *query(const struct config *cfg, const char *name)
{
    char *out;
    struct err e;

    if (config_query(cfg, name, &out, &e) < 0)
        return xasprintf("ERROR %s", e.text);
    return out;
}

/* ---- options: set, unset, toggle, reset, query per type ---------------- */

struct set_case {
    const char *cmds;
    const char *names;      /* space-separated options to query */
    const char *expect;     /* their query texts joined by '|' */
};

static const struct set_case set_cases[] = {
    /* bool */
    {"set markers=no", "markers", "markers=no"},
    {"set nomarkers", "markers", "markers=no"},
    {"unset markers", "markers", "markers=no"},
    {"set nomarkers; set markers", "markers", "markers=yes"},
    {"toggle markers", "markers", "markers=no"},
    {"set invmarkers", "markers", "markers=no"},
    {"set nomarkers; reset markers", "markers", "markers=yes"},
    {"set nomarkers; set markers&", "markers", "markers=yes"},
    {"set nomarkers; set &markers", "markers", "markers=yes"},
    {"set markers = no", "markers", "markers=no"},
    {"set markers =off", "markers", "markers=no"},
    {"set strict_threads=TRUE", "strict_threads", "strict_threads=yes"},
    /* quad */
    {"set delete=yes", "delete", "delete=yes"},
    {"set delete", "delete", "delete=yes"},
    {"set nodelete", "delete", "delete=no"},
    {"unset delete", "delete", "delete=no"},
    {"set delete=ask-no; toggle delete", "delete", "delete=ask-yes"},
    {"toggle delete", "delete", "delete=ask-no"},
    {"set delete=no; set invdelete", "delete", "delete=yes"},
    {"set delete=no; reset delete", "delete", "delete=ask-yes"},
    /* number */
    {"set mail_check=30", "mail_check", "mail_check=30"},
    {"set mail_check = 42", "mail_check", "mail_check=42"},
    {"set wrap=-10", "wrap", "wrap=-10"},
    {"set mail_check=0; reset mail_check", "mail_check", "mail_check=5"},
    /* string */
    {"set editor='vim -X'", "editor", "editor='vim -X'"},
    {"set editor=vi; unset editor", "editor", "editor=''"},
    {"set attribution=\"%n wrote:\"", "attribution", "attribution='%n wrote:'"},
    {"set pager_format=x; set pager_format&", "pager_format",
     "pager_format='-%Z- %C/%m: %-20.20n   %s%*  -- (%P)'"},
    /* path: ~ expanded when set */
    {"set folder=~/Mail", "folder", "folder=@HOME@/Mail"},
    {"set signature=~", "signature", "signature=@HOME@"},
    {"set folder=/var/mail/x", "folder", "folder=/var/mail/x"},
    /* mailbox: + and = kept */
    {"set record=+Sent2 postponed==Drafts2", "record postponed",
     "record=+Sent2|postponed==Drafts2"},
    /* sort */
    {"set sort=reverse-threads", "sort", "sort=reverse-threads"},
    {"set sort=date-sent", "sort", "sort=date"},
    {"set sort=mailbox-order", "sort", "sort=unsorted"},
    {"set sort_aux=last-date-received", "sort_aux", "sort_aux=last-date-received"},
    {"set sort_aux=reverse-last-from", "sort_aux", "sort_aux=reverse-last-from"},
    {"set sort_browser=reverse-alpha", "sort_browser", "sort_browser=reverse-alpha"},
    {"set sort=subject; reset sort", "sort", "sort=date"},
    /* enum */
    {"set mbox_type=maildir", "mbox_type", "mbox_type=Maildir"},
    {"set mbox_type=mbox", "mbox_type", "mbox_type=mbox"},
    /* user variables */
    {"set my_name='J D'", "my_name", "my_name='J D'"},
    {"set my_x=1; unset my_x", "my_x", "ERROR unknown option my_x"},
    {"set my_x=1; reset my_x", "my_x", "ERROR unknown option my_x"},
    /* several per command, and mutt's other names */
    {"set nomarkers mail_check=9 sort=subject pager_stop", "markers mail_check sort pager_stop",
     "markers=no|mail_check=9|sort=subject|pager_stop=yes"},
    {"set hdr_format=x envelope_from", "index_format use_envelope_from",
     "index_format=x|use_envelope_from=yes"},
    /* secrets are not shown */
    {"set imap_pass=hunter2", "imap_pass", "imap_pass=********"},
    {"", "imap_pass", "imap_pass=''"},
};

static void set_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(set_cases); i++) {
        const struct set_case *c = &set_cases[i];
        struct config *cfg = config_new();
        struct buf got = BUF_INIT;
        char *names = xstrdup(c->names), *save = NULL, *expect;
        size_t k = 0;

        run_clean(cfg, c->cmds);
        for (char *n = strtok_r(names, " ", &save); n; n = strtok_r(NULL, " ", &save), k++) {
            char *q = query(cfg, n);
            assert_int_equal(buf_printf(&got, "%s%s", k ? "|" : "", q), 0);
            free(q);
        }
        /* @HOME@ stands for the test's home directory */
        struct buf exp = BUF_INIT;
        for (const char *p = c->expect; *p;) {
            if (strncmp(p, "@HOME@", 6) == 0) {
                assert_int_equal(buf_puts(&exp, homedir), 0);
                p += 6;
            } else {
                assert_int_equal(buf_putc(&exp, *p++), 0);
            }
        }
        expect = buf_steal(&exp, NULL);
        if (strcmp(buf_cstr(&got), expect) != 0)
            fail_msg("case %zu [%s]: got [%s] want [%s]", i, c->cmds, buf_cstr(&got), expect);
        free(expect);
        free(names);
        buf_free(&got);
        config_free(cfg);
    }
}

static void query_command_and_getters(void **state)
{
    struct config *cfg = config_new();
    struct err e;
    bool b;
    long n;
    const char *s;
    struct config_sort so;
    (void)state;

    run_clean(cfg, "set pager_index_lines=7 sort=reverse-threads strict_threads nomark_old");
    /* the fast path: typed fields */
    assert_int_equal(cfg->opt.pager_index_lines, 7);
    assert_int_equal(cfg->opt.sort.key, CFG_SORT_THREADS);
    assert_true(cfg->opt.sort.reverse);
    assert_true(cfg->opt.strict_threads);
    assert_false(cfg->opt.mark_old);
    assert_int_equal(cfg->opt.delete, CFG_ASK_YES);
    assert_string_equal(cfg->opt.index_format, "%4C %Z %{%b %d} %-15.15L (%?l?%4l&%4c?) %s");
    assert_string_equal(cfg->opt.keymap, "mutt");
    assert_string_equal(cfg->opt.theme, "default");
    assert_string_equal(cfg->opt.html_filter, "");

    /* by name */
    assert_int_equal(config_get_bool(cfg, "strict_threads", &b, &e), 0);
    assert_true(b);
    assert_int_equal(config_get_bool(cfg, "delete", &b, &e), 0);   /* ask-yes */
    assert_true(b);
    assert_int_equal(config_get_number(cfg, "pager_index_lines", &n, &e), 0);
    assert_int_equal(n, 7);
    assert_int_equal(config_get_string(cfg, "mbox_type", &s, &e), 0);
    assert_string_equal(s, "Maildir");
    assert_int_equal(config_get_string(cfg, "attribution", &s, &e), 0);
    assert_string_equal(s, "On %d, %n wrote:");
    assert_int_equal(config_get_sort(cfg, "sort", &so, &e), 0);
    assert_int_equal(so.key, CFG_SORT_THREADS);
    assert_true(so.reverse);
    assert_int_equal(config_get_number(cfg, "markers", &n, &e), -1);
    assert_string_equal(e.text, "markers: not a number option");
    assert_int_equal(config_get_bool(cfg, "sort", &b, &e), -1);
    assert_int_equal(config_get_string(cfg, "nosuch", &s, &e), -1);
    assert_string_equal(e.text, "unknown option nosuch");
    assert_int_equal(config_get_sort(cfg, "folder", &so, &e), -1);

    /* "set name?" and a bare non-boolean name are queries */
    run_clean(cfg, "set sort? mail_check");
    assert_string_equal(cfg->last_query, "sort=reverse-threads  mail_check=5");
    run_clean(cfg, "set ?markers");
    assert_string_equal(cfg->last_query, "markers=yes");

    /* config_set and the option table */
    assert_int_equal(config_set(cfg, "timeout", "60", &e), 0);
    assert_int_equal(cfg->opt.timeout, 60);
    assert_int_equal(config_set(cfg, "timeout", "-1", &e), -1);
    assert_string_equal(e.text, "timeout: -1 is out of range (0..86400)");
    assert_int_equal(config_option_find("quote_regexp"), CFG_quote_regex);
    assert_int_equal(config_option_type(CFG_sort), CONFIG_SORT);
    assert_string_equal(config_option_name(CFG_folder), "folder");
    assert_string_equal(config_option_default(CFG_folder), "~/Maildir");
    assert_int_equal(config_option_find("nosuch"), -1);
    config_free(cfg);
}

/* ---- invalid values: file:line diagnostics, the rest still loads ------ */

static void invalid_values_are_reported(void **state)
{
    struct config *cfg = config_new();
    char *diag;
    (void)state;

    diag = run(cfg,
               "set mail_check=abc\n"                  /* 1 */
               "set pager_index_lines=5000\n"          /* 2 */
               "set markers=maybe\n"                   /* 3 */
               "set delete=perhaps\n"                  /* 4 */
               "set sort=bogus\n"                      /* 5 */
               "set nofolder\n"                        /* 6 */
               "set foo=bar\n"                         /* 7 */
               "frobnicate x\n"                        /* 8 */
               "set quote_regex='('\n"                 /* 9 */
               "set allow_ansi\n"                      /* 10 */
               "set sort_aux=threads\n"                /* 11 */
               "unset sort\n"                          /* 12 */
               "set mbox_type=zip\n"                   /* 13 */
               "set mail_check=17\n"                   /* 14 */
               "set sort=last-date\n"                  /* 15 */
               "toggle editor\n"                       /* 16 */
               "set editor =\n"                        /* 17 */
               "set foo nomarkers bar=1\n"             /* 18 */
               "toggle allow_ansi\n"                   /* 19 */
               "set\n"                                 /* 20 */
               "set =x\n"                              /* 21 */
               "unset markers=no\n");                  /* 22 */
    const char *want =
        "t:1: mail_check: \"abc\" is not a number\n"
        "t:2: pager_index_lines: 5000 is out of range (0..1000)\n"
        "t:3: markers: \"maybe\" is not yes or no\n"
        "t:4: delete: \"perhaps\" is not yes, no, ask-yes or ask-no\n"
        "t:5: sort: no such sort method \"bogus\"\n"
        "t:6: folder: not a yes/no option\n"
        "t:7: unknown option foo\n"
        "t:8: unknown command frobnicate\n"
        "t:9: quote_regex: bad regular expression \"(\": ";
    if (strncmp(diag, want, strlen(want)) != 0)
        fail_msg("got:\n%s", diag);
    const char *rest = strstr(diag, "\nt:10:");
    assert_non_null(rest);
    const char *want2 =
        "\nt:10: allow_ansi: refused: escape sequences from mail never reach the terminal\n"
        "t:11: sort_aux: \"threads\" is not a sort method here\n"
        "t:12: sort: cannot be unset (use reset)\n"
        "t:13: mbox_type: \"zip\" is not one of mbox, MMDF, MH, Maildir\n"
        "t:15: sort: \"last-\" is for sort_aux only\n"
        "t:16: editor: not a yes/no option\n"
        "t:17: editor: missing value after =\n"
        "t:18: unknown option foo; unknown option bar\n"
        "t:19: allow_ansi: refused: escape sequences from mail never reach the terminal\n"
        "t:20: set: expects an option name\n"
        "t:21: set: =x: missing option name\n"
        "t:22: unset: takes names, not markers=no";
    if (strcmp(rest, want2) != 0)
        fail_msg("got:\n%s", rest);
    /* good values around the bad ones were applied, bad ones changed nothing */
    assert_int_equal(cfg->opt.mail_check, 17);
    assert_false(cfg->opt.markers);
    assert_false(cfg->opt.allow_ansi);
    assert_int_equal(cfg->opt.pager_index_lines, 0);
    assert_int_equal(cfg->opt.delete, CFG_ASK_YES);
    assert_string_equal(cfg->opt.quote_regex, "^([ \t]*[|>:}#])+");
    assert_int_equal(cfg->opt.sort.key, CFG_SORT_DATE);
    free(diag);
    config_free(cfg);
}

/* ---- a realistic muttrc ----------------------------------------------- */

static const char *const muttrc[] = {
    "# a muttrc of the kind people have",
    "set realname=\"Jane Doe\"",
    "set from=\"jane@example.org\"",
    "set use_from=yes",
    "set folder=~/Mail",
    "set spoolfile=+INBOX",
    "set record=\"+Sent Items\"",
    "set postponed=+Drafts",
    "set mbox_type=Maildir",
    "set sort=threads",
    "set sort_aux=reverse-last-date-received",
    "set index_format=\"%4C %Z %{%b %d} %-15.15F (%4l) %s\"",
    "set pager_index_lines=10 pager_context=3 pager_stop",
    "set menu_scroll",
    "set nomark_old",
    "set editor=\"vim +/^$ -c 'set tw=72'\"",
    "set header_cache=~/.cache/mutt",
    "set sidebar_visible=yes",                                  /* unknown */
    "set crypt_autosign",                                       /* unknown */
    "mailboxes +INBOX +Lists/mutt \"+Sent Items\"",
    "alternates \"^jane@(work\\\\.)?example\\\\.org$\"",
    "ignore *",
    "unignore from: to cc subject date",
    "hdr_order from: to: cc: date: subject:",
    "auto_view text/html",
    "alternative_order text/plain text/enriched text/html",
    "lists mutt-users@mutt.org",
    "subscribe mutt-dev@mutt.org",
    "my_hdr X-Editor: vim",
    "bind index,pager \\Cn sidebar-next",                       /* unknown function */
    "bind index G last-entry",
    "bind pager G bottom",
    "bind index gg first-entry",
    "macro index,pager ,u \"<pipe-message>urlview<enter>\" \"open URLs\"",
    "macro index gi \"<change-folder>=INBOX<enter>\" \"go to the inbox\"",
    "color index brightred default ~F",
    "color header brightgreen default \"^(From|Subject):\"",
    "color body brightblue default \"(https?|ftp)://[^ ]+\"",
    "color sidebar_new green default",                          /* unknown object */
    "folder-hook . 'set sort=threads'",
    "folder-hook =Lists 'set sort=date'",
    "send-hook '~t @work\\.example\\.org' 'my_hdr From: Jane <jane@work.example.org>'",
    "save-hook '~f boss@' =Boss",
    "set pgp_use_gpg_agent",                                    /* unknown */
    "set imap_pass=\"hunter2\"",
    "account-hook imaps://mail.example.org 'set imap_user=jane'",
    "source aliases",
    "set status_on_top",
};

static unsigned line_of(const char *prefix)
{
    for (size_t i = 0; i < ARRAY_LEN(muttrc); i++)
        if (strncmp(muttrc[i], prefix, strlen(prefix)) == 0)
            return (unsigned)i + 1;
    fail_msg("no line %s", prefix);
    return 0;
}

static const struct km_binding *find(const struct keymap *km, enum km_menu menu,
                                     const char *keys, enum km_result want)
{
    int *seq;
    size_t n;
    struct err e;
    const struct km_binding *b;

    if (keymap_parse_keys(keys, false, KEYMAP_SEQ_MAX, &seq, &n, &e) < 0)
        fail_msg("parse %s: %s", keys, e.text);
    enum km_result r = keymap_lookup(km, menu, seq, n, &b);
    free(seq);
    if (r != want)
        fail_msg("%s %s: result %d, want %d", keymap_menu_name(menu), keys, r, want);
    return b;
}

static void expect_op(const struct keymap *km, enum km_menu menu, const char *keys,
                      enum km_op op)
{
    const struct km_binding *b = find(km, menu, keys, KM_FOUND);
    assert_non_null(b);
    if (b->kind != KM_FUNCTION || b->op != op)
        fail_msg("%s %s: bound to %s, want %s", keymap_menu_name(menu), keys,
                 b->kind == KM_MACRO ? b->macro_text : keymap_op_name(b->op),
                 keymap_op_name(op));
}

static void realistic_muttrc(void **state)
{
    char path[256], alias_path[256];
    struct buf text = BUF_INIT;
    struct config *cfg = config_new();
    struct err e;
    const struct km_binding *b;
    char *q;
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(muttrc); i++)
        assert_int_equal(buf_printf(&text, "%s\n", muttrc[i]), 0);
    snprintf(path, sizeof path, "%s/muttrc", tmpdir);
    snprintf(alias_path, sizeof alias_path, "%s/aliases", tmpdir);
    write_file(path, buf_cstr(&text));
    write_file(alias_path, "alias bob Bob Smith <bob@example.org>\nalias -group w al al@w.org\n");
    buf_free(&text);

    assert_int_equal(config_load(cfg, path, 0, &e), 0);
    /* exactly the expected diagnostics */
    const char *want[][2] = {
        {"set sidebar_visible", "unknown option sidebar_visible"},
        {"set crypt_autosign", "unknown option crypt_autosign"},
        {"bind index,pager", "sidebar-next: no such function"},
        {"color sidebar_new", "color: no such object sidebar_new"},
        {"set pgp_use_gpg_agent", "unknown option pgp_use_gpg_agent"},
    };
    if (cfg->diag.n != ARRAY_LEN(want)) {
        for (size_t i = 0; i < cfg->diag.n; i++)
            print_message("diag: %s\n", cfg->diag.msgs[i]);
        fail_msg("%zu diagnostics, want %zu", cfg->diag.n, ARRAY_LEN(want));
    }
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        char *line = xasprintf("%s:%u: %s", path, line_of(want[i][0]), want[i][1]);
        assert_string_equal(cfg->diag.msgs[i], line);
        free(line);
    }

    /* options */
    assert_string_equal(cfg->opt.realname, "Jane Doe");
    char *folder = xasprintf("%s/Mail", homedir);
    assert_string_equal(cfg->opt.folder, folder);
    assert_string_equal(cfg->opt.record, "+Sent Items");
    char *rec = config_mailbox_path(cfg, cfg->opt.record);
    char *rec_want = xasprintf("%s/Sent Items", folder);
    assert_string_equal(rec, rec_want);
    free(rec);
    free(rec_want);
    free(folder);
    assert_int_equal(cfg->opt.sort.key, CFG_SORT_THREADS);
    assert_int_equal(cfg->opt.sort_aux.key, CFG_SORT_DATE_RECEIVED);
    assert_true(cfg->opt.sort_aux.reverse);
    assert_true(cfg->opt.sort_aux.last);
    assert_int_equal(cfg->opt.pager_index_lines, 10);
    assert_int_equal(cfg->opt.pager_context, 3);
    assert_true(cfg->opt.pager_stop);
    assert_true(cfg->opt.menu_scroll);
    assert_false(cfg->opt.mark_old);
    assert_true(cfg->opt.status_on_top);      /* after the source: still read */
    assert_string_equal(cfg->opt.editor, "vim +/^$ -c 'set tw=72'");
    assert_string_equal(config_editor(cfg), "vim +/^$ -c 'set tw=72'");
    q = query(cfg, "imap_pass");
    assert_string_equal(q, "imap_pass=********");
    free(q);
    assert_string_equal(cfg->opt.imap_pass, "hunter2");

    /* stored lists */
    assert_int_equal(cfg->n_mailboxes, 3);
    assert_string_equal(cfg->mailboxes[2].path, "+Sent Items");
    assert_int_equal(cfg->alternates.n, 1);
    assert_string_equal(cfg->alternates.v[0], "^jane@(work\\.)?example\\.org$");
    assert_true(config_header_ignored(cfg, "X-Mailer"));
    assert_false(config_header_ignored(cfg, "Subject"));
    assert_false(config_header_ignored(cfg, "from"));
    assert_int_equal(cfg->hdr_order.n, 5);
    assert_int_equal(cfg->auto_view.n, 1);
    assert_int_equal(cfg->alternative_order.n, 3);
    assert_int_equal(cfg->lists.n, 2);
    assert_int_equal(cfg->subscribed.n, 1);
    assert_int_equal(cfg->my_hdr.n, 1);
    assert_string_equal(cfg->my_hdr.v[0], "X-Editor: vim");
    assert_int_equal(cfg->n_hooks, 5);
    assert_string_equal(cfg->hooks[0].kind, "folder-hook");
    assert_string_equal(cfg->hooks[0].pattern, ".");
    assert_string_equal(cfg->hooks[0].command, "set sort=threads");
    assert_string_equal(cfg->hooks[2].pattern, "~t @work\\.example\\.org");
    assert_string_equal(cfg->hooks[3].command, "=Boss");
    assert_string_equal(cfg->hooks[4].kind, "account-hook");
    assert_int_equal(cfg->n_aliases, 2);
    assert_string_equal(cfg->aliases[0].name, "bob");
    assert_string_equal(cfg->aliases[0].address, "Bob Smith <bob@example.org>");
    assert_string_equal(cfg->aliases[1].name, "al");

    /* bindings: the default keymap, then the user's */
    expect_op(cfg->keymap, MENU_INDEX, "j", OP_NEXT_UNDELETED);
    expect_op(cfg->keymap, MENU_INDEX, "G", OP_LAST_ENTRY);
    expect_op(cfg->keymap, MENU_PAGER, "G", OP_BOTTOM);
    expect_op(cfg->keymap, MENU_INDEX, "gg", OP_FIRST_ENTRY);
    find(cfg->keymap, MENU_INDEX, "g", KM_PREFIX);       /* group-reply gave way */
    b = find(cfg->keymap, MENU_PAGER, ",u", KM_FOUND);
    assert_int_equal(b->kind, KM_MACRO);
    assert_string_equal(b->desc, "open URLs");
    assert_int_equal(b->macro[0], KEYC_FUNC + OP_PIPE_MESSAGE);

    /* colours */
    assert_true(cfg->theme.color_set[THEME_INDICATOR]);       /* default.theme */
    size_t rules = 0;
    for (size_t i = 0; i < cfg->theme.n_rules; i++)
        if (strcmp(cfg->theme.rules[i].pattern, "~F") == 0) {
            assert_int_equal(cfg->theme.rules[i].kind, THEME_RULE_INDEX);
            assert_int_equal(cfg->theme.rules[i].attr.fg, 9);
            rules++;
        }
    assert_int_equal(rules, 1);

    unlink(path);
    unlink(alias_path);
    config_free(cfg);
}

/* ---- stored commands --------------------------------------------------- */

static void stored_commands(void **state)
{
    struct config *cfg = config_new();
    char *diag;
    (void)state;

    run_clean(cfg,
              "mailboxes -label Work +work -notify +home ~/spool\n"
              "named-mailboxes Lists +lists \"Old stuff\" +old\n"
              "mailboxes +work\n"
              "unmailboxes +home\n"
              "my_hdr X-A: 1\nmy_hdr x-a: 2\nmy_hdr X-B: b\nunmy_hdr X-B\n"
              "ignore *\nunignore subject: from\nignore from\n"
              "lists a@x b@x\nsubscribe c@x\nunlists a@x c@x\nsubscribe d@x\nunsubscribe d@x\n"
              "auto_view text/html TEXT/HTML text/x-diff\nunauto_view text/x-diff\n"
              "mime_lookup application/octet-stream\nalternative_order text/plain\n"
              "hdr_order from to\nunhdr_order *\n"
              "alias joe Joe <j@x>\nalias joe Joe Two <j2@x>\nalias ann a@x\nunalias ann\n"
              "push '<change-folder>=INBOX<Enter>'\nexec sync-mailbox quit\n"
              "startup-hook 'echo hi'\nindex-format-hook date '~d<1d' '%[%H:%M]'\n"
              "folder-hook . 'set sort=date'\nsave-hook . =x\nunhook save-hook\n");
    assert_int_equal(cfg->n_mailboxes, 4);
    assert_string_equal(cfg->mailboxes[0].path, "+work");
    assert_string_equal(cfg->mailboxes[0].label, "Work");
    char *spool = xasprintf("%s/spool", homedir);
    assert_string_equal(cfg->mailboxes[1].path, spool);
    free(spool);
    assert_null(cfg->mailboxes[1].label);
    assert_string_equal(cfg->mailboxes[2].label, "Lists");
    assert_string_equal(cfg->mailboxes[3].label, "Old stuff");
    assert_int_equal(cfg->my_hdr.n, 1);
    assert_string_equal(cfg->my_hdr.v[0], "x-a: 2");
    assert_true(config_header_ignored(cfg, "From"));      /* ignored again */
    assert_false(config_header_ignored(cfg, "Subject"));
    assert_true(config_header_ignored(cfg, "Received"));
    assert_int_equal(cfg->lists.n, 2);                    /* b@x, d@x */
    assert_string_equal(cfg->lists.v[0], "b@x");
    assert_int_equal(cfg->subscribed.n, 0);
    assert_int_equal(cfg->auto_view.n, 1);
    assert_int_equal(cfg->mime_lookup.n, 1);
    assert_int_equal(cfg->alternative_order.n, 1);
    assert_int_equal(cfg->hdr_order.n, 0);
    assert_int_equal(cfg->n_aliases, 1);
    assert_string_equal(cfg->aliases[0].address, "Joe Two <j2@x>");
    assert_int_equal(cfg->push.n, 1);
    assert_int_equal(cfg->exec.n, 2);
    assert_int_equal(cfg->n_hooks, 3);
    assert_string_equal(cfg->hooks[0].kind, "startup-hook");
    assert_null(cfg->hooks[0].pattern);
    assert_string_equal(cfg->hooks[1].name, "date");
    assert_string_equal(cfg->hooks[1].pattern, "~d<1d");
    assert_string_equal(cfg->hooks[1].command, "%[%H:%M]");
    assert_string_equal(cfg->hooks[2].kind, "folder-hook");

    diag = run(cfg, "folder-hook . set sort=date\nexec nosuch\npush '<nosuch>'\n"
                    "my_hdr nocolon\nunhook bogus-hook\nlists '('\nmailboxes\n"
                    "alias onlyname\nkeymap\n");
    const char *want1 =
        "t:1: folder-hook: expects PATTERN COMMAND (quote the command)\n"
        "t:2: exec: nosuch: no such function\n"
        "t:3: push: <nosuch>: no such key or function\n"
        "t:4: my_hdr: expects \"Field: value\"\n"
        "t:5: unhook: bogus-hook: no such hook\n"
        "t:6: lists: bad regular expression \"(\": ";
    if (strncmp(diag, want1, strlen(want1)) != 0)
        fail_msg("got\n%s", diag);
    const char *rest = strstr(diag, "\nt:7:");
    assert_non_null(rest);
    assert_string_equal(rest, "\nt:7: mailboxes: expects at least one mailbox\n"
                              "t:8: alias: expects NAME ADDRESS...\n"
                              "t:9: keymap: expects NAME");
    free(diag);
    /* regcomp would need gigabytes for these: refused with a message */
    diag = run(cfg, "lists 'a{1,32767}'\nset quote_regex='(x+)+{1,20000}'\n"
                    "color body red default 'a+++++++++++++++++++++++++++++++'\n");
    assert_string_equal(diag,
        "t:1: lists: bad regular expression \"a{1,32767}\": too complex (its repetitions "
        "expand too far)\n"
        "t:2: quote_regex: bad regular expression \"(x+)+{1,20000}\": too complex (its "
        "repetitions expand too far)\n"
        "t:3: color: bad regular expression \"a+++++++++++++++++++++++++++++++\": too complex "
        "(its repetitions expand too far)");
    free(diag);
    config_free(cfg);
}

/* ---- mailbox shortcuts and dump -------------------------------------- */

static void mailbox_paths(void **state)
{
    struct config *cfg = config_new();
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"+x", "/m/x"}, {"=a/b", "/m/a/b"}, {"!", "/m"}, {"<", "/m/Sent"},
        {">", "/m/Archive"}, {"/abs/box", "/abs/box"}, {"rel", "rel"},
    };
    (void)state;

    run_clean(cfg, "set folder=/m");
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *p = config_mailbox_path(cfg, cases[i].in);
        if (strcmp(p, cases[i].out) != 0)
            fail_msg("%s: got %s want %s", cases[i].in, p, cases[i].out);
        free(p);
    }
    run_clean(cfg, "set folder=/m/ spoolfile=+INBOX record=/r");
    char *p = config_mailbox_path(cfg, "!");
    assert_string_equal(p, "/m/INBOX");
    free(p);
    p = config_mailbox_path(cfg, "<");
    assert_string_equal(p, "/r");
    free(p);
    p = config_mailbox_path(cfg, "~/x");
    char *want = xasprintf("%s/x", homedir);
    assert_string_equal(p, want);
    free(want);
    free(p);
    config_free(cfg);
}

static void dump_round_trip(void **state)
{
    struct config *a = config_new(), *b = config_new();
    char *da, *db, *empty;
    (void)state;

    empty = config_dump(a, false);
    assert_string_equal(empty, "");
    free(empty);
    run_clean(a, "set nomarkers mail_check=77 sort=reverse-subject sort_aux=last-size "
                 "editor=\"vi -c 'x y'\" attribution='It''s $x' delete=ask-no "
                 "record=+out mbox_type=MH wrap=-5 quote_regex='^>' my_v='a\"b' "
                 "imap_pass=secret");
    da = config_dump(a, false);
    assert_null(strstr(da, "secret"));          /* secrets stay out */
    assert_non_null(strstr(da, "set mail_check=77\n"));
    run_clean(b, da);
    db = config_dump(b, false);
    assert_string_equal(da, db);
    assert_string_equal(b->opt.editor, "vi -c 'x y'");
    assert_string_equal(b->opt.attribution, "Its $x");
    assert_string_equal(config_var(b, "my_v"), "a\"b");
    free(da);
    free(db);
    da = config_dump(a, true);
    assert_non_null(strstr(da, "set folder="));
    free(da);
    config_free(a);
    config_free(b);
}

/* ---- key syntax ------------------------------------------------------ */

struct key_case {
    const char *text;
    bool funcs;
    int keys[8];
    size_t n;
};

static const struct key_case key_cases[] = {
    {"j", false, {'j'}, 1},
    {"gg", false, {'g', 'g'}, 2},
    {"^D", false, {4}, 1},
    {"^d", false, {4}, 1},
    {"\\Cd", false, {4}, 1},
    {"\\cD", false, {4}, 1},
    {"^[", false, {033}, 1},
    {"^?", false, {0177}, 1},
    {"^@", false, {0}, 1},
    {"^^", false, {'^'}, 1},
    {"^", false, {'^'}, 1},
    {"a^", false, {'a', '^'}, 2},
    {"^1", false, {'^', '1'}, 2},
    {"^Xe", false, {030, 'e'}, 2},
    {"\\Cxb", false, {030, 'b'}, 2},
    {"\\e", false, {033}, 1},
    {"\\Ev", false, {033, 'v'}, 2},
    {"\\t\\n\\r\\f", false, {9, 10, 13, 12}, 4},
    {"\\177", false, {0177}, 1},
    {"\\033x", false, {033, 'x'}, 2},
    {"\\0", false, {0}, 1},
    {"\\1234", false, {0123, '4'}, 2},
    {"\\\\", false, {'\\'}, 1},
    {"\\", false, {'\\'}, 1},
    {"\\<", false, {'<'}, 1},
    {"\\;", false, {';'}, 1},
    {"<Esc>x", false, {033, 'x'}, 2},
    {"<esc>X", false, {033, 'X'}, 2},
    {"<Enter>", false, {'\n'}, 1},
    {"<Return>", false, {'\r'}, 1},
    {"<KeypadEnter>", false, {KEYC_KP_ENTER}, 1},
    {"<Tab><BackTab>", false, {'\t', KEYC_BACKTAB}, 2},
    {"<Space>", false, {' '}, 1},
    {"<Backspace><BackSpace>", false, {KEYC_BACKSPACE, KEYC_BACKSPACE}, 2},
    {"<Delete><Insert>", false, {KEYC_DELETE, KEYC_INSERT}, 2},
    {"<Home><End>", false, {KEYC_HOME, KEYC_END}, 2},
    {"<PageUp><PageDown>", false, {KEYC_PAGEUP, KEYC_PAGEDOWN}, 2},
    {"<Up><Down><Left><Right>", false, {KEYC_UP, KEYC_DOWN, KEYC_LEFT, KEYC_RIGHT}, 4},
    {"<F1><F12><f5><F63>", false, {KEYC_F(1), KEYC_F(12), KEYC_F(5), KEYC_F(63)}, 4},
    {"<177>", false, {0177}, 1},
    {"<", false, {'<'}, 1},
    {"<>", false, {'<', '>'}, 2},
    {"<a b>", false, {'<', 'a', ' ', 'b', '>'}, 5},
    {"x<Up", false, {'x', '<', 'U', 'p'}, 4},
    {"\xc3\xa9\xe4\xb8\xad", false, {0xe9, 0x4e2d}, 2},
    {"<quit>", true, {KEYC_FUNC + OP_QUIT}, 1},
    {"<enter-command>x<Enter>", true, {KEYC_FUNC + OP_ENTER_COMMAND, 'x', '\n'}, 3},
    {"<tag-message>", true, {KEYC_FUNC + OP_TAG_ENTRY}, 1},
    {"<backspace>", true, {KEYC_BACKSPACE}, 1},   /* key names win over functions */
};

static const struct {
    const char *text;
    bool funcs;
    const char *error;
} key_errors[] = {
    {"", false, "empty key sequence"},
    {"<Foo>", false, "<Foo>: no such key"},
    {"<quit>", false, "<quit>: no such key"},
    {"<nosuchfn>", true, "<nosuchfn>: no such key or function"},
    {"<F0>", false, "<F0>: function keys go from F1 to F63"},
    {"<F64>", false, "<F64>: function keys go from F1 to F63"},
    {"\\C1", false, "\\C1: not a control key"},
    {"x\\c", false, "\\c at the end of a key sequence"},
    {"\\400", false, "\\400: octal code above \\377"},
    {"\xff", false, "invalid UTF-8 in key sequence"},
    {"<7777777>", false, "<7777777>: key code out of range"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false, "key sequence longer than 32 keys"},
};

static void key_syntax_table(void **state)
{
    struct err e;
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(key_cases); i++) {
        const struct key_case *c = &key_cases[i];
        int *keys;
        size_t n;

        if (keymap_parse_keys(c->text, c->funcs, KEYMAP_SEQ_MAX, &keys, &n, &e) < 0)
            fail_msg("case %zu [%s]: %s", i, c->text, e.text);
        if (n != c->n || memcmp(keys, c->keys, n * sizeof *keys) != 0)
            fail_msg("case %zu [%s]: got %zu keys, first %d", i, c->text, n, keys[0]);
        free(keys);
    }
    for (size_t i = 0; i < ARRAY_LEN(key_errors); i++) {
        int *keys = (int *)&e;      /* must be reset to NULL */
        size_t n = 99;

        assert_int_equal(keymap_parse_keys(key_errors[i].text, key_errors[i].funcs,
                                           KEYMAP_SEQ_MAX, &keys, &n, &e), -1);
        assert_null(keys);
        assert_int_equal(n, 0);
        if (strcmp(e.text, key_errors[i].error) != 0)
            fail_msg("error case %zu: got [%s] want [%s]", i, e.text, key_errors[i].error);
    }
}

static void key_names_round_trip(void **state)
{
    static const struct {
        int key;
        const char *name;
    } names[] = {
        {'j', "j"}, {4, "^D"}, {0, "^@"}, {033, "<Esc>"}, {'\n', "<Enter>"},
        {'\r', "<Return>"}, {'\t', "<Tab>"}, {' ', "<Space>"}, {036, "\\036"},
        {0177, "^?"}, {0x80, "\\200"}, {0x9f, "\\237"}, {'<', "<"}, {'^', "^"},
        {'\\', "\\"}, {0xe9, "\xc3\xa9"}, {KEYC_PAGEDOWN, "<PageDown>"},
        {KEYC_BACKSPACE, "<Backspace>"}, {KEYC_KP_ENTER, "<KeypadEnter>"},
        {KEYC_F(5), "<F5>"}, {KEYC_FUNC + OP_QUIT, "<quit>"},
    };
    char buf[KEY_NAME_MAX];
    struct err e;
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        assert_string_equal(key_name(names[i].key, buf), names[i].name);

    /* every key we can name parses back to itself */
    int keys[700];
    size_t nk = 0;
    for (int k = 0; k < 0x100; k++)
        keys[nk++] = k;
    for (int k = KEYC_UP; k <= KEYC_KP_ENTER; k++)
        keys[nk++] = k;
    for (int f = 1; f <= KEYC_F_MAX; f++)
        keys[nk++] = KEYC_F(f);
    for (int op = 0; op < OP_COUNT && nk < ARRAY_LEN(keys) - 4; op++)
        if (op != OP_BACKSPACE)     /* "<backspace>" is the key, as in mutt */
            keys[nk++] = KEYC_FUNC + op;
    keys[nk++] = 0x4e2d;
    keys[nk++] = 0x1f600;
    keys[nk++] = 0x10ffff;
    for (size_t i = 0; i < nk; i++) {
        int *out;
        size_t n;
        const char *name = key_name(keys[i], buf);
        if (keymap_parse_keys(name, true, KEYMAP_SEQ_MAX, &out, &n, &e) < 0)
            fail_msg("key %#x: name [%s]: %s", keys[i], name, e.text);
        if (n != 1 || out[0] != keys[i])
            fail_msg("key %#x: name [%s] parsed to %zu keys, %#x", keys[i], name, n, out[0]);
        free(out);
    }

    /* sequences, including the characters that need escaping */
    static const int seqs[][4] = {
        {'<', 'x', 0}, {'\\', 'a', 0}, {'^', 'x', 0}, {033, 'v', 0}, {'g', 'g', 0},
        {030, 'e', 0}, {'a', '<', 0}, {'<', 'U', 'p', '>'}, {0x80, '1', 0}, {'^', '^', 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(seqs); i++) {
        size_t len = seqs[i][3] ? 4 : 2;
        char *text = keymap_keys_text(seqs[i], len);
        int *out;
        size_t n;
        if (keymap_parse_keys(text, false, KEYMAP_SEQ_MAX, &out, &n, &e) < 0)
            fail_msg("seq %zu [%s]: %s", i, text, e.text);
        if (n != len || memcmp(out, seqs[i], len * sizeof *out) != 0)
            fail_msg("seq %zu [%s] does not round-trip", i, text);
        free(out);
        free(text);
    }
    char *t = keymap_keys_text((const int[]){033, 'v'}, 2);
    assert_string_equal(t, "<Esc>v");
    free(t);
}

/* ---- bindings, prefixes and the generic fallback --------------------- */

static bool help_has(const struct km_help *h, size_t n, enum km_help_kind kind,
                     const char *keys, const char *function)
{
    for (size_t i = 0; i < n; i++)
        if (h[i].kind == kind && strcmp(h[i].function, function) == 0 &&
            (keys ? h[i].keys && strcmp(h[i].keys, keys) == 0 : h[i].keys == NULL))
            return true;
    return false;
}

static void bind_and_lookup(void **state)
{
    struct keymap *km = keymap_new();
    struct err e;
    struct km_help *h;
    size_t n;
    (void)state;

    assert_int_equal(keymap_bind(km, MENU_GENERIC, "j", OP_NEXT_ENTRY, &e), 0);
    assert_int_equal(keymap_bind(km, MENU_GENERIC, "gg", OP_FIRST_ENTRY, &e), 0);
    assert_int_equal(keymap_bind(km, MENU_GENERIC, "<Esc>/", OP_SEARCH_REVERSE, &e), 0);
    assert_int_equal(keymap_bind(km, MENU_INDEX, "d", OP_DELETE_MESSAGE, &e), 0);
    assert_int_equal(keymap_bind(km, MENU_INDEX, "gt", OP_TAG_THREAD, &e), 0);

    expect_op(km, MENU_INDEX, "j", OP_NEXT_ENTRY);          /* from generic */
    find(km, MENU_INDEX, "g", KM_PREFIX);
    expect_op(km, MENU_INDEX, "gt", OP_TAG_THREAD);
    expect_op(km, MENU_INDEX, "gg", OP_FIRST_ENTRY);        /* index has g..., generic gg */
    find(km, MENU_INDEX, "gx", KM_NONE);
    find(km, MENU_INDEX, "<Esc>", KM_PREFIX);
    expect_op(km, MENU_INDEX, "<Esc>/", OP_SEARCH_REVERSE);
    expect_op(km, MENU_PAGER, "j", OP_NEXT_ENTRY);          /* valid in the pager */
    find(km, MENU_PAGER, "gg", KM_NONE);                    /* first-entry is not */
    find(km, MENU_PAGER, "g", KM_NONE);                     /* nor is all below g */
    find(km, MENU_PAGER, "<Esc>", KM_PREFIX);
    find(km, MENU_EDITOR, "j", KM_NONE);                    /* no fallback */
    find(km, MENU_GENERIC, "d", KM_NONE);
    find(km, MENU_INDEX, "q", KM_NONE);

    /* noop hides the generic binding; unbind shows it again */
    assert_int_equal(keymap_bind(km, MENU_INDEX, "j", OP_NOOP, &e), 0);
    expect_op(km, MENU_INDEX, "j", OP_NOOP);
    assert_int_equal(keymap_unbind(km, MENU_INDEX, "j", false, &e), 0);
    expect_op(km, MENU_INDEX, "j", OP_NEXT_ENTRY);

    /* a binding replaces the longer ones it prefixes, and the reverse */
    assert_int_equal(keymap_bind(km, MENU_INDEX, "g", OP_GROUP_REPLY, &e), 0);
    expect_op(km, MENU_INDEX, "g", OP_GROUP_REPLY);
    find(km, MENU_INDEX, "gt", KM_NONE);
    keymap_describe(km, MENU_INDEX, &h, &n);
    assert_false(help_has(h, n, KM_HELP_GENERIC, "gg", "first-entry"));   /* shadowed */
    assert_true(help_has(h, n, KM_HELP_MENU, "g", "group-reply"));
    keymap_help_free(h, n);
    assert_int_equal(keymap_bind(km, MENU_INDEX, "gt", OP_TAG_THREAD, &e), 0);
    find(km, MENU_INDEX, "g", KM_PREFIX);

    /* unbinding the last key below a prefix removes the prefix */
    assert_int_equal(keymap_unbind(km, MENU_INDEX, "gt", false, &e), 0);
    find(km, MENU_INDEX, "gt", KM_NONE);
    find(km, MENU_INDEX, "g", KM_PREFIX);                   /* generic gg remains */
    assert_int_equal(keymap_unbind(km, MENU_GENERIC, "gg", false, &e), 0);
    find(km, MENU_INDEX, "g", KM_NONE);

    /* functions are checked against the menu */
    assert_int_equal(keymap_bind(km, MENU_PAGER, "x", OP_DISPLAY_MESSAGE, &e), -1);
    assert_string_equal(e.text, "display-message: no such function in menu pager");
    assert_int_equal(keymap_bind(km, MENU_INDEX, "<Nope>", OP_QUIT, &e), -1);
    assert_string_equal(e.text, "<Nope>: no such key");
    assert_true(keymap_op_valid(MENU_INDEX, OP_NEXT_ENTRY));
    assert_true(keymap_op_valid(MENU_PAGER, OP_NEXT_ENTRY));
    assert_false(keymap_op_valid(MENU_PAGER, OP_FIRST_ENTRY));
    assert_false(keymap_op_valid(MENU_EDITOR, OP_NEXT_ENTRY));
    assert_true(keymap_op_valid(MENU_BROWSER, OP_SELECT_ENTRY));
    assert_false(keymap_op_valid(MENU_INDEX, OP_TOP));
    assert_true(keymap_op_valid(MENU_EDITOR, OP_NOOP));

    /* names */
    assert_int_equal(keymap_op_parse("next-entry"), OP_NEXT_ENTRY);
    assert_int_equal(keymap_op_parse("redraw-screen"), OP_REFRESH);
    assert_int_equal(keymap_op_parse("mark-as-new"), OP_TOGGLE_NEW);
    assert_int_equal(keymap_op_parse("nope"), -1);
    assert_string_equal(keymap_op_name(OP_DELETE_MESSAGE), "delete-message");
    assert_true(strlen(keymap_op_desc(OP_DELETE_MESSAGE)) > 0);
    for (int m = 0; m < MENU_COUNT; m++)
        assert_int_equal(keymap_menu_parse(keymap_menu_name((enum km_menu)m)), m);
    assert_int_equal(keymap_menu_parse("alias"), -1);
    for (int op = 0; op < OP_COUNT; op++) {
        assert_int_equal(keymap_op_parse(keymap_op_name((enum km_op)op)), op);
        assert_true(strlen(keymap_op_desc((enum km_op)op)) > 0);
    }

    /* the help screen */
    assert_int_equal(keymap_bind(km, MENU_INDEX, "j", OP_NOOP, &e), 0);
    keymap_describe(km, MENU_INDEX, &h, &n);
    assert_true(help_has(h, n, KM_HELP_MENU, "d", "delete-message"));
    assert_true(help_has(h, n, KM_HELP_GENERIC, "<Esc>/", "search-reverse"));
    assert_false(help_has(h, n, KM_HELP_GENERIC, "j", "next-entry"));     /* hidden by noop */
    assert_true(help_has(h, n, KM_HELP_UNBOUND, NULL, "next-entry"));
    assert_true(help_has(h, n, KM_HELP_UNBOUND, NULL, "reply"));
    assert_false(help_has(h, n, KM_HELP_UNBOUND, NULL, "delete-message"));
    assert_false(help_has(h, n, KM_HELP_UNBOUND, NULL, "noop"));
    assert_false(help_has(h, n, KM_HELP_UNBOUND, NULL, "top"));           /* pager only */
    for (size_t i = 0; i < n; i++)
        assert_string_not_equal(h[i].function, "noop");
    keymap_help_free(h, n);

    /* clearing a menu */
    assert_int_equal(keymap_unbind(km, MENU_INDEX, NULL, false, &e), 0);
    find(km, MENU_INDEX, "d", KM_NONE);
    expect_op(km, MENU_INDEX, "j", OP_NEXT_ENTRY);
    keymap_free(km);
}

static void macros_and_commands(void **state)
{
    struct config *cfg = config_new();
    const struct km_binding *b;
    struct km_help *h;
    size_t n;
    char *diag;
    (void)state;

    run_clean(cfg, "macro index,pager ,u \"<pipe-message>urlview<Enter>\" \"open URLs\"\n"
                   "macro index '\\Cb' '\\eb'\n"
                   "bind index '\\103f' quit\n"
                   "macro index x 'a<quit>\\<q>' \n"
                   "bind index,pager,attach R reply\n"
                   "bind editor ^W kill-word\n");
    b = find(cfg->keymap, MENU_INDEX, ",u", KM_FOUND);
    assert_int_equal(b->kind, KM_MACRO);
    static const int want[] = {KEYC_FUNC + OP_PIPE_MESSAGE, 'u', 'r', 'l', 'v', 'i', 'e', 'w',
                               '\n'};
    assert_int_equal(b->macro_len, ARRAY_LEN(want));
    assert_memory_equal(b->macro, want, sizeof want);
    assert_string_equal(b->macro_text, "<pipe-message>urlview<Enter>");
    assert_string_equal(b->desc, "open URLs");
    find(cfg->keymap, MENU_PAGER, ",u", KM_FOUND);
    find(cfg->keymap, MENU_ATTACH, ",u", KM_NONE);
    b = find(cfg->keymap, MENU_INDEX, "^B", KM_FOUND);
    assert_int_equal(b->macro_len, 2);
    assert_int_equal(b->macro[0], 033);
    assert_null(b->desc);
    b = find(cfg->keymap, MENU_INDEX, "x", KM_FOUND);
    static const int want2[] = {'a', KEYC_FUNC + OP_QUIT, '<', 'q', '>'};
    assert_memory_equal(b->macro, want2, sizeof want2);
    expect_op(cfg->keymap, MENU_INDEX, "\\103f", OP_QUIT);       /* the keys C f */
    find(cfg->keymap, MENU_INDEX, "C", KM_PREFIX);
    expect_op(cfg->keymap, MENU_ATTACH, "R", OP_REPLY);
    expect_op(cfg->keymap, MENU_EDITOR, "^W", OP_KILL_WORD);

    keymap_describe(cfg->keymap, MENU_INDEX, &h, &n);
    bool seen = false;
    for (size_t i = 0; i < n; i++)
        if (h[i].is_macro && strcmp(h[i].keys, ",u") == 0) {
            assert_string_equal(h[i].function, "<pipe-message>urlview<Enter>");
            assert_string_equal(h[i].desc, "open URLs");
            seen = true;
        }
    assert_true(seen);
    keymap_help_free(h, n);

    diag = run(cfg, "macro index y '<nosuch>'\n"
                    "macro index\n"
                    "bind index d\n"
                    "bind nomenu d quit\n"
                    "bind index d nosuch\n"
                    "bind pager,index z display-message\n"
                    "macro index y a b c d\n"
                    "unmacro index ,u\n"
                    "unbind * R\n"
                    "unbind nomenu\n"
                    "bind index \\Cf next-page\n"
                    "macro index \\ev '<quit>'\n"
                    "bind index cd change-folder\n");
    assert_string_equal(diag,
                        "t:1: macro: <nosuch>: no such key or function\n"
                        "t:2: macro: expects MENU KEY SEQUENCE [DESCRIPTION]\n"
                        "t:3: bind: expects MENU KEY FUNCTION\n"
                        "t:4: nomenu: no such menu\n"
                        "t:5: nosuch: no such function\n"
                        "t:6: display-message: no such function in menu pager\n"
                        "t:7: macro: expects MENU KEY SEQUENCE [DESCRIPTION]\n"
                        "t:10: nomenu: no such menu");
    free(diag);
    expect_op(cfg->keymap, MENU_INDEX, "z", OP_DISPLAY_MESSAGE);  /* index still bound */
    find(cfg->keymap, MENU_INDEX, ",u", KM_NONE);
    find(cfg->keymap, MENU_PAGER, ",u", KM_FOUND);
    find(cfg->keymap, MENU_ATTACH, "R", KM_NONE);
    find(cfg->keymap, MENU_INDEX, "C", KM_PREFIX);          /* only '\103f' made C a prefix */
    find(cfg->keymap, MENU_INDEX, "e", KM_NONE);
    /* mutt's escapes arrive decoded: \Cf is control-F, \ev is Escape v */
    expect_op(cfg->keymap, MENU_INDEX, "^F", OP_NEXT_PAGE);
    find(cfg->keymap, MENU_INDEX, "<Esc>v", KM_FOUND);
    find(cfg->keymap, MENU_INDEX, "c", KM_PREFIX);          /* "cd" is two keys, as written */
    config_free(cfg);
}

/* ---- the shipped keymaps --------------------------------------------- */

struct bind_check {
    enum km_menu menu;
    const char *keys;
    enum km_op op;
};

static const struct bind_check mutt_checks[] = {
    {MENU_GENERIC, "j", OP_NEXT_ENTRY},
    {MENU_GENERIC, "<", OP_PREVIOUS_LINE},
    {MENU_GENERIC, "=", OP_FIRST_ENTRY},
    {MENU_GENERIC, "*", OP_LAST_ENTRY},
    {MENU_INDEX, "j", OP_NEXT_UNDELETED},
    {MENU_INDEX, "J", OP_NEXT_ENTRY},
    {MENU_INDEX, "<Enter>", OP_DISPLAY_MESSAGE},
    {MENU_INDEX, "<Return>", OP_DISPLAY_MESSAGE},
    {MENU_INDEX, "<Space>", OP_DISPLAY_MESSAGE},
    {MENU_INDEX, "q", OP_QUIT},
    {MENU_INDEX, "x", OP_EXIT},
    {MENU_INDEX, "?", OP_HELP},
    {MENU_INDEX, ";", OP_TAG_PREFIX},
    {MENU_INDEX, "t", OP_TAG_ENTRY},
    {MENU_INDEX, "z", OP_NEXT_PAGE},
    {MENU_INDEX, "<Esc>v", OP_COLLAPSE_THREAD},
    {MENU_INDEX, "<Esc>V", OP_COLLAPSE_ALL},
    {MENU_INDEX, "^D", OP_DELETE_THREAD},
    {MENU_INDEX, "$", OP_SYNC_MAILBOX},
    {MENU_INDEX, "#", OP_BREAK_THREAD},
    {MENU_INDEX, "<Tab>", OP_NEXT_NEW_THEN_UNREAD},
    {MENU_INDEX, "<Esc><Tab>", OP_PREVIOUS_NEW_THEN_UNREAD},
    {MENU_INDEX, "g", OP_GROUP_REPLY},
    {MENU_INDEX, "l", OP_LIMIT},
    {MENU_INDEX, "~", OP_MARK_MESSAGE},
    {MENU_INDEX, "5", OP_JUMP},
    {MENU_PAGER, "<Space>", OP_NEXT_PAGE},
    {MENU_PAGER, "-", OP_PREVIOUS_PAGE},
    {MENU_PAGER, "\\\\", OP_SEARCH_TOGGLE},
    {MENU_PAGER, "^", OP_TOP},
    {MENU_PAGER, "i", OP_EXIT},
    {MENU_PAGER, "q", OP_EXIT},
    {MENU_PAGER, "Q", OP_QUIT},
    {MENU_PAGER, "j", OP_NEXT_UNDELETED},
    {MENU_PAGER, "<Enter>", OP_NEXT_LINE},
    {MENU_PAGER, "^L", OP_REFRESH},
    {MENU_PAGER, "T", OP_TOGGLE_QUOTED},
    {MENU_BROWSER, "<Tab>", OP_TOGGLE_MAILBOXES},
    {MENU_BROWSER, "<Enter>", OP_SELECT_ENTRY},
    {MENU_BROWSER, "j", OP_NEXT_ENTRY},
    {MENU_ATTACH, "<Return>", OP_VIEW_ATTACH},
    {MENU_ATTACH, "s", OP_SAVE_ENTRY},
    {MENU_COMPOSE, "^Xe", OP_EDIT_FILE},
    {MENU_COMPOSE, "y", OP_SEND_MESSAGE},
    {MENU_COMPOSE, "T", OP_TAG_ENTRY},
    {MENU_EDITOR, "^?", OP_BACKSPACE},
    {MENU_EDITOR, "<Delete>", OP_BACKSPACE},
    {MENU_EDITOR, "^A", OP_BOL},
    {MENU_EDITOR, "<Tab>", OP_COMPLETE},
    {MENU_QUERY, "A", OP_QUERY_APPEND},
    {MENU_QUERY, "q", OP_EXIT},
};

static const struct bind_check vim_checks[] = {
    {MENU_GENERIC, "gg", OP_FIRST_ENTRY},
    {MENU_GENERIC, "G", OP_LAST_ENTRY},
    {MENU_GENERIC, "^D", OP_HALF_DOWN},
    {MENU_GENERIC, "^U", OP_HALF_UP},
    {MENU_GENERIC, "N", OP_SEARCH_OPPOSITE},
    {MENU_INDEX, "gg", OP_FIRST_ENTRY},
    {MENU_INDEX, "G", OP_LAST_ENTRY},
    {MENU_INDEX, "^D", OP_HALF_DOWN},
    {MENU_INDEX, "zt", OP_CURRENT_TOP},
    {MENU_INDEX, "zo", OP_COLLAPSE_THREAD},
    {MENU_INDEX, "zc", OP_COLLAPSE_THREAD},
    {MENU_INDEX, "za", OP_COLLAPSE_THREAD},
    {MENU_INDEX, "dd", OP_DELETE_MESSAGE},
    {MENU_INDEX, "yy", OP_COPY_MESSAGE},
    {MENU_INDEX, "]]", OP_NEXT_THREAD},
    {MENU_INDEX, "ZZ", OP_QUIT},
    {MENU_INDEX, "l", OP_DISPLAY_MESSAGE},
    {MENU_INDEX, "/", OP_SEARCH},
    {MENU_INDEX, "?", OP_SEARCH_REVERSE},
    {MENU_INDEX, "<F1>", OP_HELP},
    {MENU_PAGER, "j", OP_NEXT_LINE},
    {MENU_PAGER, "gg", OP_TOP},
    {MENU_PAGER, "G", OP_BOTTOM},
    {MENU_PAGER, "za", OP_TOGGLE_QUOTED},
    {MENU_PAGER, "^D", OP_HALF_DOWN},
    {MENU_PAGER, "h", OP_EXIT},
    {MENU_BROWSER, "l", OP_SELECT_ENTRY},
    {MENU_BROWSER, "dd", OP_DELETE_MAILBOX},
    {MENU_ATTACH, "l", OP_VIEW_ATTACH},
    {MENU_COMPOSE, "ZZ", OP_SEND_MESSAGE},
    {MENU_COMPOSE, "J", OP_MOVE_DOWN},
    {MENU_EDITOR, "^W", OP_KILL_WORD},
};

static void check_keymap_file(const char *name, const struct bind_check *checks, size_t n)
{
    struct keymap *km = keymap_new();
    struct rc_diag d;
    struct err e;
    char *path = xasprintf("%s/keymaps/%s", srcdir, name);

    rc_diag_init(&d);
    assert_int_equal(keymap_load(km, path, &d, &e), 0);
    for (size_t i = 0; i < d.n; i++)
        print_message("%s\n", d.msgs[i]);
    assert_int_equal(d.n, 0);
    for (size_t i = 0; i < n; i++)
        expect_op(km, checks[i].menu, checks[i].keys, checks[i].op);
    /* every menu has bindings */
    for (int m = 0; m < MENU_COUNT; m++) {
        struct km_help *h;
        size_t hn, own = 0;
        keymap_describe(km, (enum km_menu)m, &h, &hn);
        for (size_t i = 0; i < hn; i++)
            own += h[i].kind == KM_HELP_MENU;
        if (own == 0)
            fail_msg("%s: menu %s has no bindings", name, keymap_menu_name((enum km_menu)m));
        keymap_help_free(h, hn);
    }
    rc_diag_free(&d);
    free(path);
    keymap_free(km);
}

static void shipped_keymaps(void **state)
{
    (void)state;
    check_keymap_file("mutt.keys", mutt_checks, ARRAY_LEN(mutt_checks));
    check_keymap_file("vim.keys", vim_checks, ARRAY_LEN(vim_checks));
}

/* ---- the shipped themes ---------------------------------------------- */

static void shipped_themes(void **state)
{
    char *dir = xasprintf("%s/themes", srcdir);
    DIR *d = opendir(dir);
    struct dirent *de;
    unsigned seen = 0;
    (void)state;

    assert_non_null(d);
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        struct theme t;
        struct rc_diag diag;
        struct err e;
        char *path;
        int max_color = -1;

        if (len < 7 || strcmp(de->d_name + len - 6, ".theme") != 0)
            continue;
        path = xasprintf("%s/%s", dir, de->d_name);
        theme_init(&t);
        rc_diag_init(&diag);
        assert_int_equal(theme_load(&t, path, &diag, &e), 0);
        for (size_t i = 0; i < diag.n; i++)
            print_message("%s\n", diag.msgs[i]);
        assert_int_equal(diag.n, 0);
        for (int r = 0; r < THEME_ROLE_COUNT; r++) {
            if (!t.color_set[r])
                fail_msg("%s: role %s not set", de->d_name, theme_role_name((enum theme_role)r));
            if (t.color[r].fg > max_color)
                max_color = t.color[r].fg;
            if (t.color[r].bg > max_color)
                max_color = t.color[r].bg;
        }
        for (size_t i = 0; i < t.n_rules; i++) {
            if (t.rules[i].attr.fg > max_color)
                max_color = t.rules[i].attr.fg;
        }
        if (strcmp(de->d_name, "mono.theme") == 0) {
            assert_int_equal(max_color, -1);           /* no colour at all */
            for (int r = 0; r < THEME_ROLE_COUNT; r++)
                assert_true(t.mono_set[r]);
            assert_int_equal(t.color[THEME_INDICATOR].attrs, THEME_A_REVERSE);
            seen |= 1;
        } else if (strcmp(de->d_name, "default.theme") == 0) {
            assert_true(max_color >= 0 && max_color < 8);   /* eight colours */
            seen |= 2;
        } else if (strcmp(de->d_name, "dusk.theme") == 0 ||
                   strcmp(de->d_name, "paper.theme") == 0) {
            assert_true(max_color > 15);                    /* 256 colours */
            seen |= de->d_name[0] == 'd' ? 4 : 8;
        }
        theme_free(&t);
        rc_diag_free(&diag);
        free(path);
    }
    closedir(d);
    free(dir);
    assert_int_equal(seen, 15);
}

/* ---- colours ----------------------------------------------------------- */

static void color_parsing(void **state)
{
    static const struct {
        const char *text;
        int16_t color;
    } ok[] = {
        {"default", -1}, {"DEFAULT", -1}, {"black", 0}, {"red", 1}, {"green", 2},
        {"yellow", 3}, {"blue", 4}, {"magenta", 5}, {"cyan", 6}, {"white", 7},
        {"brightblack", 8}, {"BrightWhite", 15}, {"brightred", 9}, {"color0", 0},
        {"color255", 255}, {"colour100", 100}, {"Color42", 42},
        {"#000000", 16}, {"#ffffff", 231}, {"#FF0000", 196}, {"#005f87", 24},
        {"#808080", 244}, {"#1c1c1c", 234}, {"#5f87af", 67}, {"#ffffd7", 230},
        {"#080808", 232}, {"#eeeeee", 255}, {"#010101", 16}, {"#767676", 243},
    };
    static const char *const bad[] = {
        "color256", "colorx", "color", "color1234", "#12345", "#gg0000", "#1234567",
        "purple", "brightdefault", "bright", "",
    };
    int16_t c;
    struct err e;
    uint8_t r, g, b;
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        if (theme_parse_color(ok[i].text, &c, &e) < 0)
            fail_msg("%s: %s", ok[i].text, e.text);
        if (c != ok[i].color)
            fail_msg("%s: got %d want %d", ok[i].text, c, ok[i].color);
    }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        if (theme_parse_color(bad[i], &c, &e) == 0)
            fail_msg("%s parsed as %d", bad[i], c);
    theme_parse_color("purple", &c, &e);
    assert_string_equal(e.text, "purple: no such colour");

    assert_int_equal(theme_parse_attr("bold"), THEME_A_BOLD);
    assert_int_equal(theme_parse_attr("Reverse"), THEME_A_REVERSE);
    assert_int_equal(theme_parse_attr("none"), 0);
    assert_int_equal(theme_parse_attr("red"), -1);

    theme_256_to_rgb(196, &r, &g, &b);
    assert_true(r == 255 && g == 0 && b == 0);
    theme_256_to_rgb(244, &r, &g, &b);
    assert_true(r == 128 && g == 128 && b == 128);
    theme_256_to_rgb(9, &r, &g, &b);
    assert_true(r == 255 && g == 0 && b == 0);
    /* every palette entry above 15 maps back to itself */
    for (int16_t k = 16; k < 256; k++) {
        theme_256_to_rgb(k, &r, &g, &b);
        int16_t back = theme_rgb_to_256(r, g, b);
        uint8_t r2, g2, b2;
        theme_256_to_rgb(back, &r2, &g2, &b2);
        assert_true(r == r2 && g == g2 && b == b2);
    }
    assert_int_equal(theme_nearest_basic(196, 16), 9);
    assert_int_equal(theme_nearest_basic(196, 8), 1);
    assert_int_equal(theme_nearest_basic(24, 16), 6);
    assert_int_equal(theme_nearest_basic(3, 8), 3);
    assert_int_equal(theme_nearest_basic(-1, 8), -1);
    assert_int_equal(theme_nearest_basic(231, 8), 7);
    assert_int_equal(theme_nearest_basic(231, 16), 15);
}

static void color_commands_and_degrade(void **state)
{
    struct config *cfg = config_new();
    struct theme *t = &cfg->theme;
    struct theme d8, d16, dm, d256;
    char *diag;
    (void)state;

    run_clean(cfg, "color indicator color196 color24\n"
                   "color status color236 color235\n"
                   "color tree bold underline brightgreen default\n"
                   "color quoted0 blue default\n"
                   "color quoted3 color100 default\n"
                   "color index red default\n"
                   "color index bold color208 default ~F\n"
                   "color index blue default '~N !~D'\n"
                   "color index green default ~F\n"
                   "color header yellow default ^Subject:\n"
                   "color body cyan default \"https?://[^ ]+\"\n"
                   "mono indicator bold reverse\n"
                   "mono index underline ~F\n"
                   "mono search none\n");
    assert_int_equal(t->color[THEME_INDICATOR].fg, 196);
    assert_int_equal(t->color[THEME_INDICATOR].bg, 24);
    assert_int_equal(t->color[THEME_TREE].attrs, THEME_A_BOLD | THEME_A_UNDERLINE);
    assert_int_equal(t->color[THEME_TREE].fg, 10);
    assert_int_equal(t->color[THEME_QUOTED0].fg, 4);
    assert_true(t->color_set[THEME_INDEX]);
    assert_int_equal(t->color[THEME_INDEX].fg, 1);
    assert_int_equal(t->n_rules, 5);       /* ~F replaced, not added */
    assert_string_equal(t->rules[0].pattern, "~F");
    assert_int_equal(t->rules[0].attr.fg, 2);
    assert_int_equal(t->rules[0].attr.attrs, 0);
    assert_string_equal(t->rules[1].pattern, "~N !~D");
    assert_int_equal(t->rules[2].kind, THEME_RULE_HEADER);
    assert_int_equal(t->rules[3].kind, THEME_RULE_BODY);
    assert_true(t->rules[4].mono);
    assert_int_equal(t->mono[THEME_INDICATOR].attrs, THEME_A_BOLD | THEME_A_REVERSE);
    assert_int_equal(t->mono[THEME_SEARCH].attrs, 0);

    /* 256: unchanged */
    theme_degrade(t, 256, &d256);
    assert_int_equal(d256.color[THEME_INDICATOR].fg, 196);
    assert_int_equal(d256.n_rules, 4);     /* the mono rule is dropped */
    /* 16 colours */
    theme_degrade(t, 16, &d16);
    assert_int_equal(d16.colors, 16);
    assert_int_equal(d16.color[THEME_INDICATOR].fg, 9);
    assert_int_equal(d16.color[THEME_INDICATOR].bg, 6);
    assert_int_equal(d16.color[THEME_TREE].fg, 10);
    /* 236 and 235 both become black: the foreground turns white */
    assert_int_equal(d16.color[THEME_STATUS].bg, 0);
    assert_int_equal(d16.color[THEME_STATUS].fg, 15);
    /* 8 colours: bright foregrounds become bold */
    theme_degrade(t, 8, &d8);
    assert_int_equal(d8.colors, 8);
    assert_int_equal(d8.color[THEME_INDICATOR].fg, 1);
    assert_true(d8.color[THEME_INDICATOR].attrs & THEME_A_BOLD);
    assert_int_equal(d8.color[THEME_INDICATOR].bg, 6);
    assert_int_equal(d8.color[THEME_TREE].fg, 2);
    assert_int_equal(d8.color[THEME_TREE].attrs, THEME_A_BOLD | THEME_A_UNDERLINE);
    assert_int_equal(d8.color[THEME_STATUS].fg, 7);
    assert_int_equal(d8.color[THEME_QUOTED3].fg, 3);       /* olive 100 -> yellow */
    for (int r = 0; r < THEME_ROLE_COUNT; r++) {
        assert_true(d8.color[r].fg < 8 && d8.color[r].bg < 8);
        assert_true(d16.color[r].fg < 16 && d16.color[r].bg < 16);
    }
    assert_int_equal(d8.rules[0].attr.fg, 2);
    assert_int_equal(d8.rules[1].attr.fg, 4);
    /* mono: attributes only, mono rules only */
    theme_degrade(t, 0, &dm);
    assert_int_equal(dm.colors, 0);
    for (int r = 0; r < THEME_ROLE_COUNT; r++)
        assert_true(dm.color[r].fg == -1 && dm.color[r].bg == -1);
    assert_int_equal(dm.color[THEME_INDICATOR].attrs, THEME_A_BOLD | THEME_A_REVERSE);
    assert_int_equal(dm.color[THEME_STATUS].attrs, THEME_A_REVERSE);   /* built-in */
    assert_int_equal(dm.n_rules, 1);
    assert_string_equal(dm.rules[0].pattern, "~F");
    assert_int_equal(dm.rules[0].attr.attrs, THEME_A_UNDERLINE);
    theme_free(&d256);
    theme_free(&d16);
    theme_free(&d8);
    theme_free(&dm);

    /* removing */
    run_clean(cfg, "uncolor index ~F\nuncolor status\nunmono index *\nuncolor body *\n");
    assert_int_equal(t->n_rules, 2);
    assert_false(t->color_set[THEME_STATUS]);
    assert_int_equal(t->color[THEME_STATUS].fg, -1);
    assert_int_equal(t->color[THEME_STATUS].attrs, THEME_A_REVERSE);
    run_clean(cfg, "uncolor index *\nuncolor header *\n");
    assert_int_equal(t->n_rules, 0);

    diag = run(cfg, "color body red default\n"
                    "color header red default '('\n"
                    "color status red\n"
                    "color foo red default\n"
                    "color normal red default extra\n"
                    "color index red default ~F ~N\n"
                    "color normal red purple\n"
                    "mono normal\n"
                    "mono normal red\n"
                    "uncolor body\n"
                    "uncolor normal x\n");
    const char *want =
        "t:1: color body: expects a regular expression\n"
        "t:2: color: bad regular expression \"(\": ";
    if (strncmp(diag, want, strlen(want)) != 0)
        fail_msg("got\n%s", diag);
    const char *rest = strstr(diag, "\nt:3:");
    assert_non_null(rest);
    assert_string_equal(rest,
                        "\nt:3: color: expects OBJECT [ATTRIBUTE...] FOREGROUND BACKGROUND\n"
                        "t:4: color: no such object foo\n"
                        "t:5: color normal: takes no pattern\n"
                        "t:6: color: too many arguments (quote the pattern)\n"
                        "t:7: color: purple: no such colour\n"
                        "t:8: mono: expects OBJECT ATTRIBUTE...\n"
                        "t:9: mono: red: no such attribute\n"
                        "t:10: uncolor body: expects patterns or *\n"
                        "t:11: uncolor normal: takes no pattern");
    free(diag);
    assert_int_equal(t->n_rules, 0);
    config_free(cfg);
}

/* ---- finding and loading data files ---------------------------------- */

static void data_files_and_loading(void **state)
{
    struct config *cfg;
    struct err e;
    char *path, *want, *dir, *rc;
    (void)state;

    assert_int_equal(config_find_data_file("keymaps", "mutt", &path, &e), 0);
    want = xasprintf("%s/keymaps/mutt.keys", srcdir);
    assert_string_equal(path, want);
    free(path);
    free(want);
    assert_int_equal(config_find_data_file("themes", "dusk", &path, &e), 0);
    free(path);

    static const char *const bad[] = {"", "../mutt", "a/b", ".hidden", "/etc/passwd"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        assert_int_equal(config_find_data_file("keymaps", bad[i], &path, &e), -1);
        assert_null(path);
        assert_int_equal(e.code, ERR_INVAL);
    }
    assert_int_equal(config_find_data_file("fonts", "x", &path, &e), -1);
    assert_int_equal(config_find_data_file("themes", "nosuch", &path, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    assert_non_null(strstr(e.text, "theme nosuch: not found in "));

    /* the user's directory wins over the installed one */
    dir = xasprintf("%s/correo/keymaps", xdgdir);
    mkdirs(dir);
    path = xasprintf("%s/mutt.keys", dir);
    write_file(path, "bind index x quit\nbind generic q exit\n");
    char *found;
    assert_int_equal(config_find_data_file("keymaps", "mutt", &found, &e), 0);
    assert_string_equal(found, path);
    free(found);

    cfg = config_new();
    assert_int_equal(config_load(cfg, NULL, 0, &e), 0);
    assert_int_equal(cfg->diag.n, 0);
    expect_op(cfg->keymap, MENU_INDEX, "x", OP_QUIT);
    find(cfg->keymap, MENU_INDEX, "j", KM_NONE);         /* only the user's file */
    config_free(cfg);
    unlink(path);
    free(path);

    /* no rc: the defaults, no diagnostics */
    cfg = config_new();
    assert_int_equal(config_load(cfg, NULL, 0, &e), 0);
    assert_int_equal(cfg->diag.n, 0);
    expect_op(cfg->keymap, MENU_INDEX, "j", OP_NEXT_UNDELETED);
    assert_true(cfg->theme.color_set[THEME_INDICATOR]);
    config_free(cfg);

    /* the default rc is read, unless -n */
    rc = config_default_path();
    want = xasprintf("%s/correo/correorc", xdgdir);
    assert_string_equal(rc, want);
    free(want);
    write_file(rc, "set mail_check=123\nkeymap vim\ntheme mono\nbind index Q exit\n"
                   "set theme=nosuch\nkeymap nosuch\n");
    cfg = config_new();
    assert_int_equal(config_load(cfg, NULL, 0, &e), 0);
    assert_int_equal(cfg->opt.mail_check, 123);
    assert_string_equal(cfg->opt.keymap, "vim");
    assert_string_equal(cfg->opt.theme, "mono");
    expect_op(cfg->keymap, MENU_INDEX, "dd", OP_DELETE_MESSAGE);
    expect_op(cfg->keymap, MENU_INDEX, "Q", OP_EXIT);
    assert_int_equal(cfg->theme.color[THEME_INDICATOR].fg, -1);
    assert_int_equal(cfg->diag.n, 2);
    assert_non_null(strstr(cfg->diag.msgs[0], "correorc:5: theme nosuch: not found in "));
    assert_non_null(strstr(cfg->diag.msgs[1], "correorc:6: keymap nosuch: not found in "));
    config_free(cfg);

    cfg = config_new();
    assert_int_equal(config_load(cfg, NULL, CONFIG_NO_RC, &e), 0);
    assert_int_equal(cfg->opt.mail_check, 5);
    config_free(cfg);

    /* an explicit file must exist; ~/.correorc is the fallback default */
    cfg = config_new();
    want = xasprintf("%s/nope", tmpdir);
    assert_int_equal(config_load(cfg, want, 0, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    free(want);
    config_free(cfg);
    unlink(rc);
    free(rc);
    rc = xasprintf("%s/.correorc", homedir);
    write_file(rc, "set mail_check=321\n");
    cfg = config_new();
    assert_int_equal(config_load(cfg, NULL, 0, &e), 0);
    assert_int_equal(cfg->opt.mail_check, 321);
    config_free(cfg);
    unlink(rc);
    free(rc);

    /* set keymap= and set theme= load too; a failure keeps the old one */
    cfg = config_new();
    assert_int_equal(config_load(cfg, NULL, 0, &e), 0);
    run_clean(cfg, "set keymap=vim theme=paper");
    expect_op(cfg->keymap, MENU_PAGER, "za", OP_TOGGLE_QUOTED);
    assert_int_equal(cfg->theme.color[THEME_INDICATOR].bg, 31);
    char *diag = run(cfg, "set keymap=nosuch\nreset keymap\n");
    assert_non_null(strstr(diag, "t:1: keymap nosuch: not found"));
    assert_null(strstr(diag, "t:2"));
    free(diag);
    assert_string_equal(cfg->opt.keymap, "mutt");
    expect_op(cfg->keymap, MENU_INDEX, "j", OP_NEXT_UNDELETED);
    config_free(cfg);

    /* no keymap file at all: a diagnostic and the fallback bindings */
    setenv("CORREO_DATADIR_OVERRIDE", tmpdir, 1);
    cfg = config_new();
    assert_int_equal(config_load(cfg, NULL, 0, &e), 0);
    assert_int_equal(cfg->diag.n, 2);
    assert_non_null(strstr(cfg->diag.msgs[0], "keymap mutt: not found"));
    assert_non_null(strstr(cfg->diag.msgs[1], "theme default: not found"));
    expect_op(cfg->keymap, MENU_INDEX, "q", OP_QUIT);
    expect_op(cfg->keymap, MENU_INDEX, "j", OP_NEXT_ENTRY);
    config_free(cfg);
    setenv("CORREO_DATADIR_OVERRIDE", srcdir, 1);
    rmdir(dir);
    free(dir);
}

/* ---- the man page lists everything ----------------------------------- */

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    struct buf b = BUF_INIT;
    char chunk[4096];
    size_t n;

    assert_non_null(f);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(buf_append(&b, chunk, n), 0);
    fclose(f);
    return buf_steal(&b, NULL);
}

/* ".B name" with '-' written as "\-", as the page does. */
static bool man_has(const char *man, const char *name)
{
    struct buf b = BUF_INIT;
    bool found;

    assert_int_equal(buf_puts(&b, "\n.B "), 0);
    for (const char *p = name; *p; p++)
        assert_int_equal(*p == '-' ? buf_puts(&b, "\\-") : buf_putc(&b, *p), 0);
    assert_int_equal(buf_putc(&b, '\n'), 0);
    found = strstr(man, buf_cstr(&b)) != NULL;
    buf_free(&b);
    return found;
}

static void man_page_is_complete(void **state)
{
    char *path = xasprintf("%s/doc/correorc.5", srcdir);
    char *man = read_all(path);
    (void)state;

    for (int i = 0; i < CFG_OPTION_COUNT; i++)
        if (!man_has(man, config_option_name((enum config_id)i)))
            fail_msg("correorc.5 does not describe option %s",
                     config_option_name((enum config_id)i));
    for (int op = 0; op < OP_COUNT; op++)
        if (!man_has(man, keymap_op_name((enum km_op)op)))
            fail_msg("correorc.5 does not list function %s", keymap_op_name((enum km_op)op));
    for (int r = 0; r < THEME_ROLE_COUNT; r++)
        if (!man_has(man, theme_role_name((enum theme_role)r)))
            fail_msg("correorc.5 does not list colour role %s",
                     theme_role_name((enum theme_role)r));
    free(man);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_table),
        cmocka_unit_test(query_command_and_getters),
        cmocka_unit_test(invalid_values_are_reported),
        cmocka_unit_test(realistic_muttrc),
        cmocka_unit_test(stored_commands),
        cmocka_unit_test(mailbox_paths),
        cmocka_unit_test(dump_round_trip),
        cmocka_unit_test(key_syntax_table),
        cmocka_unit_test(key_names_round_trip),
        cmocka_unit_test(bind_and_lookup),
        cmocka_unit_test(macros_and_commands),
        cmocka_unit_test(shipped_keymaps),
        cmocka_unit_test(shipped_themes),
        cmocka_unit_test(color_parsing),
        cmocka_unit_test(color_commands_and_degrade),
        cmocka_unit_test(data_files_and_loading),
        cmocka_unit_test(man_page_is_complete),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
