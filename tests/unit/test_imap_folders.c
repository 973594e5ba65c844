/*
 * Tests for mua/imap_folders: names (modified UTF-7 both ways, URLs that
 * give the wire name back), then LIST/LSUB/STATUS, folder operations,
 * APPEND and recall against scripted servers on loopback.  A server thread
 * accepts one connection, writes its whole script at once (tags are 1, 2,
 * ...: 1-3 are the login, so the first command under test is 4), then
 * records what the client sent until it closes.  The tests check what the
 * client concluded and what it sent: the LIST-EXTENDED command when the
 * server offers it, LIST + LSUB + one STATUS per selectable folder when
 * not, odd and hostile names (quoted escapes, literals, control
 * characters, bidi overrides in modified UTF-7, an oversized literal,
 * garbage) skipped or made safe while the exchange goes on, and no write
 * to a folder whose UIDVALIDITY changed.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "buf.h"
#include "err.h"
#include "imap.h"
#include "imap_folders.h"
#include "msg.h"
#include "testutil.h"
#include "xalloc.h"

/* ---- names ------------------------------------------------------------------ */

static void test_wire_and_display(void **state)
{
    static const struct {
        const char *utf8, *wire;
    } cases[] = {
        {"INBOX", "INBOX"},
        {"Entw\xc3\xbcrfe", "Entw&APw-rfe"},
        {"Tom & Jerry", "Tom &- Jerry"},
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "&ZeVnLIqe-"},
        {"Sent Items", "Sent Items"},
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e;
        char *w = imap_folder_wire(cases[i].utf8, &e);
        char *d;

        if (w == NULL)
            fail_msg("%s: %s", cases[i].utf8, e.text);
        assert_string_equal(w, cases[i].wire);
        d = imap_folder_display(w);
        assert_string_equal(d, cases[i].utf8);
        free(d);
        free(w);
    }
    {
        struct err e;

        assert_null(imap_folder_wire("", &e));
        assert_int_equal(e.code, ERR_INVAL);
        assert_null(imap_folder_wire("a\nb", &e));
        assert_int_equal(e.code, ERR_INVAL);
        assert_null(imap_folder_wire("bad\xff", &e));
    }
    /* Not canonical modified UTF-7: shown as it is. */
    {
        char *d = imap_folder_display("&Jjo");

        assert_string_equal(d, "&Jjo");
        free(d);
    }
    /* A right-to-left override (U+202E) in modified UTF-7 never reaches the
     * screen as itself. */
    {
        char *d = imap_folder_display("&IC4-evil");

        assert_null(strstr(d, "\xe2\x80\xae"));
        assert_non_null(strstr(d, "evil"));
        free(d);
    }
}

static void test_url(void **state)
{
    static const char *const names[] = {
        "INBOX", "Sent Items", "a%b", "Lists/dev", "Entw&APw-rfe", "x/", "/lead", "q?#",
    };
    struct imap_url base;
    (void)state;

    assert_int_equal(imap_url_parse("imaps://alice@127.0.0.1:10993/", &base, NULL), 0);
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char *url = imap_folder_url(&base, names[i]);
        struct imap_url u;
        struct err e;

        if (imap_url_parse(url, &u, &e) != 0)
            fail_msg("%s: %s", url, e.text);
        assert_true(u.tls);
        assert_string_equal(u.user, "alice");
        assert_int_equal(u.port, 10993);
        assert_string_equal(u.folder, names[i]);
        imap_url_free(&u);
        free(url);
    }
    {
        char *url = imap_folder_url(&base, "Sent Items");

        assert_string_equal(url, "imaps://alice@127.0.0.1:10993/Sent%20Items");
        free(url);
    }
    imap_url_free(&base);
}

/* ---- scripted servers ------------------------------------------------------- */

struct server {
    int lfd;
    const char *script;
    size_t script_len;
    struct buf got;
    pthread_t tid;
    unsigned port;
};

