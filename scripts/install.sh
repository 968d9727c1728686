#!/usr/bin/env bash
# Create .venv and install Bobbin with the given extras; skipped when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
# The console's browser test drives Debian's chromium (never a downloaded browser).
if [[ ",$extras," == *",test,"* ]] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) >/dev/null 2>&1 \
    || echo "chromium not installed: the browser test will be skipped" >&2
fi
# llama.cpp (the offline extra) builds for a generic x86-64/ARM CPU, not -march=native: these
# machines' CPUs advertise AMX, which their VMs do not let a process use, and a native
# build died with a general protection fault at the first token (docs/offline-model.md).
export CMAKE_ARGS="-DGGML_NATIVE=OFF ${CMAKE_ARGS:-}"
stamp=".venv/.installed-$(echo "$extras" | tr ',' '-')"
digest="$(sha256sum pyproject.toml | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -U pip
  quiet=-q
  if [[ ",$extras," == *",offline,"* ]] && ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
    # PyPI has no built llama-cpp-python: pip compiles llama.cpp once (its wheel is cached).
    echo "[install] building llama.cpp for the offline model: 4 to 12 minutes on 2 cores," \
      "once (pip keeps the wheel); pip's progress follows" >&2
    quiet=
  fi
  started=$SECONDS
  .venv/bin/pip install $quiet --disable-pip-version-check -e ".[$extras]"
  [ -n "$quiet" ] || echo "[install] done in $((SECONDS - started)) s" >&2
  echo "$digest" > "$stamp"
fi
