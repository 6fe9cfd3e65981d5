#!/usr/bin/env bash
# Make sure redis-server is on PATH: install Debian/Ubuntu's package when missing and we are root.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "redis-server not found: installing it with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  # The package may start a system-wide service; Tickstream starts its own servers.
  exit 0
fi
echo "redis-server is missing: install it (e.g. 'sudo apt-get install redis-server' or 'brew install redis') and run make again" >&2
exit 1
