#!/usr/bin/env bash
# Installs redis-server from the distribution's packages when it is missing
# (once; later runs find it) and prints its path on stdout. The redisstore
# tests start it themselves on 127.0.0.1 on a free port, with no
# persistence, and stop it.
set -euo pipefail

bin=$(command -v redis-server || true)
if [ -z "$bin" ]; then
  echo "redis: installing redis-server (first run only)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends redis-server >&2
  # The package may start a system instance on 6379; the tests do not use it.
  if command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
  fi
  bin=$(command -v redis-server)
fi
echo "redis: $("$bin" --version)" >&2
echo "$bin"
