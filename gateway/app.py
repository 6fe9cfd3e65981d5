"""The Starlette application of one gateway process, with an explicit lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from gateway.broker import Broker
from gateway.endpoint import WebSocketEndpoint
from gateway.http import HttpApi
from gateway.node import Node
from gateway.settings import GatewaySettings

STATIC = Path(__file__).parent / "static"


def create_app(settings: GatewaySettings, broker: Broker | None = None) -> Starlette:
    node = Node(settings, broker)
    api = HttpApi(node)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.stop()

    async def index(request: object) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    routes = [
        WebSocketRoute("/ws", WebSocketEndpoint(node)),
        Route("/healthz", api.healthz),
        Route("/readyz", api.readyz),
        Route("/metrics", api.metrics),
        Route("/api/publish", api.publish, methods=["POST"]),
        Route("/", index),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.node = node
    return app
