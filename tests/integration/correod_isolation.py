"""correod_isolation: one session's crash or hang never reaches the others.

usage: correod_isolation.py CORREOD_EXE SOURCE_ROOT

With the default configuration (worker_sessions 1: each session its own
process):
  - five SMTP sessions stopped mid-transaction (after RCPT) and two POP3
    sessions logged in; the process serving ONE SMTP session (found by the
    client's port: the socket inode from /proc/net/tcp, then the child whose
    /proc/PID/fd holds it) is killed with SIGKILL.  Its client sees the
    connection end; the four other SMTP sessions finish DATA with 250 and
    their messages are in the Maildir; both POP3 sessions RETR, DELE and
    QUIT and the files are gone; a new connection is served.
  - SIGSTOP on one session's process: two other sessions finish their
    transactions with every reply within a deadline, the watchdog kills the
    stopped process and its client sees the connection close.
  - a POP3 login on a maildrop of 20,000 messages without cached sizes (each
    file read at open) does not delay SMTP transactions running meanwhile:
    every SMTP reply arrives within a deadline while the login is under way.
  - more sessions than `workers` are served at once (workers are started on
    demand), with a spare one ready.
  - with worker_sessions 0 (every session in one worker): a POP3 QUIT that
    deletes thousands of messages (the UPDATE state, on a thread) does not
    hold up SMTP replies of the same process.
"""
import os
import poplib
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correod_fixture import Correod, wait_until  # noqa: E402

NAME = "correod_isolation"
DOMAIN = "example.test"
USERS = {"alice": "alice-iso-1", "bob": "bob-iso-2", "carol": "carol-iso-3",
         "dave": "dave-iso-4"}
REPLY_DEADLINE = 2.0        # seconds: an SMTP reply later than this is "delayed"
HUGE = 20000

passed = 0
failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok: %s" % what)
    else:
        failed += 1
        print("FAIL: %s%s" % (what, ("\n    " + str(detail)) if detail else ""))
    sys.stdout.flush()


# ---- finding the process that serves a client -------------------------------

def children(pid):
    r = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return {int(x) for x in r.stdout.split()}


def socket_inode(server_port, client_port):
    """The inode of the server-side socket of the connection client_port ->
    server_port on 127.0.0.1, from /proc/net/tcp."""
    want_local = "0100007F:%04X" % server_port
    want_rem = "0100007F:%04X" % client_port
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[1] == want_local and parts[2] == want_rem:
                return int(parts[9])
    return None


def serving_pid(d, server_port, sock):
    """The correod child whose descriptors hold this client's connection."""
    inode = socket_inode(server_port, sock.getsockname()[1])
    if not inode:
        return None
    target = "socket:[%d]" % inode
    for pid in children(d.pid):
        fd_dir = "/proc/%d/fd" % pid
        try:
            for fd in os.listdir(fd_dir):
                try:
                    if os.readlink(os.path.join(fd_dir, fd)) == target:
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


def wait_serving_pid(d, server_port, sock):
    box = [None]

    def found():
        box[0] = serving_pid(d, server_port, sock)
        return box[0] is not None
    wait_until(found, timeout=10, what="the process serving a client")
    return box[0]


def connection_closed(sock, timeout):
    """True when the peer closes (EOF or reset) within timeout seconds."""
    sock.settimeout(timeout)
    try:
        while True:
            b = sock.recv(4096)
            if not b:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


# ---- clients ------------------------------------------------------------------

def message(tag):
    return ("From: iso@remote.test\r\nTo: x@%s\r\nSubject: %s\r\n\r\nbody of %s\r\n"
            % (DOMAIN, tag, tag)).encode()


def smtp_open(d, rcpt):
    s = smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=30)
    s.ehlo("client.test")
    code, _ = s.mail("iso@remote.test")
    assert code == 250, code
    code, _ = s.rcpt(rcpt)
    assert code == 250, code
    return s


