"""``tickstream migrate-keys`` on a real redis-server: data written in the layout before hash
tags (directly, with redis-py, the way the previous release left it) moves to the new layout
with its entry ids, epochs and TTLs, and the new publisher carries on from it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

from shared.keys import Keys
from shared.publisher import AsyncPublisher, PublishSettings
from tests.support.clients import sync_client
from tests.support.redis_topology import RedisSentinelServers
from tickstream.cli import main
from tickstream.migrate_keys import Migration

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEYS = Keys()
SIGNAL = {"symbol": "BTCUSDT", "signal": "LONG", "entry_price": 65000, "strategy": "x",
          "confidence": 0.7}


@dataclass
class Old:
    """What the previous release left for one event type."""

    event_type: str
    ids: list[bytes]
    epoch: bytes
    idem_ttl_ms: int


def write_old(client: Any, event_type: str, entries: int = 3, *, prefix: str = "tickstream",
              epoch: str = "9f2c0d1e", idem: str = "order-42", ttl_ms: int = 3_600_000) -> Old:
    """The old layout, written directly: stream, meta hash, type set, idempotency key, producer."""
    stream = f"{prefix}:stream:{event_type}"
    ids = [client.xadd(stream, {"d": msgpack.packb({"i": i, **SIGNAL}), "s": "BTCUSDT", "u": ""})
           for i in range(entries)]
    client.hset(f"{prefix}:meta:{event_type}", mapping={"epoch": epoch, "created": "1700000000000"})
    client.sadd(f"{prefix}:types", event_type)
    client.set(f"{prefix}:idem:{event_type}:{idem}", ids[0], px=ttl_ms)
    client.zadd(f"{prefix}:producer:{event_type}:ab12cd34", {"7|" + ids[-1].decode(): 7})
    client.pexpire(f"{prefix}:producer:{event_type}:ab12cd34", 600_000)
    return Old(event_type, ids, epoch.encode(), ttl_ms)


def migrate(url: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["migrate-keys", "--redis-url", url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def layout(client: Any) -> dict[bytes, Any]:
    """Every key with its type and content (TTLs aside), to compare before and after."""
    state: dict[bytes, Any] = {}
    for key in sorted(client.scan_iter(count=1000)):
        kind = client.type(key)
        if kind == b"stream":
            state[key] = ("stream", client.xrange(key))
        elif kind == b"hash":
            state[key] = ("hash", client.hgetall(key))
        elif kind == b"set":
            state[key] = ("set", client.smembers(key))
        elif kind == b"zset":
            state[key] = ("zset", client.zrange(key, 0, -1, withscores=True))
        else:
            state[key] = (kind.decode(), client.get(key))
    return state


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_moves_streams_meta_and_idempotency_keys_keeping_ids_epoch_and_ttl(
    redis_url: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    signals = write_old(r, "signal_generated", 5)
    prices = write_old(r, "price_update", 2, epoch="77aa", idem="p-1")
    r.srem("tickstream:types", "price_update")  # e.g. an older release that never registered it

    code, out, err = migrate(redis_url, capsys=capsys)

    assert code == 0, err
    for old in (signals, prices):
        t = old.event_type
        assert [i for i, _ in r.xrange(KEYS.stream(t))] == old.ids
        assert r.hget(KEYS.meta(t), "epoch") == old.epoch
        assert r.hget(KEYS.meta(t), "created") == b"1700000000000"
        assert not r.exists(f"tickstream:stream:{t}", f"tickstream:meta:{t}",
                            f"tickstream:producer:{t}:ab12cd34")
        assert r.sismember(KEYS.types(), t)
    idem = KEYS.idempotency("signal_generated", "order-42")
    assert r.get(idem) == signals.ids[0]
    assert 0.99 * signals.idem_ttl_ms < r.pttl(idem) <= signals.idem_ttl_ms
    assert r.get(KEYS.idempotency("price_update", "p-1")) == prices.ids[0]
    assert not r.exists("tickstream:idem:signal_generated:order-42")
    assert not r.keys("tickstream:producer:*")
    lines = out.splitlines()
    assert lines[0] == ("moved price_update: stream (2 entries), meta (epoch 77aa), "
                        "1 idempotency key, deleted 1 producer record, added to tickstream:types")
    assert lines[1].startswith("moved signal_generated: stream (5 entries), meta (epoch 9f2c0d1e)")
    assert lines[2].startswith("tickstream migrate-keys: 2 types moved (2 streams, 2 meta hashes, "
                               "2 idempotency keys; deleted 2 producer records); 0 conflicts")
    assert len(lines) == 3


def test_second_run_has_nothing_to_do_and_exits_0(
    redis_url: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    write_old(r, "signal_generated")
    assert migrate(redis_url, capsys=capsys)[0] == 0
    after_first = layout(r)

    code, out, err = migrate(redis_url, capsys=capsys)

    assert (code, err) == (0, "")
    assert out == ("tickstream migrate-keys: nothing to do: no keys of the layout before hash "
                   "tags under prefix 'tickstream'\n")
    assert layout(r) == after_first


def test_an_interrupted_run_is_finished_by_the_next(
    redis_url: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write_old(r, "signal_generated")
    for i in range(5):
        r.set(f"tickstream:idem:signal_generated:k{i}", old.ids[0], px=600_000)
    # Interrupted after the stream and meta moved, with only some idempotency keys moved.
    Migration(r, "tickstream")._streams_and_meta()
    r.rename("tickstream:idem:signal_generated:k0", KEYS.idempotency("signal_generated", "k0"))

    code, out, _ = migrate(redis_url, "--batch", "2", capsys=capsys)

    assert code == 0
    assert out.splitlines()[0] == ("moved signal_generated: 5 idempotency keys, "
                                   "deleted 1 producer record")
    assert [i for i, _ in r.xrange(KEYS.stream("signal_generated"))] == old.ids
    assert r.hget(KEYS.meta("signal_generated"), "epoch") == old.epoch
    assert sorted(r.keys("tickstream:{signal_generated}:idem:*")) == sorted(
        [KEYS.idempotency("signal_generated", k).encode() for k in
         ["order-42", "k0", "k1", "k2", "k3", "k4"]])
    assert r.keys("tickstream:idem:*") == []


def test_a_conflict_is_reported_exits_1_and_loses_nothing(
    redis_url: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    write_old(r, "signal_generated")
    clean = write_old(r, "price_update")
    # A new-release gateway already reserved an epoch for signal_generated in the new layout.
    r.hset(KEYS.meta("signal_generated"), mapping={"epoch": "newnew", "reserved": "1"})
    # ... and a new-release publisher already used one idempotency key of price_update.
    r.set(KEYS.idempotency("price_update", "dup"), "1-1", px=600_000)
    r.set("tickstream:idem:price_update:dup", "2-2", px=600_000)
    before = {k: v for k, v in layout(r).items() if b"price_update" not in k}

    code, out, err = migrate(redis_url, capsys=capsys)

    assert code == 1
    assert ("conflict signal_generated: tickstream:{signal_generated}:meta already exists; every "
            "key of this type is left as it was (2 idempotency or producer keys kept too)") in err
    assert "conflict price_update: tickstream:idem:price_update:dup kept" in err
    # Nothing of the conflicting type moved or was lost; the other type moved.
    assert {k: v for k, v in layout(r).items() if b"price_update" not in k} == before
    assert r.get("tickstream:idem:price_update:dup") == b"2-2"
    assert r.get(KEYS.idempotency("price_update", "dup")) == b"1-1"
    assert [i for i, _ in r.xrange(KEYS.stream("price_update"))] == clean.ids
    assert "moved price_update: stream (3 entries)" in out
    assert "1 type moved" in out and "2 conflicts" in out
    # Still a conflict on the next run, still nothing lost.
    assert migrate(redis_url, capsys=capsys)[0] == 1
    assert {k: v for k, v in layout(r).items() if b"price_update" not in k} == before


def test_dry_run_prints_the_plan_and_changes_nothing(
    redis_url: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    write_old(r, "signal_generated")
    before = layout(r)
    ttl_before = r.pttl("tickstream:idem:signal_generated:order-42")

    code, out, err = migrate(redis_url, "--dry-run", capsys=capsys)

    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "would move signal_generated: stream (3 entries), meta (epoch 9f2c0d1e), "
        "1 idempotency key, would delete 1 producer record",
        "tickstream migrate-keys (dry run, nothing written): 1 type would move (1 stream, "
        "1 meta hash, 1 idempotency key; would delete 1 producer record); 0 conflicts",
    ]
    assert layout(r) == before
    assert 0 < r.pttl("tickstream:idem:signal_generated:order-42") <= ttl_before


async def test_the_new_publisher_carries_on_from_the_migrated_stream(
    redis_url: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write_old(r, "signal_generated")
    assert migrate(redis_url, capsys=capsys)[0] == 0

    async with AsyncPublisher.from_url(redis_url, PublishSettings(redis_url=redis_url)) as pub:
        offset = await pub.publish("signal_generated", SIGNAL)
        repeat = await pub.publish("signal_generated", SIGNAL, idempotency_key="order-42")

    ids = [i for i, _ in r.xrange(KEYS.stream("signal_generated"))]
    assert ids == [*old.ids, offset.encode()]
    assert r.hget(KEYS.meta("signal_generated"), "epoch") == old.epoch  # same epoch: resumable
    assert repeat == old.ids[0].decode()  # the migrated idempotency key still de-duplicates
    assert r.scard(KEYS.types()) == 1


def test_unparsable_names_are_reported_and_left_alone(
    redis_url: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = [b"tickstream:stream:Price-Update", b"tickstream:meta:a:b", b"tickstream:idem:noKey",
           b"tickstream:stream:\xff\xfe", b"tickstream:producer:x" + b"y" * 64 + b":id"]
    for key in odd:
        r.set(key, "x")
    r.xadd("tickstream:stream:not_a_hash_meta", {"d": b"\x80", "s": "", "u": ""})
    r.set("tickstream:meta:not_a_hash_meta", "x")
    before = layout(r)

    code, out, err = migrate(redis_url, capsys=capsys)

    assert code == 1  # the wrong-typed meta is a conflict: nothing of that type moves
    assert layout(r) == before
    assert "conflict not_a_hash_meta: tickstream:meta:not_a_hash_meta is not a hash" in err
    for key in odd:
        assert f"left alone: {key.decode('utf-8', 'backslashreplace')} " in err
    assert out.rstrip().endswith("; 5 keys left alone")


def test_a_custom_prefix_from_the_environment_in_a_subprocess(r: redis.Redis, redis_url: str) -> None:
    old = write_old(r, "signal_generated", prefix="acme")
    write_old(r, "signal_generated")  # another deployment's keys on the same server: not touched
    env = {**os.environ, "REDIS_URL": redis_url, "KEY_PREFIX": "acme"}

    proc = subprocess.run([sys.executable, "-m", "tickstream.cli", "migrate-keys"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)

    assert proc.returncode == 0, proc.stderr
    assert "moved signal_generated: stream (3 entries)" in proc.stdout
    acme = Keys("acme")
    assert [i for i, _ in r.xrange(acme.stream("signal_generated"))] == old.ids
    assert r.sismember("acme:types", "signal_generated")
    assert r.exists("tickstream:stream:signal_generated", "tickstream:meta:signal_generated") == 2


def test_refuses_while_a_gateway_looks_alive_unless_forced(
    redis_url: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    write_old(r, "signal_generated")
    r.set(KEYS.health("gateway", "gw1"), "{}", ex=15)
    before = layout(r)

    code, _, err = migrate(redis_url, capsys=capsys)

    assert code == 2
    assert "stop the publishers first" in err and "gateway gw1" in err
    assert layout(r) == before
    code, out, err = migrate(redis_url, "--force", capsys=capsys)
    assert code == 0 and "warning" in err
    assert "moved signal_generated" in out


def test_a_cluster_url_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = migrate("redis+cluster://127.0.0.1:1,127.0.0.1:2", capsys=capsys)
    assert code == 2 and out == ""
    assert "is a Redis Cluster" in err and err.count("\n") == 1


def test_unreachable_redis_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.redis_server import free_port

    code, _, err = migrate(f"redis://127.0.0.1:{free_port()}/0", capsys=capsys)
    assert code == 1 and "is not reachable" in err


def test_works_on_a_sentinel_managed_primary(
    redis_sentinel: RedisSentinelServers, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_sentinel.flushall()
    url = redis_sentinel.url
    client = sync_client(url)
    try:
        old = write_old(client, "signal_generated")
        code, out, err = migrate(url, capsys=capsys)
        assert code == 0, err
        assert out.startswith("moved signal_generated: stream (3 entries)")
        assert [i for i, _ in client.xrange(KEYS.stream("signal_generated"))] == old.ids
        assert client.hget(KEYS.meta("signal_generated"), "epoch") == old.epoch
        assert migrate(url, capsys=capsys)[1].startswith("tickstream migrate-keys: nothing to do")
    finally:
        client.close()
