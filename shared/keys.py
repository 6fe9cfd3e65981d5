"""Every Redis key Tickstream reads or writes, in one place, for every Redis topology.

The keys of one event type carry a **hash tag**, ``{<event_type>}``: Redis Cluster puts them in
one hash slot, so the publish script that touches a stream, its meta hash, idempotency keys,
producer records, fence and last-id hash runs on one node. An ingestor group's lease and token
counter share the group's tag, so one script acquires both. Single servers and Sentinel use the
same names.
With the default prefix ``tickstream``:

============================================  =========  ====================================
key                                           type       what it holds
============================================  =========  ====================================
``tickstream:{<event_type>}:stream``          stream     the events of one type; entry id =
                                                         the event's offset
``tickstream:{<event_type>}:meta``            hash       ``epoch`` (changes when the stream is
                                                         re-created), ``created`` (ms),
                                                         ``reserved`` (epoch set by a subscribe
                                                         before the first publish)
``tickstream:{<event_type>}:idem:<key>``      string     offset of the first publish with that
                                                         idempotency key (expires: window)
``tickstream:{<event_type>}:producer:<id>``   zset       results of one publisher's calls still
                                                         in flight (retry de-duplication)
``tickstream:{<event_type>}:fence``           hash       per ingestor group, the newest lease
                                                         token seen: an older one is refused
``tickstream:{<event_type>}:last``            hash       the last sequence id published per
                                                         sequence (``BTCUSDT`` -> aggregate trade
                                                         id, ``BTCUSDT:candle:1m`` -> open time
                                                         ms): where an ingestor resumes
``tickstream:ingestor:lease:{<group>}``       string     ``<token>:<node>`` of the ingestor
                                                         group's leader, TTL ``LEASE_TTL``
``tickstream:ingestor:token:{<group>}``       string     the group's lease token counter (INCR
                                                         at every acquisition)
``tickstream:types``                          set        every event type ever published
``tickstream:health:<component>:<node>``      string     JSON status, TTL a few heartbeats: a
                                                         container healthcheck reads it
============================================  =========  ====================================

The layout before hash tags (``tickstream:stream:<event_type>``, ``tickstream:meta:<type>``)
is named by :meth:`Keys.legacy_stream` and :meth:`Keys.legacy_meta`, for
``tickstream migrate-keys``.
"""

from __future__ import annotations

from dataclasses import dataclass

STREAM_SUFFIX = "}:stream"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "tickstream"

    def tag(self, event_type: str) -> str:
        """The part every key of ``event_type`` shares, hash tag included."""
        return f"{self.prefix}:{{{event_type}}}"

    def stream(self, event_type: str) -> str:
        return f"{self.prefix}:{{{event_type}}}:stream"

    def event_type_of(self, stream_key: str | bytes) -> str:
        """The event type of a key made by :meth:`stream`."""
        key = stream_key.decode() if isinstance(stream_key, bytes) else stream_key
        return key.removeprefix(self.prefix + ":{").removesuffix(STREAM_SUFFIX)

    def meta(self, event_type: str) -> str:
        return f"{self.prefix}:{{{event_type}}}:meta"

    def types(self) -> str:
        return f"{self.prefix}:types"

    def idempotency(self, event_type: str, key: str) -> str:
        return f"{self.prefix}:{{{event_type}}}:idem:{key}"

    def producer(self, event_type: str, producer_id: str) -> str:
        return f"{self.prefix}:{{{event_type}}}:producer:{producer_id}"

    def fence(self, event_type: str) -> str:
        """Per ingestor group, the newest lease token that published ``event_type``."""
        return f"{self.prefix}:{{{event_type}}}:fence"

    def last(self, event_type: str) -> str:
        """The last id published per sequence of ``event_type`` (written by the publish script)."""
        return f"{self.prefix}:{{{event_type}}}:last"

    def ingestor_lease(self, group: str) -> str:
        """The lease of an ingestor group (hash-tagged with the group, like its token)."""
        return f"{self.prefix}:ingestor:lease:{{{group}}}"

    def ingestor_token(self, group: str) -> str:
        return f"{self.prefix}:ingestor:token:{{{group}}}"

    def health(self, component: str, node: str) -> str:
        return f"{self.prefix}:health:{component}:{node}"

    # --- the layout of releases before hash tags, for migrate-keys ---------------------------

    def legacy_stream(self, event_type: str) -> str:
        return f"{self.prefix}:stream:{event_type}"

    def legacy_meta(self, event_type: str) -> str:
        return f"{self.prefix}:meta:{event_type}"
