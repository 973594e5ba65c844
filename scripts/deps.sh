#!/bin/bash
# deps.sh: install the Debian 12 packages correo needs, and nothing else.
#
#   scripts/deps.sh build    what building correo and correod needs
#   scripts/deps.sh test     that, plus what the test suite needs
#
# Only missing packages are installed.  While packages are installed a
# policy-rc.d that refuses every service start is in place, so that server
# packages pulled in for the tests (they run private instances on loopback)
# never start system-wide; it is removed again afterwards.
set -euo pipefail

build_pkgs=(
    meson ninja-build pkg-config gcc libc6-dev
    libncurses-dev libssl-dev libetpan-dev libnotmuch-dev liblmdb-dev libmagic-dev
    libevent-dev libcrypt-dev
    python3
)
test_pkgs=(
    libcmocka-dev openssl python3-pexpect python3-pyte python3-aiosmtpd
    swaks python3-dkim dovecot-core dovecot-imapd dovecot-pop3d notmuch fetchmail
)

want=("${build_pkgs[@]}")
case "${1:-build}" in
    build) ;;
    test) want+=("${test_pkgs[@]}") ;;
    *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: these packages are missing and installing them needs root:" >&2
    echo "  ${missing[*]}" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}"
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    made_policy=1
fi
cleanup() { [ "$made_policy" -eq 1 ] && rm -f "$policy"; return 0; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
