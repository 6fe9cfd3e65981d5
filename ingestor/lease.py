"""The ingestor group's lease, sans-I/O: its Lua scripts, names, values and replies.

Ingestors with the same ``SYMBOLS`` (and ``KEY_PREFIX``) form a *group* (``INGESTOR_GROUP``,
by default a hash of the sorted symbols). One of them, the leader, holds the lease key
``<prefix>:ingestor:lease:{<group>}`` = ``<token>:<node>`` with a TTL (``LEASE_TTL``) and renews
it (``LEASE_RENEW``); the others try to take it (``LEASE_RETRY``) while it lapses. The token is
``INCR <prefix>:ingestor:token:{<group>}`` at each acquisition, so every leader has a larger
one than all before it: the publish script refuses the token of a stale leader
(:mod:`shared.publish_plan`, fencing). Both keys carry the group's hash tag: one script reads
and writes both on Redis Cluster.

* :data:`ACQUIRE_SCRIPT`: take the lease if nobody holds it; the new token is at least
  ``floor + 1`` (a leader refused by a fence newer than the counter, after Redis lost the
  counter, passes that fence as its floor so the next token is past it).
* :data:`RENEW_SCRIPT`: extend our lease. A lease that expired while Redis was unreachable is
  taken back with the same token if the counter shows nobody acquired it since (a Redis outage
  does not cost the leader its buffer); otherwise the lease is lost.
* :data:`RELEASE_SCRIPT`: delete our lease (clean stop: a standby takes over at once).
* :data:`PEEK_SCRIPT`: whether the lease exists; a standby that could not reach Redis asks this
  first and then waits one TTL before it tries to take the lease, so that the leader, which
  may hold the outage's events in its buffer, takes its lease back first.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

ACQUIRE_SCRIPT: Final = """
local lease, counter = KEYS[1], KEYS[2]
local holder = redis.call('GET', lease)
if holder then return {0, holder} end
local token = redis.call('INCR', counter)
local floor = tonumber(ARGV[3])
if token <= floor then
  token = floor + 1
  redis.call('SET', counter, token)
end
local value = token .. ':' .. ARGV[1]
redis.call('SET', lease, value, 'PX', ARGV[2])
return {1, value}
"""

RENEW_SCRIPT: Final = """
local lease, counter = KEYS[1], KEYS[2]
local holder = redis.call('GET', lease)
if holder == ARGV[1] then
  redis.call('PEXPIRE', lease, ARGV[2])
  return {1, holder}
end
if not holder and redis.call('GET', counter) == ARGV[3] then
  redis.call('SET', lease, ARGV[1], 'PX', ARGV[2])
  return {1, ARGV[1]}
end
return {0, holder or ''}
"""

RELEASE_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

PEEK_SCRIPT: Final = """
return redis.call('EXISTS', KEYS[1])
"""

GROUP_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

LEADER: Final = "leader"
STANDBY: Final = "standby"


def default_group(symbols: Iterable[str]) -> str:
    """The group of ingestors with these symbols: ``s-`` and 12 hex digits of their hash."""
    joined = ",".join(sorted({s.upper() for s in symbols}))
    return "s-" + hashlib.sha256(joined.encode()).hexdigest()[:12]


def lease_value(token: int, node: str) -> str:
    return f"{token}:{node}"


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lease, from its value ``<token>:<node>``."""

    token: int
    node: str

    @classmethod
    def parse(cls, value: bytes | str | None) -> Holder | None:
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else value
        token, sep, node = text.partition(":")
        if not sep or not token.isdigit():
            return None
        return cls(int(token), node)

    def __str__(self) -> str:
        return f"{self.node} (token {self.token})"


@dataclass(frozen=True, slots=True)
class LeaseReply:
    """What ACQUIRE and RENEW answer: whether we hold the lease, and its holder."""

    ours: bool
    holder: Holder | None

    @classmethod
    def parse(cls, reply: Sequence[bytes | str | int]) -> LeaseReply:
        ours, value = reply[0], reply[1] if len(reply) > 1 else b""
        holder = Holder.parse(value) if isinstance(value, bytes | str) and value else None
        return cls(int(ours) == 1, holder)


def check_timings(ttl: float, renew: float, retry: float) -> str | None:
    """What is wrong with the lease timings, or None.

    Renewing at least twice per TTL leaves one renewal's worth of slack for a slow Redis reply.
    """
    if not ttl > 0:
        return "LEASE_TTL: expected more than 0"
    if not 0 < renew <= ttl / 2:
        return "LEASE_RENEW: expected more than 0 and at most half of LEASE_TTL"
    if not 0 < retry <= ttl:
        return "LEASE_RETRY: expected more than 0 and at most LEASE_TTL"
    return None

