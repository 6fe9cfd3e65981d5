"""The two clients behind one interface, so one scenario list runs against both.

:class:`PythonDriver` drives ``shared.client`` in this process; :class:`JsDriver` drives the
built npm package (clients/js/dist) in a Node process running ``driver.mjs``, over stdin/stdout
JSON lines. Both record the same :class:`Snapshot`: what each subscription delivered, the
resets, the close code of each connection that ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import jwt
import orjson

from shared.client import Client, Event, Reset, Status, Subscription, connect
from tests.support.gateway import SECRET

log = logging.getLogger("tests.conformance")

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "js"
DRIVER = Path(__file__).with_name("driver.mjs")
MAX_LINE = 64 * 1024 * 1024  # a snapshot of every event received, as one JSON line
Format = Literal["json", "msgpack"]


@dataclass(frozen=True)
class TokenSpec:
    """A token function: HS256 tokens for ``user`` living ``ttl`` s (the first one ``first_ttl``)."""

    user: str
    ttl: float
    first_ttl: float | None = None

    def wire(self) -> dict[str, Any]:
        return {"user": self.user, "ttl": self.ttl, "first_ttl": self.first_ttl, "secret": SECRET}


@dataclass
class Snapshot:
    """What a client delivered so far. ``received[type]`` = ``[(offset, symbol, data), ...]``."""

    received: dict[str, list[tuple[str, str | None, Any]]] = field(default_factory=dict)
    resets: list[dict[str, Any]] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    connected: int = 0
    state: str = ""
    error_code: int | str | None = None
    token_calls: int = 0

    def offsets(self, event_type: str) -> list[str]:
        return [offset for offset, _, _ in self.received.get(event_type, [])]


class Driver(Protocol):
    name: str

    async def start(self, url: str, *, format: Format = "json", batch: bool = True,
                    token: TokenSpec | str | None = None) -> None: ...

    async def subscribe(self, event_type: str, *, symbols: list[str] | None = None, since: str | None = None,
                        epoch: str | None = None, last: int | None = None) -> dict[str, Any]: ...

    async def update(self, event_type: str, symbols: list[str]) -> None: ...

    async def snapshot(self) -> Snapshot: ...

    async def close(self) -> None: ...


class PythonDriver:
    """shared.client, through its public API only."""

    name = "python"

    def __init__(self) -> None:
        self.client: Client | None = None
        self.snap = Snapshot()
        self.subs: dict[str, Subscription] = {}
        self._last_state = ""

    async def start(self, url: str, *, format: Format = "json", batch: bool = True,
                    token: TokenSpec | str | None = None) -> None:
        source: Any = token
        if isinstance(token, TokenSpec):
            spec = token

            def fresh() -> str:
                self.snap.token_calls += 1
                first = self.snap.token_calls == 1 and spec.first_ttl is not None
                ttl = spec.first_ttl if first and spec.first_ttl is not None else spec.ttl
                claims = {"sub": spec.user, "exp": int(time.time() + ttl)}
                return jwt.encode(claims, SECRET, algorithm="HS256")

            source = fresh
        self.client = connect(url, token=source, format=format, batch=batch, reconnect_base=0.05,
                              reconnect_cap=0.5)
        self.client.on_status(self._on_status)
        self.client.on_reset(self._on_reset)
        self.client.start()

    def _on_status(self, status: Status) -> None:
        if status.state == "connected" and self._last_state != "connected":
            self.snap.connected += 1
        self._last_state = status.state
        if status.state == "reconnecting" and status.code is not None:
            self.snap.codes.append(status.code)
        elif status.state == "disconnected" and status.error is not None:
            code = getattr(status.error, "close_code", None)
            self.snap.error_code = code
            if code is not None:
                self.snap.codes.append(code)

    def _on_reset(self, reset: Reset) -> None:
        self.snap.resets.append({"event_type": reset.event_type, "offset": reset.offset, "epoch": reset.epoch,
                                 "previous_epoch": reset.previous_epoch, "earliest": reset.earliest})

    def _recorder(self, event_type: str) -> Any:
        events = self.snap.received.setdefault(event_type, [])

        def record(event: Event) -> None:
            events.append((event.offset, event.symbol, event.data))

        return record

    async def subscribe(self, event_type: str, *, symbols: list[str] | None = None, since: str | None = None,
                        epoch: str | None = None, last: int | None = None) -> dict[str, Any]:
        assert self.client is not None
        sub = self.client.subscribe(event_type, symbols=symbols, since=since, epoch=epoch, last=last,
                                    callback=self._recorder(event_type))
        await asyncio.wait_for(sub.wait_subscribed(), 20)
        self.subs[event_type] = sub
        reset = sub.last_reset
        offset = reset.offset if reset else sub.offset
        return {"offset": offset, "epoch": sub.epoch, "recovered": reset is None}

    async def update(self, event_type: str, symbols: list[str]) -> None:
        await asyncio.wait_for(self.subs[event_type].update(symbols), 20)

    async def snapshot(self) -> Snapshot:
        assert self.client is not None
        self.snap.state = self.client.status.state
        return Snapshot({k: list(v) for k, v in self.snap.received.items()}, list(self.snap.resets),
                        list(self.snap.codes), self.snap.connected, self.snap.state, self.snap.error_code,
                        self.snap.token_calls)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


class JsDriver:
    """@tickstream/client (the built package) in Node, with the ``ws`` package as WebSocket."""

    name = "js"

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def _call(self, cmd: str, timeout: float = 30, **args: Any) -> dict[str, Any]:
        if self.proc is None:
            node = shutil.which("node")
            assert node is not None
            self.proc = await asyncio.create_subprocess_exec(
                node, str(DRIVER), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                limit=MAX_LINE, env=dict(os.environ, NODE_NO_WARNINGS="1"))
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            self.proc.stdin.write(orjson.dumps({"cmd": cmd, **args}) + b"\n")
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"the node driver exited (status {await self.proc.wait()})")
        reply: dict[str, Any] = orjson.loads(line)
        if not reply.pop("ok"):
            raise RuntimeError(f"node driver: {cmd}: {reply['error']}")
        return reply

    async def start(self, url: str, *, format: Format = "json", batch: bool = True,
                    token: TokenSpec | str | None = None) -> None:
        wire = token.wire() if isinstance(token, TokenSpec) else token
        await self._call("start", url=url, format=format, batch=batch, token=wire)

    async def subscribe(self, event_type: str, *, symbols: list[str] | None = None, since: str | None = None,
                        epoch: str | None = None, last: int | None = None) -> dict[str, Any]:
        options = {"symbols": symbols, "since": since, "epoch": epoch, "last": last}
        reply: dict[str, Any] = (await self._call("subscribe", type=event_type, options=options))["reply"]
        return reply

    async def update(self, event_type: str, symbols: list[str]) -> None:
        await self._call("update", type=event_type, symbols=symbols)

    async def snapshot(self) -> Snapshot:
        r = await self._call("snapshot")
        received = {k: [(o, s, d) for o, s, d in v] for k, v in r["received"].items()}
        return Snapshot(received, r["resets"], r["codes"], r["connected"], r["state"], r["error_code"],
                        r["token_calls"])

    async def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            await self._call("close", timeout=5)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
