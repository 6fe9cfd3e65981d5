"""Symbols the simulator trades: names, assets, tick and step sizes, starting prices."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from simulator.units import SCALE

STATUSES = ("TRADING", "END_OF_DAY", "HALT", "BREAK", "CANCEL_ONLY")
QUOTE_ASSETS = (
    "USDT", "FDUSD", "USDC", "TUSD", "BUSD", "DAI", "BTC", "ETH", "BNB",
    "EUR", "TRY", "BRL", "JPY", "GBP",
)
_NAME = re.compile(r"^[A-Z0-9]{2,20}$")


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One symbol: all prices and quantities in units of 1e-8."""

    name: str
    base: str
    quote: str
    tick: int
    step: int
    price: int
    """Starting price."""
    lot: int
    """Typical resting quantity of one book level."""
    activity: float
    """Share of the event rate this symbol gets, relative to the others."""
    status: str = "TRADING"

    @property
    def stream_prefix(self) -> str:
        return self.name.lower()

    def with_status(self, status: str) -> SymbolSpec:
        if status not in STATUSES:
            raise ValueError(f"unknown symbol status {status!r}; expected one of {STATUSES}")
        return replace(self, status=status)


def _u(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * SCALE + int((frac + "00000000")[:8])


KNOWN: dict[str, SymbolSpec] = {
    s.name: s
    for s in (
        SymbolSpec("BTCUSDT", "BTC", "USDT", _u("0.01"), _u("0.00001"), _u("60000"),
                   _u("0.05"), 1.0),
        SymbolSpec("ETHUSDT", "ETH", "USDT", _u("0.01"), _u("0.0001"), _u("3000"),
                   _u("1.0"), 0.7),
        SymbolSpec("BNBBTC", "BNB", "BTC", _u("0.000001"), _u("0.001"), _u("0.0085"),
                   _u("5"), 0.05),
        SymbolSpec("BNBUSDT", "BNB", "USDT", _u("0.01"), _u("0.001"), _u("600"),
                   _u("10"), 0.3),
        SymbolSpec("SOLUSDT", "SOL", "USDT", _u("0.01"), _u("0.001"), _u("150"),
                   _u("20"), 0.4),
        SymbolSpec("ETHBTC", "ETH", "BTC", _u("0.00001"), _u("0.0001"), _u("0.05"),
                   _u("2"), 0.1),
    )
}
DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBBTC")


def spec_for(name: str) -> SymbolSpec:
    """The spec of a known symbol, or a plausible one derived from the name."""
    name = name.strip().upper()
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid symbol {name!r}: expected 2-20 letters or digits")
    known = KNOWN.get(name)
    if known is not None:
        return known
    for quote in QUOTE_ASSETS:
        if name.endswith(quote) and len(name) > len(quote):
            base = name[: -len(quote)]
            break
    else:
        base, quote = name[:-3] or name, name[-3:]
    return SymbolSpec(name, base, quote, _u("0.01"), _u("0.001"), _u("100"), _u("10"), 0.2)


def parse_symbols(names: tuple[str, ...] | list[str]) -> tuple[SymbolSpec, ...]:
    specs = tuple(spec_for(n) for n in names)
    if not specs:
        raise ValueError("at least one symbol is needed")
    seen = {s.name for s in specs}
    if len(seen) != len(specs):
        raise ValueError("duplicate symbol in list")
    return specs
