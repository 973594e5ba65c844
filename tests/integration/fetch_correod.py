#!/usr/bin/python3
"""correo fetch against correod's POP3: the fetch.py scenarios with correod
as the server.

Usage: fetch_correod.py CORREO CORREOD SRCDIR

A private correod (tests/integration/correod_fixture.py) with one user;
mail reaches the user's Maildir the way it does in real use, through
correod's SMTP port (smtplib) and through `correod sendmail`.  correo
fetches over STLS on the plain POP3 port and over POP3S, the instance's
certificate pinned by its SHA-256.  Checked: every message arrives byte
for byte as correod serves it (RETR sends the Maildir file with LF ->
CRLF, correo stores LF, so the local file equals the server's file with
CRLF -> LF); a second run fetches nothing and says nothing; more mail:
only that; a wrong pin is refused; keep=no leaves the server's Maildir
empty and the local copy complete; keep=1d deletes only what was first
seen long enough ago; and a kill -9 of correo fetch at every step of a
message's cycle (after-retr, after-write, after-fsync, after-link,
after-record, after-dele, before-quit), at the 1st and the 3rd time,
with keep=no and keep=yes, followed by a normal run: every Message-ID
exactly once locally, nothing deleted on the server by the killed
session (correod deletes only at QUIT) and nothing deleted that is not
local.  After each killed client the next run must find the maildrop
free (no [IN-USE]): correod has to release its lock when the connection
drops, not when its session times out.  Finally correod's log must show
no crash and no sanitizer report.
"""
import base64
import os
import re
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correod_fixture import Correod, wait_until  # noqa: E402

CORREO, CORREOD, SRCDIR = sys.argv[1], sys.argv[2], sys.argv[3]
DOMAIN = "example.test"
USER, PASSWORD = "alice", "alice-fetch-1"
ADDR = "%s@%s" % (USER, DOMAIN)
STEPS = ["after-retr", "after-write", "after-fsync", "after-link", "after-record",
         "after-dele", "before-quit"]
failures = []
passed = [0]


def check(cond, what):
    if cond:
        passed[0] += 1
    else:
        failures.append(what)
        print("FAIL:", what, flush=True)
    return cond


def maildir(path):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    return path


def files(path):
    out = []
    for sub in ("cur", "new"):
        d = os.path.join(path, sub)
        if os.path.isdir(d):
            out += [os.path.join(d, f) for f in sorted(os.listdir(d))]
    return out


def read(path):
    with open(path, "rb") as f:
        return f.read()


def msgid(data):
    m = re.search(rb"^Message-ID: *(<[^>]*>)", data, re.M | re.I)
    return m.group(1).decode() if m else None


def by_id(path):
    out = {}
    for f in files(path):
        data = read(f)
        out.setdefault(msgid(data), []).append(data)
    return out


def as_fetched(server_bytes):
    """What correo should store: RETR sends the file with every bare LF as
    CRLF; correo turns CRLF back into LF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", server_bytes).replace(b"\r\n", b"\n")


def make_message(i, tag, big=False):
    lines = [b"From: Sender %d <s%d@remote.example>" % (i, i),
             ("To: %s" % ADDR).encode(),
             ("Subject: %s message %d" % (tag, i)).encode(),
             b"Message-ID: <%s.%d@test.example>" % (tag.encode(), i),
             b"Date: Mon, 23 Nov 2026 10:00:00 +0000",
             b"MIME-Version: 1.0"]
    if big:
        b64 = base64.encodebytes(os.urandom(2 * 1024 * 1024))
        lines += [b"Content-Type: multipart/mixed; boundary=BOUND", b"",
                  b"--BOUND", b"Content-Type: text/plain", b"", b"see attached", b"--BOUND",
                  b"Content-Type: application/octet-stream",
                  b"Content-Transfer-Encoding: base64", b"", b64.rstrip(b"\n"), b"--BOUND--"]
    else:
        lines += [b"Content-Type: text/plain; charset=utf-8",
                  b"Content-Transfer-Encoding: 8bit", b""]
        kind = i % 5
        if kind == 0:
            lines += ["Grüße aus Köln, 日本語 %d" % i, "ÆØÅ äöü"]
            lines = [x.encode() if isinstance(x, str) else x for x in lines]
        elif kind == 1:
            lines += [b"x" * 900 + b" long line", b"y" * 3000]
        elif kind == 2:
            lines += [b".", b"..", b".leading dot", b"...three", b"", b"."]
        elif kind == 3:
            lines += [b"From the start of a line", b">From quoted", b"tab\there"]
        else:
            lines += [b"plain %d" % i] * 20
    return b"\n".join(lines) + b"\n"


def fingerprint(d):
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in",
                          os.path.join(d.dir, "cert.pem")], check=True, capture_output=True,
                         text=True).stdout
    return out.strip().split("=", 1)[1]


def server_files(d):
    return files(d.maildir(USER))


def server_ids(d):
    return {msgid(read(f)) for f in server_files(d)}


def server_snapshot(d):
    """{Message-ID: bytes correo should store} of the server's INBOX now."""
    out = {}
    for f in server_files(d):
        data = read(f)
        out[msgid(data)] = as_fetched(data)
    return out


