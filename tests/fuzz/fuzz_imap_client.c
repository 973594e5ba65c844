/*
 * fuzz_imap_client: the IMAP client (mua/imap.c and the mbox_imap backend)
 * on hostile server bytes.
 *
 * Byte 0 chooses the client's settings: bit 0 small limits (line, literal,
 * nesting), bit 1 a token command (AUTHENTICATE OAUTHBEARER / XOAUTH2)
 * instead of a password, bit 2 STARTTLS required (else cleartext is
 * acceptable), bit 3 no flag change after the load; bits 4-7 pick the
 * message whose flags change.  The rest is everything the server says:
 * a loopback server thread accepts one connection, sends those bytes as
 * fast as the client reads them, then ends its side, and keeps reading
 * what the client sends until the client hangs up.  The listening socket
 * closes once the connection is accepted, so the backend's reconnection
 * after a drop is refused at once.  The client runs the real path:
 * mailbox_open (greeting, CAPABILITY, STARTTLS, login), mailbox_load
 * (SELECT, UID FETCH of flags, UID FETCH of headers), a flag change (UID
 * STORE) and mailbox_close (LOGOUT).  Libetpan sees the bytes only through
 * the guard in mua/imap.c, as in the program.  The backend's pauses
 * between reconnection attempts are skipped: nanosleep() is replaced, and
 * returns at once on the thread running the client (other threads, the
 * fuzzer's own included, sleep normally); and the system's CA store is not
 * loaded for every connection (SSL_CERT_FILE and SSL_CERT_DIR point
 * nowhere): no certificate from these bytes could be verified anyway.
 *
 * One leak is not ours and is suppressed: libetpan's response parser
 * drops a partly built body section when a FETCH item such as
 * "BODY[HEADER.FIELDS (SUBJ {18}..." does not close its section (the
 * section spec, its header list and the parsed names stay allocated; the
 * parse fails, so nothing reaches our code to free).  The suppression
 * names the allocation at the root of that tree; our own FETCH sections
 * are built by the same function, but a leak of those would show in every
 * load of tests/unit/test_imap.c under LeakSanitizer.
 *
 * Checked (besides crashes, sanitizer reports and leaks): every record the
 * backend put in the store is named by a decimal UID, the UIDs strictly
 * ascending; subject, From name and address and tags are valid UTF-8; the
 * store's memory stays proportional to the input; the flag change is
 * either done or reported with an error text.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "err.h"
#include "fuzz_check.h"
#include "imap.h"
#include "mailbox.h"
#include "msg.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OPT_SMALL_LIMITS 0x01u
#define OPT_OAUTH        0x02u
#define OPT_NEED_TLS     0x04u
#define OPT_NO_STORE     0x08u
#define SERVER_WAIT_MS   5000      /* the server thread's longest wait */
#define CLIENT_TIMEOUT_MS 2000     /* per read; the server ends its side, so rarely reached */

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:mailimap_section_spec_new\n";
}

static _Thread_local bool in_client;

/* Replaces libc's: no pause while the client runs (the reconnection's
 * backoff after a drop would otherwise dominate every run). */
int nanosleep(const struct timespec *req, struct timespec *rem)
{
    int r;

    if (in_client)
        return 0;
    r = clock_nanosleep(CLOCK_MONOTONIC, 0, req, rem);
    if (r != 0) {
        errno = r;
        return -1;
    }
    return 0;
}

struct fake_server {
    int lfd;
    unsigned port;
    const uint8_t *script;
    size_t len;
    pthread_t tid;
};

/* Close without TIME_WAIT on either side: the client has hung up first
 * (or the wait ran out), so answer with a reset. */
static void close_reset(int fd)
{
    struct linger l = {1, 0};

    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static void *server_main(void *arg)
{
    struct fake_server *s = arg;
    struct pollfd pfd = {s->lfd, POLLIN, 0};
    size_t off = 0;
    bool shut = false;
    int fd;

    if (poll(&pfd, 1, SERVER_WAIT_MS) != 1)
        return NULL;
    fd = accept(s->lfd, NULL, NULL);
    close(s->lfd);          /* a reconnection is refused */
    s->lfd = -1;
    if (fd < 0)
        return NULL;
    for (;;) {
        struct pollfd q = {fd, POLLIN, 0};
        char b[4096];

        if (!shut && off == s->len) {
            shutdown(fd, SHUT_WR);
            shut = true;
        }
        if (!shut)
            q.events |= POLLOUT;
        if (poll(&q, 1, SERVER_WAIT_MS) != 1)
            break;
        if (q.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(fd, b, sizeof b);

            if (r <= 0)
                break;          /* the client hung up */
        }
        if (!shut && (q.revents & POLLOUT)) {
            ssize_t w = send(fd, s->script + off, s->len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                break;
            if (w > 0)
                off += (size_t)w;
        }
    }
    close_reset(fd);
    return NULL;
}

static bool server_start(struct fake_server *s, const uint8_t *script, size_t len)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;

    memset(s, 0, sizeof *s);
    s->script = script;
    s->len = len;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->lfd < 0)
        return false;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->lfd, 1) != 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &alen) != 0 ||
        pthread_create(&s->tid, NULL, server_main, s) != 0) {
        close(s->lfd);
        return false;
    }
    s->port = ntohs(a.sin_port);
    return true;
}

