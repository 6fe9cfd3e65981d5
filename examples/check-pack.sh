#!/usr/bin/env bash
# `npm pack` the client (clients/js), install the tarball into a temporary copy of the React
# example, type-check it against the packed .d.ts and build it with Vite. Registry packages come
# from npm's cache when present (--prefer-offline). Exit status 0 when all of that worked.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$root/scripts/ensure-node.sh"
tarball=$(cd "$root/clients/js" && npm pack --silent --pack-destination "$tmp" | tail -n1)
echo "packed $tarball ($(du -k "$tmp/$tarball" | cut -f1) KiB)"
app="$tmp/react-dashboard"
mkdir "$app"
(cd "$root/examples/react-dashboard" && cp -r package.json package-lock.json index.html vite.config.ts tsconfig.json src "$app/")
cd "$app"
npm pkg set "dependencies.@tickstream/client=file:$tmp/$tarball"
npm install --no-audit --no-fund --prefer-offline --loglevel=error >/dev/null
test ! -L node_modules/@tickstream/client  # installed from the tarball, not linked
npm run --silent build >/dev/null
test -s dist/index.html
grep -q 'tickstream' dist/assets/*.js
echo "the example installed $tarball and built with Vite: $(ls dist/assets)"
