#!/usr/bin/python3
"""correod_queue.py: the outbound queue against aiosmtpd peers on loopback.

argv: [script, correod_exe, source_root]

A correod instance is made with `correod init` but not started: mail is
queued with `correod sendmail` and sent with `correod queue flush`, which
runs a pass itself when no server runs.  `route` lines point test domains
at aiosmtpd servers (tests/integration/smtp_server.py) in plain mode:

  remote.test  a server that takes everything
  retry.test   a server that answers 451 to the first two messages
  reject.test  a server that refuses every recipient (550 5.1.1)
  down.test    a closed port
  kill.test    a server for the kill -9 test
  (and later opp.test/req.test on a STARTTLS server, a smarthost, runner.test)

Checks:
  - the data the server receives is the spooled data byte for byte
    (dot-stuffing undone, 8-bit bytes, long lines);
  - 451 twice then success: the entry stays, shows the reply, and goes
    once delivered; the server has exactly one copy;
  - 550: the entry fails and a DSN (multipart/report, three parts, the
    right fields) lands in the sender's local Maildir with Return-Path <>;
  - queue list/show/delete on an entry that cannot be delivered; delete
    sends no report;
  - kill -9 of `queue flush` at random moments across many messages: every
    message arrives at least once; a message arrives twice only if a kill
    landed between the server's reply to the data and the queue recording
    it (the window SMTP cannot close), which the test detects after each
    kill by finding a message the server has while its queue entry still
    says pending.  Outside that window there must be no duplicate;
  - a damaged entry is moved to corrupt/ and the others still go;
  - a delay report once after four hours, a failure report past
    queue_lifetime (the arrival time is moved back in the spool file);
  - TLS: an opportunistic route to a STARTTLS server with a self-signed
    certificate delivers over TLS without verifying it (the server records
    tls), a `starttls` route to the same server refuses the certificate and
    the entry waits for a retry; an opportunistic route to a server without
    STARTTLS delivers in plain text; the log says which happened;
  - success reports (NOTIFY=SUCCESS over smtplib): a local delivery gets a
    "delivered" report in the sender's Maildir, a message relayed to a
    server that does not announce DSN a "relayed" one; the null sender and
    NOTIFY without SUCCESS get none;
  - 8-bit mail to a server without 8BITMIME: what arrives is 7-bit, sent
    without BODY=8BITMIME, and decodes to the original text (single part,
    multipart with an attachment); a message with raw 8-bit bytes in a
    header cannot be converted and bounces with 5.6.3;
  - DKIM-Signature on outbound mail once dkim_* are set; a message
    converted to 7-bit is signed as converted (its bh= matches the body
    the server got);
  - the smarthost with AUTH (smarthost_pass and smarthost_pass_cmd), and a
    wrong password that leaves the entry waiting with the 535 shown;
  - the server's own queue runner: new mail goes out by itself, and
    `queue flush` kicks it (SIGUSR1) past retry_min.
"""
import base64
import email
import email.policy
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correod_fixture import Correod, wait_until  # noqa: E402

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))

passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: " + what)


class Peer:
    """smtp_server.py (plain mode unless args say); ends when we close its stdin."""

    def __init__(self, tmp, name, *args):
        self.outdir = os.path.join(tmp, "peer-" + name)
        os.mkdir(self.outdir)
        mode = [] if "--mode" in args else ["--mode", "plain"]
        self.proc = subprocess.Popen(
            [PY, os.path.join(HERE, "smtp_server.py")] + mode + ["--outdir",
             self.outdir, "--stdin-eof-exits"] + list(args),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(os.path.join(tmp, "peer-%s.err" % name), "wb"))
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError("smtp_server.py did not start: %r" % line)
        self.port = int(line.split()[1])

    def messages(self):
        out = []
        for path in sorted(glob.glob(os.path.join(self.outdir, "msg-*.json")),
                           key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0])):
            with open(path) as f:
                rec = json.load(f)
            rec["raw"] = base64.b64decode(rec["data"])
            out.append(rec)
        return out

    def events(self):
        try:
            with open(os.path.join(self.outdir, "events.log")) as f:
                return f.read().splitlines()
        except OSError:
            return []

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def quiet(peer):
    """Every connection the server opened is closed again."""
    ev = peer.events()
    return (sum(1 for e in ev if e.endswith(" OPEN"))
            == sum(1 for e in ev if e.endswith(" CLOSED")))


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- reading the spool (format of localserver/queue.c) --------------------

def spool_ids(qdir):
    try:
        return sorted(os.listdir(os.path.join(qdir, "msg")))
    except FileNotFoundError:
        return []


def spool_data(qdir, qid):
    with open(os.path.join(qdir, "msg", qid), "rb") as f:
        raw = f.read()
    pos = 0
    while True:
        nl = raw.index(b"\n", pos)
        line = raw[pos:nl]
        pos = nl + 1
        if line.startswith(b"data "):
            return raw[pos:]


def spool_pending(qdir, qid):
    """True when the entry exists and some recipient is pending."""
    try:
        with open(os.path.join(qdir, "state", qid), "rb") as f:
            lines = f.read().split(b"\n")
    except OSError:
        return False
    return any(l.startswith(b"rcpt pending") for l in lines)


# ---- the tests ------------------------------------------------------------

