#!/usr/bin/env bash
# The chaos run of docs/reliability.md, against real processes: API, workers (SIGKILLed every
# few seconds), a private Redis (crashed and restarted), the fake LLM. Arguments go to
# `python -m tests.chaos`; the defaults are the full run (1000 messages, 50 agents, 4 workers).
#   scripts/chaos.sh
#   scripts/chaos.sh --db postgres          # on the dedicated database bobbin_chaos
#   scripts/chaos.sh --messages 100 --agents 10 --workers 3 --max-kills 2   # CI's size
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "chaos: redis-server is not installed" >&2; exit 1; }
if [[ " $* " == *" postgres "* ]]; then
  scripts/services.sh
fi
exec .venv/bin/python -m tests.chaos "$@"
