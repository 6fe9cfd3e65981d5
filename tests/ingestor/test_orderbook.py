"""The local order book: the sync procedure, every U/u edge case, gaps, pruning, and models."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestor.binance.messages import DepthSnapshot, DepthUpdate, Level
from ingestor.orderbook import Action, BookState, OrderBook

SYMBOL = "BNBBTC"


def diff(
    first: int, final: int, bids: tuple[Level, ...] = (), asks: tuple[Level, ...] = (), t: int = 0
) -> DepthUpdate:
    return DepthUpdate(SYMBOL, t or final, first, final, bids, asks)


def snapshot(
    last_update_id: int, bids: tuple[Level, ...] = (), asks: tuple[Level, ...] = ()
) -> DepthSnapshot:
    return DepthSnapshot(SYMBOL, last_update_id, bids, asks)


def book_as_dicts(book: OrderBook) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    bids, asks = book.top(10**9)
    return dict(bids), dict(asks)


def levels(book: OrderBook, n: int = 100) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The top as normalized decimal strings, for readable assertions."""
    bids, asks = book.top(n)
    return [(f"{p.normalize():f}", f"{q.normalize():f}") for p, q in bids], [
        (f"{p.normalize():f}", f"{q.normalize():f}") for p, q in asks
    ]


def synced_book(last_update_id: int = 100, **kwargs: int) -> OrderBook:
    book = OrderBook(SYMBOL, **kwargs)
    assert book.on_diff(diff(last_update_id, last_update_id)) is Action.FETCH_SNAPSHOT
    snap = snapshot(last_update_id, bids=(("10", "1"), ("9", "2")), asks=(("11", "1"), ("12", "2")))
    assert book.on_snapshot(snap) is Action.SYNCED
    return book


# -- the procedure, step by step -------------------------------------------------------------------


def test_first_diff_is_buffered_and_asks_for_a_snapshot_once() -> None:
    book = OrderBook(SYMBOL)
    states = [book.state]
    assert book.on_diff(diff(100, 105)) is Action.FETCH_SNAPSHOT
    states.append(book.state)
    assert states == [BookState.BUFFERING, BookState.WAITING_SNAPSHOT]
    assert book.on_diff(diff(106, 110)) is Action.NONE  # buffered; the snapshot is already asked for
    assert not book.synced
    assert book.last_update_id is None
    assert book.top(5) == ([], [])


def test_full_sync_drops_stale_buffered_diffs_and_applies_the_rest() -> None:
    book = OrderBook(SYMBOL)
    book.on_diff(diff(100, 105, bids=(("1", "99"),)))  # u <= L: already in the snapshot, dropped
    book.on_diff(diff(106, 110, bids=(("10", "5"),), t=1234))  # straddles L=107
    book.on_diff(diff(111, 115, asks=(("11", "0"), ("13", "4")), t=5678))
    action = book.on_snapshot(snapshot(107, bids=(("10", "1"), ("9", "2")), asks=(("11", "1"), ("12", "2"))))
    assert action is Action.SYNCED
    assert book.synced
    assert book.last_update_id == 115
    assert book.event_time_ms == 5678
    assert levels(book) == ([("10", "5"), ("9", "2")], [("12", "2"), ("13", "4")])


def test_snapshot_older_than_the_first_buffered_event_is_refetched() -> None:
    book = OrderBook(SYMBOL)
    book.on_diff(diff(100, 105))
    assert book.on_snapshot(snapshot(99)) is Action.FETCH_SNAPSHOT  # L < U: go back to step 2
    assert book.state is BookState.WAITING_SNAPSHOT
    assert book.on_diff(diff(106, 110)) is Action.NONE  # buffering goes on meanwhile
    assert book.on_snapshot(snapshot(100)) is Action.SYNCED  # L == U is not older
    assert book.last_update_id == 110


def test_first_diff_may_start_right_after_the_snapshot() -> None:
    """U == L + 1 is contiguous; the literal "L within [U; u]" would reject it forever."""
    book = OrderBook(SYMBOL)
    book.on_diff(diff(100, 105))
    book.on_diff(diff(106, 110, bids=(("5", "1"),)))
    assert book.on_snapshot(snapshot(105)) is Action.SYNCED
    assert book.last_update_id == 110
    assert levels(book)[0] == [("5", "1")]


def test_quiet_symbol_with_one_update_per_diff_syncs() -> None:
    book = OrderBook(SYMBOL)
    for uid in range(50, 60):
        book.on_diff(diff(uid, uid, asks=((str(uid), "1"),)))
    assert book.on_snapshot(snapshot(54, asks=(("54", "1"),))) is Action.SYNCED
    assert book.last_update_id == 59
    assert [p for p, _ in levels(book)[1]] == ["54", "55", "56", "57", "58", "59"]


