"""The hub and the live side of a subscription, each on its own: no broker, no reader, no socket.

The hub is driven with fake subscribers (its :class:`~gateway.hub.Subscriber` protocol is all
it knows); a subscription is driven with hand-made batches and a writer on a fake transport.
"""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

from gateway.hub import Hub
from gateway.protocol import JSON_WIRE
from gateway.subscription import Subscription
from gateway.values import JSON, Batch, Encoded, Frame, StreamEntry
from gateway.writer import Flusher, Writer
from shared.offsets import Offset
from tests.support.waiting import until


def entry(n: int, symbol: str = "", user: str = "", event_type: str = "t",
          payload: bytes | None = None) -> StreamEntry:
    data = msgpack.packb({"n": n}) if payload is None else payload
    return StreamEntry(event_type, f"{n}-0", (n, 0), symbol, user, data)


class FakeSubscriber:
    """Implements the hub's Subscriber protocol and records what it was offered."""

    def __init__(self, event_type: str = "t", symbols: set[str] | None = None,
                 user: str | None = None, is_admin: bool = False) -> None:
        self.event_type = event_type
        self.symbols = frozenset(symbols) if symbols is not None else None
        self.user = user
        self.is_admin = is_admin
        self.got: list[Offset] = []
        self.batches: list[Batch] = []
        self.resyncs: list[str] = []

    def offer(self, event: Encoded) -> None:
        self.got.append(event.pos)

    def offer_batch(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.got += [e.pos for e in batch.events]

    def resync(self, reason: str) -> None:
        self.resyncs.append(reason)


def positions(*ns: int) -> list[Offset]:
    return [(n, 0) for n in ns]


def test_filters_pick_each_subscribers_events_in_stream_order() -> None:
    hub: Hub[Any] = Hub()
    every, btc, two, other_type = (FakeSubscriber(), FakeSubscriber(symbols={"BTC"}),
                                   FakeSubscriber(symbols={"BTC", "ETH"}), FakeSubscriber("u"))
    for sub in (every, btc, two, other_type):
        hub.index(sub)
    symbols = ["BTC", "ETH", "SOL", "", "BTC", "ETH"]
    hub.dispatch("t", [entry(n, symbols[n]) for n in range(6)])
    assert every.got == positions(0, 1, 2, 3, 4, 5)
    assert btc.got == positions(0, 4)
    assert two.got == positions(0, 1, 4, 5)  # several symbols: one list, in stream order
    assert other_type.got == []
    assert hub.deliveries == 6 + 2 + 4


def test_subscribers_taking_the_same_events_share_one_batch_and_its_frames() -> None:
    hub: Hub[Any] = Hub()
    a, b = FakeSubscriber(), FakeSubscriber()
    hub.index(a)
    hub.index(b)
    hub.dispatch("t", [entry(1), entry(2)])
    assert a.batches[0] is b.batches[0]
    frames, size = a.batches[0].frames(JSON)
    assert frames is b.batches[0].frames(JSON)[0]  # encoded once for every JSON subscriber
    # the same holds for subscribers of the same several symbols (a per-filter batch)
    two, same, other = (FakeSubscriber(symbols={"BTC", "ETH"}), FakeSubscriber(symbols={"ETH", "BTC"}),
                        FakeSubscriber(symbols={"BTC", "SOL"}))
    for sub in (two, same, other):
        hub.index(sub)
    hub.dispatch("t", [entry(3, "BTC"), entry(4, "ETH"), entry(5, "SOL")])
    assert two.batches[0] is same.batches[0] and two.got == positions(3, 4)
    assert other.batches[0] is not two.batches[0] and other.got == positions(3, 5)
    assert size == sum(map(len, frames))
    assert [orjson.loads(f)["offset"] for f in frames] == ["1-0", "2-0"]


def test_private_events_go_to_their_user_and_to_admins_once_each() -> None:
    hub: Hub[Any] = Hub()
    alice, bob = FakeSubscriber(user="alice"), FakeSubscriber(user="bob")
    admin, anonymous = FakeSubscriber(user="root", is_admin=True), FakeSubscriber()
    alice_admin = FakeSubscriber(user="alice", is_admin=True)
    alice_eth = FakeSubscriber(user="alice", symbols={"ETH"})
    for sub in (alice, bob, admin, anonymous, alice_admin, alice_eth):
        hub.index(sub)
    hub.dispatch("t", [entry(1), entry(2, "BTC", user="alice"), entry(3),
                       entry(4, "ETH", user="bob"), entry(5, "ETH", user="alice")])
    assert alice.got == positions(1, 2, 3, 5)  # public and hers, in offset order
    assert bob.got == positions(1, 3, 4)
    assert admin.got == alice_admin.got == positions(1, 2, 3, 4, 5)  # an admin gets each once
    assert anonymous.got == positions(1, 3)
    assert alice_eth.got == positions(5)  # the symbol filter applies to private events too


def test_a_subscriber_indexed_again_after_its_user_changed_is_routed_by_the_new_user() -> None:
    hub: Hub[Any] = Hub()
    sub = FakeSubscriber()
    hub.index(sub)
    hub.dispatch("t", [entry(1, user="carol")])
    sub.user = "carol"
    hub.index(sub)
    hub.dispatch("t", [entry(2, user="carol"), entry(3)])
    assert sub.got == positions(2, 3)  # each once: indexing again does not double it
    sub.user = "dave"  # unindex works whatever the subscriber says by then
    hub.unindex(sub)
    hub.dispatch("t", [entry(4, user="carol"), entry(5)])
    assert sub.got == positions(2, 3)
    assert hub.subscribers("t") == []


def test_an_undecodable_entry_is_skipped_and_the_others_still_go_out_in_order() -> None:
    hub: Hub[Any] = Hub()
    received: list[str] = []

    class Encoding(FakeSubscriber):  # encodes what it is offered, as a subscription does
        def offer_batch(self, batch: Batch) -> None:
            received.extend(orjson.loads(f)["offset"] for f in batch.frames(JSON)[0])

    hub.index(Encoding())
    hub.dispatch("t", [entry(1), entry(2, payload=b"\xc1"), entry(3)])
    assert received == ["1-0", "3-0"]
    assert hub.undecodable == 1


def test_resync_tells_every_subscriber_of_the_type_once() -> None:
    hub: Hub[Any] = Hub()
    wildcard, multi, other = (FakeSubscriber(), FakeSubscriber(symbols={"A", "B"}),
                              FakeSubscriber("u"))
    for sub in (wildcard, multi, other):
        hub.index(sub)
    hub.resync("t", "stream went back")
    assert wildcard.resyncs == multi.resyncs == ["stream went back"]
    assert other.resyncs == []


# --- the live side of a subscription --------------------------------------------------------------


class Owner:
    def __init__(self) -> None:
        self.user: str | None = None
        self.is_admin = False
        self.slow: list[str] = []
        self.closes: list[tuple[int, str]] = []

    def slow_consumer(self, why: str) -> None:
        self.slow.append(why)

    def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))


