/*
 * Unit tests for localserver/imap_search: SEARCH, SORT and THREAD over a
 * mailbox given by callbacks.
 *
 * A five-message mailbox (flags, keywords, internal dates in several
 * zones, Date headers in their own zones or missing, RFC 2047 headers,
 * quoted-printable Latin-1 and base64 bodies, an attached message) and a
 * table of SEARCH commands, parsed with imap_parse, with the exact
 * sequence numbers each must find; the same for SORT criteria.  Then: the
 * store callbacks are counted to show that flag keys read nothing and
 * header keys read no bodies (10,000 messages); charsets; RFC 5256 base
 * subjects; THREAD REFERENCES and ORDEREDSUBJECT over a crafted reference
 * graph with missing parents, loops, self references, duplicate ids and
 * subject merging; sequence-set compression, ESEARCH text and SAVE.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "imap_parse.h"
#include "imap_search.h"
#include "testutil.h"

struct tmsg {
    uint32_t uid;
    unsigned flags;
    const char *keywords;      /* space separated */
    int64_t idate;
    int zone;
    uint64_t modseq;
    const char *raw;
};

struct tbox {
    const struct tmsg *m;
    uint32_t n;
    size_t header_reads, message_reads;
    bool forbid_reads;
};

static int64_t ts(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm;

    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm);
}

static uint32_t cb_count(void *ctx)
{
    return ((struct tbox *)ctx)->n;
}

static uint32_t cb_uid(void *ctx, uint32_t seq)
{
    return ((struct tbox *)ctx)->m[seq - 1].uid;
}

static unsigned cb_flags(void *ctx, uint32_t seq)
{
    return ((struct tbox *)ctx)->m[seq - 1].flags;
}

static bool cb_kw(void *ctx, uint32_t seq, const char *kw)
{
    const char *k = ((struct tbox *)ctx)->m[seq - 1].keywords;
    size_t n = strlen(kw);

    while (k && *k) {
        size_t l = strcspn(k, " ");
        if (l == n && strncasecmp(k, kw, n) == 0)
            return true;
        k += l;
        while (*k == ' ')
            k++;
    }
    return false;
}

static int64_t cb_idate(void *ctx, uint32_t seq, int *zone)
{
    const struct tmsg *m = &((struct tbox *)ctx)->m[seq - 1];

    *zone = m->zone;
    return m->idate;
}

static uint64_t cb_size(void *ctx, uint32_t seq)
{
    const char *r = ((struct tbox *)ctx)->m[seq - 1].raw;
    uint64_t n = 0;

    if (!r)
        return 100 + seq % 50;
    for (; *r; r++)
        n += *r == '\n' ? 2 : 1;
    return n;
}

static uint64_t cb_modseq(void *ctx, uint32_t seq)
{
    return ((struct tbox *)ctx)->m[seq - 1].modseq;
}

static int cb_message(void *ctx, uint32_t seq, struct buf *out, struct err *e)
{
    struct tbox *b = ctx;

    (void)e;
    if (b->forbid_reads)
        fail_msg("message %u read", seq);
    b->message_reads++;
    assert_int_equal(buf_puts(out, b->m[seq - 1].raw ? b->m[seq - 1].raw : ""), 0);
    return 0;
}

static int cb_header(void *ctx, uint32_t seq, struct buf *out, struct err *e)
{
    struct tbox *b = ctx;
    const char *r = b->m[seq - 1].raw ? b->m[seq - 1].raw : "";
    const char *end = strstr(r, "\n\n");

    (void)e;
    if (b->forbid_reads)
        fail_msg("header %u read", seq);
    b->header_reads++;
    assert_int_equal(buf_append(out, r, end ? (size_t)(end - r) + 2 : strlen(r)), 0);
    return 0;
}

static struct imap_search_store make_store(struct tbox *b)
{
    struct imap_search_store st = {
        b, cb_count, cb_uid, cb_flags, cb_kw, cb_idate, cb_size, cb_modseq, cb_header,
        cb_message,
    };
    return st;
}

/* ------------------------------------------------------------------ */

static const char big_body[] =
    "From: Aaron <zed@example.org>\nTo: x@example.net\n"
    "Subject: Fwd: [list] Report (fwd)\nDate: Wed, 3 Jan 2024 23:59:59 -0500\n\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\n";

static struct tmsg box5[5];

