#!/usr/bin/python3
"""correod_smtp: the SMTP server against real clients (swaks, python smtplib)
and raw sockets.

usage: correod_smtp.py CORREOD_EXE SOURCE_ROOT

Each check asserts something that breaks when the feature does: delivery
byte for byte, dot lines, SIZE, unknown users, relay policy, AUTH only
after TLS and its growing failure delay, implicit TLS, pipelining, BDAT,
8BITMIME/SMTPUTF8, SMTP smuggling and STARTTLS injection refused, garbage
and long lines, error and connection limits, read and write timeouts,
SIGHUP with a session open (and with a broken config), SIGTERM in the
middle of DATA, a worker killed with SIGKILL or hung (SIGSTOP) being
replaced, and the log lines (no passwords, no sanitizer reports).
Three instances: the main one, one with small limits, one to stop.
"""
import base64
import os
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

NAME = "correod_smtp"
DOMAIN = "example.test"
ALICE = "alice@" + DOMAIN
ALICE_PW = "alice-pw-1"
BOB = "bob@" + DOMAIN
BOB_PW = "bob-pw-2"
WRONG_PW = "Wr0ng-pw-zz9"
MAX_SIZE = 100 * 1024

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

class Raw:
    """A raw SMTP connection: exact bytes out, replies parsed."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        """(code, [lines]) of one possibly multi-line reply."""
        lines = []
        while True:
            line = self._line()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]) if line[:3].isdigit() else 0, lines

    def cmd(self, line):
        self.send(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def closed(self, timeout=10):
        """True once the server has closed the connection."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def starttls(self, ctx):
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def tls_ctx(d):
    ctx = ssl.create_default_context(cafile=os.path.join(d.dir, "cert.pem"))
    ctx.check_hostname = True
    return ctx


def add_user(d, name, pw):
    r = d.cmd("user", "add", "-c", d.conf, name, "--password-stdin", input=pw + "\n",
              check=False)
    if r.returncode == 0:
        return
    if "unknown command" not in r.stderr:
        raise RuntimeError("correod user add failed: " + r.stderr)
    # A build without `correod user`: write the passwd-file line directly.
    h = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=pw + "\n",
                       capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(d.dir, "users"), "a") as f:
        f.write("%s@%s:{CRYPT}%s:::::\n" % (name, d.domain, h))


def inbox(d, local):
    """{file name: content} of new/ and cur/ of a user's INBOX."""
    out = {}
    for sub in ("new", "cur"):
        p = os.path.join(d.maildir(local), sub)
        if os.path.isdir(p):
            for n in os.listdir(p):
                with open(os.path.join(p, n), "rb") as f:
                    out[n] = f.read()
    return out


def wait_new(d, local, before, count=1, timeout=10):
    """The messages that arrived since the snapshot `before`."""
    def new():
        now = inbox(d, local)
        # Bounces from the queue runner (null sender) are not ours to count.
        fresh = [now[n] for n in sorted(now)
                 if n not in before and not now[n].startswith(b"Return-Path: <>")]
        return fresh if len(fresh) >= count else None
    return wait_until(new, timeout=timeout, what="%d new message(s) for %s" % (count, local))


def strip_trace(msg):
    """The message after the three trace headers correod adds, which must be
    Return-Path, Delivered-To and Received (with its continuation lines)."""
    lines = msg.split(b"\n")
    names = []
    i = 0
    while len(names) < 3 and i < len(lines):
        names.append(lines[i].split(b":", 1)[0].lower())
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    assert names == [b"return-path", b"delivered-to", b"received"], names
    return b"\n".join(lines[i:])


def queue_files(d):
    p = os.path.join(d.dir, "queue", "msg")
    return set(os.listdir(p)) if os.path.isdir(p) else set()


def children(pid):
    r = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return {int(x) for x in r.stdout.split()}


def worker_pids(d, below=None):
    """Live worker processes, from the supervisor's own log lines; with
    below=N only those in the configured slots 0..N-1 (not the extra
    workers started on demand, which are not replaced when they die)."""
    pids = {int(p) for slot, p in re.findall(r"started worker (\d+) \(pid (\d+)\)", d.log())
            if below is None or int(slot) < below}
    return pids & children(d.pid)


def smtp(d, port="smtp"):
    s = smtplib.SMTP("127.0.0.1", d.port(port), local_hostname="client.test", timeout=15)
    return s


