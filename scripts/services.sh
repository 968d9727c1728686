#!/usr/bin/env bash
# Make sure the local PostgreSQL and Redis answer; start them when they do not.
set -euo pipefail
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  service redis-server start >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  service postgresql start >/dev/null 2>&1 || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
for _ in $(seq 1 50); do
  redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 && exit 0
  sleep 0.2
done
echo "PostgreSQL or Redis does not answer on 127.0.0.1" >&2
exit 1