def clear_server(d):
    for f in server_files(d):
        os.unlink(f)


def deliver_smtp(d, msgs):
    """Send the messages through correod's SMTP port, one session."""
    before = len(server_files(d))
    s = smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=60)
    try:
        for data in msgs:
            # smtplib sends bytes as they are: SMTP wants CRLF
            refused = s.sendmail("sender@remote.example", [ADDR], data.replace(b"\n", b"\r\n"))
            check(not refused, "smtp: refused %r" % refused)
    finally:
        s.quit()
    wait_until(lambda: len(server_files(d)) >= before + len(msgs), timeout=30,
               what="the SMTP deliveries in the Maildir")


def deliver_sendmail(d, data):
    before = len(server_files(d))
    r = subprocess.run([CORREOD, "sendmail", "-c", d.conf, "-i", "-f",
                        "sender@remote.example", ADDR], input=data, capture_output=True,
                       timeout=60)
    check(r.returncode == 0, "correod sendmail: %d %r" % (r.returncode, r.stderr))
    wait_until(lambda: len(server_files(d)) >= before + 1, timeout=30,
               what="the sendmail delivery in the Maildir")


class Env:
    def __init__(self, tmp):
        self.tmp = tmp
        self.home = os.path.join(tmp, "home")
        self.state = os.path.join(tmp, "state")
        os.makedirs(self.home, exist_ok=True)
        self.mail = maildir(os.path.join(tmp, "Mail"))
        self.rc = os.path.join(tmp, "correorc")

    def env(self, extra=None):
        e = dict(os.environ, HOME=self.home, TZ="UTC", XDG_STATE_HOME=self.state,
                 CORREO_DATADIR_OVERRIDE=SRCDIR)
        e.pop("CORREO_FETCH_KILL_AT", None)
        e.update(extra or {})
        return e

    def write_rc(self, accounts):
        with open(self.rc, "w") as f:
            f.write("set folder=%s\nset spoolfile=%s\n" % (self.mail, self.mail))
            for a in accounts:
                f.write("account %s\n" % a)

    def fetch(self, names=(), extra=None, timeout=300):
        r = subprocess.run([CORREO, "-F", self.rc, "fetch"] + list(names),
                           capture_output=True, env=self.env(extra), timeout=timeout)
        check(b"Sanitizer" not in r.stderr and b"runtime error" not in r.stderr,
              "correo fetch: sanitizer report %r" % r.stderr[-2000:])
        return r

    def state_dir(self):
        return os.path.join(self.state, "correo", "pop")


def new_said(r, n):
    return r.stdout.endswith(b": %d new messages\n" % n) and r.stdout.count(b"\n") == 1


def check_same(box, want, what):
    got = by_id(box)
    check(set(got) == set(want), "%s: %d local, %d expected; missing %r, extra %r"
          % (what, len(got), len(want), sorted(set(want) - set(got))[:5],
             sorted(set(got) - set(want))[:5]))
    dup = [k for k, v in got.items() if len(v) > 1]
    check(not dup, "%s: duplicates %r" % (what, dup[:5]))
    differ = [k for k, v in got.items() if k in want and v[0] != want[k]]
    check(not differ, "%s: not byte for byte: %r" % (what, differ[:5]))
    check(not os.listdir(os.path.join(box, "tmp")), "%s: tmp/ not empty" % what)


in_use_notes = []


def fetch_after_kill(ev, d, tag):
    """The normal run after a killed one.  It must not meet [IN-USE]: the
    killed client's connection is gone, so correod must have let go of the
    maildrop.  If it did not, say so and wait (on a deadline) for the lock
    to go, so that the rest of the scenario can still be checked."""
    r = ev.fetch()
    if r.returncode != 0 and b"IN-USE" in r.stderr:
        t0 = time.monotonic()
        check(False, "%s: the run after the kill met [IN-USE]: %r" % (tag, r.stderr))

        def free():
            nonlocal r
            r = ev.fetch()
            return not (r.returncode != 0 and b"IN-USE" in r.stderr)
        try:
            wait_until(free, timeout=120, what="correod to release the maildrop lock")
            in_use_notes.append("%s: lock held %.1f s after the kill"
                                % (tag, time.monotonic() - t0))
        except TimeoutError:
            in_use_notes.append("%s: lock still held after 120 s" % tag)
    return r


