"""The benchmark's raw WebSocket client: its frame parser on bytes split anywhere, and against a
real gateway: exact event counts and offsets (one event per frame and ``batch=1``), pings
answered, close codes recorded, the handshake checked."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from bench.rawclient import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Buffer,
    FrameReader,
    ProtocolError,
    RawClient,
    client_frame,
    mask,
)
from shared.events import Event
from shared.publisher import AsyncPublisher
from tests.support.gateway import InProcessGateway, running_gateway
from tests.support.waiting import until


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, bytes]] = []
        self.reader = FrameReader(self.data, self.control)

    def data(self, buf: Buffer, start: int, stop: int, opcode: int) -> None:
        self.seen.append(("data", opcode, bytes(buf[start:stop])))

    def control(self, opcode: int, payload: bytes) -> None:
        self.seen.append(("control", opcode, payload))


STREAM = [
    (server_frame(TEXT, b'{"offset":"1-0"}'), ("data", TEXT, b'{"offset":"1-0"}')),
    (server_frame(TEXT, b""), ("data", TEXT, b"")),
    (server_frame(PING, b"abcd"), ("control", PING, b"abcd")),
    (server_frame(BINARY, bytes(range(256)) * 2), ("data", BINARY, bytes(range(256)) * 2)),  # 16-bit
    # a fragmented text message with a ping in the middle (RFC 6455 5.4 allows it)
    (server_frame(TEXT, b"[1,", fin=False) + server_frame(PING, b"")
     + server_frame(CONTINUATION, b"2,", fin=False) + server_frame(CONTINUATION, b"3]"),
     None),
    (server_frame(PONG, b"x"), ("control", PONG, b"x")),
    (server_frame(CLOSE, (4008).to_bytes(2, "big") + b"slow"),
     ("control", CLOSE, (4008).to_bytes(2, "big") + b"slow")),
]
EXPECTED = [e for _, e in STREAM if e is not None]
EXPECTED[4:4] = [("control", PING, b""), ("data", TEXT, b"[1,2,3]")]
WIRE = b"".join(frame for frame, _ in STREAM)


def test_frames_parse_the_same_whatever_the_chunking() -> None:
    whole = Recorder()
    whole.reader.feed(WIRE)
    assert whole.seen == EXPECTED
    for cut in range(len(WIRE) + 1):
        split = Recorder()
        split.reader.feed(WIRE[:cut])
        split.reader.feed(WIRE[cut:])
        assert split.seen == EXPECTED, cut
    one_by_one = Recorder()
    for i in range(len(WIRE)):
        one_by_one.reader.feed(WIRE[i:i + 1])
    assert one_by_one.seen == EXPECTED


def test_64_bit_lengths_and_the_size_limit() -> None:
    payload = os.urandom(70_000)
    wire = server_frame(BINARY, payload) + server_frame(TEXT, b"after")
    cuts = [*range(12), 40_000, len(wire) - 8, len(wire) - 1]
    for cut in cuts:
        rec = Recorder()
        rec.reader.feed(wire[:cut])
        rec.reader.feed(wire[cut:])
        assert rec.seen == [("data", BINARY, payload), ("data", TEXT, b"after")], cut
    small = FrameReader(lambda *_: None, lambda *_: None, max_size=1000)
    with pytest.raises(ProtocolError) as too_big:
        small.feed(server_frame(TEXT, b"x" * 1001)[:10])
    assert too_big.value.code == 1009


@pytest.mark.parametrize("wire", [
    bytes((0x81, 0x80 | 1)) + b"\0\0\0\0x",  # masked server frame
    bytes((0xC1, 1)) + b"x",  # RSV1 without an extension
    server_frame(PING, b"x", fin=False),  # fragmented control frame
    server_frame(CONTINUATION, b"x"),  # continuation of nothing
    bytes((0x83, 0)),  # reserved opcode
])
def test_protocol_violations_are_refused(wire: bytes) -> None:
    with pytest.raises(ProtocolError) as refused:
        FrameReader(lambda *_: None, lambda *_: None).feed(wire)
    assert refused.value.code == 1002


def test_client_frames_are_masked_and_unmask_to_the_payload() -> None:
    for size in (0, 5, 125, 126, 65535, 65536):
        payload = os.urandom(size)
        frame = client_frame(TEXT, payload)
        assert frame[0] == 0x81 and frame[1] & 0x80
        head = {125: 2, 126: 4, 65535: 4, 65536: 10}.get(size, 2)
        key = frame[head:head + 4]
        assert mask(frame[head + 4:], key) == payload
        assert len(frame) == head + 4 + size


@pytest.fixture
async def fast_gw(redis_url: str) -> AsyncIterator[InProcessGateway]:
    """A gateway that pings every 0.2 s and closes a connection silent for 0.3 s after one."""
    async with running_gateway(redis_url, heartbeat_interval=0.2, heartbeat_timeout=0.3) as gw:
        yield gw


async def subscribed(url: str, event_type: str) -> RawClient:
    conn = await RawClient.open(url, track_offsets=True)
    assert (await conn.next_message())["type"] == "welcome"
    conn.send_json({"op": "subscribe", "id": 1, "event_type": event_type})
    reply = await conn.next_message()
    assert reply["type"] == "subscribed" and reply["id"] == 1
    conn.start_counting()
    return conn


@pytest.mark.parametrize("batch", [False, True])
async def test_counts_exactly_the_published_events(fast_gw: InProcessGateway, pub: AsyncPublisher,
                                                   batch: bool) -> None:
    conn = await subscribed(fast_gw.url + ("?batch=1" if batch else ""), "rawcount")
    offsets = [await pub.publish("rawcount", {"n": i}, symbol="BTCUSDT") for i in range(20)]
    offsets += await pub.publish_many([Event("rawcount", {"n": i}, symbol="ETHUSDT")
                                       for i in range(20, 200)])
    await pub.publish("other", {"n": -1})  # not subscribed: never counted
    await until(lambda: conn.received >= 200, what="200 events")
    marker = await pub.publish("rawcount", {"marker": True})  # anything extra would come before it
    await until(lambda: conn.received >= 201, what="the marker")
    assert conn.received == 201
    assert conn.offsets == [o.encode() for o in [*offsets, marker]]
    assert conn.samples and all(-1000 < s < 5000 for s in conn.samples)
    conn.abort()


async def test_answers_pings_and_stays_open(fast_gw: InProcessGateway) -> None:
    conn = await subscribed(fast_gw.url, "quiet")
    # An unanswered ping closes the connection with 4001 0.3 s after it: 5 answered pings take
    # about 1 s, three times that.
    await until(lambda: conn.pings >= 5 or conn.closed.done(), timeout=10, what="5 pings")
    assert conn.close_code is None and not conn.closed.done()
    conn.close()
    assert await asyncio.wait_for(conn.closed, 10) == 1000  # the server echoed our close


async def test_records_the_servers_close_code(gw: InProcessGateway) -> None:
    conn = await RawClient.open(gw.url)
    await conn.next_message()
    conn.send(TEXT, b"x" * (1024 * 1024 + 10))  # over the gateway's 1 MiB frame limit
    assert await asyncio.wait_for(conn.closed, 10) == 1009
    with pytest.raises(ConnectionError):
        await conn.next_message(timeout=1)


async def test_a_wrong_accept_header_fails_the_handshake() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IGl0\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(ProtocolError, match="Sec-WebSocket-Accept"):
            await RawClient.open(f"ws://127.0.0.1:{port}/ws", timeout=5)