def login_587(d, user, pw):
    s = smtp(d, "submission")
    s.starttls(context=tls_ctx(d))
    s.login(user, pw)
    return s


def message(subject, body):
    return ("From: a@remote.test\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" %
            (ALICE, subject, body)).encode("utf-8")


# ---- the cases ---------------------------------------------------------------

def t_instance(d):
    for f in ("correod.conf", "users", "cert.pem", "key.pem"):
        check(os.path.exists(os.path.join(d.dir, f)), "init wrote " + f)


def t_delivery_bytes_and_dots(d):
    body = ("line one\r\n.\r\n..\r\n.leading dot\r\n...three\r\n"
            "trailing spaces   \r\n\ttab\r\n\r\nlast line\r\n")
    raw = message("bytes", body)
    before = inbox(d, "alice")
    s = smtp(d)
    s.sendmail("sender@remote.test", [ALICE], raw)
    s.quit()
    got = wait_new(d, "alice", before)[0]
    check(strip_trace(got) == raw.replace(b"\r\n", b"\n"),
          "delivered byte for byte after the trace headers (LF line ends)",
          repr(got[-200:]))
    check(b"\n.\n..\n.leading dot\n...three\n" in got, "dot lines unstuffed exactly")
    check(got.startswith(b"Return-Path: <sender@remote.test>\n"), "Return-Path first")
    check(b"Delivered-To: " + ALICE.encode() in got.split(b"\n\n")[0], "Delivered-To header")


def t_swaks(d):
    before = inbox(d, "alice")
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % d.port("smtp"),
                        "--to", ALICE, "--from", "swaks@remote.test",
                        "--header", "Subject: via swaks", "--body", "swaks body"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and "250 2.0.0" in r.stdout, "swaks delivers on port 25",
          r.stdout[-500:])
    got = wait_new(d, "alice", before)[0]
    check(b"Subject: via swaks" in got and b"swaks body" in got, "swaks message arrived")


