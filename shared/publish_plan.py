"""The sans-I/O core of the publisher: events in, script calls out, offsets back.

Both publishers (async and sync) validate and encode a batch here, run the calls it plans, and
hand the replies back to :meth:`PublishPlan.offsets`. Nothing here touches a socket.

One call of :data:`PUBLISH_SCRIPT` writes up to :data:`MAX_EVENTS_PER_CALL` events of one type,
atomically:

1. If this producer's call sequence number was already recorded (a retry after a lost reply),
   return the offsets recorded then and write nothing.
2. **Fencing** (only for a publisher with a ``fence``, ``(group, token)``: an ingestor leader):
   a token older than the one the type's fence hash holds for the group is refused with the
   error ``FENCED <group> <stored> <token>`` (:class:`shared.errors.Fenced`), nothing written;
   a newer one is stored. :data:`FENCE_SCRIPT` raises the fence without publishing.
3. If the stream does not exist, record a new epoch in its meta hash (unless a subscriber
   reserved one, see :data:`RESERVE_SCRIPT`) and say so in the reply, so that the publisher
   registers the type in the type set (another hash slot: not touched by the script).
4. For each event (they all travel in ``ARGV[8]``, one msgpack array of
   ``[idempotency key name or "", data, symbol, user]``, plus ``mark, id`` when the publisher
   has a ``marker``): an idempotency key seen within its window returns the first offset;
   otherwise ``XADD`` (trimming by count), remember the key.
5. Trim by age (``XTRIM MINID ~``), record the call's result under its sequence number, and
   forget the records of calls the producer no longer has in flight. Each mark's highest id
   goes into the type's ``last`` hash (where a restarted ingestor resumes: written in the same
   script as the entries, so it never runs ahead of or behind the stream).

The reply is ``[created, offset, ...]``. Every key a call touches carries the event type's hash
tag, so a call runs on the one Redis Cluster node that owns the type.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgpack

from shared.events import DEFAULT_POLICY, Event, EventPolicy, PreparedEvent, prepare
from shared.keys import Keys
from shared.retention import RetentionPolicy

MAX_EVENTS_PER_CALL = 1000
PRODUCER_RECORD_TTL_MS = 600_000

Marker = Callable[[Event], "tuple[str, int] | None"]
"""An event -> ``(sequence name, id)`` for the type's ``last`` hash, or None."""

PUBLISH_SCRIPT = """
local stream, meta, producer, fence, last = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local seq, floor = ARGV[1], ARGV[2]
local maxlen, maxage, idem_ms = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local new_epoch, record_ttl = ARGV[6], ARGV[7]
local group, token = ARGV[9], ARGV[10]

local recorded = redis.call('ZRANGEBYSCORE', producer, seq, seq)
if #recorded > 0 then
  -- A write, so that a WAIT after this call covers the recorded one (replication is ordered).
  redis.call('PEXPIRE', producer, record_ttl)
  local out = {0}
  for offset in string.gmatch(string.sub(recorded[1], #seq + 2), '[^,]+') do
    out[#out + 1] = offset
  end
  return out
end

if group ~= '' then
  local stored = redis.call('HGET', fence, group) or '0'
  if tonumber(token) < tonumber(stored) then
    return redis.error_reply('FENCED ' .. group .. ' ' .. stored .. ' ' .. token)
  end
  if tonumber(token) > tonumber(stored) then redis.call('HSET', fence, group, token) end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local created = 0
if redis.call('EXISTS', stream) == 0 then
  created = 1
  if redis.call('HGET', meta, 'reserved') == '1' and redis.call('HEXISTS', meta, 'epoch') == 1 then
    redis.call('HDEL', meta, 'reserved')  -- a subscriber established this epoch: keep it
  else
    redis.call('HSET', meta, 'epoch', new_epoch, 'created', now)
  end
elseif redis.call('HEXISTS', meta, 'epoch') == 0 then
  created = 1
  redis.call('HSET', meta, 'epoch', new_epoch, 'created', now)
end

local out = {created}
local marks, marked = {}, {}
local events = cmsgpack.unpack(ARGV[8])
for i = 1, #events do
  local idem, data, symbol, user = events[i][1], events[i][2], events[i][3], events[i][4]
  local mark = events[i][5]
  if mark then
    if not marks[mark] then marked[#marked + 1] = mark end
    marks[mark] = events[i][6]
  end
  local offset = false
  if idem ~= '' then offset = redis.call('GET', idem) end
  if not offset then
    if maxlen == '0' then
      offset = redis.call('XADD', stream, '*', 'd', data, 's', symbol, 'u', user)
    else
      offset = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'd', data, 's', symbol, 'u', user)
    end
    if idem ~= '' then redis.call('SET', idem, offset, 'PX', idem_ms) end
  end
  out[#out + 1] = offset
end

if maxage > 0 then
  redis.call('XTRIM', stream, 'MINID', '~', now - maxage)
end
for i = 1, #marked do
  local field, id = marked[i], marks[marked[i]]
  local stored = redis.call('HGET', last, field)
  if not stored or tonumber(id) > tonumber(stored) then redis.call('HSET', last, field, id) end
end
redis.call('ZADD', producer, seq, seq .. '|' .. table.concat(out, ',', 2))
redis.call('ZREMRANGEBYSCORE', producer, '-inf', '(' .. floor)
redis.call('PEXPIRE', producer, record_ttl)
return out
"""

