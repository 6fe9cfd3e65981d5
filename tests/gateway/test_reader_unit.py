"""The stream reader and shared history reads on the in-memory broker: no Redis, no sockets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.history import Block, SharedHistory, merge_blocks
from gateway.memory_broker import MemoryBroker
from gateway.metrics import GatewayMetrics
from gateway.reader import StreamReader
from gateway.values import StreamEntry
from shared.offsets import Offset, parse_offset
from tests.support.waiting import until


class FakeDispatcher:
    """Records what the reader dispatches and which types it resets (the reader's only peer)."""

    def __init__(self) -> None:
        self.got: dict[str, list[Offset]] = {}
        self.resets: dict[str, str] = {}
        self.on_dispatch: Callable[[list[StreamEntry]], None] | None = None  # a test's probe

    def dispatch(self, event_type: str, entries: list[StreamEntry]) -> None:
        if self.on_dispatch is not None:
            self.on_dispatch(entries)
        self.got.setdefault(event_type, []).extend(e.pos for e in entries)

    def reset(self, event_type: str, reason: str) -> None:
        self.resets[event_type] = reason


@contextlib.asynccontextmanager
async def reading(broker: MemoryBroker, **kw: Any) -> AsyncIterator[tuple[StreamReader, FakeDispatcher]]:
    hub = FakeDispatcher()
    metrics = GatewayMetrics(dict)
    reader = StreamReader(broker, hub, metrics, block=0.05, **kw)
    task = asyncio.create_task(reader.run())
    try:
        yield reader, hub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_watched_type_is_read_from_its_newest_entry_and_position_waits_for_it() -> None:
    broker = MemoryBroker()
    old = [await broker.add("t", b"\x80") for _ in range(3)]
    async with reading(broker) as (reader, hub):
        reader.watch("t")
        position = await asyncio.wait_for(reader.position("t"), 10)
        assert position == tuple(int(x) for x in old[-1].split("-"))
        new = await broker.add("t", b"\x80")
        await until(lambda: hub.got.get("t"), what="the new entry dispatched")
        assert hub.got["t"] == [tuple(int(x) for x in new.split("-"))]  # nothing older


async def test_a_stream_that_went_back_closes_subscribers_and_gets_a_new_epoch() -> None:
    broker = MemoryBroker()
    async with reading(broker, epoch_check=60) as (reader, hub):
        reader.watch("t")
        await asyncio.wait_for(reader.position("t"), 10)
        for _ in range(5):
            await broker.add("t", b"\x80")
        await until(lambda: len(hub.got.get("t", ())) == 5, what="five entries read")
        epoch = (await broker.state("t")).epoch
        broker.rewind("t", 2)  # a failover to a replica that missed the last two
        await broker.interrupt()  # the reader's connection to the old primary is gone
        await broker.add("t", b"\x80")  # and the new primary already took a write
        await until(lambda: "t" in hub.resets, what="the type reset")
        assert "stream went back" in hub.resets["t"]
        assert (await broker.state("t")).epoch != epoch  # resumes will say recovered:false
        assert reader.metrics.rollbacks.labels("t")._value.get() == 1


def _entries(broker_positions: list[Offset]) -> list[StreamEntry]:
    return [StreamEntry("t", f"{p[0]}-{p[1]}", p, "", "", b"\x80") for p in broker_positions]


def test_blocks_that_overlap_or_touch_merge_into_one_exact_stretch() -> None:
    a = Block((1, 0), _entries([(2, 0), (3, 0)]), [(2, 0), (3, 0)])
    b = Block((3, 0), _entries([(4, 0)]), [(4, 0)])
    c = Block((9, 0), _entries([(10, 0)]), [(10, 0)])
    merged = merge_blocks([a, c], b)
    assert [(m.start, m.positions) for m in merged] == [
        ((1, 0), [(2, 0), (3, 0), (4, 0)]), ((9, 0), [(10, 0)])]


@pytest.mark.parametrize("clients", [200])
async def test_concurrent_replays_share_their_history_reads(clients: int) -> None:
    broker = MemoryBroker()
    offsets = [await broker.add("t", b"\x80") for _ in range(2000)]
    fetches = 0
    real = broker.history

    async def counted(event_type: str, after: Offset, count: int) -> list[StreamEntry]:
        nonlocal fetches
        fetches += 1
        await asyncio.sleep(0)
        return await real(event_type, after, count)

    broker.history = counted  # type: ignore[method-assign]
    shared = SharedHistory(broker)
    positions = [parse_offset(o) for o in offsets]

    async def replay(start: int) -> list[Offset]:
        after: Offset = positions[start]
        got: list[Offset] = []
        while after < positions[-1]:  # as a replay does: up to the reader's position
            page = await shared.after("t", after, 500)
            got += [e.pos for e in page]
            after = page[-1].pos
        return got

    starts = [1000 + (i * 7) % 999 for i in range(clients)]
    results = await asyncio.gather(*(replay(s) for s in starts))
    for start, got in zip(starts, results, strict=True):
        assert got == positions[start + 1:]  # exact, in order, nothing doubled
    assert fetches <= clients // 10, f"{fetches} history reads for {clients} replays"


async def test_concurrent_state_requests_share_rounds_and_are_never_older_than_the_ask() -> None:
    broker = MemoryBroker()
    await broker.add("t", b"\x80")
    calls = 0
    gate = asyncio.Event()
    real = broker.state

    async def slow_state(event_type: str) -> Any:
        nonlocal calls
        calls += 1
        await gate.wait()
        return await real(event_type)

    broker.state = slow_state  # type: ignore[method-assign]
    shared = SharedHistory(broker)
    first = [asyncio.create_task(shared.state("t")) for _ in range(50)]
    await until(lambda: calls == 1, what="the first round sent")
    newest = await broker.add("t", b"\x80")  # after the first round was sent ...
    later = [asyncio.create_task(shared.state("t")) for _ in range(50)]  # ... these asked
    gate.set()
    states = await asyncio.gather(*first, *later)
    assert calls == 2  # 100 callers, two rounds
    newest_pos = tuple(int(x) for x in newest.split("-"))
    assert all(s.last == newest_pos for s in states[50:])  # the later callers see the new entry


async def test_a_check_racing_the_read_loop_is_no_rollback() -> None:
    broker = MemoryBroker()
    async with reading(broker, epoch_check=0.01) as (reader, hub):
        reader.watch("t")
        await asyncio.wait_for(reader.position("t"), 10)
        real_states = broker.states
        raced = asyncio.Event()

        async def states_then_more_events(event_types: list[str]) -> Any:
            answer = await real_states(event_types)  # the state as Redis had it ...
            if not raced.is_set() and event_types:
                raced.set()
                await broker.add("t", b"\x80")  # ... then the stream grows and is read
                await until(lambda: hub.got.get("t"), what="the newer entry read")
            return answer

        broker.states = states_then_more_events  # type: ignore[method-assign]
        await until(raced.is_set, what="a check that raced the read loop")
        await broker.add("t", b"\x80")
        await until(lambda: len(hub.got.get("t", ())) == 2, what="both entries read")
        assert hub.resets == {}  # nothing went back: no 4009
        assert reader.metrics.rollbacks.labels("t")._value.get() == 0


async def test_the_reader_is_behind_while_its_reads_come_back_full_and_not_after() -> None:
    broker = MemoryBroker()
    seen: list[float] = []
    async with reading(broker, count=10) as (reader, hub):
        reader.watch("t")
        await asyncio.wait_for(reader.position("t"), 10)
        def probe(entries: list[StreamEntry]) -> None:
            # far in the future: a reader that is behind reports ~100 s, one that keeps up 0
            seen.append(reader.behind_for(time.monotonic() + 100))

        hub.on_dispatch = probe
        for _ in range(25):  # added without yielding: the reader finds all 25 waiting
            await broker.add("t", b"\x80")
        await until(lambda: len(hub.got.get("t", [])) == 25, what="every entry dispatched")
        assert [round(s) >= 99 for s in seen] == [True, True, False]  # 10, 10, then 5 of 10
        assert reader.behind_for(time.monotonic()) == 0.0


@pytest.mark.parametrize(("pace", "reads"), [(1.0, 2), (0.0, 4)])
async def test_paced_reads_bring_what_arrived_meanwhile_in_one_dispatch(pace: float, reads: int) -> None:
    broker = MemoryBroker()
    calls: list[int] = []
    async with reading(broker, pace=pace) as (reader, hub):
        reader.watch("t")
        await asyncio.wait_for(reader.position("t"), 10)
        def probe(entries: list[StreamEntry]) -> None:
            calls.append(len(entries))

        hub.on_dispatch = probe
        await broker.add("t", b"\x80")
        await until(lambda: calls == [1], what="the first entry read at once")
        for n in range(2, 5):  # one by one, well within a 1 s pace
            await broker.add("t", b"\x80")
            if not pace:  # unpaced, each is read as soon as it is there
                await until(lambda: sum(calls) == n, what="the entry read at once")  # noqa: B023
            for _ in range(5):
                await asyncio.sleep(0)
        await until(lambda: sum(calls) == 4, what="every entry dispatched")
        assert len(calls) == reads  # paced: the three came in one read; unpaced: one read each


async def test_a_backlog_read_faster_than_real_time_is_not_falling_behind(monkeypatch: Any) -> None:
    """After an outage the reader reads a backlog in full batches: that is catching up, not
    losing ground, so it must not look overloaded (the shedder would close clients)."""
    broker = MemoryBroker()
    seen: list[float] = []
    async with reading(broker, count=10) as (reader, hub):
        reader.watch("t")
        await asyncio.wait_for(reader.position("t"), 10)
        def probe(entries: list[StreamEntry]) -> None:
            seen.append(reader.behind_for(time.monotonic() + 5))  # 5 s from now

        hub.on_dispatch = probe
        clock = iter(range(2_000_000_000_000, 2_000_000_000_000 + 25 * 1000, 1000))
        monkeypatch.setattr("gateway.memory_broker.time.time", lambda: next(clock) / 1000)
        for _ in range(25):  # one second of stream time apart: 25 s of backlog
            await broker.add("t", b"\x80")
        monkeypatch.undo()
        await until(lambda: len(hub.got.get("t", [])) == 25, what="every entry dispatched")
        # one full read alone says nothing of progress (5 s later with nothing more read, it
        # would be losing ground); the second had read 10 s of stream in a moment: catching up
        assert seen[0] > 4.9 and seen[1:] == [0.0, 0.0]


async def test_a_failed_read_does_not_leave_the_reader_behind() -> None:
    broker = MemoryBroker()
    async with reading(broker, count=10) as (reader, hub):
        reader.watch("t")
        await asyncio.wait_for(reader.position("t"), 10)
        real_read = broker.read
        behind_at_reads: list[float] = []  # at each read after the two full ones: they all fail

        async def read(*args: Any) -> list[tuple[str, list[StreamEntry]]]:
            if len(hub.got.get("t", [])) == 20:
                behind_at_reads.append(reader.behind_for(time.monotonic() + 100))
                raise ConnectionError("memory broker: connection lost")
            return await real_read(*args)

        broker.read = read  # type: ignore[method-assign]
        for _ in range(20):
            await broker.add("t", b"\x80")
        await until(lambda: len(behind_at_reads) >= 2, what="a read failed, and the retry")
        assert behind_at_reads[0] > 99  # behind when the read failed (two full reads) ...
        assert behind_at_reads[1] == 0.0  # ... and not after it: not reading is not falling behind
