"""The Node bench client (bench/nodeclient.mjs) over its stdin/stdout control protocol: exact
counts against a real gateway (one event per frame and ``batch=1``), pings answered, and against
a scripted server its frame parser (lengths, fragments, bytes cut anywhere), duplicate
accounting, close codes and the handshake check."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bench.rawclient import RawClient
from shared.events import Event
from shared.publisher import AsyncPublisher
from tests.support.gateway import InProcessGateway, running_gateway
from tests.support.waiting import until

NODE = shutil.which("node")
SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "nodeclient.mjs"
pytestmark = pytest.mark.skipif(NODE is None,
                                reason="node is not on PATH (scripts/ensure-node.sh installs it)")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class NodeClient:
    """One ``node bench/nodeclient.mjs`` process and the lines it printed."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self.progress = 0
        self.closed = 0  # connections closed while counting
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, url: str, count: int, event_type: str) -> NodeClient:
        assert NODE is not None
        proc = await asyncio.create_subprocess_exec(
            NODE, str(SCRIPT), "--url", url, "--count", str(count), "--event-type", event_type,
            "--timeout", "20", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=1 << 24)
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            message = json.loads(line)
            self.lines.append(message)
            self.progress = message.get("progress", self.progress)
            self.closed = message.get("closed", self.closed)

    def line_with(self, key: str) -> dict[str, Any] | None:
        return next((line for line in self.lines if key in line), None)

    async def ready(self) -> None:
        await until(lambda: self.line_with("ready") or self.line_with("error") or self._reader.done(),
                    timeout=30, what="ready")
        assert self.line_with("ready"), self.lines

    async def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        assert await asyncio.wait_for(self.proc.wait(), 20) == 0
        await asyncio.wait_for(self._reader, 10)
        final = self.line_with("received")
        assert final is not None, self.lines
        return final

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        self._reader.cancel()


@contextlib.asynccontextmanager
async def node_client(url: str, count: int, event_type: str) -> AsyncIterator[NodeClient]:
    client = await NodeClient.start(url, count, event_type)
    try:
        yield client
    finally:
        await client.kill()


@pytest.fixture
async def fast_gw(redis_url: str) -> AsyncIterator[InProcessGateway]:
    """A gateway that pings every 0.2 s and closes a connection silent for 0.3 s after one."""
    async with running_gateway(redis_url, heartbeat_interval=0.2, heartbeat_timeout=0.3) as gw:
        yield gw


@pytest.mark.parametrize("batch", [False, True])
async def test_counts_exactly_the_published_events(gw: InProcessGateway, pub: AsyncPublisher,
                                                   batch: bool) -> None:
    async with node_client(gw.url + ("?batch=1" if batch else ""), 3, "nodecount") as client:
        await client.ready()
        for i in range(20):
            await pub.publish("nodecount", {"n": i}, symbol="BTCUSDT")
        await pub.publish_many([Event("nodecount", {"n": i}, symbol="ETHUSDT") for i in range(20, 200)])
        await pub.publish("other", {"n": -1})  # not subscribed: never counted
        await until(lambda: client.progress >= 600, what="200 events on each connection")
        await pub.publish("nodecount", {"marker": True})  # anything extra would come before it
        await until(lambda: client.progress >= 603, what="the marker")
        final = await client.stop()
    assert final["received"] == [201, 201, 201]
    assert final["dups"] == 0 and final["closes"] == []
    assert final["samples"] and all(-1000 < s < 5000 for s in final["samples"])


async def test_answers_pings_and_stays_open(fast_gw: InProcessGateway, pub: AsyncPublisher) -> None:
    async with node_client(fast_gw.url, 2, "nodequiet") as client:
        await client.ready()
        # A Python client subscribed after the Node ones: once it has answered 5 pings (about
        # 1 s; an unanswered ping closes with 4001 0.3 s later), so have the Node connections.
        watcher = await RawClient.open(fast_gw.url)
        await watcher.next_message()
        await until(lambda: watcher.pings >= 5 or watcher.closed.done(), timeout=10, what="5 pings")
        watcher.abort()
        await pub.publish("nodequiet", {"n": 1})
        await until(lambda: client.progress >= 2, what="the event on both connections")
        final = await client.stop()
    assert final["received"] == [1, 1] and final["closes"] == []


# -- against a scripted server ------------------------------------------------------------------

def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    first = bytes(((0x80 if fin else 0) | opcode,))
    if n < 126:
        return first + bytes((n,)) + payload
    if n < 65536:
        return first + bytes((126,)) + n.to_bytes(2, "big") + payload
    return first + bytes((127,)) + n.to_bytes(8, "big") + payload