static void init_box5(void)
{
    static const char m1[] =
        "From: Alice <alice@example.org>\nTo: bob@example.net\nSubject: Hello world\n"
        "Date: Mon, 1 Jan 2024 23:10:00 +0000\nMessage-ID: <m1@x>\n\n"
        "The quick brown fox\n";
    static const char m2[] =
        "From: =?utf-8?q?J=C3=BCrgen?= <j@x.example>\nTo: carol@example.com\n"
        "Subject: Re: Hello world\nDate: Tue, 2 Jan 2024 01:00:00 +0200\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\n"
        "Content-Transfer-Encoding: quoted-printable\n\n"
        "Gr=FC=DFe aus K=F6ln, soft=\nbreak\n";
    static const char m3[] =
        "Subject: =?iso-8859-1?q?=C4pfel?=\nCc: carol@example.com\nX-Custom: yes\n"
        "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b\n\n"
        "--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
        "c2VjcmV0IHdvcmQgQkFOQU5B\n--b\nContent-Type: text/html\n\n<p>cherry</p>\n--b--\n";
    static const char m5[] =
        "From: bob@example.com\nBcc: dave@example.com\nSubject: attached\n"
        "Date: Thu, 1 Feb 2024 12:00:00 GMT\n"
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=o\n\n"
        "--o\nContent-Type: text/plain\n\nsee below\n--o\nContent-Type: message/rfc822\n\n"
        "From: inner@example.com\nSubject: inner secret\n\nnested body text\n--o--\n";
    struct tmsg v[5] = {
        {10, IMAP_MSG_SEEN, NULL, 0, 0, 1, m1},
        {11, IMAP_MSG_FLAGGED | IMAP_MSG_ANSWERED, "$Work other", 0, 60, 2, m2},
        {12, IMAP_MSG_DELETED | IMAP_MSG_DRAFT | IMAP_MSG_RECENT, NULL, 0, 0, 3, m3},
        {15, IMAP_MSG_RECENT | IMAP_MSG_SEEN, NULL, 0, -60, 4, big_body},
        {20, 0, NULL, 0, 0, 50, m5},
    };
    v[0].idate = ts(2024, 1, 1, 22, 0, 0);
    v[1].idate = ts(2024, 1, 1, 23, 30, 0);    /* Jan 2 in +0100 */
    v[2].idate = ts(2024, 1, 3, 12, 0, 0);
    v[3].idate = ts(2024, 1, 4, 0, 30, 0);     /* Jan 3 in -0100 */
    v[4].idate = ts(2024, 2, 1, 12, 0, 0);
    memcpy(box5, v, sizeof v);
}

/* Run the command text; the result as "1 2 3", or "NO" on error. */
static char *run(struct tbox *b, const char *cmdtext, size_t cmdlen, struct err *eo)
{
    struct imap_search_store st = make_store(b);
    struct imap_command *cmd = NULL;
    struct imap_search_result res;
    static const uint32_t saved[] = {11, 20};
    struct imap_search_opts o = {NULL, saved, 2, 0};
    struct buf out = BUF_INIT;
    struct err e;

    o.now = b->n ? b->m[b->n - 1].idate + 100 : 0;
    if (imap_parse(cmdtext, cmdlen, NULL, &cmd, &e) < 0)
        fail_msg("%s: %s", cmdtext, e.text);
    o.charset = cmd->search.charset.s;
    if (imap_search(&st, cmd->search.keys, &o, &res, &e) < 0) {
        if (eo)
            *eo = e;
        imap_command_free(cmd);
        return xstrdup("NO");
    }
    if (cmd->cmd == IMAP_CMD_SORT)
        assert_int_equal(imap_sort(&st, cmd->search.sort, cmd->search.n_sort, &res, &e), 0);
    if (cmd->cmd == IMAP_CMD_THREAD) {
        enum imap_thread_alg alg;
        assert_int_equal(imap_thread_alg_parse(cmd->search.algorithm.s, &alg), 0);
        assert_int_equal(imap_thread(&st, alg, &res, cmd->uid, &out, &e), 0);
    } else {
        for (size_t i = 0; i < res.n; i++)
            assert_int_equal(buf_printf(&out, "%s%u", i ? " " : "",
                                        cmd->uid ? cb_uid(b, res.seq[i]) : res.seq[i]), 0);
    }
    imap_search_result_free(&res);
    imap_command_free(cmd);
    return buf_steal(&out, NULL);
}

struct scase {
    const char *cmd;
    const char *want;
};

