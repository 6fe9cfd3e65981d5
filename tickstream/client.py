"""The public import of the Python client: every name of :mod:`shared.client`, nothing more.

::

    import asyncio

    from tickstream.client import connect

    async def main() -> None:
        async with connect("ws://127.0.0.1:8080/ws", batch=True) as ts:
            sub = await ts.subscribe("price_update", symbols=["BTCUSDT"], last=10)
            async for event in sub:
                print(event.offset, event.data["price"])

    asyncio.run(main())

The blocking twin, for scripts: ``with connect_sync(url) as ts: ...``. Installing ``tickstream``
gives this module without the server's dependencies. See docs/python-client.md.
"""

from __future__ import annotations

from shared.client import *  # noqa: F403 (re-exports shared.client.__all__, whatever it holds)
from shared.client import __all__ as __all__
