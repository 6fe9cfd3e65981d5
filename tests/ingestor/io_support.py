"""Support for the ingestor's I/O tests: a simulator, a real Redis and an ingestor, wired.

``async with running(redis_url, ...) as stack`` starts a :class:`~simulator.Simulator` on a free
loopback port and an :class:`~ingestor.service.Ingestor` pointed at it (HTTP on a free port), and
stops both. Helpers read back what a user would see: the Redis streams (XRANGE +
``shared.codec.decode_entry``) and ``/metrics`` over HTTP.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import redis
import redis.asyncio
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from ingestor.service import Ingestor
from ingestor.settings import IngestorSettings
from shared.codec import decode_entry
from shared.keys import Keys
from simulator import Simulator
from tests.support.waiting import until

SYMBOLS = ("BTCUSDT", "ETHUSDT")
DEPTH = 20  # DEPTH_LEVELS, the ingestor's default

SIM_DEFAULTS: dict[str, Any] = {
    "port": 0, "rate": 200.0, "ping_interval": 0.0, "symbols": ("BTCUSDT", "ETHUSDT", "BNBBTC"),
}


@dataclass
class Stack:
    sim: Simulator
    ingestor: Ingestor
    redis: redis.asyncio.Redis
    keys: Keys
    client: httpx.AsyncClient

    @property
    def settings(self) -> IngestorSettings:
        return self.ingestor.settings

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.ingestor.http_port}"

    # -- Redis, as a consumer sees it ----------------------------------------------------------

    async def events(self, event_type: str) -> list[tuple[str, dict[str, Any]]]:
        """Every entry of one event type's stream, in offset order: ``(offset, data)``."""
        entries = await self.redis.xrange(self.keys.stream(event_type))
        out = []
        for entry_id, fields in entries:
            entry = decode_entry(event_type, entry_id, fields)
            out.append((entry.offset, entry.data()))
        return out

    async def trade_ids(self, symbol: str) -> list[int]:
        return [d["trade_id"] for _, d in await self.events("price_update") if d["symbol"] == symbol]

    async def last_book(self, symbol: str) -> dict[str, Any] | None:
        books = [d for _, d in await self.events("orderbook_update") if d["symbol"] == symbol]
        return books[-1] if books else None

    # -- the simulator's truth -----------------------------------------------------------------

    def pause_market(self) -> None:
        assert self.sim.market is not None
        self.sim.market.pause()

    def resume_market(self) -> None:
        assert self.sim.market is not None
        self.sim.market.resume()

    async def caught_up(self, symbol: str) -> bool:
        """The last trade in Redis is the simulator's last aggregate trade of ``symbol``."""
        ids = await self.trade_ids(symbol)
        return bool(ids) and ids[-1] == self.sim.state.last_agg_trade_id(symbol)

    async def wait_exchange_trades(self, count: int, timeout: float = 15.0) -> None:
        """Let the exchange make ``count`` more aggregate trades (all symbols together)."""
        def total() -> int:
            return sum(self.sim.state.last_agg_trade_id(s) or 0 for s in self.settings.symbols)

        start = total()
        await until(lambda: total() >= start + count, timeout, f"{count} more trades on the exchange")

    async def wait_trades(self, symbol: str, count: int, timeout: float = 10.0) -> list[int]:
        async def enough() -> list[int] | None:
            ids = await self.trade_ids(symbol)
            return ids if len(ids) >= count else None

        found: list[int] = await until(enough, timeout, f"{count} {symbol} trades in Redis")
        return found

    # -- the ingestor's HTTP endpoints ---------------------------------------------------------

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(self.http + path)

    async def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of ``/metrics`` (0 when absent)."""
        text = (await self.get("/metrics")).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total


async def assert_book_matches_the_exchange(stack: Stack, symbol: str) -> dict[str, Any]:
    """With the market paused, the last orderbook_update is the simulator's true top 20."""
    truth = stack.sim.state.book(symbol, DEPTH)

    async def published_current() -> dict[str, Any] | None:
        book = await stack.last_book(symbol)
        return book if book is not None and book["last_update_id"] == truth.last_update_id else None

    book: dict[str, Any] = await until(published_current, 10, f"{symbol} book at {truth.last_update_id}")
    assert book["bids"] == [[float(p), float(q)] for p, q in truth.bids]
    assert book["asks"] == [[float(p), float(q)] for p, q in truth.asks]
    assert len(book["bids"]) == len(book["asks"]) == DEPTH
    return book


def assert_contiguous(ids: list[int], what: str = "trade ids") -> None:
    """Each id once, in order, none missing: what a consumer of price_update relies on."""
    assert ids, f"no {what}"
    duplicates = len(ids) - len(set(ids))
    assert duplicates == 0, f"{duplicates} duplicate {what}"
    expected = list(range(ids[0], ids[0] + len(ids)))
    if ids != expected:
        holes = sorted(set(range(ids[0], ids[-1] + 1)) - set(ids))
        out_of_order = [b for a, b in itertools.pairwise(ids) if b < a]
        raise AssertionError(f"{what} not contiguous: missing {holes[:20]} (of {len(holes)}), "
                             f"out of order {out_of_order[:20]}")


@contextlib.asynccontextmanager
async def running(
    redis_url: str,
    *,
    sim: dict[str, Any] | None = None,
    before_start: Callable[[Simulator], None] | None = None,
    **settings: Any,
) -> AsyncIterator[Stack]:
    """A simulator (``sim`` overrides its test defaults) and an ingestor (``settings``) on it;
    ``before_start`` runs once the simulator is up and before the ingestor starts."""
    logging.getLogger("tickstream.simulator").setLevel(logging.WARNING)
    sim_options = {**SIM_DEFAULTS, **(sim or {})}
    options: dict[str, Any] = {
        "redis_url": redis_url, "port": 0, "symbols": SYMBOLS, "key_prefix": "ts",
        "shutdown_grace": 5.0, **settings,
    }
    async with Simulator(**sim_options) as simulator:
        options.setdefault("binance_ws_url", simulator.url_ws)
        options.setdefault("binance_rest_url", simulator.url_rest)
        if before_start is not None:
            before_start(simulator)
        ingestor = Ingestor(IngestorSettings(**options))
        # Retries: some tests restart Redis under this client.
        client = redis.asyncio.Redis.from_url(
            redis_url, retry=Retry(ExponentialBackoff(cap=0.5), 5),
            retry_on_error=[redis.ConnectionError, ConnectionError],
        )
        http = httpx.AsyncClient()
        await ingestor.start()
        try:
            yield Stack(simulator, ingestor, client, Keys(options["key_prefix"]), http)
        finally:
            await ingestor.stop()
            await client.aclose()
            await http.aclose()


def takeover_window(ttl: float, renew: float, retry: float) -> tuple[float, float]:
    """How long a group goes without a leader after its leader dies, at least and at most (plus
    a round trip): the lease was renewed up to ``renew`` before the death and lapses ``ttl``
    after its renewal; a standby tries every ``retry``."""
    return max(0.0, ttl - renew), ttl + retry
