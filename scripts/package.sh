#!/usr/bin/env bash
# Builds the Debian packages (amd64) from the workspace, offline:
#   parley             the CLI and daemon, its user unit, completions and manual pages
#   parley-rendezvous  the rendezvous, its hardened system unit and /etc/default file
#   parley-desktop     the desktop app, its .desktop entry (and parley: links) and icon
# Each is staged in a folder and built with `dpkg-deb --build --root-owner-group`; the
# completions and manual pages come from each program's own clap definition
# (PARLEY_WRITE_ASSETS=DIR), the dependencies from dpkg-shlibdeps. See docs/operations.md.
#
#   scripts/package.sh [--profile release|debug] [--out DIR] [--no-build]
#
# Default: release, into $CARGO_TARGET_DIR/debian. --no-build packages what is built already.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=""
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="${2:-}"; shift 2 ;;
        --out) out="${2:-}"; shift 2 ;;
        --no-build) build=0; shift ;;
        *) echo "usage: scripts/package.sh [--profile release|debug] [--out DIR] [--no-build]" >&2; exit 2 ;;
    esac
done
case "$profile" in
    release) cargo_profile=(--release); dir=release; compress=(-Zxz) ;;
    debug) cargo_profile=(); dir=debug; compress=(-Zgzip -z1) ;;
    *) echo "--profile is release or debug, not ${profile:-nothing}" >&2; exit 2 ;;
esac
for tool in dpkg-deb dpkg-shlibdeps gzip python3 strip; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install dpkg-dev binutils)" >&2; exit 1; }
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/parley-target}"
out="${out:-$CARGO_TARGET_DIR/debian}"
bin="$CARGO_TARGET_DIR/$dir"
if [ "$build" = 1 ]; then
    cargo build --locked "${cargo_profile[@]}" --bin parley --bin parley-rendezvous --bin parley-desktop
fi
for program in parley parley-rendezvous parley-desktop; do
    [ -x "$bin/$program" ] || { echo "$bin/$program is not built" >&2; exit 1; }
done

version="$(cargo metadata --format-version 1 --no-deps --offline | python3 -c '
import json, sys
meta = json.load(sys.stdin)
print(next(p["version"] for p in meta["packages"] if p["name"] == "parley-cli"))')"
arch=amd64
maintainer="Parley developers <parley@example.org>"
homepage="https://github.com/parley-messenger/parley"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# stage PACKAGE: an empty tree with the documentation every package carries.
stage() {
    local root="$work/$1"
    install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/doc/$1"
    cat > "$root/usr/share/doc/$1/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: Parley
Source: $homepage

Files: *
Copyright: 2025-2026 Parley developers
License: AGPL-3.0-or-later
 This program is free software: you can redistribute it and/or modify it under the terms
 of the GNU Affero General Public License as published by the Free Software Foundation,
 either version 3 of the License, or (at your option) any later version.
 .
 This program is distributed in the hope that it will be useful, but WITHOUT ANY
 WARRANTY; without even the implied warranty of MERCHANTABILITY or FITNESS FOR A
 PARTICULAR PURPOSE. See the GNU Affero General Public License for more details.
 .
 The full text of the license is at https://www.gnu.org/licenses/agpl-3.0.txt
EOF
    {
        printf '%s (%s) unstable; urgency=medium\n\n' "$1" "$version"
        printf '  * Release %s, built from the Parley workspace.\n\n' "$version"
        printf ' -- %s  %s\n' "$maintainer" "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")"
    } | gzip -9n > "$root/usr/share/doc/$1/changelog.gz"
    chmod 0644 "$root/usr/share/doc/$1/copyright" "$root/usr/share/doc/$1/changelog.gz"
}

