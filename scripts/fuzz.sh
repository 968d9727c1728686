#!/usr/bin/env bash
# The fuzzing of docs/reliability.md: Schemathesis over every route of the OpenAPI schema
# against a real API process, with a key and without. Arguments go to `python -m tests.fuzz`.
#   scripts/fuzz.sh                    # the full run (100 cases per operation and mode)
#   scripts/fuzz.sh --examples 5       # CI's size (~400 cases)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "fuzz: redis-server is not installed" >&2; exit 1; }
exec .venv/bin/python -m tests.fuzz "$@"
