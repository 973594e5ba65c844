#!/bin/bash
# run-demo.sh: install what is missing, build correo, generate a demo
# Maildir++ tree under demo/ (once; delete demo/ to make a new one) and open
# correo on it.  Extra arguments are passed to correo (e.g. -l for a
# non-interactive listing).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh build

if [ ! -d build ]; then
    meson setup build -Dtests=false >/dev/null
fi
ninja -C build >/dev/null

if [ ! -d demo/Maildir ]; then
    /usr/bin/python3 tests/tools/gen-corpus.py demo/Maildir --count 300 --seed 7
fi
# The demo's own configuration: $folder is the demo tree, so "=.Work" and
# the folder browser work; keymaps and themes come from this checkout.
if [ ! -f demo/correorc ]; then
    printf 'set folder="%s"\nset sort=threads\nset sort_aux=last-date\n' "$PWD/demo/Maildir" > demo/correorc
fi
export CORREO_DATADIR_OVERRIDE="$PWD"
exec build/mua/correo -F demo/correorc -f demo/Maildir "$@"
