"""Fixed-point numbers: every price and quantity is an int in units of 1e-8.

Binance prints prices and quantities as decimal strings with 8 decimals
(``"25.35190000"``); keeping them as integers makes book arithmetic exact and every
string canonical. A quote amount (price x quantity) is kept exact in units of 1e-16 and
truncated to 8 decimals only when printed.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal, InvalidOperation

SCALE = 100_000_000
_EIGHT = Decimal("0.00000001")


def fmt(units: int) -> str:
    """``150000000`` -> ``"1.50000000"``."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), SCALE)
    return f"{sign}{whole}.{frac:08d}"


def fmt_quote(exact: int) -> str:
    """A price x quantity product (units of 1e-16) printed with 8 decimals, truncated."""
    sign = -1 if exact < 0 else 1
    return fmt(sign * (abs(exact) // SCALE))


def parse(text: str) -> int:
    """``"0.0010"`` -> ``100000``; more than 8 decimals are truncated."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    return int((value.quantize(_EIGHT, rounding=ROUND_DOWN) * SCALE).to_integral_value())


def fmt_percent(change: int, base: int) -> str:
    """``change / base * 100`` with 3 decimals, as Binance prints priceChangePercent."""
    if base == 0:
        return "0.000"
    pct = Decimal(change) * 100 / Decimal(base)
    return str(pct.quantize(Decimal("0.001")))


def fmt_ratio(exact_quote: int, volume: int) -> str:
    """Weighted average price: quote (1e-16 units) / volume (1e-8 units), 8 decimals."""
    if volume == 0:
        return fmt(0)
    return fmt(exact_quote // volume)
