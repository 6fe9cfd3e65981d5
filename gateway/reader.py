"""The stream reader: blocking XREADs, one per broker partition, handing entries to a dispatcher.

The reader knows the broker (:class:`~gateway.broker.Broker`) below it and, above it, only the
:class:`Dispatcher` it calls: ``dispatch`` for every entry read, ``reset`` for a type whose
stream had a gap. The node implements the dispatcher (the hub fans out; a reset closes that
type's subscribers with 4009); the reader never sees a session.

* Each partition of the broker (one Redis server or the Sentinel primary: every stream; Redis
  Cluster: each hash slot in use, on its primary) gets its own read loop; a housekeeping loop
  looks for new event types and checks the streams. A loop that fails (a lost node, ``MOVED``,
  a failover) recovers on its own: it re-reads the topology, checks its streams for a gap (see
  below), hands them to their new owner's loop if they moved, and resumes from its positions.
  The other partitions keep reading meanwhile.
* A type is read from its newest entry at the moment the reader learns it (at start-up, when
  it appears in the type registry, or when a client subscribes to it). A subscription never
  goes live behind the reader: it reads history up to :meth:`StreamReader.position` first (see
  :mod:`gateway.replay`), so a subscribe that arrives before the reader knows the stream is
  served exactly like one that arrives later.
* After any reconnect, and every ``epoch_check`` seconds, every stream is checked for a **gap**:
  a different epoch (the stream was deleted or Redis lost its data), entries it had not read
  that were trimmed, or a stream that **went back** (its newest entry is behind what the reader
  delivered, or the entry it delivered last is gone: a failover to a replica that had not
  received it). Such a type is reset (its subscribers get 4009); a stream that went back also
  gets a new epoch, so every client holding offsets of the lost history is told
  ``recovered: false`` when it resumes, on every gateway.
* Reads are paced: after a read that brought entries, a partition's loop waits until ``pace``
  seconds (``WRITE_COALESCE_MS``) after that read returned before it reads again, so what
  arrives meanwhile comes in one read, is dispatched together and goes out to each connection
  in one write (up to ``DISPATCH_CHUNK`` entries per type). An event waits at most ``pace`` in
  Redis (plus the dispatch of the read before); a read that comes back full (a backlog) or
  empty is followed at once.
* ``last_ok`` (monotonic time of the oldest partition's last completed read) feeds ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from gateway.broker import Broker
from gateway.metrics import GatewayMetrics
from gateway.recovery import position_before
from gateway.values import StreamEntry, StreamState
from shared.backoff import Backoff
from shared.offsets import Offset, format_offset
from shared.redisconn import RETRYABLE_ERRORS

log = logging.getLogger("tickstream.gateway.reader")

TYPES_REFRESH = 1.0  # seconds between looks for new event types
EPOCH_CHECK = 5.0  # seconds between epoch checks while all is well
DISPATCH_CHUNK = 128  # entries dispatched at once before writers get a turn
LOSING_GROUND = 0.95  # behind_for: reading less stream time than this per second of clock


class Dispatcher(Protocol):
    """What the reader hands its results to (the node)."""

    def dispatch(self, event_type: str, entries: list[StreamEntry]) -> None:
        """Entries read from the stream of ``event_type``: each once, in offset order."""

    def reset(self, event_type: str, reason: str) -> None:
        """The stream of ``event_type`` had a gap (``reason``): what was delivered of it may be
        wrong or incomplete, so its subscribers must resynchronise (4009)."""


class StreamReader:
    """Owns the read positions and epochs of every type it reads, its read loops and checks.

    It reads from ``broker`` and hands everything to ``dispatcher``; it is also the gateway's
    tail (:class:`gateway.replay.Tail`): where live delivery of each type starts.
    """

    def __init__(
        self, broker: Broker, dispatcher: Dispatcher, metrics: GatewayMetrics, *,
        count: int = 1000, block: float = 1.0, epoch_check: float = EPOCH_CHECK, pace: float = 0.0,
    ) -> None:
        self.epoch_check = epoch_check
        self.pace = pace
        self.broker, self.dispatcher, self.metrics = broker, dispatcher, metrics
        self.count = count
        self.block_ms = max(1, int(block * 1000))
        self.positions: dict[str, Offset] = {}  # types the reader reads, and from where
        self.epochs: dict[str, str] = {}
        self.lag = 0.0
        # partition -> (monotonic time its reads began coming back full, Redis ms of the newest
        # entry read then, Redis ms of the newest entry read since): see behind_for
        self._behind: dict[str, tuple[float, int, int]] = {}
        self._started = False  # the first resync completed
        self._idle_ok = 0.0  # housekeeping's last pass (last_ok when no partition has streams)
        self._owner: dict[str, str] = {}  # type -> partition
        self._loops: dict[str, asyncio.Task[None]] = {}  # partition -> its read loop
        self._partition_ok: dict[str, float] = {}  # partition -> last completed read
        self._down: set[str] = set()  # partitions whose last read failed
        self._delivered: set[str] = set()  # types whose position is an entry the reader read
        self._unresolved: set[str] = set()  # watched, not yet given a position
        self._wake = asyncio.Event()  # housekeeping: a type was watched
        self._added = asyncio.Event()  # read loops: a type was given a position
        self._resolved = asyncio.Event()  # position() waiters

    def behind_for(self, now: float) -> float:
        """For how long (seconds) some partition has been losing ground: every read came back
        full and the stream time read through grew slower than the clock. A backlog read
        faster than real time (catching up after an outage) does not count; 0 when keeping up.
        """
        worst = 0.0
        for since, first_ms, last_ms in self._behind.values():
            elapsed = now - since
            if (last_ms - first_ms) / 1000.0 < LOSING_GROUND * elapsed:
                worst = max(worst, elapsed)
        return worst

    @property
    def connected(self) -> bool:
        """Started, and every partition with streams to read completed its last read."""
        return self._started and not self._down

    @property
    def last_ok(self) -> float:
        """The oldest partition's last completed read (monotonic), 0 before the first."""
        if not self._started:
            return 0.0
        busy = {p for p in self._owner.values()} & set(self._partition_ok)
        return min((self._partition_ok[p] for p in busy), default=self._idle_ok)

    def watch(self, event_type: str) -> None:
        """A client subscribed to ``event_type``: read it even if no event exists yet."""
        if event_type not in self.positions and event_type not in self._unresolved:
            self._unresolved.add(event_type)
            self._wake.set()

    async def position(self, event_type: str) -> Offset:
        """Where the reader reads ``event_type`` from: it dispatches every entry after this.

        Waits until the reader has given the type a position (it was just watched)."""
        self.watch(event_type)
        while event_type not in self.positions:
            resolved = self._resolved
            await resolved.wait()
        return self.positions[event_type]

    def note_epoch(self, event_type: str, epoch: str) -> None:
        """A subscriber was told ``epoch``: if the reader had none yet, it is the one to keep."""
        if epoch and not self.epochs.get(event_type):
            self.epochs[event_type] = epoch

    async def run(self) -> None:
        """Learn the streams, start a read loop per partition, then keep house until cancelled."""
        backoff = Backoff(base=0.1, cap=2.0, stable_after=10.0)
        try:
            while True:
                try:
                    if not self._started:
                        await self.broker.refresh()
                        await self._resync()
                        self._started = True
                    backoff.connected(time.monotonic())
                    await self._housekeeping()
                except asyncio.CancelledError:
                    raise
                except RETRYABLE_ERRORS as exc:
                    self._failed("housekeeping", f"Redis unavailable: {exc!r}")
                except Exception as exc:  # a bug must not stop event delivery for good
                    log.exception("stream reader housekeeping failed")
                    self._failed("housekeeping", repr(exc))
                await asyncio.sleep(backoff.next_delay(time.monotonic()))
                with contextlib.suppress(*RETRYABLE_ERRORS):
                    await self.broker.refresh()
        finally:
            loops = list(self._loops.values())
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    def _failed(self, where: str, why: str) -> None:
        log.warning("stream reader (%s): %s; retrying", where, why)
        self.metrics.reader_errors.inc()

    # --- the loops ----------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        next_types = time.monotonic() + TYPES_REFRESH
        next_epochs = time.monotonic() + self.epoch_check
        while True:
            self._wake.clear()
            self._idle_ok = time.monotonic()
            if self._unresolved:
                await self._add(set(self._unresolved))
            now = time.monotonic()
            if now >= next_types:
                types = await self.broker.event_types()
                await self._add({t for t in types if t not in self.positions})
                next_types = now + TYPES_REFRESH
            if now >= next_epochs:
                for partition in set(self._owner.values()) - self._down:
                    await self._check(self._types_of(partition))
                next_epochs = now + self.epoch_check
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TYPES_REFRESH)

    def _types_of(self, partition: str) -> list[str]:
        return [t for t, owner in self._owner.items() if owner == partition and t in self.positions]

    def _ensure_loop(self, partition: str) -> None:
        task = self._loops.get(partition)
        if task is None or task.done():
            self._partition_ok.setdefault(partition, time.monotonic())
            self._loops[partition] = asyncio.create_task(self._read_loop(partition),
                                                         name=f"reader-{partition}")

    async def _read_loop(self, partition: str) -> None:
        """Read one partition's streams until it owns none; recover from its own failures."""
        backoff = Backoff(base=0.1, cap=2.0, stable_after=10.0)
        recheck = False
        while True:
            try:
                if recheck:  # after a failure: where are our streams now, and did they go back?
                    await self.broker.refresh()
                    await self._check(self._types_of(partition))
                    await self._reassign(partition)
                    recheck = False
                    self._down.discard(partition)
                    log.info("stream reader: partition %s reading again", partition)
                mine = {t: self.positions[t] for t in self._types_of(partition)}
                if not mine:
                    if partition not in self._owner.values():
                        self._partition_ok.pop(partition, None)
                        self._loops.pop(partition, None)
                        self._behind.pop(partition, None)
                        return  # its streams moved elsewhere
                    added = self._added
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(added.wait(), TYPES_REFRESH)
                    continue
                block = min(self.block_ms, int(TYPES_REFRESH * 1000))
                batches = await self.broker.read(partition, mine, self.count, block)
                now = time.monotonic()
                self._partition_ok[partition] = now
                full = any(len(entries) >= self.count for _, entries in batches)
                if full:
                    newest = max(entries[-1].pos[0] for _, entries in batches if entries)
                    since = self._behind.get(partition)
                    self._behind[partition] = ((now, newest, newest) if since is None
                                               else (since[0], since[1], newest))
                else:
                    self._behind.pop(partition, None)
                backoff.connected(now)
                await self._dispatch(mine, batches)
                if self.pace and batches and not full:  # let the next events gather (see above)
                    await asyncio.sleep(max(0.0, now + self.pace - time.monotonic()))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not stop event delivery for good
                if not isinstance(exc, RETRYABLE_ERRORS):
                    log.exception("stream reader loop %s failed", partition)
                if partition not in self._down:
                    self._failed(partition, f"Redis unavailable: {exc!r}")
                self._down.add(partition)
                self._behind.pop(partition, None)  # not reading is not falling behind
                recheck = True
                await asyncio.sleep(backoff.next_delay(time.monotonic()))

    async def _dispatch(self, asked: dict[str, Offset],
                        batches: list[tuple[str, list[StreamEntry]]]) -> None:
        full: list[str] = []
        for event_type, entries in batches:
            if not entries or self.positions.get(event_type) != asked.get(event_type):
                continue  # nothing, or the type was reset while we read: read it again
            if not self.epochs.get(event_type):
                full.append(event_type)  # read before its epoch was known: learn it now
            self.positions[event_type] = entries[-1].pos
            self._delivered.add(event_type)
            self.metrics.events_read.labels(event_type).inc(len(entries))
            self.lag = max(0.0, time.time() - entries[-1].pos[0] / 1000)
            dispatch = self.dispatcher.dispatch
            for start in range(0, len(entries), DISPATCH_CHUNK):
                dispatch(event_type, entries[start:start + DISPATCH_CHUNK])
                if len(entries) > DISPATCH_CHUNK:
                    await asyncio.sleep(0)  # writers drain between chunks of a large read
            if len(entries) >= self.count:
                full.append(event_type)
        if full:  # behind, or epoch unknown: make sure nothing we had not read was lost
            await self._check(full)
        await asyncio.sleep(0)  # let writers run between large reads

    async def _reassign(self, partition: str) -> None:
        """After a topology change: hand this partition's streams to their current owners."""
        types = self._types_of(partition)
        for owner, owned in (await self.broker.partitions(types)).items():
            for event_type in owned:
                self._owner[event_type] = owner
            if owner != partition:
                log.info("stream reader: %s now on %s", ", ".join(owned), owner)
                self._ensure_loop(owner)

    # --- learning types -----------------------------------------------------------------------

    async def _resync(self) -> None:
        """At start: learn every registered and watched type."""
        types = await self.broker.event_types()
        await self._add((types | self._unresolved) - set(self.positions))

    async def _add(self, event_types: set[str]) -> None:
        """Give new types a position (their newest entry) and a partition with a read loop."""
        event_types -= set(self.positions)
        self._unresolved -= set(self.positions)
        if not event_types:
            return
        ordered = sorted(event_types)
        states = await self.broker.states(ordered)
        owners = {t: name for name, types in (await self.broker.partitions(ordered)).items()
                  for t in types}
        for event_type in ordered:
            state = states[event_type]
            self.positions[event_type] = state.last
            self._owner[event_type] = owners[event_type]
            if state.epoch:
                self.epochs[event_type] = state.epoch
            log.info("reading %s from %s", event_type, format_offset(state.last))
        for partition in set(owners.values()):
            self._ensure_loop(partition)
        self._unresolved -= event_types
        self._added.set()
        self._added = asyncio.Event()
        self._resolved.set()
        self._resolved = asyncio.Event()

    # --- gap checks ---------------------------------------------------------------------------

    async def _check(self, event_types: list[str]) -> None:
        # Positions as they were before asking Redis: the read loops move on meanwhile, and a
        # state read after the snapshot can only be behind it if the stream went back.
        before = {t: self.positions[t] for t in event_types if t in self.positions}
        epochs = {t: self.epochs.get(t, "") for t in before}
        probe = {t: p for t, p in before.items() if t in self._delivered}
        states = await self.broker.states(list(before))
        missing = await self.broker.missing(probe) if probe else set()
        for event_type, state in states.items():
            if self.epochs.get(event_type, "") != epochs[event_type] \
                    or self.positions.get(event_type, (0, 0)) < before[event_type]:
                continue  # learnt or reset while we asked: this answer may predate it
            await self._check_one(event_type, state, before[event_type], event_type in missing)

    async def _check_one(self, event_type: str, state: StreamState, before: Offset,
                         missing: bool) -> None:
        known_epoch = self.epochs.get(event_type, "")
        if known_epoch and state.epoch != known_epoch:
            self._gap(event_type, f"epoch changed from {known_epoch} to {state.epoch or 'none'}")
            self._reset(event_type, (0, 0))
        elif before != (0, 0) and (missing or state.last < before):
            why = (f"stream went back: the gateway had read up to {format_offset(before)}, "
                   f"Redis now ends at {format_offset(state.last)}")
            self.metrics.rollbacks.labels(event_type).inc()
            epoch = await self.broker.new_epoch(event_type, state.epoch, why)
            self._gap(event_type, why)
            self._reset(event_type, state.last)
            self.epochs[event_type] = epoch
            return
        else:
            # Trimming: judged on where the reader is now (what it read meanwhile was not lost).
            position = self.positions.get(event_type, (0, 0))
            if state.first is not None and position != (0, 0) \
                    and position < position_before(state.first):
                self._gap(event_type, "entries the reader had not read were trimmed")
        # "" -> epoch is a stream created (again) after a loss already reported: not a new gap.
        self.epochs[event_type] = state.epoch

    def _reset(self, event_type: str, position: Offset) -> None:
        self.positions[event_type] = position
        self._delivered.discard(event_type)

    def _gap(self, event_type: str, why: str) -> None:
        log.warning("gap in %s: %s; closing its subscribers with 4009", event_type, why)
        self.metrics.gaps.labels(event_type).inc()
        self.dispatcher.reset(event_type, why)
