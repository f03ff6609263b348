"""Async retry policy (docs/semantics.md §8.2, §8.3, §8.4), decision by decision."""

from __future__ import annotations

import random

import pytest

from esm.retry import AsyncPolicy, GiveUp, History, Retry, Succeed, after_invoke, before_invoke

P = AsyncPolicy(jitter=0.0)
T0 = 1000.0


def test_success_counts_the_invocation() -> None:
    d = after_invoke(History(T0), "ok", now=T0, policy=P)
    assert isinstance(d, Succeed) and d.history.invokes == 1


def test_function_errors_retry_after_one_then_two_minutes_then_give_up() -> None:
    h = History(T0)
    d = after_invoke(h, "function_error", now=T0, policy=P)
    assert isinstance(d, Retry) and d.delay_s == 60.0 and d.history.retries == 1
    d = after_invoke(d.history, "function_error", now=T0 + 60, policy=P)
    assert isinstance(d, Retry) and d.delay_s == 120.0 and d.history.retries == 2
    d = after_invoke(d.history, "function_error", now=T0 + 180, policy=P)
    assert isinstance(d, GiveUp) and d.condition == "RetriesExhausted"
    assert d.history.invokes == 3


@pytest.mark.parametrize("attempts", [0, 1, 2])
def test_maximum_retry_attempts(attempts: int) -> None:
    policy = AsyncPolicy(maximum_retry_attempts=attempts, jitter=0.0)
    h = History(T0)
    for _ in range(attempts):
        d = after_invoke(h, "function_error", now=T0, policy=policy)
        assert isinstance(d, Retry)
        h = d.history
    d = after_invoke(h, "function_error", now=T0, policy=policy)
    assert isinstance(d, GiveUp) and d.history.invokes == attempts + 1


def test_jitter_stays_within_its_fraction() -> None:
    rng = random.Random(7)
    policy = AsyncPolicy(jitter=0.1)
    delays = {
        after_invoke(History(T0), "function_error", now=T0, policy=policy, rng=rng).delay_s  # type: ignore[union-attr]
        for _ in range(200)
    }
    assert min(delays) >= 54.0 and max(delays) <= 66.0 and len(delays) > 100


@pytest.mark.parametrize("kind", ["throttled", "invoke_failed"])
def test_throttles_back_off_exponentially_to_five_minutes_without_using_retries(kind: str) -> None:
    h = History(T0)
    delays = []
    for _ in range(12):
        d = after_invoke(h, kind, now=T0, policy=P)  # type: ignore[arg-type]
        assert isinstance(d, Retry)
        delays.append(d.delay_s)
        h = d.history
    assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert max(delays) == 300.0
    assert h.retries == 0 and h.invokes == 0


def test_a_retry_is_never_scheduled_past_the_maximum_age() -> None:
    policy = AsyncPolicy(maximum_event_age_s=90, jitter=0.0)
    d = after_invoke(History(T0), "function_error", now=T0 + 60, policy=policy)
    assert isinstance(d, Retry) and d.delay_s == 30.0


def test_age_and_zero_reserved_concurrency_give_up_before_invoking() -> None:
    policy = AsyncPolicy(maximum_event_age_s=60)
    assert before_invoke(History(T0), now=T0 + 59, policy=policy, reserved_concurrency=None) is None
    expired = before_invoke(History(T0), now=T0 + 60, policy=policy, reserved_concurrency=None)
    assert expired is not None and expired.condition == "EventAgeExceeded"
    zero = before_invoke(History(T0), now=T0, policy=policy, reserved_concurrency=0)
    assert zero is not None and zero.condition == "ZeroReservedConcurrency"