static const struct scase search_cases[] = {
    {"ALL", "1 2 3 4 5"},
    {"SEEN", "1 4"},
    {"UNSEEN", "2 3 5"},
    {"ANSWERED", "2"},
    {"UNANSWERED", "1 3 4 5"},
    {"FLAGGED", "2"},
    {"UNFLAGGED", "1 3 4 5"},
    {"DELETED", "3"},
    {"UNDELETED", "1 2 4 5"},
    {"DRAFT", "3"},
    {"UNDRAFT", "1 2 4 5"},
    {"RECENT", "3 4"},
    {"NEW", "3"},
    {"OLD", "1 2 5"},
    {"KEYWORD $work", "2"},
    {"KEYWORD other", "2"},
    {"KEYWORD nothere", ""},
    {"UNKEYWORD $Work", "1 3 4 5"},
    {"LARGER 1000", "4"},
    {"SMALLER 1000", "1 2 3 5"},
    {"MODSEQ 4", "4 5"},
    {"MODSEQ 40", "5"},
    {"UID 11:15", "2 3 4"},
    {"UID 16:*", "5"},
    {"UID *", "5"},
    {"UID *:100", "5"},
    {"UID 1:9", ""},
    {"UID 13", ""},
    {"UID $", "2 5"},
    {"$", "2 5"},
    {"2:*", "2 3 4 5"},
    {"*", "5"},
    {"1,3", "1 3"},
    {"4:2", "2 3 4"},
    {"FROM alice", "1"},
    {"FROM ALICE@EXAMPLE", "1"},
    {"FROM \"j\xc3\xbcrgen\"", "2"},
    {"FROM \"J\xc3\x9cRGEN\"", "2"},
    {"SUBJECT hello", "1 2"},
    {"SUBJECT \"\xc3\xa4pfel\"", "3"},
    {"SUBJECT \"\xc3\x84PFEL\"", "3"},
    {"TO bob", "1"},
    {"CC carol", "3"},
    {"BCC dave", "5"},
    {"HEADER X-Custom \"\"", "3"},
    {"HEADER x-custom YES", "3"},
    {"HEADER x-custom no", ""},
    {"HEADER Message-ID m1@", "1"},
    {"BODY \"gr\xc3\xbc\xc3\x9f" "e\"", "2"},
    {"BODY softbreak", "2"},
    {"BODY banana", "3"},
    {"BODY cherry", "3"},
    {"TEXT banana", "3"},
    {"BODY alice", ""},
    {"TEXT alice", "1"},
    {"TEXT \"x-custom: yes\"", "3"},
    {"BODY \"inner secret\"", "5"},
    {"BODY \"nested body\"", "5"},
    {"BODY QUICK", "1"},
    {"BODY \"\"", "1 2 3 4 5"},
    {"NOT SEEN", "2 3 5"},
    {"OR SEEN FLAGGED", "1 2 4"},
    {"OR (FROM alice) (SUBJECT \"\xc3\xa4pfel\")", "1 3"},
    {"NOT (SEEN OR DELETED FLAGGED)", "1 2 3 4 5"},
    {"NOT (OR SEEN DELETED)", "2 5"},
    {"NOT (SEEN OR DELETED RECENT)", "1 2 3 5"},
    {"SEEN NOT UID 15", "1"},
    {"NOT NOT SEEN", "1 4"},
    {"OR OR SEEN DELETED UID 20", "1 3 4 5"},
    {"(SEEN) (LARGER 10) UNDELETED", "1 4"},
    /* internal date in its own zone */
    {"ON 1-Jan-2024", "1"},
    {"ON 2-Jan-2024", "2"},
    {"ON 3-Jan-2024", "3 4"},
    {"BEFORE 2-Jan-2024", "1"},
    {"BEFORE 3-Jan-2024", "1 2"},
    {"SINCE 2-Jan-2024", "2 3 4 5"},
    {"SINCE 4-Jan-2024", "5"},
    /* the Date header in its own zone; none: internal date */
    {"SENTON 1-Jan-2024", "1"},
    {"SENTON 2-Jan-2024", "2"},
    {"SENTON 3-Jan-2024", "3 4"},
    {"SENTBEFORE 2-Jan-2024", "1"},
    {"SENTSINCE 2-Jan-2024", "2 3 4 5"},
    {"SENTSINCE 1-Feb-2024", "5"},
    {"YOUNGER 1000", "5"},
    {"OLDER 1000", "1 2 3 4"},
    {"OLDER 100", "1 2 3 4"},
    {"YOUNGER 100", "5"},
    {"OLDER 99", "1 2 3 4 5"},
    {"YOUNGER 99", ""},
    {"UID SEARCH FLAGGED", "11"},
    {"UID SEARCH UID 12:20 UNSEEN", "12 20"},
    {"SEARCH CHARSET UTF-8 BODY \"k\xc3\xb6ln\"", "2"},
    {"SEARCH CHARSET US-ASCII SUBJECT world", "1 2"},
    /* SORT: ties by sequence number */
    {"SORT (ARRIVAL) UTF-8 ALL", "1 2 3 4 5"},
    {"SORT (REVERSE ARRIVAL) UTF-8 ALL", "5 4 3 2 1"},
    {"SORT (DATE) UTF-8 ALL", "2 1 3 4 5"},
    /* base subjects compared decomposed: "A" U+0308 "PFEL" after "ATTACHED" */
    {"SORT (SUBJECT) UTF-8 ALL", "5 3 1 2 4"},
    {"SORT (SUBJECT REVERSE ARRIVAL) UTF-8 ALL", "5 3 2 1 4"},
    {"BODY \"thu\"", ""},
    {"BODY \"gru\"", "2"},
    {"SUBJECT \"A\"", "3 5"},
    {"SORT (FROM) UTF-8 ALL", "3 1 5 2 4"},
    {"SORT (DISPLAYFROM) UTF-8 ALL", "3 4 1 5 2"},
    {"SORT (TO) UTF-8 ALL", "3 5 1 2 4"},
    {"SORT (CC) UTF-8 ALL", "1 2 4 5 3"},
    {"SORT (REVERSE SIZE) UTF-8 UNDELETED", "4 5 2 1"},
    {"SORT (REVERSE CC DATE) UTF-8 ALL", "3 2 1 4 5"},
    {"UID SORT (ARRIVAL) UTF-8 SEEN", "10 15"},
};

