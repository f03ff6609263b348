"""Asynchronous invocation: what happens to an event after each attempt (docs/semantics.md §8.2,
§8.3, §8.4). Pure: takes the event's history, the outcome and ``now``; returns a decision.

==========================================  ===============================================
situation                                   decision
==========================================  ===============================================
reserved concurrency is 0                   GiveUp ``ZeroReservedConcurrency`` (no retries)
older than MaximumEventAgeInSeconds         GiveUp ``EventAgeExceeded`` (before invoking)
success                                     Succeed (OnSuccess destination)
function error (incl. timeout), retries     Retry after ~1 min, then ~2 min (jittered;
left                                        ``Settings.AsyncRetryDelaysSeconds``)
function error, MaximumRetryAttempts used   GiveUp ``RetriesExhausted``
throttle / could not invoke                 Retry with backoff 1 s doubling to 5 min, not
                                            counting as a retry; the age limit still applies
==========================================  ===============================================

A retry is never scheduled past the event's maximum age: it is due at the age limit at the
latest, where :func:`before_invoke` gives it up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Condition = Literal["Success", "RetriesExhausted", "EventAgeExceeded", "ZeroReservedConcurrency"]

_RNG = random.Random()
THROTTLE_BASE_S = 1.0
THROTTLE_MAX_S = 300.0


@dataclass(frozen=True, slots=True)
class AsyncPolicy:
    maximum_retry_attempts: int = 2
    maximum_event_age_s: int = 21600
    retry_delays_s: tuple[float, ...] = (60.0, 120.0)
    jitter: float = 0.1  # ± this fraction of each delay


@dataclass(frozen=True, slots=True)
class History:
    """What has happened to one event so far."""

    received_at: float
    retries: int = 0  # function-error retries already scheduled
    invokes: int = 0  # invocations made (approximateInvokeCount)
    throttles: int = 0  # consecutive attempts that did not reach the function


@dataclass(frozen=True, slots=True)
class Succeed:
    history: History


@dataclass(frozen=True, slots=True)
class Retry:
    history: History
    delay_s: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    history: History
    condition: Condition


Decision = Succeed | Retry | GiveUp

OutcomeKind = Literal["ok", "function_error", "throttled", "invoke_failed"]


def before_invoke(
    h: History, *, now: float, policy: AsyncPolicy, reserved_concurrency: int | None
) -> GiveUp | None:
    if reserved_concurrency == 0:
        return GiveUp(h, "ZeroReservedConcurrency")
    if now - h.received_at >= policy.maximum_event_age_s:
        return GiveUp(h, "EventAgeExceeded")
    return None


def _jittered(delay: float, jitter: float, rng: random.Random) -> float:
    return max(0.0, delay * (1 + rng.uniform(-jitter, jitter)))


def after_invoke(
    h: History,
    kind: OutcomeKind,
    *,
    now: float,
    policy: AsyncPolicy,
    rng: random.Random | None = None,
) -> Decision:
    rng = rng or _RNG
    if kind in ("ok", "function_error"):
        h = History(h.received_at, h.retries, h.invokes + 1, 0)
        if kind == "ok":
            return Succeed(h)
        if h.retries >= policy.maximum_retry_attempts:
            return GiveUp(h, "RetriesExhausted")
        delays = policy.retry_delays_s or (60.0,)
        base = delays[min(h.retries, len(delays) - 1)]
        delay = _jittered(base, policy.jitter, rng)
        h = History(h.received_at, h.retries + 1, h.invokes, 0)
    else:
        throttles = h.throttles + 1
        base = min(THROTTLE_MAX_S, THROTTLE_BASE_S * 2 ** min(throttles - 1, 20))
        delay = _jittered(base, policy.jitter, rng)
        h = History(h.received_at, h.retries, h.invokes, throttles)
    age_left = h.received_at + policy.maximum_event_age_s - now
    return Retry(h, max(0.0, min(delay, age_left)))
