#!/usr/bin/env bash
# System packages the tests use, installed with apt-get when missing and we are root:
# redis-server (required), haproxy (the load-balancer test), chromium (the browser tests).
set -euo pipefail
here=$(dirname "$0")
"$here/ensure-redis.sh"
if ! command -v haproxy >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "haproxy not found: installing it with apt-get (for the load-balancer test)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends haproxy >/dev/null
  else
    echo "haproxy is missing: its test will be skipped ('sudo apt-get install haproxy')" >&2
  fi
fi
if [ "${TICKSTREAM_SKIP_BROWSER:-0}" != "1" ]; then
  "$here/ensure-browser.sh"
fi
