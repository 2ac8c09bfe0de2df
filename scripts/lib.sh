# Shared helpers for the scripts: process bookkeeping and waiting on printed lines.
# Every process started with `spawn` is stopped on exit, even on failure.

PARLEY_PIDS=()

spawn() { # spawn OUT ERR CMD... : start CMD in the background, stdout to OUT, stderr to ERR
    local out=$1 err=$2
    shift 2
    "$@" >"$out" 2>"$err" &
    PARLEY_PIDS+=("$!")
}

stop_all() {
    local pid
    for pid in "${PARLEY_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PARLEY_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PARLEY_PIDS=()
}

# wait_line FILE REGEX SECONDS: prints the first line of FILE matching REGEX, or fails.
wait_line() {
    local file=$1 regex=$2 seconds=$3 line
    for _ in $(seq $((seconds * 10))); do
        line=$(grep -m1 -E "$regex" "$file" 2>/dev/null || true)
        if [ -n "$line" ]; then
            printf '%s\n' "$line"
            return 0
        fi
        sleep 0.1
    done
    echo "timed out after ${seconds}s waiting for /$regex/ in $file" >&2
    [ -f "$file" ] && sed 's/^/  | /' "$file" >&2
    return 1
}

# wait_registered PARLEY HOME SECONDS: waits until the daemon is known to the directory.
wait_registered() {
    local parley=$1 home=$2 seconds=$3
    for _ in $(seq $((seconds * 10))); do
        local out
        out=$("$parley" --home "$home" status 2>/dev/null || true)
        case "$out" in *"rendezvous: connected"*) return 0 ;; esac
        sleep 0.1
    done
    echo "timed out after ${seconds}s waiting for the daemon in $home to reach the rendezvous" >&2
    return 1
}

# start_rendezvous BIN DATA: starts a rendezvous on loopback ports chosen by the system and
# sets RV_URL and RV_FINGERPRINT.
start_rendezvous() {
    local bin=$1 data=$2
    spawn "$data.out" "$data.log" "$bin/parley-rendezvous" --data "$data" \
        --https 127.0.0.1:0 --p2p /ip4/127.0.0.1/tcp/0
    wait_line "$data.out" '^p2p: ' 30 >/dev/null
    RV_FINGERPRINT=$(wait_line "$data.out" '^ca-fingerprint: ' 1 | cut -d' ' -f2)
    RV_URL=$(wait_line "$data.out" '^https: ' 1 | cut -d' ' -f2)
}

# start_peer BIN HOME USER PASSWORD: enrolls HOME as USER (pinning the CA) and starts its daemon.
start_peer() {
    local bin=$1 home=$2 user=$3 password=$4
    PARLEY_PASSWORD=$password "$bin/parley" --home "$home" enroll --server "$RV_URL" \
        --user "$user" --ca-fingerprint "$RV_FINGERPRINT" >/dev/null
    spawn "$home.out" "$home.log" "$bin/parley" --home "$home" daemon --listen /ip4/127.0.0.1/tcp/0
    wait_line "$home.out" '^control: ' 30 >/dev/null
    wait_registered "$bin/parley" "$home" 30
}

# conversation BIN HOME USER: the conversation as "from: text" lines.
conversation() {
    "$1/parley" --home "$2" history "$3" | sed -E 's/^[^ ]+ ([a-z0-9_-]+): (.*)  \[[^]]*\]$/\1: \2/'
}
