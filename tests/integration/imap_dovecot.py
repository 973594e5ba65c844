#!/usr/bin/python3
"""The IMAP backend (mua/imap, mua/mbox_imap) against a private Dovecot.

Usage: imap_dovecot.py IMAPTOOL SRCDIR

A private Dovecot (tests/integration/dovecot_fixture.py) serves IMAPS and
IMAP with STARTTLS on loopback; its certificate is pinned.  imaptool
(tests/tools/imaptool.c) opens folders through mailbox_open, as the
client does.  Checked against python's imaplib: the listing holds exactly
the messages Dovecot holds (UID, flags, size, sender, subject); a second
open takes every header from the header cache (the backend's statistics,
and Dovecot's own count of bytes sent at logout is far smaller); a new
message is the only one fetched; STARTTLS on the plain port; a wrong
password, a wrong pin and a missing password fail clearly; flags set and
cleared, delete + expunge, copy, move, append, read of a whole message
and of its header; reconnecting: the session's imap process killed while a
flag change is pending (the change reaches the server, the store keeps
every record, others' new and expunged messages are picked up by UID),
IDLE (another client's APPEND reported by check() within 2 s), a QRESYNC
reopen after 10 new messages and 5 flag changes (only those cross the
wire: header fetches, commands and bytes counted), a folder deleted and
recreated under an open session (new UIDVALIDITY: reloaded); tiny fake
servers (threads here) play a PREAUTH and a
bad greeting on an account that needs STARTTLS, and the client sends them
nothing.
"""
import email.header
import imaplib
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dovecot_fixture import Dovecot, available  # noqa: E402

TOOL, SRCDIR = sys.argv[1], sys.argv[2]
CORREO = sys.argv[3] if len(sys.argv) > 3 else None   # correo itself, for -l
failures = []
BIG = 2600


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def message(i, subject=None, sender=None, extra=b""):
    subject = subject or "Message number %d" % i
    sender = sender or "sender%d@example.org" % i
    return ("From: Sender %d <%s>\r\nTo: alice@example.org\r\nSubject: %s\r\n"
            "Date: Mon, 2 Nov 2026 10:%02d:00 +0100\r\nMessage-ID: <m%d@example.org>\r\n"
            % (i, sender, subject, i % 60, i)).encode() + extra + \
        ("\r\nBody of message %d.\r\n" % i).encode()