static void answer_logout(int fd, const struct buf *got)
{
    const char *end, *start, *sp;
    char reply[64];

    if (got->len < 9 || memcmp(got->data + got->len - 8, "LOGOUT\r\n", 8) != 0)
        return;
    end = got->data + got->len - 8;
    for (start = end; start > got->data && start[-1] != '\n'; start--)
        ;
    sp = memchr(start, ' ', (size_t)(end - start));
    if (sp == NULL || sp + 1 != end || sp - start > 20)
        return;
    snprintf(reply, sizeof reply, "* BYE bye\r\n%.*s OK done\r\n", (int)(sp - start), start);
    (void)send(fd, reply, strlen(reply), MSG_NOSIGNAL);
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    struct pollfd pfd = {s->lfd, POLLIN, 0};
    size_t off = 0;
    int fd;

    if (poll(&pfd, 1, 10000) != 1)
        return NULL;
    fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    while (off < s->script_len) {
        ssize_t w = send(fd, s->script + off, s->script_len - off, MSG_NOSIGNAL);

        if (w <= 0)
            break;
        off += (size_t)w;
    }
    for (;;) {
        char b[4096];
        struct pollfd q = {fd, POLLIN, 0};
        ssize_t r;

        if (poll(&q, 1, 10000) != 1)
            break;
        r = read(fd, b, sizeof b);
        if (r <= 0)
            break;
        if (buf_append(&s->got, b, (size_t)r) != 0)
            break;
        answer_logout(fd, &s->got);
    }
    close(fd);
    return NULL;
}

static void server_start(struct server *s, const char *script, size_t len)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;

    memset(s, 0, sizeof *s);
    buf_init(&s->got, 1 << 20);
    s->script = script;
    s->script_len = len;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 1), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->tid, NULL, server_main, s), 0);
}

/* Logged in (tags 1-3) with these capabilities. */
static char *logged_in(const char *caps, const char *rest, size_t rest_len, size_t *len)
{
    char *head = xasprintf("* OK ready\r\n* CAPABILITY IMAP4rev1\r\n1 OK done\r\n"
                           "2 OK logged in\r\n* CAPABILITY IMAP4rev1 %s\r\n3 OK done\r\n", caps);
    size_t hl = strlen(head);
    char *all = xmalloc(hl + rest_len + 1);

    memcpy(all, head, hl);
    memcpy(all + hl, rest, rest_len);
    all[hl + rest_len] = '\0';
    *len = hl + rest_len;
    free(head);
    return all;
}

/* Connect to a server playing script (after the login) and return the
 * connection; finish() closes it and hands back what the client sent. */
struct session {
    struct server srv;
    struct imap_conn *c;
    char *script;
};

static void session_start(struct session *ss, const char *caps, const char *rest, size_t rest_len)
{
    struct imap_settings s;
    struct imap_url u;
    struct err e;
    size_t len;
    char *url;

    ss->script = logged_in(caps, rest, rest_len, &len);
    server_start(&ss->srv, ss->script, len);
    memset(&s, 0, sizeof s);
    s.pass = "secret";
    s.allow_plain = true;
    s.timeout_ms = 5000;
    url = xasprintf("imap://alice@127.0.0.1:%u/INBOX", ss->srv.port);
    assert_int_equal(imap_url_parse(url, &u, NULL), 0);
    if (imap_connect(&u, &s, &ss->c, &e) != 0)
        fail_msg("connect: %s", e.text);
    imap_url_free(&u);
    free(url);
}

static void session_finish(struct session *ss)
{
    imap_close(ss->c);
    pthread_join(ss->srv.tid, NULL);
    close(ss->srv.lfd);
    free(ss->script);
}

static bool contains(const struct buf *b, const char *s)
{
    return b->len > 0 && memmem(b->data, b->len, s, strlen(s)) != NULL;
}

/* ---- listing ------------------------------------------------------------------ */

static const char hostile_list[] =
    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
    "* STATUS \"INBOX\" (MESSAGES 3 UNSEEN 1 RECENT 0)\r\n"
    "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" \"Sent\"\r\n"
    "* STATUS \"Sent\" (MESSAGES 12 UNSEEN 0 RECENT 2)\r\n"
    "* LIST (\\Noselect \\HasChildren) \"/\" \"Lists\"\r\n"
    "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Entw&APw-rfe\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
    "* STATUS \"Entw&APw-rfe\" (MESSAGES 1 UNSEEN 1 RECENT 1)\r\n"
    "* LIST (\\HasNoChildren) \"/\" \"a \\\"q\\\" b\\\\c\"\r\n"
    "* LIST () \"/\" {8}\r\nLit Name\r\n"
    "* LIST () NIL Flat\r\n"
    "* LIST () \"/\" {6}\r\nx\x1b[2Jy\r\n"
    "* LIST () \"/\" \"tab\tname\"\r\n"
    "* LIST () \"/\" \"&IC4-evil\"\r\n"
    "* LIST () \"/\" \"&Jjo\"\r\n"
    "* LIST garbage\r\n"
    "* LIST (\\Junk) \"/\" {20000}\r\n";