def test_snapshot_newer_than_every_buffered_diff_syncs_and_checks_the_next_live_one() -> None:
    book = OrderBook(SYMBOL)
    book.on_diff(diff(100, 105))
    assert book.on_snapshot(snapshot(120, bids=(("1", "1"),))) is Action.SYNCED
    assert book.last_update_id == 120
    assert book.event_time_ms is None  # no diff applied yet: the caller stamps it
    assert book.on_diff(diff(106, 118)) is Action.NONE  # late and stale
    assert book.on_diff(diff(119, 125, bids=(("2", "1"),))) is Action.UPDATED  # covers 121
    assert book.last_update_id == 125


def test_snapshot_newer_than_the_buffer_then_a_hole_resyncs() -> None:
    book = OrderBook(SYMBOL)
    book.on_diff(diff(100, 105))
    book.on_snapshot(snapshot(120))
    assert book.on_diff(diff(122, 125)) is Action.RESYNC  # 121 was never seen
    assert not book.synced


# -- live updates ----------------------------------------------------------------------------------


def test_live_diffs_set_absolute_quantities_and_zero_removes() -> None:
    book = synced_book(100)
    assert book.on_diff(diff(101, 101, bids=(("10", "7"), ("9", "0"), ("8.5", "3")))) is Action.UPDATED
    assert book.on_diff(diff(102, 102, asks=(("11", "0"), ("50", "0")))) is Action.UPDATED  # 50: absent, fine
    assert levels(book) == ([("10", "7"), ("8.5", "3")], [("12", "2")])


@pytest.mark.parametrize(("first", "final"), [(90, 99), (95, 100), (100, 100)])
def test_stale_live_diffs_are_ignored(first: int, final: int) -> None:
    book = synced_book(100)
    before = book_as_dicts(book)
    assert book.on_diff(diff(first, final, bids=(("10", "0"),))) is Action.NONE
    assert book_as_dicts(book) == before
    assert book.last_update_id == 100


def test_overlapping_live_diff_is_applied() -> None:
    book = synced_book(100)
    assert book.on_diff(diff(98, 103, bids=(("10", "4"),))) is Action.UPDATED  # U <= id+1 <= u
    assert book.last_update_id == 103


def test_gap_discards_the_book_and_rebuffers_from_the_gap_event() -> None:
    book = synced_book(100)
    assert book.on_diff(diff(103, 105, bids=(("10", "4"),))) is Action.RESYNC
    assert book.resyncs == 1
    assert book.state is BookState.WAITING_SNAPSHOT
    assert book.top(10) == ([], [])  # nothing stale is served while resyncing
    assert book.on_snapshot(snapshot(102)) is Action.FETCH_SNAPSHOT  # older than the gap event
    assert book.on_snapshot(snapshot(104, bids=(("7", "1"),))) is Action.SYNCED
    assert book.last_update_id == 105
    assert levels(book) == ([("10", "4"), ("7", "1")], [])


def test_gap_on_one_book_leaves_other_symbols_alone() -> None:
    btc, eth = synced_book(100), synced_book(100)
    btc.symbol = "BTCUSDT"  # two independent books
    assert eth.on_diff(diff(150, 151)) is Action.RESYNC
    assert btc.synced
    assert btc.on_diff(DepthUpdate("BTCUSDT", 1, 101, 101, (), ())) is Action.UPDATED


# -- buffering -------------------------------------------------------------------------------------


def test_late_duplicate_buffered_diffs_are_ignored() -> None:
    """E.g. the old connection of a rotation delivering what the new one already did."""
    book = OrderBook(SYMBOL)
    book.on_diff(diff(100, 105, bids=(("1", "1"),)))
    book.on_diff(diff(106, 106, bids=(("1", "0"),)))
    assert book.on_diff(diff(100, 105, bids=(("1", "1"),))) is Action.NONE
    book.on_snapshot(snapshot(100))
    assert book.last_update_id == 106
    assert levels(book) == ([], [])  # the removal is not undone by the late duplicate


def test_buffer_overflow_restarts_buffering_from_the_newest_diff() -> None:
    book = OrderBook(SYMBOL, max_buffer=3)
    for first in (100, 101, 102):
        book.on_diff(diff(first, first))
    assert book.on_diff(diff(103, 104, asks=(("5", "1"),))) is Action.NONE
    assert book.buffer_restarts == 1
    assert book.on_snapshot(snapshot(102)) is Action.FETCH_SNAPSHOT  # L < first buffered U
    assert book.on_snapshot(snapshot(103)) is Action.SYNCED
    assert book.last_update_id == 104
    assert levels(book)[1] == [("5", "1")]


