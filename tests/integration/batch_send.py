#!/usr/bin/python3
"""correo -s ... -- ADDRESS < body: batch sending against a real SMTP server.

Usage: batch_send.py CORREO SRCDIR

Starts tests/integration/smtp_server.py (aiosmtpd) on loopback with STARTTLS
and a self-signed certificate that the correo configuration pins, sends with
the real binary, and checks what the server received byte for byte, the
copy in Sent, and that a failed send keeps the message in Drafts.
"""
import email
import email.policy
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtp_fixture import SmtpFixture  # noqa: E402

CORREO, SRCDIR = sys.argv[1], sys.argv[2]
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def maildir(path):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)


def files(path):
    out = []
    for sub in ("cur", "new"):
        d = os.path.join(path, sub)
        if os.path.isdir(d):
            out += [os.path.join(d, f) for f in sorted(os.listdir(d))]
    return out


def run(tmp, rc_text, args, body):
    rc = os.path.join(tmp, "correorc")
    with open(rc, "w") as f:
        f.write(rc_text)
    env = dict(os.environ, HOME=os.path.join(tmp, "home"), TZ="UTC",
               XDG_STATE_HOME=os.path.join(tmp, "state"))
    os.makedirs(env["HOME"], exist_ok=True)
    return subprocess.run([CORREO, "-F", rc] + args, input=body, capture_output=True,
                          env=env, timeout=120)


