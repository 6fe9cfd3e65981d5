#!/bin/sh
# Entry point of the local redis image (redis.Containerfile), the official image's contract:
# `redis-server ...` (or `redis-sentinel ...`) runs as the redis user with protected mode off,
# /data owned by it; any other command runs as given.
set -eu
case "${1:-}" in
  redis-server | redis-sentinel)
    if [ "$(id -u)" = "0" ]; then
      chown -R redis:redis /data
      exec setpriv --reuid=redis --regid=redis --init-groups "$@" --protected-mode no
    fi
    exec "$@" --protected-mode no
    ;;
esac
exec "$@"
