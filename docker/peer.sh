#!/bin/sh
# Container entry point of a peer: enroll once (the home is a volume), then run the daemon.
# PARLEY_SERVER, PARLEY_USER and PARLEY_PASSWORD come from docker-compose.yml;
# PARLEY_CA_FINGERPRINT pins the CA when given, otherwise it is trusted on first use (and
# `parley enroll` says so).
set -eu
: "${PARLEY_HOME:=/data}" "${PARLEY_SERVER:?}" "${PARLEY_USER:?}" "${PARLEY_PASSWORD:?}"
export PARLEY_HOME PARLEY_PASSWORD
if [ ! -d "$PARLEY_HOME/store" ]; then
    pin=""
    if [ -n "${PARLEY_CA_FINGERPRINT:-}" ]; then pin="--ca-fingerprint $PARLEY_CA_FINGERPRINT"; fi
    # The rendezvous may still be starting.
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        # shellcheck disable=SC2086
        if parley enroll --server "$PARLEY_SERVER" --user "$PARLEY_USER" $pin; then break; fi
        [ "$attempt" = 10 ] && exit 1
        sleep 2
    done
fi
exec parley daemon --listen /ip4/0.0.0.0/tcp/7000