def smtp_finish(s, tag):
    code, resp = s.data(message(tag))
    try:
        s.quit()
    except (smtplib.SMTPException, OSError):
        pass
    return code, resp


def drop(d, local, data, name):
    md = d.maildir(local)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    with open(os.path.join(md, "new", name), "wb") as f:
        f.write(data)


def pop_login(d, user):
    p = poplib.POP3("127.0.0.1", d.port("pop3"), timeout=120)
    p.user("%s@%s" % (user, DOMAIN))
    p.pass_(USERS[user])
    return p


def has_message(d, local, tag):
    needle = ("Subject: %s\r\n" % tag).encode()
    return any(needle in m or needle.replace(b"\r\n", b"\n") in m
               for m in d.messages(local))


# ---- the cases ---------------------------------------------------------------

def t_kill_one_session(d):
    for user in ("alice", "bob"):
        for i in range(2):
            drop(d, user, b"Subject: pop %s %d\n\nhello\n" % (user.encode(), i),
                 "100000%d.M%dP1.iso" % (i, i))
    smtps = [smtp_open(d, "dave@" + DOMAIN) for _ in range(5)]
    pops = [pop_login(d, "alice"), pop_login(d, "bob")]
    pids = [wait_serving_pid(d, d.port("smtp"), s.sock) for s in smtps]
    pids += [wait_serving_pid(d, d.port("pop3"), p.sock) for p in pops]
    check(len(set(pids)) == 7, "seven sessions, seven processes (worker_sessions 1)", pids)
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in children(d.pid), timeout=10, what="the victim to go")
    check(connection_closed(smtps[0].sock, 10), "the killed session's client sees the close")

    for i, s in enumerate(smtps[1:], 1):
        code, resp = smtp_finish(s, "survivor-%d" % i)
        check(code == 250, "SMTP session %d finishes its transaction after the kill" % i,
              (code, resp))
    for i in range(1, 5):
        check(has_message(d, "dave", "survivor-%d" % i),
              "message of SMTP session %d delivered" % i)
    check(not has_message(d, "dave", "survivor-0"), "nothing from the killed session")
    for p, user in zip(pops, ("alice", "bob")):
        n, _ = p.stat()
        ok = n == 2
        for i in range(1, n + 1):
            _, lines, _ = p.retr(i)
            ok = ok and any(b"hello" in ln for ln in lines)
            p.dele(i)
        resp = p.quit()
        check(ok and resp.startswith(b"+OK"), "POP3 session of %s: RETR, DELE, QUIT" % user,
              (n, resp))
        left = [f for sub in ("new", "cur") for f in os.listdir(os.path.join(d.maildir(user), sub))]
        check(left == [], "POP3 deletions of %s done" % user, left)
    code, resp = smtp_finish(smtp_open(d, "dave@" + DOMAIN), "after-kill")
    check(code == 250, "the server keeps accepting after the kill", (code, resp))
    check(re.search(r"worker \d+ \(pid %d\) killed by signal 9" % victim, d.log()) is not None,
          "the supervisor logs the killed worker")


def t_stop_one_session(d):
    stuck = smtp_open(d, "dave@" + DOMAIN)
    others = [smtp_open(d, "dave@" + DOMAIN) for _ in range(2)]
    pid = wait_serving_pid(d, d.port("smtp"), stuck.sock)
    other_pids = [wait_serving_pid(d, d.port("smtp"), s.sock) for s in others]
    check(pid not in other_pids, "the stopped session has a process of its own",
          (pid, other_pids))
    os.kill(pid, signal.SIGSTOP)
    try:
        for i, s in enumerate(others):
            t0 = time.monotonic()
            code, resp = smtp_finish(s, "beside-stopped-%d" % i)
            dt = time.monotonic() - t0
            check(code == 250 and dt < REPLY_DEADLINE,
                  "session %d beside the stopped one finishes in time" % i, (code, resp, dt))
        t0 = time.monotonic()
        code, _ = smtp_finish(smtp_open(d, "dave@" + DOMAIN), "new-beside-stopped")
        check(code == 250 and time.monotonic() - t0 < REPLY_DEADLINE,
              "a new session beside the stopped one is served in time")
        t0 = time.monotonic()
        closed = connection_closed(stuck.sock, 25)
        check(closed, "the watchdog kills the stopped process and its client sees the close",
              time.monotonic() - t0)
        check(re.search(r"worker \d+ \(pid %d\) silent for" % pid, d.log()) is not None,
              "the supervisor logs the hang")
        wait_until(lambda: pid not in children(d.pid), timeout=10, what="the stopped worker")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    code, _ = smtp_finish(smtp_open(d, "dave@" + DOMAIN), "after-stop")
    check(code == 250, "the server keeps accepting after the hang")