def event(offset: str) -> bytes:
    return b'{"event_type":"t","offset":"%s","symbol":"X","ts":%s,"data":{"pad":"%s"}}' % (
        offset.encode(), offset.split("-")[0].encode(), b"x" * 80)


async def read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    assert b1 & 0x80, "client frames must be masked"
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    key = await reader.readexactly(4)
    payload = await reader.readexactly(n)
    return b0 & 0x0F, bytes(c ^ key[i % 4] for i, c in enumerate(payload))


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted_server(script: Script, accept_override: bytes | None = None) -> AsyncIterator[str]:
    """A one-connection WebSocket server: handshake, welcome, subscribed, then ``script``."""
    failures: list[BaseException] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key:"))
            accept = accept_override or base64.b64encode(hashlib.sha1(key + GUID).digest())
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            writer.write(server_frame(0x1, b'{"type":"welcome","protocol":1}'))
            opcode, payload = await read_client_frame(reader)
            assert opcode == 0x1 and json.loads(payload) == {"op": "subscribe", "event_type": "t"}
            writer.write(server_frame(0x1, b'{"type":"heartbeat","ts":1}')
                         + server_frame(0x1, b'{"type":"subscribed","offset":"0-0"}'))
            await script(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed (it was told to stop, or refused the handshake)
        except BaseException as exc:
            failures.append(exc)
            raise
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"ws://127.0.0.1:{port}/ws"
    assert not failures, failures


async def test_frames_cut_anywhere_duplicates_and_the_close_code() -> None:
    offsets = [f"{1000 + i}-0" for i in range(600)]

    def batch(part: list[str]) -> bytes:
        return b"[" + b",".join(event(o) for o in part) + b"]"

    assert len(batch(offsets[1:20])) > 125 and len(batch(offsets[20:520])) > 65535
    frames = [  # (frame, events complete once it is read)
        (server_frame(0x1, event(offsets[0])), 1),
        (server_frame(0x1, batch(offsets[1:20])), 19),  # 16-bit length
        (server_frame(0x2, batch(offsets[20:520])), 500),  # 64-bit length
        # a fragmented message with a ping in the middle (RFC 6455 5.4 allows it)
        (server_frame(0x1, b"[" + event(offsets[520]), fin=False), 0),
        (server_frame(0x9, b"mid"), 0),
        (server_frame(0x0, b"," + event(offsets[521]) + b"]"), 2),
        (server_frame(0x1, event(offsets[0])), 1),  # a duplicate
        *[(server_frame(0x1, event(o)), 1) for o in offsets[522:]],
    ]
    starts = [0]
    for frame, _ in frames:
        starts.append(starts[-1] + len(frame))
    wire = b"".join(frame for frame, _ in frames)
    # cut inside a header (before / inside a 16- or 64-bit length), inside payloads, at a fragment
    cuts = [starts[1] + 3, starts[2] + 5, starts[2] + 40_000, starts[3] + 1, starts[5] + 2,
            starts[6] + 1, starts[7] + 30, starts[9], len(wire) - 1, len(wire)]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # After each piece, wait until the client counted the events complete in what was sent:
        # the pieces then reach it as separate reads, cut at these points.
        for start, stop in zip([0, *cuts[:-1]], cuts, strict=True):
            writer.write(wire[start:stop])
            await writer.drain()
            done = sum(n for (_, n), end in zip(frames, starts[1:], strict=True) if end <= stop)
            await until(lambda: bool(started) and started[0].progress >= done,  # noqa: B023
                        what=f"{done} events")  # (awaited here: done is this iteration's)
        assert await read_client_frame(reader) == (0xA, b"mid")  # the pong
        writer.write(server_frame(0x8, (4008).to_bytes(2, "big") + b"slow"))
        assert await read_client_frame(reader) == (0x8, (4008).to_bytes(2, "big"))  # echoed
        await reader.read()

    started: list[NodeClient] = []
    async with scripted_server(script) as url, node_client(url, 1, "t") as client:
        started.append(client)
        await client.ready()
        await until(lambda: client.progress >= 601 and client.closed, what="every event, the close")
        final = await client.stop()
    assert final["received"] == [601]
    assert final["dups"] == 1
    assert final["closes"] == [4008]
    assert final["samples"]  # sampled on the first event of each chunk read


async def test_a_wrong_accept_header_is_an_error() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with scripted_server(script, accept_override=b"bm90IGl0") as url, \
            node_client(url, 1, "t") as client:
        assert await asyncio.wait_for(client.proc.wait(), 20) == 1
        await asyncio.wait_for(client._reader, 10)
        error = client.line_with("error")
        assert error is not None and "Sec-WebSocket-Accept" in error["error"]
