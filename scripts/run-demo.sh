#!/bin/bash
# run-demo.sh: install what is missing, build correo, generate a demo
# Maildir++ tree under demo/ (once; delete demo/ to make a new one) and open
# correo on it.  Extra arguments are passed to correo.
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
exec build/mua/correo -f demo/Maildir "$@"
