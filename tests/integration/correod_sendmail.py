#!/usr/bin/python3
"""`correod sendmail` (and a program named sendmail) on a real instance.

Usage: correod_sendmail.py CORREOD SRCDIR

`correod init` makes the instance (not started: sendmail needs no server)
with users bob, carol and dave.  Checked: a message reaches a local user's
Maildir byte for byte after the three trace headers, with LF line ends,
from LF and from CRLF input; Date, From and Message-ID are added only when
missing; -t takes To/Cc/Bcc and the stored copies carry no Bcc; -f sets
Return-Path; the default sender is the caller's login; an unknown user is
exit 67, named on stderr, while the others still get the message; a remote
recipient is spooled in the queue; a symlink named sendmail works (with the
config from -c or $CORREOD_CONF); a lone "." line ends the message unless
-i/-oi; -bs is refused; options of other sendmails are accepted.
"""
import email.header
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correod_fixture import Correod  # noqa: E402

exe, srcdir = os.path.abspath(sys.argv[1]), sys.argv[2]
passed = 0
failures = []


def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print("FAIL: " + what, flush=True)


def run(args, data, prog=None, env=None):
    """Run sendmail with data (bytes) on stdin."""
    r = subprocess.run([prog or exe] + list(args), input=data, capture_output=True,
                       timeout=120, env=env)
    return r.returncode, r.stderr.decode("utf-8", "replace")


def sendmail(d, args, data, **kw):
    return run(["sendmail", "-c", d.conf] + list(args), data, **kw)


def take(d, local):
    """The messages in local's new/, removed from there."""
    nd = os.path.join(d.maildir(local), "new")
    out = []
    if os.path.isdir(nd):
        for name in sorted(os.listdir(nd)):
            p = os.path.join(nd, name)
            with open(p, "rb") as f:
                out.append(f.read())
            os.unlink(p)
    return out


TRACE = re.compile(rb"\AReturn-Path: <([^>\n]*)>\n"
                   rb"Delivered-To: ([^\n]*)\n"
                   rb"(Received: [^\n]*\n(?:[ \t][^\n]*\n)*)")


def split_trace(msg):
    """(return_path, delivered_to, received, rest) or None."""
    m = TRACE.match(msg)
    if not m:
        return None
    return m.group(1), m.group(2), m.group(3), msg[m.end():]


def headers(rest):
    head = rest.split(b"\n\n", 1)[0]
    return [line for line in head.split(b"\n") if line and line[:1] not in (b" ", b"\t")]


def header(rest, name):
    for h in headers(rest):
        k, _, v = h.partition(b":")
        if k.lower() == name.lower().encode():
            return v.strip()
    return None


FULL = (b"Date: Mon, 23 Nov 2026 10:00:00 +0000\n"
        b"From: Alice <alice@example.test>\n"
        b"To: bob@example.test\n"
        b"Subject: byte for byte\n"
        b"Message-ID: <m1@example.test>\n"
        b"\n"
        b"first line\n"
        b"..two dots stay\n"
        b"  leading blanks, trailing blanks  \n"
        b"8-bit: caf\xc3\xa9\n"
        b"\n"
        b"last line\n")


def test_byte_for_byte(d):
    rc, err = sendmail(d, ["bob@example.test"], FULL)
    check(rc == 0, "local delivery exits 0 (%d: %s)" % (rc, err))
    msgs = take(d, "bob")
    check(len(msgs) == 1, "one copy in bob's new/ (%d)" % len(msgs))
    if msgs:
        t = split_trace(msgs[0])
        check(t is not None, "the copy starts with Return-Path, Delivered-To, Received")
        if t:
            check(t[3] == FULL, "the message is byte for byte after the trace headers")
            check(t[1] == b"bob@example.test", "Delivered-To names bob")
            check(b"for <bob@example.test>;" in t[2], "Received has FOR bob")
            check(all(len(line) <= 78 for line in t[2].split(b"\n")),
                  "Received folded within 78 columns")
        check(b"\r" not in msgs[0], "the stored copy has LF line ends only")

    # The same message with CRLF line ends is stored the same way.
    rc, err = sendmail(d, ["bob"], FULL.replace(b"\n", b"\r\n"))
    check(rc == 0, "CRLF input, bare user name: exit 0 (%d: %s)" % (rc, err))
    msgs = take(d, "bob")
    t = split_trace(msgs[0]) if len(msgs) == 1 else None
    check(t is not None and t[3] == FULL, "CRLF input stored with LF, byte for byte")


