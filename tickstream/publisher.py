"""The public import of the Python publisher (events into Redis Streams, no gateway involved).

::

    import asyncio

    from tickstream.publisher import AsyncPublisher, Event, ValidationError

    async def main() -> None:
        async with AsyncPublisher.from_url("redis://127.0.0.1:6379/0") as pub:
            offset = await pub.publish("signal_generated", {
                "symbol": "BTCUSDT", "signal": "LONG", "entry_price": 65000.0,
                "strategy": "breakout", "confidence": 0.8,
            }, symbol="BTCUSDT")
            offsets = await pub.publish_many([Event("risk_event", {"level": "high"}, user="alice")])

    asyncio.run(main())

Blocking code uses :class:`Publisher` the same way (``with Publisher.from_url(url) as pub``).
An invalid event raises a :class:`ValidationError` subclass and nothing of its batch is written;
Redis unreachable for ``PUBLISH_RETRY_TIMEOUT`` raises :class:`RedisUnavailable`
(:class:`NotReplicated` when ``PUBLISH_MIN_REPLICAS`` replicas did not confirm in time: retry
with the same idempotency keys). The implementation lives in :mod:`shared.publisher`.
"""

from __future__ import annotations

from shared.errors import (
    EventTooLarge,
    Fenced,
    InvalidEventData,
    InvalidEventType,
    NotReplicated,
    PrivateEventWithoutUser,
    RedisUnavailable,
    TickstreamError,
    ValidationError,
)
from shared.events import Event, EventPolicy
from shared.publisher import AsyncPublisher, Publisher, PublishSettings

__all__ = [
    "AsyncPublisher", "Event", "EventPolicy", "EventTooLarge", "Fenced", "InvalidEventData",
    "InvalidEventType", "NotReplicated", "PrivateEventWithoutUser", "PublishSettings", "Publisher",
    "RedisUnavailable", "TickstreamError", "ValidationError",
]
