"""A started simulator on a free port, tuned for fast tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from simulator import Simulator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """Market mode, 300 events/s, no server pings, 50 incoming messages/s allowed."""
    async with Simulator(port=0, rate=300.0, ping_interval=0, message_rate=50) as s:
        yield s
