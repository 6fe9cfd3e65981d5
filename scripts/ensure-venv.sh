#!/usr/bin/env bash
# Create .venv and install the project (editable) with the server extra and the dev tools,
# pinned by requirements.lock.
set -euo pipefail
PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "$PYTHON not found: install Python 3.11 or newer" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Tickstream needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "python venv module missing: installing python3-venv with apt-get" >&2
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$PYTHON" -m venv .venv
    else
      echo "cannot create a virtual environment: install python3-venv" >&2
      exit 1
    fi
  fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[server,dev]' 2>&1 \
  | grep -v -e '^WARNING: Location' -e 'BuildBackendWarning' || true
.venv/bin/python -c 'import tickstream.client, tickstream.publisher, gateway.app, ingestor.service, jwt, prometheus_client, httpx, pytest, jsonschema' \
  || { echo "installing the Python dependencies failed" >&2; exit 1; }
