#!/usr/bin/python3
"""mua/imap_folders and correo's IMAP copies against a private Dovecot.

Usage: imap_folders.py IMAPFOLDERS_TOOL CORREO SRCDIR

A private Dovecot (dovecot_fixture.py) with special-use Sent, Drafts and
Trash, and folders with odd names made through imaplib (a space, a quote,
non-ASCII in modified UTF-7, a hierarchy).  Checked against imaplib:
  - the tool's folder list has exactly the names of imaplib's LIST, the
    counts of each selectable folder equal imaplib's STATUS, the special
    uses and the subscription (LSUB) agree, names are decoded for display;
  - create, rename, delete, subscribe and unsubscribe by the tool are what
    imaplib's LIST and LSUB then show;
  - correo -s ... -- ADDRESS against smtp_fixture with record set to the
    imaps:// URL of Sent: Dovecot's Sent holds the copy, \\Seen, Bcc kept;
    record "=Sent" with an imaps:// $folder files there too; a send that
    fails (wrong SMTP password) is postponed to the imaps:// Drafts with
    \\Draft; with record unset nothing is filed although Sent exists;
  - recall by UID: the summaries list the postponed message, fetch gives it
    whole, remove deletes exactly it, and a stale UIDVALIDITY removes
    nothing.
"""
import email
import email.policy
import imaplib
import os
import re
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dovecot_fixture import Dovecot, available  # noqa: E402
from smtp_fixture import SmtpFixture  # noqa: E402

TOOL, CORREO, SRCDIR = sys.argv[1], sys.argv[2], sys.argv[3]
failures = []

NAMESPACE = r"""
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \Drafts
    auto = subscribe
  }
  mailbox Trash {
    special_use = \Trash
    auto = create
  }
}
"""


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


