#!/usr/bin/env bash
# Make sure Chromium is installed for the browser tests (tests/browser): install Debian's
# package when it is missing and we are root, like ensure-redis.sh does for redis-server.
# Playwright drives this Chromium (/usr/bin/chromium); it never downloads a browser of its own.
set -euo pipefail
if [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium not found: installing it with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
  command -v chromium >/dev/null 2>&1 && exit 0
  echo "apt-get installed chromium but it is not on PATH" >&2
  exit 1
fi
echo "chromium is missing: install it (e.g. 'sudo apt-get install chromium') and run make again" >&2
exit 1
