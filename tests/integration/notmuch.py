#!/usr/bin/python3
"""notmuch:// folders against the real notmuch.

Usage: notmuch.py CORREO NMTOOL SRCDIR

On a generated corpus indexed by `notmuch new` with a private
NOTMUCH_CONFIG (maildir.synchronize_flags true):
  - `correo -l -f 'notmuch://?query=Q'` lists exactly the messages
    `notmuch search --output=files --duplicate=1 Q` returns (count, subjects,
    new-mail marks), for several queries;
  - a tag change through the backend (tests/tools/nmtool) shows in
    `notmuch search`;
  - a Maildir flag change by another program (rename adding S) shows as the
    tag unread removed after `notmuch new`, in notmuch and in the folder;
  - a tag change through the backend shows as a flag rename of the file.
"""
import collections
import email
import email.header
import email.policy
import os
import re
import subprocess
import sys
import tempfile

correo, nmtool, srcdir = sys.argv[1], sys.argv[2], sys.argv[3]
python = os.environ.get("PYTHON", "/usr/bin/python3")
failures = []
checks = [0]


def check(cond, what):
    checks[0] += 1
    if not cond:
        failures.append(what)


def run(args, **kw):
    r = subprocess.run(args, capture_output=True, env=env, timeout=120, **kw)
    return r


def nm(*args):
    r = run(["notmuch"] + list(args))
    if r.returncode != 0:
        sys.exit("notmuch %s failed: %s" % (" ".join(args), r.stderr.decode(errors="replace")))
    return r.stdout.decode("utf-8", errors="replace")


def files_of(query):
    return [l for l in nm("search", "--output=files", "--duplicate=1", query).split("\n") if l]


def subject_of(path):
    """The decoded Subject when it is plain ASCII and unambiguous, else None."""
    with open(path, "rb") as f:
        data = f.read()
    head = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0]
    if re.search(rb"^[!-9;-~]+[ \t]+:", head, re.M):
        return None   # "Subject :" (obsolete syntax) reads differently in Python
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    raw = msg.get("Subject")
    if raw is None:
        return "(no subject)"
    try:
        parts = email.header.decode_header(str(raw))
        text = "".join(p.decode(c or "ascii", errors="replace") if isinstance(p, bytes) else p
                       for p, c in parts)
    except Exception:
        return None
    text = " ".join(text.split())
    return text if text and all(0x20 <= ord(ch) < 0x7f for ch in text) else None


def listing(query):
    r = run([correo, "-n", "-l", "-f", "notmuch://?query=" + query])
    check(r.returncode == 0, "%s: exit %d, stderr %r" % (query, r.returncode, r.stderr[:300]))
    lines = [l for l in r.stdout.decode("utf-8", errors="replace").split("\n") if l]
    return lines[0] if lines else "", lines[1:]


def nmtool_lines(url, *args):
    r = run([nmtool, url] + list(args))
    check(r.returncode == 0, "nmtool %s: exit %d, %r" % (args, r.returncode, r.stderr[:300]))
    return [l.split("\t") for l in r.stdout.decode("utf-8", errors="replace").split("\n") if l]


if subprocess.run(["sh", "-c", "command -v notmuch"], capture_output=True).returncode != 0:
    print("notmuch is not installed: skipped")
    sys.exit(77)

