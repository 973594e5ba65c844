#!/bin/sh
# correod answers --version with its version and --help with usage; an
# unknown command is an error (exit 2), not a silent success.
set -u
exe=$1
out=$("$exe" --version) || { echo "FAIL: --version exited $?"; exit 1; }
case $out in "correod "[0-9]*) ;; *) echo "FAIL: --version printed '$out'"; exit 1;; esac
"$exe" --help | grep -q '^usage: correod' || { echo "FAIL: --help"; exit 1; }
"$exe" bogus-command >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL: unknown command exited $rc, want 2"; exit 1; }
echo "correod-cli: 3 passed, 0 failed"
