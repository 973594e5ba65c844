"""lib/uidlist against a private Dovecot on the same Maildir.

argv: [script, uidlist-tool, source_root]

1. Dovecot gives UIDs to 50 messages -> our module reads the same UID <-> file
   map and the same UIDVALIDITY; our module, given the same 50 files in a
   fresh folder, gives each the UID Dovecot gave it (same order rule).
2. Our module gives UIDs to new files -> Dovecot's UID FETCH reports them.
3. Flag changes through Dovecot (renames) keep every UID on our side.
4. Expunge through Dovecot -> our sync drops exactly those records.
5. Both at once: Dovecot APPENDs (and now and then EXPUNGEs) in a loop while
   files are delivered into new/ and our sync runs in a loop; no UID is ever
   lost, changed or reused, every APPENDUID matches our map, and Dovecot and
   we end with the same map.
6. A broken uidlist: we refuse it, rebuild with a new UIDVALIDITY, Dovecot
   takes the new list.
"""
import imaplib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dovecot_fixture  # noqa: E402
from dovecot_fixture import Dovecot  # noqa: E402

TOOL = sys.argv[1] if len(sys.argv) > 1 else "build/tests/tools/uidlist-tool"
passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, flush=True)
    return cond


def tool(cmd, folder, *extra, ok=(0,)):
    r = subprocess.run([TOOL, cmd, folder] + [str(x) for x in extra],
                       capture_output=True, timeout=120)
    if r.returncode not in ok:
        raise RuntimeError("uidlist-tool %s %s: exit %d: %s" %
                           (cmd, folder, r.returncode, r.stderr.decode("utf-8", "replace")))
    return r


def parse_dumps(out):
    """Each dump: (uidvalidity, next_uid, {uid: base})."""
    dumps = []
    cur = None
    for line in out.decode().splitlines():
        if line.startswith("V "):
            f = line.split()
            cur = (int(f[1]), int(f[3]), {})
        elif line == ".":
            dumps.append(cur)
            cur = None
        else:
            uid, base = line.split(" ", 1)
            cur[2][int(uid)] = base
    return dumps


def our_map(folder, cmd="sync"):
    r = tool(cmd, folder)
    return parse_dumps(r.stdout)[-1], r.stderr.decode()


def message(xid, extra=""):
    return ("From: a@example.test\r\nTo: b@example.test\r\nSubject: message %s\r\n"
            "X-Id: %s\r\n%s\r\nbody of %s\r\n" % (xid, xid, extra, xid)).encode()


def files_by_xid(folder):
    """base name -> X-Id, from the files on disk."""
    out = {}
    for sub in ("new", "cur"):
        d = os.path.join(folder, sub)
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                m = re.search(rb"X-Id: (\S+)", f.read())
            out[name.split(":", 1)[0]] = m.group(1).decode() if m else None
    return out


class Imap:
    def __init__(self, d, user="alice"):
        self.c = imaplib.IMAP4("127.0.0.1", d.port("imap"))
        self.c.login(user, "secret")

    def select(self, box="INBOX"):
        typ, data = self.c.select(box)
        assert typ == "OK", data
        uv = self.c.response("UIDVALIDITY")[1][0]
        return int(uv)

    def uid_xids(self):
        """uid -> X-Id as Dovecot sees them now."""
        typ, data = self.c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (X-ID)])")
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

    def close(self):
        try:
            self.c.logout()
        except Exception:
            pass


def chown_tree(d, path):
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, d.mail_uid, d.mail_gid)
        for n in filenames:
            os.chown(os.path.join(dirpath, n), d.mail_uid, d.mail_gid)


def put(d, folder, sub, name, data):
    path = os.path.join(folder, sub, name)
    tmp = os.path.join(folder, "tmp", name.split(":", 1)[0])
    with open(tmp, "wb") as f:
        f.write(data)
    os.chown(tmp, d.mail_uid, d.mail_gid)
    os.rename(tmp, path)


EXPECTED = []   # log lines a step provoked on purpose


def dovecot_errors(d):
    return [l for l in d.log().splitlines()
            if ("Error" in l or "Warning" in l or "Panic" in l or "Fatal" in l)
            and "auth" not in l and not any(x in l for x in EXPECTED)]


