"""What the socket carries, over real connections: the gateway's own frames and the library's.

A connection without an extension gets frames the gateway built once per event (gateway.wsframe,
gateway.values.Encoded); one that negotiated permessage-deflate gets the library's compressed
frames. Both must carry exactly the same events, of every size class of the frame header.
"""

from __future__ import annotations

import asyncio

import msgpack
import orjson
from websockets.asyncio.client import ClientConnection, connect

from shared.events import Event
from shared.publisher import AsyncPublisher
from tests.support.gateway import running_gateway

SIZES = [10, 200, 70_000]  # payloads framed with a 7-bit, a 16-bit and a 64-bit length


async def events(ws: ClientConnection, n: int, binary: bool) -> list[dict[str, object]]:
    """Read ``n`` events, one per frame, each frame's type the connection's format."""
    out: list[dict[str, object]] = []
    while len(out) < n:
        frame = await asyncio.wait_for(ws.recv(decode=False), 10)
        message = msgpack.unpackb(frame) if binary else orjson.loads(frame)
        if "type" not in message:
            out.append(message)
    return out


async def test_framed_and_deflated_connections_get_the_same_events(
    redis_url: str, pub: AsyncPublisher
) -> None:
    async with running_gateway(redis_url, ws_compression=True) as gw:
        plain = await connect(gw.url, compression=None, max_size=None)
        packed = await connect(gw.url, compression=None, max_size=None, subprotocols=["tickstream.msgpack"])  # type: ignore[list-item]
        deflated = await connect(gw.url, compression="deflate", max_size=None)
        assert not plain.protocol.extensions and not packed.protocol.extensions
        assert [e.name for e in deflated.protocol.extensions] == ["permessage-deflate"]
        for ws in (plain, packed, deflated):
            decode = msgpack.unpackb if ws is packed else orjson.loads
            assert decode(await asyncio.wait_for(ws.recv(decode=False), 10))["type"] == "welcome"
            await ws.send(orjson.dumps({"op": "subscribe", "event_type": "sized"}).decode())
            assert decode(await asyncio.wait_for(ws.recv(decode=False), 10))["type"] == "subscribed"
        sent = [Event("sized", {"n": i, "pad": "x" * size}) for i, size in enumerate(SIZES * 2)]
        offsets = await pub.publish_many(sent)
        for ws in (plain, packed, deflated):
            got = await events(ws, len(sent), binary=ws is packed)
            assert [e["offset"] for e in got] == offsets
            assert [e["data"] for e in got] == [e.data for e in sent]
        # text frames for JSON (the frames' type, as the client saw it)
        await pub.publish("sized", {"n": "last"})
        assert isinstance(await asyncio.wait_for(plain.recv(), 10), str)
        assert isinstance(await asyncio.wait_for(packed.recv(), 10), bytes)
        assert isinstance(await asyncio.wait_for(deflated.recv(), 10), str)
        for ws in (plain, packed, deflated):
            await ws.close()
