"""The gateway core end to end without I/O: broker -> reader -> node -> hub -> sessions -> writers.

A real :class:`~gateway.node.Node` on the in-memory broker, its reader running, and clients
that are sessions on a fake socket (the frames the gateway wrote, decoded as a client would):
no Redis, no uvicorn, no sockets. Each test covers a promise a client would notice: order, no
duplicate and no gap where history meets live, filters, private routing, 4008 and 4009.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import msgpack
import orjson
import pytest

from gateway import protocol as p
from gateway.auth import Principal
from gateway.memory_broker import MemoryBroker
from gateway.node import Node
from gateway.session import Session
from gateway.settings import GatewaySettings
from gateway.values import Frame
from shared.settings import Secret
from tests.support.sink import RecordingSink
from tests.support.waiting import until

WAIT = 5.0  # seconds any one condition may take
SECRET = "a unit-test secret of at least 32 bytes"


class FakeSocket(RecordingSink):
    """The client's end of one connection: every frame written, and the close."""

    def __init__(self, framed: bool = True) -> None:
        super().__init__(framed)
        self.close_code: int | None = None
        self.close_reason = ""

    async def send(self, frame: Frame) -> None:  # the ASGI path: not used when there is a sink
        raise AssertionError("frames go through the sink")

    async def close(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason


class Client:
    """A session on a fake socket, read back as a client reads its frames."""

    def __init__(self, node: Node, principal: Principal | None, binary: bool, batch: bool,
                 framed: bool = True) -> None:
        self.binary = binary
        self.socket = FakeSocket(framed)
        self.session: Session = node.connect(
            self.socket.send, self.socket.close, self.socket,
            p.MSGPACK_WIRE if binary else p.JSON_WIRE, batch=batch, batch_ms=1 if batch else 0,
            principal=principal, remote="test")
        self.session.start()
        self._ids = itertools.count(1)
        self._parsed = 0
        self.messages: list[dict[str, Any]] = []

    def _read(self) -> list[dict[str, Any]]:
        for frame in self.socket.frames[self._parsed:]:
            value = msgpack.unpackb(frame, raw=False) if self.binary else orjson.loads(frame)
            self.messages += value if isinstance(value, list) else [value]
        self._parsed = len(self.socket.frames)
        return self.messages

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self._read() if "offset" in m and "type" not in m
                and (event_type is None or m["event_type"] == event_type)]

    def offsets(self, event_type: str | None = None) -> list[str]:
        return [e["offset"] for e in self.events(event_type)]

    def reply(self, msg_id: int) -> dict[str, Any] | None:
        return next((m for m in self._read() if m.get("id") == msg_id), None)

    async def send(self, message: dict[str, Any]) -> int:
        msg_id = next(self._ids)
        message = {**message, "id": msg_id}
        frame = msgpack.packb(message) if self.binary else orjson.dumps(message).decode()
        await self.session.on_frame(frame, self.binary)
        return msg_id

    async def subscribe(self, event_type: str, **fields: Any) -> dict[str, Any]:
        msg_id = await self.send({"op": "subscribe", "event_type": event_type, **fields})
        await until(lambda: self.reply(msg_id), timeout=WAIT, what="the reply")
        reply = self.reply(msg_id)
        assert reply is not None and reply["type"] == "subscribed", reply
        return reply

    async def closed(self) -> int:
        await until(lambda: self.socket.close_code is not None, timeout=WAIT, what="the close")
        assert self.socket.close_code is not None
        return self.socket.close_code


class Core:
    def __init__(self, node: Node, broker: MemoryBroker) -> None:
        self.node, self.broker = node, broker
        self.clients: list[Client] = []

    def client(self, user: str | None = None, *, admin: bool = False, binary: bool = False,
               batch: bool = False, framed: bool = True) -> Client:
        roles = frozenset({"admin"} if admin else ())
        principal = Principal(user, roles, None) if user is not None else None
        client = Client(self.node, principal, binary, batch, framed)
        self.clients.append(client)
        return client

    async def publish(self, event_type: str, n: int = 1, symbol: str = "", user: str = "",
                      **data: Any) -> list[str]:
        return [await self.broker.add(event_type, msgpack.packb({"i": i, **data}), symbol, user)
                for i in range(n)]

    def everything(self, event_type: str) -> list[str]:
        return [e.offset for e in self.broker._streams[event_type].entries]


