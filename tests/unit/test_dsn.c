/* Tests for localserver/dsn: reports parsed back with lib/message --
 * multipart/report with its three parts, the delivery-status fields per
 * recipient from the recorded replies, RET=HDRS, hostile values kept out of
 * the header structure. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsn.h"
#include "message.h"
#include "testutil.h"

static const char orig_msg[] =
    "Received: from client by mx\r\n"
    "From: Alice <alice@example.test>\r\n"
    "To: bob@remote.test\r\n"
    "Subject: lunch plans\r\n"
    "Message-ID: <orig.1@example.test>\r\n"
    "\r\n"
    "Shall we meet at noon?\r\n"
    "--=_correod_report_1700000000_1_0\r\n";

static struct queue_entry *entry_new(int ret)
{
    struct queue_entry *q = XNEW(struct queue_entry);

    snprintf(q->id, sizeof(q->id), "ABC123");
    q->mail_from = xstrdup("alice@example.test");
    q->envid = xstrdup("env-42");
    q->ret = ret;
    q->created = 1700000000;
    q->n_rcpts = 3;
    q->rcpts = xcalloc(3, sizeof(*q->rcpts));
    q->rcpts[0].addr = xstrdup("bob@remote.test");
    q->rcpts[0].orcpt = xstrdup("rfc822;bobby@remote.test");
    q->rcpts[0].state = QRCPT_FAILED;
    q->rcpts[0].last_reply = xstrdup("[mx.remote.test] 550 5.1.1 <bob@remote.test>: no such user");
    q->rcpts[1].addr = xstrdup("carol@remote.test");
    q->rcpts[1].state = QRCPT_DELIVERED;
    q->rcpts[1].last_reply = xstrdup("[mx.remote.test] 250 2.0.0 ok");
    q->rcpts[2].addr = xstrdup("dave@other.test");
    q->rcpts[2].state = QRCPT_FAILED;
    q->rcpts[2].last_reply = xstrdup("connect to other.test: connection refused");
    return q;
}

/* The body of part p as text. */
static char *part_body(const struct message *m, const struct msg_part *p)
{
    struct buf b = BUF_INIT;
    bool broken = false;
    struct err e;

    assert_int_equal(message_part_decode(m, p, &b, &broken, &e), 0);
    assert_false(broken);
    return buf_steal(&b, NULL);
}

static struct message *parse(const struct buf *out)
{
    struct msg_limits lim;
    struct message *m;
    struct err e;

    message_limits_default(&lim);
    assert_int_equal(message_parse(out->data, out->len, &lim, &m, &e), 0);
    return m;
}

/* Field value of the per-recipient block number k (0-based) in a
 * delivery-status body; NULL if absent. */
static char *ds_field(const char *body, int block, const char *name)
{
    const char *p = body;
    int cur = -1;      /* -1: the per-message block */
    size_t nlen = strlen(name);

    while (*p) {
        const char *nl = strstr(p, "\r\n");
        size_t n = nl ? (size_t)(nl - p) : strlen(p);

        if (n == 0) {
            cur++;
        } else if (cur == block && n > nlen + 1 && strncmp(p, name, nlen) == 0 &&
                   p[nlen] == ':') {
            const char *v = p + nlen + 1;

            while (*v == ' ')
                v++;
            return xstrndup(v, n - (size_t)(v - p));
        }
        p += n + (nl ? 2 : 0);
    }
    return NULL;
}

static void assert_field(const char *body, int block, const char *name, const char *want)
{
    char *v = ds_field(body, block, name);

    if (want == NULL) {
        assert_null(v);
        return;
    }
    assert_non_null(v);
    assert_string_equal(v, want);
    free(v);
}

static void check_crlf_only(const struct buf *b)
{
    for (size_t i = 0; i < b->len; i++) {
        if (b->data[i] == '\n')
            assert_true(i > 0 && b->data[i - 1] == '\r');
        if (b->data[i] == '\r')
            assert_true(i + 1 < b->len && b->data[i + 1] == '\n');
    }
}

