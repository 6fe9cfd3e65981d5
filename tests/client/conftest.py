from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.publisher import AsyncPublisher, PublishSettings
from tests.support.gateway import InProcessGateway, running_gateway


@pytest.fixture
async def pub(redis_url: str) -> AsyncIterator[AsyncPublisher]:
    async with AsyncPublisher.from_url(redis_url, PublishSettings(redis_url=redis_url)) as publisher:
        yield publisher


@pytest.fixture
async def gw(redis_url: str) -> AsyncIterator[InProcessGateway]:
    async with running_gateway(redis_url) as gateway:
        yield gateway