@contextlib.asynccontextmanager
async def running_core(max_len: int = 100_000, **settings: Any) -> AsyncIterator[Core]:
    broker = MemoryBroker(max_len=max_len)
    node = Node(GatewaySettings(**{"reader_block": 0.05, **settings}), broker)
    reader = asyncio.create_task(node.reader.run())
    core = Core(node, broker)
    try:
        yield core
    finally:
        for client in core.clients:
            await node.disconnect(client.session)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


# --- order, and the seam between history and live ----------------------------------------------


@pytest.mark.parametrize("framed", [True, False], ids=["framed", "deflate"])
@pytest.mark.parametrize(("binary", "batch"), [(False, False), (True, False), (False, True), (True, True)])
async def test_live_events_arrive_in_offset_order_per_type_as_text_or_binary_frames(
    binary: bool, batch: bool, framed: bool
) -> None:
    async with running_core() as core:
        client = core.client(binary=binary, batch=batch, framed=framed)
        await client.subscribe("a")
        await client.subscribe("b")
        for _ in range(50):  # interleaved types, several events per read
            await core.publish("a", 3)
            await core.publish("b", 2)
        await until(lambda: len(client.events()) == 250, timeout=WAIT, what="every event")
        assert client.offsets("a") == core.everything("a")
        assert client.offsets("b") == core.everything("b")
        assert client.socket.opcodes == {"binary" if binary else "text"}  # JSON goes out as text
        assert client.socket.types == {bytes}  # bytes from the encoder to the socket
        first = client.events("a")[0]
        assert first["data"] == {"i": 0} and first["symbol"] is None
        assert first["ts"] == int(first["offset"].split("-")[0])


@pytest.mark.parametrize("start", ["since", "last", "live"])
@pytest.mark.parametrize("binary", [False, True])
async def test_events_published_during_a_replay_arrive_once_and_without_a_gap(
    start: str, binary: bool
) -> None:
    async with running_core(replay_page=50) as core:
        old = await core.publish("t", 1000)
        state = await core.broker.state("t")
        client = core.client(binary=binary)
        buffered = 0  # the most live events a recovering subscription held at once

        async def publish_live() -> None:
            nonlocal buffered
            for _ in range(300):
                await core.publish("t")
                sub = client.session.subs.get("t")
                if sub is not None and sub.recovering:
                    buffered = max(buffered, len(sub.buffer))
                await asyncio.sleep(0)

        live = asyncio.create_task(publish_live())
        fields = {"since": old[99], "epoch": state.epoch} if start == "since" else (
            {"last": 100} if start == "last" else {})
        reply = await client.subscribe("t", **fields)
        await live
        everything = core.everything("t")
        await until(lambda: client.offsets("t")[-1:] == everything[-1:], timeout=WAIT,
                    what="the newest event")
        got = client.offsets("t")
        assert got == everything[everything.index(got[0]):]  # contiguous: no gap, no duplicate
        assert reply["recovered"] is True
        if start == "since":
            assert got[0] == old[100]
        elif start == "last":
            assert everything.index(got[0]) >= 900  # the last 100 at the time, then live
        assert buffered > 0, "live events must have been buffered while the replay ran"


# --- filters and private routing -----------------------------------------------------------------


