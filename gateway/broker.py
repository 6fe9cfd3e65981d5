"""Where a gateway gets events from: the :class:`Broker` interface and its Redis implementation.

The gateway needs from a broker: the set of event types, which *partition* (Redis node) holds
each type, a blocking read of one partition's streams from given positions, a page of history
after an offset (and before one, for ``last``), the state of a stream (epoch, first retained and
last offsets), and an epoch for a type that has no stream yet. :class:`RedisBroker` does them on
Redis Streams, on one server, Sentinel or Redis Cluster (one partition per primary);
:class:`gateway.memory_broker.MemoryBroker` does them in memory for tests and single-process
demos.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

import redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from gateway.values import EMPTY, StreamEntry, StreamState
from shared.codec import decode_entry
from shared.keys import Keys
from shared.offsets import Offset, format_offset, parse_offset
from shared.publish_plan import NEW_EPOCH_SCRIPT, RESERVE_SCRIPT
from shared.topology import Topology

READ_TIMEOUT = 15.0  # seconds: socket timeout of the blocking reads (BLOCK is at most 5 s)


class Broker(Protocol):
    """What the gateway asks of its event store, method by method.

    Entries are :class:`~gateway.values.StreamEntry` objects, offsets ``(ms, seq)`` tuples,
    strictly increasing within a type. Errors: a lost or refused connection raises redis-py's
    connection errors (or :data:`shared.redisconn.RETRYABLE_ERRORS`); callers wait and retry,
    nothing is lost by raising, and no method changes the stream's content. Two
    implementations: :class:`RedisBroker` and :class:`gateway.memory_broker.MemoryBroker`.
    """

    async def event_types(self) -> set[str]:
        """Every event type that was ever published (the type registry), in no order.

        The reader polls it to learn new types; a type with no stream yet may be missing."""
        ...

    async def partitions(self, event_types: list[str]) -> dict[str, list[str]]:
        """The given types grouped by partition: the streams one blocking :meth:`read` covers.

        Every type given appears in exactly one group. One server or Sentinel: one partition.
        Redis Cluster: one per primary and hash slot (a multi-key command stays within one
        slot), named ``host:port#slot``. The answer changes after a failover or resharding
        (call :meth:`refresh` first)."""
        ...

    async def read(
        self, partition: str, positions: Mapping[str, Offset], count: int, block_ms: int
    ) -> list[tuple[str, list[StreamEntry]]]:
        """The entries after each position, for types of one partition, oldest first.

        At most ``count`` entries per type; only types with entries appear. Returns at once
        when any type has entries, else waits up to ``block_ms`` for one and returns ``[]``
        on timeout. Raises a connection error if the partition's node is gone or no longer a
        primary (the caller refreshes, checks for a gap and retries)."""
        ...

    async def history(self, event_type: str, after: Offset, count: int) -> list[StreamEntry]:
        """Up to ``count`` retained entries with offset > ``after``, oldest first (``[]`` if
        none or no stream). Never waits for new entries."""
        ...

    async def history_before(
        self, event_type: str, before: Offset | None, count: int
    ) -> list[StreamEntry]:
        """Up to ``count`` retained entries with offset < ``before`` (None: from the newest),
        newest first; for ``last: N``."""
        ...

    async def state(self, event_type: str) -> StreamState:
        """The stream's epoch, first retained offset, last generated offset and whether it was
        ever trimmed. A type with no stream: :data:`~gateway.values.EMPTY`, or its reserved
        epoch with no entries."""
        ...

    async def states(self, event_types: list[str]) -> dict[str, StreamState]:
        """:meth:`state` of many types (one round trip per partition), keyed by type."""
        ...

    async def reserve_epoch(self, event_type: str) -> str:
        """The type's epoch, establishing one if it has no stream yet (the first publish keeps
        it), so a subscriber of a type nobody published to yet is told a stable epoch."""
        ...

    async def missing(self, positions: Mapping[str, Offset]) -> set[str]:
        """Of the given types, those whose entry at the given offset is gone although it was
        not trimmed (an older entry is still there): the stream went back, as after a failover
        to a replica that had not received it."""
        ...

    async def new_epoch(self, event_type: str, old_epoch: str, why: str) -> str:
        """Replace ``old_epoch`` with a new one, unless it was replaced already (by another
        gateway); return the epoch now in force ("" for a type with no stream). ``why`` is
        recorded for operators."""
        ...

    async def refresh(self) -> None:
        """Re-learn where partitions are (after ``MOVED``, a lost connection or a failover)."""
        ...

    async def ping(self) -> None:
        """Return when every partition answers; raise a connection error otherwise."""
        ...

    async def close(self) -> None:
        """Release every connection; the broker is not used afterwards."""
        ...


def _pos(value: bytes | str | None) -> Offset | None:
    if not value:
        return None
    pos = parse_offset(value)
    return None if pos == (0, 0) else pos


def _state(epoch: Any, info: Any) -> StreamState:
    if isinstance(epoch, Exception):
        raise epoch
    if isinstance(info, ResponseError) and "no such key" in str(info).lower():
        if not epoch:
            return EMPTY
        return StreamState(epoch.decode(), None, (0, 0), trimmed=False)  # reserved or lost
    if isinstance(info, Exception):
        raise info
    first = info.get("first-entry")
    return StreamState(
        epoch.decode() if epoch else "",
        parse_offset(first[0]) if first else None,
        _pos(info.get("last-generated-id")) or (0, 0),
        trimmed=int(info.get("entries-added", 0)) > int(info.get("length", 0)),
    )


class RedisBroker:
    """Redis Streams behind the Broker interface, on any topology (see :mod:`shared.topology`)."""

    def __init__(self, url: str, keys: Keys) -> None:
        self.keys = keys
        # Blocking reads use their own connections, with a socket timeout far above any BLOCK
        # (at most a few seconds): a node that vanished without a reset is noticed, not waited on.
        self._reader = Topology(url, name="tickstream-gateway-reader", socket_timeout=READ_TIMEOUT)
        self._client = Topology(url, name="tickstream-gateway", socket_timeout=5.0)

    async def event_types(self) -> set[str]:
        key = self.keys.types()
        members: Any = await (await self._client.client_for(key)).smembers(key)
        return {m.decode() for m in members}

    async def partitions(self, event_types: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for event_type in event_types:
            key = self.keys.stream(event_type)
            name = await self._reader.node_of(key)
            if self._reader.kind == "cluster":
                name = f"{name}#{key_slot(key.encode())}"
            out.setdefault(name, []).append(event_type)
        return out

    async def read(
        self, partition: str, positions: Mapping[str, Offset], count: int, block_ms: int
    ) -> list[tuple[str, list[StreamEntry]]]:
        streams = {self.keys.stream(t): format_offset(p) for t, p in positions.items()}
        client = (await self._reader.primaries()).get(partition.split("#", 1)[0])
        if client is None:
            raise redis.ConnectionError(f"{partition} is no longer a primary")
        reply: Any = await client.xread(streams, count=count, block=block_ms)  # type: ignore[arg-type]
        out = []
        for stream, raw_entries in reply or []:
            event_type = self.keys.event_type_of(stream)
            out.append((event_type, [decode_entry(event_type, i, f) for i, f in raw_entries]))
        return out

    async def history(self, event_type: str, after: Offset, count: int) -> list[StreamEntry]:
        key = self.keys.stream(event_type)
        raw: Any = await (await self._client.client_for(key)).xrange(
            key, min="(" + format_offset(after), max="+", count=count)
        return [decode_entry(event_type, i, f) for i, f in raw]

    async def history_before(self, event_type: str, before: Offset | None, count: int) -> list[StreamEntry]:
        key = self.keys.stream(event_type)
        top = "+" if before is None else "(" + format_offset(before)
        raw: Any = await (await self._client.client_for(key)).xrevrange(key, max=top, min="-", count=count)
        return [decode_entry(event_type, i, f) for i, f in raw]

    async def state(self, event_type: str) -> StreamState:
        return (await self.states([event_type]))[event_type]

    async def states(self, event_types: list[str]) -> dict[str, StreamState]:
        by_node: dict[str, list[str]] = {}
        for event_type in event_types:
            node = await self._client.node_of(self.keys.stream(event_type))
            by_node.setdefault(node, []).append(event_type)
        out = {}
        for group in by_node.values():
            client = await self._client.client_for(self.keys.stream(group[0]))
            async with client.pipeline(transaction=False) as pipe:
                for event_type in group:
                    pipe.hget(self.keys.meta(event_type), "epoch")
                    pipe.xinfo_stream(self.keys.stream(event_type))
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            for index, event_type in enumerate(group):
                out[event_type] = _state(replies[2 * index], replies[2 * index + 1])
        return out

    async def reserve_epoch(self, event_type: str) -> str:
        stream, meta = self.keys.stream(event_type), self.keys.meta(event_type)
        client = await self._client.client_for(stream)
        epoch: Any = await client.eval(RESERVE_SCRIPT, 2, stream, meta, os.urandom(6).hex())
        return epoch.decode() if isinstance(epoch, bytes) else str(epoch)

    async def missing(self, positions: Mapping[str, Offset]) -> set[str]:
        out = set()
        for event_type, pos in positions.items():
            key = self.keys.stream(event_type)
            client = await self._client.client_for(key)
            async with client.pipeline(transaction=False) as pipe:
                pipe.xrange(key, min=format_offset(pos), max=format_offset(pos), count=1)
                pipe.xrange(key, min="-", max="+", count=1)
                found, first = await pipe.execute()
            if not found and first and parse_offset(first[0][0]) <= pos:
                out.add(event_type)
        return out

    async def new_epoch(self, event_type: str, old_epoch: str, why: str) -> str:
        meta = self.keys.meta(event_type)
        client = await self._client.client_for(meta)
        epoch: Any = await client.eval(NEW_EPOCH_SCRIPT, 1, meta, old_epoch, os.urandom(6).hex(),
                                       why[:200])
        return epoch.decode() if isinstance(epoch, bytes) else str(epoch or "")

    async def refresh(self) -> None:
        await self._client.refresh()
        await self._reader.refresh()

    async def ping(self) -> None:
        for client in (await self._client.primaries()).values():
            await client.ping()

    async def close(self) -> None:
        await self._reader.aclose()
        await self._client.aclose()
