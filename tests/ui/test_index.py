#!/usr/bin/python3
"""correo in a pseudo-terminal, used as a person uses it.

Usage: test_index.py CORREO SRCDIR

Each scenario generates its own Maildir++ tree with the project's generator,
runs the real binary in a pty, sends keys and asserts on the rendered screen
(pyte) and on the files on disk.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from screen import Term  # noqa: E402

CORREO, SRCDIR = sys.argv[1], sys.argv[2]
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
ESC = "\x1b"


def make_tree(tmp, count=120, seed=11):
    md = os.path.join(tmp, "Maildir")
    manifest = os.path.join(tmp, "manifest.jsonl")
    subprocess.run([PYTHON, os.path.join(SRCDIR, "tests/tools/gen-corpus.py"), md,
                    "--count", str(count), "--seed", str(seed), "--manifest", manifest],
                   check=True, stdout=subprocess.DEVNULL)
    entries = [json.loads(line) for line in open(manifest, encoding="utf-8")]
    return md, entries


def start(tmp, md, extra_args=(), rc=None, cols=100, rows=30):
    home = os.path.join(tmp, "home")
    os.makedirs(home, exist_ok=True)
    args = [CORREO]
    if rc is None:
        args.append("-n")
    else:
        path = os.path.join(tmp, "correorc")
        with open(path, "w") as f:
            f.write(rc)
        args += ["-F", path]
    args += list(extra_args) + ["-f", md]
    env = {"HOME": home, "XDG_CONFIG_HOME": os.path.join(home, ".config"),
           "XDG_CACHE_HOME": os.path.join(home, ".cache"),
           "CORREO_DATADIR_OVERRIDE": SRCDIR, "TZ": "UTC"}
    t = Term(args, cols=cols, rows=rows, env=env)
    t.wait_for(lambda t: "Msgs:" in t.text(), 20, "the index status line")
    return t


def status_line(t):
    for line in t.lines():
        if "Msgs:" in line:
            return line
    return ""


def index_rows(t):
    return [l for l in t.lines()[1:-2] if re.match(r"^\s*\d+ ", l)]


def cursor_row(t):
    """The index row drawn with the indicator (reverse or coloured background)."""
    for y in range(t.rows):
        ch = t.screen.buffer[y][6]
        if ch.bg not in ("default",) or ch.reverse:
            text = "".join(t.screen.buffer[y][x].data for x in range(t.cols)).rstrip()
            if re.match(r"^\s*\d+ ", text):
                return text
    return None


def inbox(entries):
    return [e for e in entries if e["folder"] == "INBOX"]


def limit_to(t, pattern):
    t.send("l")
    t.wait_for("Limit to messages matching:")
    t.send("\x15" + pattern + "\r")   # ^U: the prompt starts with the current limit
    t.wait_for(lambda t: "Limit to" not in t.text(), 10, "the limit to apply")


def scenario_open_move_read(tmp):
    md, entries = make_tree(tmp)
    msgs = inbox(entries)
    t = start(tmp, md)
    try:
        st = status_line(t)
        assert "Msgs:%d" % len(msgs) in st, st
        n_new = sum(1 for m in msgs if m["path"].startswith("new/"))
        if n_new:
            assert "New:%d" % n_new in st, st
        # moving: J (next-entry) moves the cursor one row down
        t.send("=")
        t.wait_for(lambda t: (cursor_row(t) or "").lstrip().startswith("1 "), 5, "cursor on 1")
        t.send("J")
        t.wait_for(lambda t: (cursor_row(t) or "").lstrip().startswith("2 "), 5, "cursor on 2")
        # read a message whose text we know: limit to its Message-ID, open it
        target = next(m for m in msgs if m["text"] and m["text_type"] == "plain"
                      and m["message_id"] and len(m["text"].strip()) > 20
                      and all(ord(c) < 0x3000 for c in m["text"][:200]))
        limit_to(t, "~i " + re.escape(target["message_id"]))
        assert len(index_rows(t)) == 1, t.text()
        t.send("\r")
        first = next(line for line in target["text"].split("\n") if line.strip())
        words = first.split()[:4]
        t.wait_for(lambda t: " ".join(words) in " ".join(t.text().split()), 10,
                   "the message's first words %r" % words)
        if target["subject"]:
            t.wait_for(lambda t: "Subject:" in t.text(), 5)
        t.send("q")
        t.wait_for(lambda t: "Msgs:" in t.text(), 5)
        t.send("q")
        assert t.wait_exit(10) == 0
    finally:
        t.close()


def files_in(md, sub):
    return sorted(os.listdir(os.path.join(md, sub)))


def scenario_flag_delete_sync(tmp):
    md, entries = make_tree(tmp, seed=12)
    t = start(tmp, md)
    try:
        # flag an unflagged message in new/: its file moves to cur/ with F
        target = next(e for e in inbox(entries) if "F" not in e["flags"] and e["message_id"]
                      and e["path"].startswith("new/"))
        base = os.path.basename(target["path"]).split(":")[0]
        limit_to(t, "~i " + re.escape(target["message_id"]))
        t.send("F")

        def flagged():
            return [f for f in files_in(md, "cur") if f.startswith(base) and
                    re.search(r":2,[A-Z]*F", f)]
        t.wait_for(lambda t: len(flagged()) == 1, 5, "%s flagged on disk" % base)
        assert base not in " ".join(files_in(md, "new"))
        limit_to(t, "~A")
        # delete the first message, sync with $ and confirm
        total = len(inbox(entries))
        t.send("=")
        t.send("d")
        t.wait_for(lambda t: "Del:1" in status_line(t), 5, "Del:1")
        # undo takes back every pending deletion; then delete again
        t.send(ESC + "U")
        t.wait_for(lambda t: "Del:" not in status_line(t), 5, "the deletion undone")
        t.send("=")
        t.send("d")
        t.wait_for(lambda t: "Del:1" in status_line(t), 5, "Del:1 again")
        t.send("$")
        t.wait_for("Purge 1 deleted message?", 5)
        t.send("y")
        t.wait_for(lambda t: "Msgs:%d" % (total - 1) in status_line(t), 10, "one message fewer")
        after = len(files_in(md, "cur")) + len(files_in(md, "new"))
        assert after == total - 1, (after, total)
        t.send("q")
        assert t.wait_exit(10) == 0
    finally:
        t.close()


def scenario_limit_tag_move(tmp):
    md, entries = make_tree(tmp, seed=13)
    msgs = inbox(entries)
    # pick a sender with at least two messages in INBOX
    by_addr = {}
    for m in msgs:
        if m["from"]:
            by_addr.setdefault(m["from"][0][1], []).append(m)
    addr, mine = max(by_addr.items(), key=lambda kv: len(kv[1]))
    assert len(mine) >= 2, "corpus has no repeated sender"
    t = start(tmp, md, rc="set folder=%s\n" % md)
    try:
        limit_to(t, "~f " + re.escape(addr))
        t.wait_for(lambda t: len(index_rows(t)) == len(mine), 5,
                   "%d rows for %s" % (len(mine), addr))
        assert "~f" in status_line(t), status_line(t)
        # tag everything shown with T ~A, then ;s to .Work
        t.send("T")
        t.wait_for("Tag messages matching:")
        t.send("~A\r")
        t.wait_for(lambda t: "Tag:%d" % len(mine) in status_line(t), 5, "Tag count")
        work_before = len(files_in(os.path.join(md, ".Work"), "cur")) + \
            len(files_in(os.path.join(md, ".Work"), "new"))
        t.send(";s")
        t.wait_for("Save tagged to mailbox:")
        t.send("\x15=.Work\r")   # ^U clears the "=" we start with
        t.wait_for(lambda t: "saved to" in t.text(), 10, "the save message")
        work_after = len(files_in(os.path.join(md, ".Work"), "cur")) + \
            len(files_in(os.path.join(md, ".Work"), "new"))
        assert work_after == work_before + len(mine), (work_before, work_after)
        inbox_now = len(files_in(md, "cur")) + len(files_in(md, "new"))
        assert inbox_now == len(msgs) - len(mine), (inbox_now, len(msgs))
        t.send("q")
        assert t.wait_exit(10) == 0
    finally:
        t.close()


def scenario_theme_keymap_resize(tmp):
    md, _ = make_tree(tmp, seed=14)
    t = start(tmp, md)
    try:
        def status_bg(t):
            for y in range(t.rows):
                text = "".join(t.screen.buffer[y][x].data for x in range(t.cols))
                if "Msgs:" in text:
                    c = t.screen.buffer[y][text.index("Msgs:")]
                    return c.bg, c.reverse
            return None
        assert status_bg(t)[0] != "default", status_bg(t)   # default.theme colours it
        t.send(":theme mono\r")
        t.wait_for(lambda t: status_bg(t) is not None and status_bg(t)[0] == "default", 5,
                   "the mono status line")
        # the vim keymap: G is last-entry, gg first-entry; mutt's "=" is then unbound
        n_rows = int(re.search(r"Msgs:(\d+)", status_line(t)).group(1))
        t.send(":keymap vim\r")
        t.send("G")
        t.wait_for(lambda t: (cursor_row(t) or "").lstrip().startswith("%d " % n_rows), 5,
                   "cursor on the last message")
        t.send("gg")
        t.wait_for(lambda t: (cursor_row(t) or "").lstrip().startswith("1 "), 5,
                   "cursor on the first message")
        # resize: everything fits the new width, the status line is still drawn
        t.resize(60, 16)
        t.wait_for(lambda t: any("Msgs:" in l for l in t.lines()[12:16]), 10, "status after resize")
        assert all(len(l) <= 60 for l in t.lines())
        t.send(":set help=no\r")
        t.send("q")
        assert t.wait_exit(10) == 0
    finally:
        t.close()


def scenario_hostile(tmp):
    md = os.path.join(tmp, "Evil")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub))
    import base64
    name = base64.b64encode("Mallory \x1b[31mRED".encode()).decode()
    raw = ("From: =?utf-8?b?%s?= <m@example.org>\n"
           "Subject: hi \x1b]0;pwned\x07 there\n"
           "Date: Mon, 02 Nov 2026 10:00:00 +0000\n"
           "Message-ID: <evil@example.org>\n"
           "MIME-Version: 1.0\n"
           "Content-Type: multipart/mixed; boundary=b\n\n"
           "--b\nContent-Type: text/plain\n\nbody \x1b[2J\x1b]52;c;AAAA\x07 visible\n"
           "--b\nContent-Type: application/octet-stream\n"
           "Content-Disposition: attachment; filename=\"evil\x1b[5mname.bin\"\n"
           "Content-Transfer-Encoding: base64\n\nAAEC\n--b--\n") % name
    with open(os.path.join(md, "new", "1.evil"), "wb") as f:
        f.write(raw.encode("utf-8"))
    t = start(tmp, md)
    try:
        t.wait_for("pwned", 5)
        t.send("\r")
        t.wait_for("visible", 5)
        t.send("v")
        t.wait_for("name.bin", 5)
        t.send("q")
        t.send("q")
        t.wait_for("Msgs:", 5)
        t.send("q")
        t.wait_exit(10)
        raw_out = bytes(t.raw)
        for bad in (b"\x1b]0;pwned", b"\x1b]52;", b"\x1b[2J\x1b]52", b"\x1b[31mRED",
                    b"\x1b[5mname", b"\x07 there"):
            assert bad not in raw_out, "terminal received %r" % bad
        # and the bytes are shown visibly instead
        shown = " ".join(t.text().split())
        del shown
    finally:
        t.close()


def scenario_help_and_errors(tmp):
    md, _ = make_tree(tmp, seed=15, count=40)
    # a broken config line is reported and the rest still loads
    t = start(tmp, md, rc="set sort=threads\nset nosuchoption=1\nbind index X noop\n")
    try:
        t.wait_for("nosuchoption", 5)
        t.send("?")
        t.wait_for("Help for index", 5)
        t.wait_for("display-message", 5)
        t.send("q")
        t.wait_for("Msgs:", 5)
        assert "(threads/" in status_line(t), status_line(t)
        t.send("q")
        assert t.wait_exit(10) == 0
    finally:
        t.close()


def scenario_pager_attachments(tmp):
    md = os.path.join(tmp, "Box")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub))
    import base64
    payload = bytes(range(256)) * 4
    body = "\n".join(["Hello Zoë,", "", "> quoted line one", "> > deeper quote", "",
                       "Unquoted reply with the word needle in it.", "", "-- ", "Sig Nature"])
    raw = ("From: Ana <ana@example.org>\nTo: me@example.org\nSubject: Attachments\n"
           "Date: Mon, 02 Nov 2026 10:00:00 +0000\nMessage-ID: <att@example.org>\n"
           "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=zz\n\n"
           "--zz\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
           + body + "\n--zz\nContent-Type: application/octet-stream; name=data.bin\n"
           "Content-Disposition: attachment; filename=data.bin\n"
           "Content-Transfer-Encoding: base64\n\n"
           + base64.encodebytes(payload).decode() + "--zz--\n")
    with open(os.path.join(md, "cur", "1.att:2,S"), "wb") as f:
        f.write(raw.encode("utf-8"))
    t = start(tmp, md, cols=80, rows=24)
    try:
        t.send("\r")
        t.wait_for("Hello Zoë,", 5)
        assert "> quoted line one" in t.text()
        # toggle-quoted hides the quoted lines, and brings them back
        t.send("T")
        t.wait_gone("quoted line one", 5)
        assert "Unquoted reply" in t.text()
        t.send("T")
        t.wait_for("quoted line one", 5)
        # search inside the message
        t.send("/needle\r")
        t.wait_for(lambda t: "Search for" not in t.text(), 5)
        row = next(y for y, l in enumerate(t.lines()) if "needle" in l)
        x = t.lines()[row].index("needle")
        assert t.screen.buffer[row][x].bg != "default" or t.screen.buffer[row][x].reverse, \
            "search hit not highlighted"
        # the attachment list, and saving one part byte for byte
        t.send("v")
        t.wait_for("data.bin", 5)
        t.send("j")   # the second part: text/plain is first... find the row of data.bin
        rows = t.lines()
        target_idx = next(i for i, l in enumerate(rows) if "data.bin" in l)
        del target_idx
        t.send("=")
        for _ in range(10):
            cur = next((y for y in range(t.rows) if t.screen.buffer[y][2].bg != "default"
                        or t.screen.buffer[y][2].reverse), None)
            if cur is not None and "data.bin" in t.lines()[cur]:
                break
            t.send("j")
            t.pump(0.2)
        out = os.path.join(tmp, "saved.bin")
        t.send("s")
        t.wait_for("Save to file:", 5)
        t.send("\x15" + out + "\r")
        t.wait_for("Attachment saved.", 5)
        with open(out, "rb") as f:
            assert f.read() == payload, "saved bytes differ"
        t.send("q")
        t.send("q")
        t.wait_for("Msgs:", 5)
        t.send("q")
        assert t.wait_exit(10) == 0
    finally:
        t.close()


def scenario_new_mail_while_open(tmp):
    md, entries = make_tree(tmp, seed=16, count=40)
    t = start(tmp, md, rc="set mail_check=1\n")
    try:
        before = int(re.search(r"Msgs:(\d+)", status_line(t)).group(1))
        raw = ("From: Late Sender <late@example.org>\nSubject: Arrived while open\n"
               "Date: Mon, 02 Nov 2026 10:00:00 +0000\nMessage-ID: <late@example.org>\n\nhi\n")
        tmpname = os.path.join(md, "tmp", "9999.late")
        with open(tmpname, "w") as f:
            f.write(raw)
        os.rename(tmpname, os.path.join(md, "new", "9999.late"))
        t.wait_for(lambda t: "Msgs:%d" % (before + 1) in status_line(t), 10, "the new count")
        t.wait_for("Arrived while open", 5)
        # a file renamed by another program (flag set elsewhere) is followed, not lost
        def n_flag(t):
            m = re.search(r"Flag:(\d+)", status_line(t))
            return int(m.group(1)) if m else 0
        flags_before = n_flag(t)
        name = next(f for f in files_in(md, "cur") if ":2," in f and "F" not in f.split(":2,")[1])
        os.rename(os.path.join(md, "cur", name),
                  os.path.join(md, "cur", name.split(":2,")[0] + ":2,FS"))
        t.wait_for(lambda t: n_flag(t) == flags_before + 1, 10, "the flag set elsewhere")
        assert "Msgs:%d" % (before + 1) in status_line(t), status_line(t)
        t.send("q")
        assert t.wait_exit(10) == 0
        del entries
    finally:
        t.close()


def scenario_compose_reply_send(tmp):
    sys.path.insert(0, os.path.join(SRCDIR, "tests/integration"))
    from smtp_fixture import SmtpFixture
    import email
    import email.policy
    md, entries = make_tree(tmp, seed=17, count=30)
    editor = os.path.join(tmp, "editor.sh")
    with open(editor, "w") as f:
        f.write("#!/bin/sh\n"
                "sed -i 's/^To: *$/To: friend@example.org/; s/^Subject: *$/Subject: UI test/' \"$1\"\n"
                "printf 'Written by the scripted editor.\\n' >> \"$1\"\n")
    os.chmod(editor, 0o700)
    attach = os.path.join(tmp, "notes.bin")
    payload = os.urandom(3000)
    with open(attach, "wb") as f:
        f.write(payload)
    with SmtpFixture(SRCDIR, tmp) as smtp:
        rc = ("set folder=%s\nset from=me@example.org\nset realname='Me'\n"
              "set smtp_url=smtp://alice@127.0.0.1:%d\nset smtp_pass=secret\n"
              "set tls_fingerprint=%s\nset record=+Sent\nset editor='%s'\n"
              "alias bobby Bob Builder <bob@example.org>\nset mime_forward=yes\n"
              "set include=ask-yes\n"
              "send-hook . 'set from=me@example.org'\n"
              "send-hook '~t friend@example.org' 'set from=me.friend@example.org'\n"
              % (md, smtp.port, smtp.fingerprint, editor))
        t = start(tmp, md, rc=rc)
        try:
            # a new message: editor, compose screen, attach, send
            sent_before = set(files_in(os.path.join(md, ".Sent"), "cur"))
            t.send("m")
            t.wait_for("Compose", 10)
            t.wait_for("friend@example.org", 5)
            # Cc by alias, completed with Tab
            t.send("c")
            t.wait_for("Cc:")
            t.send("\x15bob\t")
            t.wait_for(lambda t: "bobby" in t.lines()[-1], 5, "the completed alias")
            t.send("\r")
            t.send("a")
            t.wait_for("Attach file:")
            t.send(attach + "\r")
            t.wait_for("notes.bin", 5)
            t.send("y")
            t.wait_for("Mail sent.", 20)
            msgs = smtp.messages()
            assert len(msgs) == 1, msgs
            rec, data = msgs[0]
            assert sorted(rec["rcpt_tos"]) == ["bob@example.org", "friend@example.org"], \
                rec["rcpt_tos"]
            msg = email.message_from_bytes(data, policy=email.policy.default)
            assert msg["Subject"] == "UI test", msg["Subject"]
            assert msg["Cc"].addresses[0].display_name == "Bob Builder", msg["Cc"]
            # the send-hook for friend@ chose the From address
            assert msg["From"].addresses[0].addr_spec == "me.friend@example.org", msg["From"]
            assert "Written by the scripted editor." in msg.get_body(("plain",)).get_content()
            atts = list(msg.iter_attachments())
            assert len(atts) == 1 and atts[0].get_content() == payload, "attachment differs"
            sent = set(files_in(os.path.join(md, ".Sent"), "cur")) - sent_before
            assert len(sent) == 1, sent
            copy = open(os.path.join(md, ".Sent", "cur", sent.pop()), "rb").read()
            assert b"Subject: UI test" in copy and b"Written by the scripted editor." in copy

            # postpone a message, recall it, send it: the postponed copy goes away
            t.send("m")
            t.wait_for("Compose", 10)
            t.send("s")
            t.wait_for("Subject:", 5)
            t.send("\x15Postponed then sent\r")
            t.wait_for("Postponed then sent", 5)
            t.send("P")
            t.wait_for("Message postponed.", 10)
            drafts = files_in(os.path.join(md, ".Drafts"), "cur")
            assert len(drafts) == 1 and drafts[0].endswith(":2,D"), drafts
            t.send("R")
            t.wait_for("Compose", 10)
            t.wait_for("Postponed then sent", 5)
            t.send("y")
            t.wait_for("Mail sent.", 20)
            assert files_in(os.path.join(md, ".Drafts"), "cur") == [], "postponed copy kept"
            msgs = smtp.messages()
            assert len(msgs) == 2, len(msgs)
            rec, data = msgs[1]
            msg = email.message_from_bytes(data, policy=email.policy.default)
            assert msg["Subject"] == "Postponed then sent", msg["Subject"]
            assert rec["rcpt_tos"] == ["friend@example.org"], rec["rcpt_tos"]

            # a reply: threading headers, the quote, and R on the original's file
            def short_lines(e):
                data = open(os.path.join(md, e["path"]), "rb").read()
                return all(len(line) <= 990 for line in data.split(b"\n"))
            target = next(e for e in inbox(entries) if e["message_id"] and e["from"]
                          and "R" not in e["flags"] and e["path"].startswith("cur/")
                          and short_lines(e))
            base = os.path.basename(target["path"]).split(":")[0]
            limit_to(t, "~i " + re.escape(target["message_id"]))
            t.send("r")
            t.wait_for("Include message in reply?", 10)
            t.send("\r")   # the ask-yes default
            t.wait_for("Compose", 10)
            t.send("y")
            t.wait_for("Mail sent.", 20)
            msgs = smtp.messages()
            assert len(msgs) == 3, len(msgs)
            rec, data = msgs[2]
            assert rec["rcpt_tos"] == [target["from"][0][1]], rec["rcpt_tos"]
            msg = email.message_from_bytes(data, policy=email.policy.default)
            assert msg["In-Reply-To"] == "<%s>" % target["message_id"], msg["In-Reply-To"]
            assert msg["Subject"].lower().startswith(("re:", "re[", "aw:", "sv:")), msg["Subject"]
            assert "wrote:" in msg.get_body(("plain",)).get_content(), "the quote is missing"
            assert msg["From"].addresses[0].addr_spec == "me@example.org", msg["From"]
            replied = [f for f in files_in(md, "cur") if f.startswith(base)]
            assert replied and re.search(r":2,[A-Z]*R", replied[0]), replied
            # forward as an attachment: the original travels unchanged
            t.send("f")
            t.wait_for("message/rfc822", 10)
            t.send("y")
            t.wait_for("Mail sent.", 20)
            rec, data = smtp.messages()[3]
            msg = email.message_from_bytes(data, policy=email.policy.default)
            parts = [p for p in msg.walk() if p.get_content_type() == "message/rfc822"]
            assert len(parts) == 1, [p.get_content_type() for p in msg.walk()]
            inner = parts[0].get_payload()[0]
            assert inner["Message-ID"] == "<%s>" % target["message_id"], inner["Message-ID"]
            assert msg["Subject"].startswith("Fwd: "), msg["Subject"]

            # bounce: the original as it is, with Resent- headers, to a new address
            t.send("b")
            t.wait_for("Bounce message to:", 5)
            t.send("other@example.org\r")
            t.wait_for("Bounce message to other@example.org?", 5)
            t.send("y")
            t.wait_for("Message bounced.", 20)
            rec, data = smtp.messages()[4]
            assert rec["rcpt_tos"] == ["other@example.org"], rec["rcpt_tos"]
            # send-hooks last until another one changes them (as in mutt): the
            # forward just went to friend@, so $from is still that hook's
            assert data.startswith(b"Resent-From: Me <me.friend@example.org>\r\n"), data[:200]
            assert b"Resent-To: other@example.org\r\n" in data
            original = open(os.path.join(md, "cur", [f for f in files_in(md, "cur")
                                                     if f.startswith(base)][0]), "rb").read()
            assert data.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n") == \
                original.split(b"\n\n", 1)[1], "the bounced body differs from the original"

            # resend: the message as the template of a new one, from us
            t.send(ESC + "e")
            t.wait_for("Compose", 10)
            t.send("y")
            t.wait_for("Mail sent.", 20)
            rec, data = smtp.messages()[5]
            msg = email.message_from_bytes(data, policy=email.policy.default)
            assert msg["Subject"] == target["subject"], (msg["Subject"], target["subject"])
            assert msg["In-Reply-To"] is None, msg["In-Reply-To"]
            assert msg["From"].addresses[0].addr_spec.startswith("me"), msg["From"]

            # an alias from the sender of the current message
            t.send("a")
            t.wait_for("Alias as:", 5)
            t.send("\x15fromui\r")
            t.wait_for("Alias added.", 5)
            aliases = open(os.path.join(tmp, "home", ".config", "correo", "aliases")).read()
            assert aliases.startswith("alias fromui ") and target["from"][0][1] in aliases, aliases
            t.send("q")
            assert t.wait_exit(10) == 0
        finally:
            t.close()


def scenario_send_failure_keeps_message(tmp):
    sys.path.insert(0, os.path.join(SRCDIR, "tests/integration"))
    from smtp_fixture import SmtpFixture
    md, _ = make_tree(tmp, seed=18, count=20)
    editor = os.path.join(tmp, "editor.sh")
    with open(editor, "w") as f:
        f.write("#!/bin/sh\n"
                "sed -i 's/^To: *$/To: friend@example.org/; s/^Subject: *$/Subject: must survive/' \"$1\"\n"
                "printf 'Precious words.\\n' >> \"$1\"\n")
    os.chmod(editor, 0o700)
    with SmtpFixture(SRCDIR, tmp) as smtp:
        rc = ("set folder=%s\nset from=me@example.org\n"
              "set smtp_url=smtp://alice@127.0.0.1:%d\nset smtp_pass=wrong\n"
              "set tls_fingerprint=%s\nset editor='%s'\n"
              % (md, smtp.port, smtp.fingerprint, editor))
        t = start(tmp, md, rc=rc)
        try:
            t.send("m")
            t.wait_for("Compose", 10)
            t.send("y")
            t.wait_for("Not sent:", 20)
            assert "535" in t.text(), t.text()          # the server's own reply
            assert "Compose" in t.text()                 # still on the compose screen
            assert smtp.messages() == []
            t.send("P")
            t.wait_for("Message postponed.", 10)
            drafts = files_in(os.path.join(md, ".Drafts"), "cur")
            assert len(drafts) == 1, drafts
            kept = open(os.path.join(md, ".Drafts", "cur", drafts[0]), "rb").read()
            assert b"Precious words." in kept and b"Subject: must survive" in kept
            t.send("q")
            assert t.wait_exit(10) == 0
        finally:
            t.close()


def scenario_attachments_query_recall(tmp):
    """Address completion from $query_command, an attachment renamed,
    described and retyped, postponed, recalled with it, and sent."""
    sys.path.insert(0, os.path.join(SRCDIR, "tests/integration"))
    from smtp_fixture import SmtpFixture
    import email
    import email.policy
    md, _ = make_tree(tmp, seed=19, count=10)
    editor = os.path.join(tmp, "editor.sh")
    with open(editor, "w") as f:
        f.write("#!/bin/sh\n"
                "sed -i 's/^Subject: *$/Subject: with numbers/' \"$1\"\n"
                "printf 'See the attachment.\\n' >> \"$1\"\n")
    os.chmod(editor, 0o700)
    query = os.path.join(tmp, "query.sh")
    with open(query, "w") as f:
        f.write("#!/bin/sh\n"
                "echo \"Searching for $1\"\n"
                "case \"$1\" in\n"
                "zed) printf 'zed@example.org\\tZed Query\\tfriends\\n' ;;\n"
                "ali) printf 'alice1@example.org\\tAlice One\\n"
                "alice2@example.org\\tAlice Two\\twork\\n' ;;\n"
                "*) exit 1 ;;\n"
                "esac\n")
    os.chmod(query, 0o700)
    attach = os.path.join(tmp, "q3.dat")
    payload = b"region,total\nnorth,12\nsouth,\xff\xfe binary tail\n" * 40
    with open(attach, "wb") as f:
        f.write(payload)
    with SmtpFixture(SRCDIR, tmp) as smtp:
        rc = ("set folder=%s\nset from=me@example.org\n"
              "set smtp_url=smtp://alice@127.0.0.1:%d\nset smtp_pass=secret\n"
              "set tls_fingerprint=%s\nset record=''\nset editor='%s'\n"
              "set query_command='%s %%s'\n"
              % (md, smtp.port, smtp.fingerprint, editor, query))
        t = start(tmp, md, rc=rc)
        try:
            t.send("m")
            t.wait_for("Compose", 10)
            # one answer from the query command is taken as it is
            t.send("t")
            t.wait_for("To:")
            t.send("\x15zed\t")
            t.wait_for(lambda t: "Zed Query <zed@example.org>" in t.lines()[-1], 10,
                       "the queried address")
            t.send("\r")
            # several answers: a list to choose from
            t.send("c")
            t.wait_for("Cc:")
            t.send("\x15ali\t")
            t.wait_for("Query 'ali'", 10)
            t.wait_for("alice2@example.org", 5)
            t.send("j\r")
            t.wait_for(lambda t: "Alice Two <alice2@example.org>" in t.lines()[-1], 10,
                       "the chosen address")
            t.send("\r")
            t.wait_for("Compose", 5)
            # attach, then rename, describe and retype the attachment
            t.send("a")
            t.wait_for("Attach file:")
            t.send(attach + "\r")
            t.wait_for("q3.dat", 5)
            t.send("\x0f")
            t.wait_for("Send attachment with name:", 5)
            t.send("\x15numbers.csv\r")
            t.wait_for("sent as numbers.csv", 5)
            t.send("d")
            t.wait_for("Description:", 5)
            t.send("Quarterly numbers\r")
            t.wait_for("Quarterly numbers", 5)
            t.send("\x14")
            t.wait_for("Content-Type:", 5)
            t.send("\x15text/csv\r")
            t.wait_for("[text/csv]", 5)
            # postpone, recall: the attachment comes back with its name
            t.send("P")
            t.wait_for("Message postponed.", 10)
            drafts = files_in(os.path.join(md, ".Drafts"), "cur")
            assert len(drafts) == 1, drafts
            t.send("R")
            t.wait_for("Compose", 10)
            t.wait_for("numbers.csv", 5)
            assert "Quarterly numbers" in t.text(), t.text()
            t.send("y")
            t.wait_for("Mail sent.", 20)
            assert files_in(os.path.join(md, ".Drafts"), "cur") == [], "postponed copy kept"
            msgs = smtp.messages()
            assert len(msgs) == 1, msgs
            rec, data = msgs[0]
            assert sorted(rec["rcpt_tos"]) == ["alice2@example.org", "zed@example.org"], \
                rec["rcpt_tos"]
            msg = email.message_from_bytes(data, policy=email.policy.default)
            assert msg["To"].addresses[0].display_name == "Zed Query", msg["To"]
            assert msg["Cc"].addresses[0].display_name == "Alice Two", msg["Cc"]
            assert "See the attachment." in msg.get_body(("plain",)).get_content()
            atts = list(msg.iter_attachments())
            assert len(atts) == 1, [p.get_content_type() for p in msg.walk()]
            att = atts[0]
            assert att.get_filename() == "numbers.csv", att.get_filename()
            assert att["Content-Description"] == "Quarterly numbers", att["Content-Description"]
            assert att.get_content_type() == "text/csv", att.get_content_type()
            assert att.get_payload(decode=True) == payload, "attachment bytes differ"
            t.send("q")
            assert t.wait_exit(10) == 0
        finally:
            t.close()


def scenario_imap_browser_postpone_recall(tmp):
    """$folder on a private Dovecot (imaps://): the browser lists the
    server's folders with their counts and a decoded name, creates a folder
    on the server and opens another; a message is postponed to the IMAP
    Drafts (\Draft), recalled from there and sent, and then the old draft is
    gone from the server and Sent holds the copy (\Seen)."""
    sys.path.insert(0, os.path.join(SRCDIR, "tests/integration"))
    from dovecot_fixture import Dovecot, available
    import imaplib
    import ssl
    if not available():
        print("skip (no dovecot): %s" % "scenario_imap_browser_postpone_recall")
        return
    os.chmod(tmp, 0o755)       # Dovecot's unprivileged processes read below it
    ns = ("namespace inbox {\n  inbox = yes\n  separator = /\n"
          "  mailbox Sent {\n    special_use = \\Sent\n    auto = subscribe\n  }\n"
          "  mailbox Drafts {\n    special_use = \\Drafts\n    auto = subscribe\n  }\n}\n")

    def imap(d):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        m = imaplib.IMAP4_SSL("127.0.0.1", d.port("imaps"), ssl_context=ctx)
        m.login("alice", "secret")
        return m

    def folder(d, name):
        m = imap(d)
        out = []
        if m.select(name, readonly=True)[0] == "OK":
            typ, data = m.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            out = [(item[0].decode(), item[1]) for item in data if isinstance(item, tuple)]
        m.logout()
        return out

    editor = os.path.join(tmp, "editor.sh")
    with open(editor, "w") as f:
        f.write("#!/bin/sh\n"
                "sed -i 's/^To: *$/To: friend@example.org/; s/^Subject: *$/Subject: Over IMAP/' \"$1\"\n"
                "printf 'Written once, sent later.\\n' >> \"$1\"\n")
    os.chmod(editor, 0o755)
    with Dovecot(tmp, extra_conf=ns) as d:
        m = imap(d)
        m.create('"Lists/dev"')
        m.create('"Entw&APw-rfe"')
        for i in range(3):
            m.append('"Lists/dev"', "(\\Seen)" if i == 0 else None, None,
                     ("From: a%d@example.org\r\nSubject: dev %d\r\n\r\nx\r\n" % (i, i)).encode())
        m.append("INBOX", None, None, b"From: b@example.org\r\nSubject: hello\r\n\r\nhi\r\n")
        m.logout()
        from smtp_fixture import SmtpFixture

        class Shared(SmtpFixture):
            def __enter__(self):
                # Dovecot's certificate: one pin for both servers
                self.cert, self.key, self.fingerprint = d.cert, d.key, d.fingerprint
                os.makedirs(self.outdir, exist_ok=True)
                self.proc = subprocess.Popen(
                    [PYTHON, os.path.join(SRCDIR, "tests/integration/smtp_server.py"),
                     "--mode", "starttls", "--cert", self.cert, "--key", self.key,
                     "--outdir", self.outdir, "--stdin-eof-exits"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    text=True)
                self.port = int(self.proc.stdout.readline().split()[1])
                return self

        with Shared(SRCDIR, tmp) as smtp:
            base = "imaps://alice@127.0.0.1:%d/" % d.port("imaps")
            rc = ("set folder=%s\nset spoolfile=%sINBOX\nset imap_pass=secret\n"
                  "set tls_fingerprint=%s\nset from=me@example.org\n"
                  "set smtp_url=smtp://alice@127.0.0.1:%d\nset smtp_pass=secret\n"
                  "set record==Sent\nset postponed==Drafts\nset editor='%s'\nset mail_check=0\n"
                  % (base, base, d.fingerprint, smtp.port, editor))
            home = os.path.join(tmp, "home")
            os.makedirs(home, exist_ok=True)
            path = os.path.join(tmp, "correorc")
            with open(path, "w") as f:
                f.write(rc)
            env = {"HOME": home, "XDG_CONFIG_HOME": os.path.join(home, ".config"),
                   "XDG_CACHE_HOME": os.path.join(home, ".cache"),
                   "CORREO_DATADIR_OVERRIDE": SRCDIR, "TZ": "UTC"}
            t = Term([CORREO, "-F", path], cols=100, rows=30, env=env)
            try:
                t.wait_for(lambda t: "Msgs:" in t.text(), 30, "the IMAP INBOX")
                t.send("y")
                t.wait_for("Mailboxes in imaps://", 20)
                t.wait_for("Lists/dev", 10)
                line = [l for l in t.lines() if "Lists/dev" in l][0]
                assert re.search(r"\b2 new\s+3 total", line), line
                assert any("Entwürfe" in l for l in t.lines()), t.text()
                assert any("Sent (sent)" in l for l in t.lines()), t.text()
                # create a folder on the server
                t.send("C")
                t.wait_for("Create mailbox:")
                t.send("Projekte\r")
                t.wait_for(lambda t: any(re.search(r"Projekte +0 new", l) for l in t.lines()),
                           10, "the new folder in the list")
                m = imap(d)
                names = b" ".join(x for x in m.list()[1] if x)
                m.logout()
                assert b"Projekte" in names, names
                # open Lists/dev
                rows = t.lines()
                k = [i for i, l in enumerate(rows) if "Lists/dev" in l][0]
                # from the row with the cursor bar down (or up) to it
                def bar_row(t):
                    for y in range(1, t.rows - 2):
                        ch = t.screen.buffer[y][2]
                        if ch.bg not in ("default",) or ch.reverse:
                            return y
                    return None
                t.wait_for(lambda t: bar_row(t) is not None, 5, "the cursor bar")
                y = bar_row(t)
                t.send(("j" * (k - y) if k >= y else "k" * (y - k)) + "\r")
                t.wait_for(lambda t: "dev 2" in t.text() and "Msgs:" in t.text(), 20,
                           "Lists/dev open")
                # write and postpone: the draft is on the server, \Draft
                t.send("m")
                t.wait_for("Compose", 20)
                t.send("P")
                t.wait_for("Message postponed.", 20)
                drafts = folder(d, "Drafts")
                assert len(drafts) == 1 and "\\Draft" in drafts[0][0], drafts
                assert b"Written once, sent later." in drafts[0][1], drafts
                # recall from the server and send
                t.send("R")
                t.wait_for("Compose", 20)
                assert "Over IMAP" in t.text(), t.text()
                t.send("y")
                t.wait_for("Mail sent.", 30)
                assert folder(d, "Drafts") == [], "the recalled draft is still on the server"
                sent = folder(d, "Sent")
                assert len(sent) == 1 and "\\Seen" in sent[0][0], sent
                assert b"Subject: Over IMAP" in sent[0][1], sent
                assert len(smtp.messages()) == 1, smtp.messages()
                t.send("q")
                assert t.wait_exit(20) == 0
            finally:
                t.close()


def scenario_imap_mailboxes_poll(tmp):
    """`mailboxes` on an IMAP server: a message delivered to a watched
    folder while correo shows another one is announced by the STATUS poll
    on the new-mail timer."""
    sys.path.insert(0, os.path.join(SRCDIR, "tests/integration"))
    from dovecot_fixture import Dovecot, available
    import imaplib
    import ssl
    if not available():
        print("skip (no dovecot): scenario_imap_mailboxes_poll")
        return
    os.chmod(tmp, 0o755)

    def imap(d):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        m = imaplib.IMAP4_SSL("127.0.0.1", d.port("imaps"), ssl_context=ctx)
        m.login("alice", "secret")
        return m

    with Dovecot(tmp) as d:
        m = imap(d)
        m.create("Watched")
        m.append("Watched", None, None, b"From: a@example.org\r\nSubject: old\r\n\r\nx\r\n")
        m.append("INBOX", None, None, b"From: b@example.org\r\nSubject: hello\r\n\r\nhi\r\n")
        m.select("Watched")          # no longer \Recent: nothing to announce at start
        m.logout()
        base = "imaps://alice@127.0.0.1:%d/" % d.port("imaps")
        rc = ("set folder=%s\nset spoolfile==INBOX\nset imap_pass=secret\n"
              "set tls_fingerprint=%s\nset mail_check=1\nmailboxes =Watched\n"
              % (base, d.fingerprint))
        home = os.path.join(tmp, "home")
        os.makedirs(home, exist_ok=True)
        path = os.path.join(tmp, "correorc")
        with open(path, "w") as f:
            f.write(rc)
        env = {"HOME": home, "XDG_CONFIG_HOME": os.path.join(home, ".config"),
               "XDG_CACHE_HOME": os.path.join(home, ".cache"),
               "CORREO_DATADIR_OVERRIDE": SRCDIR, "TZ": "UTC"}
        t = Term([CORREO, "-F", path], cols=100, rows=30, env=env)
        try:
            t.wait_for(lambda t: "Msgs:" in t.text() and "hello" in t.text(), 30, "the INBOX")
            # the first poll has run once the connection for it is logged in
            # (logins: the setup above, the INBOX, the poll)
            t.wait_for(lambda t: d.log().count("Login: user=<alice>") >= 3,
                       20, "the poll's login")
            assert "New mail in" not in t.text(), t.text()
            m = imap(d)
            m.append("Watched", None, None, b"From: c@example.org\r\nSubject: new\r\n\r\ny\r\n")
            m.logout()
            t.wait_for(lambda t: re.search(r"New mail in .*Watched", t.text()), 20,
                       "the new-mail message for Watched")
            assert "hello" in t.text(), t.text()
            t.send("q")
            assert t.wait_exit(20) == 0
        finally:
            t.close()


SCENARIOS = [scenario_open_move_read, scenario_flag_delete_sync, scenario_limit_tag_move,
             scenario_theme_keymap_resize, scenario_hostile, scenario_help_and_errors,
             scenario_pager_attachments, scenario_new_mail_while_open,
             scenario_compose_reply_send, scenario_send_failure_keeps_message,
             scenario_attachments_query_recall, scenario_imap_browser_postpone_recall,
             scenario_imap_mailboxes_poll]

if os.environ.get("UI_ONLY"):      # run one scenario by name, by hand
    SCENARIOS = [sc for sc in SCENARIOS if sc.__name__.endswith(os.environ["UI_ONLY"])]
failed = 0
for sc in SCENARIOS:
    tmp = tempfile.mkdtemp(prefix="correo-ui-")
    try:
        sc(tmp)
        print("ok   %s" % sc.__name__)
    except Exception:
        failed += 1
        print("FAIL %s" % sc.__name__)
        traceback.print_exc()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
print("%d of %d scenarios failed" % (failed, len(SCENARIOS)))
sys.exit(1 if failed else 0)
