"""The Starlette application of one gateway process, with an explicit lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

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


class GatewayApp:
    """The ASGI app: ``/ws`` goes straight to the WebSocket endpoint, the rest to Starlette.

    A WebSocket lives for hours; routing it through Starlette's middleware stack would keep
    those frames alive for each connection. HTTP requests and the lifespan go to Starlette.
    """

    def __init__(self, starlette: Starlette, websocket: WebSocketEndpoint) -> None:
        self.starlette = starlette
        self.state = starlette.state
        self._websocket = websocket

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await self._websocket(scope, receive, send)
        else:
            await self.starlette(scope, receive, send)


def create_app(settings: GatewaySettings, broker: Broker | None = None) -> GatewayApp:
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

    websocket = WebSocketEndpoint(node)
    routes = [
        WebSocketRoute("/ws", websocket),
        Route("/healthz", api.healthz),
        Route("/readyz", api.readyz),
        Route("/metrics", api.metrics),
        Route("/api/publish", api.publish, methods=["POST"]),
        Route("/api/schemas", api.schemas_index),
        Route("/api/schemas/{name}", api.schema),
        Route("/api/info", api.info),
        Route("/api/candles", api.candles),
        Route("/", index),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.node = node
    return GatewayApp(app, websocket)
