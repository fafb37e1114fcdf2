#!/usr/bin/env bash
# Run a docker CLI that can build with BuildKit: `docker-buildkit.sh build --secret ... .`
# Clients from 23.0 on need the buildx plugin for BuildKit; older clients (Debian's docker.io) have it
# built in. Pick the first docker on PATH that can, so a buildx-less client there is no dead end.
set -euo pipefail

pick_cli() {
    local cli major
    while read -r cli; do
        if "$cli" buildx version >/dev/null 2>&1; then
            echo "$cli"; return
        fi
        major="$("$cli" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)"
        if [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -lt 23 ]; then
            echo "$cli"; return
        fi
    done < <(type -ap docker | xargs -r readlink -f | awk '!seen[$0]++')
    return 1
}

cli="$(pick_cli)" || {
    echo "docker-buildkit: no docker CLI on PATH can build with BuildKit (install the buildx plugin)" >&2
    exit 1
}
if [ "${1:-}" = "--which" ]; then
    echo "$cli"
    exit 0
fi
DOCKER_BUILDKIT=1 exec "$cli" "$@"
