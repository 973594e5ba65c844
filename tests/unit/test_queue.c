/* Tests for localserver/queue: the spool format round trip with hostile
 * envelope values, durability of spooling and of state rewrites under a
 * crash at each step, list order, removal, the lock and its tidying, and
 * quarantine of malformed entries. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "queue.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

static char *qdir_new(void)
{
    char *dir = tu_tmpdir("queue");
    char *q = xasprintf("%s/q", dir);
    struct err e;

    assert_int_equal(queue_init(q, &e), 0);
    free(dir);
    return q;
}

static void qdir_free(char *q)
{
    char *dir = xstrndup(q, strlen(q) - 2);

    tu_rm_rf(dir);
    free(dir);
    free(q);
}

static size_t count_dir(const char *q, const char *sub)
{
    char *p = xasprintf("%s/%s", q, sub);
    DIR *d = opendir(p);
    struct dirent *de;
    size_t n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.')
            n++;
    }
    closedir(d);
    free(p);
    return n;
}

static char *read_data(const char *q, const char *id, size_t *len)
{
    struct err e;
    int fd;
    struct buf b = BUF_INIT;

    assert_int_equal(queue_open_data(q, id, &fd, len, &e), 0);
    assert_int_equal(buf_read_all(&b, fd), 0);
    close(fd);
    assert_int_equal(b.len, *len);
    return buf_steal(&b, len);
}

static void env_init(struct smtp_envelope *env, const char *from)
{
    memset(env, 0, sizeof(*env));
    env->mail_from = (char *)(uintptr_t)from;
}

static const char msg_text[] = "Received: from x\r\nSubject: hi\r\n\r\nbody\r\n.\r\n..\r\n";

static void spool_simple(const char *q, char id[QUEUE_ID_MAX])
{
    struct smtp_envelope env;
    struct queue_rcpt r = { .addr = (char *)(uintptr_t)"bob@remote.test" };
    struct err e;

    env_init(&env, "alice@example.test");
    assert_int_equal(queue_spool(q, &env, &r, 1, msg_text, strlen(msg_text), id, &e), 0);
}

/* ---- round trip --------------------------------------------------------- */

struct hostile {
    const char *from;
    const char *envid;
    const char *auth;
    const char *addr;
    const char *orcpt;
    const char *maildir;
    const char *reply;
};

static const struct hostile hostile_cases[] = {
    { "", NULL, NULL, "a@b", NULL, NULL, NULL },
    { "-", "-", "-", "-", "-", "-", "-" },
    { "=", "=%", "%00", "%41@x", "=", "%", "=%25" },
    { "a b@c", "id\r\nrcpt =evil 0 - -", "user\nattempts 9", "x\r\ndata 0\r\n@y",
      "rfc822;x@y", "/tmp/md dir/\n", "550 5.1.1 <x>\r\nend\n" },
    { "\xc3\xa9l\xc3\xa8ve@\xc3\xa9x.test", "\x7f\x01\x1b[31m", "\xff\xfe",
      "\xe2\x80\xae@rtl", "utf-8;\xc3\xa9", "/m/\t", "\x1b]0;title\x07" },
    { "end", "end", "end", "end", "end", "end", "end\nend\n" },
};

