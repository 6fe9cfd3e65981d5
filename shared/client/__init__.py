"""The official Python client for Tickstream gateways (async, asyncio).

::

    from shared.client import connect

    async with connect("ws://127.0.0.1:8080/ws", token=get_token, batch=True) as ts:
        sub = await ts.subscribe("price_update", symbols=["BTCUSDT"], last=10)
        async for event in sub:
            print(event.offset, event.data["price"])

It reconnects by itself and resumes every subscription from the last offset it received, so
the application sees each event once, in offset order, across reconnects and gateway failures
(within the retention window; beyond it, a :class:`Reset` says so). For synchronous code,
:func:`connect_sync` gives a :class:`BlockingClient`: the same client on a private event loop in
a daemon thread, its subscriptions plain iterators (or ``on_event`` callbacks). See
docs/python-client.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.client.blocking import BlockingClient, blocking
from shared.client.blocking_subscription import BlockingSubscription
from shared.client.client import Client
from shared.client.errors import (
    AuthError,
    ClientClosed,
    ClientError,
    ConnectionRefused,
    StreamReset,
    SubscriptionError,
)
from shared.client.model import Event, Reset, Status
from shared.client.options import ClientOptions, Format
from shared.client.subscription import Subscription
from shared.client.tokens import TokenSource

__all__ = [
    "AuthError", "BlockingClient", "BlockingSubscription", "Client", "ClientClosed", "ClientError",
    "ClientOptions", "ConnectionRefused", "Event", "Reset", "Status", "StreamReset", "Subscription",
    "SubscriptionError", "TokenSource", "connect", "connect_sync",
]


def connect(
    url: str | Sequence[str],
    *,
    token: TokenSource = None,
    format: Format = "json",
    batch: bool = False,
    batch_ms: int | None = None,
    queue_size: int = 10_000,
    heartbeat_timeout: float = 10.0,
    ping_interval: float = 15.0,
    open_timeout: float = 10.0,
    reconnect_base: float = 0.5,
    reconnect_cap: float = 30.0,
    stable_after: float = 30.0,
    origin: str | None = None,
) -> Client:
    """A client for the gateway(s) at ``url``; use it as ``async with connect(...) as ts``.

    ``url``: one ``ws://``/``wss://`` URL, or several: each reconnect tries the next one.
    ``token``: a JWT, or a callable (plain or async) returning a fresh one, called before each
    connection and before the current token expires; None connects anonymously.
    ``format``: ``"json"`` (text frames; the faster to decode in Python) or ``"msgpack"``
    (binary frames: about 20% smaller, and cheaper for the gateway). ``batch``: let the gateway pack
    several messages per frame, holding them up to ``batch_ms`` ms (gateway default 5).
    ``queue_size``: events buffered per subscription before the client stops reading the socket.
    ``heartbeat_timeout``: a connection silent for the gateway's heartbeat interval plus this
    is presumed dead. ``ping_interval``: seconds between latency probes.
    ``reconnect_base``/``reconnect_cap``: the full-jitter backoff range; it starts over after a
    connection that lasted ``stable_after`` seconds. ``origin``: an ``Origin`` header, for
    gateways that set ``ALLOWED_ORIGINS`` (a Python client sends none by default).
    """
    options = ClientOptions(
        format=format, batch=batch, batch_ms=batch_ms, queue_size=queue_size,
        heartbeat_timeout=heartbeat_timeout, ping_interval=ping_interval, open_timeout=open_timeout,
        reconnect_base=reconnect_base, reconnect_cap=reconnect_cap, stable_after=stable_after,
        origin=origin,
    )
    return Client(url, token=token, options=options)


connect_sync = blocking(connect)