def sendmail(d, sender, rcpts, msg):
    r = subprocess.run([d.exe, "sendmail", "-c", d.conf, "-i", "-f", sender] + rcpts,
                       input=msg, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("sendmail failed %d: %s" % (r.returncode, r.stderr.decode()))


def flush(d):
    r = subprocess.run([d.exe, "queue", "flush", "-c", d.conf], capture_output=True,
                       timeout=120)
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode == 0 and "Sanitizer" not in err and "runtime error" not in err,
          "queue flush ran cleanly (%d): %s" % (r.returncode, err[-1000:]))
    return r


def queue_list(d):
    r = d.cmd("queue", "list", "-c", d.conf)
    return r.stdout


def test_byte_exact(d, qdir, peer):
    body = (b"Subject: exact\r\nX-Token: exact-1\r\n\r\n"
            b".leading dot\r\n..two dots\r\n.\r\nnot the end\r\n"
            b"caf\xc3\xa9 8-bit\r\n" + b"x" * 900 + b"\r\n"
            b"last line without dot\r\n")
    before = set(spool_ids(qdir))
    sendmail(d, "alice@example.test", ["bob@remote.test", "carol@remote.test"], body)
    new = [i for i in spool_ids(qdir) if i not in before]
    check(len(new) == 1, "one spool entry for two remote recipients (got %d)" % len(new))
    if len(new) != 1:
        return
    data = spool_data(qdir, new[0])
    check(data.endswith(body.split(b"\r\n\r\n", 1)[1]) and b"X-Token: exact-1\r\n" in data,
          "the spool holds the message")
    check("bob@remote.test" in queue_list(d), "queue list shows the recipient")
    r = flush(d)
    check(r.returncode == 0, "queue flush exits 0 (%d: %s)" % (r.returncode, r.stderr[-500:]))
    msgs = [m for m in peer.messages() if b"exact-1" in m["raw"]]
    check(len(msgs) == 1, "the server got the message once (got %d)" % len(msgs))
    if msgs:
        m = msgs[0]
        check(m["raw"] == data, "received data equals the spooled data byte for byte")
        check(m["mail_from"] == "alice@example.test", "MAIL FROM kept")
        check(sorted(m["rcpt_tos"]) == ["bob@remote.test", "carol@remote.test"],
              "both recipients in one transaction: %r" % m["rcpt_tos"])
        check("BODY=8BITMIME" in m.get("mail_options", []),
              "BODY=8BITMIME sent for 8-bit data: %r" % m.get("mail_options"))
    check(new[0] not in spool_ids(qdir), "the entry is removed once delivered")


def test_retry(d, qdir, peer):
    sendmail(d, "alice@example.test", ["rita@retry.test"],
             b"Subject: retry\r\nX-Token: retry-1\r\n\r\nbody\r\n")
    ids = [i for i in spool_ids(qdir) if b"retry-1" in spool_data(qdir, i)]
    check(len(ids) == 1, "retry message spooled")
    if not ids:
        return
    qid = ids[0]
    for attempt in (1, 2):
        flush(d)
        check(spool_pending(qdir, qid), "after 451 number %d the entry is pending" % attempt)
        out = queue_list(d)
        check("451" in out and "4.3.0" in out, "queue list shows the 451 reply: %r" % out)
    show = d.cmd("queue", "show", "-c", d.conf, qid).stdout
    check("attempts:  2" in show, "two attempts recorded: %r" % show)
    flush(d)
    check(qid not in spool_ids(qdir), "delivered at the third attempt and removed")
    got = [m for m in peer.messages() if b"retry-1" in m["raw"]]
    check(len(got) == 1, "exactly one copy accepted (got %d)" % len(got))
    check(sum(1 for e in peer.events() if "TEMPFAIL" in e) == 2, "two temporary failures")


def maildir_new(d, local):
    return d.messages(local)


def test_bounce(d, qdir, peer):
    before = len(maildir_new(d, "alice"))
    orig = (b"Subject: will bounce\r\nMessage-ID: <bounce.1@example.test>\r\n"
            b"X-Token: bounce-1\r\n\r\nthis cannot be delivered\r\n")
    sendmail(d, "alice@example.test", ["bob@reject.test"], orig)
    flush(d)
    check(not any(b"bounce-1" in spool_data(qdir, i) for i in spool_ids(qdir)),
          "the failed entry is removed")
    msgs = maildir_new(d, "alice")
    check(len(msgs) == before + 1, "one DSN in the sender's Maildir (%d -> %d)"
          % (before, len(msgs)))
    if len(msgs) != before + 1:
        return
    dsn = [m for m in msgs if b"multipart/report" in m]
    check(len(dsn) == 1, "the new message is a multipart/report")
    if not dsn:
        return
    raw = dsn[0]
    check(raw.startswith(b"Return-Path: <>\n"), "DSN has the null sender: %r" % raw[:40])
    m = email.message_from_bytes(raw, policy=email.policy.compat32)
    check(m.get_content_type() == "multipart/report", "multipart/report")
    check(m.get_param("report-type") == "delivery-status", "report-type=delivery-status")
    check("MAILER-DAEMON@" in m["From"], "From MAILER-DAEMON: %r" % m["From"])
    check(m["Auto-Submitted"] == "auto-replied", "Auto-Submitted: auto-replied")
    check(m["In-Reply-To"] == "<bounce.1@example.test>", "In-Reply-To the original")
    parts = m.get_payload()
    check(len(parts) == 3, "three parts (got %d)" % len(parts))
    if len(parts) != 3:
        return
    check(parts[0].get_content_type() == "text/plain", "first part text/plain")
    human = parts[0].get_payload(decode=True).decode()
    check("bob@reject.test" in human and "550 5.1.1" in human,
          "human part names the recipient and the reply: %r" % human)
    check(parts[1].get_content_type() == "message/delivery-status", "delivery-status part")
    ds = parts[1].as_string()
    for field in ("Reporting-MTA: dns;", "Final-Recipient: rfc822; bob@reject.test",
                  "Action: failed", "Status: 5.1.1", "Remote-MTA: dns; 127.0.0.1",
                  "Diagnostic-Code: smtp; 550 5.1.1"):
        check(field in ds, "delivery-status has %r" % field)
    check(parts[2].get_content_type() == "message/rfc822", "third part message/rfc822")
    check(b"X-Token: bounce-1" in raw and b"this cannot be delivered" in raw,
          "the original is included")