static void test_search_table(void **state)
{
    struct tbox b = {box5, 5, 0, 0, false};
    int bad = 0;

    (void)state;
    init_box5();
    for (size_t i = 0; i < ARRAY_LEN(search_cases); i++) {
        const char *c = search_cases[i].cmd;
        char *text;
        char *got;

        if (strncmp(c, "SORT", 4) == 0 || strncmp(c, "UID S", 5) == 0 ||
            strncmp(c, "SEARCH", 6) == 0)
            text = xasprintf("t %s", c);
        else
            text = xasprintf("t SEARCH %s", c);
        got = run(&b, text, strlen(text), NULL);
        if (strcmp(got, search_cases[i].want) != 0) {
            print_error("%s: got \"%s\", want \"%s\"\n", text, got, search_cases[i].want);
            bad++;
        }
        free(got);
        free(text);
    }
    assert_int_equal(bad, 0);
}

/* Address sorting sees a group's name as the first mailbox and display
 * name; a subject in raw 8-bit that is not UTF-8 is not guessed at (it
 * cannot equal a properly encoded one); a search for "the" finds
 * "Th\u00e9r\u00e8se" (RFC 5051: the accent is a separate mark). */
static void test_groups_and_8bit(void **state)
{
    static const char g1[] = "To: undisclosed-recipients:;\nSubject: d\xe9j\xe0 vu\n\nx\n";
    static const char g2[] = "To: \"Zed, Z\" <aaa@x.example>\nSubject: =?iso-8859-1?q?d=E9j=E0_vu?=\n\n"
                             "Th\xc3\xa9r\xc3\xa8se\n";
    static const char g3[] = "To: team: m@x.example;\nSubject: Re: =?utf-8?q?d=C3=A9j=C3=A0?= vu\n\nx\n";
    static struct tmsg m[3];
    struct tbox b = {m, 3, 0, 0, false};
    static const struct scase cases[] = {
        {"t SORT (TO) UTF-8 ALL", "2 3 1"},          /* AAA < TEAM < UNDISCLOSED-RECIPIENTS */
        {"t SORT (DISPLAYTO) UTF-8 ALL", "3 1 2"},    /* TEAM < UNDISCLOSED... < ZED, Z */
        {"t THREAD ORDEREDSUBJECT UTF-8 ALL", "(1)(2 3)"},
        {"t SEARCH BODY the", "2"},
        {"t SEARCH BODY \"th\xc3\xa9\"", "2"},
        {"t SEARCH SUBJECT \"D\xc3\x89J\"", "1 2 3"},
    };

    (void)state;
    m[0].uid = 1;
    m[0].raw = g1;
    m[1].uid = 2;
    m[1].raw = g2;
    m[2].uid = 3;
    m[2].raw = g3;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *got = run(&b, cases[i].cmd, strlen(cases[i].cmd), NULL);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].cmd, got, cases[i].want);
        free(got);
    }
}