static void test_failed_full(void **state)
{
    struct queue_entry *q = entry_new(SMTP_RET_FULL);
    size_t which[] = { 0, 2 };
    struct buf out = BUF_INIT;
    struct message *m;
    const struct msg_part *root, *human, *ds, *orig;
    char *body;
    struct err e;

    (void)state;
    assert_int_equal(dsn_build(&out, "mx.example.test", q, which, 2, DSN_FAILED, orig_msg,
                               strlen(orig_msg), 1700003600, &e), 0);
    check_crlf_only(&out);
    assert_non_null(strstr(out.data, "\r\nAuto-Submitted: auto-replied\r\n"));
    assert_non_null(strstr(out.data, "\r\nIn-Reply-To: <orig.1@example.test>\r\n"));
    m = parse(&out);
    assert_int_equal(m->env.from.n, 1);
    assert_string_equal(m->env.from.v[0].addr, "MAILER-DAEMON@mx.example.test");
    assert_int_equal(m->env.to.n, 1);
    assert_string_equal(m->env.to.v[0].addr, "alice@example.test");
    assert_string_equal(m->env.subject, "Undelivered Mail Returned to Sender");
    assert_true(m->env.date_valid);
    assert_int_equal(m->env.date, 1700003600);

    root = m->root;
    assert_string_equal(root->type, "multipart");
    assert_string_equal(root->subtype, "report");
    assert_string_equal(rfc2231_get(&root->params, "report-type"), "delivery-status");
    assert_int_equal(root->n_children, 3);
    human = root->children[0];
    ds = root->children[1];
    orig = root->children[2];
    assert_string_equal(human->type, "text");
    assert_string_equal(human->subtype, "plain");
    assert_string_equal(ds->type, "message");
    assert_string_equal(ds->subtype, "delivery-status");
    assert_string_equal(orig->type, "message");
    assert_string_equal(orig->subtype, "rfc822");

    body = part_body(m, human);
    assert_non_null(strstr(body, "<bob@remote.test>: host mx.remote.test said: 550 5.1.1 "
                                 "<bob@remote.test>: no such user"));
    assert_non_null(strstr(body, "<dave@other.test>: connect to other.test"));
    assert_null(strstr(body, "carol"));
    free(body);

    body = part_body(m, ds);
    assert_field(body, -1, "Reporting-MTA", "dns; mx.example.test");
    assert_field(body, -1, "Original-Envelope-Id", "env-42");
    assert_field(body, -1, "Arrival-Date", "Tue, 14 Nov 2023 22:13:20 +0000");
    assert_field(body, 0, "Final-Recipient", "rfc822; bob@remote.test");
    assert_field(body, 0, "Original-Recipient", "rfc822;bobby@remote.test");
    assert_field(body, 0, "Action", "failed");
    assert_field(body, 0, "Status", "5.1.1");
    assert_field(body, 0, "Remote-MTA", "dns; mx.remote.test");
    assert_field(body, 0, "Diagnostic-Code",
                 "smtp; 550 5.1.1 <bob@remote.test>: no such user");
    assert_field(body, 1, "Final-Recipient", "rfc822; dave@other.test");
    assert_field(body, 1, "Action", "failed");
    assert_field(body, 1, "Status", "5.0.0");
    assert_field(body, 1, "Remote-MTA", NULL);
    assert_field(body, 1, "Diagnostic-Code",
                 "x-local; connect to other.test: connection refused");
    assert_field(body, 2, "Final-Recipient", NULL);
    free(body);

    /* the original, whole and byte for byte */
    assert_non_null(orig->envelope);
    assert_string_equal(orig->envelope->subject, "lunch plans");
    assert_true(orig->body_size >= strlen(orig_msg));
    assert_memory_equal(m->raw + orig->body_offset, orig_msg, strlen(orig_msg));

    message_free(m);
    buf_free(&out);
    queue_entry_free(q);
}

static void test_headers_only(void **state)
{
    struct queue_entry *q = entry_new(SMTP_RET_HDRS);
    size_t which[] = { 0 };
    struct buf out = BUF_INIT;
    struct message *m;
    const struct msg_part *part;
    char *body;
    struct err e;

    (void)state;
    assert_int_equal(dsn_build(&out, "mx.example.test", q, which, 1, DSN_FAILED, orig_msg,
                               strlen(orig_msg), 1700003600, &e), 0);
    m = parse(&out);
    assert_int_equal(m->root->n_children, 3);
    part = m->root->children[2];
    assert_string_equal(part->type, "text");
    assert_string_equal(part->subtype, "rfc822-headers");
    body = part_body(m, part);
    assert_non_null(strstr(body, "Subject: lunch plans\r\n"));
    assert_null(strstr(body, "noon"));
    free(body);
    assert_null(strstr(out.data, "noon"));
    message_free(m);
    buf_free(&out);
    queue_entry_free(q);
}