FENCE_SCRIPT = """
local stored = redis.call('HGET', KEYS[1], ARGV[1]) or '0'
if tonumber(ARGV[2]) < tonumber(stored) then
  return redis.error_reply('FENCED ' .. ARGV[1] .. ' ' .. stored .. ' ' .. ARGV[2])
end
if tonumber(ARGV[2]) > tonumber(stored) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return stored
"""
"""Raise the fence of one event type for a group (``KEYS[1]`` = its fence hash, ``ARGV`` =
group, token) without publishing: a new leader does it for every type it publishes before
anything else, so a stale leader is refused everywhere at once. Refused like a publish when
the token is older than the stored one; the reply is the token stored before."""

FENCED_PREFIX = "FENCED "
"""How the scripts' refusal starts (the error reply's first word is its code)."""

NEW_EPOCH_SCRIPT = """
local meta = KEYS[1]
if redis.call('HGET', meta, 'epoch') == ARGV[1] then
  redis.call('HSET', meta, 'epoch', ARGV[2], 'rolled_back_from', ARGV[3])
end
return redis.call('HGET', meta, 'epoch')
"""
"""A gateway found the stream went back: give it a new epoch (if no other gateway did first),
so every client holding offsets of the lost history is told ``recovered: false``."""

RESERVE_SCRIPT = """
local stream, meta = KEYS[1], KEYS[2]
if redis.call('HEXISTS', meta, 'epoch') == 0 then
  local t = redis.call('TIME')
  redis.call('HSET', meta, 'epoch', ARGV[1],
             'created', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  if redis.call('EXISTS', stream) == 0 then redis.call('HSET', meta, 'reserved', '1') end
end
return redis.call('HGET', meta, 'epoch')
"""
"""Give a type with no stream yet its epoch (a subscribe establishes it, CONTRACT section 3).

The publish script keeps a ``reserved`` epoch when it creates the stream, so a client that
subscribed before the first publish resumes with ``recovered: true``.
"""


@dataclass(slots=True)
class ScriptCall:
    """One planned script call: its keys, arguments and where its offsets go."""

    seq: int
    event_type: str
    keys: list[str]
    args: list[bytes | str | int]
    positions: list[int]


