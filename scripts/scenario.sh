#!/usr/bin/env bash
# The Alice-and-Bob scenario with real processes: a rendezvous on system-chosen loopback ports,
# bob and alice enrolled and running, three messages, and both histories checked.
# Usage: scripts/scenario.sh [BIN_DIR]   (default: $CARGO_TARGET_DIR/debug)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
bin=${1:-${CARGO_TARGET_DIR:-$here/../target}/debug}
work=$(mktemp -d)
trap 'status=$?; stop_all; if [ $status -ne 0 ]; then for f in "$work"/*.log; do echo "== $f" >&2; tail -n 20 "$f" >&2; done; fi; rm -rf "$work"' EXIT

start_rendezvous "$bin" "$work/rendezvous"
start_peer "$bin" "$work/bob" bob "bob's password"
start_peer "$bin" "$work/alice" alice "alice's password"

"$bin/parley" --home "$work/alice" send bob "salut bob, c est alice" >/dev/null
"$bin/parley" --home "$work/bob" send alice "salut alice !" >/dev/null
"$bin/parley" --home "$work/alice" send bob "salut bob, c est alice" >/dev/null

expected="alice: salut bob, c est alice
bob: salut alice !
alice: salut bob, c est alice"
alice_side=$(conversation "$bin" "$work/alice" bob)
bob_side=$(conversation "$bin" "$work/bob" alice)
fail=0
if [ "$alice_side" != "$expected" ]; then echo "alice's history is wrong:"; echo "$alice_side"; fail=1; fi
if [ "$bob_side" != "$expected" ]; then echo "bob's history is wrong:"; echo "$bob_side"; fail=1; fi
[ "$fail" = 0 ] || exit 1
if "${PARLEY_SCENARIO_PRINT:-false}"; then
    echo "alice's view:"; "$bin/parley" --home "$work/alice" history bob
    echo "bob's view:"; "$bin/parley" --home "$work/bob" history alice
fi
echo "scenario: 1 passed, 0 failed"
