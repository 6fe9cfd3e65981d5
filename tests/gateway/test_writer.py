"""The writer's two paths: frames stay in order and none is lost when the transport stalls."""

from __future__ import annotations

import asyncio
import random
import time

import msgpack
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol import JSON_WIRE
from gateway.values import Encoded, Frame, StreamEntry
from gateway.writer import Flusher, Writer
from tests.support.sink import RecordingSink
from tests.support.waiting import until


class Transport(RecordingSink):
    """A connection whose transport sometimes stops taking data (a paused transport)."""

    def __init__(self, refusals: list[bool], framed: bool = True) -> None:
        super().__init__(framed)
        self.refusals = refusals

    def write_frames(self, frames: list[Frame], binary: bool) -> bool:
        assert not binary, "a JSON connection's frames go out as text"
        if self.refusals and self.refusals.pop(0):
            return False
        return super().write_frames(frames, binary)

    async def drained(self) -> bool:
        await asyncio.sleep(0)  # the transport drained after a loop turn
        return True

    async def send(self, frame: Frame) -> None:
        raise AssertionError("with a sink, the writer never uses the ASGI send")


def entry(n: int) -> StreamEntry:
    return StreamEntry("t", f"{n + 1}-0", (n + 1, 0), "", "", msgpack.packb({"n": n}))


def messages(frames: list[Frame], batch: bool) -> list[int]:
    out: list[int] = []
    for frame in frames:
        value = orjson.loads(frame)
        if isinstance(value, list):  # a batch frame; a lone message may go out unwrapped
            assert batch, "arrays only in batch mode"
            out += [v["data"]["n"] for v in value]
        else:
            out.append(value["data"]["n"])
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), max_size=30), st.booleans(), st.booleans(), st.integers(0, 2**32))
def test_order_and_completeness_across_fast_and_slow_paths(
    refusals: list[bool], batch: bool, framed: bool, seed: int
) -> None:
    async def scenario() -> None:
        rng = random.Random(seed)
        transport = Transport(list(refusals), framed)
        writer = Writer(transport.send, JSON_WIRE, max_bytes=10**9, batch=batch, batch_ms=1,
                        sink=transport, flusher=Flusher())
        n = 0
        for _ in range(40):
            size = rng.randint(1, 5)
            items: list[Frame] = [Encoded(entry(n + i)).wire(writer.form) for i in range(size)]
            assert writer.push_many(items, sum(map(len, items)))
            n += size
            if rng.random() < 0.5:
                await asyncio.sleep(0)
        await until(lambda: not writer.queued_bytes and writer.messages_sent >= n, timeout=5,
                    what="everything to be written")
        writer.close()
        await writer.wait_closed()
        assert messages(transport.frames, batch) == list(range(n))
        assert writer.messages_sent == n

    asyncio.run(scenario())


async def test_byte_limit_counts_frames_waiting_on_a_stalled_transport() -> None:
    transport = RecordingSink()
    transport.paused = True  # never drains

    async def unused(frame: Frame) -> None:
        raise AssertionError("with a sink, the writer never uses the ASGI send")

    writer = Writer(unused, JSON_WIRE, max_bytes=100, sink=transport, flusher=Flusher())
    assert writer.push(b"x" * 60)
    await until(lambda: transport.refused >= 2, what="the fast path, then the slow one, refused")
    assert writer.queued_bytes == 62  # the message in its frame (a 2-byte header)
    assert not writer.push(b"y" * 60), "the stalled frame must still count against the limit"
    transport.resume()
    await until(lambda: transport.frames == [b"x" * 60], what="the frame written once drained")
    assert writer.queued_bytes == 0 and writer.push(b"y" * 60)
    writer.close()
    await writer.wait_closed()


async def test_the_flusher_reports_one_latency_per_round_from_its_oldest_event() -> None:
    async def unused(frame: Frame) -> None:
        raise AssertionError("with a sink, the writer never uses the ASGI send")

    samples: list[float] = []
    flusher = Flusher(samples.append)
    sinks = [RecordingSink() for _ in range(3)]
    writers = [Writer(unused, JSON_WIRE, max_bytes=10**6, sink=s, flusher=flusher) for s in sinks]
    now_ms = int(time.time() * 1000)
    for age_ms, writer in zip((50, 5_000, 500), writers, strict=True):  # one round, three writes
        item = Encoded(entry(age_ms)).wire(writer.form)
        assert writer.push_many([item], len(item), now_ms - age_ms)
    await until(lambda: all(s.frames for s in sinks), what="the three writes")
    assert len(samples) == 1 and 5.0 <= samples[0] < 60.0  # the oldest: 5 s old


async def test_a_connection_lost_while_the_writer_waits_ends_the_writer() -> None:
    async def unused(frame: Frame) -> None:
        raise AssertionError("with a sink, the writer never uses the ASGI send")

    transport = RecordingSink()
    transport.paused = True
    writer = Writer(unused, JSON_WIRE, max_bytes=1000, sink=transport, flusher=Flusher())
    assert writer.push(b"x" * 60)
    await until(lambda: transport.refused >= 2, what="the slow path waiting for the transport")
    transport.lose()
    await until(lambda: writer.closed, what="the writer to stop")
    assert writer.push(b"y") and writer.queued_bytes == 0  # nothing more is queued
    await writer.wait_closed()
