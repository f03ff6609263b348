"""A shard's life (esm.shard_life): every transition, allowed and refused, and where a listed
shard stands. Pure: no I/O, no event loop."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from esm.shard_life import (
    ENDS,
    LIVE,
    SHARD_END,
    TRANSITIONS,
    ImpossibleTransition,
    ShardEvent,
    ShardState,
    advance,
    is_live,
    ready,
    standing,
    standings,
)

S, E = ShardState, ShardEvent

# The specification, written out pair by pair (not derived from the module's table).
ALLOWED: dict[tuple[ShardState, ShardEvent], ShardState] = {
    (S.WAITING_ON_PARENTS, E.PARENTS_FINISHED): S.READY,
    (S.READY, E.LEASE_REFUSED): S.LEASED_ELSEWHERE,
    (S.READY, E.LEASED): S.STARTING,
    (S.LEASED_ELSEWHERE, E.LEASED): S.STARTING,
    (S.STARTING, E.CHECKPOINT_READ): S.PROCESSING,
    (S.STARTING, E.FOUND_SHARD_END): S.SHARD_ENDED,
    (S.STARTING, E.STORE_UNAVAILABLE): S.STOPPED,
    (S.STARTING, E.STOP_REQUESTED): S.STOPPING,
    (S.STARTING, E.LEASE_LOST): S.LEASE_LOST,
    (S.STARTING, E.ABORTED): S.STOPPED,
    (S.PROCESSING, E.ITERATOR_EXPIRED): S.PROCESSING,
    (S.PROCESSING, E.READ_FAILED): S.PROCESSING,
    (S.PROCESSING, E.READ_TO_END): S.DRAINING,
    (S.PROCESSING, E.STOP_REQUESTED): S.STOPPING,
    (S.PROCESSING, E.LEASE_LOST): S.LEASE_LOST,
    (S.PROCESSING, E.ABORTED): S.STOPPED,
    (S.DRAINING, E.SHARD_END_SAVED): S.SHARD_ENDED,
    (S.DRAINING, E.LOOPS_ENDED): S.STOPPED,
    (S.DRAINING, E.STOP_REQUESTED): S.STOPPING,
    (S.DRAINING, E.LEASE_LOST): S.LEASE_LOST,
    (S.DRAINING, E.ABORTED): S.STOPPED,
    (S.STOPPING, E.CHECKPOINT_READ): S.STOPPING,
    (S.STOPPING, E.FOUND_SHARD_END): S.SHARD_ENDED,
    (S.STOPPING, E.STORE_UNAVAILABLE): S.STOPPED,
    (S.STOPPING, E.ITERATOR_EXPIRED): S.STOPPING,
    (S.STOPPING, E.READ_FAILED): S.STOPPING,
    (S.STOPPING, E.READ_TO_END): S.STOPPING,
    (S.STOPPING, E.STOP_REQUESTED): S.STOPPING,
    (S.STOPPING, E.LOOPS_ENDED): S.STOPPED,
    (S.STOPPING, E.SHARD_END_SAVED): S.SHARD_ENDED,
    (S.STOPPING, E.LEASE_LOST): S.LEASE_LOST,
    (S.STOPPING, E.ABORTED): S.STOPPED,
}
ALL_PAIRS = list(itertools.product(ShardState, ShardEvent))
REFUSED = [pair for pair in ALL_PAIRS if pair not in ALLOWED]


def test_the_module_table_is_the_specification() -> None:
    assert dict(TRANSITIONS) == ALLOWED


@pytest.mark.parametrize(("state", "event"), list(ALLOWED), ids=lambda x: str(x))
def test_allowed_transition(state: ShardState, event: ShardEvent) -> None:
    assert advance(state, event) is ALLOWED[state, event]


@pytest.mark.parametrize(("state", "event"), REFUSED, ids=lambda x: str(x))
def test_refused_transition(state: ShardState, event: ShardEvent) -> None:
    with pytest.raises(ImpossibleTransition) as caught:
        advance(state, event)
    assert caught.value.state is state and caught.value.event is event
    assert str(caught.value) == f"a shard in {state} cannot take '{event}'"


def test_ends_take_no_event_and_live_states_can_always_be_lost_stopped_or_aborted() -> None:
    assert ENDS == {S.SHARD_ENDED, S.LEASE_LOST, S.STOPPED}
    assert LIVE == {S.STARTING, S.PROCESSING, S.DRAINING, S.STOPPING}
    for end in ENDS:
        assert not is_live(end)
        assert all((end, ev) in REFUSED for ev in ShardEvent)
    for state in LIVE:
        assert is_live(state)
        assert advance(state, E.LEASE_LOST) is S.LEASE_LOST
        assert advance(state, E.ABORTED) is S.STOPPED
        assert advance(state, E.STOP_REQUESTED) is S.STOPPING


def test_every_life_here_ends_in_one_of_the_ends() -> None:
    """From Starting, every path through the table reaches an end (no live state is a trap)."""
    seen: set[ShardState] = set()
    todo = [S.STARTING]
    while todo:
        state = todo.pop()
        if state in seen:
            continue
        seen.add(state)
        todo += [after for (before, _), after in ALLOWED.items() if before is state]
    assert seen == LIVE | ENDS
    for state in LIVE:
        assert any(ALLOWED.get((state, ev)) in ENDS for ev in ShardEvent)


def test_the_lives_the_consumer_lives() -> None:
    def walk(*events: ShardEvent) -> ShardState:
        state = S.READY
        for ev in events:
            state = advance(state, ev)
        return state

    # read a closed shard to its end: children may start
    assert (
        walk(E.LEASED, E.CHECKPOINT_READ, E.ITERATOR_EXPIRED, E.READ_TO_END, E.SHARD_END_SAVED)
        is S.SHARD_ENDED
    )
    # a daemon that had finished it died before the poller saw: the next owner finds SHARD_END
    assert walk(E.LEASED, E.FOUND_SHARD_END) is S.SHARD_ENDED
    # handed back past the fair share while the reader was in a read that then failed
    assert (
        walk(E.LEASED, E.CHECKPOINT_READ, E.STOP_REQUESTED, E.READ_FAILED, E.LOOPS_ENDED)
        is S.STOPPED
    )
    # a stop asked before the checkpoint was read
    assert walk(E.LEASED, E.STOP_REQUESTED, E.CHECKPOINT_READ, E.LOOPS_ENDED) is S.STOPPED
    # read to its end, then asked to stop: no SHARD_END (the batches left are the next owner's)
    assert (
        walk(E.LEASED, E.CHECKPOINT_READ, E.READ_TO_END, E.STOP_REQUESTED, E.LOOPS_ENDED)
        is S.STOPPED
    )
    # asked to stop while SHARD_END was being written: the shard ended all the same
    assert (
        walk(E.LEASED, E.CHECKPOINT_READ, E.READ_TO_END, E.STOP_REQUESTED, E.SHARD_END_SAVED)
        is S.SHARD_ENDED
    )
    # the renewal was refused
    assert walk(E.LEASED, E.CHECKPOINT_READ, E.LEASE_LOST) is S.LEASE_LOST
    # nothing is read before the checkpoint, nothing after the end
    with pytest.raises(ImpossibleTransition):
        walk(E.LEASED, E.READ_TO_END)
    with pytest.raises(ImpossibleTransition):
        walk(E.LEASED, E.CHECKPOINT_READ, E.READ_TO_END, E.READ_FAILED)
    with pytest.raises(ImpossibleTransition):
        walk(E.LEASED, E.CHECKPOINT_READ, E.LEASE_LOST, E.STOP_REQUESTED)


# -- where a listed shard stands -------------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    shard_id: str
    parent_ids: tuple[str, ...] = ()


P, Q = Listed("p"), Listed("q")
SPLIT_A, SPLIT_B = Listed("a", ("p",)), Listed("b", ("p",))
MERGED = Listed("m", ("p", "q"))


@pytest.mark.parametrize(
    ("shards", "checkpoints", "expected"),
    [
        ([P], {}, {"p": S.READY}),
        ([P], {"p": "49"}, {"p": S.READY}),
        ([P], {"p": SHARD_END}, {"p": S.SHARD_ENDED}),
        # a split: children wait while their parent is read, start once it is at SHARD_END
        (
            [P, SPLIT_A, SPLIT_B],
            {"p": "49"},
            {"p": S.READY, "a": S.WAITING_ON_PARENTS, "b": S.WAITING_ON_PARENTS},
        ),
        ([P, SPLIT_A, SPLIT_B], {"p": SHARD_END}, {"p": S.SHARD_ENDED, "a": S.READY, "b": S.READY}),
        # a parent trimmed from the stream counts as finished
        ([SPLIT_A], {}, {"a": S.READY}),
        # a merge waits for both parents
        (
            [P, Q, MERGED],
            {"p": SHARD_END, "q": "7"},
            {"p": S.SHARD_ENDED, "q": S.READY, "m": S.WAITING_ON_PARENTS},
        ),
        ([Q, MERGED], {"q": SHARD_END}, {"q": S.SHARD_ENDED, "m": S.READY}),
        # the store lost the parent's SHARD_END: the parent is read again, the child waits again
        ([P, SPLIT_A], {"a": "12"}, {"p": S.READY, "a": S.WAITING_ON_PARENTS}),
    ],
)
def test_standing(
    shards: list[Listed], checkpoints: dict[str, str], expected: dict[str, ShardState]
) -> None:
    assert standings(shards, checkpoints) == expected


def test_ready_is_sorted_and_only_ready() -> None:
    states = {"c": S.READY, "a": S.READY, "b": S.WAITING_ON_PARENTS, "d": S.SHARD_ENDED}
    assert ready(states) == ["a", "c"]


def test_a_parent_finishing_moves_its_child_as_the_table_says() -> None:
    before = standing(SPLIT_A, {"p", "a"}, {"p": "49"})
    after = standing(SPLIT_A, {"p", "a"}, {"p": SHARD_END})
    assert advance(before, E.PARENTS_FINISHED) is after
