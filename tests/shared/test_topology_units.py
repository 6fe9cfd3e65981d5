"""REDIS_URL parsing and the cluster slot map, without a server."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError, RedisUnavailable
from shared.redisconn import describe, parse_redis_url
from shared.topology import SlotMap


def test_the_three_topologies_parse() -> None:
    assert parse_redis_url("redis://127.0.0.1:6379/0").kind == "single"
    assert parse_redis_url("unix:///tmp/r.sock").kind == "single"
    cluster = parse_redis_url("redis+cluster://u:p%40ss@10.0.0.1:7000,[::1]:7001")
    assert (cluster.kind, cluster.nodes) == ("cluster", (("10.0.0.1", 7000), ("::1", 7001)))
    assert (cluster.username, cluster.password) == ("u", "p@ss")
    sentinel = parse_redis_url(
        "rediss+sentinel://h1:26379,h2:26379?sentinel_master_name=main&db=3&sentinel_password=s")
    assert (sentinel.kind, sentinel.master_name, sentinel.db, sentinel.tls) == ("sentinel", "main", 3, True)
    assert sentinel.sentinel_password == "s"
    assert "p%40ss" not in repr(cluster) and "p@ss" not in repr(cluster)


@pytest.mark.parametrize(("url", "why"), [
    ("http://x:1", "expected redis://"),
    ("redis+cluster://h", "expected host:port"),
    ("redis+cluster://h:1,", "expected host:port"),
    ("redis+cluster://h:99999", "expected host:port"),
    ("redis+cluster://h:1\n", "expected host:port"),
    ("redis+cluster://h:1?db=2", "only database 0"),
    ("redis+cluster://h:1?bogus=1", "unknown option"),
    ("redis+sentinel://h:1", "sentinel_master_name"),
    ("redis+sentinel://h:1?sentinel_master_name=a%0A", "sentinel_master_name"),
    ("redis+sentinel://h:1?sentinel_master_name=m&db=x", "db must be"),
])
def test_bad_urls_say_what_is_wrong(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_redis_url(url)


def test_passwords_never_reach_messages() -> None:
    assert describe("redis+cluster://u:secret@h:1,h:2") == "redis+cluster://u:***@h:1,h:2"
    assert describe("redis://h:1/0") == "redis://h:1/0"


def _reply(*ranges: tuple[int, int, int]) -> list[object]:
    return [[start, end, [b"127.0.0.1", port, b"id"], [b"", port + 100, b"id2"]]
            for start, end, port in ranges]


def test_slot_map_finds_the_owner_of_every_slot() -> None:
    slots = SlotMap.parse(_reply((10923, 16383, 3), (0, 5460, 1), (5461, 10922, 2)), "seed")
    assert slots.covers_all()
    assert slots.primary_for_slot(0) == "127.0.0.1:1"
    assert slots.primary_for_slot(5461) == "127.0.0.1:2"
    assert slots.primary_for_slot(16383) == "127.0.0.1:3"
    assert slots.primaries() == ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
    assert "seed:101" in slots.nodes()  # a node announcing no host is reached at the seed's


def test_a_partial_slot_map_is_not_trusted() -> None:
    slots = SlotMap.parse(_reply((0, 5460, 1), (10923, 16383, 3)), "seed")
    assert not slots.covers_all()
    with pytest.raises(RedisUnavailable):
        slots.primary_for_slot(6000)
