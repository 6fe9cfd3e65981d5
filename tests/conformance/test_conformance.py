"""One scenario list (scenarios.py), run against the Python client and the JS client.

The JS side is the built npm package in Node (clients/js/dist, through driver.mjs); the Python
side is ``shared.client``. Both face the same real gateways and Redis, and the same counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from shared.publisher import AsyncPublisher
from tests.conformance.drivers import Driver, JsDriver, PythonDriver
from tests.conformance.scenarios import SCENARIOS, Env


@pytest.fixture(params=["python", "js"])
async def driver(request: pytest.FixtureRequest) -> AsyncIterator[Driver]:
    made: Driver
    if request.param == "js":
        request.getfixturevalue("js_package")
        made = JsDriver()
    else:
        made = PythonDriver()
    try:
        yield made
    finally:
        await made.close()


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_conformance(name: str, driver: Driver, redis_url: str, pub: AsyncPublisher,
                           aredis: redis.asyncio.Redis) -> None:
    await SCENARIOS[name](driver, Env(redis_url, pub, aredis))
