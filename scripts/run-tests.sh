#!/bin/bash
# run-tests.sh: install what is missing, build, and run the whole test suite
# twice: once in a normal build, once built with AddressSanitizer and
# UndefinedBehaviorSanitizer.  Warnings are errors in both builds.
#
# Build directories: build-test/ and build-asan/ (kept for inspection).
# Exit status 0 only if both runs pass.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh test

run_suite() {
    local dir=$1; shift
    if [ -d "$dir" ]; then
        meson setup --reconfigure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@" >/dev/null
    fi
    ninja -C "$dir"
    # A failing suite must not stop the second run from being reported.
    meson test -C "$dir" --print-errorlogs --num-processes "$(nproc)" || return 1
}

status=0
echo "=== normal build ==="
run_suite build-test -Dwerror=true || status=1
echo "=== AddressSanitizer + UndefinedBehaviorSanitizer build ==="
run_suite build-asan -Dwerror=true -Dbuildtype=debug \
    -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fno-sanitize-recover=undefined || status=1

/usr/bin/python3 scripts/test-summary.py build-test/meson-logs/testlog.json \
    build-asan/meson-logs/testlog.json || status=1
exit $status