async def test_symbol_filters_apply_to_live_events_and_to_replays() -> None:
    async with running_core() as core:
        symbols = ["BTC", "ETH", "SOL", ""]
        for n in range(40):
            await core.publish("t", symbol=symbols[n % 4])
        every, btc, two = core.client(), core.client(), core.client()
        tail = (await core.broker.state("t")).last
        since = f"{tail[0]}-{tail[1]}"
        await every.subscribe("t", since=since)
        await btc.subscribe("t", symbols=["btc"], last=5)  # symbols are upper-cased
        await two.subscribe("t", symbols=["BTC", "ETH"], since=core.everything("t")[19])
        for n in range(40):
            await core.publish("t", symbol=symbols[n % 4])
        entries = core.broker._streams["t"].entries
        await until(lambda: every.offsets("t")[-1:] == [entries[-1].offset], timeout=WAIT,
                    what="the newest event")
        await until(lambda: btc.offsets("t")[-1:] == [entries[-4].offset], timeout=WAIT,
                    what="the newest BTC event")

        def matching(start: int, wanted: set[str]) -> list[str]:
            return [e.offset for e in entries[start:] if e.symbol in wanted]

        assert every.offsets("t") == [e.offset for e in entries[40:]]
        assert btc.offsets("t") == matching(0, {"BTC"})[-15:]  # 5 replayed, 10 live
        await until(lambda: two.offsets("t")[-1:] == matching(20, {"BTC", "ETH"})[-1:],
                    timeout=WAIT, what="the newest BTC or ETH event")
        assert two.offsets("t") == matching(20, {"BTC", "ETH"})  # replayed then live, in order
        assert {e["symbol"] for e in every.events()} == {"BTC", "ETH", "SOL", None}


async def test_private_events_reach_only_their_user_and_admins_in_offset_order() -> None:
    async with running_core(private_types=frozenset({"orders"})) as core:
        alice, bob, admin = core.client("alice"), core.client("bob"), core.client("root", admin=True)
        alice_admin = core.client("alice", admin=True)  # her own events once, not twice
        anonymous = core.client()
        for client in (alice, bob, admin, alice_admin):
            await client.subscribe("orders")
        await alice.subscribe("public")
        await anonymous.subscribe("public")
        refused = await anonymous.send({"op": "subscribe", "event_type": "orders"})
        await until(lambda: anonymous.reply(refused), timeout=WAIT, what="the refusal")
        assert anonymous.reply(refused)["code"] == "unauthorized"  # type: ignore[index]
        mine: list[str] = []
        for n in range(30):
            user = ["alice", "bob", ""][n % 3]
            offsets = await core.publish("orders", user=user, symbol="BTC")
            if user in ("alice", ""):
                mine += offsets
            await core.publish("public", user="alice" if n % 5 == 0 else "")
        everything = core.everything("orders")
        await until(lambda: len(admin.events("orders")) == 30, timeout=WAIT, what="admin's events")
        await until(lambda: alice.offsets("orders")[-1:] == mine[-1:], timeout=WAIT,
                    what="alice's events")
        assert alice.offsets("orders") == mine  # public and hers, interleaved in offset order
        assert alice_admin.offsets("orders") == everything
        assert admin.offsets("orders") == everything
        await until(lambda: len(bob.offsets("orders")) == 20, timeout=WAIT, what="bob's events")
        assert {e["data"]["i"] for e in bob.events("orders")} == {0}
        assert len(alice.offsets("public")) == 30
        public = [e.offset for e in core.broker._streams["public"].entries if not e.user]
        assert anonymous.offsets("public") == public  # no private event without a user
        # a replay shows each user the same events as live delivery did
        late_bob = core.client("bob")
        await late_bob.subscribe("orders", last=100)
        await until(lambda: len(late_bob.offsets("orders")) == 20, timeout=WAIT, what="bob's replay")
        assert late_bob.offsets("orders") == bob.offsets("orders")


async def test_authenticating_later_routes_that_users_private_events_from_then_on() -> None:
    async with running_core(jwt_secret=Secret(SECRET)) as core:
        client = core.client()
        await client.subscribe("t")
        await core.publish("t", user="carol")  # not for an anonymous connection
        await core.publish("t")
        await until(lambda: len(client.events()) == 1, timeout=WAIT, what="the public event")
        token = jwt.encode({"sub": "carol", "exp": int(time.time()) + 60}, SECRET)
        msg_id = await client.send({"op": "auth", "token": token})
        await until(lambda: client.reply(msg_id), timeout=WAIT, what="the auth reply")
        assert client.reply(msg_id) == {"type": "authenticated", "user": "carol", "id": msg_id}
        later = await core.publish("t", user="carol")
        await core.publish("t", user="dave")
        await until(lambda: client.offsets()[-1:] == later, timeout=WAIT, what="carol's event")
        assert len(client.events()) == 2


