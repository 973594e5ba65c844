#!/usr/bin/python3
"""correo -f: the non-interactive listing of a Maildir++ tree.

Usage: listing.py CORREO SRCDIR

Generates a corpus with the project's generator and checks that the listing
shows every message of every folder (counts, subjects, new-mail marks), that
hostile header bytes never reach the output raw, and the exit codes.
"""
import base64
import collections
import json
import os
import subprocess
import sys
import tempfile

correo, srcdir = sys.argv[1], sys.argv[2]
python = os.environ.get("PYTHON", "/usr/bin/python3")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def run(args, **kw):
    env = dict(os.environ, TZ="UTC")
    return subprocess.run([correo] + args, capture_output=True, env=env, timeout=120, **kw)


with tempfile.TemporaryDirectory(prefix="correo-listing-") as tmp:
    md = os.path.join(tmp, "Maildir")
    manifest = os.path.join(tmp, "manifest.jsonl")
    subprocess.run([python, os.path.join(srcdir, "tests/tools/gen-corpus.py"), md,
                    "--count", "300", "--seed", "3", "--manifest", manifest], check=True)
    entries = [json.loads(line) for line in open(manifest, encoding="utf-8")]
    check(len(entries) == 300, "manifest has %d entries" % len(entries))

    r = run(["-l", "-f", md])
    check(r.returncode == 0, "exit %d, stderr %r" % (r.returncode, r.stderr[:500]))
    out = r.stdout.decode("utf-8")

    # Split the listing into folders.
    sections = collections.OrderedDict()
    current = None
    for line in out.split("\n"):
        if not line:
            continue
        if not (len(line) > 4 and line[2:4] == "  "):
            name, rest = line.split(": ", 1)
            current = name
            sections[name] = {"head": rest, "rows": []}
        else:
            sections[current]["rows"].append(line)

    by_folder = collections.defaultdict(list)
    for e in entries:
        by_folder[e["folder"]].append(e)
    check(set(sections) == set(by_folder),
          "folders listed %s, generated %s" % (sorted(sections), sorted(by_folder)))
    check(list(sections)[0] == "INBOX", "INBOX is not listed first")
    for folder, msgs in by_folder.items():
        sec = sections.get(folder)
        if sec is None:
            continue
        check(len(sec["rows"]) == len(msgs),
              "%s: %d rows for %d messages" % (folder, len(sec["rows"]), len(msgs)))
        check(sec["head"].startswith("%d messages, " % len(msgs)), "%s: head %r" % (folder, sec["head"]))
        n_new = sum(1 for m in msgs if "/new/" in "/" + m["path"])
        check(sum(1 for row in sec["rows"] if row.startswith("N")) == n_new,
              "%s: N marks differ from %d messages in new/" % (folder, n_new))
        check(", %d new," % n_new in sec["head"], "%s: head %r, want %d new" % (folder, sec["head"], n_new))
        n_flagged = sum(1 for m in msgs if "F" in m["flags"])
        check(sum(1 for row in sec["rows"] if row[1] == "!") == n_flagged,
              "%s: flagged marks differ from %d" % (folder, n_flagged))
        text = "\n".join(sec["rows"])
        for m in msgs:
            subject = m["subject"] if m["subject"] is not None else "(no subject)"
            subject = " ".join(subject.split())  # folded whitespace shows as spaces
            check(subject in " ".join(text.split()),
                  "%s: subject %r not listed" % (folder, subject))
    # Oldest first within a folder: dates are non-decreasing.
    for folder, sec in sections.items():
        dates = [row[4:20] for row in sec["rows"] if row[4:20].strip()]
        check(dates == sorted(dates), "%s: not sorted by date" % folder)

    # Hostile headers: escape sequences, C1 controls, bidi overrides.
    evil = os.path.join(tmp, "Evil")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(evil, sub))
    name_b64 = base64.b64encode("Mallory \x1b[31mRED\u202e".encode()).decode()
    raw = (b"From: =?utf-8?b?" + name_b64.encode() + b"?= <m@example.org>\n"
           b"Subject: hi \x1b]0;pwned\x07 \xc2\x9b31m \x9b2J \x7f done\n"
           b"Date: Mon, 02 Nov 2026 10:00:00 +0000\n\nbody\n")
    with open(os.path.join(evil, "new", "1.evil"), "wb") as f:
        f.write(raw)
    r = run(["-l", "-f", evil])
    check(r.returncode == 0, "evil: exit %d %r" % (r.returncode, r.stderr))
    data = r.stdout
    check(not any(b < 0x20 and b != 0x0a for b in data), "evil: control byte in output %r" % data)
    check(b"\x7f" not in data, "evil: DEL in output")
    text = data.decode("utf-8")
    check(not any(0x80 <= ord(ch) < 0xa0 for ch in text), "evil: C1 control in output")
    check("\u202e" not in text, "evil: bidi override in output")
    check("hi ^[]0;pwned^G" in text, "evil: escape not shown in caret notation: %r" % text)
    check("Mallory ^[[31mRED" in text, "evil: encoded-word escape not neutralised: %r" % text)

    # Exit codes.
    r = run(["-l", "-f", os.path.join(tmp, "does-not-exist")])
    check(r.returncode == 1 and b"does-not-exist" in r.stderr, "missing path: %r" % (r,))
    r = run(["--bogus"])
    check(r.returncode == 2, "bad option: exit %d" % r.returncode)
    r = run(["--version"])
    check(r.returncode == 0 and r.stdout.startswith(b"correo "), "version: %r" % (r,))

if failures:
    for f in failures[:20]:
        print("FAIL:", f)
    print("%d failures" % len(failures))
    sys.exit(1)
print("listing: all checks passed")
