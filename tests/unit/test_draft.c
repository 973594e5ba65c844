/* Unit tests for mua/draft: replies, forwards, the editor template. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "draft.h"
#include "message.h"

static const char orig_text[] =
    "From: Alice Example <alice@example.org>\n"
    "To: Me Myself <me@example.org>, Bob <bob@example.org>\n"
    "Cc: Carol <carol@example.org>, me@work.example\n"
    "Subject: Hello there\n"
    "Date: Mon, 02 Nov 2026 10:00:00 +0000\n"
    "Message-ID: <orig@example.org>\n"
    "References: <root@example.org> <mid@example.org>\n"
    "List-Post: <mailto:dev@lists.example.org?subject=x>\n"
    "\n"
    "First line\n"
    "\n"
    "Second paragraph\n";

static struct config *make_config(void)
{
    struct config *cfg = config_new();
    struct rc_diag d;
    struct err e;

    rc_diag_init(&d);
    config_exec(cfg, "t",
                "set from=me@example.org realname='Me Myself' signature=/nonexistent "
                "attribution='On %{%Y-%m-%d}, %n wrote:'\n"
                "alternates 'me@work\\.example'\n", &d);
    if (d.n)
        fail_msg("%s", d.msgs[0]);
    rc_diag_free(&d);
    (void)e;
    return cfg;
}

static struct message *parse(const char *text)
{
    struct message *m;
    struct err e;
    assert_int_equal(message_parse(text, strlen(text), NULL, &m, &e), 0);
    return m;
}

static void reply_kinds(void **state)
{
    struct config *cfg = make_config();
    struct message *m = parse(orig_text);
    struct draft d;
    struct err e;
    (void)state;

    setenv("TZ", "UTC", 1);
    draft_init(&d);
    assert_int_equal(draft_reply(cfg, m, DRAFT_REPLY, &d, &e), 0);
    assert_string_equal(draft_get(&d, "To"), "Alice Example <alice@example.org>");
    assert_string_equal(draft_get(&d, "Cc"), "");
    assert_string_equal(draft_get(&d, "From"), "Me Myself <me@example.org>");
    assert_string_equal(draft_get(&d, "Subject"), "Re: Hello there");
    assert_string_equal(d.in_reply_to, "orig@example.org");
    assert_int_equal(d.n_references, 3);
    assert_string_equal(d.references[0], "root@example.org");
    assert_string_equal(d.references[2], "orig@example.org");
    assert_string_equal(d.body, "On 2026-11-02, Alice Example wrote:\n"
                                "> First line\n"
                                ">\n"
                                "> Second paragraph\n"
                                "\n");

    /* $include=no: the same headers, no quote */
    draft_drop_quote(cfg, &d);
    assert_string_equal(d.body, "\n");
    assert_string_equal(d.in_reply_to, "orig@example.org");

    /* $reverse_name: from the alternate address the mail went to */
    {
        struct rc_diag rd;
        rc_diag_init(&rd);
        config_exec(cfg, "t", "set reverse_name\n", &rd);
        assert_int_equal(rd.n, 0);
        rc_diag_free(&rd);
        assert_int_equal(draft_reply(cfg, m, DRAFT_REPLY, &d, &e), 0);
        assert_string_equal(draft_get(&d, "From"), "Me Myself <me@example.org>");
        struct message *w = parse("From: x@example.org\nTo: me@work.example\nSubject: w\n\nx\n");
        assert_int_equal(draft_reply(cfg, w, DRAFT_REPLY, &d, &e), 0);
        assert_string_equal(draft_get(&d, "From"), "Me Myself <me@work.example>");
        message_free(w);
        config_exec(cfg, "t", "unset reverse_name\n", &rd);
    }

    /* group reply: the others in Cc, never me (by $from or $alternates) */
    assert_int_equal(draft_reply(cfg, m, DRAFT_GROUP_REPLY, &d, &e), 0);
    assert_string_equal(draft_get(&d, "To"), "Alice Example <alice@example.org>");
    assert_string_equal(draft_get(&d, "Cc"), "Bob <bob@example.org>, Carol <carol@example.org>");

    /* list reply: List-Post's address */
    assert_int_equal(draft_reply(cfg, m, DRAFT_LIST_REPLY, &d, &e), 0);
    assert_string_equal(draft_get(&d, "To"), "dev@lists.example.org");
    message_free(m);

    m = parse("From: a@example.org\nSubject: Re: Already\n\nx\n");
    assert_int_equal(draft_reply(cfg, m, DRAFT_REPLY, &d, &e), 0);
    assert_string_equal(draft_get(&d, "Subject"), "Re: Already");
    assert_null(d.in_reply_to);
    assert_int_equal(draft_reply(cfg, m, DRAFT_LIST_REPLY, &d, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    message_free(m);

    /* Reply-To wins; a reply to my own message goes to its recipients */
    m = parse("From: a@example.org\nReply-To: list@example.org\nSubject: x\n\nx\n");
    assert_int_equal(draft_reply(cfg, m, DRAFT_REPLY, &d, &e), 0);
    assert_string_equal(draft_get(&d, "To"), "list@example.org");
    message_free(m);
    m = parse("From: me@example.org\nTo: Zed <zed@example.org>\nSubject: mine\n\nx\n");
    assert_int_equal(draft_reply(cfg, m, DRAFT_REPLY, &d, &e), 0);
    assert_string_equal(draft_get(&d, "To"), "Zed <zed@example.org>");
    message_free(m);

    /* an HTML-only original is quoted as text */
    m = parse("From: h@example.org\nSubject: h\nContent-Type: text/html\n\n"
              "<p>Hello <b>bold</b></p><script>x()</script>\n");
    assert_int_equal(draft_reply(cfg, m, DRAFT_REPLY, &d, &e), 0);
    assert_non_null(strstr(d.body, "> Hello bold"));
    assert_null(strstr(d.body, "<b>"));
    assert_null(strstr(d.body, "x()"));
    message_free(m);

    draft_free(&d);
    config_free(cfg);
}

static void forward_inline(void **state)
{
    struct config *cfg = make_config();
    struct message *m = parse(orig_text);
    struct draft d;
    struct err e;
    (void)state;

    draft_init(&d);
    assert_int_equal(draft_forward(cfg, m, &d, &e), 0);
    assert_string_equal(draft_get(&d, "Subject"), "[alice@example.org: Hello there]");
    assert_string_equal(draft_get(&d, "To"), "");
    assert_non_null(strstr(d.body, "----- Forwarded message -----\n"));
    assert_non_null(strstr(d.body, "From: Alice Example <alice@example.org>\n"));
    assert_non_null(strstr(d.body, "First line\n\nSecond paragraph\n"));
    assert_null(d.in_reply_to);
    draft_free(&d);
    message_free(m);
    config_free(cfg);
}

static void template_round_trip(void **state)
{
    struct config *cfg = make_config();
    struct message *m = parse(orig_text);
    struct draft d;
    struct buf t = BUF_INIT;
    struct err e;
    (void)state;

    draft_init(&d);
    assert_int_equal(draft_reply(cfg, m, DRAFT_GROUP_REPLY, &d, &e), 0);
    assert_int_equal(draft_write_template(&d, &t), 0);
    assert_true(strncmp(buf_cstr(&t), "From: Me Myself <me@example.org>\nTo: ", 37) == 0);

    /* what an editor might do: change the subject, fold Cc, add a header */
    const char *edited =
        "From: Me Myself <me@example.org>\r\n"
        "To: Alice Example <alice@example.org>\n"
        "Cc: Bob <bob@example.org>,\n"
        "\tCarol <carol@example.org>\n"
        "Bcc: secret@example.org\n"
        "Subject:   New subject  \n"
        "X-Custom: yes\n"
        "\n"
        "Body line\n\n> kept quote\n";
    assert_int_equal(draft_read_template(&d, edited, strlen(edited), &e), 0);
    assert_string_equal(draft_get(&d, "Cc"), "Bob <bob@example.org>, Carol <carol@example.org>");
    assert_string_equal(draft_get(&d, "Subject"), "New subject");
    assert_string_equal(draft_get(&d, "X-Custom"), "yes");
    assert_string_equal(draft_get(&d, "Bcc"), "secret@example.org");
    assert_null(draft_get(&d, "Reply-To"));      /* the user removed it */
    assert_string_equal(d.body, "Body line\n\n> kept quote\n");
    assert_string_equal(d.in_reply_to, "orig@example.org");   /* threading kept */
    assert_int_equal(d.n_references, 3);

    /* broken templates are refused with a line number and change nothing */
    static const char *const bad[] = {
        "To: a@example.org\nthis is not a header\n\nbody\n",
        " continuation first\n\nbody\n",
        "Bad Name: x\n\nbody\n",
        "To: x\0y\n\n",
    };
    for (size_t i = 0; i < 4; i++) {
        size_t len = i == 3 ? 10 : strlen(bad[i]);
        assert_int_equal(draft_read_template(&d, bad[i], len, &e), -1);
        assert_string_equal(draft_get(&d, "Subject"), "New subject");
    }
    assert_int_equal(draft_read_template(&d, bad[0], strlen(bad[0]), &e), -1);
    assert_non_null(strstr(e.text, "line 2"));

    /* no headers at all: everything is body */
    assert_int_equal(draft_read_template(&d, "\njust text\n", 11, &e), 0);
    assert_int_equal(d.n_h, 0);
    assert_string_equal(d.body, "just text\n");

    buf_free(&t);
    draft_free(&d);
    message_free(m);
    config_free(cfg);
}

static void signature_placement(void **state)
{
    struct config *cfg = make_config();
    struct message *m = parse("From: a@example.org\nSubject: s\n\nline\n");
    struct draft d;
    struct err e;
    struct rc_diag rd;
    char path[] = "/tmp/correo-sig-XXXXXX";
    int fd = mkstemp(path);
    (void)state;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "Sig line\n", 9), 9);
    close(fd);
    rc_diag_init(&rd);
    char *cmd = xasprintf("set signature=%s attribution='%%n wrote:'\n", path);
    config_exec(cfg, "t", cmd, &rd);
    free(cmd);
    draft_init(&d);
    assert_int_equal(draft_reply(cfg, m, DRAFT_REPLY, &d, &e), 0);
    assert_string_equal(d.body, "a@example.org wrote:\n> line\n\n-- \nSig line\n");
    config_exec(cfg, "t", "set sig_on_top\n", &rd);
    assert_int_equal(draft_reply(cfg, m, DRAFT_REPLY, &d, &e), 0);
    assert_string_equal(d.body, "\n-- \nSig line\n\na@example.org wrote:\n> line\n");
    assert_int_equal(rd.n, 0);
    rc_diag_free(&rd);
    unlink(path);
    draft_free(&d);
    message_free(m);
    config_free(cfg);
}

static void address_quoting(void **state)
{
    static const struct {
        const char *name, *addr, *want;
    } cases[] = {
        {NULL, "a@x", "a@x"},
        {"", "a@x", "a@x"},
        {"Plain Name", "a@x", "Plain Name <a@x>"},
        {"Doe, John", "j@x", "\"Doe, John\" <j@x>"},
        {"Say \"hi\"", "h@x", "\"Say \\\"hi\\\"\" <h@x>"},
        {"Zoë Ü", "z@x", "Zoë Ü <z@x>"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = draft_format_addr(cases[i].name, cases[i].addr);
        assert_string_equal(s, cases[i].want);
        free(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reply_kinds),
        cmocka_unit_test(forward_inline),
        cmocka_unit_test(template_round_trip),
        cmocka_unit_test(signature_placement),
        cmocka_unit_test(address_quoting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
