"""The client protocol and the replay merge, sans I/O."""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import protocol as p
from gateway.recovery import can_recover, merge, position_before
from gateway.values import StreamState


@pytest.mark.parametrize(("frame", "code", "text"), [
    ("{nope", "bad_request", "not valid JSON"),
    ("[1,2]", "bad_request", "object with an 'op'"),
    ('{"op":"dance"}', "unknown_op", "unknown op 'dance'"),
    ('{"id":1}', "bad_request", "no 'op'"),
    ('{"op":"subscribe"}', "bad_request", "event_type"),
    ('{"op":"subscribe","event_type":"Price"}', "bad_request", "event_type"),
    ('{"op":"subscribe","event_type":"x","symbols":"BTCUSDT"}', "bad_request", "symbols"),
    ('{"op":"subscribe","event_type":"x","symbols":["BTC USDT"]}', "bad_request", "invalid symbol"),
    ('{"op":"subscribe","event_type":"x","since":"abc"}', "invalid_offset", "<ms>-<seq>"),
    ('{"op":"subscribe","event_type":"x","since":5}', "invalid_offset", "offset string"),
    ('{"op":"subscribe","event_type":"x","since":"1-0","last":3}', "bad_request", "not both"),
    ('{"op":"subscribe","event_type":"x","last":-1}', "bad_request", "'last'"),
    ('{"op":"subscribe","event_type":"x","last":true}', "bad_request", "'last'"),
    ('{"op":"auth"}', "bad_request", "token"),
    ('{"op":"ping","id":{"a":1}}', "bad_request", "'id'"),
])
def test_bad_messages_get_the_contract_error_code(frame: str, code: str, text: str) -> None:
    with pytest.raises(p.ClientError) as info:
        p.parse(frame, binary=False)
    assert info.value.code == code
    assert text in info.value.message


def test_error_keeps_the_message_id() -> None:
    with pytest.raises(p.ClientError) as info:
        p.parse('{"op":"subscribe","id":"a7","event_type":"x","since":"zz"}', binary=False)
    assert info.value.msg_id == "a7"


def test_subscribe_is_parsed_in_both_formats() -> None:
    obj = {"op": "subscribe", "id": 1, "event_type": "price_update", "symbols": ["btcusdt"],
           "since": "17-2", "epoch": "e1"}
    expected = p.Subscribe(1, "price_update", frozenset({"BTCUSDT"}), (17, 2), "e1", None)
    assert p.parse(orjson.dumps(obj).decode(), binary=False) == expected
    assert p.parse(msgpack.packb(obj), binary=True) == expected
    with pytest.raises(p.ClientError, match="not valid msgpack"):
        p.parse(b"\xc1\xff\x00", binary=True)


def test_batches_are_arrays_in_both_formats() -> None:
    json_items = [orjson.dumps({"n": i}) for i in range(3)]
    frame = p.JSON_WIRE.pack_batch(json_items)
    assert type(frame) is bytes  # frames stay bytes (sent as text on a JSON connection)
    assert orjson.loads(frame) == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert type(p.JSON_WIRE.encode({"type": "pong"})) is bytes
    for count in (2, 15, 16, 70000):
        items = [msgpack.packb({"n": i}) for i in range(count)]
        packed = p.MSGPACK_WIRE.pack_batch(items)
        assert type(packed) is bytes  # a binary frame
        assert msgpack.unpackb(packed) == [{"n": i} for i in range(count)]


@dataclass(frozen=True)
class Item:
    pos: tuple[int, int]


positions = st.tuples(st.integers(0, 50), st.integers(0, 3))


@given(st.lists(positions, unique=True), st.lists(positions, unique=True), positions)
def test_merge_delivers_each_offset_once_in_order(
    history: list[tuple[int, int]], live: list[tuple[int, int]], after: tuple[int, int]
) -> None:
    """History and live may overlap anywhere (the reader lags): each offset comes once, in order."""
    h = [Item(x) for x in sorted(history)]
    lv = [Item(x) for x in sorted(live)]
    out = [i.pos for i in merge(h, lv, after)]
    assert out == sorted(set(out)), "order or uniqueness broken"
    assert all(pos > after for pos in out)
    # Nothing newer than `after` is lost from history, nor anything newer than history's end.
    expected_history = [x for x in sorted(history) if x > after]
    assert out[: len(expected_history)] == expected_history
    tail_start = max([after, *expected_history])
    assert out[len(expected_history):] == [x for x in sorted(live) if x > tail_start]


def test_can_recover_rules() -> None:
    state = StreamState("e1", (100, 0), (200, 5))
    assert can_recover((150, 0), "e1", state)
    assert can_recover((150, 0), None, state)  # no epoch given: offsets alone decide
    assert not can_recover((150, 0), "other", state)
    assert can_recover((200, 5), "e1", state)  # saw the newest: nothing to replay
    assert not can_recover((300, 0), "e1", state)  # from a previous life of the stream
    assert not can_recover((50, 0), "e1", state)  # older than what is retained
    assert can_recover(position_before((100, 0)), "e1", state)  # right before the first: fine
    assert position_before((100, 0)) == (99, 2**64 - 1)
    empty = StreamState("e1", None, (200, 5))
    assert not can_recover((150, 0), "e1", empty)  # everything after it was trimmed
    assert can_recover((0, 0), None, StreamState("", None, (0, 0)))
    untouched = StreamState("e1", (100, 0), (200, 5), trimmed=False)
    assert can_recover((0, 0), "e1", untouched)  # "from the beginning" of a never-trimmed stream
    assert not can_recover((0, 0), "e1", state)
