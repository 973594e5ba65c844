#!/bin/bash
# run-demo.sh: install what is missing, build correo and correod, and open
# correo on a self-contained mail setup under demo/:
#
#   demo/server/     a correod instance (made once with `correod init`) for
#                    the domain demo.test on 127.0.0.1, with the user
#                    demo@demo.test (password "demo") whose Maildir++ tree
#                    is filled with generated mail the first time
#   demo/correorc    correo's configuration: that Maildir, and sending through
#                    correod's submission port (STARTTLS, certificate pinned)
#
# correod runs while correo is open and is stopped when it exits, so mail
# sent to demo@demo.test arrives in the inbox a moment later.  Delete demo/
# to start afresh.  Extra arguments are passed to correo (e.g. -l for a
# non-interactive listing).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh build

if [ ! -d build ]; then
    meson setup build -Dtests=false >/dev/null
fi
ninja -C build >/dev/null

correod=build/localserver/correod
server=demo/server
user=demo
domain=demo.test
maildir="$PWD/$server/mail/$domain/$user"

if [ ! -f "$server/correod.conf" ]; then
    mkdir -p demo
    # A port offset whose SMTP ports are all free on 127.0.0.1 now.
    offset=$(/usr/bin/python3 - <<'EOF'
import random, socket
for _ in range(500):
    n = random.randrange(20000, 60000)
    ok = True
    for p in (25, 465, 587, 110, 143, 993, 995):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p + n))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(n)
        break
EOF
)
    "$correod" init "$server" --domain "$domain" --listen 127.0.0.1 \
        --port-offset "$offset" >/dev/null
    printf 'demo\n' | "$correod" user add -c "$server/correod.conf" "$user" \
        --password-stdin >/dev/null
fi
offset=$(sed -n 's/^port_offset[[:space:]]*//p' "$server/correod.conf" | head -1)
offset=${offset:-0}

# Generated mail, once: threads, lists, attachments, several charsets.
if [ ! -e "$maildir/.demo-corpus" ]; then
    rm -rf demo/corpus
    /usr/bin/python3 tests/tools/gen-corpus.py demo/corpus --count 300 --seed 7 >/dev/null
    cp -a demo/corpus/. "$maildir/"
    rm -rf demo/corpus
    touch "$maildir/.demo-corpus"
fi

if [ ! -f demo/correorc ]; then
    fp=$(openssl x509 -noout -fingerprint -sha256 -in "$server/cert.pem" | cut -d= -f2)
    cat > demo/correorc <<EOF
# correo's configuration for the demo: the Maildir that correod delivers
# to, and sending through correod's submission port.
set folder="$maildir"
set spoolfile="$maildir"
set record="+Sent"
set postponed="+Drafts"
set from="Demo User <$user@$domain>"
set smtp_url="smtp://$user@127.0.0.1:$((587 + offset))"
set smtp_pass="demo"
set tls_fingerprint="$fp"
set sort=threads
set sort_aux=last-date
EOF
fi

"$correod" run -f -c "$server/correod.conf" >demo/correod.log 2>&1 &
correod_pid=$!
trap 'kill -TERM "$correod_pid" 2>/dev/null; wait "$correod_pid" 2>/dev/null || true' EXIT
# Wait (at most 10 s) until correod accepts connections.
for _ in $(seq 100); do
    if ! kill -0 "$correod_pid" 2>/dev/null; then
        echo "correod did not start; see demo/correod.log" >&2
        exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$((587 + offset))") 2>/dev/null; then
        break
    fi
    sleep 0.1
done

export CORREO_DATADIR_OVERRIDE="$PWD"
build/mua/correo -F demo/correorc -f "$maildir" "$@"