# program PACKAGE PROGRAM: the binary (stripped for release), its completions and pages.
program() {
    local root="$work/$1" assets="$work/assets-$2"
    install -m 0755 "$bin/$2" "$root/usr/bin/$2"
    if [ "$profile" = release ]; then
        strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/$2"
    fi
    PARLEY_WRITE_ASSETS="$assets" "$bin/$2"
    install -D -m 0644 "$assets/bash/$2" "$root/usr/share/bash-completion/completions/$2"
    install -D -m 0644 "$assets/zsh/_$2" "$root/usr/share/zsh/vendor-completions/_$2"
    install -D -m 0644 "$assets/fish/$2.fish" "$root/usr/share/fish/vendor_completions.d/$2.fish"
    install -d -m 0755 "$root/usr/share/man/man1"
    local page
    for page in "$assets"/man/*.1; do
        gzip -9n < "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"
        chmod 0644 "$root/usr/share/man/man1/$(basename "$page").gz"
    done
}

# depends PACKAGE [EXTRA]: the shared libraries' packages of its binaries, plus EXTRA.
depends() {
    local root="$work/$1" shlibs
    mkdir -p "$work/shlibs-$1/debian"
    printf 'Source: parley\n\nPackage: %s\nArchitecture: %s\n' "$1" "$arch" > "$work/shlibs-$1/debian/control"
    shlibs="$(cd "$work/shlibs-$1" && dpkg-shlibdeps -O "$root"/usr/bin/* 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
    [ -n "$shlibs" ] || { echo "dpkg-shlibdeps found no dependencies for $1" >&2; exit 1; }
    printf '%s%s' "$shlibs" "${2:+, $2}"
}

# control PACKAGE SECTION DEPENDS SUMMARY DESCRIPTION
control() {
    local root="$work/$1" size
    size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
    cat > "$root/DEBIAN/control" <<EOF
Package: $1
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: $3
Section: $2
Priority: optional
Homepage: $homepage
Description: $4
$5
EOF
    dpkg-deb --build --root-owner-group "${compress[@]}" "$root" "$out/${1}_${version}_${arch}.deb" >/dev/null
    echo "$out/${1}_${version}_${arch}.deb"
}

# The CLI and daemon.
stage parley
program parley parley
install -D -m 0644 packaging/parley-daemon.service "$work/parley/usr/lib/systemd/user/parley-daemon.service"
control parley net "$(depends parley)" \
    "peer-to-peer secure messenger (command line and daemon)" \
" Parley is a peer-to-peer messenger: people chat device to device over mutual
 TLS 1.3, with end-to-end sealed and signed messages; a small rendezvous server
 certifies devices and helps them find each other.
 .
 This package holds the headless peer: parley enroll, parley daemon and the
 commands that talk to it, with a systemd user unit for the daemon."

# The rendezvous, as a hardened system service.
stage parley-rendezvous
program parley-rendezvous parley-rendezvous
install -D -m 0644 packaging/parley-rendezvous.service "$work/parley-rendezvous/usr/lib/systemd/system/parley-rendezvous.service"
install -D -m 0644 packaging/parley-rendezvous.default "$work/parley-rendezvous/etc/default/parley-rendezvous"
echo /etc/default/parley-rendezvous > "$work/parley-rendezvous/DEBIAN/conffiles"
install -m 0755 packaging/postinst.rendezvous "$work/parley-rendezvous/DEBIAN/postinst"
install -m 0755 packaging/postrm.rendezvous "$work/parley-rendezvous/DEBIAN/postrm"
chmod 0644 "$work/parley-rendezvous/DEBIAN/conffiles"
control parley-rendezvous net "$(depends parley-rendezvous adduser)" \
    "rendezvous server of the Parley messenger" \
" Parley is a peer-to-peer messenger: people chat device to device over mutual
 TLS 1.3, with end-to-end sealed and signed messages.
 .
 The rendezvous is a group's certificate authority, enrollment API, directory,
 relay and mailbox; it never reads a message. This package runs it as a
 hardened systemd service with its data in /var/lib/parley-rendezvous."

# The desktop app.
stage parley-desktop
program parley-desktop parley-desktop
install -D -m 0644 packaging/parley-desktop.desktop "$work/parley-desktop/usr/share/applications/parley-desktop.desktop"
install -D -m 0644 desktop/icons/icon.png "$work/parley-desktop/usr/share/icons/hicolor/256x256/apps/parley-desktop.png"
# WebKitGTK's runtime libraries come from dpkg-shlibdeps (libwebkit2gtk-4.1-0, libgtk-3-0, …):
# never the -dev packages.
control parley-desktop net "$(depends parley-desktop)" \
    "peer-to-peer secure messenger (desktop app)" \
" Parley is a peer-to-peer messenger: people chat device to device over mutual
 TLS 1.3, with end-to-end sealed and signed messages; a small rendezvous server
 certifies devices and helps them find each other.
 .
 This package holds the desktop app, which runs the same peer in a window and
 opens parley: links."
