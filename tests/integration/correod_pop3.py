#!/usr/bin/python3
"""correod_pop3: the POP3 server (110 with STLS, 995 implicit TLS) against
real clients: python poplib, fetchmail, and `correo fetch`.

usage: correod_pop3.py CORREOD_EXE SOURCE_ROOT

Each check asserts something that breaks when the feature does: login
refused before STLS, USER/PASS and AUTH PLAIN after it, STAT/LIST sizes
equal to the bytes RETR sends, RETR byte for byte against the Maildir file
(LF -> CRLF), TOP, UIDLs equal to Dovecot's "%08Xu%08Xv" from the
dovecot-uidlist file, deletion only at QUIT (not after RSET or a dropped
connection), the maildrop lock ([IN-USE]), growing delays after wrong
passwords, mail delivered by correod's SMTP side in the next session, one
user not seeing another's mail, fetchmail's UIDL mode with --keep, `correo
fetch`, and a worker killed with SIGKILL mid-session (nothing deleted, the
lock gone with it).
"""
import base64
import os
import poplib
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correod_fixture import Correod, wait_until  # noqa: E402

NAME = "correod_pop3"
poplib._MAXLINE = 1 << 20   # a test message has a 5000-byte line
DOMAIN = "example.test"
ALICE = "alice@" + DOMAIN
ALICE_PW = "alice-pop-1"
BOB = "bob@" + DOMAIN
BOB_PW = "bob-pop-2"
CAROL = "carol@" + DOMAIN
CAROL_PW = "carol-pop-3"
DAVE = "dave@" + DOMAIN
DAVE_PW = "dave-pop-4"

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


def run_case(fn, *args):
    try:
        fn(*args)
    except Exception as ex:  # a crash in one case is a failure, not the end
        check(False, "%s raised" % fn.__name__, "%s: %s" % (type(ex).__name__, ex))


# ---- helpers -----------------------------------------------------------------

def tls_ctx(d):
    ctx = ssl.create_default_context(cafile=os.path.join(d.dir, "cert.pem"))
    ctx.check_hostname = False   # the certificate names the domain and 127.0.0.1
    return ctx


def pop_plain(d):
    return poplib.POP3("127.0.0.1", d.port("pop3"), timeout=20)


def pop_stls(d, user=None, pw=None):
    p = pop_plain(d)
    p.stls(context=tls_ctx(d))
    if user:
        p.user(user)
        p.pass_(pw)
    return p


def pop_ssl(d, user=None, pw=None):
    p = poplib.POP3_SSL("127.0.0.1", d.port("pop3s"), context=tls_ctx(d), timeout=20)
    if user:
        p.user(user)
        p.pass_(pw)
    return p


def local_part(addr):
    return addr.split("@")[0]


def inbox_files(d, local):
    """{base name: path} of a user's INBOX files."""
    out = {}
    for sub in ("new", "cur"):
        p = os.path.join(d.maildir(local), sub)
        if os.path.isdir(p):
            for n in os.listdir(p):
                out[n.split(":")[0]] = os.path.join(p, n)
    return out


_seq = [0]


def drop(d, local, data, sub="new"):
    """Put a message file into a user's INBOX as another program would."""
    md = d.maildir(local)
    for s in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, s), exist_ok=True)
    _seq[0] += 1
    base = "%d.M%dP%dQ%d.test" % (int(time.time()), _seq[0], os.getpid(), _seq[0])
    name = base + (":2," if sub == "cur" else "")
    tmp = os.path.join(md, "tmp", base)
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(md, sub, name))
    return base


def uidlist(d, local):
    """(uidvalidity, {base name: uid}) from the INBOX dovecot-uidlist."""
    with open(os.path.join(d.maildir(local), "dovecot-uidlist"), "rb") as f:
        lines = f.read().decode("utf-8", "replace").splitlines()
    m = re.search(r"\bV(\d+)", lines[0])
    uv = int(m.group(1))
    out = {}
    for ln in lines[1:]:
        if ":" not in ln:
            continue
        head, name = ln.split(":", 1)
        out[name.split(":")[0]] = int(head.split()[0])
    return uv, out


