"""Bad input gets a clear error and the connection keeps working; limits close with their codes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct

import orjson
from websockets.asyncio.client import connect

from shared.publisher import AsyncPublisher
from tests.support.gateway import Client, InProcessGateway, closed_with, running_gateway
from tests.support.sink import parse_frames


async def test_each_bad_message_is_answered_and_the_connection_stays_usable(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    client = await Client.open(gw.url)
    await client.subscribe("custom")
    bad = [
        ("{not json", "bad_request"),
        ('"just a string"', "bad_request"),
        ('{"op":"fly","id":9}', "unknown_op"),
        ('{"op":"subscribe","event_type":42}', "bad_request"),
        ('{"op":"subscribe","event_type":"custom","since":"yesterday"}', "invalid_offset"),
        ('{"op":"subscribe","event_type":"custom","last":"ten"}', "bad_request"),
    ]
    for frame, code in bad:
        await client.ws.send(frame)
        error = await client.control("error")
        assert error["code"] == code, (frame, error)
        assert error["message"]
    await client.ws.send(b"\xff\x00\x13garbage")  # binary garbage on a JSON connection
    assert (await client.control("error"))["code"] == "bad_request"
    offset = await pub.publish("custom", {"still": "subscribed"})
    assert [e["offset"] for e in await client.events_until(1)] == [offset]
    await client.close()


async def test_message_over_64_kib_is_refused_with_too_large(gw: InProcessGateway) -> None:
    client = await Client.open(gw.url)
    await client.send({"op": "ping", "id": "big", "pad": "x" * 70_000})
    error = await client.control("error")
    assert error["code"] == "too_large" and error["id"] == "big"  # answered with its id
    await client.send({"op": "ping", "id": 1})
    assert (await client.control("pong"))["id"] == 1
    await client.close()


async def test_frame_over_1_mib_closes_with_1009(gw: InProcessGateway) -> None:
    async with connect(gw.url, max_size=None) as ws:
        await ws.recv()
        await ws.send("x" * (1024 * 1024 + 10))
        assert await closed_with(ws) == 1009


async def test_origin_not_allowed_closes_with_4403(redis_url: str) -> None:
    async with running_gateway(redis_url, allowed_origins=("https://app.example",)) as gw:
        async with connect(gw.url, origin="https://evil.example") as ws:  # type: ignore[arg-type]
            assert await closed_with(ws) == 4403
        ok = await Client.open(gw.url, origin="https://app.example")
        await ok.close()
        service = await Client.open(gw.url)  # no Origin header: not a browser, not refused
        await service.close()


async def test_connection_cap_closes_with_1013(redis_url: str) -> None:
    async with running_gateway(redis_url, max_connections=2) as gw:
        first, second = await Client.open(gw.url), await Client.open(gw.url)
        async with connect(gw.url) as ws:
            assert await closed_with(ws) == 1013
        await first.close()
        await second.close()


async def test_subscription_limit(redis_url: str) -> None:
    async with running_gateway(redis_url, max_subscriptions=2) as gw:
        client = await Client.open(gw.url)
        await client.subscribe("a")
        await client.subscribe("b")
        await client.send({"op": "subscribe", "id": 3, "event_type": "c"})
        error = await client.control("error")
        assert error["code"] == "forbidden" and "at most 2" in error["message"]
        await client.subscribe("b", symbols=["BTCUSDT"])  # replacing one is fine
        await client.close()


async def test_msgpack_client_gets_errors_in_msgpack(gw: InProcessGateway) -> None:
    import msgpack

    async with connect(gw.url, subprotocols=["tickstream.msgpack"]) as ws:  # type: ignore[list-item]
        await ws.recv()
        await ws.send(b"\xc1")
        error = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))
        assert error["type"] == "error" and error["code"] == "bad_request"
        await ws.send(orjson.dumps({"op": "ping", "id": 5}).decode())  # JSON text still accepted
        assert msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"


async def test_a_client_still_sending_an_oversized_frame_reads_1009_not_a_reset(
    gw: InProcessGateway,
) -> None:
    """The server refuses the frame from its header and closes while the client is still
    sending it: it must linger (read and drop) so the client reads 1009, not a reset (1006)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.settings.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101")
    size = 4 * 1024 * 1024  # 4 MiB announced: refused at the header (MAX_FRAME_BYTES 1 MiB)
    writer.write(struct.pack("!BBQ", 0x81, 0x80 | 127, size) + b"\0\0\0\0")  # masked, zero key

    async def keep_sending() -> None:
        chunk = b"x" * 65536
        with contextlib.suppress(ConnectionError):
            for _ in range(size // len(chunk)):
                writer.write(chunk)
                await writer.drain()

    def close_frame(data: bytes) -> bytes | None:
        try:
            return next((f for opcode, f in parse_frames(data) if opcode == 8), None)
        except (AssertionError, struct.error, IndexError):  # a frame still cut short
            return None

    # Send it all before reading anything: a server that closed with our bytes unread has reset
    # the connection by then, and a reset discards the close frame waiting in our buffer.
    await asyncio.wait_for(keep_sending(), 30)
    received = b""
    try:
        while (close := close_frame(received)) is None:  # the welcome, then the close; a reset raises
            data = await asyncio.wait_for(reader.read(65536), 10)
            assert data, "the connection ended without a close frame"
            received += data
    finally:
        writer.transport.abort()
    assert struct.unpack("!H", close[:2])[0] == 1009
