"""SQS concurrency scaling (docs/semantics.md §3.7) and what a batch outcome deletes
(docs/semantics.md §3.3)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from esm.partial import AllSucceeded, BatchFailed, ItemsFailed
from esm.queues import settle
from esm.scaling import SqsScaler


def test_starts_at_five_and_grows_by_five_a_second_while_receives_come_back_full() -> None:
    s = SqsScaler(ceiling=1250, last_up=0.0)
    assert s.target == 5
    assert s.on_receive(10, 10, now=0.5) == 5  # five for the first second
    assert s.on_receive(10, 10, now=1.0) == 10
    assert s.on_receive(10, 10, now=1.5) == 10  # at most one step a second
    assert s.on_receive(10, 10, now=2.0) == 15
    assert s.on_receive(3, 10, now=5.0) == 15  # a partial receive: no backlog, no growth


def test_stops_at_maximum_concurrency_and_shrinks_to_five_when_empty() -> None:
    s = SqsScaler(ceiling=12, last_up=-1.0)
    for t in range(10):
        s.on_receive(10, 10, now=float(t))
    assert s.target == 12
    for _ in range(20):
        s.on_receive(0, 10, now=100.0)
    assert s.target == 5


def test_without_maximum_concurrency_an_idle_queue_keeps_two_and_jumps_back_to_five() -> None:
    s = SqsScaler(ceiling=1250, last_up=0.0, capped=False)
    assert s.target == 5  # starts at five
    for _ in range(10):
        s.on_receive(0, 10, now=1.0)
    assert s.target == 2  # as low as 2 (docs/semantics.md §3.7)
    assert s.on_receive(1, 10, now=2.0) == 5  # messages appeared: five at once
    assert s.on_receive(10, 10, now=3.0) == 10  # then grows as usual


def test_a_ceiling_below_five_is_also_the_floor() -> None:
    s = SqsScaler(ceiling=2, last_up=-1.0)
    assert s.target == 2
    s.on_receive(10, 10, now=0.0)
    assert s.target == 2


@dataclass
class Msg:
    item_id: str
    key: str | None = None


BATCH = [Msg("a", "g1"), Msg("b", "g2"), Msg("c", "g1"), Msg("d", "g2"), Msg("e", "g1")]


def ids(ms: list[Msg]) -> list[str]:
    return [m.item_id for m in ms]


@pytest.mark.parametrize("fifo", [False, True])
def test_success_deletes_all_and_failure_deletes_none(fifo: bool) -> None:
    ok = settle(AllSucceeded(), BATCH, fifo=fifo)
    assert ids(ok.delete) == ["a", "b", "c", "d", "e"] and ok.keep == [] and ok.verdict == "ok"
    for result in (None, BatchFailed("bad")):
        failed = settle(result, BATCH, fifo=fifo)
        assert failed.delete == [] and ids(failed.keep) == ids(BATCH)
        assert failed.verdict == "failed"


def test_partial_on_a_standard_queue_keeps_exactly_the_reported() -> None:
    s = settle(ItemsFailed(("c",)), BATCH, fifo=False)
    assert ids(s.keep) == ["c"]
    assert ids(s.delete) == ["a", "b", "d", "e"]


def test_partial_on_fifo_stops_the_group_at_its_first_failure() -> None:
    s = settle(ItemsFailed(("c",)), BATCH, fifo=True)
    assert ids(s.keep) == ["c", "e"]  # e is g1, after c
    assert ids(s.delete) == ["a", "b", "d"]
