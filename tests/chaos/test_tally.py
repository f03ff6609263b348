"""The chaos suite's counting (tests/chaos/tally.py) on hand-made cases."""

from __future__ import annotations

import pytest

from tests.chaos.tally import count

pytestmark = pytest.mark.chaos

SENT = [("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3"), ("b", "b2")]


def test_everything_once_in_order_per_key() -> None:
    t = count("s", SENT, [("b", "b1"), ("a", "a1"), ("a", "a2"), ("b", "b2"), ("a", "a3")])
    assert (t.lost, t.duplicated, t.out_of_order, t.unexpected) == (0, 0, 0, 0)
    assert t.line() == "chaos s: sent=5 delivered=5 lost=0 duplicated=0 out_of_order=0"


def test_a_replay_is_duplicates_not_disorder() -> None:
    # a2 and a3 delivered, then the daemon died before its checkpoint: read again from a2
    t = count("s", SENT, [("a", "a1"), ("a", "a2"), ("a", "a3"), ("a", "a2"), ("a", "a3")])
    assert (t.lost, t.duplicated, t.out_of_order) == (2, 2, 0)
    assert t.lost_ids == ("b1", "b2")


def test_a_gap_filled_later_is_out_of_order() -> None:
    t = count("s", SENT, [("a", "a1"), ("a", "a3"), ("a", "a2"), ("b", "b2"), ("b", "b1")])
    assert (t.lost, t.duplicated, t.out_of_order) == (0, 0, 2)


def test_excused_ids_are_not_lost_and_strangers_are_counted() -> None:
    t = count(
        "s",
        SENT,
        [("a", "a1"), ("a", "a2"), ("x", "zz"), ("b", "b2")],
        excused={"a3", "b1"},
        kills=3,
    )
    assert (t.lost, t.excused, t.unexpected, t.out_of_order) == (0, 2, 1, 0)
    assert t.line().endswith("unexpected=1 excused=2 kills=3")
