#!/usr/bin/env bash
# The Alice-and-Bob scenario against the docker compose stack (needs a Docker engine):
# builds and starts the stack, sends the three messages, checks both histories, and leaves the
# stack running so the traces can be read at http://localhost:16686.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v docker >/dev/null || { echo "docker is not installed" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "no Docker engine is running: docker compose cannot start the stack" >&2; exit 1; }
docker compose up --build --detach --wait
peer() { docker compose exec -T "$1" parley --home /data "${@:2}"; }
peer alice send bob "salut bob, c est alice" >/dev/null
peer bob send alice "salut alice !" >/dev/null
peer alice send bob "salut bob, c est alice" >/dev/null
expected="alice: salut bob, c est alice
bob: salut alice !
alice: salut bob, c est alice"
lines() { sed -E 's/^[^ ]+ ([a-z0-9_-]+): (.*)  \[[^]]*\]$/\1: \2/'; }
alice_side=$(peer alice history bob | lines)
bob_side=$(peer bob history alice | lines)
[ "$alice_side" = "$expected" ] || { echo "alice's history is wrong:"; echo "$alice_side"; exit 1; }
[ "$bob_side" = "$expected" ] || { echo "bob's history is wrong:"; echo "$bob_side"; exit 1; }
echo "compose scenario: 1 passed, 0 failed; traces at http://localhost:16686 (docker compose down to stop)"
