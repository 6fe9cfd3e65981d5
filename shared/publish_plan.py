"""The sans-I/O core of the publisher: events in, script calls out, offsets back.

Both publishers (async and sync) validate and encode a batch here, run the calls it plans, and
hand the replies back to :meth:`PublishPlan.offsets`. Nothing here touches a socket.

One call of :data:`PUBLISH_SCRIPT` writes up to :data:`MAX_EVENTS_PER_CALL` events of one type,
atomically:

1. If this producer's call sequence number was already recorded (a retry after a lost reply),
   return the offsets recorded then and write nothing.
2. If the stream does not exist, record a new epoch in its meta hash and register the type.
3. For each event (they all travel in ``ARGV[9]``, one msgpack array of
   ``[idempotency key name or "", data, symbol, user]``): an idempotency key seen within its
   window returns the first offset; otherwise ``XADD`` (trimming by count), remember the key.
4. Trim by age (``XTRIM MINID ~``), record the call's result under its sequence number, and
   forget the records of calls the producer no longer has in flight.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgpack

from shared.events import DEFAULT_POLICY, Event, EventPolicy, PreparedEvent, prepare
from shared.keys import Keys
from shared.retention import RetentionPolicy

MAX_EVENTS_PER_CALL = 1000
PRODUCER_RECORD_TTL_MS = 600_000

PUBLISH_SCRIPT = """
local stream, meta, types, producer = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local seq, floor = ARGV[1], ARGV[2]
local maxlen, maxage, idem_ms = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local new_epoch, event_type, record_ttl = ARGV[6], ARGV[7], ARGV[8]

local recorded = redis.call('ZRANGEBYSCORE', producer, seq, seq)
if #recorded > 0 then
  local out = {}
  for offset in string.gmatch(string.sub(recorded[1], #seq + 2), '[^,]+') do
    out[#out + 1] = offset
  end
  return out
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', stream) == 0 then
  redis.call('HSET', meta, 'epoch', new_epoch, 'created', now)
  redis.call('SADD', types, event_type)
elseif redis.call('HEXISTS', meta, 'epoch') == 0 then
  redis.call('HSET', meta, 'epoch', new_epoch, 'created', now)
  redis.call('SADD', types, event_type)
end

local out = {}
local events = cmsgpack.unpack(ARGV[9])
for i = 1, #events do
  local idem, data, symbol, user = events[i][1], events[i][2], events[i][3], events[i][4]
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
redis.call('ZADD', producer, seq, seq .. '|' .. table.concat(out, ','))
redis.call('ZREMRANGEBYSCORE', producer, '-inf', '(' .. floor)
redis.call('PEXPIRE', producer, record_ttl)
return out
"""


@dataclass(slots=True)
class ScriptCall:
    """One planned script call: its keys, arguments and where its offsets go."""

    seq: int
    keys: list[str]
    args: list[bytes | str | int]
    positions: list[int]


@dataclass(slots=True)
class PublishPlan:
    calls: list[ScriptCall]
    size: int

    def offsets(self, replies: Sequence[Sequence[bytes | str]]) -> list[str]:
        """Map the script replies back onto the order of the events given."""
        result: list[str] = [""] * self.size
        for call, reply in zip(self.calls, replies, strict=True):
            if len(reply) != len(call.positions):
                raise RuntimeError(f"publish script answered {len(reply)} offsets for "
                                   f"{len(call.positions)} events")
            for position, offset in zip(call.positions, reply, strict=True):
                result[position] = offset.decode() if isinstance(offset, bytes) else offset
        return result


@dataclass
class Planner:
    """Turns events into script calls; one per publisher instance (it owns a producer id)."""

    keys: Keys = field(default_factory=Keys)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    policy: EventPolicy = DEFAULT_POLICY
    idempotency_window_ms: int = 86_400_000
    producer_id: str = field(default_factory=lambda: os.urandom(8).hex())
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _in_flight: set[int] = field(default_factory=set)

    def plan(self, events: Iterable[Event]) -> PublishPlan:
        """Validate every event first (nothing is written if one is invalid), then group."""
        prepared = [prepare(event, self.policy) for event in events]
        by_type: dict[str, list[int]] = {}
        for index, event in enumerate(prepared):
            by_type.setdefault(event.event_type, []).append(index)
        calls = []
        for event_type, positions in by_type.items():
            for start in range(0, len(positions), MAX_EVENTS_PER_CALL):
                chunk = positions[start:start + MAX_EVENTS_PER_CALL]
                calls.append(self._call(event_type, [prepared[i] for i in chunk], chunk))
        return PublishPlan(calls, len(prepared))

    def _call(self, event_type: str, events: list[PreparedEvent], positions: list[int]) -> ScriptCall:
        seq = next(self._seq)
        self._in_flight.add(seq)
        retention = self.retention.for_type(event_type)
        keys = self.keys
        args: list[bytes | str | int] = [
            seq, min(self._in_flight), retention.max_len, retention.max_age_ms,
            self.idempotency_window_ms, os.urandom(6).hex(), event_type, PRODUCER_RECORD_TTL_MS,
        ]
        # All events travel as one msgpack argument: far cheaper to send than 4 per event.
        # Packed without the bin type: Redis' cmsgpack (Lua) only reads the old raw type.
        args.append(msgpack.packb([
            (keys.idempotency(event_type, e.idempotency_key) if e.idempotency_key else "",
             e.payload, e.symbol, e.user)
            for e in events
        ], use_bin_type=False))
        return ScriptCall(
            seq,
            [keys.stream(event_type), keys.meta(event_type), keys.types(),
             keys.producer(event_type, self.producer_id)],
            args,
            positions,
        )

    def done(self, plan: PublishPlan) -> None:
        """The plan's calls are answered (or abandoned): their records may be forgotten."""
        for call in plan.calls:
            self._in_flight.discard(call.seq)
