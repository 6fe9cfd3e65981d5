"""How long each event type is kept: by count and by age, whichever trims first.

``RETENTION`` overrides the defaults per type, as a comma list of ``type=COUNT/AGE``
(``*`` for every type not named), e.g. ``price_update=2000000/24h,*=50000/7d``.
A count of 0 means no count limit; an age of 0 means no age limit.

Trimming is approximate (Redis ``~``): Redis drops whole internal nodes (100 entries by default),
so a stream may briefly hold up to about 100 entries more than its count, or entries up to one
node older than its age.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.errors import ValidationError
from shared.events import check_event_type
from shared.settings import parse_duration


@dataclass(frozen=True, slots=True)
class Retention:
    max_len: int
    max_age_ms: int

    def describe(self) -> str:
        count = "unbounded" if self.max_len == 0 else f"{self.max_len} entries"
        age = "forever" if self.max_age_ms == 0 else f"{self.max_age_ms / 3_600_000:g} h"
        return f"{count}, {age}"


DAY_MS = 86_400_000

# Documented defaults (docs/redis.md gives the memory each costs).
DEFAULTS: Mapping[str, Retention] = {
    "price_update": Retention(500_000, DAY_MS),
    "market_data": Retention(200_000, DAY_MS),
    "orderbook_update": Retention(20_000, DAY_MS // 24),
}
FALLBACK = Retention(100_000, 7 * DAY_MS)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    per_type: Mapping[str, Retention] = field(default_factory=lambda: dict(DEFAULTS))
    fallback: Retention = FALLBACK

    def __str__(self) -> str:
        items = [f"{name}={r.max_len}/{r.max_age_ms // 1000}s" for name, r in self.per_type.items()]
        return ",".join([*items, f"*={self.fallback.max_len}/{self.fallback.max_age_ms // 1000}s"])

    def for_type(self, event_type: str) -> Retention:
        return self.per_type.get(event_type, self.fallback)


def parse_retention(text: str) -> RetentionPolicy:
    """Parse ``RETENTION`` (see the module docstring) on top of the defaults."""
    per_type = dict(DEFAULTS)
    fallback = FALLBACK
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, spec = item.partition("=")
        count, slash, age = spec.partition("/")
        if not sep or not slash:
            raise ValueError(f"expected TYPE=COUNT/AGE, got {item!r}")
        try:
            retention = Retention(int(count), int(parse_duration(age) * 1000))
        except ValueError:
            raise ValueError(
                f"expected TYPE=COUNT/AGE such as price_update=500000/24h, got {item!r}"
            ) from None
        if retention.max_len < 0 or retention.max_age_ms < 0:
            raise ValueError(f"negative retention in {item!r}")
        if name.strip() == "*":
            fallback = retention
        else:
            try:
                per_type[check_event_type(name.strip())] = retention
            except ValidationError as exc:
                raise ValueError(str(exc)) from None
    return RetentionPolicy(per_type, fallback)
