"""One combined-stream WebSocket connection to the exchange: open, subscribe, read, close.

The read loop only reads: each message goes, as received (bytes) with its receive time, to the
``on_frame`` callback, which appends it to the pipeline's queue. Parsing and everything after
happen elsewhere, so a burst of processing never slows reading (a slow reader is what gets a
Binance connection closed, reference pitfall 4).

Streams are subscribed in the URL (``/stream?streams=a/b/c``) as far as ``url_max_length``
allows; the rest are sent as SUBSCRIBE requests of up to 200 streams, paced by
:class:`~ingestor.binance.streams.ControlPacer` (Binance closes a connection that sends more than
5 messages per second), and their replies are checked.

Keepalive: the server pings; websockets answers every ping with a pong echoing its payload, by
itself (its protocol layer does, ``Frame(PONG, frame.data)``). The client sends no pings of its
own (they would count against the 5 messages/s and keep nothing alive): a dead or silent
connection is found by the data-staleness watchdog in :mod:`ingestor.shard`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ingestor.binance.messages import ControlError, ControlResult
from ingestor.binance.streams import ControlPacer, RequestIds, combined_url, subscribe_requests
from shared.errors import TickstreamError
from shared.logsetup import conn_logger

log = logging.getLogger("tickstream.ingestor.connection")

OPEN_TIMEOUT = 10.0
REPLY_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0


class SubscribeError(TickstreamError):
    """The exchange refused or did not answer a SUBSCRIBE request."""


OPEN_ERRORS: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed, SubscribeError,
)
"""What :meth:`Connection.open` raises when the exchange cannot be reached or refuses."""

FrameCallback = Callable[["Connection", int, bytes], None]


def split_for_url(base_url: str, streams: Sequence[str], max_length: int) -> tuple[list[str], list[str]]:
    """``(in the URL, to SUBSCRIBE)``: the longest prefix whose URL fits, at least one stream."""
    in_url = [streams[0]]
    length = len(combined_url(base_url, in_url))
    for name in streams[1:]:
        if length + 1 + len(name) > max_length:
            break
        in_url.append(name)
        length += 1 + len(name)
    return in_url, list(streams[len(in_url):])


class Connection:
    def __init__(
        self,
        conn_id: str,
        base_url: str,
        streams: Sequence[str],
        on_frame: FrameCallback,
        *,
        url_max_length: int,
        max_frame_bytes: int,
        on_closed: Callable[[Connection], None] | None = None,
    ) -> None:
        self.id = conn_id
        self.base_url = base_url
        self.streams = tuple(streams)
        self.log = conn_logger(log, conn_id)
        self._on_frame = on_frame
        self._on_closed = on_closed
        self._url_max_length = url_max_length
        self._max_frame_bytes = max_frame_bytes
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = RequestIds()
        self._pacer = ControlPacer()
        self._replies: dict[int | str | None, asyncio.Future[ControlResult | ControlError]] = {}
        self.opened_at = time.monotonic()
        self.last_seen: dict[str, float] = {}
        """Monotonic time each stream last delivered on this connection (set by the pipeline)."""
        self.delivered = asyncio.Event()
        """Set when the first data message of this connection has been processed."""
        self.closed = False
        self.close_reason = ""

    @property
    def is_open(self) -> bool:
        """Connected and not yet ended."""
        return self._ws is not None and not self.closed

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, start reading, subscribe what the URL could not hold. Raises OPEN_ERRORS."""
        in_url, later = split_for_url(self.base_url, self.streams, self._url_max_length)
        url = combined_url(self.base_url, in_url)
        self.log.info("connecting to %s (%d streams, %d by SUBSCRIBE)", url.split("?", 1)[0],
                      len(self.streams), len(later))
        self._ws = await connect(
            url, open_timeout=OPEN_TIMEOUT, close_timeout=CLOSE_TIMEOUT, ping_interval=None,
            max_size=self._max_frame_bytes, max_queue=256, compression=None,
            user_agent_header="tickstream-ingestor",
        )
        self.opened_at = time.monotonic()
        self._reader = asyncio.create_task(self._read(self._ws), name=f"read {self.id}")
        if later:
            await self.subscribe(later)
        self.log.info("connected")

    async def subscribe(self, streams: Iterable[str]) -> None:
        """SUBSCRIBE ``streams`` in batches, paced; raise SubscribeError if one is refused."""
        ws = self._ws
        if ws is None:
            raise SubscribeError("not connected")
        loop = asyncio.get_running_loop()
        waiting = []
        for request in subscribe_requests(streams, self._ids):
            now = int(time.monotonic() * 1000)
            at = self._pacer.next_send_at(now)
            if at > now:
                await asyncio.sleep((at - now) / 1000)
            reply: asyncio.Future[ControlResult | ControlError] = loop.create_future()
            self._replies[request.id] = reply
            await ws.send(request.encode())
            self._pacer.on_sent(max(at, int(time.monotonic() * 1000)))
            waiting.append((request, reply))
        for request, reply in waiting:
            try:
                answer = await asyncio.wait_for(reply, REPLY_TIMEOUT)
            except TimeoutError:
                raise SubscribeError(f"no reply to SUBSCRIBE id {request.id} within "
                                     f"{REPLY_TIMEOUT:g} s") from None
            finally:
                self._replies.pop(request.id, None)
            if isinstance(answer, ControlError):
                raise SubscribeError(f"SUBSCRIBE {len(request.params or ())} streams refused: "
                                     f"code {answer.code}: {answer.msg}")

    def on_control(self, reply: ControlResult | ControlError) -> None:
        """A control reply arrived on this connection (called by the pipeline)."""
        waiter = self._replies.get(reply.id)
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)
        elif isinstance(reply, ControlError):
            self.log.error("exchange error reply: code %d: %s (id %r)", reply.code, reply.msg, reply.id)

    async def close(self, reason: str = "") -> None:
        """Close politely (close frame, bounded wait), then stop reading."""
        if reason:
            self.log.info("closing: %s", reason)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        await self._stop_reader()

    def abort(self, reason: str) -> None:
        """Drop the TCP connection now (a silent peer would not answer a close frame)."""
        self.log.warning("dropping connection: %s", reason)
        self.close_reason = self.close_reason or reason
        if self._ws is not None:
            self._ws.transport.abort()

    async def _stop_reader(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    # -- reading ---------------------------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> None:
        on_frame = self._on_frame
        recv = ws.recv
        try:
            while True:
                data = await recv(decode=False)
                on_frame(self, time.time_ns() // 1_000_000, data)
        except ConnectionClosed as exc:
            self.close_reason = self.close_reason or _describe(exc)
        except Exception as exc:  # a bug below websockets: report it, treat it as a lost connection
            self.log.exception("read loop failed")
            self.close_reason = self.close_reason or f"read loop failed: {exc!r}"
        finally:
            self.closed = True
            for waiter in self._replies.values():
                if not waiter.done():
                    waiter.cancel()
            self.log.info("connection ended: %s", self.close_reason or "closed")
            if self._on_closed is not None:
                self._on_closed(self)

    # -- staleness -------------------------------------------------------------------------------

    def age(self, stream: str, now: float) -> float:
        """Seconds since ``stream`` delivered on this connection (since it opened, if never)."""
        return now - self.last_seen.get(stream, self.opened_at)


def _describe(exc: ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "connection lost without a close frame"
    who = "exchange" if exc.rcvd is not None else "client"
    return f"{who} closed it: {frame.code} {frame.reason}".rstrip()