static void test_charset(void **state)
{
    struct tbox b = {box5, 5, 0, 0, false};
    static const char latin1[] = "t SEARCH CHARSET ISO-8859-1 BODY {4}\r\nK\xf6ln";
    static const char subj[] = "t SEARCH CHARSET ISO-8859-1 SUBJECT {5}\r\n\xc4PFEL";
    static const char bad[] = "t SEARCH CHARSET X-NO-SUCH-CHARSET BODY x";
    static const char nested[] =
        "t SEARCH CHARSET X-NO-SUCH-CHARSET SEEN (OR (NOT FROM a) (SUBJECT b TEXT c))";
    struct err e;
    char *got;

    (void)state;
    init_box5();
    got = run(&b, latin1, sizeof latin1 - 1, NULL);
    assert_string_equal(got, "2");
    free(got);
    got = run(&b, subj, sizeof subj - 1, NULL);
    assert_string_equal(got, "3");
    free(got);
    got = run(&b, bad, sizeof bad - 1, &e);
    assert_string_equal(got, "NO");
    assert_int_equal(e.code, ERR_UNSUPPORTED);
    assert_non_null(strstr(e.text, "BADCHARSET"));
    free(got);
    /* refused deep inside a tree: nothing leaks */
    got = run(&b, nested, sizeof nested - 1, &e);
    assert_string_equal(got, "NO");
    assert_int_equal(e.code, ERR_UNSUPPORTED);
    free(got);
}

/* Flag, size, date and UID keys over 10,000 messages read no file; a
 * header key reads only the headers of the messages that pass the cheap
 * keys, and never a whole message. */
static void test_laziness(void **state)
{
    enum { N = 10000 };
    struct tmsg *m = xcalloc(N, sizeof *m);
    struct tbox b = {m, N, 0, 0, true};
    static const char hdr[] = "From: someone@example.org\nSubject: s\n\nbody\n";
    static const char c1[] = "t SEARCH SEEN NOT DELETED UID 1:5000 LARGER 10 SINCE 1-Jan-2000";
    static const char c2[] = "t SEARCH FROM someone FLAGGED";
    static const char c3[] = "t SEARCH OR FROM nobody BODY body DELETED";
    char *got;
    double t0;

    (void)state;
    for (uint32_t i = 0; i < N; i++) {
        m[i].uid = i * 2 + 1;
        m[i].flags = (i % 2 ? IMAP_MSG_SEEN : 0) | (i % 1000 == 0 ? IMAP_MSG_FLAGGED : 0) |
                     (i % 3 == 0 ? IMAP_MSG_DELETED : 0);
        m[i].idate = ts(2020, 1, 1, 0, 0, 0) + i;
        m[i].raw = hdr;
    }
    t0 = tu_now();
    got = run(&b, c1, sizeof c1 - 1, NULL);
    /* uids 1..4999 odd: i 0..2499; seen (odd i) and not i%3==0 */
    {
        size_t cnt = 0;
        for (char *p = got; *p; p++)
            cnt += *p == ' ';
        assert_int_equal(cnt + 1, 833);
    }
    free(got);
    print_message("flag search over %d messages: %.3f s\n", N, tu_now() - t0);
    assert_int_equal(b.header_reads + b.message_reads, 0);

    b.forbid_reads = false;
    got = run(&b, c2, sizeof c2 - 1, NULL);
    assert_string_equal(got, "1 1001 2001 3001 4001 5001 6001 7001 8001 9001");
    free(got);
    assert_int_equal(b.header_reads, 10);
    assert_int_equal(b.message_reads, 0);

    b.header_reads = b.message_reads = 0;
    got = run(&b, c3, sizeof c3 - 1, NULL);
    /* only for the deleted ones (i % 3 == 0) */
    assert_int_equal(b.message_reads, (N + 2) / 3);
    assert_int_equal(b.header_reads, (N + 2) / 3);
    free(got);
    free(m);
}

/* A store without a header callback: headers are cut from the message. */
static void test_no_header_callback(void **state)
{
    struct tbox b = {box5, 5, 0, 0, false};
    struct imap_search_store st = make_store(&b);
    struct imap_command *cmd = NULL;
    struct imap_search_result res;
    struct err e;
    static const char c[] = "t SEARCH SUBJECT hello NOT TEXT quick";

    (void)state;
    init_box5();
    st.header = NULL;
    assert_int_equal(imap_parse(c, sizeof c - 1, NULL, &cmd, &e), 0);
    assert_int_equal(imap_search(&st, cmd->search.keys, NULL, &res, &e), 0);
    assert_int_equal(res.n, 1);
    assert_int_equal(res.seq[0], 2);
    assert_int_equal(b.header_reads, 0);
    imap_search_result_free(&res);
    imap_command_free(cmd);
}