def test_list_show_delete(d, qdir):
    before = len(maildir_new(d, "alice"))
    sendmail(d, "alice@example.test", ["dan@down.test"],
             b"Subject: down\r\nX-Token: down-1\r\n\r\nbody\r\n")
    flush(d)
    ids = [i for i in spool_ids(qdir) if b"down-1" in spool_data(qdir, i)]
    check(len(ids) == 1 and spool_pending(qdir, ids[0]), "undeliverable entry stays pending")
    if not ids:
        return
    out = queue_list(d)
    check(ids[0] in out and "<alice@example.test>" in out and "dan@down.test" in out,
          "queue list shows id, sender, recipient: %r" % out)
    check("refused" in out.lower() or "connect" in out.lower(),
          "queue list shows the connection error: %r" % out)
    show = d.cmd("queue", "show", "-c", d.conf, ids[0]).stdout
    check("recipient: <dan@down.test> pending" in show, "queue show: %r" % show)
    r = d.cmd("queue", "show", "-c", d.conf, "../etc", check=False)
    check(r.returncode != 0, "queue show refuses a bad id")
    d.cmd("queue", "delete", "-c", d.conf, ids[0])
    check(ids[0] not in spool_ids(qdir), "queue delete removes the entry")
    check(len(maildir_new(d, "alice")) == before, "delete sends no report")
    r = d.cmd("queue", "delete", "-c", d.conf, ids[0], check=False)
    check(r.returncode != 0, "deleting it again fails")


def test_kill(d, qdir, peer, n_msgs=40, rounds=80):
    seed = int(os.environ.get("CORREOD_QUEUE_SEED", "0")) or random.randrange(1, 1 << 30)
    print("kill test: seed %d (CORREOD_QUEUE_SEED repeats it)" % seed)
    rnd = random.Random(seed)
    tokens = ["kill-%03d" % i for i in range(n_msgs)]
    for t in tokens:
        sendmail(d, "alice@example.test", ["k@kill.test"],
                 ("Subject: %s\r\nX-Token: %s\r\n\r\nbody of %s\r\n" % (t, t, t)).encode())
    token_of = {}
    for qid in spool_ids(qdir):
        data = spool_data(qdir, qid)
        for t in tokens:
            if ("X-Token: %s\r\n" % t).encode() in data:
                token_of[qid] = t
    check(len(token_of) == n_msgs, "all %d kill-test messages spooled" % n_msgs)

    def received():
        counts = {}
        for m in peer.messages():
            for t in tokens:
                if ("X-Token: %s\r\n" % t).encode() in m["raw"]:
                    counts[t] = counts.get(t, 0) + 1
        return counts

    # A kill "catches" a message when the server has a copy the queue has
    # not recorded: the window between the server's reply and the record.
    hits = {}           # token -> kills that caught a new copy of it
    seen_at_hit = {}    # token -> server copies when last caught
    kills = 0
    for _ in range(rounds):
        if not any(q in token_of for q in spool_ids(qdir)):
            break
        p = subprocess.Popen([d.exe, "queue", "flush", "-c", d.conf],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.0, 0.12))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
        # the server may still be reading what the killed client sent
        wait_until(lambda: quiet(peer), timeout=10, what="the server to close the connections")
        got = received()
        new_hits = 0
        for qid, t in token_of.items():
            if t in got and spool_pending(qdir, qid) and got[t] > seen_at_hit.get(t, 0):
                hits[t] = hits.get(t, 0) + 1
                seen_at_hit[t] = got[t]
                new_hits += 1
        # Messages go out one at a time and each is recorded right after
        # the server's reply: one kill can catch at most one message there.
        check(new_hits <= 1, "one kill caught %d messages between reply and record" % new_hits)
    # finish without interference
    for _ in range(5):
        if not any(q in token_of for q in spool_ids(qdir)):
            break
        flush(d)
    got = received()
    missing = [t for t in tokens if t not in got]
    dups = {t: c for t, c in got.items() if c > 1}
    outside = [t for t in dups if t not in hits]
    print("kill test: %d kills, %d messages, %d kills caught a message in the reply window, "
          "%d duplicates" % (kills, n_msgs, sum(hits.values()),
                             sum(c - 1 for c in dups.values())))
    check(kills > 0, "at least one flush was killed")
    check(not missing, "every message arrived at least once (missing %r)" % missing)
    check(not outside, "no duplicate outside the data-reply window: %r" % outside)
    check(all(got[t] <= 1 + hits.get(t, 0) for t in got),
          "at most one extra copy per kill in the window: %r %r" % (dups, hits))
    check(not any(q in token_of for q in spool_ids(qdir)), "queue empty at the end")
    check(os.listdir(os.path.join(qdir, "tmp")) == [], "no debris left in tmp/")
    check(os.listdir(os.path.join(qdir, "corrupt")) == [] if os.path.isdir(
        os.path.join(qdir, "corrupt")) else True, "nothing quarantined")


