#!/usr/bin/env bash
# docker-compose.yml for real, without Docker or a registry: build the images from a Debian base
# made here (debootstrap), bring the offline stack up under podman-compose on loopback, drive it
# (bench/compose_smoke.py: a client through HAProxy receives events, the gateway serving it is
# killed, the client resumes with no gap), tear it all down. docs/containers.md explains.
#
#   scripts/compose-smoke.sh            # ~5 min the first time, ~1 min once the images exist
#   scripts/compose-smoke.sh --keep     # leave the stack running (podman-compose down -v ends it)
#
# Needs root (rootful podman) and the Debian and PyPI package indexes; installs podman,
# debootstrap, runc, iptables, catatonit with apt-get when missing, and podman-compose (pinned)
# into .state/containers/podman-compose. Exit status 0 when the drive passed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
keep=0
case "${1:-}" in
  "") ;;
  --keep) keep=1 ;;
  *) echo "usage: scripts/compose-smoke.sh [--keep]" >&2; exit 2 ;;
esac
state="$root/.state/containers"
project=tickstream-smoke
podman_compose_version=1.6.0
base=localhost/tickstream-base:bookworm
export TICKSTREAM_IMAGE=localhost/tickstream:local
export REDIS_IMAGE=localhost/tickstream-redis:7
export HAPROXY_IMAGE=localhost/tickstream-haproxy:bookworm
export TICKSTREAM_BIND=127.0.0.1

say() { echo "compose-smoke: $*" >&2; }
[ "$(id -u)" = "0" ] || { say "needs root (rootful podman: cgroups, iptables, port publishing)"; exit 2; }

# -- tools -----------------------------------------------------------------------------------
missing=()
for tool in podman:podman debootstrap:debootstrap runc:runc iptables:iptables \
            /usr/libexec/podman/catatonit:catatonit /usr/lib/podman/netavark:netavark \
            /usr/lib/podman/aardvark-dns:aardvark-dns; do
  path=${tool%%:*}
  if [ "${path#/}" != "$path" ]; then [ -x "$path" ] || missing+=("${tool##*:}")
  else command -v "$path" >/dev/null 2>&1 || missing+=("${tool##*:}"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || scripts/ensure-venv.sh
mkdir -p "$state"
compose_venv="$state/podman-compose"
if ! "$compose_venv/bin/podman-compose" version 2>/dev/null | grep -q "podman-compose version $podman_compose_version"; then
  say "installing podman-compose $podman_compose_version into $compose_venv"
  python3 -m venv "$compose_venv"
  "$compose_venv/bin/pip" install -q "podman-compose==$podman_compose_version"
fi

# This machine's limits, as podman must set them: root here lacks CAP_SYS_RESOURCE, so the
# container limits podman asks for by default (above this shell's hard limits) are refused.
# runc: crun refuses hybrid cgroup hierarchies (v1 controllers with a v2 mount beside them).
export CONTAINERS_CONF="$state/containers.conf"
cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=4096:4096"]
log_driver = "k8s-file"
[engine]
runtime = "runc"
EOF

# -- images ----------------------------------------------------------------------------------
scripts/containers/make-base.sh "$base" "$state/base"
build() { # IMAGE CONTEXT [podman build options]
  local image=$1 context=$2
  shift 2
  say "building $image"
  podman build -q --format docker --build-arg "BASE_IMAGE=$base" -t "$image" "$@" "$context" >/dev/null
}
build "$TICKSTREAM_IMAGE" .
build "$REDIS_IMAGE" scripts/containers -f scripts/containers/redis.Containerfile
build "$HAPROXY_IMAGE" scripts/containers -f scripts/containers/haproxy.Containerfile

# -- the stack ---------------------------------------------------------------------------------
TICKSTREAM_PORT=$(.venv/bin/python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
export TICKSTREAM_PORT
compose() { "$compose_venv/bin/podman-compose" -p "$project" --env-file deploy/simulate.env \
              --profile simulate "$@"; }
down() {
  if [ "$keep" = "1" ]; then
    say "left running on 127.0.0.1:$TICKSTREAM_PORT; to end it: CONTAINERS_CONF=$CONTAINERS_CONF $compose_venv/bin/podman-compose -p $project --profile simulate down -v"
    return
  fi
  say "tearing down"
  compose down -v -t 20 >"$state/down.log" 2>&1 || { tail -5 "$state/down.log" >&2; }
}
trap down EXIT
say "podman-compose up (project $project, HAProxy on 127.0.0.1:$TICKSTREAM_PORT)"
if ! compose up -d >"$state/up.log" 2>&1; then
  grep -v -E "systemd connection|condition check" "$state/up.log" | tail -20 >&2
  say "podman-compose up failed (log: $state/up.log)"
  exit 1
fi
status=0
.venv/bin/python -m bench.compose_smoke --url "http://127.0.0.1:$TICKSTREAM_PORT" --project "$project" \
  || status=$?
if [ "$status" != "0" ]; then
  for name in $(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'); do
    echo "--- $name" >&2
    podman logs --tail 15 "$name" 2>&1 | cut -c1-300 >&2 || true
  done
fi
exit "$status"
