"""Entries round-trip through Redis' encoding and the client frames carry the same data."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.codec import decode_entry, event_json, event_message, event_msgpack
from shared.errors import CodecError
from shared.events import Event, prepare

json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=6)


def _entry(data: dict[str, Any], symbol: str | None = None, user: str | None = None) -> Any:
    prepared = prepare(Event("custom", data, symbol=symbol, user=user))
    fields = {b"d": prepared.payload, b"s": prepared.symbol.encode(), b"u": prepared.user.encode()}
    return decode_entry("custom", b"1732612345678-7", fields)


@given(json_objects)
def test_payload_round_trips(data: dict[str, Any]) -> None:
    assert _entry(data).data() == data


@given(json_objects, st.sampled_from([None, "BTCUSDT"]))
def test_json_and_msgpack_frames_carry_the_same_message(data: dict[str, Any], symbol: str | None) -> None:
    entry = _entry(data, symbol)
    expected = event_message(entry, data)
    assert orjson.loads(event_json(entry)) == expected
    assert msgpack.unpackb(event_msgpack(entry), raw=False, strict_map_key=False) == expected


def test_entry_fields_and_timestamp() -> None:
    entry = _entry({"a": 1}, "ethusdt", "alice")
    assert (entry.symbol, entry.user) == ("ETHUSDT", "alice")
    assert (entry.offset, entry.ts) == ("1732612345678-7", 1732612345678)
    message = orjson.loads(event_json(entry))
    assert message == {"event_type": "custom", "offset": "1732612345678-7", "symbol": "ETHUSDT",
                       "ts": 1732612345678, "data": {"a": 1}}


def test_json_payload_written_by_another_language_is_read() -> None:
    entry = decode_entry("custom", b"1-0", {b"j": b'{"x": [1, 2]}', b"s": b"", b"u": b""})
    assert entry.data() == {"x": [1, 2]}
    assert msgpack.unpackb(event_msgpack(entry), raw=False)["data"] == {"x": [1, 2]}


def test_broken_entries_raise_codec_error() -> None:
    with pytest.raises(CodecError, match="no 'd' or 'j'"):
        decode_entry("custom", b"1-0", {b"s": b""})
    with pytest.raises(CodecError, match="undecodable"):
        decode_entry("custom", b"1-0", {b"d": b"\xc1"}).data()
    with pytest.raises(CodecError, match="not a map"):
        decode_entry("custom", b"1-0", {b"d": msgpack.packb([1])}).data()
