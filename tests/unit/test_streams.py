"""Stream failure rules (docs/semantics.md §6), checkpoints, lanes and tumbling windows. Pure."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from esm.partial import AllSucceeded, BatchFailed, ItemsFailed
from esm.streams import (
    Attempt,
    Backoff,
    CheckpointTracker,
    Discard,
    Response,
    Settle,
    StreamPolicy,
    Window,
    after_invoke,
    before_invoke,
    lane_of,
    parse_window_state,
    window_of,
)


@dataclass(frozen=True)
class Rec:
    item_id: str
    arrival: float = 0.0


def recs(*seqs: int, arrival: float = 0.0) -> tuple[Rec, ...]:
    return tuple(Rec(str(s), arrival) for s in seqs)


ERR = Response(function_error="Unhandled")


def ids(records: tuple[Rec, ...]) -> list[int]:
    return [int(r.item_id) for r in records]


def test_success_settles_every_record() -> None:
    att = Attempt(recs(1, 2, 3))
    d = after_invoke(
        att, invoked=True, response=Response(), result=AllSucceeded(), policy=StreamPolicy()
    )
    assert isinstance(d, Settle) and ids(d.done) == [1, 2, 3] and d.then == ()


def test_function_error_retries_the_same_batch_until_maximum_retry_attempts() -> None:
    policy = StreamPolicy(maximum_retry_attempts=2)
    att = Attempt(recs(1, 2))
    for expected_retries in (1, 2):
        d = after_invoke(att, invoked=True, response=ERR, result=None, policy=policy)
        assert isinstance(d, Settle) and d.done == ()
        (att,) = d.then
        assert att.retries == expected_retries and ids(att.records) == [1, 2]
        assert d.delay_s > 0
    d = after_invoke(att, invoked=True, response=ERR, result=None, policy=policy)
    assert isinstance(d, Discard)
    assert d.condition == "RetryAttemptsExhausted"
    assert d.attempt.invokes == 3  # the first try and two retries
    assert d.attempt.response == ERR


def test_infinite_retries_never_discard() -> None:
    att = Attempt(recs(1), retries=10_000)
    d = after_invoke(att, invoked=True, response=ERR, result=None, policy=StreamPolicy())
    assert isinstance(d, Settle) and d.then[0].retries == 10_001


def test_malformed_partial_response_is_a_complete_failure() -> None:
    policy = StreamPolicy(maximum_retry_attempts=0, report_item_failures=True)
    d = after_invoke(
        Attempt(recs(1, 2)),
        invoked=True,
        response=Response(),
        result=BatchFailed("x"),
        policy=policy,
    )
    assert isinstance(d, Discard) and ids(d.attempt.records) == [1, 2]


def test_bisect_splits_without_using_a_retry_and_single_records_use_retries() -> None:
    policy = StreamPolicy(maximum_retry_attempts=1, bisect_on_error=True)
    d = after_invoke(
        Attempt(recs(*range(1, 9))), invoked=True, response=ERR, result=None, policy=policy
    )
    assert isinstance(d, Settle) and d.done == ()
    first, second = d.then
    assert ids(first.records) == [1, 2, 3, 4] and ids(second.records) == [5, 6, 7, 8]
    assert first.retries == second.retries == 0 and first.invokes == 0
    single = Attempt(recs(3))
    d = after_invoke(single, invoked=True, response=ERR, result=None, policy=policy)
    assert isinstance(d, Settle) and d.then[0].retries == 1
    d = after_invoke(d.then[0], invoked=True, response=ERR, result=None, policy=policy)
    assert isinstance(d, Discard) and d.attempt.invokes == 2 and ids(d.attempt.records) == [3]


def test_partial_response_settles_before_the_lowest_failure_and_retries_from_it() -> None:
    policy = StreamPolicy(report_item_failures=True, maximum_retry_attempts=5)
    result = ItemsFailed(("40", "20"))  # reported out of order: the lowest counts
    d = after_invoke(
        Attempt(recs(10, 20, 30, 40, 50)),
        invoked=True,
        response=Response(),
        result=result,
        policy=policy,
    )
    assert isinstance(d, Settle)
    assert ids(d.done) == [10]
    assert ids(d.then[0].records) == [20, 30, 40, 50]  # later successes are redelivered
    assert d.then[0].retries == 1


def test_partial_response_past_the_retry_limit_discards_the_tail() -> None:
    policy = StreamPolicy(report_item_failures=True, maximum_retry_attempts=0)
    d = after_invoke(
        Attempt(recs(1, 2, 3)),
        invoked=True,
        response=Response(),
        result=ItemsFailed(("2",)),
        policy=policy,
    )
    assert isinstance(d, Discard)
    assert ids(d.done) == [1] and ids(d.attempt.records) == [2, 3]


def test_partial_sequence_numbers_compare_as_integers() -> None:
    policy = StreamPolicy(report_item_failures=True)
    d = after_invoke(
        Attempt(recs(9, 10, 11)),
        invoked=True,
        response=Response(),
        result=ItemsFailed(("11", "10")),
        policy=policy,
    )
    assert isinstance(d, Settle) and ids(d.done) == [9]


def test_throttles_back_off_without_using_retries() -> None:
    policy = StreamPolicy(maximum_retry_attempts=0)
    att = Attempt(recs(1))
    delays = []
    for _ in range(5):
        d = after_invoke(att, invoked=False, response=None, result=None, policy=policy)
        assert isinstance(d, Backoff)
        att = d.attempt
        delays.append(d.delay_s)
    assert att.retries == 0 and att.invokes == 0
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_record_age_discards_the_expired_prefix_before_invoking() -> None:
    policy = StreamPolicy(maximum_record_age_s=60)
    att = Attempt((Rec("1", 0.0), Rec("2", 30.0), Rec("3", 100.0)), response=ERR)
    exp = before_invoke(att, now=95.0, policy=policy)
    assert exp is not None
    assert ids(exp.attempt.records) == [1, 2] and exp.attempt.response == ERR
    assert exp.rest is not None and ids(exp.rest.records) == [3]
    assert before_invoke(att, now=50.0, policy=policy) is None
    assert before_invoke(att, now=10**9, policy=StreamPolicy()) is None
    everything = before_invoke(att, now=10**9, policy=policy)
    assert everything is not None and everything.rest is None


def test_checkpoint_moves_only_past_contiguous_done_records() -> None:
    t = CheckpointTracker()
    t.add(["1", "2", "3", "4"])
    t.done(["2", "3"])
    assert t.advance() is None
    t.done(["1"])
    assert t.advance() == "3"
    assert t.checkpoint == "3"
    t.done(["4"])
    assert t.advance() == "4" and len(t) == 0


@pytest.mark.parametrize("lanes", [1, 4, 10])
def test_a_partition_key_always_goes_to_the_same_lane(lanes: int) -> None:
    keys = [f"key-{i}" for i in range(200)]
    first = [lane_of(k, lanes) for k in keys]
    assert first == [lane_of(k, lanes) for k in keys]
    assert set(first) == set(range(lanes))


def test_tumbling_windows_are_aligned_to_the_epoch() -> None:
    assert window_of(125.5, 60) == Window(120.0, 180.0)
    assert window_of(120.0, 60) == Window(120.0, 180.0)
    assert window_of(119.999, 60).holds(119.999)


@pytest.mark.parametrize(
    ("payload", "state", "error"),
    [
        (b'{"state": {"sum": 3}}', {"sum": 3}, ""),
        (b'{"state": null, "batchItemFailures": []}', {}, ""),
        (b'{"batchItemFailures": []}', None, "no state"),
        (b"null", None, "no state"),
        (b"not json", None, "not valid JSON"),
        (b'{"state": [1]}', None, "not an object"),
    ],
)
def test_a_window_response_must_carry_state(payload: bytes, state: object, error: str) -> None:
    got = parse_window_state(payload)
    assert got.state == state
    assert error in got.error


def test_state_over_one_megabyte_is_oversized() -> None:
    big = b'{"state": {"x": "' + b"a" * (1024 * 1024) + b'"}}'
    assert parse_window_state(big).oversized
    assert not parse_window_state(b'{"state": {"x": 1}}').oversized


def test_an_idle_shard_is_polled_less_often_up_to_the_idle_poll() -> None:
    from esm.shard_consumer import IDLE_AFTER_EMPTY_POLLS, idle_pause

    assert [idle_pause(1.0, 5.0, n) for n in range(IDLE_AFTER_EMPTY_POLLS + 1)] == [1.0] * (
        IDLE_AFTER_EMPTY_POLLS + 1
    )
    later = [idle_pause(1.0, 5.0, IDLE_AFTER_EMPTY_POLLS + n) for n in (1, 2, 3, 50)]
    assert later == [2.0, 4.0, 5.0, 5.0]
    assert idle_pause(1.0, 1.0, 1000) == 1.0  # StreamIdlePollSeconds 1: always Lambda's rate