static void test_list_extended(void **state)
{
    struct session ss;
    struct imap_folder_list l;
    struct buf script = BUF_INIT;
    const struct imap_folder *f;
    struct err e;
    (void)state;

    assert_int_equal(buf_append(&script, hostile_list, strlen(hostile_list)), 0);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(buf_putc(&script, 'z'), 0);
    assert_int_equal(buf_puts(&script, " (\"X\" ((((deep))))\r\n"
                                       "* OK [ALERT] hello\r\n"
                                       "* LIST (\\Trash) \"/\" Trash\r\n"
                                       "4 OK List completed\r\n"), 0);
    session_start(&ss, "LIST-EXTENDED LIST-STATUS SPECIAL-USE", script.data, script.len);
    if (imap_folders_list(ss.c, IMAP_LIST_STATUS, &l, &e) != 0)
        fail_msg("list: %s", e.text);
    assert_true(imap_usable(ss.c));
    session_finish(&ss);
    assert_true(contains(&ss.srv.got,
                         "4 LIST \"\" \"*\" RETURN (SPECIAL-USE SUBSCRIBED STATUS "
                         "(MESSAGES UNSEEN RECENT))\r\n"));
    /* no STATUS of its own: the LIST gave the counts */
    assert_false(contains(&ss.srv.got, "STATUS \""));

    /* INBOX Sent Lists Entwürfe a"q"b\c Lit-Name Flat evil &Jjo Trash */
    assert_int_equal(l.n, 10);
    /* the ESC name, the TAB name, the garbage, the oversized literal */
    assert_int_equal(l.n_skipped, 4);

    f = imap_folder_find(&l, "INBOX");
    assert_non_null(f);
    assert_true(f->has_status);
    assert_int_equal(f->messages, 3);
    assert_int_equal(f->unseen, 1);
    assert_int_equal(f->delim, '/');

    f = imap_folder_special(&l, IMAP_SU_SENT);
    assert_non_null(f);
    assert_string_equal(f->wire, "Sent");
    assert_int_equal(f->messages, 12);
    assert_int_equal(f->recent, 2);
    assert_true(f->attrs & IMAP_FA_SUBSCRIBED);

    f = imap_folder_special(&l, IMAP_SU_DRAFTS);
    assert_non_null(f);
    assert_string_equal(f->wire, "Entw&APw-rfe");
    assert_string_equal(f->display, "Entw\xc3\xbcrfe");
    assert_int_equal(f->unseen, 1);

    f = imap_folder_find(&l, "Lists");
    assert_non_null(f);
    assert_true(f->attrs & IMAP_FA_NOSELECT);
    assert_true(f->attrs & IMAP_FA_HASCHILDREN);
    assert_false(f->has_status);

    assert_non_null(imap_folder_find(&l, "a \"q\" b\\c"));
    assert_non_null(imap_folder_find(&l, "Lit Name"));
    f = imap_folder_find(&l, "Flat");
    assert_non_null(f);
    assert_int_equal(f->delim, '\0');
    f = imap_folder_find(&l, "&IC4-evil");
    assert_non_null(f);
    assert_null(strstr(f->display, "\xe2\x80\xae"));
    f = imap_folder_find(&l, "&Jjo");
    assert_non_null(f);
    assert_string_equal(f->display, "&Jjo");
    assert_non_null(imap_folder_special(&l, IMAP_SU_TRASH));
    assert_null(imap_folder_special(&l, IMAP_SU_JUNK));
    for (size_t i = 0; i < l.n; i++)
        for (const char *q = l.v[i].display; *q; q++)
            assert_true((unsigned char)*q >= 0x20 && *q != 0x7f);
    imap_folder_list_free(&l);
    buf_free(&ss.srv.got);
    buf_free(&script);
}