/* Table: a reply and kind -> Status, Remote-MTA, Diagnostic-Code, Action. */
static void test_reply_table(void **state)
{
    static const struct {
        const char *reply;
        enum dsn_kind kind;
        const char *status, *mta, *diag, *action;
    } cases[] = {
        { "[a.test] 550 5.7.1 relay denied", DSN_FAILED, "5.7.1", "dns; a.test",
          "smtp; 550 5.7.1 relay denied", "failed" },
        { "[a.test] 550 no enhanced code", DSN_FAILED, "5.0.0", "dns; a.test",
          "smtp; 550 no enhanced code", "failed" },
        { "[a.test] 451 4.3.0 try later", DSN_FAILED, "5.3.0", "dns; a.test",
          "smtp; 451 4.3.0 try later", "failed" },
        { "[a.test] 451 4.3.0 try later", DSN_DELAYED, "4.3.0", "dns; a.test",
          "smtp; 451 4.3.0 try later", "delayed" },
        { "[a.test] 250 2.0.0 ok", DSN_DELIVERED, "2.0.0", "dns; a.test",
          "smtp; 250 2.0.0 ok", "delivered" },
        { "[a.test] 550-5.1.1 first\r\n550 5.1.1 second", DSN_FAILED, "5.1.1",
          "dns; a.test", "smtp; 550-5.1.1 first 550 5.1.1 second", "failed" },
        { "[a.test] 550 5.1.1 evil\r\nStatus: 2.0.0\r\n\r\nX: y", DSN_FAILED, "5.1.1",
          "dns; a.test", "smtp; 550 5.1.1 evil Status: 2.0.0 X: y", "failed" },
        { "[a.test] 550 5.1.1 \x1b[31mred\xff", DSN_FAILED, "5.1.1", "dns; a.test",
          "smtp; 550 5.1.1 \\x1b[31mred\\xff", "failed" },
        { NULL, DSN_FAILED, "5.0.0", NULL, NULL, "failed" },
        { "mailbox full", DSN_DELAYED, "4.0.0", NULL, "x-local; mailbox full", "delayed" },
        { "[a.test] 250 2.0.0 Ok: queued as 7", DSN_RELAYED, "2.0.0", "dns; a.test",
          "smtp; 250 2.0.0 Ok: queued as 7", "relayed" },
        { "[a.test] 250 ok", DSN_RELAYED, "2.0.0", "dns; a.test", "smtp; 250 ok", "relayed" },
        { "delivered to the mailbox", DSN_DELIVERED, "2.0.0", NULL,
          "x-local; delivered to the mailbox", "delivered" },
        /* a local verdict with its own enhanced code */
        { "5.6.3 conversion to 7-bit required but not possible", DSN_FAILED, "5.6.3", NULL,
          "x-local; 5.6.3 conversion to 7-bit required but not possible", "failed" },
        { "5.6.3x not a code", DSN_FAILED, "5.0.0", NULL, "x-local; 5.6.3x not a code",
          "failed" },
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct queue_entry *q = entry_new(SMTP_RET_DEFAULT);
        size_t which[] = { 0 };
        struct buf out = BUF_INIT;
        struct message *m;
        char *body;
        struct err e;

        free(q->rcpts[0].last_reply);
        q->rcpts[0].last_reply = cases[i].reply ? xstrdup(cases[i].reply) : NULL;
        assert_int_equal(dsn_build(&out, "mx.example.test", q, which, 1, cases[i].kind,
                                   orig_msg, strlen(orig_msg), 1700003600, &e), 0);
        check_crlf_only(&out);
        m = parse(&out);
        assert_int_equal(m->root->n_children, 3);
        body = part_body(m, m->root->children[1]);
        assert_field(body, 0, "Status", cases[i].status);
        assert_field(body, 0, "Remote-MTA", cases[i].mta);
        assert_field(body, 0, "Diagnostic-Code", cases[i].diag);
        assert_field(body, 0, "Action", cases[i].action);
        /* injected lines never become fields */
        assert_field(body, 1, "Status", NULL);
        free(body);
        message_free(m);
        buf_free(&out);
        queue_entry_free(q);
    }
}

/* Success reports (RFC 3461/3464): Action delivered or relayed, a 2.x.x
 * status, a subject and text that say so, and only the original's header
 * even when RET=FULL was asked (that is for failures). */
