"""The writer's two paths: frames stay in order and none is lost when the transport stalls."""

from __future__ import annotations

import asyncio
import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol import JSON_WIRE
from gateway.values import Frame
from gateway.writer import Flusher, Writer
from tests.support.waiting import until


class Transport:
    """Stands in for a client socket that sometimes stops taking data (a paused transport)."""

    def __init__(self, refusals: list[bool]) -> None:
        self.refusals = refusals
        self.frames: list[Frame] = []
        self.slow_sends = 0

    def send_now(self, frames: list[Frame], binary: bool) -> bool:
        assert not binary, "a JSON connection's frames go out as text"
        if self.refusals and self.refusals.pop(0):
            return False
        self.frames.extend(frames)
        return True

    async def send(self, frame: Frame) -> None:
        self.slow_sends += 1
        await asyncio.sleep(0)
        self.frames.append(frame)


def messages(frames: list[Frame], batch: bool) -> list[int]:
    out: list[int] = []
    for frame in frames:
        value = orjson.loads(frame)
        if isinstance(value, list):  # a batch frame; a lone message may go out unwrapped
            assert batch, "arrays only in batch mode"
            out += [v["n"] for v in value]
        else:
            out.append(value["n"])
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), max_size=30), st.booleans(), st.integers(0, 2**32))
def test_order_and_completeness_across_fast_and_slow_paths(
    refusals: list[bool], batch: bool, seed: int
) -> None:
    async def scenario() -> None:
        rng = random.Random(seed)
        transport = Transport(list(refusals))
        writer = Writer(transport.send, JSON_WIRE, max_bytes=10**9, batch=batch, batch_ms=1,
                        send_now=transport.send_now, flusher=Flusher())
        n = 0
        for _ in range(40):
            size = rng.randint(1, 5)
            items: list[Frame] = [orjson.dumps({"n": n + i}) for i in range(size)]
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
    transport = Transport([True] * 100)  # never takes data synchronously

    async def never(frame: Frame) -> None:
        await asyncio.Event().wait()

    writer = Writer(never, JSON_WIRE, max_bytes=100, send_now=transport.send_now, flusher=Flusher())
    assert writer.push(b"x" * 60)
    await until(lambda: len(transport.refusals) < 100, what="the fast path to be refused")
    assert writer.queued_bytes == 60
    assert not writer.push(b"y" * 60), "the stalled frame must still count against the limit"
    writer.close()
    await writer.wait_closed()