/* Without LIST-EXTENDED: LIST, LSUB, then STATUS per selectable folder. */
static void test_list_plain(void **state)
{
    static const char script[] =
        "* LIST (\\HasNoChildren) \".\" INBOX\r\n"
        "* LIST (\\Noselect) \".\" \"Archive\"\r\n"
        "* LIST (\\HasNoChildren) \".\" \"Archive.2025\"\r\n"
        "4 OK done\r\n"
        "* LSUB () \".\" \"Archive.2025\"\r\n"
        "* LSUB () \".\" \"Gone\"\r\n"
        "5 OK done\r\n"
        "* STATUS INBOX (MESSAGES 5 UNSEEN 2 RECENT 1)\r\n"
        "6 OK done\r\n"
        "* STATUS \"Archive.2025\" (MESSAGES 4294967295 UNSEEN 0 RECENT 0)\r\n"
        "7 OK done\r\n";
    struct session ss;
    struct imap_folder_list l;
    const struct imap_folder *f;
    struct err e;
    (void)state;

    session_start(&ss, "UIDPLUS", script, strlen(script));
    if (imap_folders_list(ss.c, IMAP_LIST_STATUS, &l, &e) != 0)
        fail_msg("list: %s", e.text);
    session_finish(&ss);
    assert_true(contains(&ss.srv.got, "4 LIST \"\" \"*\"\r\n"));
    assert_true(contains(&ss.srv.got, "5 LSUB \"\" \"*\"\r\n"));
    assert_true(contains(&ss.srv.got, "6 STATUS \"INBOX\" (MESSAGES UNSEEN RECENT)\r\n"));
    assert_true(contains(&ss.srv.got, "7 STATUS \"Archive.2025\" (MESSAGES UNSEEN RECENT)\r\n"));
    assert_false(contains(&ss.srv.got, "STATUS \"Archive\" "));
    assert_int_equal(l.n, 3);
    f = imap_folder_find(&l, "INBOX");
    assert_int_equal(f->messages, 5);
    assert_int_equal(f->recent, 1);
    assert_false(f->attrs & IMAP_FA_SUBSCRIBED);
    f = imap_folder_find(&l, "Archive.2025");
    assert_int_equal(f->delim, '.');
    assert_int_equal(f->messages, 4294967295u);
    assert_true(f->attrs & IMAP_FA_SUBSCRIBED);
    assert_null(imap_folder_find(&l, "Gone"));
    imap_folder_list_free(&l);
    buf_free(&ss.srv.got);
}

/* Refusals and broken replies: an error for the operation, never a crash. */
static void test_list_refused(void **state)
{
    static const struct {
        const char *script;
        enum err_code code;
        bool usable;
    } cases[] = {
        {"4 NO [NOPERM] not \x1b[31mallowed\r\n", ERR_PROTO, true},
        {"+ go on\r\n", ERR_PROTO, false},
        {"99 OK wrong tag\r\n", ERR_PROTO, false},
        {"* LIST () \"/\" INBOX\r\n* BYE shutting down\r\n", ERR_NET, false},
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct session ss;
        struct imap_folder_list l;
        struct err e;

        session_start(&ss, "LIST-EXTENDED", cases[i].script, strlen(cases[i].script));
        /* the BYE case: the server hangs up after its script */
        if (strstr(cases[i].script, "BYE") != NULL)
            shutdown(ss.srv.lfd, SHUT_RDWR);
        if (imap_folders_list(ss.c, 0, &l, &e) == 0)
            fail_msg("case %zu: accepted", i);
        if (e.code != cases[i].code && !(cases[i].code == ERR_NET && e.code == ERR_PROTO))
            fail_msg("case %zu: code %d (%s)", i, e.code, e.text);
        assert_null(strchr(e.text, '\x1b'));
        assert_int_equal(l.n, 0);
        assert_null(l.v);
        if (cases[i].usable)
            assert_true(imap_usable(ss.c));
        else
            assert_false(imap_usable(ss.c));
        if (i == 0)
            assert_non_null(strstr(e.text, "allowed"));
        session_finish(&ss);
        buf_free(&ss.srv.got);
    }
}

