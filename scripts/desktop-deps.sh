#!/usr/bin/env bash
# Installs, on Debian 12, what the desktop app (desktop/) needs to build and what its window test
# (desktop/tests/window.rs) needs to run: WebKitGTK and friends, Xvfb, WebKitWebDriver, and
# tauri-driver 2.x from crates.io. Idempotent; prints nothing when everything is there.
# The apt packages need root; run as another user, it prints the command to run and exits 1.
#
#   scripts/desktop-deps.sh
set -euo pipefail

packages=(
    libwebkit2gtk-4.1-dev         # WebKitGTK 4.1: Tauri's webview on Linux
    libxdo-dev                    # Tauri's menu accelerators
    libayatana-appindicator3-dev  # tray icon support linked by tauri
    librsvg2-dev                  # icons
    webkit2gtk-driver             # /usr/bin/WebKitWebDriver, which tauri-driver drives
    xvfb                          # a virtual X display for the window test
    xauth
)

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=()
for pkg in "${packages[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing system packages for the desktop app: ${missing[*]}" >&2
        echo "install them as root: apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "==> installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v tauri-driver >/dev/null 2>&1; then
    command -v cargo >/dev/null || { echo "cargo is missing: install Rust (https://rustup.rs) first" >&2; exit 1; }
    # crates.io also lists 3.0 alphas: stay on 2.x, which drives Tauri 2 apps.
    echo "==> installing tauri-driver 2.x"
    cargo install tauri-driver --version '^2' --locked --quiet
fi