class Wire:
    def __init__(self) -> None:
        self.frames: list[Frame] = []

    framed = False  # takes messages: the frames recorded are the events' JSON

    def write_frames(self, frames: list[Frame], binary: bool) -> bool:
        self.frames.extend(frames)
        return True

    async def drained(self) -> bool:
        return True

    async def send(self, frame: Frame) -> None:
        self.frames.append(frame)

    def offsets(self) -> list[str]:
        return [orjson.loads(f)["offset"] for f in self.frames]


def subscription(max_bytes: int = 1 << 20) -> tuple[Subscription, Owner, Wire]:
    owner, wire = Owner(), Wire()
    writer = Writer(wire.send, JSON_WIRE, max_bytes=max_bytes, sink=wire,
                    flusher=Flusher())
    return Subscription(owner, writer, "t", None), owner, wire


def batch(*ns: int) -> Batch:
    return Batch([Encoded(entry(n)) for n in ns])


async def test_a_recovering_subscription_buffers_then_drops_what_the_replay_already_sent() -> None:
    sub, _, wire = subscription()
    sub.offer_batch(batch(1, 2))
    assert [e.pos for e in sub.buffer] == positions(1, 2)  # held for the replay to merge
    sub.recovering, sub.buffer, sub.last = False, [], (3, 0)  # history went up to 3
    sub.offer_batch(batch(2, 3, 4, 5))  # the reader lagged: 2 and 3 came by history already
    sub.offer(Encoded(entry(5)))
    sub.offer(Encoded(entry(6)))
    await until(lambda: len(wire.frames) >= 3, what="the frames written")
    assert wire.offsets() == ["4-0", "5-0", "6-0"]
    assert sub.last == (6, 0)


async def test_a_live_buffer_larger_than_the_queue_gives_up_on_the_client() -> None:
    sub, owner, _ = subscription(max_bytes=1000)
    for n in range(20):
        sub.offer_batch(batch(n))
    assert owner.slow and set(owner.slow) == {"live events piled up during a replay"}


async def test_a_subscription_checks_visibility_and_resyncs_through_its_owner() -> None:
    sub, owner, _ = subscription()
    assert sub.visible(entry(1)) and not sub.visible(entry(2, user="alice"))
    owner.user = "alice"
    assert sub.visible(entry(2, user="alice")) and not sub.visible(entry(3, user="bob"))
    owner.is_admin = True
    assert sub.visible(entry(3, user="bob"))
    sub.resync("stream went back")
    assert owner.closes == [(4009, "resync needed: t stream went back")]
