#!/usr/bin/env bash
# Installs what is missing on a Debian machine, then runs every check and test:
# formatting, lints, the workspace's tests (among them the crash campaign, the disk and network
# fault tests, the hostile-input table, the TLS audit, and the desktop app in a real window
# under Xvfb, whose screenshot lands in $CARGO_TARGET_DIR/artifacts/), the Alice-and-Bob scenario with real
# processes, a short run of the benchmark (that it runs and prints valid JSON; its figures are
# not judged here), a short run of every fuzz target, and static checks of the compose file and
# Dockerfile, and the Debian packages (built from the debug build, checked with lintian,
# installed into a throw-away root and tried).
#
# The fault tests need root (a tmpfs, network namespaces); run as another user they say so and
# are skipped. Longer campaigns: see docs/reliability.md.
#
#   ./test.sh             everything above (no Docker needed)
#   ./test.sh --compose   only the scenario against the docker compose stack (needs Docker)
set -euo pipefail
cd "$(dirname "$0")"

# A build cache outside the clone keeps repeated runs fast; a machine without it builds anew.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/parley-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Each stage says how long it took when the next one starts, and a table of every stage's
# time closes the run (also when it fails), so a slow stage shows in CI's log.
stage_names=()
stage_seconds=()
stage_start=$SECONDS
end_stage() {
    [ ${#stage_names[@]} -gt ${#stage_seconds[@]} ] || return 0
    local took=$((SECONDS - stage_start))
    stage_seconds+=("$took")
    printf '    (%s: %dm%02ds)\n' "${stage_names[-1]}" $((took / 60)) $((took % 60))
}
step() {
    end_stage
    stage_names+=("$*")
    stage_start=$SECONDS
    printf '\n==> %s\n' "$*"
}
stage_summary() {
    local status=$?
    end_stage
    [ ${#stage_names[@]} -gt 0 ] || return 0
    printf '\n==> time per stage\n'
    local i
    for i in "${!stage_seconds[@]}"; do
        printf '  %4dm%02ds  %s\n' $((stage_seconds[i] / 60)) $((stage_seconds[i] % 60)) "${stage_names[i]}"
    done
    printf '  %4dm%02ds  in all\n' $((SECONDS / 60)) $((SECONDS % 60))
    return $status
}
trap stage_summary EXIT

if [ "${1:-}" = "--compose" ]; then
    exec scripts/compose-scenario.sh
fi

install_system_packages() {
    # C toolchain for aws-lc-sys and libFuzzer; pkg-config; certificates for the registries;
    # openssl and sslscan for the TLS audit; iproute2 (ip, tc), nftables and conntrack for the
    # network lab of namespaces behind NAT routers.
    local missing=()
    command -v cc >/dev/null || missing+=(build-essential)
    command -v c++ >/dev/null || missing+=(g++)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v sslscan >/dev/null || missing+=(sslscan)
    { command -v ip && command -v tc; } >/dev/null || missing+=(iproute2)
    command -v nft >/dev/null || missing+=(nftables)
    command -v conntrack >/dev/null || missing+=(conntrack)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    command -v perl >/dev/null || missing+=(perl)
    command -v python3 >/dev/null || missing+=(python3)
    # curl: the HTTPS refusal tests send oversized bodies the way curl does.
    command -v curl >/dev/null || missing+=(curl)
    # oathtool: the second-factor tests check codes against an independent RFC 6238 one.
    command -v oathtool >/dev/null || missing+=(oathtool)
    # The packages' check: dpkg-deb and dpkg-shlibdeps, lintian, man, systemd-analyze and
    # bash-completion.
    command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
    command -v lintian >/dev/null || missing+=(lintian)
    command -v man >/dev/null || missing+=(man-db)
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    [ -r /usr/share/bash-completion/bash_completion ] || missing+=(bash-completion)
    [ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing system packages: ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
        exit 1
    fi
    step "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

install_rust_tools() {
    command -v cargo >/dev/null || { echo "cargo is missing: install Rust (https://rustup.rs) first" >&2; exit 1; }
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            step "installing $component"
            rustup component add "$component"
        fi
    done
}

install_python_yaml() {
    python3 -c 'import yaml' 2>/dev/null && return 0
    step "installing PyYAML"
    python3 -m pip install --quiet pyyaml 2>/dev/null || {
        [ "$(id -u)" -eq 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-yaml
    }
}

step "what is missing, installed"
install_system_packages
install_rust_tools
install_python_yaml
# WebKitGTK for the desktop app, Xvfb, WebKitWebDriver and tauri-driver for its window test.
scripts/desktop-deps.sh

step "formatting"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked

step "scenario: alice and bob over a real rendezvous"
scripts/scenario.sh "$CARGO_TARGET_DIR/debug"

step "benchmark, short run (runs, prints valid JSON; figures are not judged here)"
cargo build --workspace --bins --locked --quiet
"$CARGO_TARGET_DIR/debug/parley-bench" --quick --json > "$CARGO_TARGET_DIR/bench-quick.json"
python3 scripts/check-bench.py "$CARGO_TARGET_DIR/bench-quick.json"

step "Debian packages from the debug build: lintian, a throw-away install, programs, pages, units, completion"
scripts/package-check.sh

step "fuzzing, short run (every target for 15 s; a crash fails)"
scripts/fuzz.sh --brief

step "compose file and Dockerfile (static; no Docker engine needed)"
python3 scripts/check-compose.py
