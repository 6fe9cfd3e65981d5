"""The "naive floor" of the fan-out comparison: a minimal ``websockets`` XREAD + broadcast server.

    .venv/bin/python -m bench.floor --redis-url redis://127.0.0.1:6379/0 --port 8765

What the gateway is measured against (issue 14): the ``websockets`` library's public asyncio
server (``serve`` + ``broadcast``), uvloop and redis.asyncio, nothing else. It speaks the part of
the Tickstream protocol the fan-out bench uses: a ``welcome`` on connect, ``subscribe`` /
``unsubscribe`` / ``ping``, and live events of public streams as the gateway encodes them
(:func:`shared.codec.event_json`, so the payload bytes are the gateway's). One reader task per
event type runs ``XREAD BLOCK`` from the stream's newest entry at the first subscribe and
broadcasts each event as one text frame; a client that connects with ``?batch=1`` gets one JSON
array per XREAD reply instead. No replay (``since``/``last`` are ignored), no symbol filter, no
auth, no private events, no conflation, no backpressure: ``broadcast`` (websockets 14+) writes
to every open connection whatever its buffer holds, so a slow client's output piles up in memory
instead of being skipped or closed. Once a second the server samples how many clients are
*behind* (more than the library's 32 KiB write limit buffered) and the largest buffer; on SIGTERM
it prints its counters as one JSON line on stdout (:attr:`FloorServer.stats`).
permessage-deflate is off, as in the gateway (``--compression`` turns it on).

:class:`FloorServer` runs it as a process for a benchmark, like :class:`bench.support.Gateway`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect as sync_connect

from shared import codec
from shared.errors import CodecError
from shared.events import is_event_type
from shared.keys import Keys
from tests.support.redis_server import free_port

log = logging.getLogger("bench.floor")

MAX_MESSAGE = 64 * 1024  # client messages; larger ones close the connection (1009)
READ_COUNT = 1000  # entries per XREAD
BEHIND_BYTES = 2**15  # the library's default write limit: a send() would wait past this


@dataclass
class Stats:
    """Counters printed at shutdown (one JSON object)."""

    events: int = 0  # entries read from Redis
    frames: int = 0  # broadcast() calls
    deliveries: int = 0  # events handed to connections (an event in a batch frame counts once)
    peak_clients: int = 0
    peak_behind: int = 0  # clients with more than BEHIND_BYTES buffered, at one sample
    peak_buffered: int = 0  # the largest write buffer of one client, bytes
    bad_entries: int = 0


@dataclass
class Topic:
    """One event type: its subscribers (per frame mode), its reader and its read position."""

    event_type: str
    position: str
    epoch: str  # as read at the first subscribe ("" if the type has none; floor never makes one)
    single: set[ServerConnection] = field(default_factory=set)
    batch: set[ServerConnection] = field(default_factory=set)
    reader: asyncio.Task[None] | None = None


class Floor:
    """Owns the topics, their reader tasks and every connection's handler."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self.topics: dict[str, Topic] = {}
        self.starting: dict[str, asyncio.Future[Topic]] = {}
        self.clients: set[ServerConnection] = set()
        self.stats = Stats()

    async def handler(self, ws: ServerConnection) -> None:
        batch = parse_qs(urlsplit(ws.request.path if ws.request else "/").query).get("batch") == ["1"]
        self.clients.add(ws)
        self.stats.peak_clients = max(self.stats.peak_clients, len(self.clients))
        mine: set[str] = set()
        try:
            await ws.send(orjson.dumps({"type": "welcome", "session": ws.id.hex[:16], "node": "floor",
                                        "protocol": 1, "heartbeat": 20, "user": None}), text=True)
            async for frame in ws:
                await self.command(ws, frame, batch, mine)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(ws)
            for event_type in mine:
                topic = self.topics[event_type]
                topic.single.discard(ws)
                topic.batch.discard(ws)

    async def command(self, ws: ServerConnection, frame: str | bytes, batch: bool,
                      mine: set[str]) -> None:
        try:
            obj = orjson.loads(frame)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            await self.reply(ws, {"type": "error", "code": "bad_request", "message": "not a JSON object"})
            return
        op, msg_id, event_type = obj.get("op"), obj.get("id"), obj.get("event_type")
        if op == "ping":
            await self.reply(ws, {"type": "pong", "ts": int(time.time() * 1000)}, msg_id)
        elif op not in ("subscribe", "unsubscribe"):
            await self.reply(ws, {"type": "error", "code": "unknown_op", "message": "unknown op"}, msg_id)
        elif not is_event_type(event_type):
            await self.reply(ws, {"type": "error", "code": "bad_request",
                                  "message": "'event_type' must match ^[a-z][a-z0-9_]{0,63}$"}, msg_id)
        elif op == "unsubscribe":
            if event_type in mine:
                mine.discard(event_type)
                self.topics[event_type].single.discard(ws)
                self.topics[event_type].batch.discard(ws)
            await self.reply(ws, {"type": "unsubscribed", "event_type": event_type}, msg_id)
        else:
            topic = await self.topic(event_type)
            message = {"type": "subscribed", "event_type": event_type, "epoch": topic.epoch,
                       "offset": topic.position, "recovered": True}
            # The reply and joining the set happen with no await between: broadcast() writes at
            # once, so the reply precedes every event and no event read after it is missed.
            broadcast((ws,), self.encode(message, msg_id), text=True)
            (topic.batch if batch else topic.single).add(ws)
            mine.add(event_type)

    @staticmethod
    def encode(message: dict[str, Any], msg_id: Any) -> bytes:
        if msg_id is not None:
            message["id"] = msg_id
        return orjson.dumps(message)

    async def reply(self, ws: ServerConnection, message: dict[str, Any], msg_id: Any = None) -> None:
        await ws.send(self.encode(message, msg_id), text=True)

    async def topic(self, event_type: str) -> Topic:
        """The type's topic, its reader started from the stream's newest entry the first time.

        Only the first subscribe of a type touches Redis (a storm of subscribes makes one
        XREVRANGE and one HGET), so the reader's connection and these share a small pool."""
        topic = self.topics.get(event_type)
        if topic is not None:
            return topic
        pending = self.starting.get(event_type)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = self.starting[event_type] = asyncio.get_running_loop().create_future()
        try:
            newest: Any = await self.redis.xrevrange(self.keys.stream(event_type), count=1)
            epoch: Any = await self.redis.hget(self.keys.meta(event_type), "epoch")
            topic = Topic(event_type, newest[0][0].decode() if newest else "0-0",
                          epoch.decode() if epoch else "")
        except BaseException as exc:
            del self.starting[event_type]
            pending.set_exception(exc)
            pending.exception()  # retrieved here: waiters re-raise it, none is a bug
            raise
        topic.reader = asyncio.create_task(self.read(topic), name=f"floor-read-{event_type}")
        self.topics[event_type] = topic
        del self.starting[event_type]
        pending.set_result(topic)
        return topic

    async def read(self, topic: Topic) -> None:
        """XREAD the topic's stream for ever; broadcast each event (and one batch frame)."""
        key, event_type, stats = self.keys.stream(topic.event_type), topic.event_type, self.stats
        while True:
            try:
                reply: Any = await self.redis.xread({key: topic.position}, count=READ_COUNT, block=1000)
            except RedisError as exc:
                log.warning("XREAD %s failed: %r", key, exc)
                await asyncio.sleep(0.5)  # a retry delay, not synchronisation
                continue
            for _stream, entries in reply or ():
                frames: list[bytes] = []
                for entry_id, fields in entries:
                    try:
                        frames.append(codec.event_json(codec.decode_entry(event_type, entry_id, fields)))
                    except CodecError as exc:
                        stats.bad_entries += 1
                        log.warning("skipped an entry: %s", exc)
                topic.position = entries[-1][0].decode()
                stats.events += len(entries)
                single, batch = topic.single, topic.batch
                for frame in frames:
                    broadcast(single, frame, text=True)
                stats.frames += len(frames) if single else 0
                if batch and frames:
                    broadcast(batch, b"".join((b"[", b",".join(frames), b"]")), text=True)
                    stats.frames += 1
                stats.deliveries += len(frames) * (len(single) + len(batch))

    async def sample(self) -> None:
        """Once a second: how many clients are behind, and the largest write buffer."""
        while True:
            await asyncio.sleep(1.0)  # a sampling period, not synchronisation
            sizes = [ws.transport.get_write_buffer_size() for ws in list(self.clients)]
            behind = sum(1 for size in sizes if size > BEHIND_BYTES)
            self.stats.peak_behind = max(self.stats.peak_behind, behind)
            self.stats.peak_buffered = max([self.stats.peak_buffered, *sizes])


