#!/bin/bash
# Makes the previous release's store fixture: alice's home after a short conversation with bob,
# one message of hers still in the outbox (held by the mailbox), passphrase "fixture passphrase".
#
#   OLD=<the previous release's parley> RV=<a parley-rendezvous> ./make.sh <folder to create>
set -euo pipefail
OLD=${OLD:?set OLD to the parley binary of the previous release}
RV=${RV:?set RV to a parley-rendezvous binary}
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT
"$RV" --data "$W/rv" --https 127.0.0.1:0 --p2p /ip4/127.0.0.1/tcp/0 > "$W/rv.out" 2>/dev/null &
for i in $(seq 50); do grep -q '^invite:' "$W/rv.out" 2>/dev/null && break; sleep 0.2; done
URL=$(sed -n 's/^https: //p' "$W/rv.out"); FP=$(sed -n 's/^ca-fingerprint: //p' "$W/rv.out")
export PARLEY_PASSPHRASE="fixture passphrase"
for u in alice bob; do PARLEY_PASSWORD="fixture password" "$OLD" --home "$W/$u" enroll --server "$URL" --user $u --ca-fingerprint "$FP" </dev/null; done
start() { "$OLD" --home "$W/$1" daemon --listen /ip4/127.0.0.1/tcp/0 > "$W/$1.out" 2>/dev/null & eval "PID_$1=$!"; for i in $(seq 100); do [ -S "$W/$1/control.sock" ] && break; sleep 0.1; done; sleep 1; }
start alice; start bob
"$OLD" --home "$W/alice" send bob "hello from the previous release"
"$OLD" --home "$W/bob" send alice "and back, before the upgrade"
printf 'an attachment kept across the upgrade\n' > "$W/note.txt"
"$OLD" --home "$W/alice" send bob "with a file" --attach "$W/note.txt"
kill $PID_bob; wait $PID_bob 2>/dev/null || true
"$OLD" --home "$W/alice" send bob "waiting in the outbox" || true
"$OLD" --home "$W/alice" status
kill $PID_alice; wait $PID_alice 2>/dev/null || true
rm -f "$W/alice/control.sock"
cp -a "$W/alice" "${1:-./alice}"
du -sh "${1:-./alice}"