def set_created(qdir, qid, when):
    """Move an entry's arrival time (same number of digits: size kept)."""
    path = os.path.join(qdir, "msg", qid)
    with open(path, "rb") as f:
        raw = f.read()
    start = raw.index(b"\ncreated ") + len(b"\ncreated ")
    end = raw.index(b"\n", start)
    old = raw[start:end]
    new = str(when).encode()
    assert len(new) == len(old)
    with open(path, "wb") as f:
        f.write(raw[:start] + new + raw[end:])


def reports(d, action):
    return [m for m in maildir_new(d, "alice")
            if b"multipart/report" in m and ("Action: " + action).encode() in m]


def test_delay_and_expiry(d, qdir):
    sendmail(d, "alice@example.test", ["dora@down.test"],
             b"Subject: slow\r\nX-Token: delay-1\r\n\r\nbody\r\n")
    ids = [i for i in spool_ids(qdir) if b"delay-1" in spool_data(qdir, i)]
    check(len(ids) == 1, "delay message spooled")
    if not ids:
        return
    qid = ids[0]
    delayed0 = len(reports(d, "delayed"))
    set_created(qdir, qid, int(time.time()) - 5 * 3600)
    flush(d)
    check(spool_pending(qdir, qid), "still pending after five hours")
    check(len(reports(d, "delayed")) == delayed0 + 1, "one delay report after four hours")
    flush(d)
    check(len(reports(d, "delayed")) == delayed0 + 1, "the delay report is sent only once")
    failed0 = len(reports(d, "failed"))
    set_created(qdir, qid, int(time.time()) - 6 * 86400)
    flush(d)
    check(qid not in spool_ids(qdir), "past queue_lifetime the entry fails and goes")
    rep = reports(d, "failed")
    check(len(rep) == failed0 + 1, "a failure report after queue_lifetime")
    if len(rep) == failed0 + 1:
        new = [m for m in rep if b"dora@down.test" in m]
        check(len(new) == 1 and b"gave up" in new[0], "the report says it gave up")


def test_tls(d, qdir, tmp, plain_peer):
    """A STARTTLS server with a self-signed certificate nobody trusts (the
    instance's own, made by `correod init`): opportunistic encrypts
    without verifying, required STARTTLS refuses and waits (temporary).
    Opportunistic to a server without STARTTLS: plain text."""
    cert = os.path.join(d.dir, "cert.pem")
    key = os.path.join(d.dir, "key.pem")
    peer = Peer(tmp, "tls", "--mode", "starttls", "--cert", cert, "--key", key)
    try:
        with open(d.conf, "a") as f:
            f.write("\nroute opp.test 127.0.0.1:%d opportunistic\n" % peer.port)
            f.write("route req.test 127.0.0.1:%d starttls\n" % peer.port)
            f.write("route plainopp.test 127.0.0.1:%d opportunistic\n" % plain_peer.port)
        sendmail(d, "alice@example.test", ["o@opp.test"],
                 b"Subject: opp\r\nX-Token: opp-1\r\n\r\nbody\r\n")
        sendmail(d, "alice@example.test", ["r@req.test"],
                 b"Subject: req\r\nX-Token: req-1\r\n\r\nbody\r\n")
        sendmail(d, "alice@example.test", ["p@plainopp.test"],
                 b"Subject: plainopp\r\nX-Token: plainopp-1\r\n\r\nbody\r\n")
        r = flush(d)
        log = r.stderr.decode("utf-8", "replace")
        got = [m for m in peer.messages() if b"opp-1" in m["raw"]]
        check(len(got) == 1 and got[0]["tls"],
              "opportunistic: delivered over TLS to a self-signed server: %r"
              % [m["tls"] for m in got])
        check(any("STARTTLS" in e for e in peer.events()), "opportunistic: STARTTLS was used")
        check(any(e.endswith("MAIL tls=1") for e in peer.events()),
              "opportunistic: the transaction ran inside TLS: %r" % peer.events())
        check("certificate not verified" in log,
              "the log says the TLS was not verified: %r" % log[-2000:])
        check(not any(b"req-1" in m["raw"] for m in peer.messages()),
              "required STARTTLS: nothing sent to an unverified server")
        ids = [i for i in spool_ids(qdir) if b"req-1" in spool_data(qdir, i)]
        check(len(ids) == 1 and spool_pending(qdir, ids[0]),
              "required STARTTLS: the entry waits for a retry")
        out = queue_list(d)
        check("certificate" in out.lower(), "the certificate problem is shown: %r" % out)
        # and it is retried (and refused again), not given up
        flush(d)
        check(len(ids) == 1 and spool_pending(qdir, ids[0]),
              "required STARTTLS: still waiting after another attempt")
        if ids:
            show = d.cmd("queue", "show", "-c", d.conf, ids[0]).stdout
            check("attempts:  2" in show, "required STARTTLS: two attempts: %r" % show)
        plain = [m for m in plain_peer.messages() if b"plainopp-1" in m["raw"]]
        check(len(plain) == 1 and not plain[0]["tls"],
              "opportunistic without STARTTLS offered: delivered in plain text")
        check("STARTTLS not offered" in log, "the log says STARTTLS was not offered")
        for i in ids:
            d.cmd("queue", "delete", "-c", d.conf, i)
    finally:
        peer.stop()


