"""A request head over the limits is answered at once (414 / 431) and the connection closed.

Before, a WebSocket handshake whose request line or one header was 8 KiB or more (a long token
in ``?token=`` or ``Authorization``) was never answered: the WebSocket parser refused it after
the upgrade, and uvicorn did not send the refusal; the client hung in the opening handshake.
Limits (docs/protocol.md, "Connecting"): 8192 bytes per line, CRLF included; 128 headers;
64 KiB for the whole head.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.server import MAX_HEAD_BYTES, MAX_LINE_BYTES, config
from tests.support.gateway import InProcessGateway, closed_with, gateway_settings

HANG_GUARD = 5.0  # seconds: the answer comes at once; this only keeps a broken server from hanging


def upgrade(path: str, extra: bytes = b"") -> bytes:
    return (f"GET {path} HTTP/1.1\r\n".encode() + b"Host: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n")


async def exchange(gw: InProcessGateway, request: bytes, *, complete: bool = True) -> bytes:
    """Send ``request`` over a raw TCP socket; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.settings.port)
    try:
        writer.write(request)
        if not complete:
            await writer.drain()  # the head never ends: the server must not wait for its end
        return await asyncio.wait_for(reader.read(), HANG_GUARD)  # read() = until EOF
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


async def test_a_9_kib_token_in_the_query_is_answered_414(gw: InProcessGateway) -> None:
    answer = await exchange(gw, upgrade("/ws?token=" + "a" * 9 * 1024))
    assert status_of(answer) == 414
    assert b"connection: close" in answer.lower() and b"request line over 8192 bytes" in answer


async def test_a_9_kib_authorization_header_is_answered_431(gw: InProcessGateway) -> None:
    answer = await exchange(gw, upgrade("/ws", b"Authorization: Bearer " + b"b" * 9 * 1024 + b"\r\n"))
    assert status_of(answer) == 431
    assert b"header line over 8192 bytes" in answer


async def test_too_many_headers_are_answered_431(gw: InProcessGateway) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    assert status_of(await exchange(gw, upgrade("/ws", headers))) == 431


async def test_a_head_that_goes_on_past_64_kib_is_answered_431_before_it_ends(
    gw: InProcessGateway,
) -> None:
    lines = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(100))  # 100 KiB, no end
    answer = await exchange(gw, upgrade("/ws")[:-2] + lines, complete=False)
    assert status_of(answer) == 431
    assert f"request head over {MAX_HEAD_BYTES} bytes".encode() in answer


async def test_plain_http_requests_have_the_same_limits(gw: InProcessGateway) -> None:
    long_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 9000 + b"\r\n\r\n"
    assert status_of(await exchange(gw, long_header)) == 431
    long_line = b"GET /healthz?" + b"q" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert status_of(await exchange(gw, long_line)) == 414
    fine = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 7000 + b"\r\nConnection: close\r\n\r\n"
    assert status_of(await exchange(gw, fine)) == 200


async def test_a_line_just_under_the_limit_is_accepted(gw: InProcessGateway) -> None:
    # "authorization: Bearer <token>\r\n" of exactly MAX_LINE_BYTES: not a valid token, so 4401
    token = "t" * (MAX_LINE_BYTES - len("authorization: Bearer \r\n"))
    async with connect(gw.url, additional_headers={"Authorization": f"Bearer {token}"},
                       open_timeout=HANG_GUARD) as ws:
        assert await closed_with(ws) == 4401
    with pytest.raises(InvalidStatus) as info:
        await connect(gw.url, additional_headers={"Authorization": f"Bearer {token}x"},
                      open_timeout=HANG_GUARD)
    assert info.value.response.status_code == 431


async def test_the_websockets_client_gets_the_refusal_at_once(gw: InProcessGateway) -> None:
    with pytest.raises(InvalidStatus) as info:
        await connect(f"{gw.url}?token={'a' * 9 * 1024}", open_timeout=HANG_GUARD)
    assert info.value.response.status_code == 414


async def test_a_token_over_8192_characters_in_an_auth_message_is_unauthorized(
    gw: InProcessGateway,
) -> None:
    async with connect(gw.url) as ws:
        await ws.recv()  # welcome
        await ws.send(orjson.dumps({"op": "auth", "id": 1, "token": "x" * 9000}).decode())
        reply = orjson.loads(await asyncio.wait_for(ws.recv(), HANG_GUARD))
        assert reply["type"] == "error" and reply["code"] == "unauthorized" and reply["id"] == 1
        assert "token too long" in reply["message"]
        await ws.send(orjson.dumps({"op": "ping", "id": 2}).decode())
        assert orjson.loads(await asyncio.wait_for(ws.recv(), HANG_GUARD))["type"] == "pong"


async def test_the_websocket_layer_answers_its_own_refusals(redis_url: str) -> None:
    """Under uvicorn's plain httptools protocol the WebSocket parser's refusal is still sent."""
    gw = InProcessGateway(gateway_settings(redis_url))
    gw.server = uvicorn.Server(config(gw.settings, loop="asyncio", http="httptools"))
    gw.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    await gw.start()
    try:
        answer = await exchange(gw, upgrade("/ws?token=" + "a" * 9 * 1024))
        assert status_of(answer) == 414 and b"Failed to open a WebSocket connection" in answer
        answer = await exchange(gw, upgrade("/ws", b"X-Pad: " + b"p" * 9000 + b"\r\n"))
        assert status_of(answer) == 431 and b"Failed to open a WebSocket connection" in answer
    finally:
        await gw.stop()
