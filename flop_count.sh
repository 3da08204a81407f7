#!/usr/bin/env bash
# Regenerate config/model_map.json: FLOPs (2 x thop MACs) of one input of every model at f=1..4.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec "$PYTHON" -m models.flops "$@"
