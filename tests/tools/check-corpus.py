#!/usr/bin/python3
"""check-corpus.py: compare what lib/message makes of a corpus with its manifest.

usage: check-corpus.py --msgdump PATH --maildir DIR --manifest FILE
                       [--jobs N] [--batch N] [--show N]

Every message file listed in the manifest (written by gen-corpus.py) is fed
to msgdump (paths on its standard input, in batches run in parallel) and the
JSON line it prints is compared with the manifest entry:

  subject, from, message_id, in_reply_to, references, text, text_type
  and, when the manifest has them, date, list_id and parts (MIME types)

must be equal.  A warning from the parser is a mismatch, except on messages
the manifest marks "malformed": those must produce each warning listed in
"expect_warnings" and nothing else, and the fields in "skip" are not
compared.  The tree itself is checked too: every listed file exists, its
",S=" size and ":2," flags match, and no message file is left unlisted.

Prints "N messages checked, M mismatches" and the first --show mismatches
with a diff.  Exit status: 0 all equal; 1 mismatches, a msgdump crash or a
non-zero msgdump exit; 2 usage or unreadable input.
"""

import argparse
import concurrent.futures
import difflib
import json
import os
import re
import signal
import subprocess
import sys
import time

FIELDS = ["subject", "from", "message_id", "in_reply_to", "references", "text", "text_type"]
OPTIONAL_FIELDS = ["date", "list_id", "parts"]
TEXT_TYPES = {"text/plain": "plain", "text/html": "html", None: None}
SIZE_RE = re.compile(r",S=(\d+)")


class Mismatch:
    def __init__(self, path, field, expected, got):
        self.path = path
        self.field = field
        self.expected = expected
        self.got = got

    def render(self):
        head = "%s: %s differs" % (self.path, self.field)
        if isinstance(self.expected, str) and isinstance(self.got, str) and \
                ("\n" in self.expected or "\n" in self.got):
            diff = difflib.unified_diff(self.expected.splitlines(True), self.got.splitlines(True),
                                        "expected", "msgdump", n=2)
            body = "".join(d if d.endswith("\n") else d + "\n\\ no newline\n" for d in diff)
            return head + "\n" + body
        return "%s\n  expected: %s\n  got:      %s" % (
            head, json.dumps(self.expected, ensure_ascii=False),
            json.dumps(self.got, ensure_ascii=False))


def describe_status(rc):
    if rc < 0:
        try:
            return "killed by signal %s" % signal.Signals(-rc).name
        except ValueError:
            return "killed by signal %d" % -rc
    return "exit status %d" % rc


def run_batch(msgdump, paths):
    """Run msgdump over paths; returns (records by path, error text or None)."""
    feed = "".join(p + "\n" for p in paths).encode("utf-8", "surrogateescape")
    try:
        proc = subprocess.run([msgdump], input=feed, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False)
    except OSError as exc:
        return {}, "cannot run %s: %s" % (msgdump, exc.strerror)
    records = {}
    error = None
    for n, line in enumerate(proc.stdout.splitlines(), 1):
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            error = "msgdump printed a line that is not JSON (line %d of its batch: %s)" % (n, exc)
            break
        records[rec.get("path")] = rec
    if proc.returncode != 0:
        missing = [p for p in paths if p not in records]
        where = (" while reading %s" % missing[0]) if missing else ""
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        error = "msgdump %s%s%s" % (describe_status(proc.returncode), where,
                                    ("\n" + stderr[-2000:]) if stderr else "")
    return records, error


def compare(entry, rec):
    """Mismatches between a manifest entry and a msgdump record."""
    path = entry["path"]
    out = []
    malformed = entry.get("malformed")
    skip = set(entry.get("skip", [])) if malformed else set()
    got = {
        "subject": rec.get("subject"),
        "from": [[a.get("name"), a.get("addr")] for a in rec.get("from", [])],
        "message_id": rec.get("message_id"),
        "in_reply_to": rec.get("in_reply_to"),
        "references": rec.get("references"),
        "text": rec.get("text"),
        "text_type": TEXT_TYPES.get(rec.get("text_type"), rec.get("text_type")),
        "date": rec.get("date"),
        "list_id": rec.get("list_id"),
        "parts": [p.get("type") for p in rec.get("parts", [])],
    }
    for field in FIELDS + [f for f in OPTIONAL_FIELDS if f in entry]:
        if field in skip:
            continue
        if entry.get(field) != got[field]:
            out.append(Mismatch(path, field, entry.get(field), got[field]))
    warnings = rec.get("warnings", [])
    if malformed:
        wanted = entry.get("expect_warnings", [])
        for w in wanted:
            if not any(w in x for x in warnings):
                out.append(Mismatch(path, "warnings (damage: %s)" % malformed,
                                    ["... %s ..." % w for w in wanted], warnings))
                break
        else:
            extra = [x for x in warnings if not any(w in x for w in wanted)]
            if extra:
                out.append(Mismatch(path, "warnings (damage: %s)" % malformed, wanted, warnings))
    elif warnings:
        out.append(Mismatch(path, "warnings", [], warnings))
    return out