@dataclass(slots=True)
class PublishPlan:
    calls: list[ScriptCall]
    size: int

    def offsets(self, replies: Sequence[Sequence[bytes | str | int]]) -> list[str]:
        """Map the script replies back onto the order of the events given."""
        result: list[str] = [""] * self.size
        for call, reply in zip(self.calls, replies, strict=True):
            if len(reply) != len(call.positions) + 1:
                raise RuntimeError(f"publish script answered {len(reply) - 1} offsets for "
                                   f"{len(call.positions)} events")
            for position, offset in zip(call.positions, reply[1:], strict=True):
                result[position] = offset.decode() if isinstance(offset, bytes) else str(offset)
        return result

    def created(self, replies: Sequence[Sequence[bytes | str | int]]) -> set[str]:
        """The event types whose stream a call created (to register in the type set)."""
        return {call.event_type for call, reply in zip(self.calls, replies, strict=True)
                if reply and reply[0] == 1}

    def by_node(self, node_of: Callable[[str], str]) -> dict[str, list[int]]:
        """Indexes of the calls grouped by the node owning each call's keys."""
        groups: dict[str, list[int]] = {}
        for index, call in enumerate(self.calls):
            groups.setdefault(node_of(call.keys[0]), []).append(index)
        return groups

    def types(self) -> set[str]:
        return {call.event_type for call in self.calls}


@dataclass
class Planner:
    """Turns events into script calls; one per publisher instance (it owns a producer id)."""

    keys: Keys = field(default_factory=Keys)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    policy: EventPolicy = DEFAULT_POLICY
    idempotency_window_ms: int = 86_400_000
    producer_id: str = field(default_factory=lambda: os.urandom(8).hex())
    fence: tuple[str, int] | None = None
    """``(group, lease token)``: every call is refused once a newer token of the group has
    published (or raised the fence of) its type. None: not fenced (the default)."""
    marker: Marker | None = None
    """Names the sequence an event belongs to and its id there, kept per type in the ``last``
    hash by the script (the ingestor's trade ids and closed candles). None: no marks."""
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _in_flight: set[int] = field(default_factory=set)

    def plan(self, events: Iterable[Event]) -> PublishPlan:
        """Validate every event first (nothing is written if one is invalid), then group."""
        marker = self.marker
        if marker is not None:
            events = list(events)
        prepared = [prepare(event, self.policy) for event in events]
        marks = [marker(event) for event in events] if marker is not None else None
        by_type: dict[str, list[int]] = {}
        for index, event in enumerate(prepared):
            by_type.setdefault(event.event_type, []).append(index)
        calls = []
        for event_type, positions in by_type.items():
            for start in range(0, len(positions), MAX_EVENTS_PER_CALL):
                chunk = positions[start:start + MAX_EVENTS_PER_CALL]
                calls.append(self._call(event_type, [prepared[i] for i in chunk], chunk,
                                        None if marks is None else [marks[i] for i in chunk]))
        return PublishPlan(calls, len(prepared))

    def _call(self, event_type: str, events: list[PreparedEvent], positions: list[int],
              marks: list[tuple[str, int] | None] | None = None) -> ScriptCall:
        seq = next(self._seq)
        self._in_flight.add(seq)
        retention = self.retention.for_type(event_type)
        keys = self.keys
        args: list[bytes | str | int] = [
            seq, min(self._in_flight), retention.max_len, retention.max_age_ms,
            self.idempotency_window_ms, os.urandom(6).hex(), PRODUCER_RECORD_TTL_MS,
        ]
        # All events travel as one msgpack argument: far cheaper to send than 4 per event.
        # Packed without the bin type: Redis' cmsgpack (Lua) only reads the old raw type.
        rows: list[tuple[str | bytes, ...]] = [
            (keys.idempotency(event_type, e.idempotency_key) if e.idempotency_key else "",
             e.payload, e.symbol, e.user)
            for e in events
        ]
        if marks is not None:
            for index, mark in enumerate(marks):
                if mark is not None:
                    rows[index] = (*rows[index], mark[0], str(mark[1]))
        args.append(msgpack.packb(rows, use_bin_type=False))
        group, token = self.fence if self.fence is not None else ("", 0)
        args += [group, token]
        return ScriptCall(
            seq,
            event_type,
            [keys.stream(event_type), keys.meta(event_type), keys.producer(event_type, self.producer_id),
             keys.fence(event_type), keys.last(event_type)],
            args,
            positions,
        )

    def done(self, plan: PublishPlan) -> None:
        """The plan's calls are answered (or abandoned): their records may be forgotten."""
        for call in plan.calls:
            self._in_flight.discard(call.seq)