def report_parts(raw):
    """(message, delivery-status text) of a multipart/report."""
    m = email.message_from_bytes(raw, policy=email.policy.compat32)
    parts = m.get_payload()
    ds = parts[1].as_string() if isinstance(parts, list) and len(parts) == 3 else ""
    return m, ds


def test_success_reports(d, qdir, peer):
    """NOTIFY=SUCCESS through smtplib, with the server (and its queue
    runner) running: a local delivery gets "delivered", a message handed to
    a server without DSN (aiosmtpd) "relayed"."""
    import smtplib
    import ssl
    d.add_user("bob", "bob-secret")
    d.start()
    try:
        before = len(maildir_new(d, "alice"))
        bob0 = len(maildir_new(d, "bob"))
        s = smtplib.SMTP("127.0.0.1", d.port("smtp"), local_hostname="client.test", timeout=15)
        refused = s.sendmail("alice@example.test", ["bob@example.test"],
                             b"Subject: notify me\r\nMessage-ID: <succ.1@example.test>\r\n"
                             b"X-Token: succ-1\r\n\r\nhello bob\r\n",
                             mail_options=["RET=HDRS", "ENVID=succ-env-1"],
                             rcpt_options=["NOTIFY=SUCCESS"])
        # the null sender and a NOTIFY without SUCCESS: no report
        s.sendmail("", ["bob@example.test"],
                   b"Subject: null sender\r\nX-Token: succ-null\r\n\r\nx\r\n",
                   rcpt_options=["NOTIFY=SUCCESS"])
        s.sendmail("alice@example.test", ["bob@example.test"],
                   b"Subject: failures only\r\nX-Token: succ-fail\r\n\r\nx\r\n",
                   rcpt_options=["NOTIFY=FAILURE"])
        s.quit()
        check(refused == {}, "local delivery with NOTIFY=SUCCESS accepted")
        check(len(maildir_new(d, "bob")) == bob0 + 3, "bob got the three messages")
        try:
            wait_until(lambda: reports(d, "delivered"), timeout=20,
                       what="the delivered report in alice's Maildir")
        except TimeoutError:
            pass
        rep = reports(d, "delivered")
        check(len(rep) == 1, "one delivered report for alice (got %d)\n%s"
              % (len(rep), d.log()[-3000:]))
        if rep:
            m, ds = report_parts(rep[0])
            check(rep[0].startswith(b"Return-Path: <>\n"), "the report has the null sender")
            check(m.get_content_type() == "multipart/report", "multipart/report")
            check(m["In-Reply-To"] == "<succ.1@example.test>", "In-Reply-To the original")
            for field in ("Final-Recipient: rfc822; bob@example.test", "Action: delivered",
                          "Status: 2.0.0", "Original-Envelope-Id: succ-env-1"):
                check(field in ds, "delivered report has %r: %r" % (field, ds))
            check(b"succ-1" in rep[0] and b"hello bob" not in rep[0],
                  "the original's header is included, not its body")
        # relayed: authenticated submission to a remote route (aiosmtpd, no DSN)
        ctx = ssl.create_default_context(cafile=os.path.join(d.dir, "cert.pem"))
        s = smtplib.SMTP("127.0.0.1", d.port("submission"), local_hostname="client.test",
                         timeout=15)
        s.starttls(context=ctx)
        try:
            s.login("alice@example.test", "secret-pw")
        except smtplib.SMTPAuthenticationError:
            s.login("alice", "secret-pw")
        refused = s.sendmail("alice@example.test", ["bob@remote.test"],
                             b"From: alice@example.test\r\nSubject: relay me\r\n"
                             b"X-Token: succ-relay\r\n\r\nto the world\r\n",
                             rcpt_options=["NOTIFY=SUCCESS,FAILURE",
                                           "ORCPT=rfc822;bob@remote.test"])
        s.quit()
        check(refused == {}, "relay with NOTIFY=SUCCESS accepted")
        try:
            wait_until(lambda: reports(d, "relayed"), timeout=30,
                       what="the relayed report in alice's Maildir")
        except TimeoutError:
            pass
        # (aiosmtpd refuses RCPT parameters it does not know: a delivery
        # means no NOTIFY went to a server without DSN)
        got = [m for m in peer.messages() if b"succ-relay" in m["raw"]]
        check(len(got) == 1, "the remote server got the message")
        rep = reports(d, "relayed")
        check(len(rep) == 1, "one relayed report for alice (got %d)" % len(rep))
        if rep:
            m, ds = report_parts(rep[0])
            for field in ("Final-Recipient: rfc822; bob@remote.test", "Action: relayed",
                          "Status: 2.0.0", "Remote-MTA: dns; 127.0.0.1",
                          "Original-Recipient: rfc822;bob@remote.test"):
                check(field in ds, "relayed report has %r: %r" % (field, ds))
        check(len(reports(d, "delivered")) == 1, "still exactly one delivered report")
        rc = d.stop()
        check(rc == 0, "the server stops cleanly (%r)" % rc)
        log = d.log()
        check("Sanitizer" not in log and "runtime error" not in log,
              "the server ran cleanly: %r" % log[-2000:])
    finally:
        d.stop()