def test_hole_inside_the_buffer_restarts_buffering() -> None:
    book = OrderBook(SYMBOL)
    book.on_diff(diff(100, 105))
    book.on_diff(diff(108, 110))  # 106..107 missing
    assert book.buffer_restarts == 1
    assert book.on_snapshot(snapshot(106)) is Action.FETCH_SNAPSHOT
    assert book.on_snapshot(snapshot(108)) is Action.SYNCED


def test_failed_snapshot_is_asked_for_again_only_while_waiting() -> None:
    book = OrderBook(SYMBOL)
    assert book.on_snapshot_failed() is Action.NONE
    book.on_diff(diff(1, 2))
    assert book.on_snapshot_failed() is Action.FETCH_SNAPSHOT


def test_unsolicited_snapshot_is_ignored() -> None:
    book = OrderBook(SYMBOL)
    assert book.on_snapshot(snapshot(5)) is Action.NONE
    assert book.state is BookState.BUFFERING
    book = synced_book(100)
    before = book_as_dicts(book)
    assert book.on_snapshot(snapshot(500, bids=(("1", "1"),))) is Action.NONE
    assert book_as_dicts(book) == before


def test_reset_starts_over() -> None:
    book = synced_book(100)
    book.reset()
    assert (book.state, book.last_update_id, book.top(1)) == (BookState.BUFFERING, None, ([], []))
    assert book.on_diff(diff(500, 501)) is Action.FETCH_SNAPSHOT


def test_another_symbols_data_is_a_programming_error() -> None:
    book = OrderBook(SYMBOL)
    with pytest.raises(ValueError, match="ETHBTC"):
        book.on_diff(DepthUpdate("ETHBTC", 1, 1, 1, (), ()))
    with pytest.raises(ValueError, match="ETHBTC"):
        book.on_snapshot(DepthSnapshot("ETHBTC", 1, (), ()))


# -- reading the book --------------------------------------------------------------------------------


def test_top_is_best_first_and_padding_does_not_split_levels() -> None:
    book = OrderBook(SYMBOL)
    book.on_diff(diff(1, 1))
    book.on_snapshot(
        snapshot(
            1,
            bids=(("9.5", "1"), ("10.10", "1"), ("2", "1"), ("10.1000", "3")),
            asks=(("100", "1"), ("11", "1"), ("10.2", "1")),
        )
    )
    book.on_diff(diff(2, 2, bids=(("10.100000", "4"),), asks=(("10.20", "0"),)))
    assert levels(book, 2) == ([("10.1", "4"), ("9.5", "1")], [("11", "1"), ("100", "1")])
    assert book.depth() == (3, 2)
    assert book.top(0) == ([], [])


def test_zero_quantity_levels_in_a_snapshot_are_not_levels() -> None:
    book = OrderBook(SYMBOL)
    book.on_diff(diff(1, 1))
    book.on_snapshot(snapshot(1, bids=(("1", "0"), ("2", "0.000")), asks=(("3", "1"),)))
    assert book.depth() == (0, 1)


def test_pruning_keeps_the_best_levels_of_each_side() -> None:
    book = OrderBook(SYMBOL, max_levels=3)
    book.on_diff(diff(1, 1))
    book.on_snapshot(
        snapshot(
            1,
            bids=tuple((str(p), "1") for p in range(1, 8)),
            asks=tuple((str(p), "1") for p in range(10, 17)),
        )
    )
    assert levels(book) == ([("7", "1"), ("6", "1"), ("5", "1")], [("10", "1"), ("11", "1"), ("12", "1")])
    book.on_diff(diff(2, 2, bids=(("8", "1"),), asks=(("9", "1"), ("50", "1"))))
    assert levels(book) == ([("8", "1"), ("7", "1"), ("6", "1")], [("9", "1"), ("10", "1"), ("11", "1")])
    book.on_diff(diff(3, 3, bids=(("8", "0"),)))  # a hole opens at the top; the far end stays cut
    assert levels(book)[0] == [("7", "1"), ("6", "1")]


# -- models ------------------------------------------------------------------------------------------

prices = st.integers(min_value=1, max_value=40).map(lambda p: f"{p / 4:.2f}")
quantities = st.sampled_from(["0", "0", "0.5", "1", "2.00", "17"])
level_lists = st.lists(st.tuples(prices, quantities), max_size=6).map(tuple)