def t_huge_maildrop(d):
    md = d.maildir("carol")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    body = b"Subject: bulk\n\n" + b"line of a bulk message\n" * 40
    for i in range(HUGE):
        # no ,S= or ,W= in the name and no uidlist: every size read at open
        with open(os.path.join(md, "new", "170000%05d.M%dP7.bulk" % (i, i)), "wb") as f:
            f.write(body)

    result = {}

    def login():
        t0 = time.monotonic()
        try:
            p = pop_login(d, "carol")
            result["stat"] = p.stat()
            result["secs"] = time.monotonic() - t0
            p.quit()
        except Exception as ex:   # reported below
            result["error"] = repr(ex)

    th = threading.Thread(target=login)
    s = smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=30)
    s.ehlo("client.test")
    th.start()
    worst, n = 0.0, 0
    deadline = time.monotonic() + 120
    while th.is_alive() and time.monotonic() < deadline:
        for cmd in (lambda: s.mail("iso@remote.test"), lambda: s.rcpt("dave@" + DOMAIN),
                    lambda: s.data(message("during-login-%d" % n))):
            t0 = time.monotonic()
            code, _ = cmd()
            worst = max(worst, time.monotonic() - t0)
            if code != 250:
                check(False, "SMTP transaction during the login", code)
                break
        n += 1
        # and a fresh connection each round: accepting is not delayed either
        t0 = time.monotonic()
        c = smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=30)
        c.noop()
        c.quit()
        worst = max(worst, time.monotonic() - t0)
    th.join(timeout=180)
    s.quit()
    check("error" not in result and result.get("stat", (0,))[0] == HUGE,
          "POP3 login on %d messages" % HUGE, result)
    print("info: POP3 login on %d messages took %.2f s; %d SMTP transactions meanwhile, "
          "slowest reply %.3f s" % (HUGE, result.get("secs", -1), n, worst))
    check(n >= 1, "at least one SMTP transaction ran during the login", n)
    check(worst < REPLY_DEADLINE, "no SMTP reply delayed by the login (slowest %.3f s)" % worst)


def t_on_demand(d):
    sessions = [smtp_open(d, "dave@" + DOMAIN) for _ in range(9)]
    pids = {wait_serving_pid(d, d.port("smtp"), s.sock) for s in sessions}
    check(len(pids) == 9, "nine concurrent sessions in nine processes", pids)
    # `workers 2` plus the queue runner: the rest were started on demand,
    # and one more waits with room for the next connection.
    wait_until(lambda: len(children(d.pid)) >= 11, timeout=10,
               what="a spare worker beside nine full ones")
    check(len(children(d.pid)) >= 11, "workers started on demand, one spare",
          len(children(d.pid)))
    for i, s in enumerate(sessions):
        code, _ = smtp_finish(s, "demand-%d" % i)
        check(code == 250, "on-demand session %d delivered" % i)