static int fail_header(void *ctx, uint32_t seq, struct buf *out, struct err *e)
{
    (void)ctx;
    (void)seq;
    (void)out;
    return err_set(e, ERR_IO, "gone");
}

static void test_store_error(void **state)
{
    struct tbox b = {box5, 5, 0, 0, false};
    struct imap_search_store st = make_store(&b);
    struct imap_command *cmd = NULL;
    struct imap_search_result res;
    struct err e;
    static const char c[] = "t SEARCH FROM x";

    (void)state;
    init_box5();
    st.header = fail_header;
    assert_int_equal(imap_parse(c, sizeof c - 1, NULL, &cmd, &e), 0);
    assert_int_equal(imap_search(&st, cmd->search.keys, NULL, &res, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_null(res.seq);
    assert_int_equal(res.n, 0);
    imap_command_free(cmd);
}

/* ------------------------------------------------------------------ */

static void test_base_subject(void **state)
{
    static const struct { const char *in, *want; bool reply; } cases[] = {
        {"Hello", "Hello", false},
        {"Re: Hello", "Hello", true},
        {"RE: re: Fwd: hello (fwd)", "hello", true},
        {"[list] Re: hello", "hello", true},
        {"[list] hello", "hello", false},
        {"[list]", "[list]", false},
        {"[a][b] Re: Fw: x", "x", true},
        {"[Fwd: Re: hello]", "hello", true},
        {"Re: [Fwd: hello]", "hello", true},
        {"[fwd: [list] x (fwd)]", "x", true},
        {"   hello \t  world  ", "hello world", false},
        {"=?utf-8?q?Re=3A_caf=C3=A9?=", "caf\xc3\xa9", true},
        {"Fwd : x", "x", true},
        {"Re[2]: hello", "hello", true},
        {"Re [2] : hello", "hello", true},
        {"Reply: x", "Reply: x", false},
        {"Re:Re:Re: x", "x", true},
        {"(fwd)", "", true},
        {"x (fwd) (fwd)", "x", true},
        {"", "", false},
        {"Re:", "", true},
        {"[x] [y]", "[y]", false},
        {"fw: [fwd: y]", "y", true},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        bool reply = !cases[i].reply;
        char *got = imap_base_subject(cases[i].in, strlen(cases[i].in), &reply);
        if (strcmp(got, cases[i].want) != 0 || reply != cases[i].reply)
            fail_msg("\"%s\": got \"%s\" (%d), want \"%s\" (%d)", cases[i].in, got, reply,
                     cases[i].want, cases[i].reply);
        free(got);
    }
}

/* Upper case with precomposed Latin letters decomposed (RFC 5051
 * i;unicode-casemap): "é" and "É" both become "E" U+0301. */
static void test_casefold(void **state)
{
    static const struct { const char *in, *want; } cases[] = {
        {"abc XyZ [_]", "ABC XYZ [_]"},
        {"\xc3\xa4\xc3\xb6\xc3\xbc \xc3\x84", "A\xcc\x88O\xcc\x88U\xcc\x88 A\xcc\x88"},
        {"Th\xc3\xa9r\xc3\xa8se", "THE\xcc\x81RE\xcc\x80SE"},
        {"\xc3\x9f \xc3\xa6 \xc3\xb8 \xc3\xbf", "\xc3\x9f \xc3\x86 \xc3\x98 Y\xcc\x88"},
        {"\xc5\x82 \xc5\x81 \xc5\xa1 \xc4\x8d \xc5\xbe \xc4\xb1 \xc4\xb0",
         "\xc5\x81 \xc5\x81 S\xcc\x8c C\xcc\x8c Z\xcc\x8c I I\xcc\x87"},
        {"\xcf\x83\xce\xb1\xcf\x82 \xd0\xb6\xd1\x91", "\xce\xa3\xce\x91\xce\xa3 \xd0\x96\xd0\x81"},
        {"bad \xff \xc3", "BAD \xff \xc3"},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct buf b = BUF_INIT;
        assert_int_equal(imap_casefold(cases[i].in, strlen(cases[i].in), &b), 0);
        if (strcmp(buf_cstr(&b), cases[i].want) != 0)
            fail_msg("case %zu: got \"%s\"", i, buf_cstr(&b));
        buf_free(&b);
    }
}

/* ------------------------------------------------------------------ */
/* THREAD */

static struct tmsg tbox17[17];
static char traw[17][400];

static void init_thread_box(void)
{
    static const struct { const char *id, *refs, *irt, *subj; } d[17] = {
        {"a", NULL, NULL, "A1"},
        {"b", "<a>", NULL, "A2"},
        {"c", "<a> <b>", NULL, "A3"},
        {"d", NULL, "<a>", "A4"},          /* In-Reply-To only */
        {"e", "<m1>", NULL, "B5"},         /* two children of a missing parent */
        {"f", "<m1>", NULL, "B6"},
        {"g", "<m2>", NULL, "B7"},         /* one child of a missing parent */
        {"x", "<y>", NULL, "C8"},          /* a loop: x -> y -> x */
        {"y", "<x>", NULL, "C9"},
        {"s", "<s>", NULL, "D10"},         /* references itself */
        {"dup", NULL, NULL, "E11"},        /* duplicate Message-ID */
        {"dup", NULL, NULL, "E12"},
        {"m13", NULL, NULL, "Meeting"},
        {"m14", NULL, NULL, "Re: meeting"},
        {"m15", NULL, NULL, "Lunch"},
        {"m16", NULL, NULL, "[team] Lunch"},
        {"m17", NULL, NULL, "Re: Lunch"},
    };

    for (int i = 0; i < 17; i++) {
        char refs[128] = "", irt[128] = "";
        if (d[i].refs)
            snprintf(refs, sizeof refs, "References: %s\n", d[i].refs);
        if (d[i].irt)
            snprintf(irt, sizeof irt, "In-Reply-To: %s\n", d[i].irt);
        snprintf(traw[i], sizeof traw[i],
                 "From: u%d@example.org\nSubject: %s\nMessage-ID: <%s>\n%s%s"
                 "Date: %d Jan 2024 10:00:00 +0000\n\nbody\n",
                 i + 1, d[i].subj, d[i].id, refs, irt, i + 1);
        tbox17[i].uid = (uint32_t)(100 + i);
        tbox17[i].idate = ts(2024, 2, 1, 0, 0, 0);
        tbox17[i].raw = traw[i];
    }
}

static void test_thread(void **state)
{
    struct tbox b = {tbox17, 17, 0, 0, false};
    static const struct scase cases[] = {
        {"t THREAD REFERENCES UTF-8 ALL",
         "(1 (2 3)(4))((5)(6))(7)(9 8)(10)(11)(12)(13 14)((15)(16)(17))"},
        {"t THREAD ORDEREDSUBJECT UTF-8 ALL",
         "(1)(2)(3)(4)(5)(6)(7)(8)(9)(10)(11)(12)(13 14)(15 (16)(17))"},
        {"t UID THREAD REFERENCES UTF-8 1:4", "(100 (101 102)(103))"},
        /* without its parent in the result, a reply is a thread of its own */
        {"t THREAD REFERENCES UTF-8 2:3", "(2 3)"},
        {"t THREAD REFERENCES UTF-8 3:4", "((3)(4))"},
        {"t THREAD REFERENCES UTF-8 NOT ALL", ""},
        {"t THREAD ORDEREDSUBJECT UTF-8 14,13", "(13 14)"},
    };

    (void)state;
    init_thread_box();
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *got = run(&b, cases[i].cmd, strlen(cases[i].cmd), NULL);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].cmd, got, cases[i].want);
        free(got);
    }
}

