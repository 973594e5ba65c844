/* Tests for localserver/deliver: trace headers (and header injection
 * through HELO and addresses), CRLF -> LF copies, spooling of remote and
 * failed local recipients, failures and crashes at every step, the group
 * commit from concurrent submitters, and a small single-vs-batched bench.
 *
 * queue_spool() is replaced at link time by a recorder defined here (the
 * test's object comes before the server library, so the library's is not
 * pulled in): the tests see exactly what would be spooled and can make
 * spooling fail.  The queue's own durability is tested in test_queue. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deliver.h"
#include "queue.h"
#include "testutil.h"

/* ---- the queue_spool recorder --------------------------------------------- */

#define SPOOL_MAX_RCPTS 8

struct spool_call {
    char *mail_from;
    size_t n_rcpts;
    char *addr[SPOOL_MAX_RCPTS];
    char *local_maildir[SPOOL_MAX_RCPTS];
    unsigned notify[SPOOL_MAX_RCPTS];
    char *data;
    size_t len;
};

static pthread_mutex_t spool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct spool_call spool_calls[64];
static size_t n_spool_calls;
static bool spool_fails;
static unsigned spool_seq;

int queue_spool(const char *qdir, const struct smtp_envelope *env,
                const struct queue_rcpt *rcpts, size_t n_rcpts,
                const char *msg, size_t len, char id[QUEUE_ID_MAX], struct err *e)
{
    int rc = 0;

    (void)qdir;
    pthread_mutex_lock(&spool_mu);
    if (spool_fails) {
        rc = err_set(e, ERR_IO, "spool disk full");
    } else {
        struct spool_call *c = &spool_calls[n_spool_calls % ARRAY_LEN(spool_calls)];

        n_spool_calls++;
        c->mail_from = xstrdup(env->mail_from ? env->mail_from : "(null)");
        c->n_rcpts = n_rcpts;
        for (size_t i = 0; i < n_rcpts && i < SPOOL_MAX_RCPTS; i++) {
            c->addr[i] = xstrdup(rcpts[i].addr);
            c->local_maildir[i] = rcpts[i].local_maildir ? xstrdup(rcpts[i].local_maildir)
                                                         : NULL;
            c->notify[i] = rcpts[i].notify;
        }
        c->data = xmemdup0(msg, len);
        c->len = len;
        snprintf(id, QUEUE_ID_MAX, "Q%04u", ++spool_seq);
    }
    pthread_mutex_unlock(&spool_mu);
    return rc;
}

static void spool_reset(void)
{
    pthread_mutex_lock(&spool_mu);
    for (size_t k = 0; k < n_spool_calls && k < ARRAY_LEN(spool_calls); k++) {
        struct spool_call *c = &spool_calls[k];

        for (size_t i = 0; i < c->n_rcpts && i < SPOOL_MAX_RCPTS; i++) {
            free(c->addr[i]);
            free(c->local_maildir[i]);
        }
        free(c->mail_from);
        free(c->data);
    }
    memset(spool_calls, 0, sizeof(spool_calls));
    n_spool_calls = 0;
    spool_fails = false;
    spool_seq = 0;
    pthread_mutex_unlock(&spool_mu);
}

/* ---- helpers -------------------------------------------------------------- */

static struct smtp_envelope *env_new(const char *helo, const char *peer, const char *from,
                                     bool esmtp, bool tls, const char *auth)
{
    struct smtp_envelope *env = XNEW(struct smtp_envelope);

    env->helo = helo ? xstrdup(helo) : NULL;
    env->peer_addr = peer;
    env->mail_from = xstrdup(from);
    env->esmtp = esmtp;
    env->tls = tls;
    env->auth_user = auth ? xstrdup(auth) : NULL;
    return env;
}

static void env_add_rcpt(struct smtp_envelope *env, const char *addr, unsigned notify)
{
    env->rcpts = xreallocarray(env->rcpts, env->n_rcpts + 1, sizeof(*env->rcpts));
    memset(&env->rcpts[env->n_rcpts], 0, sizeof(*env->rcpts));
    env->rcpts[env->n_rcpts].addr = xstrdup(addr);
    env->rcpts[env->n_rcpts].verdict = SMTP_RCPT_LOCAL;
    env->rcpts[env->n_rcpts].notify = notify;
    env->n_rcpts++;
}

static struct deliver_job *job_new(const char *data, const char *qdir)
{
    struct deliver_job *job = XNEW(struct deliver_job);

    job->env = env_new("client.example", "192.0.2.7", "alice@example.org", true, false, NULL);
    job->msg = XNEW(struct buf);
    buf_init(job->msg, 0);
    assert_int_equal(buf_puts(job->msg, data), 0);
    job->hostname = "mx.example.test";
    job->queue_dir = qdir;
    job->received_at = 1795455460;
    return job;
}

/* maildir NULL: a remote recipient. */
static void job_add_rcpt(struct deliver_job *job, const char *addr, const char *maildir)
{
    job->rcpts = xreallocarray(job->rcpts, job->n_rcpts + 1, sizeof(*job->rcpts));
    job->rcpts[job->n_rcpts].addr = xstrdup(addr);
    job->rcpts[job->n_rcpts].maildir = maildir ? xstrdup(maildir) : NULL;
    job->rcpts[job->n_rcpts].orig = NULL;
    job->n_rcpts++;
    env_add_rcpt(job->env, addr, SMTP_NOTIFY_DEFAULT);
}

static char *read_file(const char *path, size_t *len)
{
    struct buf b = BUF_INIT;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    assert_true(fd >= 0);
    assert_int_equal(buf_read_all(&b, fd), 0);
    close(fd);
    return buf_steal(&b, len);
}

/* Names in dir (sorted, NULL-terminated); *n their number.  A missing
 * directory has none. */
static char **list_dir(const char *dir, size_t *n)
{
    struct dirent **ents = NULL;
    char **v;
    int k = scandir(dir, &ents, NULL, alphasort);
    size_t m = 0;

    if (k < 0) {
        assert_int_equal(errno, ENOENT);
        k = 0;
    }
    v = xcalloc((size_t)k + 1, sizeof(char *));
    for (int i = 0; i < k; i++) {
        if (ents[i]->d_name[0] != '.')
            v[m++] = xstrdup(ents[i]->d_name);
        free(ents[i]);
    }
    free(ents);
    *n = m;
    return v;
}

