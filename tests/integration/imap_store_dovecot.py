"""localserver/imap_store against a private Dovecot on the SAME Maildir.

argv: [script, imapstore-tool, source_root]

1. Folders created by us (ASCII and non-ASCII names, with intermediate
   levels) are listed by Dovecot under the same names, with the same
   children flags and SPECIAL-USE flags; ours list what Dovecot created.
2. Subscriptions made by us are in Dovecot's LSUB and the other way round.
3. UIDs: messages appended by us have the UID Dovecot reports for them
   (UID FETCH of their X-Id), also after Dovecot assigned UIDs of its own;
   COPY and MOVE by us give the destination UIDs Dovecot reports, and the
   UIDVALIDITY is Dovecot's.
4. Keywords and flags: set by Dovecot, read by us; set by us, seen in
   Dovecot's FETCH FLAGS; removed by us, gone in Dovecot's.
5. RENAME and DELETE by us are what Dovecot's LIST shows next.
"""
import base64
import imaplib
import os
import re
import subprocess
import sys
import shutil
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dovecot_fixture  # noqa: E402
from dovecot_fixture import Dovecot  # noqa: E402

TOOL = sys.argv[1] if len(sys.argv) > 1 else "build/tests/tools/imapstore-tool"
passed = 0
failed = 0

SPECIAL = """
namespace inbox {
  inbox = yes
  separator = .
  mailbox Sent {
    special_use = \\Sent
  }
  mailbox Drafts {
    special_use = \\Drafts
  }
  mailbox Trash {
    special_use = \\Trash
  }
  mailbox Junk {
    special_use = \\Junk
  }
  mailbox Archive {
    special_use = \\Archive
  }
}
"""


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, flush=True)
    return cond


class Ctx:
    def __init__(self, d):
        self.d = d
        self.md = d.maildir("alice")

    def chown(self):
        for dirpath, dirnames, filenames in os.walk(self.md):
            os.chown(dirpath, self.d.mail_uid, self.d.mail_gid)
            for n in filenames:
                os.chown(os.path.join(dirpath, n), self.d.mail_uid, self.d.mail_gid)

    def tool(self, *args, ok=True):
        r = subprocess.run([TOOL, self.md] + [str(a) for a in args], capture_output=True,
                           timeout=120)
        self.chown()
        if ok and r.returncode != 0:
            raise RuntimeError("imapstore-tool %s: exit %d: %s" %
                               (" ".join(map(str, args)), r.returncode,
                                r.stderr.decode("utf-8", "replace")))
        return r.stdout.decode("utf-8")


def mutf7_decode(s):
    out = []
    i = 0
    while i < len(s):
        if s[i] == "&":
            j = s.index("-", i)
            if j == i + 1:
                out.append("&")
            else:
                b64 = s[i + 1:j].replace(",", "/")
                b64 += "=" * (-len(b64) % 4)
                out.append(base64.b64decode(b64).decode("utf-16-be"))
            i = j + 1
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mutf7_encode(s):
    out = []
    buf = ""

    def flush():
        if buf:
            b = base64.b64encode(buf.encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + b.replace("/", ",") + "-")
    for ch in s:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            buf = ""
            out.append("&-" if ch == "&" else ch)
        else:
            buf += ch
    flush()
    return "".join(out)


LIST_RE = re.compile(rb'^\((?P<flags>[^)]*)\) (?:NIL|"[^"]*") (?P<name>.*)$')


def dovecot_list(c, cmd="LIST", extra=None):
    """name (UTF-8) -> set of flags, from Dovecot."""
    if extra:
        typ, data = c._simple_command(cmd, '""', '"*"', extra)
        typ, data = c._untagged_response(typ, data, cmd)
    elif cmd == "LSUB":
        typ, data = c.lsub('""', '*')
    else:
        typ, data = c.list('""', '*')
    assert typ == "OK", data
    out = {}
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            m = LIST_RE.match(item[0].rsplit(b" {", 1)[0] + b" x")
            name = item[1]
        else:
            m = LIST_RE.match(item)
            name = m.group("name")
        name = name.decode()
        if name.startswith('"'):
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[mutf7_decode(name)] = set(m.group("flags").decode().split())
    return out


def our_list(ctx):
    out = {}
    for line in ctx.tool("list", "", "*").splitlines():
        flags, name = line.split("\t", 1)
        out[name] = set(flags.strip("()").split())
    return out


def login(d):
    c = imaplib.IMAP4("127.0.0.1", d.port("imap"))
    c.login("alice", "secret")
    return c


def select(c, box):
    typ, data = c.select(mutf7_encode(box) if box != "INBOX" else box)
    assert typ == "OK", (box, data)
    return int(c.response("UIDVALIDITY")[1][0])


