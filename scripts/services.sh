#!/usr/bin/env bash
# Make sure the services a job needs answer on 127.0.0.1; start them when they do not.
#   scripts/services.sh dev   Redis only (installed when missing, where it may be): `bobbin dev`
#                             runs on SQLite and starts a Redis itself when none answers.
#   scripts/services.sh test  Redis and PostgreSQL: the test suite runs on both databases.
set -euo pipefail
mode="${1:-test}"

say() { echo "[services] $*" >&2; }

redis_answers() {
  timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379 && printf "PING\r\n" >&3 && head -c 5 <&3 | grep -q PONG' 2>/dev/null
}

ensure_redis_installed() {
  command -v redis-server >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "Redis is not installed: installing redis-server with apt-get (a minute at most)..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q redis-server >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }
    return 0
  fi
  local otherwise="or point BOBBIN_REDIS_URL at one"
  [ "$mode" = dev ] || otherwise="the tests run their own on 127.0.0.1:6379"
  say "Redis is not installed: install it (Debian/Ubuntu: sudo apt-get install redis-server;" \
    "macOS: brew install redis); $otherwise"
  exit 1
}

if [ "$mode" = dev ]; then
  [ -n "${BOBBIN_REDIS_URL:-}" ] || redis_answers || ensure_redis_installed
  exit 0
fi

redis_answers || ensure_redis_installed
if ! redis_answers; then
  service redis-server start >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  service postgresql start >/dev/null 2>&1 || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
for _ in $(seq 1 50); do
  redis_answers && pg_isready -q -h 127.0.0.1 -p 5432 && exit 0
  sleep 0.2
done
say "PostgreSQL or Redis does not answer on 127.0.0.1 (the tests need both)"
exit 1