with tempfile.TemporaryDirectory(prefix="correo-batch-") as tmp:
    mail = os.path.join(tmp, "Mail")
    maildir(mail)
    attach = os.path.join(tmp, "data.bin")
    payload = bytes(range(256)) * 8
    with open(attach, "wb") as f:
        f.write(payload)
    body = "Grüße aus Köln.\n.\n.leading dot\n..two dots\nFrom the start\n\n-- \nZoë\n"

    with SmtpFixture(SRCDIR, tmp) as smtp:
        port, fp, outdir = smtp.port, smtp.fingerprint, smtp.outdir
        base = ("set folder=%s\nset from=sender@example.org\nset realname='Zoë Sender'\n"
                "set smtp_url=smtp://alice@127.0.0.1:%d\nset record=+Sent\nset postponed=+Drafts\n"
                % (mail, port))
        good = base + "set smtp_pass=secret\nset tls_fingerprint=%s\n" % fp

        r = run(tmp, good, ["-s", "Grüße 日本 report", "-c", "Carol <cc@example.org>",
                            "-b", "hidden@example.org", "-a", attach, "--", "to@example.org"],
                body.encode("utf-8"))
        check(r.returncode == 0, "send: exit %d, stderr %r" % (r.returncode, r.stderr))
        msgs = sorted(f for f in os.listdir(outdir) if f.endswith(".json"))
        check(len(msgs) == 1, "server received %d messages" % len(msgs))
        if msgs:
            rec = json.load(open(os.path.join(outdir, msgs[0])))
            check(sorted(rec["rcpt_tos"]) == ["cc@example.org", "hidden@example.org",
                                             "to@example.org"], "envelope %r" % rec["rcpt_tos"])
            check(rec["mail_from"] == "sender@example.org", "MAIL FROM %r" % rec["mail_from"])
            check(rec.get("tls") in (1, True), "not sent over TLS: %r" % rec.get("tls"))
            import base64
            data = base64.b64decode(rec["data"])
            check(b"hidden@example.org" not in data, "Bcc leaked into the data")
            check(b"\nBcc:" not in data and not data.startswith(b"Bcc:"), "a Bcc header was sent")
            msg = email.message_from_bytes(data, policy=email.policy.default)
            check(msg["Subject"] == "Grüße 日本 report", "subject %r" % msg["Subject"])
            check(msg["From"].addresses[0].display_name == "Zoë Sender", "from %r" % msg["From"])
            check(msg["Cc"].addresses[0].addr_spec == "cc@example.org", "cc %r" % msg["Cc"])
            text = msg.get_body(("plain",)).get_content()
            check(text.replace("\r\n", "\n") == body, "body %r" % text)
            # the server announces 8BITMIME: UTF-8 text travels as 8bit
            check(msg.get_body(("plain",))["Content-Transfer-Encoding"] == "8bit",
                  "text not sent as 8bit: %r" % msg.get_body(("plain",))["Content-Transfer-Encoding"])
            check("BODY=8BITMIME" in [o.upper() for o in rec.get("mail_options", [])],
                  "MAIL without BODY=8BITMIME: %r" % rec.get("mail_options"))
            atts = list(msg.iter_attachments())
            check(len(atts) == 1 and atts[0].get_content() == payload, "attachment differs")
            check(len(atts) == 1 and atts[0].get_filename() == "data.bin", "attachment name")
            check(all(len(line) <= 998 for line in data.split(b"\r\n")), "a line over 998")
        sent = files(os.path.join(mail, ".Sent"))
        check(len(sent) == 1, "Sent holds %d copies" % len(sent))
        if sent:
            copy = open(sent[0], "rb").read()
            check(b"Bcc: hidden@example.org" in copy, "the Sent copy lost its Bcc")
            check(sent[0].endswith(":2,S"), "Sent copy flags: %s" % sent[0])

        # AUTH refused: not sent, the server's reply shown, the message in Drafts
        bad = base + "set smtp_pass=wrong\nset tls_fingerprint=%s\n" % fp
        r = run(tmp, bad, ["-s", "kept", "--", "to@example.org"], b"keep me\n")
        check(r.returncode == 1, "bad auth: exit %d" % r.returncode)
        check(b"535" in r.stderr, "bad auth: server reply not shown: %r" % r.stderr)
        drafts = files(os.path.join(mail, ".Drafts"))
        check(len(drafts) == 1 and b"keep me" in open(drafts[0], "rb").read(),
              "bad auth: message not kept in Drafts: %r" % drafts)
        check(b"kept in" in r.stderr, "bad auth: where it was kept not said: %r" % r.stderr)

        # an untrusted certificate: refused before any AUTH, kept
        r = run(tmp, base + "set smtp_pass=secret\n", ["-s", "untrusted", "--", "to@example.org"],
                b"second\n")
        check(r.returncode == 1, "untrusted: exit %d" % r.returncode)
        check(b"SHA256" in r.stderr.upper() or b"verif" in r.stderr, "untrusted: %r" % r.stderr)
        check(len(files(os.path.join(mail, ".Drafts"))) == 2, "untrusted: not kept")
        events = open(os.path.join(outdir, "events.log")).read()
        check(events.count("AUTH") == 2, "AUTH seen %d times" % events.count("AUTH"))

        # bad arguments: no recipient, missing attachment: exit 2, nothing sent
        r = run(tmp, good, ["-s", "x"], b"x\n")
        check(r.returncode == 2, "no recipient: exit %d" % r.returncode)
        r = run(tmp, good, ["-s", "x", "-a", os.path.join(tmp, "nope"), "--", "a@example.org"],
                b"x\n")
        check(r.returncode == 2, "missing attachment: exit %d" % r.returncode)
        r = run(tmp, good, ["-s", "evil\r\nBcc: x@evil.example", "--", "a@example.org"], b"x\n")
        check(r.returncode == 2, "header injection in the subject: exit %d" % r.returncode)
        time.sleep(0)
        check(len([f for f in os.listdir(outdir) if f.endswith(".json")]) == 1,
              "something else reached the server")

    # a server without 8BITMIME gets the same text quoted-printable
    os.makedirs(os.path.join(tmp, "no8bit"))
    with SmtpFixture(SRCDIR, os.path.join(tmp, "no8bit"), ["--no-8bitmime"]) as smtp:
        rc7 = ("set folder=%s\nset from=sender@example.org\nset record=''\n"
               "set smtp_url=smtp://alice@127.0.0.1:%d\nset smtp_pass=secret\n"
               "set tls_fingerprint=%s\n" % (mail, smtp.port, smtp.fingerprint))
        r = run(tmp, rc7, ["-s", "seven bit", "--", "to@example.org"], body.encode("utf-8"))
        check(r.returncode == 0, "7bit send: exit %d, stderr %r" % (r.returncode, r.stderr))
        got = smtp.messages()
        check(len(got) == 1, "7bit server received %d messages" % len(got))
        if got:
            rec7, data7 = got[0]
            check(all(b < 0x80 for b in data7), "8-bit bytes sent to a server without 8BITMIME")
            m7 = email.message_from_bytes(data7, policy=email.policy.default)
            part = m7.get_body(("plain",))
            check(part["Content-Transfer-Encoding"] == "quoted-printable",
                  "7bit: encoding %r" % part["Content-Transfer-Encoding"])
            check(part.get_content().replace("\r\n", "\n") == body, "7bit: body differs")

    # sendmail mode: the message on stdin, recipients after "--"
    script = os.path.join(tmp, "fake-sendmail")
    record = os.path.join(tmp, "sendmail.out")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %s.args\ncat > %s\n" % (record, record))
    os.chmod(script, 0o700)
    rc = ("set folder=%s\nset from=me@example.org\nset smtp_url=''\nset sendmail='%s'\n"
          "set record=''\n" % (mail, script))
    r = run(tmp, rc, ["-s", "via sendmail", "--", "x@example.org"], b"hello\n")
    check(r.returncode == 0, "sendmail: exit %d %r" % (r.returncode, r.stderr))
    if os.path.exists(record):
        out = open(record, "rb").read()
        check(b"Subject: via sendmail" in out and b"\r\n" not in out, "sendmail input %r" % out)
        args = open(record + ".args").read().split("\n")
        check("--" in args and args[args.index("--") + 1] == "x@example.org",
              "sendmail args %r" % args)
    else:
        check(False, "sendmail was not run")

if failures:
    for f in failures:
        print("FAIL:", f)
    sys.exit(1)
print("batch send: all checks passed")
