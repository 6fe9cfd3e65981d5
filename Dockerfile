# syntax=docker/dockerfile:1
# One image for every Tickstream component: `docker run IMAGE gateway|ingestor|simulator|...`.
# Dependencies are pinned by requirements.lock (used as constraints, so the image gets the
# project's runtime dependencies at the locked versions and none of the dev tools).

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY requirements.lock ./
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY gateway ./gateway
COPY ingestor ./ingestor
COPY simulator ./simulator
COPY tickstream ./tickstream
RUN /opt/venv/bin/pip install -c requirements.lock . \
 && /opt/venv/bin/python -c "import shared, gateway.app, ingestor.service, simulator.app, tickstream.up"

FROM python:3.11-slim
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
