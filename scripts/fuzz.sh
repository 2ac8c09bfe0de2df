#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder of outside data (docs/fuzzing.md): cargo-fuzz and
# libFuzzer on the stable toolchain, without a sanitizer.
#
#   scripts/fuzz.sh [TARGET] [SECONDS]   one target, or all, for SECONDS each (default 60); what
#                                        they find is kept in the build folder's corpus
#   scripts/fuzz.sh --brief              every target for about 15 s (PARLEY_FUZZ_SECONDS), for
#                                        the test suite; adds nothing to the corpus
#   scripts/fuzz.sh --list               the targets
#   scripts/fuzz.sh --repro TARGET FILE  runs TARGET once on FILE (a crash, or any input)
#   scripts/fuzz.sh --merge [TARGET]     adds what the runs found to fuzz/corpus, minimised
#   scripts/fuzz.sh --seed               rewrites the seed inputs (fuzz/corpus/*/seed-*)
#
# Exits non-zero when a target crashes (a panic, a broken invariant, a hang of 10 s or a
# process over 2 GiB), after printing where the input that did it was saved.
# Builds in $PARLEY_FUZZ_TARGET_DIR (default ~/.cache/parley-fuzz-target), never in the
# workspace's build folder; installs cargo-fuzz when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

target_dir=${PARLEY_FUZZ_TARGET_DIR:-$HOME/.cache/parley-fuzz-target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo_fuzz_version=0.13.2

targets() { (cd fuzz/fuzz_targets && ls -- *.rs | sed 's/\.rs$//'); }

usage() {
    sed -n '5,12s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

# The longest input each target is given: a little over the decoder's own cap where it has
# one, so the fuzzer reaches the refusal too.
max_len() {
    case $1 in
        envelope_open | envelope_header) echo 25000 ;; # envelope cap 24 KiB
        message_protocol) echo 36000 ;;                # a request frame: at most 28 793 bytes
        attachment_stream) echo 4300 ;;                # the target's 4 KiB cap + head
        *) echo 8192 ;;
    esac
}

ensure_cargo_fuzz() {
    command -v cargo >/dev/null || { echo "cargo is missing: install Rust (https://rustup.rs) first" >&2; exit 1; }
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "==> installing cargo-fuzz $cargo_fuzz_version"
        cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
    fi
}

# The fuzz crate is its own workspace, its lock file a copy of the workspace's plus libFuzzer.
# When a workspace crate gained a dependency, the copy is refreshed, so the two never drift.
ensure_lock() {
    if ! cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null 2>&1; then
        echo "==> fuzz/Cargo.lock is out of date: refreshing it from Cargo.lock (commit the result)"
        cp Cargo.lock fuzz/Cargo.lock
        cargo metadata --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
    fi
}

build() {
    ensure_cargo_fuzz
    ensure_lock
    echo "==> building the fuzz targets in $target_dir"
    # Release with debug assertions (overflow checks); --sanitizer none works on stable Rust.
    cargo fuzz build --fuzz-dir fuzz --sanitizer none --debug-assertions --target-dir "$target_dir" "$@"
    bin_dir=$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release
}

# run TARGET SECONDS WORK_CORPUS: fuzzes TARGET, new inputs go to WORK_CORPUS, the committed
# corpus is read only. Returns non-zero on a crash, after saying where the input is.
run() {
    local target=$1 seconds=$2 work=$3 log status artifacts
    log=$(mktemp)
    artifacts=$root/fuzz/artifacts/$target
    mkdir -p "$work" "$artifacts"
    status=0
    "$bin_dir/$target" "$work" "fuzz/corpus/$target" \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    local runs coverage
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    coverage=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+' "$log" | tail -n1)
    if [ "$status" -ne 0 ]; then
        echo "FAIL  $target: exit $status after ${runs:-?} runs"
        grep -m1 -A1 'panicked at' "$log" | sed 's/^/      /' || true
        grep -m1 'ERROR: libFuzzer' "$log" | sed 's/^/      /' || true
        local input
        input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
        if [ -n "$input" ]; then
            echo "      crashing input: $input"
            echo "      reproduce with: scripts/fuzz.sh --repro $target $input"
        else
            echo "      no input was saved; the log follows"
            tail -n 30 "$log" | sed 's/^/      | /'
        fi
    else
        echo "ok    $target: ${runs:-?} runs in ${seconds} s, $coverage"
    fi
    rm -f "$log"
    return "$status"
}

run_all() {
    local seconds=$1 keep=$2 failed=() target work
    shift 2
    for target in "$@"; do
        if [ "$keep" = keep ]; then
            work=$target_dir/corpus/$target
        else
            work=$(mktemp -d)
        fi
        run "$target" "$seconds" "$work" || failed+=("$target")
        [ "$keep" = keep ] || rm -rf "$work"
    done
    if [ ${#failed[@]} -gt 0 ]; then
        echo "fuzzing found crashes in: ${failed[*]}" >&2
        exit 1
    fi
}

case ${1:-} in
    -h | --help) usage ;;
    --list) targets ;;
    --brief)
        [ $# -eq 1 ] || usage
        build
        # shellcheck disable=SC2046
        run_all "${PARLEY_FUZZ_SECONDS:-15}" scratch $(targets)
        ;;
    --repro)
        [ $# -eq 3 ] || usage
        build "$2"
        "$bin_dir/$2" -runs=1 "$3"
        ;;
    --merge)
        [ $# -le 2 ] || usage
        build ${2:+"$2"}
        for target in ${2:-$(targets)}; do
            [ -d "$target_dir/corpus/$target" ] || continue
            # Only inputs that reach edges the committed ones do not are added. (Not while a
            # run of the same target is changing its corpus.)
            log=$(mktemp)
            if "$bin_dir/$target" -set_cover_merge=1 -use_counters=0 -max_len="$(max_len "$target")" \
                "fuzz/corpus/$target" "$target_dir/corpus/$target" >"$log" 2>&1; then
                sed -n "s/^MERGE-OUTER: \([0-9]* new files\).*/$target: \1/p" "$log"
            else
                echo "$target: the merge failed; its log follows" >&2
                tail -n 20 "$log" >&2
            fi
            rm -f "$log"
        done
        du -sh fuzz/corpus
        ;;
    --seed)
        [ $# -eq 1 ] || usage
        ensure_lock
        # An ordinary build (no libFuzzer, no instrumentation), in its own folder.
        CARGO_TARGET_DIR=$target_dir/seed cargo run --quiet --locked \
            --manifest-path fuzz/Cargo.toml --features seed --bin seed -- "$root/fuzz/corpus"
        ;;
    -*) usage ;;
    *)
        target=${1:-}
        seconds=${2:-60}
        if [ -n "$target" ] && ! targets | grep -qx -- "$target"; then
            echo "no fuzz target named $target; the targets are:" >&2
            targets >&2
            exit 2
        fi
        case $seconds in '' | *[!0-9]*) usage ;; esac
        build ${target:+"$target"}
        # shellcheck disable=SC2046
        run_all "$seconds" keep ${target:-$(targets)}
        ;;
esac