def check_tree(maildir, entries):
    """Problems with the files themselves (names, sizes, unlisted files)."""
    problems = []
    listed = set()
    for e in entries:
        rel = e["path"]
        listed.add(rel)
        full = os.path.join(maildir, rel)
        try:
            size = os.path.getsize(full)
        except OSError as exc:
            problems.append("%s: %s" % (rel, exc.strerror))
            continue
        m = SIZE_RE.search(os.path.basename(rel))
        if not m or int(m.group(1)) != size:
            problems.append("%s: S= does not match the size %d" % (rel, size))
        base = os.path.basename(rel)
        in_new = os.path.basename(os.path.dirname(rel)) == "new"
        flags = "" if in_new else base.rsplit(":2,", 1)[-1]
        if (":2," in base) == in_new or flags != e.get("flags", ""):
            problems.append("%s: flags in the name do not match %r" % (rel, e.get("flags")))
    for top, dirs, files in os.walk(maildir):
        dirs.sort()
        if os.path.basename(top) not in ("cur", "new"):
            continue
        for f in sorted(files):
            rel = os.path.relpath(os.path.join(top, f), maildir)
            if rel not in listed:
                problems.append("%s: message file not in the manifest" % rel)
    return problems


def main():
    ap = argparse.ArgumentParser(description="Check lib/message against a corpus manifest.")
    ap.add_argument("--msgdump", required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--show", type=int, default=10)
    args = ap.parse_args()
    if args.jobs < 1 or args.batch < 1:
        ap.error("--jobs and --batch must be positive")

    entries = []
    try:
        with open(args.manifest, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        entries.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        print("check-corpus: %s:%d: %s" % (args.manifest, n, exc), file=sys.stderr)
                        return 2
    except OSError as exc:
        print("check-corpus: %s: %s" % (args.manifest, exc.strerror), file=sys.stderr)
        return 2
    if not entries:
        print("check-corpus: %s lists no messages" % args.manifest, file=sys.stderr)
        return 2

    problems = check_tree(args.maildir, entries)

    full = [os.path.join(args.maildir, e["path"]) for e in entries]
    batches = [full[i:i + args.batch] for i in range(0, len(full), args.batch)]
    records, errors = {}, []
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for recs, err in pool.map(lambda b: run_batch(args.msgdump, b), batches):
            records.update(recs)
            if err:
                errors.append(err)
    elapsed = time.monotonic() - started

    mismatches = []
    unparsed = 0
    for e, path in zip(entries, full):
        rec = records.get(path)
        if rec is None:
            unparsed += 1
            continue
        mismatches += compare(e, rec)

    bad_msgs = len({m.path for m in mismatches})
    malformed = sum(1 for e in entries if e.get("malformed"))
    print("%d messages checked, %d mismatches (%d fields; %d deliberately malformed "
          "messages among them checked for warnings), msgdump took %.1fs" % (
              len(entries) - unparsed, bad_msgs, len(mismatches), malformed, elapsed))
    for m in mismatches[:args.show]:
        print("---")
        print(m.render())
    for p in problems[:args.show]:
        print("tree: " + p)
    if len(problems) > args.show:
        print("tree: ... and %d more problems" % (len(problems) - args.show))
    for err in errors[:args.show]:
        print("FAIL: " + err)
    if len(errors) > args.show:
        print("FAIL: ... and %d more msgdump runs failed" % (len(errors) - args.show))
    if unparsed:
        print("FAIL: msgdump printed nothing for %d messages" % unparsed)
    return 1 if mismatches or problems or errors or unparsed else 0


if __name__ == "__main__":
    sys.exit(main())
