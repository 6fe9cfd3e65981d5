"""One client WebSocket connection with Binance's rules.

Subscriptions and the live control methods, the ``combined`` wrapper, server pings with
a payload and the pong deadline, the incoming message rate limit, the connection
lifetime, slow-consumer protection and the per-connection side of the faults.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

import orjson
from websockets.frames import Opcode

from shared.logsetup import conn_logger
from simulator import control, payloads
from simulator.faults import FaultState
from simulator.hub import Event, Hub
from simulator.malformed import bad_frame
from simulator.streams import SHUTDOWN_STREAM
from simulator.wsconn import WsConnection

_log = logging.getLogger("tickstream.simulator.session")


@dataclass(frozen=True, slots=True)
class WsLimits:
    ping_interval: float = 20.0
    """Seconds between server pings; 0 disables them."""
    pong_timeout: float = 60.0
    """Seconds without the matching pong before the server disconnects."""
    message_rate: int = 5
    """Incoming messages (text, binary, ping, pong) allowed per second."""
    max_streams: int = 1024
    lifetime: float = 86400.0
    """Seconds after which the server closes the connection."""
    max_buffer: int = 16 * 1024 * 1024
    """Outgoing bytes buffered for a slow reader before it is disconnected."""
    close_timeout: float = 2.0
    max_message: int = 64 * 1024


class Session:
    """A subscriber of the hub bound to one WebSocket connection."""

    def __init__(
        self,
        conn_id: int,
        conn: WsConnection,
        hub: Hub,
        faults: FaultState,
        limits: WsLimits,
        combined: bool,
        micro: bool = False,
    ) -> None:
        self.id = conn_id
        self.conn = conn
        self.hub = hub
        self.faults = faults
        self.limits = limits
        self.combined = combined
        self.micro = micro
        self.max_streams = limits.max_streams
        self.log = conn_logger(_log, str(conn_id))
        self.opened = time.monotonic()
        self._streams: dict[str, None] = {}
        self._recent: deque[float] = deque()
        self._pings: dict[bytes, float] = {}
        self._fragments: list[bytes] = []
        self._frames_sent = 0
        self.pongs_matched = 0
        conn.muted = self.silenced

    # ---- ControlTarget -------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        return list(self._streams)

    def add_streams(self, streams: list[str]) -> None:
        for name in streams:
            if name not in self._streams:
                self._streams[name] = None
                self.hub.subscribe(name, self)

    def remove_streams(self, streams: list[str]) -> None:
        for name in streams:
            if self._streams.pop(name, 0) is None:
                self.hub.unsubscribe(name, self)

    # ---- outgoing ------------------------------------------------------------------------

    def silenced(self) -> bool:
        return self.faults.silenced(self.id)

    def deliver(self, event: Event) -> None:
        if not self.conn.is_open or self.silenced():
            return
        fault = self.faults.malformed
        kind = self.faults.malformed_kind(self._frames_sent) if fault else None
        self._frames_sent += 1
        if kind is not None and fault is not None:
            is_binary, data = bad_frame(kind, event, self.combined, self.micro)
            (self.conn.send_binary if is_binary else self.conn.send_text)(data)
            if fault.replace:
                return
        self.conn.send_text(event.encode(self.combined, self.micro))
        if self.conn.buffered() > self.limits.max_buffer:
            self.log.warning("slow consumer: %d bytes buffered, disconnecting",
                             self.conn.buffered())
            self.conn.abort(reset=False)

    def _reply(self, reply: control.Reply) -> None:
        if not self.silenced():
            self.conn.send_text(orjson.dumps(reply))

    def announce_shutdown(self, event_time: int) -> None:
        if not self.conn.is_open or self.silenced():
            return
        data = payloads.server_shutdown(event_time)
        if self.micro:
            data["E"] = event_time * 1000
        message = {"stream": SHUTDOWN_STREAM, "data": data} if self.combined else data
        self.conn.send_text(orjson.dumps(message))

    def close(self, code: int, reason: str = "") -> None:
        self.log.info("closing: %d %s", code, reason)
        self.conn.close(code, reason)

    def drop(self, mode: str, code: int = 1001, reason: str = "") -> None:
        self.log.info("dropping connection (%s)", mode)
        if mode == "reset":
            self.conn.abort(reset=True)
        elif mode == "eof":
            self.conn.close_tcp()
        else:
            self.conn.close(code, reason)

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self, streams: list[str]) -> None:
        """Serve the connection until it ends."""
        self.add_streams(streams)
        loop = asyncio.get_running_loop()
        expiry = loop.call_later(self.limits.lifetime, self._expire)
        keepalive = loop.create_task(self._keepalive())
        try:
            async for frame in self.conn.frames():
                self._on_frame(frame.opcode, bytes(frame.data), frame.fin)
        finally:
            expiry.cancel()
            keepalive.cancel()
            self.remove_streams(list(self._streams))
            self.log.info("connection closed after %.1fs", time.monotonic() - self.opened)

    def _expire(self) -> None:
        self.close(1001, "Connection lifetime expired")

    async def _keepalive(self) -> None:
        interval = self.limits.ping_interval
        timeout = self.limits.pong_timeout
        if interval <= 0:
            return
        next_ping = time.monotonic() + interval
        while self.conn.is_open:
            deadline = next_ping
            if self._pings:
                deadline = min(deadline, next(iter(self._pings.values())) + timeout)
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            now = time.monotonic()
            if self._pings and now - next(iter(self._pings.values())) >= timeout:
                self.log.info("no pong within %.1fs", timeout)
                self.close(1011, "Pong timeout")
                return
            if now >= next_ping:
                next_ping = now + interval
                if not self.silenced() and self.conn.is_open:
                    payload = str(time.time_ns() // 1_000_000).encode()
                    while payload in self._pings:
                        payload += b"+"
                    self._pings[payload] = now
                    self.conn.send_ping(payload)

    # ---- incoming ------------------------------------------------------------------------

    def _over_rate(self) -> bool:
        now = time.monotonic()
        recent = self._recent
        recent.append(now)
        while now - recent[0] >= 1.0:
            recent.popleft()
        return len(recent) > self.limits.message_rate

    def _on_frame(self, opcode: Opcode, data: bytes, fin: bool) -> None:
        if not self.conn.is_open:
            return
        if opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG) and self._over_rate():
            self.log.info("over %d messages/s", self.limits.message_rate)
            self.close(1008, "Too many requests")
            return
        if opcode is Opcode.PONG:
            self._on_pong(data)
        elif opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self._fragments.append(data)
            if fin:
                message = b"".join(self._fragments)
                self._fragments = []
                self._reply(control.handle(message, self))

    def _on_pong(self, data: bytes) -> None:
        if data not in self._pings:
            return  # unsolicited: allowed, but keeps nothing alive
        for payload in list(self._pings):
            del self._pings[payload]
            if payload == data:
                break
        self.pongs_matched += 1