def test_added_headers(d):
    body = b"Subject: bare\n\nno date, no from, no id\n"
    rc, err = sendmail(d, ["-F", 'Test "Q" User', "bob@example.test"], body)
    check(rc == 0, "message without Date/From/Message-ID: exit 0 (%d: %s)" % (rc, err))
    msgs = take(d, "bob")
    t = split_trace(msgs[0]) if len(msgs) == 1 else None
    check(t is not None, "one copy with trace headers")
    if not t:
        return
    rest = t[3]
    login = pwd.getpwuid(os.getuid()).pw_name
    me = ("%s@%s" % (login, d.domain)).encode()
    check(t[0] == me, "the default sender is the caller's login (%r)" % t[0])
    check(header(rest, "Date") is not None and
          re.match(rb"\A(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} "
                   rb"\d\d:\d\d:\d\d [+-]\d{4}\Z", header(rest, "Date")),
          "Date added in RFC 5322 form")
    check(header(rest, "From") == b'"Test \\"Q\\" User" <' + me + b">",
          "From added with -F's name quoted (%r)" % header(rest, "From"))
    check(re.match(rb"\A<[^<>@\s]+@[^<>@\s]+>\Z", header(rest, "Message-ID") or b""),
          "Message-ID added")
    check(rest.endswith(b"\n\nno date, no from, no id\n"), "body kept after the headers")
    check(headers(rest)[0] == b"Subject: bare", "the original headers come first")

    # A UTF-8 name becomes encoded words that decode back to it.
    name = "Zo\u00eb \u00c5ngstr\u00f6m-\u65e5\u672c\u8a9e " * 3
    rc, err = run(["sendmail", "-c", d.conf, "-F", name, "bob@example.test"], body)
    t = split_trace(take(d, "bob")[0])
    frm = header(t[3], "From") or b""
    decoded = str(email.header.make_header(email.header.decode_header(
        frm.split(b" <")[0].decode("ascii"))))
    check(rc == 0 and frm.isascii() and decoded.strip() == name.strip(),
          "-F with UTF-8: RFC 2047 encoded words (%r)" % frm)

    # Existing ones are not duplicated.
    rc, err = sendmail(d, ["bob@example.test"], FULL)
    t = split_trace(take(d, "bob")[0])
    check(len([h for h in headers(t[3]) if h.lower().startswith(b"date:")]) == 1,
          "an existing Date is not added again")

    # No header at all: the added ones and a blank line go in front.
    rc, err = sendmail(d, ["bob@example.test"], b"just text\n")
    msgs = take(d, "bob")
    t = split_trace(msgs[0]) if len(msgs) == 1 else None
    check(rc == 0 and t is not None and t[3].endswith(b"\n\njust text\n") and
          header(t[3], "From") is not None, "a message without headers gets them")


def test_t_and_bcc(d):
    msg = (b"From: Alice <alice@example.test>\n"
           b"To: Bob <bob@example.test>\n"
           b"Cc: \"Dave, D.\" <dave@example.test>\n"
           b"Bcc: carol@example.test,\n"
           b"  Someone Else <else@remote.example>\n"
           b"Subject: -t\n"
           b"Date: Mon, 23 Nov 2026 10:00:00 +0000\n"
           b"Message-ID: <t1@example.test>\n"
           b"\n"
           b"for bob, dave and carol\n")
    want = msg.replace(b"Bcc: carol@example.test,\n  Someone Else <else@remote.example>\n",
                       b"")
    qmsg = os.path.join(d.dir, "queue", "msg")
    before = set(os.listdir(qmsg)) if os.path.isdir(qmsg) else set()
    rc, err = sendmail(d, ["-t", "-f", "alice@example.test"], msg)
    check(rc == 0, "-t: exit 0 (%d: %s)" % (rc, err))
    for user in ("bob", "carol", "dave"):
        msgs = take(d, user)
        t = split_trace(msgs[0]) if len(msgs) == 1 else None
        check(t is not None, "-t: %s got one copy" % user)
        if t:
            check(t[3] == want, "-t: %s's copy has no Bcc and is otherwise unchanged" % user)
            check(t[0] == b"alice@example.test", "-f: Return-Path for %s" % user)
    after = set(os.listdir(qmsg)) if os.path.isdir(qmsg) else set()
    new = after - before
    check(len(new) == 1, "-t: the remote Bcc recipient is spooled once")
    for name in new:
        with open(os.path.join(qmsg, name), "rb") as f:
            spooled = f.read()
        check(b"else@remote.example" in spooled and b"\r\nBcc:" not in spooled,
              "the spooled copy is for else@remote.example, without Bcc")


