#!/usr/bin/env bash
# Build the local base-image stand-ins; see build_standins.py. Args: [--env] [--rebuild]
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "$0")/build_standins.py" "$@"