def scenarios(tmp, d):
    ev = Env(tmp)
    fpr = fingerprint(d)
    user = ADDR.replace("@", "%40")
    base = "pop://%s@127.0.0.1:%d/ pass=%s tls_fingerprint=%s" % (user, d.port("pop3"),
                                                                  PASSWORD, fpr)
    pops = "pops://%s@127.0.0.1:%d/ pass=%s" % (user, d.port("pop3s"), PASSWORD)

    # 30 messages: most by SMTP, a few by `correod sendmail`, one of 2 MB
    msgs = [make_message(i, "first", big=(i == 7)) for i in range(30)]
    deliver_smtp(d, [m for i, m in enumerate(msgs) if i % 10 != 9])
    for i in (9, 19, 29):
        deliver_sendmail(d, msgs[i])
    want = server_snapshot(d)
    check(len(want) == 30 and None not in want, "server has %d messages" % len(want))
    for m in msgs:   # correod keeps the message, adding its own trace headers
        mid = msgid(m)
        check(mid in want and want[mid].endswith(m.split(b"\n", 1)[1]),
              "%s: the server's copy does not end with what was sent" % mid)

    # 1. STLS on the plain port: everything, byte for byte
    ev.write_rc(["main " + base])
    r = ev.fetch()
    check(r.returncode == 0 and new_said(r, 30),
          "first run: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    check_same(ev.mail, want, "first run")
    check(len(server_files(d)) == 30, "first run (keep): the server lost mail")

    # 2. again: nothing new, quiet
    r = ev.fetch()
    check(r.returncode == 0 and r.stdout == b"" and r.stderr == b"",
          "second run: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    check(len(files(ev.mail)) == 30, "second run changed the Maildir")

    # 3. five more: only those
    more = [make_message(i, "more") for i in range(5)]
    deliver_smtp(d, more[:4])
    deliver_sendmail(d, more[4])
    want = server_snapshot(d)
    r = ev.fetch(["main"])
    check(r.returncode == 0 and new_said(r, 5),
          "third run: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    check_same(ev.mail, want, "third run")

    # 4. POP3S with the pin, into another folder; a wrong pin is refused
    s_box = maildir(os.path.join(ev.mail, "S"))
    ev.write_rc(["main " + base,
                 "tls %s tls_fingerprint=%s folder=+S" % (pops, fpr),
                 "badpin %s folder=+S tls_fingerprint=%s" % (pops, "00" * 32)])
    r = ev.fetch(["badpin"])
    check(r.returncode == 1 and b"SHA256" in r.stderr.upper() and not files(s_box),
          "bad pin: %d %r" % (r.returncode, r.stderr))
    r = ev.fetch(["tls"])
    check(r.returncode == 0 and new_said(r, 35),
          "pop3s: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    check_same(s_box, want, "pop3s")
    r = ev.fetch(["tls"])
    check(r.returncode == 0 and r.stdout == b"" and r.stderr == b"",
          "pop3s again: %d %r %r" % (r.returncode, r.stdout, r.stderr))

    # 5. keep=1d: nothing deleted at first; after moving first-seen back, all
    k_box = maildir(os.path.join(ev.mail, "K"))
    ev.write_rc(["keepday %s folder=+K keep=1d" % base])
    before = set(os.listdir(ev.state_dir()))
    r = ev.fetch()
    check(r.returncode == 0 and new_said(r, 35), "keep=1d first run: %d %r"
          % (r.returncode, r.stderr))
    check(len(server_files(d)) == 35, "keep=1d deleted too early")
    new = [f for f in set(os.listdir(ev.state_dir())) - before if f.endswith(".state")]
    if check(len(new) == 1, "keep=1d: state file %r" % new):
        path = os.path.join(ev.state_dir(), new[0])
        text = open(path).read()
        old = int(time.time()) - 2 * 86400
        uidls = set(re.findall(r"^[SPD] (\S+) \d+", text, flags=re.M))
        check(len(uidls) == 35, "keep=1d: %d UIDLs in the state file" % len(uidls))
        text = re.sub(r"^([SPD] \S+) \d+", lambda m: "%s %d" % (m.group(1), old), text,
                      flags=re.M)
        open(path, "w").write(text)
    r = ev.fetch()
    check(r.returncode == 0, "keep=1d second run: %r" % r.stderr)
    check(len(server_files(d)) == 0, "keep=1d: %d left on the server" % len(server_files(d)))
    check_same(k_box, want, "keep=1d")

    # 6. keep=no: the server's Maildir emptied, the local copy complete
    n_box = maildir(os.path.join(ev.mail, "N"))
    deliver_smtp(d, [make_message(i, "keepno") for i in range(8)])
    deliver_sendmail(d, make_message(8, "keepno"))
    deliver_sendmail(d, make_message(9, "keepno"))
    want = server_snapshot(d)
    ev.write_rc(["keepno %s folder=+N keep=no" % base])
    r = ev.fetch()
    check(r.returncode == 0 and new_said(r, 10),
          "keep=no: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    check(len(server_files(d)) == 0, "keep=no: %d left on the server" % len(server_files(d)))
    check_same(n_box, want, "keep=no")

    # 7. kill -9 at every step, then a normal run: exactly once, nothing lost
    clear_server(d)
    for keep in ("no", "yes"):
        for st in STEPS:
            for nth in (1, 3):
                tag = "kill-%s-%s-%d" % (keep, st, nth)
                box = maildir(os.path.join(ev.mail, tag))
                ms = [make_message(i, tag) for i in range(6)]
                deliver_smtp(d, ms[:5])
                deliver_sendmail(d, ms[5])
                want = server_snapshot(d)
                check(len(want) == 6, "%s: %d on the server" % (tag, len(want)))
                ev.write_rc(["k%s %s folder=+%s keep=%s" % (tag, base, tag, keep)])
                r = ev.fetch(extra={"CORREO_FETCH_KILL_AT": "%s:%d" % (st, nth)})
                reached = r.returncode == -9
                # after-record and before-quit happen once per run here;
                # after-dele only when something is deleted
                expect_kill = ((nth == 1 or st not in ("after-record", "before-quit"))
                               and (keep == "no" or st != "after-dele"))
                check(reached == expect_kill, "%s: killed=%s, expected %s (exit %d %r)"
                      % (tag, reached, expect_kill, r.returncode, r.stderr[-300:]))
                on_server = server_ids(d)
                lost = (set(want) - on_server) - set(by_id(box))
                check(not lost, "%s: deleted on the server but not local: %r" % (tag, lost))
                if reached:
                    # no QUIT was sent: correod must not have deleted anything
                    check(on_server == set(want), "%s: the killed session deleted %r"
                          % (tag, set(want) - on_server))
                    r = fetch_after_kill(ev, d, tag)
                else:
                    r = ev.fetch()
                check(r.returncode == 0, "%s: normal run %d %r" % (tag, r.returncode, r.stderr))
                check_same(box, want, tag)
                if keep == "no":
                    check(len(server_files(d)) == 0, "%s: server not emptied" % tag)
                else:
                    check(server_ids(d) == set(want), "%s: keep=yes lost server mail" % tag)
                    r = ev.fetch()
                    check(r.returncode == 0 and r.stdout == b"",
                          "%s: a third run: %d %r" % (tag, r.returncode, r.stdout))
                    check_same(box, want, tag + " third run")
                    clear_server(d)


def check_log_clean(d):
    log = d.log()
    bad = [ln for ln in log.splitlines()
           if re.search(r"Sanitizer|runtime error:|killed by signal|exited with status [1-9]",
                        ln)]
    check(not bad, "correod log: crash or sanitizer report %r" % bad[:5])
    check(PASSWORD not in log, "correod log: the password is in it")


def main():
    with tempfile.TemporaryDirectory(prefix="correo-fetch-correod-") as tmp:
        os.chmod(tmp, 0o755)
        os.makedirs(os.path.join(tmp, "srv"))
        with Correod(CORREOD, os.path.join(tmp, "srv"), domain=DOMAIN,
                     conf_extra="route * 127.0.0.1:1 none") as d:
            d.add_user(USER, PASSWORD)
            for s in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(d.maildir(USER), s), exist_ok=True)
            wait_until(lambda: _accepts(d.port("pop3")) and _accepts(d.port("pop3s")),
                       timeout=10, what="the POP3 ports")
            try:
                scenarios(tmp, d)
            except Exception as ex:  # report it with the checks so far
                traceback.print_exc()
                check(False, "the scenarios raised %s: %s" % (type(ex).__name__, ex))
        check_log_clean(d)
    for n in in_use_notes:
        print("note:", n)
    print("fetch_correod: %d checks passed, %d failed" % (passed[0], len(failures)))
    return 1 if failures else 0


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
