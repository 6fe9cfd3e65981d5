#!/usr/bin/env bash
# System packages the tests use: redis-server (required), haproxy (the load-balancer test) and
# chromium (the browser tests). Installed with apt-get when missing and we are root; otherwise
# say which command would install them.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
if [ "${TICKSTREAM_SKIP_BROWSER:-0}" != "1" ]; then
  command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server is missing: install it (e.g. 'sudo apt-get install redis-server' or 'brew install redis') and run make again" >&2
  exit 1
fi
echo "optional test dependencies missing (${need[*]}): their tests will say they were skipped; install with 'sudo apt-get install ${need[*]}'" >&2