static void test_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(hostile_cases); i++) {
        const struct hostile *h = &hostile_cases[i];
        char *q = qdir_new();
        struct smtp_envelope env;
        struct queue_rcpt r[2] = {
            { .addr = (char *)(uintptr_t)h->addr, .orcpt = (char *)(uintptr_t)h->orcpt,
              .local_maildir = (char *)(uintptr_t)h->maildir,
              .notify = SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY,
              .last_reply = (char *)(uintptr_t)h->reply },
            { .addr = (char *)(uintptr_t)"plain@remote.test", .state = QRCPT_DELIVERED },
        };
        char id[QUEUE_ID_MAX];
        struct queue_entry *qe;
        struct err e;
        char *data;
        size_t len;

        env_init(&env, h->from);
        env.envid = (char *)(uintptr_t)h->envid;
        env.auth_user = (char *)(uintptr_t)h->auth;
        env.ret = SMTP_RET_HDRS;
        env.body = SMTP_BODY_8BITMIME;
        env.smtputf8 = true;
        assert_int_equal(queue_spool(q, &env, r, 2, msg_text, strlen(msg_text), id, &e), 0);
        assert_true(strlen(id) > 0);
        for (const char *p = id; *p; p++)
            assert_true((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z'));

        assert_int_equal(queue_load(q, id, &qe, &e), 0);
        assert_string_equal(qe->id, id);
        assert_string_equal(qe->mail_from, h->from);
        if (h->envid)
            assert_string_equal(qe->envid, h->envid);
        else
            assert_null(qe->envid);
        if (h->auth)
            assert_string_equal(qe->auth_user, h->auth);
        else
            assert_null(qe->auth_user);
        assert_int_equal(qe->ret, SMTP_RET_HDRS);
        assert_int_equal(qe->body, SMTP_BODY_8BITMIME);
        assert_true(qe->smtputf8);
        assert_int_equal(qe->n_rcpts, 2);
        assert_string_equal(qe->rcpts[0].addr, h->addr);
        if (h->orcpt)
            assert_string_equal(qe->rcpts[0].orcpt, h->orcpt);
        else
            assert_null(qe->rcpts[0].orcpt);
        if (h->maildir)
            assert_string_equal(qe->rcpts[0].local_maildir, h->maildir);
        else
            assert_null(qe->rcpts[0].local_maildir);
        if (h->reply)
            assert_string_equal(qe->rcpts[0].last_reply, h->reply);
        else
            assert_null(qe->rcpts[0].last_reply);
        assert_int_equal(qe->rcpts[0].notify, SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY);
        assert_int_equal(qe->rcpts[0].state, QRCPT_PENDING);
        assert_int_equal(qe->rcpts[1].state, QRCPT_DELIVERED);
        assert_string_equal(qe->rcpts[1].addr, "plain@remote.test");
        assert_int_equal(qe->data_size, strlen(msg_text));
        assert_int_equal(qe->attempts, 0);
        assert_false(qe->delay_notified);
        assert_true(qe->created > 0 && qe->next_attempt >= qe->created);

        /* state round trip with hostile replies */
        qe->attempts = 3;
        qe->next_attempt = 1234567890;
        qe->delay_notified = true;
        qe->rcpts[0].state = QRCPT_FAILED;
        free(qe->rcpts[1].last_reply);
        qe->rcpts[1].last_reply = xstrdup(h->reply ? h->reply : "250 ok");
        assert_int_equal(queue_save_state(q, qe, &e), 0);
        queue_entry_free(qe);
        assert_int_equal(queue_load(q, id, &qe, &e), 0);
        assert_int_equal(qe->attempts, 3);
        assert_int_equal(qe->next_attempt, 1234567890);
        assert_true(qe->delay_notified);
        assert_int_equal(qe->rcpts[0].state, QRCPT_FAILED);
        assert_string_equal(qe->rcpts[1].last_reply, h->reply ? h->reply : "250 ok");
        queue_entry_free(qe);

        data = read_data(q, id, &len);
        assert_int_equal(len, strlen(msg_text));
        assert_memory_equal(data, msg_text, len);
        free(data);
        assert_int_equal(count_dir(q, "tmp"), 0);
        qdir_free(q);
    }
}

/* Binary data, including NUL and bytes looking like the envelope block. */
static void test_binary_data(void **state)
{
    static const char data[] = "data 5\n\0\r\nrcpt =x 0 - -\nend\n\xff";
    char *q = qdir_new();
    struct smtp_envelope env;
    struct queue_rcpt r = { .addr = (char *)(uintptr_t)"a@b" };
    char id[QUEUE_ID_MAX];
    struct queue_entry *qe;
    struct err e;
    char *got;
    size_t len;

    (void)state;
    env_init(&env, "x@y");
    assert_int_equal(queue_spool(q, &env, &r, 1, data, sizeof(data), id, &e), 0);
    assert_int_equal(queue_load(q, id, &qe, &e), 0);
    assert_int_equal(qe->data_size, sizeof(data));
    queue_entry_free(qe);
    got = read_data(q, id, &len);
    assert_int_equal(len, sizeof(data));
    assert_memory_equal(got, data, len);
    free(got);

    /* empty data */
    assert_int_equal(queue_spool(q, &env, &r, 1, "", 0, id, &e), 0);
    got = read_data(q, id, &len);
    assert_int_equal(len, 0);
    free(got);
    qdir_free(q);
}

static void test_bad_args(void **state)
{
    static const char *const bad_ids[] = { "", "abc", "../msg/X", "A/B", "A.B",
        "0123456789012345678901234567890123456789X" };
    char *q = qdir_new();
    struct queue_entry *qe;
    struct smtp_envelope env;
    char id[QUEUE_ID_MAX];
    struct err e;
    int fd;
    size_t len;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(bad_ids); i++) {
        assert_int_equal(queue_load(q, bad_ids[i], &qe, &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
        assert_int_equal(queue_open_data(q, bad_ids[i], &fd, &len, &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
        assert_int_equal(queue_remove(q, bad_ids[i], &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
    }
    assert_int_equal(queue_load(q, "ZZZZ", &qe, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    assert_int_equal(queue_remove(q, "ZZZZ", &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    env_init(&env, "x@y");
    assert_int_equal(queue_spool(q, &env, NULL, 0, "x", 1, id, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(count_dir(q, "msg"), 0);
    qdir_free(q);
}

/* ---- list, remove, lock ------------------------------------------------- */

static void test_list_order_remove(void **state)
{
    char *q = qdir_new();
    char ids[5][QUEUE_ID_MAX];
    char **list;
    size_t n;
    struct err e;
    int fd, fd2;

    (void)state;
    for (size_t i = 0; i < 5; i++)
        spool_simple(q, ids[i]);
    assert_int_equal(queue_list(q, &list, &n, &e), 0);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(list[i], ids[i]);
        free(list[i]);
    }
    free(list);

    /* ids from an earlier second sort first, whatever the directory order */
    assert_int_equal(queue_remove(q, ids[2], &e), 0);
    assert_int_equal(queue_list(q, &list, &n, &e), 0);
    assert_int_equal(n, 4);
    assert_string_equal(list[0], ids[0]);
    assert_string_equal(list[2], ids[3]);
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
    assert_int_equal(count_dir(q, "state"), 4);

    /* interrupted removal: state gone, message left: not listed, tidied */
    {
        char *sp = xasprintf("%s/state/%s", q, ids[0]);

        assert_int_equal(unlink(sp), 0);
        free(sp);
    }
    assert_int_equal(queue_list(q, &list, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_string_equal(list[0], ids[1]);
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
    assert_int_equal(count_dir(q, "msg"), 4);

    assert_int_equal(queue_lock(q, &fd, &e), 0);
    assert_int_equal(count_dir(q, "msg"), 3);
    assert_int_equal(queue_lock(q, &fd2, &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);
    close(fd);
    assert_int_equal(queue_lock(q, &fd2, &e), 0);
    close(fd2);
    qdir_free(q);
}

/* The lock is held across processes and released by death. */
static void test_lock_other_process(void **state)
{
    char *q = qdir_new();
    int fds[2], fd;
    pid_t pid;
    char c;
    struct err e;
    int status;

    (void)state;
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int lfd;

        if (queue_lock(q, &lfd, NULL) < 0)
            _exit(1);
        if (write(fds[1], "x", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], &c, 1), 1);
    assert_int_equal(queue_lock(q, &fd, &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(queue_lock(q, &fd, &e), 0);
    close(fd);
    close(fds[0]);
    qdir_free(q);
}

/* ---- durability --------------------------------------------------------- */

static const char *crash_at;
static unsigned crash_seen;
static unsigned crash_nth;
static bool crash_fail;     /* fail the step instead of dying */

static int crash_hook(const char *name)
{
    if (strcmp(name, crash_at) == 0 && ++crash_seen == crash_nth) {
        if (crash_fail)
            return -1;
        _exit(77);
    }
    return 0;
}

static const char *const spool_steps[] = {
    "write", "fsync", "rename-state", "dirsync-state", "rename-msg", "dirsync-msg",
};

/* Check the queue holds nothing or one whole entry equal to what was
 * spooled; returns how many entries. */
static size_t check_whole(const char *q)
{
    char **list;
    size_t n, len;
    struct err e;
    struct queue_entry *qe;
    char *data;

    assert_int_equal(queue_list(q, &list, &n, &e), 0);
    assert_true(n <= 1);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(queue_load(q, list[i], &qe, &e), 0);
        assert_string_equal(qe->mail_from, "alice@example.test");
        assert_int_equal(qe->n_rcpts, 1);
        queue_entry_free(qe);
        data = read_data(q, list[i], &len);
        assert_int_equal(len, strlen(msg_text));
        assert_memory_equal(data, msg_text, len);
        free(data);
        free(list[i]);
    }
    free(list);
    return n;
}

static void test_spool_crash(void **state)
{
    (void)state;
    for (size_t s = 0; s < ARRAY_LEN(spool_steps); s++) {
        /* "write" and "fsync" happen twice: state file, then message */
        unsigned max_nth = s < 2 ? 2 : 1;

        for (unsigned nth = 1; nth <= max_nth; nth++) {
            for (int mode = 0; mode < 2; mode++) {
                char *q = qdir_new();
                pid_t pid;
                int status, fd;
                struct err e;
                size_t n;

                crash_at = spool_steps[s];
                crash_nth = nth;
                crash_seen = 0;
                crash_fail = mode == 1;
                pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                    char id[QUEUE_ID_MAX];
                    struct smtp_envelope env;
                    struct queue_rcpt r = { .addr = (char *)(uintptr_t)"bob@remote.test" };
                    int rc;

                    env_init(&env, "alice@example.test");
                    queue_step_hook = crash_hook;
                    rc = queue_spool(q, &env, &r, 1, msg_text, strlen(msg_text), id, NULL);
                    _exit(rc == 0 ? 0 : 1);
                }
                assert_int_equal(waitpid(pid, &status, 0), pid);
                assert_true(WIFEXITED(status));
                n = check_whole(q);
                if (mode == 0) {
                    assert_int_equal(WEXITSTATUS(status), 77);
                    /* Before the message is linked there is no entry; at
                     * its directory sync the entry exists already. */
                    assert_int_equal(n, strcmp(spool_steps[s], "dirsync-msg") == 0 ? 1 : 0);
                } else {
                    /* a failed step: an error and nothing in the queue */
                    assert_int_equal(WEXITSTATUS(status), 1);
                    assert_int_equal(n, 0);
                    assert_int_equal(count_dir(q, "tmp"), 0);
                    assert_int_equal(count_dir(q, "state"), 0);
                }
                /* the lock holder clears the debris of the dead writer */
                assert_int_equal(queue_lock(q, &fd, &e), 0);
                close(fd);
                assert_int_equal(count_dir(q, "tmp"), 0);
                assert_int_equal(count_dir(q, "state"), n);
                assert_int_equal(count_dir(q, "msg"), n);
                assert_int_equal(check_whole(q), n);
                qdir_free(q);
            }
        }
    }
}

static const char *const save_steps[] = { "write", "fsync", "rename-state", "dirsync-state" };

static void test_save_state_crash(void **state)
{
    (void)state;
    for (size_t s = 0; s < ARRAY_LEN(save_steps); s++) {
        for (int mode = 0; mode < 2; mode++) {
            char *q = qdir_new();
            char id[QUEUE_ID_MAX];
            struct queue_entry *qe;
            struct err e;
            pid_t pid;
            int status, fd;

            spool_simple(q, id);
            crash_at = save_steps[s];
            crash_nth = 1;
            crash_seen = 0;
            crash_fail = mode == 1;
            pid = fork();
            assert_true(pid >= 0);
            if (pid == 0) {
                struct queue_entry *cq;

                if (queue_load(q, id, &cq, NULL) < 0)
                    _exit(2);
                cq->attempts = 7;
                cq->rcpts[0].state = QRCPT_DELIVERED;
                cq->rcpts[0].last_reply = xstrdup("250 2.0.0 taken");
                queue_step_hook = crash_hook;
                _exit(queue_save_state(q, cq, NULL) == 0 ? 0 : 1);
            }
            assert_int_equal(waitpid(pid, &status, 0), pid);
            assert_true(WIFEXITED(status));
            assert_int_equal(WEXITSTATUS(status), mode == 0 ? 77 : 1);
            assert_int_equal(queue_lock(q, &fd, &e), 0);
            close(fd);
            assert_int_equal(queue_load(q, id, &qe, &e), 0);
            /* old or new, never a mix or nothing */
            if (qe->attempts == 7) {
                assert_int_equal(qe->rcpts[0].state, QRCPT_DELIVERED);
                assert_string_equal(qe->rcpts[0].last_reply, "250 2.0.0 taken");
            } else {
                assert_int_equal(qe->attempts, 0);
                assert_int_equal(qe->rcpts[0].state, QRCPT_PENDING);
                assert_null(qe->rcpts[0].last_reply);
            }
            if (strcmp(save_steps[s], "dirsync-state") == 0)
                assert_int_equal(qe->attempts, 7);
            else
                assert_int_equal(qe->attempts, 0);
            queue_entry_free(qe);
            assert_int_equal(count_dir(q, "tmp"), 0);
            qdir_free(q);
        }
    }
}

/* ---- corrupt entries ---------------------------------------------------- */

static void overwrite(const char *q, const char *sub, const char *id, const char *text,
                      long truncate_by)
{
    char *p = xasprintf("%s/%s/%s", q, sub, id);

    if (text) {
        int fd = open(p, O_WRONLY | O_TRUNC);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
    } else {
        struct stat st;

        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(truncate(p, st.st_size - truncate_by), 0);
    }
    free(p);
}

static void test_corrupt(void **state)
{
    static const struct {
        const char *sub;
        const char *text;       /* NULL: truncate */
        long cut;
    } cases[] = {
        { "state", "garbage\n", 0 },
        { "state", "", 0 },
        { "state", NULL, 4 },                         /* "end\n" lost */
        { "msg", NULL, 3 },                           /* data cut */
        { "msg", "correod-queue 2\n", 0 },            /* unknown version */
        { "msg", "correod-queue 1\nid X\n", 0 },
        { "state", "correod-queue-state 1\nid %s\nattempts 1\nnext 1\n"
                   "delay_notified 0\nrcpts 1\nrcpt maybe -\nend\n", 0 },
        { "state", "correod-queue-state 1\nid %s\nattempts 1\nnext 1\n"
                   "delay_notified 0\nrcpts 1\nrcpt pending =%%0\nend\n", 0 },
        { "state", "correod-queue-state 1\nid %s\nattempts 1\nnext 1\n"
                   "delay_notified 0\nrcpts 1\nrcpt pending =a%%00b\nend\n", 0 },
        { "state", "correod-queue-state 1\nid %s\nattempts 1\nnext 1\n"
                   "delay_notified 0\nrcpts 2\nrcpt pending -\nrcpt pending -\nend\n", 0 },
        { "state", "correod-queue-state 1\nid %s\nattempts 99999999999999999999\nnext 1\n"
                   "delay_notified 0\nrcpts 1\nrcpt pending -\nend\n", 0 },
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *q = qdir_new();
        char id[QUEUE_ID_MAX], ok_id[QUEUE_ID_MAX];
        struct queue_entry *qe;
        struct err e;
        char **list;
        size_t n;
        char *text = NULL;

        spool_simple(q, id);
        spool_simple(q, ok_id);
        if (cases[i].text)
            text = xasprintf(cases[i].text, id);
        overwrite(q, cases[i].sub, id, text, cases[i].cut);
        free(text);
        assert_int_equal(queue_load(q, id, &qe, &e), -1);
        assert_int_equal(e.code, ERR_PARSE);
        assert_non_null(strstr(e.text, "corrupt"));
        /* moved aside, both files kept */
        assert_int_equal(count_dir(q, "corrupt"), 2);
        assert_int_equal(queue_list(q, &list, &n, &e), 0);
        assert_int_equal(n, 1);
        assert_string_equal(list[0], ok_id);
        free(list[0]);
        free(list);
        assert_int_equal(queue_load(q, ok_id, &qe, &e), 0);
        queue_entry_free(qe);
        qdir_free(q);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_binary_data),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_list_order_remove),
        cmocka_unit_test(test_lock_other_process),
        cmocka_unit_test(test_spool_crash),
        cmocka_unit_test(test_save_state_crash),
        cmocka_unit_test(test_corrupt),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