# --- 4008 -----------------------------------------------------------------------------------------


async def test_a_replay_past_its_bound_is_closed_with_4008_after_a_clean_prefix() -> None:
    async with running_core(replay_page=50, replay_max_events=200) as core:
        old = await core.publish("t", 1000)
        state = await core.broker.state("t")
        client = core.client()
        await client.subscribe("t", since=old[0], epoch=state.epoch)
        assert await client.closed() == p.CLOSE_SLOW
        assert "replay passed 200 events" in client.socket.close_reason
        assert client.offsets("t") == old[1:201]  # what it got is exact: it resumes from there


async def test_a_replay_cut_at_its_bound_writes_what_it_queued_before_the_close() -> None:
    # a client far behind converges: each connection carries REPLAY_MAX_EVENTS events, even
    # when the transport was slow to take them (a close drops whatever is still queued)
    async with running_core(replay_page=50, replay_max_events=200) as core:
        old = await core.publish("t", 1000)
        state = await core.broker.state("t")
        client = core.client()
        client.socket.paused = True
        await client.send({"op": "subscribe", "event_type": "t", "since": old[0], "epoch": state.epoch})
        await until(lambda: client.session.writer.queued_bytes > 10_000 or client.socket.close_code,
                    timeout=WAIT, what="the replay queued")
        client.socket.resume()
        assert await client.closed() == p.CLOSE_SLOW
        assert client.offsets("t") == old[1:201]


async def test_a_send_path_that_breaks_closes_with_1011_so_the_client_resumes() -> None:
    # frames taken for a send that raised must not vanish behind a connection left open
    async with running_core() as core:
        broken, fine = core.client(), core.client()
        for client in (broken, fine):
            await client.subscribe("t")
        first = await core.publish("t")
        await until(lambda: broken.offsets("t") == first == fine.offsets("t"), timeout=WAIT,
                    what="the first event")
        broken.socket.broken = True
        later = await core.publish("t", 3)
        assert await broken.closed() == 1011
        await until(lambda: fine.offsets("t") == first + later, timeout=WAIT, what="the others")
        assert broken.offsets("t") == first  # it resumes from there, with the three after it


async def test_a_client_that_stops_reading_is_closed_with_4008_and_others_are_not() -> None:
    async with running_core(slow_client_max_bytes=64 * 1024) as core:
        slow, fine = core.client(), core.client()
        await slow.subscribe("t")
        await fine.subscribe("t")
        slow.socket.paused = True
        offsets: list[str] = []
        for _ in range(100):  # bursts well under the queue limit: only a client not reading fills it
            burst = await core.publish("t", 20, pad="x" * 200)
            offsets += burst
            await until(lambda: fine.offsets("t")[-1:] == burst[-1:], timeout=WAIT,  # noqa: B023
                        what="the burst delivered")
            if slow.socket.close_code is not None:
                break
        assert slow.socket.close_code == p.CLOSE_SLOW
        assert "outgoing queue full" in slow.socket.close_reason
        assert fine.offsets("t") == offsets
        assert fine.socket.close_code is None
        assert core.node.metrics.slow_consumers._value.get() == 1


async def test_live_events_piling_up_behind_a_stalled_replay_close_with_4008() -> None:
    async with running_core(slow_client_max_bytes=64 * 1024, replay_page=50) as core:
        old = await core.publish("t", 400, pad="x" * 200)
        client = core.client()
        client.socket.paused = True  # the replay waits for the client to drain ...
        state = await core.broker.state("t")
        await client.send({"op": "subscribe", "event_type": "t", "since": old[0],
                           "epoch": state.epoch})
        sub = client.session.subs["t"]
        while client.socket.close_code is None:  # ... while live events keep coming
            await core.publish("t", 10, pad="x" * 200)
            await asyncio.sleep(0.001)
        assert client.socket.close_code == p.CLOSE_SLOW
        assert "piled up during a replay" in client.socket.close_reason
        assert sub.recovering


