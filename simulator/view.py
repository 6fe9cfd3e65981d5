"""What REST, the admin state and the tests read from a data source (market or replay)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from simulator.book import Level
from simulator.klines import Bar
from simulator.market import AggTrade, Trade
from simulator.symbols import SymbolSpec
from simulator.units import fmt


@dataclass(frozen=True, slots=True)
class BookState:
    """A symbol's true book: levels as ``(price, quantity)`` strings, best first."""

    symbol: str
    last_update_id: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]

    @classmethod
    def of(cls, symbol: str, update_id: int, bids: list[Level], asks: list[Level]) -> BookState:
        return cls(
            symbol,
            update_id,
            [(fmt(p), fmt(q)) for p, q in bids],
            [(fmt(p), fmt(q)) for p, q in asks],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "lastUpdateId": self.last_update_id,
            "bids": [list(x) for x in self.bids],
            "asks": [list(x) for x in self.asks],
        }


class MarketView(Protocol):
    def specs(self) -> list[SymbolSpec]: ...

    def spec(self, symbol: str) -> SymbolSpec | None: ...

    def depth(self, symbol: str, limit: int | None) -> tuple[int, list[Level], list[Level]]: ...

    def agg_trades(
        self, symbol: str, limit: int, from_id: int | None, start: int | None, end: int | None
    ) -> list[AggTrade]: ...

    def trades(self, symbol: str, limit: int, from_id: int | None) -> list[Trade]: ...

    def klines(
        self, symbol: str, interval: str, limit: int, start: int | None, end: int | None
    ) -> list[Bar]: ...

    def last_trade_id(self, symbol: str) -> int | None: ...

    def last_agg_trade_id(self, symbol: str) -> int | None: ...

    def book_state(self, symbol: str, depth: int | None = None) -> BookState: ...

    def describe(self) -> dict[str, Any]:
        """Source-level facts for ``GET /admin/state`` (mode, rate, progress...)."""
        ...