/* What the backend left in the store is sane. */
static void check_store(const struct mailbox *mb, size_t input_len)
{
    const struct store *st = &mb->store;
    uint64_t prev = 0;

    for (uint32_t i = 0; i < store_count(st); i++) {
        const struct store_msg *m = store_get(st, i);
        const char *name = store_str(st, m->name);
        uint64_t uid = 0;

        if (name[0] < '1' || name[0] > '9')
            fuzz_fail("a record not named by a UID", name, strlen(name));
        for (const char *p = name; *p != '\0'; p++) {
            if (*p < '0' || *p > '9' || uid > UINT32_MAX)
                fuzz_fail("a record not named by a UID", name, strlen(name));
            uid = uid * 10 + (uint64_t)(*p - '0');
        }
        if (uid > UINT32_MAX || uid <= prev)
            fuzz_fail("UIDs not strictly ascending", name, strlen(name));
        prev = uid;
        fuzz_check_utf8_str("subject", store_str(st, m->subject));
        fuzz_check_utf8_str("from", store_str(st, m->from));
        fuzz_check_utf8_str("from_addr", store_str(st, m->from_addr));
        fuzz_check_utf8_str("tags", store_str(st, m->tags));
    }
    if (store_mem(st) > ((size_t)1 << 20) + 256 * input_len) {
        char what[64];
        int n = snprintf(what, sizeof what, "%zu bytes for %zu of input", store_mem(st),
                         input_len);

        fuzz_fail("store memory out of proportion", what, (size_t)n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mailbox_open_opts o = {MAILBOX_NO_HCACHE, NULL};
    struct imap_settings s;
    struct fake_server srv;
    struct mailbox *mb = NULL;
    struct err e;
    char url[64];
    unsigned opt;
    int rc;

    if (size < 1)
        return 0;
    (void)setenv("SSL_CERT_FILE", "/nonexistent/correo-fuzz-ca.pem", 1);
    (void)setenv("SSL_CERT_DIR", "/nonexistent/correo-fuzz-ca", 1);
    opt = data[0];
    if (!server_start(&srv, data + 1, size - 1))
        abort();   /* loopback must work for this target */
    memset(&s, 0, sizeof s);
    s.pass = "secret";
    s.allow_plain = !(opt & OPT_NEED_TLS);
    s.timeout_ms = CLIENT_TIMEOUT_MS;
    if (opt & OPT_OAUTH)
        s.oauth_cmd = "echo tok-fuzz";
    if (opt & OPT_SMALL_LIMITS) {
        s.limits.line_max = 512;
        s.limits.literal_max = 2048;
        s.limits.depth_max = 6;
    }
    imap_settings_set(&s);
    snprintf(url, sizeof url, "imap://alice@127.0.0.1:%u/INBOX", srv.port);
    memset(&e, 0, sizeof e);
    in_client = true;
    rc = mailbox_open_opts(url, &o, &mb, &e);
    if (rc == 0) {
        rc = mailbox_load(mb, NULL, NULL, &e);
        if (rc != 0 && e.text[0] == '\0')
            fuzz_fail("a failed load without an error text", "", 0);
        check_store(mb, size);
        if (rc == 0 && !(opt & OPT_NO_STORE) && store_count(&mb->store) > 0) {
            uint32_t idx = (opt >> 4) % store_count(&mb->store);
            const struct store_msg *m = store_get(&mb->store, idx);

            memset(&e, 0, sizeof e);
            if (mb->ops->set_flags(mb, idx, m->flags ^ (MSG_FLAGGED | MSG_SEEN), &e) != 0 &&
                e.text[0] == '\0')
                fuzz_fail("a failed flag change without an error text", "", 0);
            check_store(mb, size);
        }
        mailbox_close(mb);
    } else if (e.text[0] == '\0') {
        fuzz_fail("a failed open without an error text", "", 0);
    }
    in_client = false;
    pthread_join(srv.tid, NULL);
    if (srv.lfd >= 0)
        close(srv.lfd);
    imap_settings_set(NULL);
    return 0;
}
