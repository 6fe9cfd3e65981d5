"""Who listens to which stream, and the one-time encoding of each event.

A published :class:`Event` is encoded at most once per wire form (raw or combined,
milliseconds or microseconds), whatever the number of subscribers.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

_TIME_KEYS = ("E", "T", "O", "C")


class Subscriber(Protocol):
    def deliver(self, event: Event) -> None: ...


def to_microseconds(payload: Any) -> Any:
    """A copy of a payload with its timestamps in microseconds (``timeUnit=MICROSECOND``)."""
    if isinstance(payload, list):
        return [to_microseconds(p) for p in payload]
    if not isinstance(payload, dict):
        return payload
    out = dict(payload)
    for key in _TIME_KEYS:
        value = out.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            out[key] = value * 1000
    k = out.get("k")
    if isinstance(k, dict):
        out["k"] = {**k, "t": k["t"] * 1000, "T": k["T"] * 1000}
    return out


class Event:
    """One payload on one stream, with its encodings computed on demand."""

    __slots__ = ("_forms", "payload", "stream")

    def __init__(self, stream: str, payload: Any = None, raw: bytes | None = None) -> None:
        self.stream = stream
        self._forms: dict[tuple[bool, bool], bytes] = {}
        if raw is not None:
            self._forms[(False, False)] = raw
            payload = None
        self.payload = payload

    def data(self) -> Any:
        if self.payload is None:
            self.payload = orjson.loads(self._forms[(False, False)])
        return self.payload

    def encode(self, combined: bool, micro: bool = False) -> bytes:
        key = (combined, micro)
        form = self._forms.get(key)
        if form is None:
            if combined:
                inner = self.encode(False, micro)
                form = b'{"stream":' + orjson.dumps(self.stream) + b',"data":' + inner + b"}"
            elif micro:
                form = orjson.dumps(to_microseconds(self.data()))
            else:
                form = orjson.dumps(self.data())
            self._forms[key] = form
        return form


class Hub:
    """Stream name -> subscribers."""

    def __init__(self) -> None:
        self._subs: dict[str, dict[Subscriber, None]] = {}

    def subscribe(self, stream: str, sub: Subscriber) -> None:
        self._subs.setdefault(stream, {})[sub] = None

    def unsubscribe(self, stream: str, sub: Subscriber) -> None:
        subs = self._subs.get(stream)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del self._subs[stream]

    def has(self, stream: str) -> bool:
        return stream in self._subs

    def streams(self) -> list[str]:
        return list(self._subs)

    def publish(self, stream: str, payload: Any) -> None:
        subs = self._subs.get(stream)
        if subs:
            self.publish_event(Event(stream, payload))

    def publish_event(self, event: Event) -> None:
        subs = self._subs.get(event.stream)
        if subs:
            for sub in list(subs):
                sub.deliver(event)