def test_t_groups(d):
    msg = (b"To: undisclosed-recipients:;\n"
           b"Cc: Team: carol@example.test, \"a:b\" <dave@example.test>;\n"
           b"Subject: groups\n\nbody\n")
    rc, err = sendmail(d, ["-t"], msg)
    got = {u: len(take(d, u)) for u in ("bob", "carol", "dave")}
    check(rc == 0 and got == {"bob": 0, "carol": 1, "dave": 1},
          "-t: group syntax gives its members (%d %r %s)" % (rc, got, err.strip()))
    rc, err = sendmail(d, ["-t"], b"To: undisclosed-recipients:;\n\nbody\n")
    check(rc == 64 and "no recipients" in err, "-t with an empty group only: usage error")


def test_from(d):
    rc, err = sendmail(d, ["-f", "<sender@elsewhere.example>", "bob@example.test"], FULL)
    t = split_trace(take(d, "bob")[0])
    check(rc == 0 and t[0] == b"sender@elsewhere.example", "-f <addr> sets Return-Path")
    rc, err = sendmail(d, ["-fsender2@elsewhere.example", "bob@example.test"], FULL)
    t = split_trace(take(d, "bob")[0])
    check(rc == 0 and t[0] == b"sender2@elsewhere.example", "-fADDR (joined) works")
    rc, err = sendmail(d, ["-f", "<>", "bob@example.test"], FULL)
    t = split_trace(take(d, "bob")[0])
    check(rc == 0 and t[0] == b"", "-f <> is the null sender")
    rc, err = sendmail(d, ["-f", "bad\naddr", "bob@example.test"], FULL)
    check(rc == 64 and take(d, "bob") == [], "-f with a line break is refused (%d)" % rc)


def test_unknown_user(d):
    rc, err = sendmail(d, ["nobody@example.test"], FULL)
    check(rc == 67, "unknown local user: exit 67 (%d)" % rc)
    check("nobody@example.test" in err, "the unknown user is named on stderr")
    rc, err = sendmail(d, ["ghost@example.test", "bob@example.test"], FULL)
    check(rc == 67, "unknown + known: still exit 67 (%d)" % rc)
    check("ghost@example.test" in err and "other recipients" in err,
          "stderr names the unknown one and says the others got it (%s)" % err.strip())
    check(len(take(d, "bob")) == 1, "the known recipient still got the message")


def test_symlink(d, tmp):
    link = os.path.join(tmp, "bin", "sendmail")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(exe, link)
    rc, err = run(["-c", d.conf, "-oi", "-oem", "bob@example.test"], FULL, prog=link)
    check(rc == 0, "a symlink named sendmail delivers (%d: %s)" % (rc, err))
    t = split_trace(take(d, "bob")[0])
    check(t is not None and t[3] == FULL, "via the symlink: byte for byte")
    env = dict(os.environ, CORREOD_CONF=d.conf)
    rc, err = run(["-odi", "-bm", "-v", "bob@example.test"], FULL, prog=link, env=env)
    check(rc == 0 and len(take(d, "bob")) == 1,
          "symlink with $CORREOD_CONF and other sendmails' options (%d: %s)" % (rc, err))
    rc, err = run(["-bs"], b"", prog=link, env=env)
    check(rc == 64 and "-bs" in err, "-bs is refused with a message (%d: %s)" % (rc, err))
    rc, err = run(["-bd"], b"", prog=link, env=env)
    check(rc == 64, "-bd is refused (%d)" % rc)


