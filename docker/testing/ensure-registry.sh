#!/usr/bin/env bash
# Print the path of a `docker-registry` binary (Debian's registry v2 server) for the tests' own registry.
# One on PATH is used. Otherwise Debian's package is unpacked into the cache rather than installed: an
# installed one starts a system service listening on :5000, and the tests start their own on a free port.
set -euo pipefail

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tandem"
DEST="$CACHE_DIR/docker-registry"
BIN="$DEST/usr/bin/docker-registry"

die() { echo "ensure-registry: $*" >&2; exit 1; }

if command -v docker-registry >/dev/null; then
    command -v docker-registry
    exit 0
fi
if [ ! -x "$BIN" ]; then
    command -v apt-get >/dev/null || die "no docker-registry on PATH and no apt-get to fetch Debian's package"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # apt verifies the download against the signed package lists; those may need a refresh (root only).
    if ! (cd "$work" && apt-get download -qq docker-registry 2>/dev/null); then
        [ "$(id -u)" -eq 0 ] || die "cannot download Debian's docker-registry package (not root, so no apt-get update)"
        apt-get update -qq
        (cd "$work" && apt-get download -qq docker-registry 2>/dev/null) || die "apt-get download docker-registry failed"
    fi
    mkdir -p "$CACHE_DIR"
    rm -rf "$DEST.tmp"
    dpkg-deb -x "$work"/docker-registry_*.deb "$DEST.tmp"
    rm -rf "$DEST"
    mv "$DEST.tmp" "$DEST"
    "$BIN" --version >/dev/null || die "the unpacked $BIN does not run"
fi
echo "$BIN"