async def run(redis_url: str, host: str, port: int, compression: bool, prefix: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    floor = Floor(redis, Keys(prefix))
    stop = asyncio.get_running_loop().create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, on_signal)
    sampler = asyncio.create_task(floor.sample())
    async with serve(floor.handler, host, port, compression="deflate" if compression else None,
                     max_size=MAX_MESSAGE, close_timeout=2) as server:
        log.info("floor listening on %s:%d", host, port)
        await stop
        print(json.dumps(asdict(floor.stats)), flush=True)
        for task in [sampler, *(t.reader for t in floor.topics.values() if t.reader)]:
            task.cancel()
        server.close()
    await redis.aclose()


class FloorServer:
    """A ``python -m bench.floor`` process on a free loopback port, for a benchmark."""

    def __init__(self, redis_url: str, *, compression: bool = False) -> None:
        self.redis_url = redis_url
        self.port = free_port()
        self.compression = compression
        self.proc: subprocess.Popen[bytes] | None = None
        self.stats: dict[str, int] | None = None  # the server's counters, after stop()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 30.0) -> None:
        args = [sys.executable, "-m", "bench.floor", "--redis-url", self.redis_url,
                "--port", str(self.port)]
        self.proc = subprocess.Popen(args + (["--compression"] if self.compression else []),
                                     stdout=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with sync_connect(self.url, open_timeout=2, close_timeout=1) as ws:
                    if orjson.loads(ws.recv(timeout=2)).get("type") == "welcome":
                        return
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("floor server did not start")
            time.sleep(0.05)  # polling a condition, not synchronising on time

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if proc.poll() is None:
            proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=10)
        lines = out.decode(errors="replace").strip().splitlines()
        if lines:
            try:
                self.stats = json.loads(lines[-1])
            except ValueError:
                log.warning("floor server printed no stats: %r", lines[-1][:200])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="tickstream", help="Redis key prefix")
    parser.add_argument("--compression", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    import uvloop

    uvloop.run(run(args.redis_url, args.host, args.port, args.compression, args.prefix))


if __name__ == "__main__":
    main()
