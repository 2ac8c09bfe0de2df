#!/usr/bin/env bash
# Builds the three Debian packages from the debug build already made, and checks them:
# lintian (no errors), an install into a throw-away root with dpkg (a minimal dpkg database
# there; dependencies are the host's), then the installed programs, manual pages, unit files
# and bash completion. Any failure fails the script. See docs/operations.md ("Packages").
#
#   scripts/package-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/parley-target}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "package check FAILED: $*" >&2; exit 1; }

scripts/package.sh --profile debug --no-build --out "$work/debs"
debs=("$work"/debs/*.deb)
[ ${#debs[@]} -eq 3 ] || fail "expected 3 packages, got ${#debs[@]}"

# lintian: no errors. A debug-profile package keeps its symbols on purpose (the release
# profile strips them), so unstripped-binary-or-object is the one tag suppressed here.
lintian --fail-on error --suppress-tags unstripped-binary-or-object "${debs[@]}" \
    || fail "lintian reports errors"

# Install into a throw-away root: dpkg needs its database there; dependencies are not
# installed in it (--force-depends), the programs run with the host's libraries.
root="$work/root"
mkdir -p "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/info" "$root/var/log"
: > "$root/var/lib/dpkg/status"
: > "$root/var/lib/dpkg/available"
# Unpacked, not configured: the rendezvous's postinst would add a system user to this host.
# It is checked for syntax instead.
dpkg --root="$root" --force-depends --force-not-root --no-triggers \
    --log="$root/var/log/dpkg.log" --unpack "${debs[@]}" >/dev/null \
    || fail "dpkg cannot install the packages"
for pkg in parley parley-rendezvous parley-desktop; do
    dpkg --root="$root" -s "$pkg" 2>/dev/null | grep -q '^Status: install ok unpacked' \
        || fail "$pkg is not unpacked in the throw-away root"
done
sh -n "$root/var/lib/dpkg/info/parley-rendezvous.postinst" || fail "the postinst is not valid sh"
grep -q 'adduser --system' "$root/var/lib/dpkg/info/parley-rendezvous.postinst" || fail "the postinst adds no user"
grep -qx /etc/default/parley-rendezvous "$root/var/lib/dpkg/info/parley-rendezvous.conffiles" \
    || fail "/etc/default/parley-rendezvous is not a conffile"

usr="$root/usr"
"$usr/bin/parley" --version | grep -q '^parley ' || fail "parley --version"
"$usr/bin/parley-rendezvous" --help | grep -q -- '--https' || fail "parley-rendezvous --help"
"$usr/bin/parley-desktop" --help | grep -q -- '--home' || fail "parley-desktop --help"

# Every manual page renders without a warning.
pages=("$usr"/share/man/man1/*.1.gz)
[ ${#pages[@]} -ge 3 ] || fail "no manual pages installed"
for page in "${pages[@]}"; do
    warnings="$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)" || fail "man cannot show $page"
    [ -z "$warnings" ] || fail "man warns on $(basename "$page"): $warnings"
done
MANWIDTH=80 man -l "$usr/share/man/man1/parley-send.1.gz" 2>/dev/null | grep -q -- '--ttl' \
    || fail "parley-send(1) does not describe --ttl"

# The units: systemd-analyze verify wants the programs at the paths the units name, the
# service user and the environment file, so it checks a copy that names the throw-away
# root's files and root as user (the parley user is made by the postinst, not run here).
units="$work/units"
mkdir -p "$units"
sed "s|/usr/bin/|$usr/bin/|g; s|^User=parley|User=root|; s|^Group=parley|Group=root|; s|^EnvironmentFile=/etc/|EnvironmentFile=$root/etc/|" \
    "$usr/lib/systemd/system/parley-rendezvous.service" > "$units/parley-rendezvous.service"
sed "s|/usr/bin/|$usr/bin/|g" "$usr/lib/systemd/user/parley-daemon.service" > "$units/parley-daemon.service"
for unit in parley-rendezvous parley-daemon; do
    out="$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$units/$unit.service" 2>&1)" \
        || fail "systemd-analyze verify $unit.service: $out"
    # Lines about other units of this host are not ours; anything naming this unit is.
    if printf '%s\n' "$out" | grep -q "$unit.service"; then
        fail "systemd-analyze verify $unit.service: $out"
    fi
done
grep -q '^ProtectSystem=strict' "$units/parley-rendezvous.service" || fail "the unit lost ProtectSystem=strict"

# The .desktop entry, with the parley: scheme.
desktop_file="$usr/share/applications/parley-desktop.desktop"
if command -v desktop-file-validate >/dev/null; then
    desktop-file-validate "$desktop_file" || fail "the .desktop entry is not valid"
fi
grep -qx 'MimeType=x-scheme-handler/parley;' "$desktop_file" || fail "the .desktop entry does not register parley:"
grep -qx 'Exec=parley-desktop %u' "$desktop_file" || fail "the .desktop entry does not pass the link"

# Bash completion, loaded in a bare bash with bash-completion: `parley s<TAB>` offers the four
# subcommands that start with s (send and safety-number among them), `parley se<TAB>` send only.
completion="$usr/share/bash-completion/completions/parley"
[ -r /usr/share/bash-completion/bash_completion ] || fail "bash-completion is not installed"
complete_words() {
    bash --norc --noprofile -c '
        set -u
        source /usr/share/bash-completion/bash_completion
        source "$1" || exit 1
        COMP_WORDS=(parley "$2"); COMP_CWORD=1; COMP_LINE="parley $2"; COMP_POINT=${#COMP_LINE}
        func="$(complete -p parley | sed -n "s/.*-F \([^ ]*\).*/\1/p")"
        [ -n "$func" ] || exit 1
        "$func" parley "$2" parley
        printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' _ "$completion" "$1"
}
offered="$(complete_words s)" || fail "the bash completion does not load"
[ "$offered" = "safety-number save-attachment send status " ] \
    || fail "completing 'parley s' offered: $offered"
offered="$(complete_words se)" || fail "the bash completion does not load"
[ "$offered" = "send " ] || fail "completing 'parley se' offered: $offered"
for shell in zsh/vendor-completions/_parley fish/vendor_completions.d/parley.fish; do
    [ -s "$usr/share/$shell" ] || fail "$shell is missing"
done

echo "packages: 3 built, lintian clean, installed and checked"