def test_8bit_to_7bit(d, qdir, peer):
    """A server without 8BITMIME gets 7-bit data that decodes to the
    original; what cannot be converted bounces with 5.6.3."""
    single = ("From: alice@example.test\r\nSubject: 8bit single\r\nX-Token: conv-1\r\n"
              "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "Content-Transfer-Encoding: 8bit\r\n\r\n"
              "Gr\u00fc\u00dfe aus K\u00f6ln, \u20ac 5 = f\u00fcnf \r\n"
              + "\u00e9" * 60 + "\r\n.\r\nend\r\n").encode("utf-8")
    bare = ("Subject: no mime\r\nX-Token: conv-2\r\n\r\n"
            "caf\u00e9 cr\u00e8me\r\n").encode("utf-8")
    attach = bytes(range(256)) * 4
    multi = (b"From: alice@example.test\r\nSubject: 8bit multi\r\nX-Token: conv-3\r\n"
             b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n"
             b"--BB\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
             b"Content-Transfer-Encoding: 8bit\r\n\r\nna\xefve \xe9t\xe9\r\n"
             b"--BB\r\nContent-Type: application/octet-stream\r\n"
             b"Content-Transfer-Encoding: binary\r\n\r\n" + attach.replace(b"\r", b"R")
             .replace(b"\n", b"N") + b"\r\n--BB--\r\n")
    badhdr = ("Subject: caf\u00e9 in the header\r\nX-Token: conv-bad\r\n\r\n"
              "body \u00e9\r\n").encode("utf-8")
    for msg in (single, bare, multi):
        sendmail(d, "alice@example.test", ["x@seven.test"], msg)
    failed0 = len(reports(d, "failed"))
    sendmail(d, "alice@example.test", ["y@seven.test"], badhdr)
    r = flush(d)
    log = r.stderr.decode("utf-8", "replace")
    check("converted to 7-bit" in log, "the log says the message was converted")
    got = {}
    for m in peer.messages():
        for t in (b"conv-1", b"conv-2", b"conv-3", b"conv-bad"):
            if t in m["raw"]:
                got[t] = m
    check(set(got) == {b"conv-1", b"conv-2", b"conv-3"},
          "three converted messages arrived, the bad one did not: %r" % sorted(got))
    for t, m in got.items():
        check(all(b < 0x80 for b in m["raw"]), "%s arrived 7-bit" % t.decode())
        check("BODY=8BITMIME" not in m.get("mail_options", []),
              "%s: no BODY=8BITMIME to a server without it" % t.decode())
        check(max(len(l) for l in m["raw"].split(b"\r\n")) <= 998,
              "%s: lines within 998" % t.decode())
    if b"conv-1" in got:
        e = email.message_from_bytes(got[b"conv-1"]["raw"], policy=email.policy.default)
        check(e["Content-Transfer-Encoding"] == "quoted-printable", "single part: QP")
        orig = single.split(b"\r\n\r\n", 1)[1]
        check(e.get_payload(decode=True) == orig,
              "single part decodes to the original bytes")
        check(e["X-Token"] == "conv-1" and e["Subject"] == "8bit single", "headers kept")
    if b"conv-2" in got:
        e = email.message_from_bytes(got[b"conv-2"]["raw"], policy=email.policy.default)
        check(e["MIME-Version"] == "1.0" and e.get_content_charset() == "utf-8",
              "no MIME: MIME-Version and charset=utf-8 added")
        check(e.get_payload(decode=True) == bare.split(b"\r\n\r\n", 1)[1],
              "no MIME: decodes to the original")
    if b"conv-3" in got:
        e = email.message_from_bytes(got[b"conv-3"]["raw"], policy=email.policy.default)
        parts = e.get_payload()
        check(len(parts) == 2, "multipart: two parts")
        if len(parts) == 2:
            check(parts[0]["Content-Transfer-Encoding"] == "quoted-printable"
                  and parts[0].get_payload(decode=True) == b"na\xefve \xe9t\xe9",
                  "multipart: text part QP, decodes to the original")
            check(parts[1]["Content-Transfer-Encoding"] == "base64"
                  and parts[1].get_payload(decode=True)
                  == attach.replace(b"\r", b"R").replace(b"\n", b"N"),
                  "multipart: binary part base64, decodes to the original")
    rep = [m for m in reports(d, "failed") if b"conv-bad" in m]
    check(len(reports(d, "failed")) == failed0 + 1 and len(rep) == 1,
          "the unconvertible message bounced")
    if rep:
        m, ds = report_parts(rep[0])
        check("Status: 5.6.3" in ds and "Final-Recipient: rfc822; y@seven.test" in ds,
              "the bounce says 5.6.3 for the recipient: %r" % ds)
        check("8BITMIME" in ds, "the bounce explains the missing 8BITMIME: %r" % ds)
    check(not any(b"conv-" in spool_data(qdir, i) for i in spool_ids(qdir)),
          "nothing of it is left in the queue")


