"""Which connections the shedder closes while the reader is behind, and when it closes none."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.shedding import Shedder


@dataclass
class Conn:
    name: str
    queued_bytes: int = 0
    messages_sent: int = 0
    closed: bool = False

    def shed(self) -> bool:
        if self.closed:
            return False
        self.closed = True
        return True


def test_nothing_is_shed_while_the_reader_keeps_up_or_when_shedding_is_off() -> None:
    conns = [Conn(str(i), queued_bytes=i) for i in range(10)]
    assert Shedder(after=3.0).tick(conns, behind_for=2.9) == 0
    assert Shedder(after=0.0).tick(conns, behind_for=1e6) == 0  # SHED_AFTER=0: never
    assert not any(c.closed for c in conns)


def test_the_costliest_few_go_first_and_at_least_one() -> None:
    conns = [Conn("idle"), Conn("busy", messages_sent=9_000), Conn("stuck", queued_bytes=50_000)]
    conns += [Conn(f"c{i}", messages_sent=i) for i in range(37)]  # 40 connections: 5% is 2
    shedder = Shedder(after=3.0)
    assert [c.name for c in shedder.pick(conns, behind_for=3.0)] == ["stuck", "busy"]
    assert shedder.tick(conns, behind_for=4.0) == 2 and shedder.shed_total == 2
    assert [c.name for c in conns if c.closed] == ["busy", "stuck"]
    fresh = [Conn("idle"), Conn("stuck", queued_bytes=1)]
    assert [c.name for c in Shedder(after=1.0).pick(fresh, 5.0)] == ["stuck"]  # ceil: one
    assert Shedder(after=1.0).pick([], 5.0) == []


def test_connections_already_closing_are_neither_picked_nor_counted() -> None:
    """A shed client stays listed until its close completes; its history must not make it the
    costliest again, and the next tick must close someone still open."""
    shed_one = Conn("shed", messages_sent=9_000, closed=True)
    conns = [shed_one, Conn("a", messages_sent=10), Conn("b", messages_sent=5)]
    shedder = Shedder(after=1.0)
    assert [c.name for c in shedder.pick(conns, 2.0)] == ["a"]
    assert shedder.tick(conns, 2.0) == 1 and shedder.shed_total == 1
    assert [c.name for c in conns if not c.closed] == ["b"]