with tempfile.TemporaryDirectory(prefix="correo-notmuch-") as tmp:
    mail = os.path.join(tmp, "mail")
    cfg = os.path.join(tmp, "notmuch-config")
    env = dict(os.environ, TZ="UTC", NOTMUCH_CONFIG=cfg, HOME=tmp)
    subprocess.run([python, os.path.join(srcdir, "tests/tools/gen-corpus.py"), mail,
                    "--count", "300", "--seed", "21"], check=True)
    with open(cfg, "w") as f:
        f.write("[database]\npath=%s\n[new]\ntags=inbox;unread;\nignore=maildirfolder\n"
                "[search]\nexclude_tags=deleted;\n[maildir]\nsynchronize_flags=true\n" % mail)
    nm("new", "--quiet")
    # Something excluded, as people have: it must stay out of both.
    first = nm("search", "--output=messages", "--limit=1", "*").strip()
    nm("tag", "+deleted", "--", first)

    # 1. Query folders list exactly what notmuch search returns.
    senders = collections.Counter()
    for path in files_of("*"):
        with open(path, "rb") as f:
            m = email.message_from_binary_file(f, policy=email.policy.compat32)
        frm = str(m.get("From", ""))
        if "@" in frm:
            senders[frm.rsplit("@", 1)[1].strip("> \t\n").lower()] += 1
    domain = senders.most_common(1)[0][0]
    queries = ["*", "tag:unread", "tag:inbox and from:" + domain, "tag:flagged",
               "tag:inbox and not tag:unread", "tag:no-such-tag"]
    for q in queries:
        want = files_of(q)
        head, rows = listing(q)
        check(len(rows) == len(want), "%s: %d rows, notmuch lists %d files" % (q, len(rows), len(want)))
        check(head.startswith(q + ": %d messages, " % len(want)), "%s: head %r" % (q, head))
        n_new = sum(1 for p in want if "/new/" in p)
        check(", %d new," % n_new in head, "%s: head %r, want %d new" % (q, head, n_new))
        left = list(rows)
        for p in want:
            s = subject_of(p)
            if s is None:
                continue
            hit = next((i for i, r in enumerate(left) if r.endswith("  " + s)), None)
            check(hit is not None, "%s: subject %r of %s is not listed" % (q, s, p))
            if hit is not None:
                del left[hit]
    check(len(files_of("tag:deleted")) == 1, "the excluded message is not there")

    url = "notmuch://?query=tag:inbox"

    # 2. A tag change through the backend shows in notmuch search.
    recs = nmtool_lines(url, "list")
    check(len(recs) == len(files_of("tag:inbox")), "nmtool lists %d" % len(recs))
    out = nmtool_lines(url, "tag", "0", "+blue -inbox")
    path0 = recs[0][3]
    check(files_of("tag:blue") == [path0], "tag:blue is %r, want %r" % (files_of("tag:blue"), path0))
    check(path0 not in files_of("tag:inbox"), "message still has tag inbox")
    check(out and "blue" in out[0][2].split() and "inbox" not in out[0][2].split(),
          "nmtool shows tags %r" % (out[0][2] if out else None))

    # 3. A Maildir flag change (rename adding S) shows as unread removed
    #    after notmuch new.
    unread = [p for p in files_of("tag:unread and tag:inbox") if "/cur/" in p and ":2," in p]
    check(unread, "no unread message in cur/")
    if unread:
        p = unread[0]
        base, info = p.rsplit(":2,", 1)
        q = base + ":2," + "".join(sorted(set(info + "S")))
        os.rename(p, q)
        nm("new", "--quiet")
        check(q in files_of("not tag:unread"), "renamed file %s still unread in notmuch" % q)
        rows = [r for r in nmtool_lines(url, "list") if r[3] == q]
        check(len(rows) == 1 and "unread" not in rows[0][2].split() and "S" in rows[0][1],
              "folder shows %r for the renamed file" % rows)

    # 4. A tag change through the backend shows as a flag rename.
    recs = nmtool_lines(url, "list")
    target = next((r for r in recs if "/new/" in r[3] and "unread" in r[2].split()), None)
    check(target is not None, "no new unread message")
    if target is not None:
        out = nmtool_lines(url, "tag", target[0], "+flagged -unread")
        newpath = out[0][3] if out else ""
        check(not os.path.exists(target[3]), "old file %s still there" % target[3])
        check(os.path.exists(newpath) and "/cur/" in newpath and newpath.endswith(":2,FS"),
              "file after the tag change: %r" % newpath)
        check(newpath in files_of("tag:flagged and not tag:unread"),
              "notmuch does not know %s as flagged and read" % newpath)
        # And back through the flags: unread, not flagged.
        idx = out[0][0] if out else "0"
        out = nmtool_lines(url, "flags", idx, "-S", "-F")
        back = out[0][3] if out else ""
        check(back.endswith(":2,") and os.path.exists(back), "file after the flag change: %r" % back)
        check(back in files_of("tag:unread and not tag:flagged"),
              "notmuch does not show %s unread and unflagged" % back)

    # 5. Errors: a bad URL and a folder without notmuch support say so.
    r = run([correo, "-n", "-l", "-f", "notmuch://?colour=red"])
    check(r.returncode == 1 and b"unknown parameter" in r.stderr, "bad URL: %r" % (r.stderr,))

for f in failures:
    print("FAIL:", f)
print("%d passed, %d failed" % (checks[0] - len(failures), len(failures)))
sys.exit(1 if failures else 0)