def test_dkim(d, qdir, peer):
    r = d.cmd("dkim-keygen", "-c", d.conf, "--selector", "q1", check=False)
    if r.returncode != 0:
        check(False, "dkim-keygen: %s" % r.stderr)
        return
    lines = [l for l in r.stdout.splitlines() if l.startswith("dkim_")]
    check(len(lines) == 3, "dkim-keygen prints the three dkim_* lines: %r" % r.stdout)
    with open(d.conf, "a") as f:
        f.write("\n" + "\n".join(lines) + "\n")
    sendmail(d, "alice@example.test", ["bob@remote.test"],
             b"Subject: signed\r\nX-Token: dkim-1\r\n\r\nbody\r\n")
    flush(d)
    got = [m for m in peer.messages() if b"dkim-1" in m["raw"]]
    check(len(got) == 1 and got[0]["raw"].startswith(b"DKIM-Signature:"),
          "outbound mail carries a DKIM-Signature first")
    if got:
        check(b"d=example.test" in got[0]["raw"] and b"s=q1" in got[0]["raw"],
              "signature names domain and selector")


def relaxed_body_hash(body):
    """RFC 6376 3.4.4 relaxed body canonicalization, SHA-256, base64."""
    import hashlib
    import re
    lines = body.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    lines = [re.sub(rb"[ \t]+", b" ", l).rstrip(b" ") for l in lines]
    while lines and lines[-1] == b"":
        lines.pop()
    canon = b"".join(l + b"\r\n" for l in lines)
    return base64.b64encode(hashlib.sha256(canon).digest()).decode()


def test_dkim_converted(d, qdir, peer):
    """With DKIM on, a message converted to 7-bit is signed as converted:
    the body hash in the signature is that of the body the server got."""
    sendmail(d, "alice@example.test", ["z@seven.test"],
             ("Subject: signed 8bit\r\nX-Token: dkim-conv\r\nMIME-Version: 1.0\r\n"
              "Content-Type: text/plain; charset=utf-8\r\n\r\n"
              "sign\u00e9 apr\u00e8s conversion\r\n").encode("utf-8"))
    flush(d)
    got = [m for m in peer.messages() if b"dkim-conv" in m["raw"]]
    check(len(got) == 1 and got[0]["raw"].startswith(b"DKIM-Signature:"),
          "the converted message carries a DKIM-Signature")
    if got:
        raw = got[0]["raw"]
        head, body = raw.split(b"\r\n\r\n", 1)
        sig = head.split(b"\r\nSubject:")[0].decode()
        bh = "".join(sig.split("bh=", 1)[1].split(";", 1)[0].split())
        check(all(b < 0x80 for b in raw), "the signed message is 7-bit")
        check(bh == relaxed_body_hash(body),
              "bh= is the hash of the converted body (%s)" % bh)


def test_runner(d, qdir, tmp):
    """The server's queue runner: new mail goes out by itself; after a 451
    the entry waits for retry_min (1 h here) and `queue flush` makes the
    running runner try it at once (SIGUSR1 through the supervisor)."""
    peer = Peer(tmp, "runner", "--tempfail-first", "1")
    try:
        with open(d.conf, "a") as f:
            f.write("\nroute runner.test 127.0.0.1:%d none\nretry_min 1h\n" % peer.port)
        d.start()
        sendmail(d, "alice@example.test", ["r@runner.test"],
                 b"Subject: runner\r\nX-Token: runner-1\r\n\r\nbody\r\n")
        wait_until(lambda: any("TEMPFAIL" in e for e in peer.events()), timeout=20,
                   what="the runner's first attempt")
        ids = [i for i in spool_ids(qdir) if b"runner-1" in spool_data(qdir, i)]
        check(len(ids) == 1, "after the 451 the entry waits")
        r = d.cmd("queue", "flush", "-c", d.conf)
        check("queue runner" in r.stdout, "flush signals the running server: %r" % r.stdout)
        try:
            wait_until(lambda: any(b"runner-1" in m["raw"] for m in peer.messages()),
                       timeout=20, what="delivery after the kick")
            check(True, "the kicked runner delivered at once")
        except TimeoutError:
            check(False, "the kicked runner delivered at once")
        wait_until(lambda: not any(b"runner-1" in spool_data(qdir, i)
                                   for i in spool_ids(qdir)),
                   timeout=20, what="the entry to go")
        rc = d.stop()
        check(rc == 0, "the server stops cleanly (%r)" % rc)
    finally:
        d.stop()
        peer.stop()