/* Dates decide the order of threads and of siblings; a dummy sorts by
 * its first child. */
static void test_thread_dates(void **state)
{
    static char raw[4][200];
    static struct tmsg m[4];
    static const char *const spec[4][3] = {
        {"p", "", "9"},       /* root, late */
        {"q", "<p>", "8"},    /* child of p, earlier than r */
        {"r", "<p>", "3"},
        {"z", "<gone>", "1"}, /* under a missing parent, earliest */
    };
    struct tbox b = {m, 4, 0, 0, false};
    static const char c[] = "t THREAD REFERENCES UTF-8 ALL";
    char *got;

    (void)state;
    for (int i = 0; i < 4; i++) {
        snprintf(raw[i], sizeof raw[i],
                 "Subject: t%d\nMessage-ID: <%s>\n%s%s\nDate: %s Jan 2024 10:00:00 +0000\n\nx\n",
                 i, spec[i][0], *spec[i][1] ? "References: " : "X-No: x", spec[i][1],
                 spec[i][2]);
        m[i].uid = (uint32_t)(i + 1);
        m[i].raw = raw[i];
    }
    got = run(&b, c, sizeof c - 1, NULL);
    assert_string_equal(got, "(4)(1 (3)(2))");
    free(got);
}

/* ------------------------------------------------------------------ */

