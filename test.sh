#!/usr/bin/env bash
# Installs what is missing on a Debian machine, then runs every check and test:
# formatting, lints, the workspace's tests, and the Alice-and-Bob scenario with real processes.
set -euo pipefail
cd "$(dirname "$0")"

# A build cache outside the clone keeps repeated runs fast; a machine without it builds anew.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/parley-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

install_system_packages() {
    # C toolchain for aws-lc-sys; pkg-config; certificates for the registries.
    local missing=()
    command -v cc >/dev/null || missing+=(build-essential)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    command -v perl >/dev/null || missing+=(perl)
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

install_system_packages
install_rust_tools

step "formatting"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked

step "scenario: alice and bob over a real rendezvous"
scripts/scenario.sh "$CARGO_TARGET_DIR/debug"
