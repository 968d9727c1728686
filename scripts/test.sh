#!/usr/bin/env bash
# The whole test suite: lint, every test on SQLite and again on PostgreSQL, then
# the short versions of the slow suites. Prints how long each stage took.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1

stage() {
  local name="$1"; shift
  local start=$SECONDS
  echo "=== ${name}"
  "$@"
  echo "=== ${name}: $((SECONDS - start)) s"
}

stage "install" scripts/install.sh test,offline
stage "services" scripts/services.sh test
stage "lint and types" bash -c ".venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy shared workers api cli"
stage "tests on SQLite" .venv/bin/pytest -q -m "not slow"
stage "tests on PostgreSQL" env BOBBIN_TEST_DB=postgres .venv/bin/pytest -q -m "not slow"
stage "slow suites (short versions)" .venv/bin/pytest -q -m slow
echo "=== total: ${SECONDS} s"