def main():
    if not dovecot_fixture.available():
        print("uidlist-dovecot: dovecot not installed, skipped")
        return 77
    tmp = tempfile.mkdtemp(prefix="correo-uidlist-", dir=os.environ.get("TMPDIR", "/tmp"))
    os.chmod(tmp, 0o755)
    try:
        with Dovecot(tmp, users={"alice": "secret", "bob": "secret"}) as d:
            try:
                run(d)
            except Exception:
                print("\n".join(dovecot_errors(d)[:20]))
                raise
            errs = dovecot_errors(d)
            check(not errs, "Dovecot logged no errors or warnings: %r" % errs[:5])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("uidlist-dovecot: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def run(d):
    alice = d.maildir("alice")
    bob = d.maildir("bob")
    base_t = 1700000000

    # ---- 1. Dovecot assigns 50 -------------------------------------------
    names = {}
    for i in range(50):
        # Several per second, microseconds of varying width, a few names
        # without them, some already in cur/ with flags.
        t = base_t + i // 4
        if i % 9 == 0:
            base = "%d.P%dQ%d.host" % (t, 100 + i, i)
        else:
            xid = "a%02d" % i
            base = "%d.M%dP%d.host,S=%d" % (t, (i * 7919) % 1000000, 100 + i,
                                             len(message(xid)))
        xid = "a%02d" % i
        names[base] = xid
        if i % 5 == 0:
            put(d, alice, "cur", base + ":2,S", message(xid))
            put(d, bob, "cur", base + ":2,S", message(xid))
        else:
            put(d, alice, "new", base, message(xid))
            put(d, bob, "new", base, message(xid))
    im = Imap(d)
    uv = im.select()
    dv = im.uid_xids()
    check(len(dv) == 50 and sorted(dv) == list(range(1, 51)),
          "Dovecot gave UIDs 1..50: %r" % sorted(dv))
    check(os.path.exists(os.path.join(alice, "dovecot-uidlist")), "Dovecot wrote its uidlist")
    (v, n, ours), _ = our_map(alice, "dump")
    check(v == uv, "same UIDVALIDITY: ours %d, Dovecot %d" % (v, uv))
    check(n == 51, "next UID 51: %d" % n)
    check({u: names.get(b) for u, b in ours.items()} == dv,
          "our reading of Dovecot's list is Dovecot's UID map")
    (v2, n2, ours2), err = our_map(alice)
    check(ours2 == ours and v2 == v and "added 0 expunged 0" in err,
          "our sync of Dovecot's folder changes nothing: %s" % err.strip())

    # Bob's copy: the same files, our module assigns first.
    (vb, nb, bobs), err = our_map(bob)
    check("written 1" in err, "our sync wrote bob's new list")
    check({u: names.get(b) for u, b in bobs.items()} == dv,
          "our module gives the same 50 files the UIDs Dovecot gave them: %r" %
          [(u, bobs.get(u), dv.get(u)) for u in range(1, 51)
           if names.get(bobs.get(u)) != dv.get(u)][:5])
    ib = Imap(d, "bob")
    check(ib.select() == vb, "Dovecot takes our UIDVALIDITY for bob's folder")
    check(ib.uid_xids() == dv, "Dovecot reports our UIDs for bob's folder")
    ib.close()

    # ---- 2. our module assigns, Dovecot reads ------------------------------
    for i in range(20):
        xid = "b%02d" % i
        base = "%d.M%dP%d.ours" % (base_t + 100 + i // 3, i * 13, 500 + i)
        names[base] = xid
        put(d, alice, "new" if i % 2 else "cur", base if i % 2 else base + ":2,", message(xid))
    (v3, n3, ours3), err = our_map(alice)
    check("added 20" in err and "written 1" in err, "we assigned 20: %s" % err.strip())
    new_uids = sorted(set(ours3) - set(ours2))
    check(new_uids == list(range(51, 71)), "our new UIDs are 51..70: %r" % new_uids)
    im.c.noop()
    dv3 = im.uid_xids()
    check(dv3 == {u: names.get(b) for u, b in ours3.items()},
          "Dovecot's UID FETCH (same session) reports our UIDs")
    im2 = Imap(d)
    check(im2.select() == v3, "UIDVALIDITY unchanged after our write")
    check(im2.uid_xids() == dv3, "a new Dovecot session sees the same")
    im2.close()

    # ---- 3. flag changes by Dovecot keep UIDs ------------------------------
    typ, _ = im.c.uid("STORE", "1:70", "+FLAGS", "(\\Flagged $Label1)")
    check(typ == "OK", "Dovecot STORE")
    (v4, n4, ours4), err = our_map(alice)
    check(ours4 == ours3, "renames by Dovecot keep all our UIDs")
    check("added 0 expunged 0" in err, "renamed files got no new UIDs: %s" % err.strip())
    flagged = sum(1 for n in os.listdir(os.path.join(alice, "cur"))
                  if re.search(r":2,[A-Z]*F[A-Z]*a", n))
    check(flagged == 70, "Dovecot did rename all 70 files: %d" % flagged)

    # ---- 4. expunge through Dovecot ---------------------------------------
    gone = [3, 10, 11, 50, 51, 70]
    im.c.uid("STORE", ",".join(map(str, gone)), "+FLAGS", "(\\Deleted)")
    typ, _ = im.c.expunge()
    check(typ == "OK", "Dovecot EXPUNGE")
    (v5, n5, ours5), err = our_map(alice)
    check(sorted(set(ours4) - set(ours5)) == gone and set(ours5) <= set(ours4),
          "our sync dropped exactly the expunged UIDs: %r" % sorted(set(ours4) - set(ours5)))
    check(all(ours5[u] == ours4[u] for u in ours5), "the others keep theirs")
    check(n5 == 71, "next UID not reused: %d" % n5)
    check("expunged %d" % len(gone) in err or "expunged 0" in err,
          "sync result: %s" % err.strip())
    dv5 = im.uid_xids()
    check(dv5 == {u: names.get(b) for u, b in ours5.items()}, "Dovecot agrees after expunge")
    # Our drop is written; Dovecot reads it without complaint.
    im.c.noop()
    im.close()

    # ---- 5. both at once ----------------------------------------------------
    concurrent(d, alice, names)

    errs = dovecot_errors(d)
    check(not errs, "Dovecot logged no errors or warnings so far: %r" % errs[:5])

    # ---- 6. a broken uidlist -------------------------------------------------
    # Dovecot notices the new UIDVALIDITY, as it should, and says so.
    EXPECTED.append("UIDVALIDITY changed")
    (vx, nx, before), _ = our_map(alice, "dump")
    with open(os.path.join(alice, "dovecot-uidlist"), "rb") as f:
        good = f.read()
    bad = good.replace(b"\n", b"\nnot a record\n", 1)
    with open(os.path.join(alice, "dovecot-uidlist"), "wb") as f:
        f.write(bad)
    r = tool("sync", alice, ok=(3,))
    check(b"line 2" in r.stderr, "the error names the line: %r" % r.stderr)
    r = tool("rebuild", alice)
    rebuilt = parse_dumps(r.stdout)[-1]
    check(rebuilt[0] > vx, "new UIDVALIDITY %d > %d" % (rebuilt[0], vx))
    check(b"new UIDVALIDITY" in r.stderr, "the rebuild says so")
    check(sorted(rebuilt[2]) == list(range(1, len(before) + 1)),
          "every file has a UID under the new UIDVALIDITY")
    im = Imap(d)
    check(im.select() == rebuilt[0], "Dovecot takes the new UIDVALIDITY")
    got = im.uid_xids()
    xids = files_by_xid(alice)
    want = {u: xids.get(b) for u, b in rebuilt[2].items()}
    check(got == want, "and the new UIDs: %r" %
          [(u, got.get(u), want.get(u)) for u in sorted(set(got) | set(want))
           if got.get(u) != want.get(u)][:8])
    im.close()


def concurrent(d, folder, names):
    stop = threading.Event()
    errors = []
    appended = {}          # xid -> uid from APPENDUID
    expunged = set()       # xids expunged through Dovecot
    delivered = []

    def appender():
        try:
            c = Imap(d)
            uv = c.select()
            for i in range(120):
                xid = "c%03d" % i
                typ, data = c.c.append("INBOX", "(\\Seen)" if i % 2 else None, None,
                                       message(xid))
                if typ != "OK":
                    errors.append("APPEND %s: %r" % (xid, data))
                    continue
                m = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
                if not m or int(m.group(1)) != uv:
                    errors.append("APPENDUID %r" % data)
                    continue
                appended[xid] = int(m.group(2))
                if i % 10 == 0:
                    c.c.noop()
                    # Let our sync loop take at least one turn per ten
                    # appends, however fast or slow either side is, so the
                    # two really interleave (a deadline, not a sleep).
                    seen = sync_turns[0]
                    until = time.monotonic() + 60
                    while sync_turns[0] == seen and time.monotonic() < until:
                        turned.wait(0.05)
                        turned.clear()
                if i % 10 == 5:
                    # Expunge one of ours and one delivered meanwhile.
                    gone = [appended["c%03d" % (i - 5)]]
                    c.c.uid("STORE", str(gone[0]), "+FLAGS", "(\\Deleted)")
                    typ, data = c.c.expunge()
                    if typ != "OK":
                        errors.append("EXPUNGE: %r" % data)
                    expunged.add("c%03d" % (i - 5))
            c.close()
        except Exception as ex:  # reported below
            errors.append("appender: %r" % ex)
        finally:
            stop.set()

    def deliverer():
        i = 0
        while not stop.is_set() and i < 120:
            xid = "d%03d" % i
            base = "%d.M%dP%d.mta" % (int(time.time()), i, 900)
            names[base] = xid
            put(d, folder, "new", base, message(xid))
            delivered.append(xid)
            i += 1
            stop.wait(0.005)

    dumps = []
    sync_turns = [0]
    turned = threading.Event()
    th = [threading.Thread(target=appender), threading.Thread(target=deliverer)]
    for t in th:
        t.start()
    deadline = time.monotonic() + 300
    runs = 0
    writes = 0
    while not stop.is_set() and time.monotonic() < deadline:
        r = tool("sync", folder, 5)
        dumps.extend(parse_dumps(r.stdout))
        writes += r.stderr.count(b"written 1")
        runs += 1
        sync_turns[0] = runs
        turned.set()
    for t in th:
        t.join(60)
    r = tool("sync", folder, 2)
    dumps.extend(parse_dumps(r.stdout))
    check(not errors, "appender ran cleanly: %r" % errors[:3])
    check(len(appended) == 120, "120 APPENDUIDs: %d" % len(appended))
    check(runs > 1 and len(dumps) > 10, "our sync ran %d times meanwhile" % len(dumps))
    check(writes > 0, "and wrote the list %d times" % writes)

    uvs = {dp[0] for dp in dumps}
    check(len(uvs) == 1, "one UIDVALIDITY throughout: %r" % uvs)
    # A UID never names two files, a file never gets two UIDs.
    by_uid, by_base, clash = {}, {}, []
    for _, _, mp in dumps:
        for u, b in mp.items():
            if by_uid.setdefault(u, b) != b:
                clash.append(("uid", u, by_uid[u], b))
            if by_base.setdefault(b, u) != u:
                clash.append(("file", b, by_base[b], u))
    check(not clash, "no UID lost or changed across %d snapshots: %r" % (len(dumps), clash[:5]))
    # Once listed, a file that still exists stays listed in every later
    # snapshot; an expunged one leaves for good.
    xids = files_by_xid(folder)
    lost, back = [], []
    seen, dropped = set(), set()
    for _, _, mp in dumps:
        now = set(mp)
        lost.extend(sorted(u for u in seen - now if by_uid[u] in xids)[:3])
        back.extend(sorted(now & dropped)[:3])
        dropped |= seen - now
        seen |= now
    check(not lost, "no record vanished while its file existed: %r" % lost[:5])
    check(not back, "no dropped UID came back: %r" % back[:5])

    final = dumps[-1][2]
    final_x = {u: xids.get(b) for u, b in final.items()}
    check(len(final) == len(xids), "every file has a UID: %d files, %d UIDs" %
          (len(xids), len(final)))
    check(len(expunged) == 12 and not expunged & set(final_x.values()),
          "the %d messages expunged through Dovecot are gone from our map" % len(expunged))
    wrong = [(x, u, final_x.get(u)) for x, u in appended.items()
             if x not in expunged and final_x.get(u) != x]
    check(not wrong, "every APPENDUID is the UID of that message in our map: %r" % wrong[:5])
    im = Imap(d)
    im.select()
    dv = im.uid_xids()
    check(dv == final_x, "Dovecot and we end with the same map (%d messages)" % len(dv))
    im.close()
    print("  concurrent: %d appended, %d delivered, %d snapshots, %d of our writes" %
          (len(appended), len(delivered), len(dumps), writes), flush=True)


if __name__ == "__main__":
    sys.exit(main())
