"""Dead-connection detection, against a scripted server that can fall silent.

The real gateway always sends a ``heartbeat`` message on an idle interval; the server here
follows the protocol until told to stop talking, which is what a half-open TCP connection
(a gateway host that vanished without a FIN) looks like to the client.
"""

from __future__ import annotations

import asyncio
import time

import orjson
from websockets.asyncio.server import ServerConnection, serve

from shared.client import connect
from tests.client.helpers import Consumer, record_statuses
from tests.support.waiting import until


class ScriptedGateway:
    def __init__(self, heartbeat: float, events: int = 0, beat_every: float | None = None) -> None:
        self.heartbeat, self.events, self.beat_every = heartbeat, events, beat_every
        self.connections = 0
        self.beats_sent = 0
        self.port = 0

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.send(orjson.dumps({"type": "welcome", "session": f"s{self.connections}", "node": "scripted",
                                    "protocol": 1, "heartbeat": self.heartbeat, "user": None}).decode())
        beats = asyncio.create_task(self._beat(ws))
        try:
            async for frame in ws:
                op = orjson.loads(frame) if isinstance(frame, str) else {}
                if op.get("op") == "ping":
                    await ws.send(orjson.dumps({"type": "pong", "id": op["id"], "ts": 0}).decode())
                elif op.get("op") == "subscribe":
                    await ws.send(orjson.dumps({"type": "subscribed", "id": op["id"], "event_type": "custom",
                                                "epoch": "e", "offset": "1-0", "recovered": True}).decode())
                    for n in range(self.events):
                        event = {"event_type": "custom", "offset": f"2-{n}", "symbol": None, "ts": 2,
                                 "data": {"n": n}}
                        await ws.send(orjson.dumps(event).decode())
        finally:
            beats.cancel()

    async def _beat(self, ws: ServerConnection) -> None:
        while self.beat_every is not None:
            await asyncio.sleep(self.beat_every)
            await ws.send(orjson.dumps({"type": "heartbeat", "ts": 0}).decode())
            self.beats_sent += 1


async def test_a_silent_connection_is_dropped_after_heartbeat_plus_timeout() -> None:
    script = ScriptedGateway(heartbeat=0.5)  # welcome, pongs, then nothing: no heartbeat messages
    async with serve(script.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = connect(f"ws://127.0.0.1:{port}/ws", format="json", heartbeat_timeout=0.5,
                         reconnect_base=0.01, reconnect_cap=0.05)
        statuses = record_statuses(client)
        async with client:
            up = time.monotonic()
            await until(lambda: statuses.of("reconnecting"), timeout=5, what="the dead connection noticed")
            waited = time.monotonic() - up
            assert statuses.of("reconnecting")[0].reason.startswith("heartbeat timeout")
            assert 0.9 <= waited < 3.0  # heartbeat (0.5) + timeout (0.5), not sooner
            await until(lambda: script.connections == 2, what="a new connection")
            await client.close()


async def test_waiting_for_a_busy_application_is_not_mistaken_for_a_dead_connection() -> None:
    script = ScriptedGateway(heartbeat=0.3, events=200, beat_every=0.2)
    async with serve(script.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = connect(f"ws://127.0.0.1:{port}/ws", format="json", heartbeat_timeout=0.2, queue_size=10)
        async with client as ts:
            go = asyncio.Event()
            consumer = Consumer(await ts.subscribe("custom"), go)
            await until(lambda: script.beats_sent >= 8, what="well past heartbeat + timeout")  # ~1.6 s
            assert ts.subscriptions["custom"].pending == 10  # the reader is blocked on a full queue
            go.set()
            await until(lambda: len(consumer.events) == 200)
            assert [e.data["n"] for e in consumer.events] == list(range(200))
            assert script.connections == 1 and ts.connections == 1
            await consumer.stop()