def run(args, env, timeout=60):
    p = subprocess.run([TOOL] + args, env=env, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def stats(stderr):
    m = re.search(r"stats hits=(\d+) misses=(\d+) stale=(\d+)", stderr)
    return tuple(int(x) for x in m.groups()) if m else None


def listing(stdout):
    out = {}
    for line in stdout.splitlines():
        f = line.split("\t")
        if len(f) == 5 and f[0].isdigit():
            out[int(f[0])] = {"flags": f[1], "size": int(f[2]), "from": f[3], "subject": f[4]}
    return out


def server_view(d, folder="INBOX"):
    """UID -> flags letters, size, subject as Dovecot tells imaplib."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", d.port("imaps"), ssl_context=ctx)
    m.login("alice", "secret")
    typ, _ = m.select(folder, readonly=True)
    out = {}
    if typ == "OK":
        typ, data = m.uid("FETCH", "1:*",
                          "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta = item[0].decode()
            uid = int(re.search(r"UID (\d+)", meta).group(1))
            size = int(re.search(r"RFC822.SIZE (\d+)", meta).group(1))
            flags = re.search(r"FLAGS \(([^)]*)\)", meta).group(1)
            raw = item[1].decode().split(":", 1)[1].strip() if b":" in item[1] else ""
            subj = str(email.header.make_header(email.header.decode_header(
                re.sub(r"\r?\n[ \t]", " ", raw))))
            letters = "".join(c for f, c in (("\\Seen", "S"), ("\\Flagged", "F"),
                                              ("\\Answered", "R"), ("\\Draft", "D"),
                                              ("$Forwarded", "P"), ("\\Deleted", "T"))
                              if f in flags.split())
            out[uid] = {"flags": letters, "size": size, "subject": subj}
    m.logout()
    return out


def imap_cmd(d, *cmds):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", d.port("imaps"), ssl_context=ctx)
    m.login("alice", "secret")
    res = [getattr(m, c[0])(*c[1:]) for c in cmds]
    m.logout()
    return res


def logout_bytes(d):
    """Dovecot's out= counts of the IMAP sessions so far, in order."""
    return [int(x) for x in re.findall(r"Logged out in=\d+ out=(\d+)", d.log())]


def same(tool, server, what):
    check(sorted(tool) == sorted(server), "%s: UIDs %s vs server %s"
          % (what, sorted(tool), sorted(server)))
    for uid in server:
        if uid in tool:
            t, s = tool[uid], server[uid]
            tf = "".join(sorted(t["flags"].replace("N", "")))
            check(tf == "".join(sorted(s["flags"])),
                  "%s: UID %d flags %r vs %r" % (what, uid, t["flags"], s["flags"]))
            check(t["size"] == s["size"], "%s: UID %d size %d vs %d"
                  % (what, uid, t["size"], s["size"]))
            check(t["subject"] == s["subject"], "%s: UID %d subject %r vs %r"
                  % (what, uid, t["subject"], s["subject"]))


def fake_server(script):
    """A one-connection server that sends script and records what it gets."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    got = bytearray()

    def serve():
        ls.settimeout(20)
        try:
            c, _ = ls.accept()
        except OSError:
            return
        c.settimeout(10)
        c.sendall(script)
        try:
            while True:
                b = c.recv(4096)
                if not b:
                    break
                got.extend(b)
        except OSError:
            pass
        c.close()
        ls.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return ls.getsockname()[1], got, t


class Session:
    """imaptool URL session: one open mailbox driven line by line."""

    def __init__(self, url, env):
        self.p = subprocess.Popen([TOOL, url, "session"], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)

    def ask(self, line, timeout=30):
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], deadline - time.monotonic())
            if not r:
                break
            ln = self.p.stdout.readline().decode("utf-8", "replace")
            if ln == "":
                break
            if ln == ".\n":
                return out
            out.append(ln.rstrip("\n"))
        raise RuntimeError("imaptool session: no answer to %r: %r" % (line, out))

    def stats(self):
        line = self.ask("stats")[0]
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}

    def close(self):
        self.p.stdin.close()
        try:
            rc = self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        err = self.p.stderr.read().decode("utf-8", "replace")
        self.p.stdout.close()
        self.p.stderr.close()
        return rc, err


def kill_imap(d):
    """Kill the imap processes of this Dovecot (children of its master whose
    title is INSTANCE/imap), as a network drop or a dead server would end a
    session.  Returns how many were killed."""
    killed = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                title = f.read().split(b"\0")[0]
        except (OSError, ValueError, IndexError):
            continue
        name = title.split(b" ")[0]
        if ppid == d.proc.pid and (name == b"imap" or name.endswith(b"/imap")):
            try:
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def fill_folder(d, name, n, start=0):
    path = os.path.join(d.maildir("alice"), "." + name)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    for i in range(start, start + n):
        fn = os.path.join(path, "new", "%d.M%d.test" % (1700000000 + i, i))
        with open(fn, "wb") as f:
            f.write(message(5000 + i, subject="%s %05d" % (name, i)))
    for dirpath, _, filenames in os.walk(path):
        os.chown(dirpath, d.mail_uid, d.mail_gid)
        for fn in filenames:
            os.chown(os.path.join(dirpath, fn), d.mail_uid, d.mail_gid)


def resync_cases(d, tmp, env):
    port = d.port("imaps")
    url = "imaps://alice@127.0.0.1:%d/Resync" % port
    imap_cmd(d, ("create", "Resync"))
    fill_folder(d, "Resync", 20)

    # 1. The connection dies while a flag change is pending.
    s = Session(url, env)
    n0 = int(s.ask("count")[0].split()[1])
    check(n0 == 20, "session count %d" % n0)
    uids = sorted(listing("\n".join(s.ask("list"))))
    check(kill_imap(d) >= 1, "an imap process was killed")
    out = s.ask("flags %d +F +S" % uids[0])
    check(not any(l.startswith("error") for l in out), "flag change after a kill: %r" % out)
    st = s.stats()
    check(st.get("reconnects") == 1 and st.get("pending") == 0,
          "reconnected once, nothing pending: %r" % st)
    check(sorted(server_view(d, "Resync")[uids[0]]["flags"]) == ["F", "S"],
          "the pending flag change is on the server")
    check(s.ask("count") == ["count 20"], "the store kept every record")
    # Others change the folder, then the connection dies again: check
    # picks up a new and an expunged message by UID, without a reload.
    imap_cmd(d, ("select", "Resync"),
             ("uid", "STORE", str(uids[1]), "+FLAGS", "(\\Deleted)"), ("expunge",),
             ("append", "Resync", None, None, message(77, subject="While away")))
    kill_imap(d)
    out = s.ask("check")
    check(out and out[0] == "changed 1", "check after a drop: %r" % out[:1])
    lst = listing("\n".join(out[1:]))
    check(uids[1] not in lst and any(m["subject"] == "While away" for m in lst.values()),
          "resync by UID: expunged gone, new one there")
    same(lst, server_view(d, "Resync"), "after a drop and others' changes")
    st = s.stats()
    check(st.get("reconnects") == 2 and st.get("reloads") == 0, "resync, no reload: %r" % st)

    # 2. IDLE: check() enters it; another client's APPEND is reported
    # within 2 s by the next check().
    out = s.ask("check")
    st = s.stats()
    check(st.get("idling") == 1, "check entered IDLE: %r" % st)
    before = int(s.ask("count")[0].split()[1])
    imap_cmd(d, ("append", "Resync", None, None, message(78, subject="Pushed")))
    t0 = time.monotonic()
    seen = False
    while time.monotonic() - t0 < 2.0:
        out = s.ask("check")
        if out and out[0] == "changed 1" and any("Pushed" in l for l in out):
            seen = True
            break
    took = time.monotonic() - t0
    check(seen, "IDLE: new message reported within 2 s (%.2f s)" % took)
    check(int(s.ask("count")[0].split()[1]) == before + 1, "IDLE: one more message")
    print("IDLE: new message seen after %.2f s" % took, flush=True)
    # A drop while idling is a dead socket too.
    kill_imap(d)
    out = s.ask("check")
    check(out and not out[0].startswith("error"), "check after a drop in IDLE: %r" % out[:1])
    same(listing("\n".join(out[1:])), server_view(d, "Resync"), "after a drop in IDLE")

    # 4. The folder is deleted and recreated under the session: a new
    # UIDVALIDITY reloads everything.
    s.ask("check")
    imap_cmd(d, ("delete", "Resync"), ("create", "Resync"),
             ("append", "Resync", None, None, message(79, subject="Reborn")))
    kill_imap(d)
    out = s.ask("check")
    lst = listing("\n".join(out[1:]))
    check(out and out[0] == "changed 1", "check after recreate: %r" % out[:1])
    check([m["subject"] for m in lst.values()] == ["Reborn"], "recreated folder: %r" % lst)
    st = s.stats()
    check(st.get("reloads") == 1, "new UIDVALIDITY reloaded: %r" % st)
    rc, err = s.close()
    check(rc == 0, "session exit %d: %s" % (rc, err[-300:]))

    # 3. QRESYNC reopen after 10 new messages and 5 flag changes.
    qurl = "imaps://alice@127.0.0.1:%d/Quick" % port
    imap_cmd(d, ("create", "Quick"))
    fill_folder(d, "Quick", 500)
    rc, out, err = run([qurl, "list"], env)
    check(rc == 0 and len(listing(out)) == 500, "Quick cold: %d %s" % (rc, err[-200:]))
    cold = dict(re.findall(r"(\w+)=(\d+)", err.split("imap ", 1)[-1].splitlines()[0]))
    rc, out, err = run([qurl, "list"], env)
    warm = dict(re.findall(r"(\w+)=(\d+)", err.split("imap ", 1)[-1].splitlines()[0]))
    quids = sorted(listing(out))
    cmds = [("select", "Quick")]
    for i in range(10):
        cmds.append(("append", "Quick", None, None, message(900 + i, subject="Fresh %d" % i)))
    for u in quids[100:105]:
        cmds.append(("uid", "STORE", str(u), "+FLAGS", "(\\Flagged)"))
    imap_cmd(d, *cmds)
    rc, out, err = run([qurl, "list"], env)
    lst = listing(out)
    q = dict(re.findall(r"(\w+)=(\d+)", err.split("imap ", 1)[-1].splitlines()[0]))
    check(rc == 0 and len(lst) == 510, "QRESYNC reopen lists %d: %s" % (len(lst), err[-200:]))
    check(stats(err) == (500, 10, 0), "QRESYNC reopen: only the 10 new headers fetched %s"
          % (stats(err),))
    check(q.get("qresync") == "1", "QRESYNC used: %r" % q)
    same(lst, server_view(d, "Quick"), "after the QRESYNC reopen")
    # Every UID and flag of 500 messages (what a reopen without QRESYNC
    # asks for) is larger than what crossed the wire.
    flags_bytes = sum(len(x) for x in imap_cmd(d, ("select", "Quick", True),
                                              ("uid", "FETCH", "1:*", "(UID FLAGS)"))[1][1])
    check(int(q["bytes"]) < flags_bytes, "QRESYNC reopen received %s bytes, a FLAGS refresh "
          "alone is %d" % (q["bytes"], flags_bytes))
    check(int(q["commands"]) <= 8, "QRESYNC reopen used %s commands" % q["commands"])
    print("Quick (500): cold %s bytes/%s commands, warm %s/%s, QRESYNC reopen after 10 new "
          "+ 5 flags %s/%s (a bare UID FLAGS list: %d bytes)"
          % (cold.get("bytes"), cold.get("commands"), warm.get("bytes"), warm.get("commands"),
             q["bytes"], q["commands"], flags_bytes), flush=True)


def main():
    tmp = tempfile.mkdtemp(prefix="correo-imap-")
    os.chmod(tmp, 0o755)   # Dovecot's unprivileged processes read below it
    with Dovecot(tmp) as d:
        for i in range(1, 13):
            d.deliver("alice", message(i, subject="=?UTF-8?Q?Caf=C3=A9_=C3=A9t=C3=A9?= %d" % i
                                       if i == 3 else None))
        hc = os.path.join(tmp, "hcache")
        env = dict(os.environ, IMAP_PASS="secret", IMAP_FINGERPRINT=d.fingerprint,
                   IMAP_HCACHE=hc, IMAP_TIMEOUT_MS="20000")
        url = "imaps://alice@127.0.0.1:%d/INBOX" % d.port("imaps")

        # Cold open: every header from the server.
        rc, out, err = run([url, "list"], env)
        check(rc == 0, "cold list exit %d: %s" % (rc, err))
        cold = listing(out)
        server = server_view(d)
        same(cold, server, "cold open")
        check(len(cold) == 12, "cold open lists %d messages" % len(cold))
        check(stats(err) == (0, 12, 0), "cold open stats %s" % (stats(err),))
        check(any("\u00e9t\u00e9" in m["subject"] for m in cold.values()),
              "RFC 2047 subject decoded")
        check(cold[min(cold)]["from"] == "sender1@example.org", "sender address")

        # Warm open: nothing but UIDs and flags crosses the wire.
        rc, out, err = run([url, "list"], env)
        check(rc == 0, "warm list exit %d: %s" % (rc, err))
        same(listing(out), server, "warm open")
        check(stats(err) == (12, 0, 0), "warm open stats %s" % (stats(err),))
        # Dovecot's log process writes the logout line a little later.
        deadline = time.monotonic() + 10
        sent = logout_bytes(d)
        while len(sent) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
            sent = logout_bytes(d)
        if len(sent) >= 3:
            # sessions: cold open, imaplib, warm open
            check(sent[2] * 2 < sent[0], "warm open: Dovecot sent %d bytes, cold %d"
                  % (sent[2], sent[0]))
        else:
            check(False, "Dovecot logged %d logouts" % len(sent))

        # One new message: only it is fetched.
        d.deliver("alice", message(13))
        rc, out, err = run([url, "list"], env)
        check(stats(err) == (12, 1, 0), "after one new message stats %s" % (stats(err),))
        same(listing(out), server_view(d), "after one new message")

        # STARTTLS on the plain port, same pin.
        rc, out, err = run(["imap://alice@127.0.0.1:%d/INBOX" % d.port("imap"), "list"],
                           dict(env, IMAP_HCACHE=""))
        check(rc == 0, "STARTTLS list exit %d: %s" % (rc, err))
        check(len(listing(out)) == 13, "STARTTLS lists %d" % len(listing(out)))

        # Wrong password, wrong pin, no password: clear errors.
        rc, out, err = run([url, "list"], dict(env, IMAP_PASS="wrong"))
        check(rc == 1 and "login as alice refused" in err, "wrong password: %d %s" % (rc, err))
        rc, out, err = run([url, "list"], dict(env, IMAP_FINGERPRINT="00" * 32))
        check(rc == 1 and "SHA256:" in err, "wrong pin: %d %s" % (rc, err))
        rc, out, err = run([url, "list"], dict(env, IMAP_PASS=""))
        check(rc == 1 and "imap_pass" in err, "no password: %d %s" % (rc, err))
        rc, out, err = run([url, "list"], dict(env, IMAP_FINGERPRINT=""))
        check(rc == 1 and "SHA256:" in err, "unverified self-signed: %d %s" % (rc, err))
        rc, out, err = run(["imaps://alice@127.0.0.1:%d/NoSuchFolder" % d.port("imaps"),
                            "list"], env)
        check(rc == 1 and "NoSuchFolder" in err, "missing folder: %d %s" % (rc, err))

        # Password from a command.
        rc, out, err = run([url, "list"], dict(env, IMAP_PASS="", IMAP_PASS_CMD="echo secret"))
        check(rc == 0, "imap_pass_cmd: %d %s" % (rc, err))

        uids = sorted(listing(run([url, "list"], env)[1]))

        # Flags: set and clear, checked on the server.
        rc, out, err = run([url, "flags", str(uids[0]), "+F", "+S", "+R"], env)
        check(rc == 0, "flags exit %d: %s" % (rc, err))
        sv = server_view(d)
        check(sorted(sv[uids[0]]["flags"]) == sorted("FSR"), "flags set: %r" % sv[uids[0]])
        rc, out, err = run([url, "flags", str(uids[0]), "-S", "+P"], env)
        sv = server_view(d)
        check(sorted(sv[uids[0]]["flags"]) == sorted("FRP"), "flags cleared: %r" % sv[uids[0]])
        rc, out, err = run([url, "list"], env)
        same(listing(out), sv, "after flag changes")

        # Read-only: no writes.
        rc, out, err = run([url, "flags", str(uids[0]), "+S"], dict(env, IMAP_READONLY="1"))
        check(rc == 1 and "read-only" in err, "read-only refuses flags: %d %s" % (rc, err))
        check("S" not in server_view(d)[uids[0]]["flags"], "read-only changed nothing")

        # Read a whole message and its header, byte for byte.
        rc, out, err = run([url, "read", str(uids[1])], env)
        typ, data = imap_cmd(d, ("select", "INBOX", True), ("uid", "FETCH", str(uids[1]),
                                                            "(BODY.PEEK[])"))[1]
        check(rc == 0 and out.encode() == data[0][1], "read matches the server")
        rc, hdr, err = run([url, "headers", str(uids[1])], env)
        check(rc == 0 and out.startswith(hdr) and hdr.endswith("\r\n\r\n"),
              "headers are the message's header block")
        check("S" not in server_view(d)[uids[1]]["flags"], "reading does not set \\Seen")

        # Delete + expunge of exactly the marked messages.
        imap_cmd(d, ("select", "INBOX"), ("uid", "STORE", str(uids[5]), "+FLAGS", "(\\Deleted)"))
        rc, out, err = run([url, "delete", str(uids[2]), str(uids[3])], env)
        check(rc == 0, "delete exit %d: %s" % (rc, err))
        sv = server_view(d)
        check(uids[2] not in sv and uids[3] not in sv, "deleted messages are gone")
        check(uids[5] in sv, "UID EXPUNGE leaves another \\Deleted message alone")
        check(len(sv) == 11, "11 left after delete: %d" % len(sv))
        imap_cmd(d, ("select", "INBOX"), ("uid", "STORE", str(uids[5]), "-FLAGS", "(\\Deleted)"))

        # Copy and move.
        imap_cmd(d, ("create", "Archive"))
        rc, out, err = run([url, "copy", str(uids[4]), "Archive"], env)
        check(rc == 0, "copy exit %d: %s" % (rc, err))
        check(uids[4] in server_view(d), "copy keeps the original")
        arch = server_view(d, "Archive")
        check(len(arch) == 1, "Archive has the copy: %d" % len(arch))
        rc, out, err = run([url, "move", str(uids[6]),
                            "imaps://alice@127.0.0.1:%d/Archive" % d.port("imaps")], env)
        check(rc == 0, "move exit %d: %s" % (rc, err))
        check(uids[6] not in server_view(d), "move removes the original")
        check(len(server_view(d, "Archive")) == 2, "Archive has the moved message")
        check(str(uids[6]) + "\t" not in out, "moved message gone from the listing")
        rc, out, err = run([url, "copy", str(uids[7]), "imaps://bob@10.0.0.1/Archive"], env)
        check(rc == 1 and "another IMAP account" in err, "copy to another account refused")
        rc, out, err = run([url, "copy", str(uids[7]), "NoSuchFolder"], env)
        check(rc == 1, "copy to a missing folder fails")

        # Append, with flags: the server has it and the listing shows it.
        mpath = os.path.join(tmp, "new.eml")
        with open(mpath, "wb") as f:
            f.write(message(99, subject="Appended here"))
        rc, out, err = run([url, "append", mpath, "SF"], env)
        check(rc == 0, "append exit %d: %s" % (rc, err))
        sv = server_view(d)
        new = [u for u, m in sv.items() if m["subject"] == "Appended here"]
        check(len(new) == 1, "appended message on the server")
        if new:
            check(sorted(sv[new[0]]["flags"]) == sorted("SF"), "appended flags %r"
                  % sv[new[0]]["flags"])
            check(new[0] in listing(out), "appended message in the listing")

        # Check sees another client's changes.
        rc, out, err = run([url, "check"], env)
        check(rc == 0 and out.startswith("changed 0"), "check without changes: %s" % out[:40])
        same(listing(out), server_view(d), "after the operations")

        # A cache of another UIDVALIDITY is not trusted: recreate the folder.
        imap_cmd(d, ("create", "Tmp"), ("select", "Tmp"),
                 ("append", "Tmp", None, None, message(50)))
        turl = "imaps://alice@127.0.0.1:%d/Tmp" % d.port("imaps")
        run([turl, "list"], env)
        imap_cmd(d, ("delete", "Tmp"), ("create", "Tmp"),
                 ("append", "Tmp", None, None, message(51, subject="Second life")))
        rc, out, err = run([turl, "list"], env)
        lst = listing(out)
        check(rc == 0 and [m["subject"] for m in lst.values()] == ["Second life"],
              "new UIDVALIDITY: fresh headers, %r" % lst)
        check(stats(err) is not None and stats(err)[0] == 0,
              "new UIDVALIDITY: no cache hit %s" % (stats(err),))

        resync_cases(d, tmp, env)

        # A larger folder: several pipelined batches, progress, then all
        # from the cache.
        big = os.path.join(d.maildir("alice"), ".Big")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(big, sub), exist_ok=True)
        for i in range(BIG):
            path = os.path.join(big, "new", "%d.M%d.test" % (1700000000 + i, i))
            with open(path, "wb") as f:
                f.write(message(1000 + i, subject="Big %05d" % i))
        for dirpath, _, filenames in os.walk(big):
            os.chown(dirpath, d.mail_uid, d.mail_gid)
            for fn in filenames:
                os.chown(os.path.join(dirpath, fn), d.mail_uid, d.mail_gid)
        burl = "imaps://alice@127.0.0.1:%d/Big" % d.port("imaps")
        t0 = time.monotonic()
        rc, out, err = run([burl, "list"], env, timeout=120)
        cold_s = time.monotonic() - t0
        lst = listing(out)
        check(rc == 0 and len(lst) == BIG, "big folder: %d messages, %s" % (len(lst), err[-200:]))
        check(stats(err) == (0, BIG, 0), "big folder cold stats %s" % (stats(err),))
        check(sorted(m["subject"] for m in lst.values()) == ["Big %05d" % i for i in range(BIG)],
              "big folder subjects")
        pm = re.search(r"progress calls=(\d+) last=(\d+)/(\d+)", err)
        check(pm is not None and int(pm.group(1)) >= BIG // 1000 and pm.group(2) == pm.group(3)
              == str(BIG), "big folder progress %s" % (pm.group(0) if pm else None))
        t0 = time.monotonic()
        rc, out, err = run([burl, "list"], env, timeout=120)
        warm_s = time.monotonic() - t0
        check(stats(err) == (BIG, 0, 0), "big folder warm stats %s" % (stats(err),))
        check(len(listing(out)) == BIG, "big folder warm listing")
        print("big folder of %d: cold %.2f s, warm %.2f s (imaptool, with process start)"
              % (BIG, cold_s, warm_s), flush=True)

        # The real client: correo -l on the same folder, with its settings
        # from a correorc (password, pinned certificate, header cache).
        if CORREO:
            rcfile = os.path.join(tmp, "correorc")
            with open(rcfile, "w") as f:
                f.write("set imap_pass=secret\nset tls_fingerprint=%s\nset header_cache=%s\n"
                        % (d.fingerprint, os.path.join(tmp, "hcache-correo")))
            r = subprocess.run([CORREO, "-F", rcfile, "-l", "-f", url], capture_output=True,
                               timeout=120, env=dict(os.environ, HOME=tmp, TZ="UTC"))
            out = r.stdout.decode("utf-8", "replace").splitlines()
            want = server_view(d)
            check(r.returncode == 0, "correo -l: exit %d: %s" % (r.returncode, r.stderr[-300:]))
            check(out and out[0].startswith("INBOX: %d messages" % len(want)),
                  "correo -l header %r, server has %d" % (out[:1], len(want)))
            check(len(out) == 1 + len(want), "correo -l printed %d rows" % (len(out) - 1))
            r2 = subprocess.run([CORREO, "-F", rcfile, "-l", "-f", url.replace("imaps", "imap")
                                 .replace(str(d.port("imaps")), str(d.port("imap")))],
                                capture_output=True, timeout=120,
                                env=dict(os.environ, HOME=tmp, TZ="UTC"))
            check(r2.returncode == 0 and r2.stdout.splitlines()[1:] == r.stdout.splitlines()[1:],
                  "correo -l over STARTTLS differs: %s" % r2.stderr[-300:])
            print("correo -l: %s" % (out[0] if out else "(nothing)"), flush=True)

    # Hostile greetings on an account that needs STARTTLS: nothing is sent.
    for script, what in ((b"* PREAUTH welcome\r\n", "PREAUTH"),
                         (b"HTTP/1.0 200 OK\r\n\r\n", "bad greeting"),
                         (b"* OK hi\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n1 OK done\r\n",
                          "no STARTTLS")):
        port, got, t = fake_server(script)
        rc, out, err = run(["imap://alice@127.0.0.1:%d/INBOX" % port, "list"],
                           dict(os.environ, IMAP_PASS="secret", IMAP_TIMEOUT_MS="5000"))
        t.join(30)
        check(rc == 1, "%s: exit %d" % (what, rc))
        check(b"secret" not in bytes(got) and b"LOGIN" not in bytes(got)
              and b"AUTHENTICATE" not in bytes(got), "%s: no credential sent: %r"
              % (what, bytes(got)))
        if what != "no STARTTLS":
            check(len(got) == 0, "%s: the client sent %r" % (what, bytes(got)))
        print("%s: %s" % (what, err.strip()), flush=True)

    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    if not available():
        print("imap_dovecot: dovecot is not installed; 0 passed, 0 failed, 1 skipped")
        sys.exit(77)
    main()
    if failures:
        print("imap_dovecot: %d check(s) failed" % len(failures))
        sys.exit(1)
    print("imap_dovecot: all checks passed")
