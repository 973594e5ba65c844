#!/bin/sh
# Corpus tests for lib/message, on a generated Maildir++ tree.
#
#   corpus.sh MSGDUMP SRCDIR [COUNT [SEED]]
#       generate COUNT (default 10000) messages with SEED (default 20250301)
#       into a temporary directory and check every one with check-corpus.py:
#       envelope, MIME tree and best text must equal the generator's
#       manifest, with no parser warnings except on deliberately damaged mail.
#   corpus.sh --determinism SRCDIR
#       the same 200-message corpus generated twice is byte-identical (files,
#       names, modification times, manifest), and another seed differs.
#
# Uses $PYTHON (default /usr/bin/python3).  Temporary files are removed on
# every exit path.
set -u

usage() {
    echo "usage: corpus.sh MSGDUMP SRCDIR [COUNT [SEED]] | corpus.sh --determinism SRCDIR" >&2
    exit 2
}

py=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/correo-corpus.XXXXXX") || { echo "FAIL: mktemp"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# Listing of a tree: its directories, and each file's path, size and
# modification time (directories' own times change as files are added).
listing() {
    (cd "$1" && find . \( -type d -printf 'd %p\n' \) -o -printf 'f %p %s %T@\n' |
        LC_ALL=C sort)
}

determinism() {
    gen=$1/tests/tools/gen-corpus.py
    # different string hash seeds: nothing may depend on set or hash order
    hs=1
    for run in a b; do
        PYTHONHASHSEED=$hs "$py" "$gen" "$tmp/$run" --count 200 --seed 7 --folders 10 \
            --manifest "$tmp/$run.jsonl" || { echo "FAIL: generator run $run exited $?"; exit 1; }
        hs=2
    done
    "$py" "$gen" "$tmp/c" --count 200 --seed 8 --folders 10 --manifest "$tmp/c.jsonl" ||
        { echo "FAIL: generator with seed 8 exited $?"; exit 1; }

    n=$(find "$tmp/a" -path '*/cur/*' -o -path '*/new/*' | wc -l)
    [ "$n" -eq 200 ] || { echo "FAIL: 200 messages asked, $n files written"; exit 1; }
    [ "$(wc -l < "$tmp/a.jsonl")" -eq 200 ] ||
        { echo "FAIL: manifest does not list 200 messages"; exit 1; }
    for f in Lists.dev Lists.announce Work Sent Archive.2025; do
        for d in cur new tmp maildirfolder; do
            [ -e "$tmp/a/.$f/$d" ] || { echo "FAIL: .$f/$d missing"; exit 1; }
        done
    done
    [ ! -e "$tmp/a/manifest.jsonl" ] || { echo "FAIL: manifest written into the Maildir"; exit 1; }

    diff -r "$tmp/a" "$tmp/b" >/dev/null || { echo "FAIL: same seed, different trees"; exit 1; }
    listing "$tmp/a" > "$tmp/a.list"
    listing "$tmp/b" > "$tmp/b.list"
    cmp -s "$tmp/a.list" "$tmp/b.list" ||
        { echo "FAIL: same seed, different names, sizes or times"; exit 1; }
    cmp -s "$tmp/a.jsonl" "$tmp/b.jsonl" || { echo "FAIL: same seed, different manifests"; exit 1; }
    if diff -r "$tmp/a" "$tmp/c" >/dev/null; then
        echo "FAIL: seeds 7 and 8 gave the same tree"; exit 1
    fi
    echo "corpus-determinism: 200 messages, same seed identical, other seed differs"
}

check() {
    msgdump=$1 src=$2 count=${3:-10000} seed=${4:-20250301}
    [ -x "$msgdump" ] || { echo "FAIL: $msgdump is not executable"; exit 1; }
    start=$(date +%s)
    "$py" "$src/tests/tools/gen-corpus.py" "$tmp/maildir" --count "$count" --seed "$seed" \
        --folders 10 --manifest "$tmp/manifest.jsonl" ||
        { echo "FAIL: generator exited $?"; exit 1; }
    made=$(date +%s)
    echo "generated $count messages (seed $seed) in $((made - start))s"
    "$py" "$src/tests/tools/check-corpus.py" --msgdump "$msgdump" --maildir "$tmp/maildir" \
        --manifest "$tmp/manifest.jsonl"
    rc=$?
    echo "checked in $(($(date +%s) - made))s"
    exit $rc
}

case ${1:-} in
    --determinism) [ $# -eq 2 ] || usage; determinism "$2" ;;
    ""|-*) usage ;;
    *) [ $# -ge 2 ] && [ $# -le 4 ] || usage; check "$@" ;;
esac
