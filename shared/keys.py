"""Every Redis key Tickstream reads or writes, in one place.

With the default prefix ``tickstream``:

============================================  =========  ====================================
key                                           type       what it holds
============================================  =========  ====================================
``tickstream:stream:<event_type>``            stream     the events of one type; entry id =
                                                         the event's offset
``tickstream:meta:<event_type>``              hash       ``epoch`` (changes when the stream is
                                                         re-created), ``created`` (ms)
``tickstream:types``                          set        every event type ever published
``tickstream:idem:<event_type>:<key>``        string     offset of the first publish with that
                                                         idempotency key (expires: window)
``tickstream:producer:<event_type>:<id>``     zset       results of one publisher's calls still
                                                         in flight (retry de-duplication)
``tickstream:health:<component>:<node>``      string     JSON status, TTL a few heartbeats: a
                                                         container healthcheck reads it
============================================  =========  ====================================

Redis Cluster is not supported: one script touches the stream, its meta hash and the type set.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "tickstream"

    def stream(self, event_type: str) -> str:
        return f"{self.prefix}:stream:{event_type}"

    def stream_prefix(self) -> str:
        return f"{self.prefix}:stream:"

    def event_type_of(self, stream_key: str | bytes) -> str:
        key = stream_key.decode() if isinstance(stream_key, bytes) else stream_key
        return key.removeprefix(self.stream_prefix())

    def meta(self, event_type: str) -> str:
        return f"{self.prefix}:meta:{event_type}"

    def types(self) -> str:
        return f"{self.prefix}:types"

    def idempotency(self, event_type: str, key: str) -> str:
        return f"{self.prefix}:idem:{event_type}:{key}"

    def producer(self, event_type: str, producer_id: str) -> str:
        return f"{self.prefix}:producer:{event_type}:{producer_id}"

    def health(self, component: str, node: str) -> str:
        return f"{self.prefix}:health:{component}:{node}"