static void test_status_one(void **state)
{
    static const char script[] =
        "* STATUS \"Other\" (MESSAGES 99)\r\n"
        "* STATUS \"Sent Items\" (MESSAGES 7 RECENT 3 UNSEEN 2)\r\n"
        "4 OK done\r\n"
        "* STATUS \"x\" (MESSAGES 99999999999)\r\n"
        "5 OK done\r\n";
    struct session ss;
    struct imap_folder f;
    struct err e;
    (void)state;

    memset(&f, 0, sizeof f);
    session_start(&ss, "", script, strlen(script));
    if (imap_folders_status(ss.c, "Sent Items", &f, &e) != 0)
        fail_msg("status: %s", e.text);
    assert_true(f.has_status);
    assert_int_equal(f.messages, 7);
    assert_int_equal(f.unseen, 2);
    assert_int_equal(f.recent, 3);
    assert_int_equal(imap_folders_status(ss.c, "x", &f, &e), -1);
    assert_int_equal(e.code, ERR_PROTO);
    assert_false(f.has_status);
    assert_int_equal(imap_folders_status(ss.c, "a\rb", &f, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    session_finish(&ss);
    assert_true(contains(&ss.srv.got, "4 STATUS \"Sent Items\" (MESSAGES UNSEEN RECENT)\r\n"));
    assert_false(contains(&ss.srv.got, "a\rb"));
    buf_free(&ss.srv.got);
}

/* ---- operations ---------------------------------------------------------------- */

static void test_operations(void **state)
{
    static const char script[] =
        "4 OK created\r\n"
        "5 OK renamed\r\n"
        "6 OK subscribed\r\n"
        "7 OK unsubscribed\r\n"
        "8 NO [NONEXISTENT] no such folder\r\n"
        "9 OK deleted\r\n";
    struct session ss;
    struct err e;
    (void)state;

    session_start(&ss, "", script, strlen(script));
    assert_int_equal(imap_folders_create(ss.c, "Entw&APw-rfe", &e), 0);
    assert_int_equal(imap_folders_rename(ss.c, "Entw&APw-rfe", "Old Drafts", &e), 0);
    assert_int_equal(imap_folders_subscribe(ss.c, "Old Drafts", true, &e), 0);
    assert_int_equal(imap_folders_subscribe(ss.c, "Old Drafts", false, &e), 0);
    assert_int_equal(imap_folders_delete(ss.c, "Nope", &e), -1);
    assert_int_equal(e.code, ERR_PROTO);
    assert_non_null(strstr(e.text, "no such folder"));
    assert_int_equal(imap_folders_delete(ss.c, "Old Drafts", &e), 0);
    /* refused before anything is sent */
    assert_int_equal(imap_folders_delete(ss.c, "inbox", &e), -1);
    assert_int_equal(imap_folders_rename(ss.c, "INBOX", "x", &e), -1);
    assert_int_equal(imap_folders_create(ss.c, "a\nb", &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(imap_folders_create(ss.c, "", &e), -1);
    session_finish(&ss);
    assert_true(contains(&ss.srv.got, "4 CREATE \"Entw&APw-rfe\"\r\n"));
    assert_true(contains(&ss.srv.got, "5 RENAME \"Entw&APw-rfe\" \"Old Drafts\"\r\n"));
    assert_true(contains(&ss.srv.got, "6 SUBSCRIBE \"Old Drafts\"\r\n"));
    assert_true(contains(&ss.srv.got, "7 UNSUBSCRIBE \"Old Drafts\"\r\n"));
    assert_true(contains(&ss.srv.got, "8 DELETE Nope\r\n"));
    assert_true(contains(&ss.srv.got, "9 DELETE \"Old Drafts\"\r\n"));
    /* the refused ones never left: the next command is the LOGOUT */
    assert_true(contains(&ss.srv.got, "9 DELETE \"Old Drafts\"\r\n10 LOGOUT\r\n"));
    buf_free(&ss.srv.got);
}

static void test_append(void **state)
{
    static const char msg[] = "From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n";
    static const char script[] =
        "+ go ahead\r\n"
        "4 OK [APPENDUID 7 42] appended\r\n";
    static const char retry[] =
        "4 NO [TRYCREATE] no such folder\r\n5 OK created\r\n"
        "+ go ahead\r\n6 OK appended\r\n";
    struct session ss;
    struct err e;
    uint32_t uid = 0;
    (void)state;

    session_start(&ss, "UIDPLUS", script, strlen(script));
    if (imap_folders_append(ss.c, "Sent", msg, strlen(msg), MSG_SEEN, &uid, &e) != 0)
        fail_msg("append: %s", e.text);
    assert_int_equal(uid, 42);
    session_finish(&ss);
    assert_true(contains(&ss.srv.got, "4 APPEND Sent (\\Seen) {"));
    assert_true(contains(&ss.srv.got, msg));
    buf_free(&ss.srv.got);

    /* The folder is missing: created, and the APPEND tried again. */
    session_start(&ss, "", retry, strlen(retry));
    if (imap_folders_append(ss.c, "Drafts", msg, strlen(msg), MSG_DRAFT, &uid, &e) != 0)
        fail_msg("append: %s", e.text);
    assert_int_equal(uid, 0);
    assert_true(imap_usable(ss.c));
    session_finish(&ss);
    assert_true(contains(&ss.srv.got, "4 APPEND Drafts (\\Draft) {"));
    assert_true(contains(&ss.srv.got, "5 CREATE Drafts\r\n6 APPEND Drafts (\\Draft) {"));
    buf_free(&ss.srv.got);
}

/* ---- recall ------------------------------------------------------------------ */

static void test_recall(void **state)
{
    static const char hdr1[] = "Subject: =?UTF-8?Q?Caf=C3=A9?=\r\nFrom: Me <me@example.org>\r\n\r\n";
    static const char whole[] = "Subject: first\r\n\r\nhello\r\n";
    struct imap_summary_list sl;
    struct session ss;
    struct buf script = BUF_INIT, out = BUF_INIT;
    struct err e;
    (void)state;

    assert_int_equal(buf_printf(&script,
                                "* 2 EXISTS\r\n* OK [UIDVALIDITY 77] ok\r\n4 OK [READ-ONLY] done\r\n"
                                "* 2 FETCH (UID 12 FLAGS (\\Draft) BODY[HEADER.FIELDS (SUBJECT FROM)] "
                                "{%zu}\r\n%s)\r\n"
                                "* 1 FETCH (UID 10 FLAGS (\\Draft \\Seen) BODY[HEADER.FIELDS "
                                "(SUBJECT FROM)] {2}\r\n\r\n)\r\n"
                                "5 OK done\r\n"
                                /* fetch */
                                "* 2 EXISTS\r\n* OK [UIDVALIDITY 77] ok\r\n6 OK [READ-ONLY] done\r\n"
                                "* 2 FETCH (UID 12 BODY[] {%zu}\r\n%s)\r\n"
                                "7 OK done\r\n"
                                /* remove, refused: UIDVALIDITY changed */
                                "* 2 EXISTS\r\n* OK [UIDVALIDITY 78] ok\r\n8 OK [READ-WRITE] done\r\n"
                                /* remove */
                                "* 2 EXISTS\r\n* OK [UIDVALIDITY 77] ok\r\n9 OK [READ-WRITE] done\r\n"
                                "10 OK stored\r\n"
                                "* 2 EXPUNGE\r\n11 OK expunged\r\n",
                                strlen(hdr1), hdr1, strlen(whole), whole),
                     0);
    session_start(&ss, "UIDPLUS", script.data, script.len);
    if (imap_folders_summaries(ss.c, "Drafts", &sl, &e) != 0)
        fail_msg("summaries: %s", e.text);
    assert_int_equal(sl.uidvalidity, 77);
    assert_int_equal(sl.n, 2);
    assert_int_equal(sl.v[0].uid, 10);
    assert_string_equal(sl.v[0].subject, "");
    assert_true(sl.v[0].flags & MSG_SEEN);
    assert_int_equal(sl.v[1].uid, 12);
    assert_string_equal(sl.v[1].subject, "Caf\xc3\xa9");
    assert_non_null(strstr(sl.v[1].from, "me@example.org"));
    assert_true(sl.v[1].flags & MSG_DRAFT);
    imap_summary_list_free(&sl);

    if (imap_folders_fetch(ss.c, "Drafts", 77, 12, &out, &e) != 0)
        fail_msg("fetch: %s", e.text);
    assert_int_equal(out.len, strlen(whole));
    assert_memory_equal(out.data, whole, out.len);

    assert_int_equal(imap_folders_remove(ss.c, "Drafts", 77, 12, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    if (imap_folders_remove(ss.c, "Drafts", 77, 12, &e) != 0)
        fail_msg("remove: %s", e.text);
    session_finish(&ss);
    assert_true(contains(&ss.srv.got, "4 EXAMINE Drafts\r\n"));
    assert_true(contains(&ss.srv.got, "6 EXAMINE Drafts\r\n"));
    assert_true(contains(&ss.srv.got, "7 UID FETCH 12 (UID BODY.PEEK[])\r\n"));
    assert_true(contains(&ss.srv.got, "8 SELECT Drafts\r\n9 SELECT Drafts\r\n"));
    assert_true(contains(&ss.srv.got, "10 UID STORE 12 +FLAGS.SILENT (\\Deleted)\r\n"));
    assert_true(contains(&ss.srv.got, "11 UID EXPUNGE 12\r\n"));
    buf_free(&ss.srv.got);
    buf_free(&script);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_and_display),
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_list_extended),
        cmocka_unit_test(test_list_plain),
        cmocka_unit_test(test_list_refused),
        cmocka_unit_test(test_status_one),
        cmocka_unit_test(test_operations),
        cmocka_unit_test(test_append),
        cmocka_unit_test(test_recall),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