@given(st.lists(st.tuples(level_lists, level_lists), max_size=40), st.integers(min_value=1, max_value=12))
def test_book_matches_a_naive_model(
    updates: list[tuple[tuple[Level, ...], tuple[Level, ...]]], max_levels: int
) -> None:
    book = OrderBook(SYMBOL, max_levels=max_levels)
    book.on_diff(diff(1, 1))
    book.on_snapshot(snapshot(1))
    model: dict[bool, dict[Decimal, Decimal]] = {True: {}, False: {}}
    for uid, (bids, asks) in enumerate(updates, start=2):
        assert book.on_diff(diff(uid, uid, bids, asks)) is Action.UPDATED
        for is_bid, side_levels in ((True, bids), (False, asks)):
            side = model[is_bid]
            for price, qty in side_levels:
                if Decimal(qty):
                    side[Decimal(price)] = Decimal(qty)
                else:
                    side.pop(Decimal(price), None)
            kept = sorted(side, reverse=is_bid)[:max_levels]
            model[is_bid] = {p: side[p] for p in kept}
        expected_bids = sorted(model[True].items(), reverse=True)
        expected_asks = sorted(model[False].items())
        assert book.top(max_levels + 5) == (expected_bids, expected_asks)


Book = tuple[dict[str, Decimal], dict[str, Decimal]]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**32),
    st.integers(min_value=10, max_value=400),
    st.sampled_from([0.0, 0.02, 0.1]),
    st.integers(min_value=1, max_value=40),
)
def test_book_equals_the_exchange_whenever_it_says_synced(
    seed: int, n_updates: int, fault_rate: float, max_buffer: int
) -> None:
    """Simulate an exchange, a lossy and duplicating stream, and snapshots of any age.

    Whenever the book says it is synced, it must equal the exchange's book at its update id;
    and a waiting book must always sync from a snapshot of the latest state. (A seeded Random
    drives the long scenarios: hypothesis-drawn choices would cost far more than the test.)
    """
    rnd = random.Random(seed)
    price_grid = [f"{p / 4:.2f}" for p in range(1, 41)]
    state: Book = ({}, {})
    truth: dict[int, Book] = {0: ({}, {})}
    changes: list[tuple[int, str, str]] = []
    for uid in range(1, n_updates + 1):
        side, price, qty = (
            rnd.randrange(2),
            rnd.choice(price_grid),
            rnd.choice(["0", "0", "0.5", "1", "2.00"]),
        )
        if Decimal(qty):
            state[side][price] = Decimal(qty)
        else:
            state[side].pop(price, None)
        changes.append((side, price, qty))
        truth[uid] = (dict(state[0]), dict(state[1]))

    def snap_at(uid: int) -> DepthSnapshot:
        bids, asks = truth[uid]
        return snapshot(
            uid, tuple((p, str(q)) for p, q in bids.items()), tuple((p, str(q)) for p, q in asks.items())
        )

    def check() -> None:
        if book.synced:
            assert book.last_update_id is not None
            bids, asks = book_as_dicts(book)
            expected_bids, expected_asks = truth[book.last_update_id]
            assert bids == {Decimal(p): q for p, q in expected_bids.items()}
            assert asks == {Decimal(p): q for p, q in expected_asks.items()}

    book = OrderBook(SYMBOL, max_buffer=max_buffer)
    waiting = False
    synced_at_least_once = False
    sent: list[DepthUpdate] = []
    uid = 1
    while uid <= n_updates:
        final = min(n_updates, uid + rnd.choice([0, 0, 1, 2, 5]))
        touched: list[dict[str, str]] = [{}, {}]
        for side, price, qty in changes[uid - 1 : final]:
            touched[side][price] = qty  # within one event, the last value of a level wins
        event = diff(uid, final, tuple(touched[0].items()), tuple(touched[1].items()))
        uid = final + 1
        roll = rnd.random()
        if roll < fault_rate:
            deliveries = []  # lost
        elif roll < 2 * fault_rate:
            deliveries = [event, rnd.choice([*sent[-5:], event])]  # duplicate, possibly late
        else:
            deliveries = [event]
        sent.append(event)
        for delivered in deliveries:
            action = book.on_diff(delivered)
            waiting = waiting or action in (Action.FETCH_SNAPSHOT, Action.RESYNC)
            check()
        if waiting and rnd.random() < 0.3:  # the snapshot arrives, taken a little while ago
            taken_at = max(0, final - rnd.choice([0, 0, 1, 3, 10]))
            action = book.on_snapshot(snap_at(taken_at))
            assert action in (Action.SYNCED, Action.FETCH_SNAPSHOT)
            waiting = action is Action.FETCH_SNAPSHOT
            synced_at_least_once = synced_at_least_once or action is Action.SYNCED
            check()

    if waiting:
        assert book.on_snapshot(snap_at(n_updates)) is Action.SYNCED
        check()
    if fault_rate == 0.0 and synced_at_least_once:
        assert book.resyncs == 0  # a clean stream never looks gappy