def t_update_off_loop(exe, tmp):
    """worker_sessions 0, one worker: every session in the same loop.  The
    POP3 UPDATE (unlinking thousands of files at QUIT) runs on a thread, so
    SMTP replies in the same process stay prompt meanwhile."""
    n_msgs = 15000
    os.makedirs(os.path.join(tmp, "shared"))
    with Correod(exe, os.path.join(tmp, "shared"),
                 conf_extra="auth_allow_plaintext_loopback yes\nworker_sessions 0\n"
                            "workers 1\nmax_workers 1") as d:
        d.add_user("carol@" + DOMAIN, USERS["carol"])
        d.add_user("dave@" + DOMAIN, USERS["dave"])
        md = d.maildir("carol")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
        for i in range(n_msgs):
            with open(os.path.join(md, "new", "171000%05d.M%dP9.del" % (i, i)), "wb") as f:
                f.write(b"Subject: to delete\n\nbye\n")
        p = pop_login(d, "carol")
        s = smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=30)
        s.ehlo("client.test")
        check(serving_pid(d, d.port("pop3"), p.sock) == serving_pid(d, d.port("smtp"), s.sock),
              "worker_sessions 0: POP3 and SMTP sessions in one process")
        # DELE everything, pipelined (the server answers in order)
        p.sock.sendall(b"".join(b"DELE %d\r\n" % i for i in range(1, n_msgs + 1)))
        for _ in range(n_msgs):
            p._getresp()
        result = {}

        def quit_():
            t0 = time.monotonic()
            try:
                result["resp"] = p.quit()
            except Exception as ex:   # reported below
                result["resp"] = repr(ex)
            result["secs"] = time.monotonic() - t0

        th = threading.Thread(target=quit_)
        th.start()
        worst, n = 0.0, 0
        while th.is_alive() and n < 100000:
            t0 = time.monotonic()
            code, _ = s.noop()
            worst = max(worst, time.monotonic() - t0)
            n += 1
            if code != 250:
                break
        th.join(timeout=120)
        s.quit()
        d.stop()
        sanitizer_clean(d, "shared-worker instance's")
        left = len(os.listdir(os.path.join(md, "new"))) + len(os.listdir(os.path.join(md, "cur")))
        check(str(result.get("resp", "")).startswith("b'+OK") and left == 0,
              "QUIT deleted %d messages" % n_msgs, (result, left))
        print("info: UPDATE of %d deletions took %.2f s; %d SMTP NOOPs meanwhile in the same "
              "worker, slowest %.3f s" % (n_msgs, result.get("secs", -1), n, worst))
        # Meaningful only when the update took a while: then no reply may
        # have waited for most of it.
        if result.get("secs", 0) > 0.05:
            check(worst < result["secs"] / 2,
                  "SMTP replies not held up by the POP3 update (slowest %.3f s of %.2f s)"
                  % (worst, result["secs"]))
        else:
            print("info: the update was too quick to measure interference")


def sanitizer_clean(d, what):
    """Under ASan/UBSan builds a report in any process lands in the log."""
    bad = [ln for ln in d.log().splitlines()
           if "Sanitizer" in ln or "runtime error:" in ln]
    check(not bad, "no sanitizer report in the %s log" % what, bad[:5])


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    exe = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="correod-iso-")
    try:
        with Correod(exe, tmp, conf_extra="auth_allow_plaintext_loopback yes\n"
                                          "log_level debug") as d:
            for u, pw in USERS.items():
                d.add_user("%s@%s" % (u, DOMAIN), pw)
            for case in (t_kill_one_session, t_stop_one_session, t_on_demand,
                         t_huge_maildrop):
                try:
                    case(d)
                except Exception as ex:   # one broken case must not hide the others
                    check(False, "%s raised" % case.__name__, repr(ex))
            rc = d.stop()
            check(rc == 0, "correod stops cleanly", rc)
            sanitizer_clean(d, "default instance's")
            if failed:
                print(d.log()[-4000:])
        try:
            t_update_off_loop(exe, tmp)
        except Exception as ex:
            check(False, "t_update_off_loop raised", repr(ex))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d passed, %d failed" % (NAME, passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