static void test_success_reports(void **state)
{
    static const struct {
        enum dsn_kind kind;
        int ret;
        const char *reply;
        const char *action, *status, *mta, *text;
    } cases[] = {
        { DSN_DELIVERED, SMTP_RET_FULL, "delivered to the mailbox", "delivered", "2.0.0", NULL,
          "was delivered to the recipients" },
        { DSN_DELIVERED, SMTP_RET_DEFAULT, "delivered to the mailbox", "delivered", "2.0.0",
          NULL, "was delivered to the recipients" },
        { DSN_RELAYED, SMTP_RET_FULL, "[mx.remote.test] 250 2.6.0 queued as 9", "relayed",
          "2.6.0", "dns; mx.remote.test", "do not send delivery reports" },
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct queue_entry *q = entry_new(cases[i].ret);
        size_t which[] = { 1 };
        struct buf out = BUF_INIT;
        const struct msg_part *part;
        struct message *m;
        char *body;
        struct err e;

        free(q->rcpts[1].last_reply);
        q->rcpts[1].last_reply = xstrdup(cases[i].reply);
        q->rcpts[1].orcpt = xstrdup("rfc822;carol@remote.test");
        assert_int_equal(dsn_build(&out, "mx.example.test", q, which, 1, cases[i].kind,
                                   orig_msg, strlen(orig_msg), 1700003600, &e), 0);
        check_crlf_only(&out);
        m = parse(&out);
        assert_string_equal(m->env.subject, "Successful Mail Delivery Report");
        assert_string_equal(m->env.to.v[0].addr, "alice@example.test");
        assert_string_equal(m->root->subtype, "report");
        assert_int_equal(m->root->n_children, 3);

        body = part_body(m, m->root->children[0]);
        assert_non_null(strstr(body, cases[i].text));
        assert_non_null(strstr(body, "<carol@remote.test>"));
        assert_null(strstr(body, "bob@"));
        free(body);

        body = part_body(m, m->root->children[1]);
        assert_field(body, -1, "Reporting-MTA", "dns; mx.example.test");
        assert_field(body, -1, "Original-Envelope-Id", "env-42");
        assert_field(body, 0, "Original-Recipient", "rfc822;carol@remote.test");
        assert_field(body, 0, "Final-Recipient", "rfc822; carol@remote.test");
        assert_field(body, 0, "Action", cases[i].action);
        assert_field(body, 0, "Status", cases[i].status);
        assert_field(body, 0, "Remote-MTA", cases[i].mta);
        assert_field(body, 1, "Action", NULL);
        free(body);

        part = m->root->children[2];
        assert_string_equal(part->type, "text");
        assert_string_equal(part->subtype, "rfc822-headers");
        body = part_body(m, part);
        assert_non_null(strstr(body, "Subject: lunch plans\r\n"));
        free(body);
        assert_null(strstr(out.data, "noon"));
        assert_null(strstr(out.data, "Undelivered"));
        message_free(m);
        buf_free(&out);
        queue_entry_free(q);
    }
}

static void test_utf8_and_refusals(void **state)
{
    struct queue_entry *q = entry_new(SMTP_RET_DEFAULT);
    size_t which[] = { 0 };
    size_t bad_which[] = { 7 };
    struct buf out = BUF_INIT;
    char *body;
    struct message *m;
    struct err e;

    (void)state;
    free(q->rcpts[0].addr);
    q->rcpts[0].addr = xstrdup("b\xc3\xb6" "b@remote.test");
    assert_int_equal(dsn_build(&out, "mx.example.test", q, which, 1, DSN_FAILED, orig_msg,
                               strlen(orig_msg), 1700003600, &e), 0);
    m = parse(&out);
    body = part_body(m, m->root->children[1]);
    assert_field(body, 0, "Final-Recipient", "utf-8; b\\x{C3}\\x{B6}b@remote.test");
    free(body);
    message_free(m);
    buf_free(&out);

    assert_int_equal(dsn_build(&out, "h", q, bad_which, 1, DSN_FAILED, orig_msg,
                               strlen(orig_msg), 0, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(dsn_build(&out, "h", q, which, 0, DSN_FAILED, orig_msg,
                               strlen(orig_msg), 0, &e), -1);
    free(q->mail_from);
    q->mail_from = xstrdup("");
    assert_int_equal(dsn_build(&out, "h", q, which, 1, DSN_FAILED, orig_msg,
                               strlen(orig_msg), 0, &e), -1);
    free(q->mail_from);
    q->mail_from = xstrdup("a@b>\r\nBcc: x@y");
    assert_int_equal(dsn_build(&out, "h", q, which, 1, DSN_FAILED, orig_msg,
                               strlen(orig_msg), 0, &e), -1);
    assert_int_equal(out.len, 0);
    buf_free(&out);
    queue_entry_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_full),
        cmocka_unit_test(test_headers_only),
        cmocka_unit_test(test_reply_table),
        cmocka_unit_test(test_success_reports),
        cmocka_unit_test(test_utf8_and_refusals),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