def test_dot_line(d):
    msg = (b"Subject: dots\nFrom: a@example.test\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n"
           b"Message-ID: <d@example.test>\n\nbefore\n.\nafter\n")
    rc, err = sendmail(d, ["-i", "bob@example.test"], msg)
    t = split_trace(take(d, "bob")[0])
    check(rc == 0 and t[3] == msg, "-i: a lone '.' line is kept and the rest too")
    rc, err = sendmail(d, ["-oi", "bob@example.test"], msg.replace(b"\n", b"\r\n"))
    t = split_trace(take(d, "bob")[0])
    check(rc == 0 and t[3] == msg, "-oi with CRLF input: the same")
    rc, err = sendmail(d, ["bob@example.test"], msg)
    t = split_trace(take(d, "bob")[0])
    check(rc == 0 and t[3] == msg[:msg.index(b".\nafter")],
          "without -i a lone '.' ends the message")


def test_too_big(d):
    big = FULL + b"x" * 70 + b"\n"
    big = big * (8192 // len(big) + 1)
    rc, err = sendmail(d, ["bob@example.test"], big)
    check(rc == 65 and "larger than" in err and take(d, "bob") == [],
          "a message over max_message_size is refused, nothing delivered (%d)" % rc)


def test_local_failure_spooled(d):
    """A Maildir that cannot take the copy: the recipient is spooled for a
    local retry (the queue runner's job), and sendmail still exits 0."""
    qmsg = os.path.join(d.dir, "queue", "msg")
    new = os.path.join(d.maildir("dave"), "new")
    before = set(os.listdir(qmsg)) if os.path.isdir(qmsg) else set()
    os.rename(new, new + ".away")
    with open(new, "wb") as f:   # a file where new/ should be
        f.write(b"")
    try:
        rc, err = sendmail(d, ["dave@example.test"], FULL)
    finally:
        os.unlink(new)
        os.rename(new + ".away", new)
    after = set(os.listdir(qmsg)) if os.path.isdir(qmsg) else set()
    added = after - before
    check(rc == 0 and len(added) == 1,
          "a broken Maildir: the copy is spooled and sendmail exits 0 (%d: %s)" % (rc, err))
    for name in added:
        with open(os.path.join(qmsg, name), "rb") as f:
            spooled = f.read()
        crlf = FULL.replace(b"\n", b"\r\n")
        check(b"dave@example.test" in spooled and spooled.endswith(crlf),
              "the spooled copy is for dave, with the message in CRLF")
    check(take(d, "dave") == [], "nothing partial in dave's new/")


def test_remote_only(d):
    qmsg = os.path.join(d.dir, "queue", "msg")
    before = set(os.listdir(qmsg)) if os.path.isdir(qmsg) else set()
    rc, err = sendmail(d, ["someone@remote.example"], FULL)
    after = set(os.listdir(qmsg)) if os.path.isdir(qmsg) else set()
    check(rc == 0 and len(after - before) == 1,
          "a remote recipient: exit 0 and one spool file (%d: %s)" % (rc, err))
    rc, err = sendmail(d, [], FULL)
    check(rc == 64, "no recipients: usage error (%d)" % rc)


def main():
    tmp = tempfile.mkdtemp(prefix="correod-sendmail-")
    try:
        with Correod(exe, tmp, start=False, conf_extra="max_message_size 8k") as d:
            for u in ("bob", "carol", "dave"):
                d.add_user(u, "secret-" + u)
            for t in (test_byte_for_byte, test_added_headers, test_t_and_bcc, test_t_groups, test_from,
                      test_unknown_user, test_dot_line, test_too_big, test_local_failure_spooled,
                      test_remote_only):
                try:
                    t(d)
                except Exception as ex:  # one broken case must not hide the others
                    check(False, "%s raised %r" % (t.__name__, ex))
            try:
                test_symlink(d, tmp)
            except Exception as ex:
                check(False, "test_symlink raised %r" % ex)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("correod_sendmail: %d passed, %d failed" % (passed, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