def test_corrupt(d, qdir):
    """A damaged entry is moved to corrupt/ and the others still go."""
    bad = "0ZZZZZZZZZZZZZZZZZZZZ"
    with open(os.path.join(qdir, "msg", bad), "wb") as f:
        f.write(b"correod-queue 1\nid " + bad.encode() + b"\nfrom =x@y\ngarbage\n")
    with open(os.path.join(qdir, "state", bad), "wb") as f:
        f.write(b"nonsense\n")
    sendmail(d, "alice@example.test", ["bob@remote.test"],
             b"Subject: after corrupt\r\nX-Token: corrupt-1\r\n\r\nbody\r\n")
    r = subprocess.run([d.exe, "queue", "flush", "-c", d.conf], capture_output=True,
                       timeout=120)
    err = r.stderr.decode("utf-8", "replace")
    check("Sanitizer" not in err and "runtime error" not in err, "flush survives: " + err[-500:])
    check(bad not in spool_ids(qdir), "the damaged entry left msg/")
    kept = sorted(os.listdir(os.path.join(qdir, "corrupt")))
    check(kept == [bad + ".msg", bad + ".state"], "both files kept in corrupt/: %r" % kept)
    check("malformed" in err, "the damaged entry is reported: %r" % err[-500:])
    check(not any(b"corrupt-1" in spool_data(qdir, i) for i in spool_ids(qdir)),
          "the good entry was delivered")
    for name in kept:
        os.unlink(os.path.join(qdir, "corrupt", name))


def test_smarthost(d, qdir, tmp):
    """Mail for domains without a route goes to the smarthost, with AUTH
    (in clear text only because it is on loopback); the password comes from
    smarthost_pass, then from smarthost_pass_cmd."""
    peer = Peer(tmp, "smarthost", "--user", "relayuser", "--password", "s3cret pw")
    with open(d.conf) as f:
        base = f.read()
    try:
        for n, secret_line in enumerate(['smarthost_pass "s3cret pw"',
                                         'smarthost_pass_cmd /bin/echo "s3cret pw"']):
            with open(d.conf, "w") as f:
                f.write(base + "\nsmarthost 127.0.0.1\nsmarthost_port %d\n"
                        "smarthost_tls none\nsmarthost_user relayuser\n%s\n"
                        % (peer.port, secret_line))
            token = "smart-%d" % n
            sendmail(d, "alice@example.test", ["x@elsewhere.test"],
                     ("Subject: s\r\nX-Token: %s\r\n\r\nbody\r\n" % token).encode())
            flush(d)
            got = [m for m in peer.messages() if token.encode() in m["raw"]]
            check(len(got) == 1 and got[0]["auth_login"] == "relayuser",
                  "smarthost delivery with AUTH (%s)" % secret_line.split()[0])
        # a wrong password: the entry waits, the reply is shown
        with open(d.conf, "w") as f:
            f.write(base + "\nsmarthost 127.0.0.1\nsmarthost_port %d\n"
                    "smarthost_tls none\nsmarthost_user relayuser\nsmarthost_pass wrong\n"
                    % peer.port)
        sendmail(d, "alice@example.test", ["y@elsewhere.test"],
                 b"Subject: s\r\nX-Token: smart-bad\r\n\r\nbody\r\n")
        flush(d)
        ids = [i for i in spool_ids(qdir) if b"smart-bad" in spool_data(qdir, i)]
        check(len(ids) == 1 and spool_pending(qdir, ids[0]), "wrong password: entry waits")
        check("535" in queue_list(d), "wrong password: the 535 is shown")
        for i in ids:
            d.cmd("queue", "delete", "-c", d.conf, i)
    finally:
        with open(d.conf, "w") as f:
            f.write(base)
        peer.stop()


def main():
    exe = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="correod-queue-")
    peers = []
    try:
        remote = Peer(tmp, "remote")
        retry = Peer(tmp, "retry", "--tempfail-first", "2")
        reject = Peer(tmp, "reject", "--reject-all")
        killp = Peer(tmp, "kill", "--log-connections")
        seven = Peer(tmp, "seven", "--no-8bitmime")
        peers = [remote, retry, reject, killp, seven]
        extra = "\n".join([
            "route remote.test 127.0.0.1:%d none" % remote.port,
            "route retry.test 127.0.0.1:%d none" % retry.port,
            "route reject.test 127.0.0.1:%d none" % reject.port,
            "route down.test 127.0.0.1:%d none" % closed_port(),
            "route kill.test 127.0.0.1:%d none" % killp.port,
            "route seven.test 127.0.0.1:%d none" % seven.port,
            "timeout_command 20",
        ])
        with Correod(exe, tmp, conf_extra=extra, start=False) as d:
            d.add_user("alice", "secret-pw")
            qdir = os.path.join(d.dir, "queue")
            test_byte_exact(d, qdir, remote)
            test_retry(d, qdir, retry)
            test_bounce(d, qdir, reject)
            test_list_show_delete(d, qdir)
            test_kill(d, qdir, killp)
            test_corrupt(d, qdir)
            test_delay_and_expiry(d, qdir)
            test_tls(d, qdir, tmp, remote)
            test_8bit_to_7bit(d, qdir, seven)
            test_dkim(d, qdir, remote)
            test_dkim_converted(d, qdir, seven)
            test_smarthost(d, qdir, tmp)
            test_success_reports(d, qdir, remote)
            test_runner(d, qdir, tmp)
    except Exception as ex:  # a broken step counts as a failure, not a crash
        global failed
        failed += 1
        print("FAIL: exception: %r" % (ex,))
        import traceback
        traceback.print_exc()
    finally:
        for p in peers:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("correod_queue: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
