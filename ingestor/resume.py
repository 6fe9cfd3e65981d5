"""Where to resume: the last trade id and closed candle per sequence that Redis holds.

The publish script keeps them: every ``price_update`` and closed candle the ingestor publishes
carries a *mark* (:func:`mark_of`), and the script stores each sequence's highest id in the
type's ``last`` hash (``<prefix>:{price_update}:last``: ``BTCUSDT`` -> aggregate trade id;
``<prefix>:{market_data}:last``: ``BTCUSDT:candle:1m`` -> open time in ms) in the same call
that adds the entries, so the hash never disagrees with the stream. No process memory is
involved: any ingestor of the group reads the same answer.

A sequence missing from the hash (Redis written by a release without marks, or the hash
deleted) is looked for in the stream itself: its tail is read backwards with ``XREVRANGE``, at
most :data:`SCAN_LIMIT` entries per type. Not found: the sequence starts from the next live
item, as on a first start.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import msgpack

from shared.events import Event
from shared.keys import Keys
from shared.topology import Topology

log = logging.getLogger("tickstream.ingestor.resume")

PRICE_UPDATE = "price_update"
MARKET_DATA = "market_data"
SCAN_LIMIT = 10_000
PAGE = 1000


def candle_mark(symbol: str, interval: str) -> str:
    return f"{symbol}:candle:{interval}"


def iso_to_ms(text: str) -> int:
    """``2026-01-01T00:00:00.000Z`` (the format of :func:`ingestor.normalize.iso_ms`) -> ms."""
    seconds = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    millis = int(text[20:23]) if len(text) >= 23 and text[19] == "." else 0
    return seconds * 1000 + millis


def mark_of(event: Event) -> tuple[str, int] | None:
    """The publisher's marker: a trade's symbol and id, a closed candle's sequence and open time."""
    data = event.data
    if event.event_type == PRICE_UPDATE:
        return str(data["symbol"]), int(data["trade_id"])
    if event.event_type == MARKET_DATA and data.get("kind") == "candle" and data.get("closed"):
        return candle_mark(str(data["symbol"]), str(data["interval"])), iso_to_ms(str(data["open_time"]))
    return None


@dataclass(slots=True)
class Marks:
    """The last published id of each sequence (absent: nothing published yet)."""

    trades: dict[str, int] = field(default_factory=dict)
    candles: dict[tuple[str, str], int] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{s} after trade {i}" for s, i in sorted(self.trades.items())]
        parts += [f"{s} {iv} candles after {_iso(t)}" for (s, iv), t in sorted(self.candles.items())]
        return ", ".join(parts) or "nothing published yet"


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Resume:
    """Reads :class:`Marks` for the sequences one ingestor publishes."""

    def __init__(self, topology: Topology, keys: Keys, trades: Iterable[str],
                 candles: Iterable[tuple[str, str]], *, scan_limit: int = SCAN_LIMIT) -> None:
        self.topology = topology
        self.keys = keys
        self.trades = list(trades)
        self.candles = list(candles)
        self.scan_limit = scan_limit

    async def read(self, trades: Iterable[str] | None = None,
                   candles: Iterable[tuple[str, str]] | None = None) -> Marks:
        """The marks of these sequences (default: all of this ingestor's). Redis errors raise."""
        want_trades = self.trades if trades is None else list(trades)
        want_candles = self.candles if candles is None else list(candles)
        marks = Marks()
        if want_trades:
            stored = await self._hash(PRICE_UPDATE)
            for symbol in want_trades:
                if symbol in stored:
                    marks.trades[symbol] = stored[symbol]
            missing = {s for s in want_trades if s not in marks.trades}
            if missing:
                found = await self._scan(PRICE_UPDATE, missing, _trade_in)
                marks.trades.update({name: value for name, value in found.items()})
        if want_candles:
            stored = await self._hash(MARKET_DATA)
            names = {candle_mark(s, i): (s, i) for s, i in want_candles}
            for name, key in names.items():
                if name in stored:
                    marks.candles[key] = stored[name]
            missing = {name for name, key in names.items() if key not in marks.candles}
            if missing:
                found = await self._scan(MARKET_DATA, missing, _candle_in)
                marks.candles.update({names[name]: value for name, value in found.items()})
        return marks

    async def _hash(self, event_type: str) -> dict[str, int]:
        key = self.keys.last(event_type)
        raw = await (await self.topology.client_for(key)).hgetall(key)
        out = {}
        for name, value in raw.items():
            try:
                out[_text(name)] = int(value)
            except ValueError:
                log.warning("%s: %r is not an id; ignored", key, value)
        return out

    async def _scan(self, event_type: str, wanted: set[str],
                    match: Callable[[bytes, dict[bytes, bytes]], tuple[str, int] | None]
                    ) -> dict[str, int]:
        """The newest mark of each wanted sequence among the last ``scan_limit`` entries."""
        key = self.keys.stream(event_type)
        client = await self.topology.client_for(key)
        found: dict[str, int] = {}
        symbols = {name.split(":", 1)[0].encode() for name in wanted}
        upper: bytes | str = "+"
        seen = 0
        while len(found) < len(wanted) and seen < self.scan_limit:
            entries = cast("list[tuple[bytes, dict[bytes, bytes]]]",
                           await client.xrevrange(key, max=upper, min="-", count=PAGE))
            if not entries:
                break
            for entry_id, fields in entries:
                if fields.get(b"s") not in symbols:
                    continue
                mark = match(entry_id, fields)
                if mark is not None and mark[0] in wanted and mark[0] not in found:
                    found[mark[0]] = mark[1]
            seen += len(entries)
            upper = b"(" + entries[-1][0]
        if found:
            log.info("%s: no marks for %s in %s; found in the stream tail",
                     event_type, ", ".join(sorted(found)), self.keys.last(event_type))
        return found


def _data(fields: dict[bytes, bytes]) -> dict[str, Any] | None:
    raw = fields.get(b"d")
    try:
        value = msgpack.unpackb(raw, raw=False) if raw is not None else None
    except (ValueError, msgpack.UnpackException):
        return None
    return value if isinstance(value, dict) else None


def _trade_in(entry_id: bytes, fields: dict[bytes, bytes]) -> tuple[str, int] | None:
    data = _data(fields)
    if data is None or not isinstance(data.get("trade_id"), int):
        return None
    return str(data.get("symbol", _text(fields.get(b"s", b"")))), int(data["trade_id"])


def _candle_in(entry_id: bytes, fields: dict[bytes, bytes]) -> tuple[str, int] | None:
    data = _data(fields)
    if data is None or data.get("kind") != "candle" or not data.get("closed"):
        return None
    try:
        return candle_mark(str(data["symbol"]), str(data["interval"])), iso_to_ms(str(data["open_time"]))
    except (KeyError, ValueError):
        return None