static void free_list(char **v)
{
    for (size_t i = 0; v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

static size_t count_dir(const char *root, const char *sub)
{
    char *p = xasprintf("%s/%s", root, sub);
    size_t n;

    free_list(list_dir(p, &n));
    free(p);
    return n;
}

/* The one message in root/new (asserted), as a string to free. */
static char *only_message(const char *root, size_t *len)
{
    char *dir = xasprintf("%s/new", root), *path, *data;
    size_t n;
    char **names = list_dir(dir, &n);

    assert_int_equal(n, 1);
    path = xasprintf("%s/%s", dir, names[0]);
    data = read_file(path, len);
    /* The name ends in ",S=<size>" with the real size. */
    {
        char *s = strstr(names[0], ",S=");

        assert_non_null(s);
        assert_int_equal(strtoull(s + 3, NULL, 10), *len);
    }
    free(path);
    free_list(names);
    free(dir);
    return data;
}

/* Every line of a header block: printable ASCII or TAB, <= max bytes, ends
 * with eol; returns the number of fields (lines not starting with white
 * space). */
static size_t check_header_block(const char *h, size_t len, const char *eol, size_t max)
{
    size_t fields = 0, el = strlen(eol);
    const char *p = h, *end = h + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t line;

        assert_non_null(nl);
        line = (size_t)(nl + 1 - p) - el;
        assert_memory_equal(p + line, eol, el);
        assert_true(line <= max);
        if (p[0] != ' ' && p[0] != '\t')
            fields++;
        for (size_t i = 0; i < line; i++) {
            unsigned char c = (unsigned char)p[i];

            assert_true(c == '\t' || (c >= 0x20 && c < 0x7f));
        }
        p = nl + 1;
    }
    return fields;
}

/* The length of the header block at the start of a local copy (the three
 * trace fields, unfolded by continuation lines). */
static size_t trace_len(const char *data, size_t len)
{
    const char *p = data;
    size_t fields = 0;

    while ((size_t)(p - data) < len) {
        const char *nl = strchr(p, '\n');

        assert_non_null(nl);
        if (p[0] != ' ' && p[0] != '\t') {
            if (fields == 3)
                break;
            fields++;
        }
        p = nl + 1;
    }
    return (size_t)(p - data);
}

struct fx {
    char *dir;
    char *md[3];     /* Maildirs; md[2] does not exist until delivered to */
    char *qdir;
};

static int mkdirs(const char *root)
{
    static const char *const subs[] = {"", "/cur", "/new", "/tmp"};

    for (size_t i = 0; i < ARRAY_LEN(subs); i++) {
        char *p = xasprintf("%s%s", root, subs[i]);
        int rc = mkdir(p, 0700);

        free(p);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int fx_setup(void **state)
{
    struct fx *fx = XNEW(struct fx);

    fx->dir = tu_tmpdir("deliver");
    fx->md[0] = xasprintf("%s/bob", fx->dir);
    fx->md[1] = xasprintf("%s/carol", fx->dir);
    fx->md[2] = xasprintf("%s/mail/example.test/dave", fx->dir);
    fx->qdir = xasprintf("%s/queue", fx->dir);
    if (mkdirs(fx->md[0]) != 0 || mkdirs(fx->md[1]) != 0)
        return -1;
    spool_reset();
    deliver_step_hook = NULL;
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;

    deliver_step_hook = NULL;
    spool_reset();
    tu_rm_rf(fx->dir);
    free(fx->dir);
    for (size_t i = 0; i < ARRAY_LEN(fx->md); i++)
        free(fx->md[i]);
    free(fx->qdir);
    free(fx);
    return 0;
}

#define FX_TEST(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

/* ---- trace headers -------------------------------------------------------- */

static void trace_headers_exact(void **state)
{
    struct smtp_envelope *env = env_new("client.example", "192.0.2.7", "alice@example.org",
                                        true, false, NULL);
    struct buf b = BUF_INIT;
    struct err e;

    (void)state;
    assert_int_equal(deliver_trace_headers(&b, env, "bob@example.test", "mx.example.test",
                                           1795455460, &e), 0);
    assert_string_equal(buf_cstr(&b),
        "Return-Path: <alice@example.org>\n"
        "Delivered-To: bob@example.test\n"
        "Received: from client.example (192.0.2.7) by mx.example.test with ESMTP\n"
        "\t(correod) for <bob@example.test>; Mon, 23 Nov 2026 17:37:40 +0000\n");
    buf_reset(&b);
    assert_int_equal(deliver_received_header(&b, env, "bob@example.test", "mx.example.test",
                                             1795455460, &e), 0);
    assert_string_equal(buf_cstr(&b),
        "Received: from client.example (192.0.2.7) by mx.example.test with ESMTP\r\n"
        "\t(correod) for <bob@example.test>; Mon, 23 Nov 2026 17:37:40 +0000\r\n");
    /* Several recipients in one copy: no FOR clause. */
    buf_reset(&b);
    assert_int_equal(deliver_received_header(&b, env, NULL, "mx.example.test",
                                             1795455460, &e), 0);
    assert_null(strstr(buf_cstr(&b), " for "));
    assert_non_null(strstr(buf_cstr(&b), "(correod); Mon, 23 Nov 2026"));
    buf_free(&b);
    smtp_envelope_free(env);
}

/* The null sender, the protocol names (RFC 3848), a local submission. */
static void trace_headers_variants(void **state)
{
    static const struct {
        const char *helo, *peer, *from;
        bool esmtp, tls;
        const char *auth, *want;
    } cases[] = {
        {"h", "192.0.2.1", "", true, false, NULL, "Return-Path: <>\n"},
        {"h", "192.0.2.1", "a@b", false, false, NULL, " with SMTP "},
        {"h", "192.0.2.1", "a@b", true, false, NULL, " with ESMTP "},
        {"h", "192.0.2.1", "a@b", true, true, NULL, " with ESMTPS "},
        {"h", "192.0.2.1", "a@b", true, false, "u@x", " with ESMTPA "},
        {"h", "192.0.2.1", "a@b", true, true, "u@x", " with ESMTPSA "},
        {NULL, NULL, "a@b", false, false, "u", "Received: by mx with local (correod)"},
        {"h", NULL, "a@b", true, false, NULL, "Received: from h by mx with ESMTP"},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct smtp_envelope *env = env_new(cases[i].helo, cases[i].peer, cases[i].from,
                                            cases[i].esmtp, cases[i].tls, cases[i].auth);
        struct buf b = BUF_INIT;
        struct err e;

        assert_int_equal(deliver_trace_headers(&b, env, "r@x", "mx", 1795455460, &e), 0);
        if (strstr(buf_cstr(&b), cases[i].want) == NULL)
            fail_msg("case %zu: '%s' not in:\n%s", i, cases[i].want, buf_cstr(&b));
        assert_int_equal(check_header_block(b.data, b.len, "\n", 78), 3);
        buf_free(&b);
        smtp_envelope_free(env);
    }
}

/* Whatever a client puts into HELO or the addresses, the result is three
 * fields of printable ASCII, every Received line within 78 bytes, and the
 * injected text never starts a line. */
static void trace_headers_resist_injection(void **state)
{
    static const char long_helo[] =
        "a.very.long.helo.name.that.goes.on.and.on.and.on.and.on.and.on.and.on."
        "and.on.and.on.and.on.and.on.and.on.and.on.and.on.and.on.and.on.example";
    static const struct {
        const char *helo, *from, *rcpt;
    } cases[] = {
        {"evil\r\nX-Injected: yes", "a@b", "r@x"},
        {"evil\nX-Injected: yes", "a@b", "r@x"},
        {"evil\rX-Injected: yes", "a@b", "r@x"},
        {"h", "a@b>\r\nX-Injected: yes", "r@x"},
        {"h", "a@b", "r@x\nX-Injected: yes"},
        {"caf\xc3\xa9.example", "\xe2\x80\xae@b", "r\x7f@x"},
        {"tab\there", "a\tb@c", "r\x1b[31m@x"},
        {long_helo, "a@b", "r@x"},
        {"h", "a@b", "a-very-long-recipient-address-that-does-not-fit-on-a-line@"
                     "a-very-long-domain-name-too.example.test"},
        {"", "", ""},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct smtp_envelope *env = env_new(cases[i].helo, "192.0.2.1", cases[i].from, true,
                                            false, NULL);
        struct buf b = BUF_INIT, r = BUF_INIT;
        const char *recv;
        struct err e;

        assert_int_equal(deliver_trace_headers(&b, env, cases[i].rcpt, "mx.example.test",
                                               1795455460, &e), 0);
        assert_int_equal(check_header_block(b.data, b.len, "\n", 998), 3);
        recv = strstr(buf_cstr(&b), "\nReceived: ");
        assert_non_null(recv);
        check_header_block(recv + 1, b.len - (size_t)(recv + 1 - b.data), "\n", 78);
        assert_null(strstr(buf_cstr(&b), "\nX-Injected"));
        assert_int_equal(deliver_received_header(&r, env, cases[i].rcpt, "mx.example.test",
                                                 1795455460, &e), 0);
        assert_int_equal(check_header_block(r.data, r.len, "\r\n", 78), 1);
        buf_free(&b);
        buf_free(&r);
        smtp_envelope_free(env);
    }
}

/* With SMTPUTF8, addresses keep well-formed UTF-8 (RFC 6532) but not
 * C1 controls, line separators, bidi controls or invalid bytes; without
 * it, and in HELO always, every non-ASCII byte is '?'. */
static void trace_headers_utf8(void **state)
{
    static const struct {
        bool smtputf8;
        const char *helo, *from, *want_from, *want_helo;
    } cases[] = {
        {true, "caf\xc3\xa9", "j\xc3\xb6rg@ex\xc3\xa4mple", "<j\xc3\xb6rg@ex\xc3\xa4mple>",
         "from caf?? "},
        {false, "h", "j\xc3\xb6rg@ex\xc3\xa4mple", "<j??rg@ex??mple>", "from h "},
        {true, "h", "a\xc2\x85" "b@x", "<a?b@x>", "from h "},          /* C1 NEL */
        {true, "h", "a\xe2\x80\xae" "b@x", "<a?b@x>", "from h "},      /* RLO */
        {true, "h", "a\xe2\x80\xa8" "b@x", "<a?b@x>", "from h "},      /* LS */
        {true, "h", "a\xff\xfe" "b@x", "<a??b@x>", "from h "},          /* invalid */
        {true, "h", "a\xe2\x82" "b@x", "<a?b@x>", "from h "},           /* truncated */
        {true, "h", "a\r\nX: y@x", "<a??X: y@x>", "from h "},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct smtp_envelope *env = env_new(cases[i].helo, "192.0.2.1", cases[i].from, true,
                                            false, NULL);
        struct buf b = BUF_INIT;
        char *want = xasprintf("Return-Path: %s\n", cases[i].want_from);
        struct err e;

        env->smtputf8 = cases[i].smtputf8;
        assert_int_equal(deliver_trace_headers(&b, env, "r@x", "mx", 1795455460, &e), 0);
        if (strncmp(buf_cstr(&b), want, strlen(want)) != 0 ||
            strstr(buf_cstr(&b), cases[i].want_helo) == NULL)
            fail_msg("case %zu:\n%s", i, buf_cstr(&b));
        free(want);
        buf_free(&b);
        smtp_envelope_free(env);
    }
}

/* A long UTF-8 address is cut between characters, never inside one. */
static void trace_headers_cut_utf8(void **state)
{
    struct smtp_envelope *env = env_new("h", "192.0.2.1", "a@b", true, false, NULL);
    struct buf rcpt = BUF_INIT, b = BUF_INIT;
    const char *for_;
    struct err e;

    (void)state;
    env->smtputf8 = true;
    for (int i = 0; i < 40; i++)
        assert_int_equal(buf_puts(&rcpt, "\xc3\xa9"), 0);
    assert_int_equal(buf_puts(&rcpt, "@x"), 0);
    assert_int_equal(deliver_received_header(&b, env, buf_cstr(&rcpt), "mx", 1795455460, &e),
                     0);
    for_ = strstr(buf_cstr(&b), "for <");
    assert_non_null(for_);
    /* Whole two-byte characters, then the ellipsis. */
    for (const char *p = for_ + 5; *p != '.'; p += 2)
        assert_memory_equal(p, "\xc3\xa9", 2);
    assert_non_null(strstr(for_, "...>;"));
    buf_free(&rcpt);
    buf_free(&b);
    smtp_envelope_free(env);
}

/* A buffer with a ceiling too low takes nothing and reports it. */
static void trace_headers_respect_ceiling(void **state)
{
    struct smtp_envelope *env = env_new("h", "192.0.2.1", "a@b", true, false, NULL);
    struct buf b;
    struct err e;

    (void)state;
    buf_init(&b, 20);
    assert_int_equal(deliver_trace_headers(&b, env, "r@x", "mx", 1795455460, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_int_equal(b.len, 0);
    buf_free(&b);
    smtp_envelope_free(env);
}

/* ---- local delivery ------------------------------------------------------- */

/* Trace headers + the data with LF line ends, byte for byte; a missing
 * Maildir is created; tmp/ is left empty. */
static void local_copies_crlf_to_lf(void **state)
{
    static const struct {
        const char *crlf, *lf;
    } cases[] = {
        {"Subject: x\r\n\r\nbody\r\n", "Subject: x\n\nbody\n"},
        {"A: 1\r\n\r\n\r\n\r\n", "A: 1\n\n\n\n"},
        {"A: 1\r\n\r\nlone\rcr\r\n", "A: 1\n\nlone\rcr\n"},
        {"A: 1\r\n\r\nno final newline", "A: 1\n\nno final newline"},
        {"A: 1\r\n\r\nends in cr\r", "A: 1\n\nends in cr\r"},
        {"", ""},
    };
    struct fx *fx = *state;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct deliver_job *job = job_new(cases[i].crlf, fx->qdir);
        char *data;
        size_t len, tl;

        job_add_rcpt(job, "bob@example.test", fx->md[0]);
        job_add_rcpt(job, "dave@example.test", fx->md[2]);
        deliver_run_sync(job);
        assert_int_equal(job->code, 250);
        assert_string_equal(job->enhanced, "2.0.0");
        assert_true(strncmp(job->text, "OK id=", 6) == 0);
        assert_string_equal(job->queue_id, "");
        for (size_t k = 0; k < 2; k++) {
            const char *root = fx->md[k == 0 ? 0 : 2];
            struct buf want = BUF_INIT;
            struct err e;

            data = only_message(root, &len);
            tl = trace_len(data, len);
            assert_int_equal(len - tl, strlen(cases[i].lf));
            assert_memory_equal(data + tl, cases[i].lf, len - tl);
            assert_int_equal(check_header_block(data, tl, "\n", 78), 3);
            assert_int_equal(deliver_trace_headers(&want, job->env, job->rcpts[k].addr,
                                                   job->hostname, job->received_at, &e), 0);
            /* The same fields as deliver_trace_headers() makes, plus the id. */
            assert_memory_equal(data, want.data, strstr(want.data, "Received:") - want.data);
            assert_non_null(strstr(data, job->text + 6));
            buf_free(&want);
            free(data);
            assert_int_equal(count_dir(root, "tmp"), 0);
            assert_int_equal(count_dir(root, "cur"), 0);
            /* Empty it for the next case. */
            {
                char *d = xasprintf("%s/new", root);
                size_t n;
                char **names = list_dir(d, &n);

                for (size_t j = 0; j < n; j++) {
                    char *p = xasprintf("%s/%s", d, names[j]);

                    assert_int_equal(unlink(p), 0);
                    free(p);
                }
                free_list(names);
                free(d);
            }
        }
        assert_int_equal(n_spool_calls, 0);
        deliver_job_free(job);
    }
}

static const char *fail_step;

static int fail_at(const char *s)
{
    return strcmp(s, fail_step) == 0 ? -1 : 0;
}

/* A job with more local recipients than files a batch keeps open: every
 * copy arrives. */
static void many_local_recipients(void **state)
{
    struct fx *fx = *state;
    struct deliver_job *job = job_new("S: many\r\n\r\nb\r\n", fx->qdir);
    char *roots[300];

    for (size_t i = 0; i < ARRAY_LEN(roots); i++) {
        char *addr = xasprintf("u%zu@example.test", i);

        roots[i] = xasprintf("%s/many/u%zu", fx->dir, i);
        job_add_rcpt(job, addr, roots[i]);
        free(addr);
    }
    deliver_run_sync(job);
    assert_int_equal(job->code, 250);
    assert_int_equal(n_spool_calls, 0);
    for (size_t i = 0; i < ARRAY_LEN(roots); i++) {
        assert_int_equal(count_dir(roots[i], "new"), 1);
        assert_int_equal(count_dir(roots[i], "tmp"), 0);
        free(roots[i]);
    }
    deliver_job_free(job);
}

/* Two recipients that resolve to the same Maildir get one copy. */
static void same_maildir_once(void **state)
{
    struct fx *fx = *state;
    struct deliver_job *job = job_new("S: x\r\n\r\nb\r\n", fx->qdir);
    size_t len;

    job_add_rcpt(job, "bob@example.test", fx->md[0]);
    job_add_rcpt(job, "bobby@example.test", fx->md[0]);
    deliver_run_sync(job);
    assert_int_equal(job->code, 250);
    free(only_message(fx->md[0], &len));
    deliver_job_free(job);

    /* When that copy fails, one local retry is spooled, not two. */
    job = job_new("S: x\r\n\r\nb\r\n", fx->qdir);
    job_add_rcpt(job, "bob@example.test", fx->md[0]);
    job_add_rcpt(job, "bobby@example.test", fx->md[0]);
    fail_step = "link";
    deliver_step_hook = fail_at;
    deliver_run_sync(job);
    deliver_step_hook = NULL;
    assert_int_equal(job->code, 250);
    assert_int_equal(n_spool_calls, 1);
    assert_int_equal(spool_calls[0].n_rcpts, 1);
    assert_string_equal(spool_calls[0].addr[0], "bob@example.test");
    assert_int_equal(count_dir(fx->md[0], "new"), 1);
    deliver_job_free(job);
}

/* Remote recipients: one spool call with the Received header and the data
 * as received (CRLF); the FOR clause only for a single recipient. */
static void remote_recipients_spooled(void **state)
{
    static const char data[] = "Subject: hi\r\n\r\nline\r\n.dot\r\n";
    struct fx *fx = *state;
    struct deliver_job *job = job_new(data, fx->qdir);
    struct spool_call *c;
    const char *body;
    size_t len;

    job_add_rcpt(job, "bob@example.test", fx->md[0]);
    job_add_rcpt(job, "x@remote.example", NULL);
    job_add_rcpt(job, "y@remote.example", NULL);
    job->env->rcpts[2].notify = SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY;
    deliver_run_sync(job);
    assert_int_equal(job->code, 250);
    assert_string_equal(job->queue_id, "Q0001");
    assert_non_null(strstr(job->text, "queued as Q0001"));
    assert_int_equal(n_spool_calls, 1);
    c = &spool_calls[0];
    assert_int_equal(c->n_rcpts, 2);
    assert_string_equal(c->addr[0], "x@remote.example");
    assert_string_equal(c->addr[1], "y@remote.example");
    assert_null(c->local_maildir[0]);
    assert_int_equal(c->notify[1], SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY);
    assert_true(strncmp(c->data, "Received: from client.example", 29) == 0);
    assert_null(strstr(c->data, " for <"));
    body = strstr(c->data, "\r\nSubject: hi");
    assert_non_null(body);
    assert_string_equal(body + 2, data);
    check_header_block(c->data, (size_t)(body + 2 - c->data), "\r\n", 78);
    free(only_message(fx->md[0], &len));
    deliver_job_free(job);

    /* One remote recipient: FOR names it. */
    spool_reset();
    job = job_new(data, fx->qdir);
    job_add_rcpt(job, "x@remote.example", NULL);
    deliver_run_sync(job);
    assert_int_equal(job->code, 250);
    assert_int_equal(n_spool_calls, 1);
    assert_non_null(strstr(spool_calls[0].data, "for <x@remote.example>;"));
    deliver_job_free(job);
}

/* ---- success reports (NOTIFY=SUCCESS) -------------------------------------- */

/* A recipient with NOTIFY=SUCCESS whose local copy is durable: a
 * "delivered" report from the null sender to the envelope sender is
 * spooled before the job completes -- once per envelope recipient, never
 * for the null sender, not for copies that failed (the retry reports), not
 * for remote recipients (their relay does), and a report that cannot be
 * spooled does not undo the delivery. */
static void success_reports(void **state)
{
    static const struct {
        const char *name;
        const char *from;
        unsigned notify_bob;        /* bob@ is local (md[0]) */
        bool alias;                 /* bobby@ (given) -> bob@ and carol@, both local */
        bool remote;                /* and x@remote.example with the same NOTIFY */
        const char *fail_step;
        bool spool_fails;
        int code;
        bool report;                /* a report is spooled (call 0) */
        size_t calls;
        const char *final_rcpt;
    } cases[] = {
        {"plain", "alice@example.org", SMTP_NOTIFY_SUCCESS, false, false, NULL, false, 250,
         true, 1, "rfc822; bob@example.test"},
        {"with failure", "alice@example.org", SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, false,
         false, NULL, false, 250, true, 1, "rfc822; bob@example.test"},
        {"default", "alice@example.org", SMTP_NOTIFY_DEFAULT, false, false, NULL, false, 250,
         false, 0, NULL},
        {"never", "alice@example.org", SMTP_NOTIFY_NEVER, false, false, NULL, false, 250, false,
         0, NULL},
        {"null sender", "", SMTP_NOTIFY_SUCCESS, false, false, NULL, false, 250, false, 0, NULL},
        {"copy failed", "alice@example.org", SMTP_NOTIFY_SUCCESS, false, false, "link", false,
         250, false, 1, NULL},
        {"remote too", "alice@example.org", SMTP_NOTIFY_SUCCESS, false, true, NULL, false, 250,
         true, 2, "rfc822; bob@example.test"},
        {"alias", "alice@example.org", SMTP_NOTIFY_SUCCESS, true, false, NULL, false, 250, true,
         1, "rfc822; bobby@example.test"},
        {"report not spooled", "alice@example.org", SMTP_NOTIFY_SUCCESS, false, false, NULL,
         true, 250, false, 0, NULL},
    };
    struct fx *fx = *state;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct deliver_job *job = job_new("Subject: lunch\r\nMessage-ID: <m1@x>\r\n\r\n"
                                          "secret body\r\n", fx->qdir);
        struct spool_call *c = &spool_calls[0];

        spool_reset();
        free(job->env->mail_from);
        job->env->mail_from = xstrdup(cases[i].from);
        job->env->envid = xstrdup("E-1");
        if (cases[i].alias) {
            /* what the session does for an alias: one envelope recipient */
            job->rcpts = XNEWARRAY(struct deliver_rcpt, 2);
            job->rcpts[0].addr = xstrdup("bob@example.test");
            job->rcpts[0].maildir = xstrdup(fx->md[0]);
            job->rcpts[0].orig = xstrdup("bobby@example.test");
            job->rcpts[1].addr = xstrdup("carol@example.test");
            job->rcpts[1].maildir = xstrdup(fx->md[1]);
            job->rcpts[1].orig = xstrdup("bobby@example.test");
            job->n_rcpts = 2;
            env_add_rcpt(job->env, "bobby@example.test", cases[i].notify_bob);
        } else {
            job_add_rcpt(job, "bob@example.test", fx->md[0]);
            job->env->rcpts[0].notify = cases[i].notify_bob;
            job->env->rcpts[0].orcpt = xstrdup("rfc822;bob@example.test");
        }
        if (cases[i].remote) {
            job_add_rcpt(job, "x@remote.example", NULL);
            job->env->rcpts[job->env->n_rcpts - 1].notify = cases[i].notify_bob;
        }
        fail_step = cases[i].fail_step;
        deliver_step_hook = cases[i].fail_step ? fail_at : NULL;
        spool_fails = cases[i].spool_fails;
        deliver_run_sync(job);
        deliver_step_hook = NULL;
        if (job->code != cases[i].code || n_spool_calls != cases[i].calls)
            fail_msg("case %s: %d %s, %zu spool calls", cases[i].name, job->code, job->text,
                     n_spool_calls);
        if (cases[i].report) {
            assert_string_equal(c->mail_from, "");
            assert_int_equal(c->n_rcpts, 1);
            assert_string_equal(c->addr[0], cases[i].from);
            assert_null(c->local_maildir[0]);
            assert_int_equal(c->notify[0], SMTP_NOTIFY_NEVER);
            assert_non_null(strstr(c->data, "Content-Type: multipart/report; "
                                            "report-type=delivery-status;"));
            assert_non_null(strstr(c->data, "\r\nTo: <alice@example.org>\r\n"));
            assert_non_null(strstr(c->data, "\r\nAction: delivered\r\n"));
            assert_non_null(strstr(c->data, "\r\nStatus: 2.0.0\r\n"));
            assert_non_null(strstr(c->data, "\r\nOriginal-Envelope-Id: E-1\r\n"));
            assert_non_null(strstr(c->data, "\r\nIn-Reply-To: <m1@x>\r\n"));
            {
                char *want = xasprintf("\r\nFinal-Recipient: %s\r\n", cases[i].final_rcpt);

                assert_non_null(strstr(c->data, want));
                free(want);
            }
            /* one line per envelope recipient; only the header returned */
            assert_null(strstr(strstr(c->data, "Action: delivered") + 1, "Action:"));
            assert_null(strstr(c->data, "carol"));
            assert_null(strstr(c->data, "secret body"));
            if (cases[i].remote)
                assert_string_equal(spool_calls[1].addr[0], "x@remote.example");
        } else {
            for (size_t k = 0; k < n_spool_calls; k++)
                assert_null(strstr(spool_calls[k].data, "multipart/report"));
        }
        /* the delivery itself is there whatever happened to the report */
        if (cases[i].fail_step == NULL) {
            char *dir = xasprintf("%s/new", fx->md[0]);

            assert_int_equal(count_dir(fx->md[0], "new"), 1);
            tu_rm_rf(dir);
            assert_int_equal(mkdir(dir, 0700), 0);
            free(dir);
        }
        if (cases[i].alias) {
            char *dir = xasprintf("%s/new", fx->md[1]);

            assert_int_equal(count_dir(fx->md[1], "new"), 1);
            tu_rm_rf(dir);
            assert_int_equal(mkdir(dir, 0700), 0);
            free(dir);
        }
        deliver_job_free(job);
    }
}

/* ---- failures at each step ------------------------------------------------ */

/* A step that fails: the local copy is spooled for a retry (250), or when
 * spooling fails too the job is 451 and nothing is in new/; tmp/ is always
 * left empty. */
static void failure_at_each_step(void **state)
{
    static const struct {
        const char *step;
        bool remote;        /* a remote recipient too */
        bool spool_fails;
        int code;
        size_t spooled;     /* recipients in the spool call */
        size_t in_new;      /* files in bob's new/ */
    } cases[] = {
        {"write", false, false, 250, 1, 0},
        {"fsync", false, false, 250, 1, 0},
        {"link", false, false, 250, 1, 0},
        {"dirsync", false, false, 250, 1, 0},
        {"write", false, true, 451, 0, 0},
        {"fsync", false, true, 451, 0, 0},
        {"link", false, true, 451, 0, 0},
        {"dirsync", false, true, 451, 0, 0},
        {"spool", false, false, 250, 0, 1},   /* nothing to spool */
        {"spool", true, false, 451, 0, 1},    /* local ok, remote not: partial */
        {"write", true, false, 250, 2, 0},
        {"dirsync", true, true, 451, 0, 0},
    };
    struct fx *fx = *state;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct deliver_job *job = job_new("S: x\r\n\r\nb\r\n", fx->qdir);

        spool_reset();
        spool_fails = cases[i].spool_fails;
        fail_step = cases[i].step;
        deliver_step_hook = fail_at;
        job_add_rcpt(job, "bob@example.test", fx->md[0]);
        if (cases[i].remote)
            job_add_rcpt(job, "x@remote.example", NULL);
        deliver_run_sync(job);
        deliver_step_hook = NULL;
        if (job->code != cases[i].code)
            fail_msg("case %zu (%s): %d %s", i, cases[i].step, job->code, job->text);
        if (job->code == 451) {
            assert_string_equal(job->enhanced, "4.3.0");
            assert_true(strlen(job->text) > 0);
        }
        assert_int_equal(n_spool_calls, cases[i].spooled ? 1 : 0);
        if (cases[i].spooled) {
            assert_int_equal(spool_calls[0].n_rcpts, cases[i].spooled);
            assert_string_equal(spool_calls[0].addr[0], "bob@example.test");
            /* A local retry knows its Maildir. */
            assert_string_equal(spool_calls[0].local_maildir[0], fx->md[0]);
        }
        assert_int_equal(count_dir(fx->md[0], "new"), cases[i].in_new);
        assert_int_equal(count_dir(fx->md[0], "tmp"), 0);
        if (cases[i].in_new) {
            char *d = xasprintf("%s/new", fx->md[0]);

            tu_rm_rf(d);
            assert_int_equal(mkdir(d, 0700), 0);
            free(d);
        }
        deliver_job_free(job);
    }
}

/* No queue configured and a local failure: 451, never 250. */
static void no_queue_no_250(void **state)
{
    struct fx *fx = *state;
    struct deliver_job *job = job_new("S: x\r\n\r\nb\r\n", NULL);

    fail_step = "fsync";
    deliver_step_hook = fail_at;
    job_add_rcpt(job, "bob@example.test", fx->md[0]);
    deliver_run_sync(job);
    deliver_step_hook = NULL;
    assert_int_equal(job->code, 451);
    assert_int_equal(n_spool_calls, 0);
    deliver_job_free(job);

    /* A Maildir that cannot be made (a file in the way). */
    job = job_new("S: x\r\n\r\nb\r\n", NULL);
    {
        char *p = xasprintf("%s/file", fx->dir), *md = xasprintf("%s/file/md", fx->dir);
        int fd = open(p, O_WRONLY | O_CREAT, 0600);

        assert_true(fd >= 0);
        close(fd);
        job_add_rcpt(job, "eve@example.test", md);
        free(p);
        free(md);
    }
    deliver_run_sync(job);
    assert_int_equal(job->code, 451);
    /* The reason names the recipient, not the server's paths. */
    if (strstr(job->text, "<eve@example.test>: cannot ") == NULL ||
        strstr(job->text, "file/md") != NULL)
        fail_msg("%s", job->text);
    deliver_job_free(job);

    /* No recipients at all. */
    job = job_new("S: x\r\n\r\nb\r\n", NULL);
    deliver_run_sync(job);
    assert_int_equal(job->code, 554);
    deliver_job_free(job);
}

/* ---- crashes at each step ------------------------------------------------- */

static int crash_at;
static int crash_count;

static int crash_hook(const char *s)
{
    (void)s;
    if (++crash_count == crash_at)
        _exit(7);
    return 0;
}

/* The process dies before the k-th step, for every k: new/ never holds a
 * partial or foreign file, cur/ stays empty, and tmp/ files are the only
 * debris.  The run that reaches the end delivers both copies. */
static void crash_at_each_step(void **state)
{
    static const char data[] = "Subject: crash\r\n\r\nbody line\r\n";
    struct fx *fx = *state;
    bool completed = false;

    for (int k = 1; k < 40 && !completed; k++) {
        pid_t pid;
        int status;

        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct deliver_job *job = job_new(data, fx->qdir);

            crash_at = k;
            crash_count = 0;
            deliver_step_hook = crash_hook;
            job_add_rcpt(job, "bob@example.test", fx->md[0]);
            job_add_rcpt(job, "carol@example.test", fx->md[1]);
            job_add_rcpt(job, "x@remote.example", NULL);
            deliver_run_sync(job);
            _exit(job->code == 250 ? 0 : 1);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 0)
            completed = true;
        else
            assert_int_equal(WEXITSTATUS(status), 7);
        for (size_t m = 0; m < 2; m++) {
            char *dir = xasprintf("%s/new", fx->md[m]);
            size_t n;
            char **names = list_dir(dir, &n);

            assert_true(n <= 1);
            if (completed)
                assert_int_equal(n, 1);
            for (size_t j = 0; j < n; j++) {
                char *p = xasprintf("%s/%s", dir, names[j]), *got;
                size_t len, tl;

                got = read_file(p, &len);
                tl = trace_len(got, len);
                assert_string_equal(got + tl, "Subject: crash\n\nbody line\n");
                assert_non_null(strstr(got, m == 0 ? "Delivered-To: bob@example.test\n"
                                                   : "Delivered-To: carol@example.test\n"));
                free(got);
                assert_int_equal(unlink(p), 0);
                free(p);
            }
            free_list(names);
            free(dir);
            assert_int_equal(count_dir(fx->md[m], "cur"), 0);
            if (completed)
                assert_int_equal(count_dir(fx->md[m], "tmp"), 0);
            /* Debris from this crash goes before the next round. */
            dir = xasprintf("%s/tmp", fx->md[m]);
            tu_rm_rf(dir);
            assert_int_equal(mkdir(dir, 0700), 0);
            free(dir);
        }
    }
    assert_true(completed);
}

static atomic_int crash_count_mt;

static int crash_hook_mt(const char *s)
{
    (void)s;
    /* SIGKILL: a crash that no exit handler sees, with the other threads
     * in the middle of their work. */
    if (atomic_fetch_add(&crash_count_mt, 1) + 1 == crash_at)
        kill(getpid(), SIGKILL);
    return 0;
}

static void count_done(void *ctx, struct deliver_job *job)
{
    int *n = ctx;

    if (job->code == 250)
        (*n)++;
    deliver_job_free(job);
}

/* The same on a deliverer with several threads and batches of several
 * jobs: whatever the step the process dies at, every file in new/ is a
 * complete message. */
static void crash_at_each_step_threads(void **state)
{
    struct fx *fx = *state;
    bool completed = false;

    for (int k = 1; k < 200 && !completed; k += 3) {
        pid_t pid;
        int status;

        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct deliverer *d;
            struct err e;
            int ok = 0;

            crash_at = k;
            atomic_store(&crash_count_mt, 0);
            deliver_step_hook = crash_hook_mt;
            if (deliverer_new(2, &d, &e) != 0)
                _exit(2);
            for (int i = 0; i < 12; i++) {
                char *data = xasprintf("Subject: %d\r\n\r\nmessage %d\r\n", i, i);
                struct deliver_job *job = job_new(data, fx->qdir);

                free(data);
                job_add_rcpt(job, "bob@example.test", fx->md[0]);
                job_add_rcpt(job, "carol@example.test", fx->md[1]);
                job->done = count_done;
                job->ctx = &ok;
                deliverer_submit(d, job);
            }
            deliverer_free(d);
            _exit(ok == 12 ? 0 : 1);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            completed = true;
        else
            assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        for (size_t m = 0; m < 2; m++) {
            char *dir = xasprintf("%s/new", fx->md[m]);
            size_t n;
            char **names = list_dir(dir, &n);

            if (completed)
                assert_int_equal(n, 12);
            for (size_t j = 0; j < n; j++) {
                char *p = xasprintf("%s/%s", dir, names[j]), *got, *want;
                size_t len, tl;
                int num;

                got = read_file(p, &len);
                tl = trace_len(got, len);
                assert_int_equal(sscanf(got + tl, "Subject: %d\n", &num), 1);
                want = xasprintf("Subject: %d\n\nmessage %d\n", num, num);
                assert_string_equal(got + tl, want);
                free(want);
                free(got);
                assert_int_equal(unlink(p), 0);
                free(p);
            }
            free_list(names);
            free(dir);
            assert_int_equal(count_dir(fx->md[m], "cur"), 0);
            if (completed)
                assert_int_equal(count_dir(fx->md[m], "tmp"), 0);
            dir = xasprintf("%s/tmp", fx->md[m]);
            tu_rm_rf(dir);
            assert_int_equal(mkdir(dir, 0700), 0);
            free(dir);
        }
    }
    assert_true(completed);
}

/* ---- the deliverer: group commit from concurrent submitters --------------- */

#define GC_SUBMITTERS 4
#define GC_JOBS 50

struct gc {
    struct fx *fx;
    struct deliverer *d;
    pthread_t owner;
    int done;                 /* owner thread only */
    int ok;
    bool wrong_thread;
    bool missing_at_done;
};

struct gc_ctx {
    struct gc *gc;
    int n;
};

struct submitter {
    struct gc *gc;
    int first, count;
};

static atomic_int steps_fsync, steps_dirsync;

static int count_steps(const char *s)
{
    if (strcmp(s, "fsync") == 0)
        atomic_fetch_add(&steps_fsync, 1);
    else if (strcmp(s, "dirsync") == 0)
        atomic_fetch_add(&steps_dirsync, 1);
    return 0;
}

/* Is message n in root/new? */
static bool has_message(const char *root, int n)
{
    char *dir = xasprintf("%s/new", root), *want = xasprintf("\nmessage %d\n", n);
    size_t k;
    char **names = list_dir(dir, &k);
    bool found = false;

    for (size_t i = 0; i < k && !found; i++) {
        char *p = xasprintf("%s/%s", dir, names[i]), *data;
        size_t len;

        data = read_file(p, &len);
        found = strstr(data, want) != NULL;
        free(data);
        free(p);
    }
    free_list(names);
    free(dir);
    free(want);
    return found;
}

static void gc_done(void *ctx, struct deliver_job *job)
{
    struct gc_ctx *c = ctx;
    struct gc *gc = c->gc;

    if (!pthread_equal(pthread_self(), gc->owner))
        gc->wrong_thread = true;
    if (job->code == 250)
        gc->ok++;
    /* 250 means on disk now. */
    if (!has_message(gc->fx->md[c->n % 2], c->n))
        gc->missing_at_done = true;
    gc->done++;
    free(c);
    deliver_job_free(job);
}

/* The bench's callback: count, nothing else. */
static void bench_done(void *ctx, struct deliver_job *job)
{
    struct gc_ctx *c = ctx;

    if (job->code == 250)
        c->gc->ok++;
    c->gc->done++;
    free(c);
    deliver_job_free(job);
}

static struct deliver_job *gc_job(struct gc *gc, int n)
{
    char *data = xasprintf("Subject: %d\r\n\r\nmessage %d\r\n", n, n);
    struct deliver_job *job = job_new(data, gc->fx->qdir);
    struct gc_ctx *c = XNEW(struct gc_ctx);

    free(data);
    job_add_rcpt(job, n % 2 ? "carol@example.test" : "bob@example.test",
                 gc->fx->md[n % 2]);
    c->gc = gc;
    c->n = n;
    job->done = gc_done;
    job->ctx = c;
    return job;
}

static void *submit_thread(void *arg)
{
    struct submitter *s = arg;

    for (int i = s->first; i < s->first + s->count; i++)
        deliverer_submit(s->gc->d, gc_job(s->gc, i));
    return NULL;
}

/* Reap until done == want, waiting on the fd with a deadline. */
static void reap_until(struct deliverer *d, const int *done, int want, double timeout)
{
    double deadline = tu_now() + timeout;

    while (*done < want) {
        struct pollfd p = {deliverer_fd(d), POLLIN, 0};
        int ms = (int)((deadline - tu_now()) * 1000);

        if (ms <= 0)
            fail_msg("only %d of %d jobs completed in time", *done, want);
        if (poll(&p, 1, ms) > 0)
            deliverer_reap(d);
    }
}

static void group_commit_from_threads(void **state)
{
    struct fx *fx = *state;
    struct gc gc = {0};
    pthread_t th[GC_SUBMITTERS];
    struct submitter sub[GC_SUBMITTERS];
    struct err e;
    size_t n0, n1;

    gc.fx = fx;
    gc.owner = pthread_self();
    atomic_store(&steps_fsync, 0);
    atomic_store(&steps_dirsync, 0);
    deliver_step_hook = count_steps;
    assert_int_equal(deliverer_new(3, &gc.d, &e), 0);
    for (int t = 0; t < GC_SUBMITTERS; t++) {
        sub[t].gc = &gc;
        sub[t].first = t * (GC_JOBS / GC_SUBMITTERS);
        sub[t].count = t == GC_SUBMITTERS - 1 ? GC_JOBS - sub[t].first
                                               : GC_JOBS / GC_SUBMITTERS;
        assert_int_equal(pthread_create(&th[t], NULL, submit_thread, &sub[t]), 0);
    }
    for (int t = 0; t < GC_SUBMITTERS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    reap_until(gc.d, &gc.done, GC_JOBS, 60);
    deliverer_free(gc.d);
    deliver_step_hook = NULL;
    assert_int_equal(gc.done, GC_JOBS);
    assert_int_equal(gc.ok, GC_JOBS);
    assert_false(gc.wrong_thread);
    assert_false(gc.missing_at_done);
    n0 = count_dir(fx->md[0], "new");
    n1 = count_dir(fx->md[1], "new");
    assert_int_equal(n0 + n1, GC_JOBS);
    for (int i = 0; i < GC_JOBS; i++)
        assert_true(has_message(fx->md[i % 2], i));
    assert_int_equal(count_dir(fx->md[0], "tmp") + count_dir(fx->md[1], "tmp"), 0);
    assert_int_equal(atomic_load(&steps_fsync), GC_JOBS);
    assert_true(atomic_load(&steps_dirsync) <= GC_JOBS);
    print_message("group commit: %d jobs, %d directory syncs\n", GC_JOBS,
                  atomic_load(&steps_dirsync));
}

/* deliverer_free() finishes what was submitted and runs the callbacks. */
static void free_finishes_pending(void **state)
{
    struct fx *fx = *state;
    struct gc gc = {0};
    struct err e;

    gc.fx = fx;
    gc.owner = pthread_self();
    assert_int_equal(deliverer_new(2, &gc.d, &e), 0);
    for (int i = 0; i < 20; i++)
        deliverer_submit(gc.d, gc_job(&gc, i));
    deliverer_free(gc.d);
    assert_int_equal(gc.done, 20);
    assert_int_equal(gc.ok, 20);
    assert_false(gc.wrong_thread);
}

/* ---- bench (printed, not asserted) ---------------------------------------- */

#define BENCH_N 200

static void bench_single_vs_batched(void **state)
{
    struct fx *fx = *state;
    struct gc gc = {0};
    struct err e;
    double t0, single, batched;

    int syncs_single, syncs_batched;

    gc.fx = fx;
    gc.owner = pthread_self();
    atomic_store(&steps_dirsync, 0);
    deliver_step_hook = count_steps;
    t0 = tu_now();
    for (int i = 0; i < BENCH_N; i++) {
        struct deliver_job *job = gc_job(&gc, i);

        deliver_run_sync(job);
        assert_int_equal(job->code, 250);
        free(job->ctx);
        deliver_job_free(job);
    }
    single = tu_now() - t0;
    syncs_single = atomic_exchange(&steps_dirsync, 0);

    assert_int_equal(deliverer_new(4, &gc.d, &e), 0);
    t0 = tu_now();
    for (int i = 0; i < BENCH_N; i++) {
        struct deliver_job *job = gc_job(&gc, BENCH_N + i);

        job->done = bench_done;
        deliverer_submit(gc.d, job);
    }
    reap_until(gc.d, &gc.done, BENCH_N, 120);
    batched = tu_now() - t0;
    deliverer_free(gc.d);
    deliver_step_hook = NULL;
    syncs_batched = atomic_load(&steps_dirsync);
    assert_int_equal(gc.ok, BENCH_N);
    print_message("bench: %d messages one at a time: %.3f s (%.0f/s, %d directory syncs); "
                  "submitted together to 4 threads: %.3f s (%.0f/s, %d directory syncs)\n",
                  BENCH_N, single, BENCH_N / single, syncs_single, batched,
                  BENCH_N / batched, syncs_batched);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trace_headers_exact),
        cmocka_unit_test(trace_headers_variants),
        cmocka_unit_test(trace_headers_resist_injection),
        cmocka_unit_test(trace_headers_utf8),
        cmocka_unit_test(trace_headers_cut_utf8),
        cmocka_unit_test(trace_headers_respect_ceiling),
        FX_TEST(local_copies_crlf_to_lf),
        FX_TEST(same_maildir_once),
        FX_TEST(many_local_recipients),
        FX_TEST(remote_recipients_spooled),
        FX_TEST(success_reports),
        FX_TEST(failure_at_each_step),
        FX_TEST(no_queue_no_250),
        FX_TEST(crash_at_each_step),
        FX_TEST(crash_at_each_step_threads),
        FX_TEST(group_commit_from_threads),
        FX_TEST(free_finishes_pending),
        FX_TEST(bench_single_vs_batched),
    };

    setenv("TZ", "UTC", 1);
    tzset();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