static void test_seqset_and_esearch(void **state)
{
    static const struct { uint32_t v[10]; size_t n; const char *want; } sets[] = {
        {{1, 2, 3, 4, 5, 9}, 6, "1:5,9"},
        {{9, 1, 3, 2, 3, 10, 12}, 7, "1:3,9:10,12"},
        {{7}, 1, "7"},
        {{0}, 0, ""},
        {{4294967295u, 4294967294u}, 2, "4294967294:4294967295"},
    };
    static const uint32_t v[] = {2, 5, 6, 7, 9};
    struct buf b = BUF_INIT;
    uint32_t *s;
    size_t ns;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(sets); i++) {
        uint32_t copy[10];
        memcpy(copy, sets[i].v, sizeof copy);
        buf_reset(&b);
        assert_int_equal(imap_seqset_compress(copy, sets[i].n, &b), 0);
        assert_string_equal(buf_cstr(&b), sets[i].want);
    }
    buf_reset(&b);
    assert_int_equal(imap_esearch_write(&b, "A1", true, IMAP_RET_MIN | IMAP_RET_MAX |
                                        IMAP_RET_COUNT | IMAP_RET_ALL, v, 5), 0);
    assert_string_equal(buf_cstr(&b), "* ESEARCH (TAG \"A1\") UID MIN 2 MAX 9 COUNT 5 ALL 2,5:7,9\r\n");
    buf_reset(&b);
    assert_int_equal(imap_esearch_write(&b, "A2", false, 0, v, 5), 0);
    assert_string_equal(buf_cstr(&b), "* ESEARCH (TAG \"A2\") ALL 2,5:7,9\r\n");
    buf_reset(&b);
    assert_int_equal(imap_esearch_write(&b, "A3", false, IMAP_RET_MIN | IMAP_RET_COUNT,
                                        NULL, 0), 0);
    assert_string_equal(buf_cstr(&b), "* ESEARCH (TAG \"A3\") COUNT 0\r\n");
    buf_reset(&b);
    assert_int_equal(imap_esearch_write(&b, "A4", false, IMAP_RET_SAVE, v, 5), 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(imap_esearch_write(&b, "A5", false, IMAP_RET_SAVE | IMAP_RET_MAX, v, 5), 0);
    assert_string_equal(buf_cstr(&b), "* ESEARCH (TAG \"A5\") MAX 9\r\n");
    buf_reset(&b);
    assert_int_equal(imap_search_write(&b, "SEARCH", v, 2), 0);
    assert_string_equal(buf_cstr(&b), "* SEARCH 2 5\r\n");
    buf_reset(&b);
    assert_int_equal(imap_search_write(&b, "SORT", NULL, 0), 0);
    assert_string_equal(buf_cstr(&b), "* SORT\r\n");
    buf_free(&b);

    imap_search_saved(IMAP_RET_SAVE, v, 5, &s, &ns);
    assert_int_equal(ns, 5);
    free(s);
    imap_search_saved(IMAP_RET_SAVE | IMAP_RET_MIN, v, 5, &s, &ns);
    assert_int_equal(ns, 1);
    assert_int_equal(s[0], 2);
    free(s);
    imap_search_saved(IMAP_RET_SAVE | IMAP_RET_MIN | IMAP_RET_MAX, v, 5, &s, &ns);
    assert_int_equal(ns, 2);
    assert_int_equal(s[1], 9);
    free(s);
    imap_search_saved(IMAP_RET_SAVE | IMAP_RET_MIN | IMAP_RET_COUNT, v, 5, &s, &ns);
    assert_int_equal(ns, 5);
    free(s);
    imap_search_saved(IMAP_RET_SAVE, v, 0, &s, &ns);
    assert_int_equal(ns, 0);
    assert_null(s);
}

static void test_empty_mailbox(void **state)
{
    struct tbox b = {box5, 0, 0, 0, false};
    static const char c[] = "t SEARCH UID 1:* OR * $";
    char *got;

    (void)state;
    got = run(&b, c, sizeof c - 1, NULL);
    assert_string_equal(got, "");
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_search_table),
        cmocka_unit_test(test_charset),
        cmocka_unit_test(test_groups_and_8bit),
        cmocka_unit_test(test_laziness),
        cmocka_unit_test(test_no_header_callback),
        cmocka_unit_test(test_store_error),
        cmocka_unit_test(test_base_subject),
        cmocka_unit_test(test_casefold),
        cmocka_unit_test(test_thread),
        cmocka_unit_test(test_thread_dates),
        cmocka_unit_test(test_seqset_and_esearch),
        cmocka_unit_test(test_empty_mailbox),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
