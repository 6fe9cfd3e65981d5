"""The gateway's HTTP endpoints: health, readiness, metrics and ``POST /api/publish``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import AuthError, bearer_token
from shared.errors import RedisUnavailable, ValidationError
from shared.events import event_from_json
from shared.redisconn import CONNECTION_ERRORS

if TYPE_CHECKING:
    from gateway.node import Node

MAX_PUBLISH_BODY = 4 * 1024 * 1024
MAX_PUBLISH_EVENTS = 10_000


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _problem(status: int, code: str, message: str) -> Response:
    return _json({"error": {"code": code, "message": message}}, status)


class HttpApi:
    def __init__(self, node: Node) -> None:
        self.node = node

    async def healthz(self, request: Request) -> Response:
        return _json({"status": "ok", "node": self.node.settings.node})

    async def readyz(self, request: Request) -> Response:
        node = self.node
        redis_ok = True
        try:
            await asyncio.wait_for(node.broker.ping(), 1.0)
        except CONNECTION_ERRORS:
            redis_ok = False
        reader_ok = node.reader_fresh()
        ready = redis_ok and reader_ok and node.accepting
        return _json({"status": "ready" if ready else "not ready", "node": node.settings.node,
                      "redis": redis_ok, "reader": reader_ok, "accepting": node.accepting},
                     200 if ready else 503)

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.node.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    async def publish(self, request: Request) -> Response:
        node = self.node
        token = bearer_token(request.headers.get("authorization"))
        if not token:
            return _problem(401, "unauthorized", "send Authorization: Bearer <JWT> with the "
                            f"'{node.settings.publisher_role}' role")
        try:
            principal = node.auth.verify(token)
        except AuthError as exc:
            return _problem(401, "unauthorized", str(exc))
        if not principal.has_role(node.settings.publisher_role):
            return _problem(403, "forbidden", f"the token lacks the '{node.settings.publisher_role}' role")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_PUBLISH_BODY:
                return _problem(413, "too_large", f"body over {MAX_PUBLISH_BODY} bytes")
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _problem(400, "bad_request", f"body is not valid JSON: {exc}")
        single = isinstance(parsed, dict)
        items = [parsed] if single else parsed
        if not isinstance(items, list) or not items or len(items) > MAX_PUBLISH_EVENTS:
            return _problem(400, "bad_request", "body must be one event object or a list of 1 to "
                            f"{MAX_PUBLISH_EVENTS} of them")
        try:
            events = []
            for index, item in enumerate(items):
                try:
                    events.append(event_from_json(item))
                except ValidationError as exc:
                    raise ValidationError(f"event {index}: {exc}") from None
            assert node.publisher is not None
            offsets = await node.publisher.publish_many(events)
        except ValidationError as exc:
            return _problem(400 if exc.code != "too_large" else 413, exc.code, str(exc))
        except RedisUnavailable as exc:
            return _problem(503, exc.code, str(exc))
        node.metrics.publishes.inc(len(offsets))
        result: dict[str, Any] = {"offsets": offsets}
        if single:
            result["offset"] = offsets[0]
        return _json(result)