class SharedCertSmtp(SmtpFixture):
    """The SMTP fixture with Dovecot's certificate, so that one pin
    (tls_fingerprint) serves both servers."""

    def __init__(self, srcdir, tmp, cert, key, fingerprint, extra=()):
        super().__init__(srcdir, tmp, extra)
        self.cert, self.key, self.fingerprint = cert, key, fingerprint

    def __enter__(self):
        os.makedirs(self.outdir, exist_ok=True)
        python = os.environ.get("PYTHON", "/usr/bin/python3")
        self.proc = subprocess.Popen(
            [python, os.path.join(self.srcdir, "tests/integration/smtp_server.py"),
             "--mode", "starttls", "--cert", self.cert, "--key", self.key,
             "--outdir", self.outdir, "--stdin-eof-exits"] + self.extra,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError("smtp_server.py did not start: %r" % line)
        self.port = int(line.split()[1])
        return self


def imap(d):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", d.port("imaps"), ssl_context=ctx)
    m.login("alice", "secret")
    return m


def q(name):
    """A folder name (modified UTF-7 already) quoted for imaplib."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


LIST_RE = re.compile(rb'^\(([^)]*)\) (?:"(.)"|NIL) (.*)$')


def unquote(raw):
    raw = raw.decode()
    if raw.startswith('"'):
        return re.sub(r'\\(.)', r'\1', raw[1:-1])
    return raw


def server_list(d, cmd="list"):
    """wire name -> attributes, as imaplib's LIST (or LSUB) tells."""
    m = imap(d)
    typ, data = getattr(m, cmd)()
    out = {}
    for item in data:
        if isinstance(item, tuple):   # a literal name
            head, lit = item
            mm = LIST_RE.match(head.rstrip() + b" X")
            out[lit.decode()] = mm.group(1).decode().split() if mm else []
            continue
        if not item:
            continue
        mm = LIST_RE.match(item)
        if mm:
            out[unquote(mm.group(3))] = mm.group(1).decode().split()
    m.logout()
    return out


def server_status(d, name):
    m = imap(d)
    typ, data = m.status(q(name), "(MESSAGES UNSEEN RECENT)")
    m.logout()
    if typ != "OK":
        return None
    txt = data[0].decode()
    vals = dict(re.findall(r"(MESSAGES|UNSEEN|RECENT) (\d+)", txt))
    return int(vals["MESSAGES"]), int(vals["UNSEEN"]), int(vals["RECENT"])


def tool(env, url, *args, stdin=None):
    p = subprocess.run([TOOL, url] + list(args), env=env, input=stdin, capture_output=True,
                       timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def tool_list(env, url, *extra):
    rc, out, err = tool(env, url, "list", *extra)
    check(rc == 0, "list: exit %d %s" % (rc, err))
    rows = {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) == 8:
            rows[f[0]] = {"display": f[1], "delim": f[2], "attrs": f[3], "special": f[4],
                          "counts": None if f[5] == "-" else (int(f[5]), int(f[6]), int(f[7]))}
    return rows


def message(i, subject=None):
    return ("From: Sender %d <s%d@example.org>\r\nTo: alice@example.org\r\n"
            "Subject: %s\r\nMessage-ID: <f%d@example.org>\r\n\r\nBody %d.\r\n"
            % (i, i, subject or "Message %d" % i, i, i)).encode()


def folder_msgs(d, name):
    """(flags, message bytes) of each message of a folder, by imaplib."""
    m = imap(d)
    typ, _ = m.select(q(name), readonly=True)
    out = []
    if typ == "OK":
        typ, data = m.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        for item in data:
            if isinstance(item, tuple):
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split()
                out.append((flags, item[1]))
    m.logout()
    return out


def correo_batch(tmp, rc_text, args, body):
    rc = os.path.join(tmp, "correorc")
    with open(rc, "w") as f:
        f.write(rc_text)
    env = dict(os.environ, HOME=os.path.join(tmp, "home"), TZ="UTC",
               XDG_STATE_HOME=os.path.join(tmp, "state"))
    os.makedirs(env["HOME"], exist_ok=True)
    return subprocess.run([CORREO, "-F", rc] + args, input=body, capture_output=True,
                          env=env, timeout=120)


def main():
    if not available():
        print("dovecot not installed: skipped")
        return 77
    with tempfile.TemporaryDirectory(prefix="correo-imapfolders-") as tmp:
        os.chmod(tmp, 0o755)   # Dovecot's unprivileged processes read below it
        return run_all(tmp)


def run_all(tmp):
    with Dovecot(tmp, extra_conf=NAMESPACE) as d:
        try:
            run_checks(tmp, d)
        except Exception:
            print(d.log()[-4000:])
            raise
    if failures:
        print("%d failure(s)" % len(failures))
        return 1
    print("ok")
    return 0


def run_checks(tmp, d):
    if True:
        base = "imaps://alice@127.0.0.1:%d/" % d.port("imaps")
        env = dict(os.environ, IMAP_PASS="secret", IMAP_FINGERPRINT=d.fingerprint)

        # ---- folders with odd names, some mail, through imaplib -----------
        m = imap(d)
        odd = ["Lists/dev", "Lists/users", "Entw&APw-rfe", "Sent Items", 'Say "hi"',
               "&ZeVnLIqe-"]
        for name in odd:
            typ, data = m.create(q(name))
            check(typ == "OK", "imaplib CREATE %s: %r" % (name, data))
        m.subscribe(q("Lists/dev"))
        for i in range(3):
            m.append("INBOX", None, None, message(i))
        m.append(q("Lists/dev"), "(\\Seen)", None, message(10))
        m.append(q("Lists/dev"), None, None, message(11))
        m.append(q("Entw&APw-rfe"), "(\\Draft)", None, message(20))
        m.select("INBOX")
        m.store("1", "+FLAGS", "(\\Seen)")
        m.logout()

        # ---- the list equals LIST; counts equal STATUS ---------------------
        rows = tool_list(env, base)
        srv = server_list(d)
        check(set(rows) == set(srv), "names %r vs LIST %r" % (sorted(rows), sorted(srv)))
        subs = server_list(d, "lsub")
        for name, attrs in srv.items():
            r = rows.get(name)
            if r is None:
                continue
            noselect = any(a.lower() in ("\\noselect", "\\nonexistent") for a in attrs)
            check(("N" in r["attrs"]) == noselect, "%s: noselect %r vs %r" % (name, r, attrs))
            check(("S" in r["attrs"]) == (name in subs),
                  "%s: subscribed %r vs LSUB %r" % (name, r["attrs"], sorted(subs)))
            check(r["delim"] == "/", "%s: delimiter %r" % (name, r["delim"]))
            if not noselect:
                st = server_status(d, name)
                # \Recent belongs to the first session that sees a message:
                # compare MESSAGES and UNSEEN exactly
                check(r["counts"] is not None and st is not None and
                      r["counts"][:2] == st[:2],
                      "%s: counts %r vs STATUS %r" % (name, r["counts"], st))
        check(rows.get("Sent", {}).get("special") == "sent", "Sent: %r" % rows.get("Sent"))
        check(rows.get("Drafts", {}).get("special") == "drafts", "Drafts: %r" % rows.get("Drafts"))
        check(rows.get("Trash", {}).get("special") == "trash", "Trash: %r" % rows.get("Trash"))
        check(rows.get("Entw&APw-rfe", {}).get("display") == "Entwürfe",
              "display of Entw&APw-rfe: %r" % rows.get("Entw&APw-rfe"))
        check(rows.get("&ZeVnLIqe-", {}).get("display") == "日本語",
              "display of &ZeVnLIqe-: %r" % rows.get("&ZeVnLIqe-"))
        check(rows.get("INBOX", {}).get("counts", (0, 0))[:2] == (3, 2),
              "INBOX counts %r" % rows.get("INBOX"))
        check(rows.get("Lists/dev", {}).get("counts", (0, 0))[:2] == (2, 1),
              "Lists/dev counts %r" % rows.get("Lists/dev"))
        check('Say "hi"' in rows, "the quoted name is missing: %r" % sorted(rows))

        sub_rows = tool_list(env, base, "subscribed")
        check(set(sub_rows) == set(subs), "subscribed %r vs LSUB %r" % (sorted(sub_rows), sorted(subs)))

        # ---- create, rename, delete, subscribe ------------------------------
        rc, out, err = tool(env, base, "create", "Projekte/Bücher")
        check(rc == 0, "create: %s" % err)
        check("Projekte/B&APw-cher" in server_list(d), "CREATE not on the server: %r"
              % sorted(server_list(d)))
        rc, out, err = tool(env, base, "subscribe", "Projekte/Bücher")
        check(rc == 0 and "Projekte/B&APw-cher" in server_list(d, "lsub"), "SUBSCRIBE: %s" % err)
        rc, out, err = tool(env, base, "rename", "Projekte/Bücher", "Archiv 2026")
        srv = server_list(d)
        check(rc == 0 and "Archiv 2026" in srv and "Projekte/B&APw-cher" not in srv,
              "RENAME: %s %r" % (err, sorted(srv)))
        rc, out, err = tool(env, base, "unsubscribe", "Lists/dev")
        check(rc == 0 and "Lists/dev" not in server_list(d, "lsub"), "UNSUBSCRIBE: %s" % err)
        rc, out, err = tool(env, base, "delete", "Sent Items")
        check(rc == 0 and "Sent Items" not in server_list(d), "DELETE: %s" % err)
        rc, out, err = tool(env, base, "delete", "No Such Folder")
        check(rc != 0 and "DELETE failed" in err, "DELETE of a missing folder: %d %s" % (rc, err))
        rc, out, err = tool(env, base, "delete", "INBOX")
        check(rc != 0 and "INBOX" in server_list(d), "INBOX deleted? %d %s" % (rc, err))
        rows = tool_list(env, base)
        check(set(rows) == set(server_list(d)), "after the operations: %r vs %r"
              % (sorted(rows), sorted(server_list(d))))

        # ---- batch send: record and postponed on IMAP -------------------------
        with SharedCertSmtp(SRCDIR, tmp, d.cert, d.key, d.fingerprint) as smtp:
            common = ("set from=sender@example.org\nset smtp_url=smtp://alice@127.0.0.1:%d\n"
                      "set tls_fingerprint=%s\nset imap_pass=secret\nset hostname=test.example\n"
                      % (smtp.port, d.fingerprint))
            rc_url = common + ("set smtp_pass=secret\nset record=%sSent\nset postponed=%sDrafts\n"
                               % (base, base))
            r = correo_batch(tmp, rc_url, ["-s", "Copy to IMAP Sent", "-b", "hidden@example.org",
                                           "--", "to@example.org"], "Body text.\n".encode())
            check(r.returncode == 0, "send: exit %d %r" % (r.returncode, r.stderr))
            check(len(smtp.messages()) == 1, "the SMTP server got %d" % len(smtp.messages()))
            sent = folder_msgs(d, "Sent")
            check(len(sent) == 1, "Sent holds %d messages" % len(sent))
            if sent:
                flags, data = sent[0]
                msg = email.message_from_bytes(data, policy=email.policy.default)
                check("\\Seen" in flags, "Sent copy flags %r" % flags)
                check(msg["Subject"] == "Copy to IMAP Sent", "Sent copy subject %r" % msg["Subject"])
                check(b"Bcc: hidden@example.org" in data, "the Sent copy lost its Bcc")
                check(b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b""),
                      "the Sent copy has bare LF line ends")
                if smtp.messages():
                    sent_id = email.message_from_bytes(smtp.messages()[0][1])["Message-ID"]
                    check(msg["Message-ID"] == sent_id, "copy %r vs sent %r"
                          % (msg["Message-ID"], sent_id))

            # "=Sent" inside an imaps:// $folder
            rc_rel = common + "set smtp_pass=secret\nset folder=%s\nset record==Sent\n" % base
            r = correo_batch(tmp, rc_rel, ["-s", "Second copy", "--", "to@example.org"],
                             b"Again.\n")
            check(r.returncode == 0, "send 2: exit %d %r" % (r.returncode, r.stderr))
            check(len(folder_msgs(d, "Sent")) == 2, "=Sent with an IMAP folder: %d"
                  % len(folder_msgs(d, "Sent")))

            # record unset: nothing filed although the server has \Sent
            rc_none = common + "set smtp_pass=secret\nset folder=%s\nset record=''\n" % base
            r = correo_batch(tmp, rc_none, ["-s", "No copy", "--", "to@example.org"], b"x\n")
            check(r.returncode == 0, "send 3: exit %d %r" % (r.returncode, r.stderr))
            check(len(folder_msgs(d, "Sent")) == 2, "a copy was filed without $record")

            # a failed send is postponed to the IMAP Drafts, \Draft
            drafts_before = len(folder_msgs(d, "Drafts"))
            rc_bad = common + ("set smtp_pass=wrong\nset record=%sSent\nset postponed=%sDrafts\n"
                               % (base, base))
            r = correo_batch(tmp, rc_bad, ["-s", "Kept as a draft", "--", "to@example.org"],
                             "Nicht verloren.\n".encode())
            check(r.returncode == 1, "failed send: exit %d %r" % (r.returncode, r.stderr))
            check(b"kept in imaps://" in r.stderr, "no word of where it was kept: %r" % r.stderr)
            drafts = folder_msgs(d, "Drafts")
            check(len(drafts) == drafts_before + 1, "Drafts holds %d" % len(drafts))
            if drafts:
                flags, data = drafts[-1]
                check("\\Draft" in flags, "draft flags %r" % flags)
                check(b"Kept as a draft" in data, "draft content %r" % data[:200])
            check(len(folder_msgs(d, "Sent")) == 2, "a failed send was filed in Sent")

        # ---- recall by UID ---------------------------------------------------------
        rc, out, err = tool(env, base, "summaries", "Drafts")
        check(rc == 0, "summaries: %s" % err)
        lines = out.splitlines()
        uv = int(lines[0].split()[1]) if lines and lines[0].startswith("uidvalidity") else 0
        rows = [ln.split("\t") for ln in lines[1:]]
        pick = [r for r in rows if len(r) == 3 and r[2] == "Kept as a draft"]
        check(len(pick) == 1 and "D" in pick[0][1], "summaries %r" % rows)
        if pick:
            uid = pick[0][0]
            rc, out, err = tool(env, base, "fetch", "Drafts", str(uv), uid)
            check(rc == 0 and "Nicht verloren." in out, "fetch: %s %r" % (err, out[:200]))
            rc, out, err = tool(env, base, "remove", "Drafts", str(uv + 1), uid)
            check(rc != 0 and len(folder_msgs(d, "Drafts")) == len(rows),
                  "remove with a stale UIDVALIDITY: %d %s" % (rc, err))
            rc, out, err = tool(env, base, "remove", "Drafts", str(uv), uid)
            left = folder_msgs(d, "Drafts")
            check(rc == 0 and len(left) == len(rows) - 1 and
                  not any(b"Kept as a draft" in data for _, data in left),
                  "remove: %s, %d left" % (err, len(left)))

        # ---- APPEND creates a missing folder -----------------------------------
        rc, out, err = tool(env, base, "append", "Fresh/Copies", "S", stdin=message(30))
        check(rc == 0 and "Fresh/Copies" in server_list(d), "append to a new folder: %s" % err)
        got = folder_msgs(d, "Fresh/Copies")
        check(len(got) == 1 and "\\Seen" in got[0][0] and got[0][1] == message(30),
              "append content/flags %r" % got)



if __name__ == "__main__":
    sys.exit(main())
