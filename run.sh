#!/usr/bin/env bash
# Parley on this machine, in one command.
#
#   ./run.sh [--user NAME]             with a display: build, start (or reuse) a local
#                                      rendezvous and open the desktop app as NAME (default: your
#                                      login name); its first-run screen comes prefilled
#   ./run.sh [--user NAME] [CONTACT]   without a display (or with --terminal): enroll NAME and
#                                      chat with CONTACT in the terminal
#   ./run.sh --demo                    play the Alice-and-Bob conversation and print it
#   ./run.sh --stop                    stop the local rendezvous
#
# Everything lives in .parley/ next to this script: the rendezvous's data (its CA key among
# it), each local user's home, and the logs.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/parley-target}"
bin="$CARGO_TARGET_DIR/debug"
state="$root/.parley"
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

build() {
    if ! command -v cargo >/dev/null || ! command -v cc >/dev/null; then
        echo "Rust (cargo) and a C compiler are needed; ./test.sh installs the C side on Debian." >&2
        exit 1
    fi
    echo "building parley (the first build takes a few minutes)..." >&2
    cargo build --quiet --locked --bin parley --bin parley-rendezvous "$@"
}

rendezvous_alive() {
    [ -f "$state/rendezvous.pid" ] && kill -0 "$(cat "$state/rendezvous.pid")" 2>/dev/null
}

ensure_rendezvous() {
    mkdir -p "$state" && chmod 700 "$state"
    if rendezvous_alive; then
        echo "reusing the rendezvous (pid $(cat "$state/rendezvous.pid"))" >&2
    else
        # Keep the ports of an earlier run: enrolled users remember the rendezvous's address.
        local https=127.0.0.1:0 p2p=/ip4/127.0.0.1/tcp/0
        if [ -f "$state/rendezvous.out" ]; then
            https=$(sed -n 's#^https: https://##p' "$state/rendezvous.out")
            p2p=$(sed -n 's#^p2p: \(.*\)/p2p/.*#\1#p' "$state/rendezvous.out")
        fi
        nohup "$bin/parley-rendezvous" --data "$state/rendezvous" --https "$https" --p2p "$p2p" \
            >"$state/rendezvous.out.new" 2>"$state/rendezvous.log" &
        echo $! >"$state/rendezvous.pid"
        wait_line "$state/rendezvous.out.new" '^p2p: ' 30 >/dev/null
        mv "$state/rendezvous.out.new" "$state/rendezvous.out"
        echo "started a rendezvous (pid $(cat "$state/rendezvous.pid")); logs in .parley/rendezvous.log" >&2
    fi
    RV_FINGERPRINT=$(sed -n 's/^ca-fingerprint: //p' "$state/rendezvous.out")
    RV_URL=$(sed -n 's/^https: //p' "$state/rendezvous.out")
    echo "rendezvous $RV_URL, CA $RV_FINGERPRINT" >&2
}

case "${1:-}" in
--demo)
    build
    PARLEY_SCENARIO_PRINT=true exec "$root/scripts/scenario.sh" "$bin"
    ;;
--stop)
    if rendezvous_alive; then kill "$(cat "$state/rendezvous.pid")" && echo "rendezvous stopped"; else echo "no rendezvous is running"; fi
    exit 0
    ;;
-h | --help)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

user=$(id -un | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9_-')
terminal=false
while [ $# -gt 0 ]; do
    case "$1" in
    --user) user=${2:?--user needs a name}; shift 2 ;;
    --terminal) terminal=true; shift ;;
    *) break ;;
    esac
done
contact=${1:-}

if [ "$terminal" = false ] && [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    build --bin parley-desktop
    ensure_rendezvous
    echo "opening the desktop app for $user (home .parley/$user); ./run.sh --terminal for the terminal chat" >&2
    exec "$bin/parley-desktop" --home "$state/$user" --listen /ip4/127.0.0.1/tcp/0 \
        --server "$RV_URL" --ca-fingerprint "$RV_FINGERPRINT"
fi
if [ -z "$contact" ]; then
    if [ ! -t 0 ]; then
        echo "usage: ./run.sh [--user NAME] [--terminal] CONTACT (or ./run.sh --demo)" >&2
        exit 2
    fi
    read -r -p "chat with (username): " contact
fi

build
ensure_rendezvous
home="$state/$user"
if [ ! -d "$home/store" ]; then
    echo "enrolling $user; the first enrollment sets the password" >&2
    "$bin/parley" --home "$home" enroll --server "$RV_URL" --user "$user" --ca-fingerprint "$RV_FINGERPRINT" >/dev/null
fi
if "$bin/parley" --home "$home" status >/dev/null 2>&1; then
    echo "reusing the daemon already running for $user" >&2
else
    # The daemon runs in the background, without the terminal: ask for a store passphrase here.
    if [ -z "${PARLEY_PASSPHRASE:-}" ] && grep -q '"mode": *"passphrase"' "$home/store/keyring.json" 2>/dev/null; then
        read -r -s -p "passphrase for $user's message store: " PARLEY_PASSPHRASE
        echo >&2
        export PARLEY_PASSPHRASE
    fi
    trap stop_all EXIT
    spawn "$home.daemon.out" "$home.daemon.log" "$bin/parley" --home "$home" daemon --listen /ip4/127.0.0.1/tcp/0
    wait_line "$home.daemon.out" '^control: ' 30 >/dev/null
fi
wait_registered "$bin/parley" "$home" 30
echo "you are $user; others on this machine can join with ./run.sh --user NAME $user" >&2
"$bin/parley" --home "$home" chat "$contact"
