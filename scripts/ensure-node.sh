#!/usr/bin/env bash
# Node and the JS client's packages (clients/js): install nodejs/npm with apt-get when missing
# and we are root, then `npm ci` from the committed lock file whenever it changed (registry
# packages only; nothing else is downloaded). `--build` also compiles the package to dist/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pkg="$here/../clients/js"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "node/npm not found: installing them with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  else
    echo "node and npm are missing: install them (e.g. 'sudo apt-get install nodejs npm')" >&2
    exit 1
  fi
fi
# jsdom (the React hook tests) needs Node 20.19 or newer.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "Node $(node --version) is too old: clients/js needs Node 20.19 or newer" >&2
  exit 1
fi
stamp="$pkg/node_modules/.tickstream-ci"
lock_sum=$(sha256sum "$pkg/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  echo "clients/js: npm ci (the lock file changed)" >&2
  (cd "$pkg" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$lock_sum" > "$stamp"
fi
if [ "${1:-}" = "--build" ]; then
  (cd "$pkg" && npx --no-install tsc -p tsconfig.build.json)
fi
