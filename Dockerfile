# syntax=docker/dockerfile:1
# One image for every Tickstream component: `docker run IMAGE gateway|ingestor|simulator|...`.
# Dependencies are pinned by requirements.lock (used as constraints, so the image gets the
# project's runtime dependencies at the locked versions and none of the dev tools).
#
# Layer order: the third-party dependencies are installed from pyproject.toml and
# requirements.lock alone, before any source is copied, so a code change rebuilds only the last
# layers (the project itself, installed with --no-deps).
#
# BASE_IMAGE: any Debian-like image with Python 3.11 and its venv module (python3 -m venv).
# scripts/compose-smoke.sh builds one locally with debootstrap (docs/containers.md).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml requirements.lock ./
# The runtime requirements (the base set and the `server` extra) read from pyproject.toml,
# installed at the versions requirements.lock pins.
RUN python3 -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
reqs = project['dependencies'] + project.get('optional-dependencies', {}).get('server', []); \
print(*(r for r in reqs if not r.lower().startswith('tickstream')), sep='\n')" > /tmp/runtime.txt \
 && /opt/venv/bin/pip install -c requirements.lock -r /tmp/runtime.txt
COPY README.md ./
COPY shared ./shared
COPY gateway ./gateway
COPY ingestor ./ingestor
COPY simulator ./simulator
COPY tickstream ./tickstream
RUN /opt/venv/bin/pip install --no-deps ".[server]" \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -c "import shared, gateway.app, ingestor.service, simulator.app, tickstream.up"

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="tickstream" \
      org.opencontainers.image.description="Real-time events from producers to WebSocket clients through Redis Streams" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 tickstream \
 && useradd --system --uid 10001 --gid tickstream --home-dir /home/tickstream --create-home \
            --shell /usr/sbin/nologin tickstream
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0
USER tickstream:tickstream
WORKDIR /home/tickstream
# The gateway's port; the ingestor serves /healthz, /readyz, /metrics on 9100, the simulator 9443.
EXPOSE 8080 9100 9443
# Default: a gateway's /readyz. Other components set HEALTHCHECK_URL (or compose overrides this).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "tickstream.healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["tickstream"]
CMD ["gateway"]