def crlf(data):
    """The message as POP3 sends it: every bare LF as CRLF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def retr_bytes(p, n):
    """RETR n: the message bytes after dot-unstuffing, CRLF line ends."""
    resp, lines, octets = p.retr(n)
    return b"".join(ln + b"\r\n" for ln in lines), octets


def sample_messages():
    return [
        b"From: a@remote.test\nTo: alice@example.test\nSubject: one\n\nbody one\n",
        b"From: b@remote.test\nSubject: dots\n\n.\n..two dots\n.leading\nend\n",
        b"From: c@remote.test\r\nSubject: crlf already\r\n\r\nline 1\r\nline 2\r\n",
        b"From: d@remote.test\nSubject: mixed\n\nlf\r\ncrlf\nlf again\n" + b"x" * 5000 + b"\n",
        b"From: e@remote.test\nSubject: long\n\n" +
        b"".join(b"line %06d of a long message\n" % i for i in range(20000)),
    ]


def resp_text(ex):
    return ex.args[0] if ex.args else b""


def check_log_clean(d, name):
    log = d.log()
    bad = [ln for ln in log.splitlines()
           if re.search(r"Sanitizer|runtime error:|killed by signal (?!9 )|"
                        r"exited with status [1-9]", ln)]
    check(not bad, "no sanitizer report or crash in the %s log" % name, bad[:5])
    for pw in (ALICE_PW, BOB_PW, CAROL_PW, DAVE_PW):
        check(pw not in log, "password %s not in the log" % pw[:5])


def children(pid):
    r = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return {int(x) for x in r.stdout.split()}


def worker_pids(d):
    pids = {int(m) for m in re.findall(r"started worker \d+ \(pid (\d+)\)", d.log())}
    return pids & children(d.pid)


# ---- the cases ---------------------------------------------------------------

def t_login_refused_before_stls(d):
    p = pop_plain(d)
    check(p.getwelcome().startswith(b"+OK"), "greeting on 110", p.getwelcome())
    caps = p.capa()
    check("STLS" in caps, "STLS offered before TLS", caps)
    check("USER" not in caps and "SASL" not in caps,
          "no USER and no SASL before TLS (login not allowed)", caps)
    try:
        p.user(ALICE)
        p.pass_(ALICE_PW)
        check(False, "USER/PASS before STLS refused")
    except poplib.error_proto as ex:
        check(resp_text(ex).startswith(b"-ERR"), "USER/PASS before STLS refused", ex)
    token = base64.b64encode(("\0%s\0%s" % (ALICE, ALICE_PW)).encode()).decode()
    try:
        p._shortcmd("AUTH PLAIN " + token)
        check(False, "AUTH PLAIN before STLS refused")
    except poplib.error_proto as ex:
        check(True, "AUTH PLAIN before STLS refused")
    try:
        p.stat()
        check(False, "still not logged in after the refusals")
    except poplib.error_proto:
        check(True, "still not logged in after the refusals")
    p.quit()


def t_stls_user_pass(d):
    p = pop_stls(d)
    check(isinstance(p.sock, ssl.SSLSocket), "STLS upgrades the connection")
    caps = p.capa()
    check("STLS" not in caps and "USER" in caps and "PLAIN" in caps.get("SASL", []),
          "after STLS: USER and SASL PLAIN, no STLS", caps)
    p.user(ALICE)
    resp = p.pass_(ALICE_PW)
    check(resp.startswith(b"+OK"), "USER/PASS after STLS", resp)
    n, size = p.stat()
    check(n == len(sample_messages()), "STAT counts the maildrop", (n, size))
    p.quit()


def t_pop3s_auth_plain(d):
    p = pop_ssl(d)
    check(p.sock.version() in ("TLSv1.2", "TLSv1.3"), "POP3S is TLS from the first byte",
          p.sock.version())
    token = base64.b64encode(("\0%s\0%s" % (ALICE, ALICE_PW)).encode()).decode()
    resp = p._shortcmd("AUTH PLAIN " + token)
    check(resp.startswith(b"+OK"), "AUTH PLAIN on 995", resp)
    n, _ = p.stat()
    check(n == len(sample_messages()), "STAT after AUTH PLAIN", n)
    p.quit()


def t_sizes_and_retr(d):
    files = inbox_files(d, "alice")
    uv, uids = uidlist(d, "alice")
    by_uid = sorted((uids[b], b) for b in files if b in uids)
    p = pop_ssl(d, ALICE, ALICE_PW)
    n, total = p.stat()
    _, listing, _ = p.list()
    sizes = [int(x.split()[1]) for x in listing]
    check(len(sizes) == n == len(by_uid), "LIST has every message", (n, len(by_uid)))
    check(sum(sizes) == total, "STAT total is the sum of LIST", (sum(sizes), total))
    ok_bytes = ok_sizes = 0
    for i, (uid, base) in enumerate(by_uid, 1):
        raw = open(files[base], "rb").read()
        got, octets = retr_bytes(p, i)
        ok_bytes += got == crlf(raw)
        ok_sizes += sizes[i - 1] == len(got) == octets
        one = p.list(i).split()
        ok_sizes += int(one[2]) == sizes[i - 1]
    check(ok_bytes == n, "RETR is byte for byte the file with CRLF (%d of %d)" % (ok_bytes, n))
    check(ok_sizes == 2 * n, "LIST sizes equal the octets RETR sends", ok_sizes)
    p.quit()


def t_top(d):
    files = inbox_files(d, "alice")
    uv, uids = uidlist(d, "alice")
    by_uid = sorted((uids[b], b) for b in files if b in uids)
    p = pop_ssl(d, ALICE, ALICE_PW)
    idx = [i for i, (_, b) in enumerate(by_uid, 1)
           if b"Subject: long" in open(files[b], "rb").read()][0]
    _, lines, _ = p.top(idx, 3)
    raw = open(files[by_uid[idx - 1][1]], "rb").read()
    head, body = raw.split(b"\n\n", 1)
    want = head.split(b"\n") + [b""] + body.split(b"\n")[:3]
    check(lines == want, "TOP n 3: the header, the blank line, 3 body lines", lines[:8])
    _, lines0, _ = p.top(idx, 0)
    check(lines0 == head.split(b"\n") + [b""], "TOP n 0: the header only", lines0)
    try:
        p.top(99, 1)
        check(False, "TOP of a message that does not exist")
    except poplib.error_proto:
        check(True, "TOP of a message that does not exist is -ERR")
    p.quit()


def t_uidl(d):
    files = inbox_files(d, "alice")
    uv, uids = uidlist(d, "alice")
    by_uid = sorted((uids[b], b) for b in files if b in uids)
    p = pop_ssl(d, ALICE, ALICE_PW)
    _, listing, _ = p.uidl()
    got = [x.split()[1].decode() for x in listing]
    want = ["%08X%08X" % (uid, uv) for uid, _ in by_uid]
    check(got == want, "UIDL is %08X%08X of (uid, uidvalidity), in UID order", (got, want))
    one = p.uidl(1).split()
    check(one[2].decode() == want[0], "UIDL 1", one)
    p.quit()
    p = pop_stls(d, ALICE, ALICE_PW)
    _, again, _ = p.uidl()
    check([x.split()[1].decode() for x in again] == got, "UIDLs are stable across sessions")
    p.quit()


def t_dele_rset_drop(d):
    drop(d, "alice", b"Subject: victim 1\n\nx\n")
    drop(d, "alice", b"Subject: victim 2\n\ny\n")
    before = inbox_files(d, "alice")
    # DELE then RSET then QUIT: nothing removed
    p = pop_ssl(d, ALICE, ALICE_PW)
    n, _ = p.stat()
    p.dele(n)
    check(p.stat()[0] == n - 1, "a deleted message leaves STAT")
    p.rset()
    check(p.stat()[0] == n, "RSET brings it back")
    p.quit()
    check(set(inbox_files(d, "alice")) == set(before), "DELE + RSET + QUIT removes nothing")
    # DELE then the connection drops: nothing removed
    p = pop_ssl(d, ALICE, ALICE_PW)
    p.dele(n)
    p.close()   # no QUIT
    # the lock is released once the server sees the close
    p2 = wait_until(lambda: _try_login(d), timeout=10, what="the maildrop to be free again")
    check(set(inbox_files(d, "alice")) == set(before), "DELE + dropped connection removes nothing")
    # DELE then QUIT: the files are gone
    uv, uids = uidlist(d, "alice")
    files = inbox_files(d, "alice")
    by_uid = sorted((uids[b], b) for b in files if b in uids)
    victims = [b for _, b in by_uid[-2:]]
    n2, _ = p2.stat()
    p2.dele(n2 - 1)
    p2.dele(n2)
    resp = p2.quit()
    check(resp.startswith(b"+OK"), "QUIT after DELE", resp)
    after = inbox_files(d, "alice")
    check(not any(v in after for v in victims) and len(after) == len(before) - 2,
          "DELE + QUIT removes exactly the deleted files", (victims, len(after)))


def _try_login(d):
    p = pop_ssl(d)
    try:
        p.user(ALICE)
        p.pass_(ALICE_PW)
        return p
    except poplib.error_proto:
        p.close()
        return None


def t_in_use(d):
    p1 = pop_ssl(d, ALICE, ALICE_PW)
    p2 = pop_stls(d)
    p2.user(ALICE)
    try:
        p2.pass_(ALICE_PW)
        check(False, "a second session is refused")
    except poplib.error_proto as ex:
        check(b"[IN-USE]" in resp_text(ex), "a second session gets -ERR [IN-USE]", ex)
    p2.close()
    # another user is not locked out
    p3 = pop_ssl(d, BOB, BOB_PW)
    check(p3.stat()[0] == 0, "bob sees none of alice's mail while she is logged in")
    p3.quit()
    p1.quit()
    p4 = pop_ssl(d, ALICE, ALICE_PW)
    check(p4.stat()[0] > 0, "after QUIT the maildrop can be opened again")
    p4.quit()
    check(os.path.exists(os.path.join(d.maildir("alice"), "correod-pop3.lock")),
          "the lock file lives in the Maildir")


def t_retrieved_seen(d):
    base = drop(d, "alice", b"Subject: to be read\n\nread me\n")
    files = inbox_files(d, "alice")
    check("/new/" in files[base], "a dropped message starts in new/")
    uv, uids = uidlist(d, "alice") if os.path.exists(
        os.path.join(d.maildir("alice"), "dovecot-uidlist")) else (0, {})
    p = pop_ssl(d, ALICE, ALICE_PW)
    n, _ = p.stat()
    _, listing, _ = p.uidl()
    uv, uids = uidlist(d, "alice")
    idx = [int(x.split()[0]) for x in listing
           if x.split()[1].decode() == "%08X%08X" % (uids[base], uv)][0]
    p.retr(idx)
    p.quit()
    path = inbox_files(d, "alice")[base]
    check("/cur/" in path and re.search(r":2,[A-Z]*S", path) is not None,
          "a retrieved message moves to cur/ with the S flag", path)


def t_smtp_delivery_appears(d):
    p = pop_ssl(d, ALICE, ALICE_PW)
    _, before, _ = p.uidl()
    before = {x.split()[1] for x in before}
    p.quit()
    s = smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=15)
    s.sendmail("x@remote.test", [ALICE], b"From: x@remote.test\r\nSubject: via smtp\r\n\r\n"
               b"delivered by correod\r\n")
    s.quit()
    p = pop_ssl(d, ALICE, ALICE_PW)
    _, after, _ = p.uidl()
    new = [x for x in after if x.split()[1] not in before]
    check(len(new) == 1, "the SMTP delivery appears in the next session with a new UIDL",
          new)
    if new:
        idx = int(new[0].split()[0])
        got, _ = retr_bytes(p, idx)
        check(b"delivered by correod" in got and b"Subject: via smtp" in got,
              "and RETR returns it")
        uv, uids = uidlist(d, "alice")
        check(new[0].split()[1].decode() in {"%08X%08X" % (u, uv) for u in uids.values()},
              "its UIDL comes from dovecot-uidlist")
    p.quit()


def t_bad_input(d):
    p = pop_ssl(d, ALICE, ALICE_PW)
    for cmd in ("RETR 0", "RETR x", "DELE 9999", "TOP 1", "NOSUCH", "LIST 1 2"):
        try:
            p._shortcmd(cmd)
            check(False, "%s is -ERR" % cmd)
        except poplib.error_proto:
            check(True, "%s is -ERR and the session goes on" % cmd)
    check(p.noop().startswith(b"+OK"), "NOOP after the errors")
    p.quit()


def t_auth_delays(d):
    p = pop_stls(d)
    times = []
    for _ in range(3):
        p.user(DAVE)
        t0 = time.monotonic()
        try:
            p.pass_("Wr0ng-pw-zz9")
            check(False, "a wrong password is refused")
        except poplib.error_proto as ex:
            times.append(time.monotonic() - t0)
            check(b"[AUTH]" in resp_text(ex), "a wrong password is -ERR [AUTH]", ex)
    check(times[0] >= 0.4 and times[1] > times[0] * 1.5 and times[2] > times[1] * 1.5,
          "wrong password delays grow", times)
    p.user(DAVE)
    p.pass_(DAVE_PW)
    check(p.stat()[0] == 0, "the right password still works after failures")
    p.quit()


def fingerprint(d):
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in",
                          os.path.join(d.dir, "cert.pem")], check=True, capture_output=True,
                         text=True).stdout
    return out.strip().split("=", 1)[1]


def t_fetchmail(d, tmp):
    if not shutil.which("fetchmail"):
        check(False, "fetchmail is installed (scripts/deps.sh)")
        return
    for i in range(4):
        drop(d, "bob", b"From: f%d@remote.test\nSubject: fm %d\n\nbody %d\n.\nend\n" % (i, i, i))
    out = os.path.join(tmp, "fm-out")
    os.makedirs(out)
    mda = os.path.join(tmp, "fm-mda.py")
    with open(mda, "w") as f:
        f.write("import os, sys, time\n"
                "data = sys.stdin.buffer.read()\n"
                "p = os.path.join(%r, '%%d.%%d' %% (time.time_ns(), os.getpid()))\n"
                "open(p, 'wb').write(data)\n" % out)
    rc = os.path.join(tmp, "fetchmailrc")
    with open(rc, "w") as f:
        f.write('poll 127.0.0.1 service %d protocol pop3 uidl\n'
                '  user "%s" password "%s" is root here\n'
                '  ssl sslcertck sslcertfile "%s" sslcommonname "localhost" keep\n'
                '  mda "%s %s"\n' % (d.port("pop3s"), BOB, BOB_PW,
                                     os.path.join(d.dir, "cert.pem"), sys.executable, mda))
    os.chmod(rc, 0o600)
    env = dict(os.environ, HOME=tmp)

    def run():
        return subprocess.run(["fetchmail", "-f", rc, "--idfile", os.path.join(tmp, "fm-ids"),
                               "--nosyslog", "-v", "--nodetach"], capture_output=True,
                              env=env, timeout=120)

    def got():
        return sorted(open(os.path.join(out, n), "rb").read() for n in os.listdir(out))

    r = run()
    check(r.returncode == 0, "fetchmail first run exits 0", (r.returncode, r.stderr[-600:]))
    server = sorted(open(p, "rb").read() for p in inbox_files(d, "bob").values())
    mine = got()
    check(len(mine) == 4, "fetchmail downloads every message", len(mine))
    # fetchmail adds a Received header and keeps LF line ends
    check(all(any(m.endswith(s) for m in mine) for s in server),
          "fetchmail's copies end with the server's bytes")
    check(len(inbox_files(d, "bob")) == 4, "--keep leaves them on the server")
    r = run()
    check(len(got()) == 4, "a second run downloads nothing (UIDL mode)",
          (len(got()), r.stdout[-400:]))
    drop(d, "bob", b"From: new@remote.test\nSubject: fm new\n\nthe new one\n")
    r = run()
    mine = got()
    check(len(mine) == 5 and sum(b"the new one" in m for m in mine) == 1,
          "a third run downloads only the new message", len(mine))


def t_correo_fetch(d, tmp, src):
    correo = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(d.exe))),
                          "mua", "correo")
    if not os.path.exists(correo):
        print("skip: correo fetch (no %s)" % correo)
        return
    for i in range(3):
        drop(d, "carol", b"From: c%d@remote.test\nMessage-ID: <c%d@t>\nSubject: cf %d\n\n"
             b"body %d\n..dots\n" % (i, i, i, i))
    home = os.path.join(tmp, "cf-home")
    mail = os.path.join(tmp, "cf-mail")
    for s in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(mail, s))
    os.makedirs(home)
    rc = os.path.join(tmp, "cf-correorc")
    with open(rc, "w") as f:
        f.write("set folder=%s\nset spoolfile=%s\n" % (mail, mail))
        f.write("account main pop://carol%%40%s@127.0.0.1:%d/ pass=%s tls_fingerprint=%s\n" %
                (DOMAIN, d.port("pop3"), CAROL_PW, fingerprint(d)))
    env = dict(os.environ, HOME=home, TZ="UTC", XDG_STATE_HOME=os.path.join(tmp, "cf-state"),
               CORREO_DATADIR_OVERRIDE=src)

    def run():
        return subprocess.run([correo, "-F", rc, "fetch"], capture_output=True, env=env,
                              timeout=120)

    def got():
        out = []
        for s in ("cur", "new"):
            p = os.path.join(mail, s)
            out += [open(os.path.join(p, n), "rb").read() for n in os.listdir(p)]
        return sorted(out)

    r = run()
    check(r.returncode == 0, "correo fetch from correod exits 0",
          (r.returncode, r.stdout, r.stderr[-600:]))
    server = sorted(open(p, "rb").read() for p in inbox_files(d, "carol").values())
    check(got() == server, "correo fetch: byte for byte the server's files",
          (len(got()), len(server)))
    r = run()
    check(r.returncode == 0 and len(got()) == 3, "a second correo fetch downloads nothing",
          (r.returncode, r.stdout, len(got())))


def t_kill_worker(d):
    before = inbox_files(d, "alice")
    p = pop_ssl(d, ALICE, ALICE_PW)
    n, _ = p.stat()
    for i in range(1, n + 1):
        p.dele(i)
    pids = worker_pids(d)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        wait_until(lambda: pid not in children(d.pid), timeout=10, what="the worker to die")
    try:
        p.noop()
        check(False, "the session ends with its worker")
    except (poplib.error_proto, OSError, EOFError, ssl.SSLError):
        check(True, "the session ends with its worker")
    p.close()
    check(set(inbox_files(d, "alice")) == set(before),
          "a worker killed mid-session deletes nothing")
    p2 = wait_until(lambda: _try_login_quiet(d), timeout=20, what="a new worker")
    check(p2.stat()[0] == n, "the lock died with the worker: a new session opens the maildrop")
    p2.quit()


def _try_login_quiet(d):
    try:
        return _try_login(d)
    except OSError:
        return None


def t_shutdown_with_session(d):
    p = pop_ssl(d, ALICE, ALICE_PW)
    n, _ = p.stat()
    p.dele(1)
    before = inbox_files(d, "alice")
    rc = d.stop()
    check(rc == 0, "SIGTERM with a POP3 session open: exit 0", rc)
    check(set(inbox_files(d, "alice")) == set(before), "stopping deletes nothing")
    p.close()


def main():
    exe = sys.argv[1]
    src = sys.argv[2] if len(sys.argv) > 2 else "."
    tmp = tempfile.mkdtemp(prefix="correod-pop3-")
    os.makedirs(os.path.join(tmp, "a"))
    try:
        with Correod(exe, os.path.join(tmp, "a"), domain=DOMAIN,
                     conf_extra="auth_fail_delay 1\nroute * 127.0.0.1:1 none") as d:
            for user, pw in ((ALICE, ALICE_PW), (BOB, BOB_PW), (CAROL, CAROL_PW),
                             (DAVE, DAVE_PW)):
                d.add_user(local_part(user), pw)
            for m in sample_messages():
                drop(d, "alice", m)
            os.makedirs(os.path.join(d.maildir("bob"), "new"), exist_ok=True)
            wait_until(lambda: _accepts(d.port("pop3")) and _accepts(d.port("pop3s")),
                       timeout=10, what="the POP3 ports")
            for case in (t_login_refused_before_stls, t_stls_user_pass, t_pop3s_auth_plain,
                         t_sizes_and_retr, t_top, t_uidl, t_bad_input, t_in_use,
                         t_dele_rset_drop, t_retrieved_seen, t_smtp_delivery_appears):
                run_case(case, d)
            run_case(t_fetchmail, d, tmp)
            run_case(t_correo_fetch, d, tmp, src)
            run_case(t_auth_delays, d)
            run_case(t_kill_worker, d)
            run_case(t_shutdown_with_session, d)
        check_log_clean(d, "main instance")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d passed, %d failed" % (NAME, passed, failed))
    return 1 if failed else 0


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