def uid_xids(c):
    typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (X-ID)])")
    assert typ == "OK", data
    out = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        m = re.search(rb"UID (\d+)", item[0])
        x = re.search(rb"X-Id: (\S+)", item[1])
        if m and x:
            out[int(m.group(1))] = x.group(1).decode()
    return out


def uid_flags(c):
    typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK", data
    out = {}
    for item in data:
        if not item:
            continue
        m = re.search(rb"UID (\d+)", item)
        f = re.search(rb"FLAGS \(([^)]*)\)", item)
        if m and f:
            out[int(m.group(1))] = set(f.group(1).decode().split()) - {"\\Recent"}
    return out


def our_flags(ctx, box):
    out = {}
    for line in ctx.tool("flags", box).splitlines():
        uid, flags = line.split(" ", 1)
        out[int(uid)] = set(flags.strip("()").split())
    return out


def message(xid):
    return ("From: a@example.test\r\nTo: b@example.test\r\nSubject: message %s\r\n"
            "X-Id: %s\r\n\r\nbody of %s\r\n" % (xid, xid, xid)).encode()


def run(d, tmp):
    ctx = Ctx(d)
    CHILD = {"\\HasChildren", "\\HasNoChildren", "\\Noselect"}

    # 1. folders
    for name in ("Sent", "Drafts", "Lists.dev", "Caf\u00e9.sub", "\u65e5\u672c\u8a9e",
                 "Archive", "a&b"):
        ctx.tool("create", name)
    c = login(d)
    check(c.create(mutf7_encode("Dovecot\u00fc.made"))[0] == "OK", "Dovecot CREATE")
    ctx.chown()
    theirs = dovecot_list(c)
    ours = our_list(ctx)
    check(set(theirs) == set(ours),
          "same folder names: Dovecot %s, ours %s" % (sorted(theirs), sorted(ours)))
    for name in set(theirs) & set(ours):
        check(theirs[name] & CHILD == ours[name] & CHILD,
              "children flags of %s: Dovecot %s, ours %s" % (name, theirs[name], ours[name]))
    for name in ("Caf\u00e9.sub", "\u65e5\u672c\u8a9e", "a&b", "Dovecot\u00fc.made"):
        check(name in theirs and name in ours, "non-ASCII/& name %r listed by both" % name)
    su = dovecot_list(c, extra="RETURN (SPECIAL-USE)")
    SU = {"\\Sent", "\\Drafts", "\\Archive", "\\Trash", "\\Junk"}
    for name in su:
        if name in ours:
            check(su[name] & SU == ours[name] & SU,
                  "special use of %s: Dovecot %s, ours %s" % (name, su[name], ours[name]))
    check("\\Sent" in ours.get("Sent", set()), "Sent is \\Sent")

    # 2. subscriptions both ways
    ctx.tool("subscribe", "Caf\u00e9.sub")
    ctx.tool("subscribe", "Sent")
    lsub = dovecot_list(c, "LSUB")
    check({"Caf\u00e9.sub", "Sent"} <= set(lsub), "our subscriptions in Dovecot's LSUB: %s"
          % sorted(lsub))
    check(c.subscribe("Lists.dev")[0] == "OK", "Dovecot SUBSCRIBE")
    check(c.unsubscribe("Sent")[0] == "OK", "Dovecot UNSUBSCRIBE")
    ctx.chown()
    subs = ctx.tool("subscriptions").splitlines()
    check("Lists.dev" in subs and "Caf\u00e9.sub" in subs and "Sent" not in subs,
          "Dovecot's subscriptions read by us: %s" % subs)

    # 3. UIDs of APPEND, COPY, MOVE
    files = {}
    for xid in ("A1", "A2", "A3"):
        p = os.path.join(tmp, xid + ".eml")
        with open(p, "wb") as f:
            f.write(message(xid))
        files[xid] = p
    uv, uid_a1 = map(int, ctx.tool("append", "INBOX", files["A1"], "\\Seen").split())
    d.deliver("alice", message("D1"))
    d.deliver("alice", message("D2"))
    check(select(c, "INBOX") == uv, "UIDVALIDITY of INBOX: ours %d" % uv)
    x = uid_xids(c)
    check(x.get(uid_a1) == "A1", "appended A1 has UID %d at Dovecot: %s" % (uid_a1, x))
    c.close()
    uv2, uid_a2 = map(int, ctx.tool("append", "INBOX", files["A2"]).split())
    check(uv2 == uv, "UIDVALIDITY unchanged")
    select(c, "INBOX")
    x = uid_xids(c)
    check(x.get(uid_a2) == "A2" and uid_a2 > max(k for k in x if k != uid_a2),
          "A2 appended after Dovecot's UIDs has UID %d: %s" % (uid_a2, x))
    c.close()
    by_xid = {v: k for k, v in x.items()}
    out = ctx.tool("copy", "INBOX", "Sent", by_xid["A1"], by_xid["D1"]).split()
    suv = int(out[0])
    pairs = [tuple(map(int, p.split(":"))) for p in out[1:]]
    check(len(pairs) == 2, "COPYUID pairs: %s" % out)
    check(select(c, "Sent") == suv, "UIDVALIDITY of Sent is Dovecot's")
    sx = uid_xids(c)
    for s, t in pairs:
        check(sx.get(t) == x.get(s), "copy %d -> %d: Dovecot sees %s, want %s" %
              (s, t, sx.get(t), x.get(s)))
    c.close()
    out = ctx.tool("move", "INBOX", "Archive", by_xid["D2"]).split()
    (s, t), = [tuple(map(int, p.split(":"))) for p in out[1:]]
    auv = select(c, "Archive")
    check(auv == int(out[0]), "UIDVALIDITY of Archive")
    check(uid_xids(c).get(t) == "D2", "moved D2 has UID %d in Archive" % t)
    c.close()
    select(c, "INBOX")
    check(s not in uid_xids(c), "moved D2 gone from Dovecot's INBOX")

    # 4. keywords and flags both ways
    uid1 = by_xid["A1"]
    uid2 = by_xid["A2"]
    check(c.uid("STORE", str(uid1), "+FLAGS", "(dovekw \\Flagged)")[0] == "OK",
          "Dovecot STORE")
    c.close()
    ctx.chown()
    f = our_flags(ctx, "INBOX")
    check({"dovekw", "\\Flagged", "\\Seen"} <= f.get(uid1, set()),
          "Dovecot's keyword and flag read by us: %s" % f.get(uid1))
    ctx.tool("store", "INBOX", uid2, "+", "ourkw", "\\Answered", "$Forwarded")
    select(c, "INBOX")
    df = uid_flags(c)
    check({"ourkw", "\\Answered", "$Forwarded"} <= df.get(uid2, set()),
          "our keywords and flags seen by Dovecot: %s" % df.get(uid2))
    c.close()
    ctx.tool("store", "INBOX", uid1, "-", "dovekw")
    ctx.tool("store", "INBOX", uid1, "+", "ourkw")
    select(c, "INBOX")
    df = uid_flags(c)
    check("dovekw" not in df.get(uid1, set()) and "ourkw" in df.get(uid1, set()) and
          "\\Flagged" in df.get(uid1, set()),
          "keyword removed/added by us, Dovecot sees %s" % df.get(uid1))
    check(c.uid("STORE", str(uid2), "+FLAGS", "(dk2)")[0] == "OK", "Dovecot STORE dk2")
    c.close()
    ctx.chown()
    f = our_flags(ctx, "INBOX")
    check({"dk2", "ourkw", "$Forwarded", "\\Answered"} <= f.get(uid2, set()),
          "both keywords files' letters agree: %s" % f.get(uid2))
    for uid in f:
        check(f[uid] == df.get(uid, f[uid]) | ({"dk2"} if uid == uid2 else set()),
              "flags of %d: ours %s, Dovecot %s" % (uid, f[uid], df.get(uid)))
    # STATUS agrees
    typ, data = c.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
    st = dict(re.findall(r"(\w+) (\d+)", data[0].decode().split("(", 1)[1]))
    ours_st = ctx.tool("status", "INBOX").split()
    ours_st = dict(zip(ours_st[0::2], ours_st[1::2]))
    for k in ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"):
        check(st[k] == ours_st[k], "STATUS %s: Dovecot %s, ours %s" % (k, st[k], ours_st[k]))

    # 5. rename and delete by us
    ctx.tool("rename", "Lists", "Groups")
    ctx.tool("delete", "Drafts")
    # a new session: Dovecot keeps a session's folder list in memory
    c.logout()
    c = login(d)
    theirs = dovecot_list(c)
    check("Groups.dev" in theirs and "Lists.dev" not in theirs and "Drafts" not in theirs,
          "rename/delete seen by Dovecot: %s" % sorted(theirs))
    c.logout()
    errs = [l for l in d.log().splitlines() if "Error" in l or "Panic" in l or "Fatal" in l]
    check(not errs, "Dovecot logged no errors: %s" % errs[:5])


def main():
    if not dovecot_fixture.available():
        print("imap-store-dovecot: dovecot not installed, skipped")
        return 77
    tmp = tempfile.mkdtemp(prefix="imapstore-")
    os.chmod(tmp, 0o755)   # Dovecot's auth process runs as another user
    try:
        with Dovecot(tmp, extra_conf=SPECIAL) as d:
            try:
                run(d, tmp)
            except Exception as exc:  # report, then fail
                traceback.print_exc()
                check(False, "exception: %r" % (exc,))
                print(d.log()[-3000:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("imap-store-dovecot: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