# --- 4009 -----------------------------------------------------------------------------------------


async def test_a_stream_that_went_back_closes_its_subscribers_with_4009_and_only_them() -> None:
    async with running_core(reader_epoch_check=60) as core:
        victim, bystander = core.client(), core.client()
        await victim.subscribe("a")
        await bystander.subscribe("b")
        await core.publish("a", 5)
        b_offsets = await core.publish("b", 3)
        await until(lambda: len(victim.events()) == 5, timeout=WAIT, what="the first events")
        epoch = (await core.broker.state("a")).epoch
        core.broker.rewind("a", 2)  # a failover to a replica that missed the last two
        await core.broker.interrupt()
        await core.publish("a")
        assert await victim.closed() == p.CLOSE_RESYNC
        assert "stream went back" in victim.socket.close_reason
        await until(lambda: bystander.offsets("b") == b_offsets, timeout=WAIT, what="b's events")
        assert bystander.socket.close_code is None
        # resuming with the old epoch is answered recovered: false
        again = core.client()
        reply = await again.subscribe("a", since=victim.offsets("a")[-1], epoch=epoch)
        assert reply["recovered"] is False and reply["epoch"] != epoch


async def test_entries_trimmed_before_the_reader_read_them_close_with_4009() -> None:
    async with running_core(max_len=5, reader_epoch_check=60) as core:
        client = core.client()
        await client.subscribe("t")
        first = await core.publish("t")
        await until(lambda: client.offsets("t") == first, timeout=WAIT, what="the first event")
        await core.broker.interrupt()  # the reader is cut off ...
        await core.publish("t", 20)  # ... while 20 are added and all but 5 trimmed
        assert await client.closed() == p.CLOSE_RESYNC
        assert "trimmed" in client.socket.close_reason


async def test_a_stream_recreated_with_a_new_epoch_closes_its_subscribers_with_4009() -> None:
    async with running_core(reader_epoch_check=60) as core:
        client = core.client()
        await client.subscribe("t")
        await core.publish("t", 3)
        await until(lambda: len(client.events()) == 3, timeout=WAIT, what="the events")
        core.broker.drop("t")  # Redis restarted without its data ...
        await core.broker.interrupt()
        await core.publish("t")  # ... and the next publish started a new epoch
        assert await client.closed() == p.CLOSE_RESYNC
        assert "epoch changed" in client.socket.close_reason


async def test_first_subscribers_of_an_unpublished_type_share_one_epoch_reservation() -> None:
    async with running_core() as core:
        calls = 0
        gate = asyncio.Event()
        reserve = core.broker.reserve_epoch

        async def slow_reserve(event_type: str) -> str:
            nonlocal calls
            calls += 1
            await gate.wait()  # Redis answers once every subscriber has asked
            return await reserve(event_type)

        core.broker.reserve_epoch = slow_reserve  # type: ignore[method-assign]
        clients = [core.client() for _ in range(50)]  # a storm of first subscribers
        ids = [await c.send({"op": "subscribe", "event_type": "new"}) for c in clients]
        await until(lambda: calls >= 1 and all(c.session._pending for c in clients), timeout=WAIT,
                    what="every subscribe waiting on the reservation")
        gate.set()
        for client, msg_id in zip(clients, ids, strict=True):
            await until(lambda: client.reply(msg_id), timeout=WAIT, what="every reply")  # noqa: B023
        epochs = {client.reply(msg_id)["epoch"] for client, msg_id in zip(clients, ids, strict=True)}  # type: ignore[index]
        assert calls == 1 and len(epochs) == 1 and "" not in epochs
        offset = (await core.publish("new"))[0]
        await until(lambda: all(c.offsets("new") == [offset] for c in clients), timeout=WAIT,
                    what="the first event, to every one of them")
