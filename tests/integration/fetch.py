#!/usr/bin/python3
"""correo fetch: POP3 download into a Maildir against a private Dovecot.

Usage: fetch.py CORREO SRCDIR

A private Dovecot (tests/integration/dovecot_fixture.py) serves POP3 with
STLS and POP3S on loopback; its certificate is pinned.  Checked: every
message arrives byte for byte (apart from CRLF -> LF), a second run fetches
nothing, only new messages are fetched, keep=no empties the server,
keep=1d deletes what was first seen long enough ago (the state file's
times are moved back), a wrong password and an unpinned certificate fail
clearly, a second concurrent run exits 75, max_size and filters, and a
kill -9 at every step of the download followed by a normal run leaves
every message exactly once in the Maildir and nothing deleted on the
server that is not in the Maildir.  Small fake POP3 servers (threads in
this process) play the hostile cases: no STLS, a bad greeting, no UIDL, a
message larger than LIST said.

notmuch (when the notmuch command is installed), each with a private
NOTMUCH_CONFIG whose database is the fetch target Maildir: notmuch=index
makes `notmuch search --output=files tag:inbox` list exactly the downloaded
files (and a later `notmuch new` finds nothing more); notmuch=new does the
same through the command, run exactly once with "new --quiet" after a run
that delivered something and not after one that did not; a broken setup (no
database; a failing `notmuch new`) is reported with exit 1 while the
messages stay delivered and are not downloaded again by the next run.  A
correo built without notmuch refuses notmuch=index at its config line.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dovecot_fixture import Dovecot, available  # noqa: E402

CORREO, SRCDIR = sys.argv[1], sys.argv[2]
failures = []
NOTMUCH_BUILT = [False]   # set by fake_tests
STEPS = ["after-retr", "after-write", "after-fsync", "after-link", "after-record",
         "after-dele", "before-quit"]


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


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


def msgid(data):
    m = re.search(rb"^Message-ID: *(<[^>]*>)", data, re.M | re.I)
    return m.group(1).decode() if m else None


def by_id(path):
    out = {}
    for f in files(path):
        data = open(f, "rb").read()
        out.setdefault(msgid(data), []).append(data)
    return out


def make_message(i, tag, big=False):
    lines = [b"From: Sender %d <s%d@example.org>" % (i, i),
             b"To: alice@example.org",
             ("Subject: %s message %d" % (tag, i)).encode(),
             b"Message-ID: <%s.%d@test.example>" % (tag.encode(), i),
             b"Date: Mon, 23 Nov 2026 10:00:00 +0000",
             b"MIME-Version: 1.0"]
    if big:
        import base64
        payload = os.urandom(2 * 1024 * 1024)
        b64 = base64.encodebytes(payload)
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
            lines += [b"x" * 5000 + b" long line", b"y" * 12000]
        elif kind == 2:
            lines += [b".", b"..", b".leading dot", b"...three", b"", b"."]
        elif kind == 3:
            lines += [b"From the start of a line", b">From quoted", b"tab\there"]
        else:
            lines += [b"plain %d" % i] * 20
    return b"\n".join(lines) + b"\n"


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
        return subprocess.run([CORREO, "-F", self.rc, "fetch"] + list(names),
                              capture_output=True, env=self.env(extra), timeout=timeout)

    def popen(self, names=(), extra=None):
        return subprocess.Popen([CORREO, "-F", self.rc, "fetch"] + list(names),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.env(extra))

    def state_files(self):
        d = os.path.join(self.state, "correo", "pop")
        return [os.path.join(d, f) for f in os.listdir(d) if f.endswith(".state")]


def server_files(d, user="alice"):
    return files(d.maildir(user))


def wait_for(cond, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


# ---- fake POP3 servers for hostile cases ----------------------------------

class FakePop:
    """A one-connection-at-a-time POP3 server on loopback, scripted."""

    def __init__(self, greeting=b"+OK fake ready", capa=(b"USER", b"UIDL", b"TOP"),
                 msgs=None, lie=None):
        self.greeting = greeting
        self.capa = capa
        self.msgs = msgs or []          # list of bytes (LF text)
        self.lie = lie or {}            # index -> announced size
        self.log = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def wire(self, data):
        out = []
        for line in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"):
            out.append((b"." + line if line.startswith(b".") else line) + b"\r\n")
        return b"".join(out)

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.session(conn)
            except OSError:
                pass
            conn.close()

    def session(self, conn):
        f = conn.makefile("rwb")
        f.write(self.greeting + b"\r\n")
        f.flush()
        if not self.greeting.startswith(b"+OK"):
            return
        while True:
            line = f.readline()
            if not line:
                return
            self.log.append(line)
            words = line.strip().split(b" ")
            cmd = words[0].upper()
            if cmd == b"CAPA":
                f.write(b"+OK\r\n" + b"".join(c + b"\r\n" for c in self.capa) + b".\r\n")
            elif cmd in (b"USER", b"PASS", b"AUTH", b"NOOP", b"RSET", b"DELE"):
                f.write(b"+OK\r\n")
            elif cmd == b"LIST":
                f.write(b"+OK\r\n")
                for i, m in enumerate(self.msgs):
                    f.write(b"%d %d\r\n" % (i + 1, self.lie.get(i, len(self.wire(m)))))
                f.write(b".\r\n")
            elif cmd == b"UIDL" and b"UIDL" in self.capa:
                f.write(b"+OK\r\n")
                for i, m in enumerate(self.msgs):
                    f.write(b"%d uid-%d\r\n" % (i + 1, i + 1))
                f.write(b".\r\n")
            elif cmd == b"TOP" and b"TOP" in self.capa:
                m = self.msgs[int(words[1]) - 1]
                f.write(b"+OK\r\n" + self.wire(m.split(b"\n\n", 1)[0] + b"\n\n") + b".\r\n")
            elif cmd == b"RETR":
                f.write(b"+OK\r\n" + self.wire(self.msgs[int(words[1]) - 1]) + b".\r\n")
            elif cmd == b"QUIT":
                f.write(b"+OK bye\r\n")
                f.flush()
                return
            else:
                f.write(b"-ERR unknown\r\n")
            f.flush()

    def close(self):
        self.stop = True
        self.sock.close()
        self.thread.join(5)

    def sent_credentials(self):
        return any(l.upper().startswith((b"USER", b"PASS", b"AUTH")) for l in self.log)


def fake_tests(tmp):
    ev = Env(os.path.join(tmp, "fake"))
    # no STLS: refused before any credential
    fp = FakePop()
    ev.write_rc(["nostls pop://alice@127.0.0.1:%d/ pass=secret" % fp.port])
    r = ev.fetch()
    check(r.returncode == 1, "no STLS: exit %d %r" % (r.returncode, r.stderr))
    check(b"STLS" in r.stderr, "no STLS: reason not given: %r" % r.stderr)
    check(not fp.sent_credentials(), "no STLS: credentials were sent: %r" % fp.log)
    fp.close()

    # a bad greeting: nothing but the connection
    fp = FakePop(greeting=b"-ERR \x1b[31mgo away")
    ev.write_rc(["bad pop://alice@127.0.0.1:%d/ pass=secret tls=none" % fp.port])
    r = ev.fetch()
    check(r.returncode == 1, "bad greeting: exit %d" % r.returncode)
    check(not fp.sent_credentials() and not fp.log, "bad greeting: commands sent %r" % fp.log)
    check(b"\x1b" not in r.stderr, "bad greeting: raw escape in the error %r" % r.stderr)
    fp.close()

    # no UIDL: safe mode by header hash, said once, nothing downloaded twice
    msgs = [make_message(i, "nouidl") for i in range(4)]
    fp = FakePop(capa=(b"USER", b"TOP"), msgs=msgs)
    box = maildir(os.path.join(ev.mail, "NoUidl"))
    ev.write_rc(["nouidl pop://alice@127.0.0.1:%d/ pass=secret tls=none folder=+NoUidl"
                 % fp.port])
    r = ev.fetch()
    check(r.returncode == 0, "no UIDL: exit %d %r" % (r.returncode, r.stderr))
    check(b"no UIDL" in r.stdout + r.stderr, "no UIDL: not said: %r" % r.stdout)
    got = by_id(box)
    check(len(got) == 4 and all(len(v) == 1 for v in got.values()), "no UIDL: got %r" % got.keys())
    r = ev.fetch()
    check(r.returncode == 0 and len(files(box)) == 4, "no UIDL: second run fetched again")
    fp.close()

    # LIST says 200 bytes, RETR sends far more: that message fails, the others arrive
    msgs = [make_message(i, "lie") for i in range(3)]
    msgs[1] = msgs[1].replace(b"Content-Type", b"X-Pad: " + b"p" * 60000 + b"\nContent-Type", 1)
    fp = FakePop(capa=(b"USER", b"UIDL", b"TOP", b"PIPELINING"), msgs=msgs, lie={1: 200})
    box = maildir(os.path.join(ev.mail, "Lie"))
    ev.write_rc(["lie pop://alice@127.0.0.1:%d/ pass=secret tls=none folder=+Lie" % fp.port])
    r = ev.fetch()
    check(r.returncode == 1, "size lie: exit %d" % r.returncode)
    got = by_id(box)
    check(sorted(got) == ["<lie.0@test.example>", "<lie.2@test.example>"],
          "size lie: got %r" % sorted(got))
    check(b"larger than announced" in r.stderr, "size lie: %r" % r.stderr)
    fp.close()

    # an unknown key in the account: file:line in the diagnostics
    ev.write_rc(["x pop://alice@127.0.0.1:1/ pass=secret colour=blue"])
    r = ev.fetch(["x"])
    check(r.returncode == 2 and b"correorc:3" in r.stderr and b"colour" in r.stderr,
          "unknown key: %d %r" % (r.returncode, r.stderr))

    # notmuch: a bad value, index with a filter, and index in a correo
    # built without notmuch are errors at their line
    ev.write_rc(["x pop://alice@127.0.0.1:1/ pass=secret notmuch=index"])
    r = ev.fetch(["x"])
    if b"built with notmuch" in r.stderr:
        check(r.returncode == 2 and b"correorc:3" in r.stderr,
              "notmuch=index without notmuch: %d %r" % (r.returncode, r.stderr))
        print("correo is built without notmuch: notmuch=index is a config error")
    else:
        NOTMUCH_BUILT[0] = True
    for kv, word in (("notmuch=sometimes", b"sometimes"),
                     ("notmuch=index filter=procmail",
                      b"filter" if NOTMUCH_BUILT[0] else b"built with notmuch")):
        ev.write_rc(["x pop://alice@127.0.0.1:1/ pass=secret " + kv])
        r = ev.fetch(["x"])
        check(r.returncode == 2 and b"correorc:3" in r.stderr and word in r.stderr,
              "%s: %d %r" % (kv, r.returncode, r.stderr))


# ---- notmuch after a fetch -------------------------------------------------

def notmuch_tests(tmp, d, ev, pop, fpr):
    real = shutil.which("notmuch")
    if real is None:
        print("notmuch is not installed: the notmuch cases did not run")
        return
    base = "pop://bob@127.0.0.1:%d/ pass=pw tls_fingerprint=%s" % (pop, fpr)

    def setup(name, dbpath=None):
        box = maildir(os.path.join(ev.mail, name))
        cfg = os.path.join(tmp, "notmuch-config-" + name)
        with open(cfg, "w") as f:
            f.write("[database]\npath=%s\n[new]\ntags=inbox;unread;\n"
                    "[maildir]\nsynchronize_flags=true\n" % (dbpath or box))
        return box, cfg

    def nm(cfg, *args):
        return subprocess.run([real] + list(args), capture_output=True, timeout=120,
                              env=dict(os.environ, NOTMUCH_CONFIG=cfg, HOME=ev.home))

    def nm_files(cfg, query):
        r = nm(cfg, "search", "--output=files", query)
        check(r.returncode == 0, "notmuch search %s: %r" % (query, r.stderr))
        return sorted(l for l in r.stdout.decode().split("\n") if l)

    def deliver(tag, n):
        ids = set()
        for i in range(n):
            data = make_message(i, tag)
            ids.add(msgid(data))
            d.deliver("bob", data)
        return ids

    def once_each(box, ids, what):
        got = by_id(box)
        check(set(got) == ids and all(len(v) == 1 for v in got.values()),
              "%s: %d messages for %d ids" % (what, len(files(box)), len(ids)))

    def clear_server():
        for f in server_files(d, "bob"):
            os.unlink(f)

    # 1. notmuch=index: exactly the downloaded files, tagged with new.tags
    box, cfg = setup("NMI")
    r = nm(cfg, "new", "--quiet")
    check(r.returncode == 0, "notmuch new (setup): %r" % r.stderr)
    if not NOTMUCH_BUILT[0]:
        print("correo is built without notmuch: only the notmuch=new cases ran")
    else:
        ids = deliver("nmi", 6)
        ev.write_rc(["nmi %s folder=+NMI keep=no notmuch=index" % base])
        env = {"NOTMUCH_CONFIG": cfg}
        r = ev.fetch(extra=env)
        check(r.returncode == 0 and r.stdout == b"bob@127.0.0.1: 6 new messages\n"
              and r.stderr == b"", "index: %d %r %r" % (r.returncode, r.stdout, r.stderr))
        once_each(box, ids, "index")
        check(len(files(box)) == 6 and nm_files(cfg, "tag:inbox") == sorted(files(box)),
              "index: notmuch lists %r, the Maildir has %r"
              % (nm_files(cfg, "tag:inbox"), files(box)))
        check(nm_files(cfg, "tag:unread") == sorted(files(box)), "index: not tagged unread")
        check(nm_files(cfg, "*") == sorted(files(box)), "index: more in the database")
        r = ev.fetch(extra=env)
        check(r.returncode == 0 and r.stdout == b"" and r.stderr == b"",
              "index, nothing new: %d %r %r" % (r.returncode, r.stdout, r.stderr))
        ids |= deliver("nmi2", 2)
        r = ev.fetch(extra=env)
        check(r.returncode == 0 and r.stdout == b"bob@127.0.0.1: 2 new messages\n",
              "index, two more: %d %r %r" % (r.returncode, r.stdout, r.stderr))
        once_each(box, ids, "index, two more")
        check(len(files(box)) == 8 and nm_files(cfg, "tag:inbox") == sorted(files(box)),
              "index, two more: notmuch lists %d files" % len(nm_files(cfg, "tag:inbox")))
        # notmuch's own scan agrees: nothing left for it to add
        r = nm(cfg, "new")
        check(r.returncode == 0 and b"No new mail" in r.stdout,
              "notmuch new after index: %r %r" % (r.stdout, r.stderr))
        check(nm_files(cfg, "*") == sorted(files(box)), "index: notmuch new changed the set")

        # 2. a broken setup (no database at the Maildir): exit 1, the mail
        # stays delivered and is not downloaded again
        bbox, bcfg = setup("NMB")
        ids = deliver("nmb", 3)
        ev.write_rc(["nmb %s folder=+NMB notmuch=index" % base])
        r = ev.fetch(extra={"NOTMUCH_CONFIG": bcfg})
        check(r.returncode == 1 and r.stdout == b"bob@127.0.0.1: 3 new messages\n"
              and b"notmuch" in r.stderr and b"database" in r.stderr
              and b"3 of 3" in r.stderr,
              "index, no database: %d %r %r" % (r.returncode, r.stdout, r.stderr))
        once_each(bbox, ids, "index, no database")
        check(len(server_files(d, "bob")) == 3, "index, no database: keep=yes not kept")
        check(not os.path.exists(os.path.join(bbox, ".notmuch")),
              "index, no database: a database appeared")
        r = ev.fetch(extra={"NOTMUCH_CONFIG": bcfg})
        check(r.returncode == 0 and r.stdout == b"" and r.stderr == b"",
              "index, no database, next run: %d %r %r" % (r.returncode, r.stdout, r.stderr))
        once_each(bbox, ids, "index, no database, next run")
        clear_server()

    # 3. notmuch=new: the command (a wrapper that logs, then the real one)
    nbox, ncfg = setup("NMN")
    r = nm(ncfg, "new", "--quiet")
    check(r.returncode == 0, "notmuch new (setup): %r" % r.stderr)
    bindir = os.path.join(tmp, "nmbin")
    os.makedirs(bindir)
    log, failmark = os.path.join(tmp, "nm.log"), os.path.join(tmp, "nm.fail")
    with open(os.path.join(bindir, "notmuch"), "w") as f:
        f.write("#!/bin/sh\necho \"$*\" >> %s\n"
                "if [ -e %s ]; then echo 'simulated failure' >&2; exit 3; fi\n"
                "exec %s \"$@\"\n" % (log, failmark, real))
    os.chmod(os.path.join(bindir, "notmuch"), 0o755)
    env = {"NOTMUCH_CONFIG": ncfg, "PATH": bindir + ":" + os.environ.get("PATH", "")}

    def runs():
        return open(log).read().split("\n")[:-1] if os.path.exists(log) else []

    ids = deliver("nmn", 5)
    ev.write_rc(["nmn %s folder=+NMN keep=no notmuch=new" % base])
    r = ev.fetch(extra=env)
    check(r.returncode == 0 and r.stdout == b"bob@127.0.0.1: 5 new messages\n"
          and r.stderr == b"", "new: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    check(runs() == ["new --quiet"], "new: notmuch ran as %r" % runs())
    once_each(nbox, ids, "new")
    check(len(files(nbox)) == 5 and nm_files(ncfg, "tag:inbox") == sorted(files(nbox)),
          "new: notmuch lists %r, the Maildir has %r"
          % (nm_files(ncfg, "tag:inbox"), files(nbox)))
    r = ev.fetch(extra=env)
    check(r.returncode == 0 and r.stdout == b"" and runs() == ["new --quiet"],
          "new, nothing delivered: %d %r, runs %r" % (r.returncode, r.stderr, runs()))

    # 4. `notmuch new` fails: exit 1 with its status and stderr; the mail
    # stays delivered (and deleted on the server, keep=no), once
    open(failmark, "w").close()
    ids |= deliver("nmn2", 2)
    r = ev.fetch(extra=env)
    check(r.returncode == 1 and r.stdout == b"bob@127.0.0.1: 2 new messages\n"
          and b"notmuch new" in r.stderr and b"exit status 3" in r.stderr
          and b"simulated failure" in r.stderr,
          "new fails: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    once_each(nbox, ids, "new fails")
    check(len(server_files(d, "bob")) == 0, "new fails: keep=no not applied")
    r = ev.fetch(extra=env)
    check(r.returncode == 0 and r.stdout == b"" and r.stderr == b"" and len(runs()) == 2,
          "new fails, next run: %d %r, runs %r" % (r.returncode, r.stderr, runs()))
    once_each(nbox, ids, "new fails, next run")
    os.unlink(failmark)

    # 5. the real notmuch with its database missing: its own error, exit 1
    mbox, mcfg = setup("NMM", dbpath=os.path.join(tmp, "no-such-dir"))
    ids = deliver("nmm", 2)
    ev.write_rc(["nmm %s folder=+NMM notmuch=new" % base])
    r = ev.fetch(extra={"NOTMUCH_CONFIG": mcfg})
    check(r.returncode == 1 and b"notmuch new failed" in r.stderr
          and b"no-such-dir" in r.stderr,
          "new, no database: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    once_each(mbox, ids, "new, no database")
    r = ev.fetch(extra={"NOTMUCH_CONFIG": mcfg})
    check(r.returncode == 0 and r.stdout == b"" and r.stderr == b"",
          "new, no database, next run: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    once_each(mbox, ids, "new, no database, next run")
    clear_server()


def dovecot_tests(tmp):
    with Dovecot(tmp, users={"alice": "secret", "bob": "pw"}) as d:
        ev = Env(tmp)
        pop, pops, fpr = d.port("pop3"), d.port("pop3s"), d.fingerprint
        base = "pop://alice@127.0.0.1:%d/ pass=secret tls_fingerprint=%s" % (pop, fpr)
        originals = {}
        for i in range(30):
            data = make_message(i, "first", big=(i == 7))
            originals[msgid(data)] = data
            d.deliver("alice", data)

        # 1. download over STLS: everything, byte for byte
        ev.write_rc(["main " + base])
        r = ev.fetch()
        check(r.returncode == 0, "first run: exit %d %r" % (r.returncode, r.stderr))
        check(r.stdout == b"alice@127.0.0.1: 30 new messages\n", "first run said %r" % r.stdout)
        got = by_id(ev.mail)
        check(len(got) == 30, "first run: %d messages" % len(got))
        for mid, data in originals.items():
            check(got.get(mid) == [data], "message %s differs or is missing" % mid)
        check(not os.listdir(os.path.join(ev.mail, "tmp")), "tmp/ not empty")

        # 2. again: nothing new, quiet
        r = ev.fetch()
        check(r.returncode == 0 and r.stdout == b"" and r.stderr == b"",
              "second run: %d %r %r" % (r.returncode, r.stdout, r.stderr))
        check(len(files(ev.mail)) == 30, "second run changed the Maildir")

        # 3. five more: only those
        for i in range(30, 35):
            data = make_message(i, "first")
            originals[msgid(data)] = data
            d.deliver("alice", data)
        r = ev.fetch(["main"])
        check(r.stdout == b"alice@127.0.0.1: 5 new messages\n", "third run said %r" % r.stdout)
        got = by_id(ev.mail)
        check(len(got) == 35 and all(len(v) == 1 for v in got.values()),
              "third run: %d messages" % len(got))

        # 4. POP3S with the pin, into another folder; a wrong pin is refused
        s_box = maildir(os.path.join(ev.mail, "S"))
        ev.write_rc(["main " + base,
                     "tls pops://alice@127.0.0.1:%d/ pass=secret tls_fingerprint=%s folder=+S"
                     % (pops, fpr),
                     "badpin pops://alice@127.0.0.1:%d/ pass=secret folder=+S tls_fingerprint=%s"
                     % (pops, "00" * 32)])
        r = ev.fetch(["tls"])
        check(r.returncode == 0 and len(by_id(s_box)) == 35,
              "pop3s: %d %r, %d messages" % (r.returncode, r.stderr, len(by_id(s_box))))
        r = ev.fetch(["badpin"])
        check(r.returncode == 1 and b"SHA256" in r.stderr.upper(), "bad pin: %r" % r.stderr)

        # 5. wrong password: clear error, exit 1
        ev.write_rc(["wrong pop://alice@127.0.0.1:%d/ pass=nope tls_fingerprint=%s" % (pop, fpr)])
        r = ev.fetch()
        check(r.returncode == 1 and b"login refused" in r.stderr, "wrong pass: %d %r"
              % (r.returncode, r.stderr))

        # 6. a second concurrent run exits 75
        mark = os.path.join(tmp, "mark")
        ev.write_rc(["slow pop://alice@127.0.0.1:%d/ tls_fingerprint=%s folder=+S "
                     "'pass_cmd=touch %s; sleep 3; echo secret'" % (pop, fpr, mark)])
        p1 = ev.popen()
        check(wait_for(lambda: os.path.exists(mark)), "slow run did not start")
        r = ev.fetch()
        check(r.returncode == 75 and b"running" in r.stderr, "concurrent: %d %r"
              % (r.returncode, r.stderr))
        out, err = p1.communicate(timeout=120)
        check(p1.returncode == 0, "slow run: %d %r" % (p1.returncode, err))

        # 7. max_size: the 2 MB message is skipped and named; a filter delivers
        big_box = maildir(os.path.join(ev.mail, "Small"))
        ev.write_rc(["small %s folder=+Small max_size=1M" % base])
        r = ev.fetch()
        check(r.returncode == 1 and b"max_size" in r.stderr and b"first message 7" in r.stderr,
              "max_size: %d %r" % (r.returncode, r.stderr))
        check(len(by_id(big_box)) == 34, "max_size: %d messages" % len(by_id(big_box)))
        out = os.path.join(tmp, "filtered")
        os.makedirs(out)
        ev.write_rc(["filt %s 'filter=cat > %s/$$.eml'" % (base, out),
                     "filtfail %s 'filter=cat >/dev/null; echo nope >&2; exit 3'" % base])
        r = ev.fetch(["filt"])
        check(r.returncode == 0 and len(os.listdir(out)) == 35, "filter: %d %r %d" %
              (r.returncode, r.stderr, len(os.listdir(out))))
        r = ev.fetch(["filtfail"])
        check(r.returncode == 1 and b"status 3" in r.stderr and b"nope" in r.stderr,
              "failing filter: %d %r" % (r.returncode, r.stderr[:300]))
        check(len(server_files(d)) == 35, "a failing filter deleted mail")

        # 8. keep=1d: nothing deleted at first; after moving first-seen back, all
        k_box = maildir(os.path.join(ev.mail, "K"))
        ev.write_rc(["keepday %s folder=+K keep=1d" % base])
        before = set(os.listdir(os.path.join(ev.state, "correo", "pop")))
        r = ev.fetch()
        check(r.returncode == 0 and len(by_id(k_box)) == 35, "keep=1d first run")
        check(len(server_files(d)) == 35, "keep=1d deleted too early")
        new = [f for f in set(os.listdir(os.path.join(ev.state, "correo", "pop"))) - before
               if f.endswith(".state")]
        check(len(new) == 1, "keep=1d: state file %r" % new)
        if new:
            path = os.path.join(ev.state, "correo", "pop", new[0])
            text = open(path).read()
            old = int(time.time()) - 2 * 86400
            text = re.sub(r"^([SPD] \S+) \d+", lambda m: "%s %d" % (m.group(1), old), text,
                          flags=re.M)
            open(path, "w").write(text)
        r = ev.fetch()
        check(r.returncode == 0, "keep=1d second run: %r" % r.stderr)
        check(len(server_files(d)) == 0, "keep=1d: %d left on the server" % len(server_files(d)))
        check(len(by_id(k_box)) == 35, "keep=1d: local copy incomplete")

        # 9. keep=no: the server is emptied, the local copy complete
        n_box = maildir(os.path.join(ev.mail, "N"))
        for i in range(10):
            d.deliver("alice", make_message(i, "keepno"))
        ev.write_rc(["keepno %s folder=+N keep=no" % base])
        r = ev.fetch()
        check(r.returncode == 0 and len(by_id(n_box)) == 10 and len(server_files(d)) == 0,
              "keep=no: %d %r, %d local, %d server" % (r.returncode, r.stderr,
                                                        len(by_id(n_box)), len(server_files(d))))

        # 10. notmuch after a fetch (as bob, into folders of its own)
        notmuch_tests(tmp, d, ev, pop, fpr)

        # 11. kill -9 at every step, then a normal run: exactly once, nothing lost
        for keep in ("no", "yes"):
            for st in STEPS:
                for nth in (1, 3):
                    tag = "kill-%s-%s-%d" % (keep, st, nth)
                    box = maildir(os.path.join(ev.mail, tag))
                    ids = set()
                    for i in range(6):
                        data = make_message(i, tag)
                        ids.add(msgid(data))
                        d.deliver("alice", data)
                    on_server_before = {msgid(open(f, "rb").read()) for f in server_files(d)}
                    ev.write_rc(["k%s %s folder=+%s keep=%s" % (tag, base, tag, keep)])
                    r = ev.fetch(extra={"CORREO_FETCH_KILL_AT": "%s:%d" % (st, nth)})
                    reached = r.returncode == -9
                    killed_server = {msgid(open(f, "rb").read()) for f in server_files(d)}
                    local = by_id(box)
                    lost = (on_server_before - killed_server) - set(local)
                    check(not lost, "%s: deleted on the server but not local: %r" % (tag, lost))
                    r = ev.fetch()
                    check(r.returncode == 0, "%s: normal run %d %r" % (tag, r.returncode, r.stderr))
                    local = by_id(box)
                    check(set(local) == ids, "%s: have %d of 6" % (tag, len(set(local) & ids)))
                    check(all(len(v) == 1 for v in local.values()),
                          "%s: duplicates %r" % (tag, [k for k, v in local.items() if len(v) > 1]))
                    check(not os.listdir(os.path.join(box, "tmp")), "%s: tmp/ left over" % tag)
                    if keep == "no":
                        check(len(server_files(d)) == 0, "%s: server not emptied" % tag)
                    # after-record and before-quit happen once per run here
                    expect_kill = ((nth == 1 or st not in ("after-record", "before-quit"))
                                   and (keep == "no" or st != "after-dele"))
                    check(reached == expect_kill, "%s: killed=%s (exit %d)"
                          % (tag, reached, r.returncode))
                    if keep == "yes":
                        for f in server_files(d):
                            os.unlink(f)


with tempfile.TemporaryDirectory(prefix="correo-fetch-") as tmp:
    os.chmod(tmp, 0o755)
    fake_tests(tmp)
    if available():
        dovecot_tests(tmp)
    else:
        print("dovecot is not installed: only the fake-server cases ran")

if failures:
    print("%d failures" % len(failures))
    sys.exit(1)
print("fetch: all checks passed")