def t_size(d):
    s = smtp(d)
    code, resp = s.ehlo()
    m = re.search(rb"^SIZE (\d+)", resp, re.M)
    check(m is not None and int(m.group(1)) == MAX_SIZE, "EHLO advertises SIZE %d" % MAX_SIZE,
          resp)
    big = message("big", ("x" * 998 + "\r\n") * (MAX_SIZE // 1000 + 10))
    try:
        s.sendmail("sender@remote.test", [ALICE], big)
        check(False, "too big a message refused")
    except smtplib.SMTPDataError as ex:
        check(ex.smtp_code == 552, "too big a message gets 552", ex)
    except smtplib.SMTPSenderRefused as ex:
        check(ex.smtp_code == 552, "too big a message gets 552 (at MAIL SIZE=)", ex)
    # the session still works afterwards
    s.rset()
    check(s.noop()[0] == 250, "session usable after 552")
    s.quit()
    # SIZE= over the limit at MAIL
    r = Raw(d.port("smtp"))
    r.reply()
    r.cmd("EHLO client.test")
    code, lines = r.cmd("MAIL FROM:<a@remote.test> SIZE=%d" % (MAX_SIZE + 1))
    check(code == 552, "MAIL SIZE= over the limit gets 552", lines)
    r.close()


def t_unknown_user(d):
    r = Raw(d.port("smtp"))
    r.reply()
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<a@remote.test>")
    code, lines = r.cmd("RCPT TO:<nobody@%s>" % DOMAIN)
    check(code == 550 and "5.1.1" in lines[-1], "unknown local user 550 5.1.1", lines)
    r.close()


def t_open_relay(d):
    before = queue_files(d)
    r = Raw(d.port("smtp"))
    r.reply()
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<%s>" % ALICE)
    code, lines = r.cmd("RCPT TO:<victim@elsewhere.test>")
    check(code == 554 and "5.7.1" in lines[-1], "relay to a remote address refused 554 5.7.1",
          lines)
    code, lines = r.cmd("DATA")
    check(code >= 500, "no DATA without an accepted recipient", lines)
    r.close()
    check(queue_files(d) == before, "nothing spooled by a relay attempt")


def t_submission_needs_auth(d):
    r = Raw(d.port("submission"))
    r.reply()
    r.cmd("EHLO client.test")
    code, lines = r.cmd("MAIL FROM:<%s>" % ALICE)
    check(code == 530, "submission MAIL without AUTH gets 530", lines)
    r.close()


def t_auth_before_tls(d):
    r = Raw(d.port("submission"))
    r.reply()
    code, lines = r.cmd("EHLO client.test")
    check(not any("AUTH" in ln for ln in lines), "no AUTH advertised before TLS", lines)
    token = base64.b64encode(("\0%s\0%s" % (ALICE, ALICE_PW)).encode()).decode()
    code, lines = r.cmd("AUTH PLAIN " + token)
    check(500 <= code < 600, "AUTH PLAIN before TLS refused", lines)
    code, lines = r.cmd("MAIL FROM:<%s>" % ALICE)
    check(code == 530, "still not authenticated after the refused AUTH", lines)
    r.close()


def t_auth_after_starttls(d):
    for mech in ("PLAIN", "LOGIN"):
        s = smtp(d, "submission")
        s.starttls(context=tls_ctx(d))
        s.ehlo("client.test")
        check(s.has_extn("auth") and mech in s.esmtp_features.get("auth", "").upper(),
              "AUTH %s advertised after STARTTLS" % mech)
        s.user, s.password = ALICE, ALICE_PW
        fn = s.auth_plain if mech == "PLAIN" else s.auth_login
        code, resp = s.auth(mech, fn, initial_response_ok=(mech == "PLAIN"))
        check(code == 235, "AUTH %s after STARTTLS succeeds" % mech, resp)
        before = inbox(d, "bob")
        s.sendmail(ALICE, [BOB], message("auth " + mech, "sent by alice\r\n"))
        s.quit()
        got = wait_new(d, "bob", before)[0]
        check(b"sent by alice" in got, "authenticated mail (%s) delivered" % mech)
    # a wrong password is refused after a pause (auth_fail_delay, 2 s by
    # default), and the next failure from the same address waits longer
    waits = []
    for _ in range(2):
        s = smtp(d, "submission")
        s.starttls(context=tls_ctx(d))
        s.ehlo("client.test")
        token = base64.b64encode(("\0%s\0%s" % (ALICE, WRONG_PW)).encode()).decode()
        t0 = time.monotonic()
        code, resp = s.docmd("AUTH", "PLAIN " + token)   # exactly one attempt
        waits.append(time.monotonic() - t0)
        check(code == 535, "wrong password refused with 535", resp)
        s.close()
    check(waits[0] >= 1.8, "the 535 comes after the AUTH failure delay", waits)
    check(waits[1] >= 1.5 * waits[0],
          "failures from the same address on a new connection wait longer", waits)


def t_implicit_tls(d):
    s = smtplib.SMTP_SSL("127.0.0.1", d.port("submissions"), local_hostname="client.test",
                         context=tls_ctx(d), timeout=15)
    check(isinstance(s.sock, ssl.SSLSocket) and s.sock.version() in ("TLSv1.2", "TLSv1.3"),
          "implicit TLS on 465 with TLS >= 1.2")
    s.login(ALICE, ALICE_PW)
    before = inbox(d, "bob")
    s.sendmail(ALICE, [BOB], message("on 465", "implicit tls\r\n"))
    s.quit()
    check(b"implicit tls" in wait_new(d, "bob", before)[0], "mail over 465 delivered")
    # TLS 1.1 is refused
    ctx = tls_ctx(d)
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        return
    try:
        with socket.create_connection(("127.0.0.1", d.port("submissions")), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                check(False, "TLS 1.1 handshake refused")
    except (ssl.SSLError, OSError):
        check(True, "TLS 1.1 handshake refused")


def t_authenticated_relay(d):
    before = queue_files(d)
    s = login_587(d, ALICE, ALICE_PW)
    refused = s.sendmail(ALICE, ["friend@remote.test"], message("out", "to the world\r\n"))
    s.quit()
    check(refused == {}, "authenticated relay to a remote address accepted (250)")
    fresh = wait_until(lambda: queue_files(d) - before or None, timeout=10,
                       what="a spool file")
    check(len(fresh) == 1, "the relayed message is spooled in queue/msg/", fresh)


def t_mail_from_not_users(d):
    s = login_587(d, ALICE, ALICE_PW)
    code, resp = s.docmd("MAIL", "FROM:<%s>" % BOB)
    check(code == 553, "MAIL FROM another user's address gets 553", resp)
    code, resp = s.docmd("MAIL", "FROM:<%s>" % ALICE)
    check(code == 250, "MAIL FROM the user's own address accepted", resp)
    s.close()


def t_pipelining(d):
    before = inbox(d, "alice")
    r = Raw(d.port("smtp"))
    r.reply()
    code, lines = r.cmd("EHLO client.test")
    check(any("PIPELINING" in ln for ln in lines), "PIPELINING advertised")
    batch = b""
    for i in range(3):
        batch += (b"MAIL FROM:<p%d@remote.test>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                  b"Subject: pipelined %d\r\n\r\nbody %d\r\n.\r\n" % (i, ALICE.encode(), i, i))
    batch += b"QUIT\r\n"
    r.send(batch)
    codes = []
    try:
        while True:
            codes.append(r.reply()[0])
    except (EOFError, OSError):
        pass
    r.close()
    check(codes == [250, 250, 354, 250] * 3 + [221], "pipelined replies in order", codes)
    got = wait_new(d, "alice", before, count=3)
    subjects = sorted(re.search(rb"Subject: (pipelined \d)", m).group(1) for m in got)
    check(subjects == [b"pipelined 0", b"pipelined 1", b"pipelined 2"],
          "three pipelined messages delivered", subjects)


def t_bdat(d):
    before = inbox(d, "alice")
    r = Raw(d.port("smtp"))
    r.reply()
    code, lines = r.cmd("EHLO client.test")
    check(any("CHUNKING" in ln for ln in lines), "CHUNKING advertised")
    r.cmd("MAIL FROM:<chunks@remote.test>")
    r.cmd("RCPT TO:<%s>" % ALICE)
    part1 = b"Subject: bdat\r\n\r\nfirst chunk, a dot line next\r\n.\r\n"
    part2 = b"second chunk\r\n"
    r.send(b"BDAT %d\r\n" % len(part1) + part1)
    c1 = r.reply()[0]
    r.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    c2, lines = r.reply()
    r.cmd("QUIT")
    r.close()
    check(c1 == 250 and c2 == 250, "BDAT chunks accepted, LAST delivers", (c1, c2, lines))
    got = wait_new(d, "alice", before)[0]
    check(strip_trace(got) == (part1 + part2).replace(b"\r\n", b"\n"),
          "BDAT data byte-exact (the dot line kept as sent)", got[-120:])


def t_utf8(d):
    before = inbox(d, "alice")
    sender = "jörg@exämple.remote"
    body = "Grüße aus Köln — ünïcödé ✓\r\n"
    raw = ("From: %s\r\nTo: %s\r\nSubject: =?utf-8?q?utf8?=\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
           "\r\n%s" % (sender, ALICE, body)).encode("utf-8")
    s = smtp(d)
    s.ehlo("client.test")
    check(s.has_extn("smtputf8") and s.has_extn("8bitmime"), "SMTPUTF8 and 8BITMIME advertised")
    s.sendmail(sender, [ALICE], raw, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    s.quit()
    got = wait_new(d, "alice", before)[0]
    check(strip_trace(got) == raw.replace(b"\r\n", b"\n"), "8-bit body delivered intact")
    check(got.startswith(("Return-Path: <%s>" % sender).encode("utf-8")),
          "UTF-8 sender address kept", got[:80])
    # without SMTPUTF8 a UTF-8 address is refused
    r = Raw(d.port("smtp"))
    r.reply()
    r.cmd("EHLO client.test")
    code, lines = r.cmd("MAIL FROM:<%s>" % sender)
    check(code == 553, "UTF-8 address without SMTPUTF8 gets 553", lines)
    r.close()


def t_smuggling(d):
    before = inbox(d, "alice")
    r = Raw(d.port("smtp"))
    r.reply()
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<a@remote.test>")
    r.cmd("RCPT TO:<%s>" % ALICE)
    code, _ = r.cmd("DATA")
    r.send(b"Subject: outer\r\n\r\nouter body\n.\n"
           b"MAIL FROM:<evil@remote.test>\r\nRCPT TO:<" + ALICE.encode() + b">\r\nDATA\r\n"
           b"Subject: smuggled\r\n\r\nsmuggled body\r\n.\r\n")
    code, lines = r.reply()
    check(code == 550 and "5.6.11" in lines[-1], "bare LF in DATA refused with 550 5.6.11",
          lines)
    code, lines = r.cmd("NOOP")
    check(code == 250, "one reply for the whole data: nothing split off", lines)
    r.close()
    time.sleep(0.5)   # give a (wrong) delivery the chance to show up
    fresh = [m for n, m in inbox(d, "alice").items()
             if n not in before and not m.startswith(b"Return-Path: <>")]
    check(not fresh, "nothing of the smuggling attempt delivered",
          [m[:200] for m in fresh])


def t_starttls_injection(d):
    r = Raw(d.port("smtp"))
    r.reply()
    code, lines = r.cmd("EHLO client.test")
    check(any("STARTTLS" in ln for ln in lines), "STARTTLS offered on port 25")
    r.send(b"STARTTLS\r\nMAIL FROM:<injected@remote.test>\r\n")
    code, lines = r.reply()
    check(code == 220, "220 to STARTTLS", lines)
    r.starttls(tls_ctx(d))
    code, lines = r.cmd("EHLO client.test")
    check(code == 250 and lines[0].startswith("250-") or lines[0].startswith("250 "),
          "the first reply inside TLS is the EHLO reply", lines)
    code, lines = r.cmd("RCPT TO:<%s>" % ALICE)
    check(code == 503, "the injected MAIL FROM was not executed (RCPT gets 503)", lines)
    code, lines = r.cmd("STARTTLS")
    check(code >= 500, "no second STARTTLS inside TLS", lines)
    r.close()


def t_garbage(d):
    r = Raw(d.port("smtp"))
    r.reply()
    r.send(b"\x00\xff\xfe garbage \x1b[2J\r\n")
    code, lines = r.reply()
    check(code == 500, "garbage answered 500", lines)
    code, lines = r.cmd("NOOP " + "a" * 5000)
    check(code == 500, "a too-long command line answered 500", lines)
    code, lines = r.cmd("NOOP")
    check(code == 250, "the session survives the long line", lines)
    r.close()
    s = smtp(d)
    check(s.ehlo("client.test")[0] == 250, "the next connection is served")
    s.quit()


def t_max_errors(d):
    r = Raw(d.port("smtp"))
    r.reply()
    codes = []
    try:
        for i in range(10):
            codes.append(r.cmd("BOGUS%d" % i)[0])
            if codes[-1] == 421:
                break
    except (EOFError, OSError):
        pass
    check(codes and codes[-1] == 421 and len(codes) <= 4,
          "421 after max_errors (3) bad commands", codes)
    check(r.closed(), "connection closed after the 421")
    r.close()


def t_timeout(d):
    r = Raw(d.port("smtp"), timeout=15)
    r.reply()
    r.cmd("EHLO client.test")
    t0 = time.monotonic()
    try:
        code, lines = r.reply()   # say nothing: the server gives up
    except (EOFError, OSError) as ex:
        code, lines = 0, [str(ex)]
    waited = time.monotonic() - t0
    check(code == 421 and "4.4.2" in lines[-1] and 2 <= waited < 12,
          "an idle client gets 421 4.4.2 after timeout_command (3s)", (lines, waited))
    check(r.closed(), "and is disconnected")
    r.close()


def t_write_timeout(d):
    """A client that sends commands but never reads the replies is cut off
    after timeout_command once the server cannot write any more."""
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.connect(("127.0.0.1", d.port("smtp")))
    c.settimeout(1)
    chunk = b"NOOP\r\n" * 10000
    cut = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            c.send(chunk)
        except socket.timeout:
            continue          # the server stopped reading: keep pushing
        except OSError:
            cut = True        # reset by the server
            break
    c.close()
    check(cut, "a client that never reads is disconnected")
    check("write timeout, client not reading" in d.log(), "the write timeout is logged")
    s = smtp(d)
    check(s.noop()[0] == 250, "the server still serves others")
    s.quit()


def t_conn_per_ip(d):
    def three():
        """Three connections greeted at once (earlier sessions may still be
        winding down for a moment), or None."""
        cs = []
        for _ in range(3):
            c = Raw(d.port("smtp"))
            cs.append(c)
            try:
                ok = c.reply()[0] == 220
            except (EOFError, OSError):
                ok = False
            if not ok:
                for c in cs:
                    c.close()
                return None
        return cs
    conns = wait_until(three, timeout=10, what="three connections within the limit")
    check(len(conns) == 3, "connections within the per-IP limit greeted")
    r = Raw(d.port("smtp"))
    code, lines = r.reply()
    check(code == 421 and "4.7.0" in lines[-1], "connection over the per-IP limit gets 421",
          lines)
    r.close()
    conns.pop().cmd("QUIT")

    def greeted():
        c = Raw(d.port("smtp"))
        try:
            code = c.reply()[0]
        except (EOFError, OSError):
            code = 0
        if code == 220:
            return c
        c.close()
        return None
    c = wait_until(greeted, timeout=10, what="a free connection slot")
    check(c is not None, "a slot frees up when a connection ends")
    c.close()
    for r in conns:
        r.close()


def set_conf(d, key, value):
    with open(d.conf) as f:
        lines = [ln for ln in f.read().splitlines() if not ln.strip().startswith(key + " ")]
    lines.append("%s %s" % (key, value))
    with open(d.conf, "w") as f:
        f.write("\n".join(lines) + "\n")


def ehlo_size(d):
    s = smtp(d)
    code, resp = s.ehlo("client.test")
    s.quit()
    m = re.search(rb"^SIZE (\d+)", resp, re.M)
    return int(m.group(1)) if m else None


def t_sighup(d):
    old = smtp(d)
    old.ehlo("client.test")
    set_conf(d, "max_message_size", "200k")
    d.reload()
    wait_until(lambda: ehlo_size(d) == 200 * 1024, timeout=15,
               what="new connections to see the new SIZE")
    check(True, "after SIGHUP new connections advertise the new SIZE")
    before = inbox(d, "alice")
    old.sendmail("keep@remote.test", [ALICE], message("across reload", "still here\r\n"))
    old.quit()
    check(b"still here" in wait_new(d, "alice", before)[0],
          "a session open across SIGHUP keeps working")
    # a broken config on reload keeps the server running
    with open(d.conf, "a") as f:
        f.write("no_such_option 1\n")
    d.reload()
    wait_until(lambda: "reload failed" in d.log(), timeout=10, what="the reload failure log")
    check(d.proc.poll() is None and ehlo_size(d) == 200 * 1024,
          "a bad config on SIGHUP is logged and the server keeps serving")
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write(text.replace("no_such_option 1\n", ""))


def current_workers(d, n=2):
    """The live workers once exactly n (the configured number) are left:
    workers replaced by a reload may still be finishing for a moment."""
    return wait_until(lambda: (lambda p: p if len(p) == n else None)(worker_pids(d, below=n)),
                      timeout=15, what="%d live workers" % n)


def t_kill_worker(d):
    pids = current_workers(d)
    victim = sorted(pids)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in children(d.pid), timeout=10, what="the worker to die")
    fresh = wait_until(lambda: (worker_pids(d, below=2) - pids) or None, timeout=15,
                       what="a replacement worker")
    check(len(fresh) >= 1, "a killed worker is restarted", fresh)
    check(d.proc.poll() is None, "the supervisor survives a worker's death")
    # The new worker knows the users added after the server started (its
    # supervisor loaded the users file before they existed).
    ok = 0
    for i in range(6):
        s = smtp(d)
        ok += s.sendmail("after-kill@remote.test", [ALICE], message("after kill %d" % i,
                                                                    "x\r\n")) == {}
        s.quit()
    check(ok == 6, "serving after the kill, users known to every worker", ok)


def t_hung_worker(d):
    pids = current_workers(d)
    victim = sorted(pids)[-1]
    os.kill(victim, signal.SIGSTOP)   # alive but silent: no more heartbeats
    try:
        fresh = wait_until(lambda: (victim not in children(d.pid) and
                                    (worker_pids(d, below=2) - pids)) or None,
                           timeout=30, what="the hung worker to be replaced")
    finally:
        try:
            os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:
            pass
    check(bool(fresh), "a hung worker is killed and replaced", fresh)
    check(re.search(r"worker \d+ \(pid %d\) silent" % victim, d.log()) is not None,
          "the hang is logged")
    s = smtp(d)
    check(s.noop()[0] == 250, "serving after the hang")
    s.quit()


def t_log(d):
    log = d.log()
    check(re.search(r"auth: %s logged in from 127\.0\.0\.1" % re.escape(ALICE), log),
          "successful AUTH logged")
    check(re.search(r"auth: failed for %s" % re.escape(ALICE), log), "failed AUTH logged")
    check(ALICE_PW not in log and WRONG_PW not in log and
          base64.b64encode(("\0%s\0%s" % (ALICE, ALICE_PW)).encode()).decode() not in log,
          "no password in the log")
    check(re.search(r"message from=<sender@remote\.test> rcpts=1 size=\d+ .*result=250", log),
          "one line per transaction with sender, recipients, size and result")
    check(re.search(r"session from 127\.0\.0\.1 on submissions: tls=yes", log),
          "one line per connection")
    check("\x1b" not in log, "no raw escape bytes from peers in the log")


def t_sigterm_mid_data(tmp, exe):
    with Correod(exe, tmp, domain=DOMAIN, conf_extra="max_message_size %d" % MAX_SIZE) as d:
        add_user(d, "alice", ALICE_PW)
        r = Raw(d.port("smtp"), timeout=20)
        r.reply()
        r.cmd("EHLO client.test")
        r.cmd("MAIL FROM:<late@remote.test>")
        r.cmd("RCPT TO:<%s>" % ALICE)
        code, _ = r.cmd("DATA")
        r.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
        proc = d.proc
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "stopping" in d.log(), timeout=10, what="the stop to begin")
        time.sleep(0.3)   # the workers get SIGTERM from the supervisor
        r.send(b"second half\r\n.\r\n")
        code, lines = r.reply()
        check(code == 250, "the message in DATA at SIGTERM completes with 250", lines)
        try:
            code, lines = r.reply()
            check(code == 421, "then 421 closing", lines)
        except (EOFError, OSError):
            check(True, "then the connection closes")
        r.close()
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == 0, "the server exits 0 after SIGTERM", rc)
        check(not os.path.exists(os.path.join(d.dir, "correod.pid")), "pid file removed")
        got = [m for m in inbox(d, "alice").values() if b"in flight" in m]
        check(len(got) == 1 and b"first half\nsecond half\n" in got[0],
              "the message finished during the stop was delivered")
        check(not _accepts(d.port("smtp")), "no longer listening")
    check_log_clean(d, "stop instance")


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def check_log_clean(d, name):
    """After the instance stopped: no sanitizer report, no crashed child."""
    log = d.log()
    bad = [ln for ln in log.splitlines()
           if re.search(r"Sanitizer|runtime error:|killed by signal (?!9 )|"
                        r"exited with status [1-9]", ln)]
    check(not bad, "no sanitizer report or crash in the %s log" % name, bad[:5])


def main():
    exe = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="correod-smtp-")
    for sub in ("a", "b", "c"):
        os.makedirs(os.path.join(tmp, sub))
    try:
        # Outbound mail goes nowhere (a refused loopback port): it stays
        # queued for a retry instead of bouncing into the test mailboxes.
        with Correod(exe, os.path.join(tmp, "a"), domain=DOMAIN,
                     conf_extra="max_message_size %d\nroute * 127.0.0.1:1 none" %
                     MAX_SIZE) as d:
            add_user(d, "alice", ALICE_PW)
            add_user(d, "bob", BOB_PW)
            for case in (t_instance, t_delivery_bytes_and_dots, t_swaks, t_size,
                         t_unknown_user, t_open_relay, t_submission_needs_auth,
                         t_auth_before_tls, t_auth_after_starttls, t_implicit_tls,
                         t_authenticated_relay, t_mail_from_not_users, t_pipelining, t_bdat,
                         t_utf8, t_smuggling, t_starttls_injection, t_garbage, t_sighup,
                         t_kill_worker, t_hung_worker, t_log):
                run_case(case, d)
            check(d.proc.poll() is None, "the server is still running after all cases")
        check_log_clean(d, "main instance")
        with Correod(exe, os.path.join(tmp, "b"), domain=DOMAIN,
                     conf_extra="max_errors 3\nmax_connections_per_ip 3\n"
                                "timeout_command 3") as d:
            run_case(t_max_errors, d)
            run_case(t_timeout, d)
            run_case(t_write_timeout, d)
            run_case(t_conn_per_ip, d)
        check_log_clean(d, "limits instance")
        run_case(t_sigterm_mid_data, os.path.join(tmp, "c"), exe)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d passed, %d failed" % (NAME, passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
