"""Kinesis and DynamoDB Streams failure rules (docs/semantics.md §6). Pure.

A shard's records reach the function in *attempts*: a batch of records plus what has happened to
it so far. After every invocation :func:`after_invoke` says what comes next, and before every
invocation :func:`before_invoke` drops records past ``MaximumRecordAgeInSeconds``::

    outcome of an attempt                    decision
    ───────────────────────────────────────  ────────────────────────────────────────────────
    success (or empty/valid-empty response)  Settle(done=all)
    partial response, lowest failure at i    Settle(done=records[:i]) + retry records[i:]
                                             (a retry: counts against MaximumRetryAttempts)
    function error / malformed response,     Split: first half, then second half (no retry
    bisect on, more than one record          used; docs/semantics.md §6.5)
    function error / malformed response      retry the same records, retries + 1; past
                                             MaximumRetryAttempts: Discard RetryAttemptsExhausted
    throttle / could not invoke              Backoff: same attempt, retries unchanged
    record older than MaximumRecordAge       Discard RecordAgeExceeded (before invoking)

The caller (the shard worker) executes decisions: invokes, marks records done in its
:class:`CheckpointTracker`, delivers on-failure records, waits.

``approximateInvokeCount`` in an on-failure record is the number of invocations of the discarded
batch itself (a bisected half starts again at 0).
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Generic, Literal, Protocol, TypeVar

from esm.partial import AllSucceeded, BatchFailed, BatchResult, ItemsFailed
from esm.records import ResponseContext as Response

RETRY_BASE_S = 1.0
RETRY_MAX_S = 30.0
NOT_INVOKED_MAX_S = 60.0
WINDOW_STATE_MAX_BYTES = 1024 * 1024


class StreamItem(Protocol):
    @property
    def item_id(self) -> str: ...  # the sequence number

    @property
    def arrival(self) -> float: ...


R = TypeVar("R", bound=StreamItem)


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    maximum_retry_attempts: int = -1  # -1: until the records expire
    maximum_record_age_s: int = -1
    bisect_on_error: bool = False
    report_item_failures: bool = False


@dataclass(frozen=True, slots=True)
class Attempt(Generic[R]):
    records: tuple[R, ...]
    retries: int = 0  # function-error retries already used
    invokes: int = 0  # invocations of exactly these records
    not_invoked: int = 0  # consecutive throttles / unreachable, for the backoff
    response: Response | None = None  # the last invocation's, if any


# -- decisions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settle(Generic[R]):
    """``done`` are finished; ``then`` are attempts to run next, in order."""

    done: tuple[R, ...]
    then: tuple[Attempt[R], ...] = ()
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Discard(Generic[R]):
    """``done`` are finished; give up on ``attempt`` (an on-failure record); then run ``then``."""

    attempt: Attempt[R]
    condition: Literal["RetryAttemptsExhausted", "RecordAgeExceeded"]
    done: tuple[R, ...] = ()
    then: tuple[Attempt[R], ...] = ()


@dataclass(frozen=True, slots=True)
class Backoff(Generic[R]):
    """The function was not invoked (throttle, unreachable): try ``attempt`` again later."""

    attempt: Attempt[R]
    delay_s: float


Decision = Settle[R] | Discard[R] | Backoff[R]


def retry_delay(retries: int) -> float:
    return float(min(RETRY_MAX_S, RETRY_BASE_S * 2 ** min(max(0, retries - 1), 16)))


def _fail(att: Attempt[R], policy: StreamPolicy, response: Response | None) -> Decision[R]:
    """A complete failure of ``att`` (function error or malformed partial response)."""
    records = att.records
    if policy.bisect_on_error and len(records) > 1:
        mid = len(records) // 2
        first = Attempt(records[:mid], retries=att.retries)
        second = Attempt(records[mid:], retries=att.retries)
        return Settle((), (first, second))
    retries = att.retries + 1
    failed = replace(att, retries=retries, not_invoked=0, response=response)
    limit = policy.maximum_retry_attempts
    if limit != -1 and retries > limit:
        return Discard(failed, "RetryAttemptsExhausted")
    return Settle((), (failed,), delay_s=retry_delay(retries))


def after_invoke(
    att: Attempt[R],
    *,
    invoked: bool,
    response: Response | None,
    result: BatchResult | None,
    policy: StreamPolicy,
) -> Decision[R]:
    """Decide after one invocation of ``att``.

    ``invoked`` False: throttled or could not invoke. ``response`` is None when not invoked.
    ``result`` is the parsed partial response of a successful invocation (None after a function
    error).
    """
    att = replace(att, invokes=att.invokes + (1 if invoked else 0))
    if not invoked:
        n = att.not_invoked + 1
        return Backoff(replace(att, not_invoked=n), min(NOT_INVOKED_MAX_S, 2.0 ** min(n - 1, 16)))
    if result is None or isinstance(result, BatchFailed):
        return _fail(att, policy, response)
    if isinstance(result, AllSucceeded):
        return Settle(att.records)
    assert isinstance(result, ItemsFailed)
    failed = set(result.item_ids)
    lowest = min(
        (i for i, r in enumerate(att.records) if r.item_id in failed),
        key=lambda i: int(att.records[i].item_id),
    )
    done, rest = att.records[:lowest], att.records[lowest:]
    retries = att.retries + 1
    limit = policy.maximum_retry_attempts
    # The retried tail keeps the invocation count: those records were in every invocation so far.
    rest_att = Attempt(rest, retries=retries, invokes=att.invokes, response=response)
    if limit != -1 and retries > limit:
        return Discard(rest_att, "RetryAttemptsExhausted", done=done)
    return Settle(done, (rest_att,), delay_s=retry_delay(retries))


@dataclass(frozen=True, slots=True)
class Expired(Generic[R]):
    """Records past MaximumRecordAgeInSeconds, to discard before invoking the rest."""

    attempt: Attempt[R]
    rest: Attempt[R] | None


def before_invoke(att: Attempt[R], *, now: float, policy: StreamPolicy) -> Expired[R] | None:
    """The records of ``att`` that are too old to invoke (a prefix: records are in order)."""
    max_age = policy.maximum_record_age_s
    if max_age == -1 or not att.records:
        return None
    cutoff = now - max_age
    n = 0
    for r in att.records:
        if r.arrival >= cutoff:
            break
        n += 1
    if n == 0:
        return None
    old = replace(att, records=att.records[:n])
    rest = replace(att, records=att.records[n:]) if n < len(att.records) else None
    return Expired(old, rest)


# -- checkpoints and parallelization ---------------------------------------------------------------


class CheckpointTracker:
    """Sequence numbers in shard order; the checkpoint only moves past a record when it and every
    record before it are done (processed, filtered out or discarded)."""

    __slots__ = ("_pending", "_safe")

    def __init__(self) -> None:
        self._pending: OrderedDict[str, bool] = OrderedDict()
        self._safe: str | None = None

    def add(self, sequence_numbers: Iterable[str]) -> None:
        for s in sequence_numbers:
            self._pending[s] = False

    def done(self, sequence_numbers: Iterable[str]) -> None:
        pending = self._pending
        for s in sequence_numbers:
            if s in pending:
                pending[s] = True

    def advance(self) -> str | None:
        """The new checkpoint if it moved, else None."""
        moved = None
        pending = self._pending
        while pending:
            seq, finished = next(iter(pending.items()))
            if not finished:
                break
            pending.popitem(last=False)
            moved = seq
        if moved is not None:
            self._safe = moved
        return moved

    @property
    def checkpoint(self) -> str | None:
        return self._safe

    def __len__(self) -> int:
        return len(self._pending)


def lane_of(key: str | None, lanes: int) -> int:
    """Which of a shard's ``ParallelizationFactor`` lanes a partition key goes to: the same key
    always to the same lane, so one key's records stay in order and never share two batches."""
    if lanes <= 1 or key is None:
        return 0
    return zlib.crc32(key.encode()) % lanes


# -- tumbling windows ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    start: float
    end: float

    def holds(self, arrival: float) -> bool:
        return self.start <= arrival < self.end


def window_of(arrival: float, size_s: int) -> Window:
    """The tumbling window an arrival time falls in (windows are aligned to the epoch)."""
    start = math.floor(arrival / size_s) * size_s
    return Window(float(start), float(start + size_s))


@dataclass(frozen=True, slots=True)
class WindowResponse:
    """A tumbling-window invocation's answer: the new state, or why it counts as failed."""

    state: dict[str, object] | None
    error: str = ""
    oversized: bool = False


def parse_window_state(payload: bytes) -> WindowResponse:
    """The response must be an object with a ``state`` object (docs/semantics.md §6.9)."""
    import orjson

    try:
        doc = orjson.loads(payload) if payload.strip() else None
    except orjson.JSONDecodeError:
        return WindowResponse(None, "the response is not valid JSON")
    if not isinstance(doc, dict) or "state" not in doc:
        return WindowResponse(None, "the response has no state property")
    state = doc["state"]
    if state is None:
        state = {}
    if not isinstance(state, dict):
        return WindowResponse(None, "state is not an object")
    oversized = len(orjson.dumps(state)) > WINDOW_STATE_MAX_BYTES
    return WindowResponse(state, oversized=oversized)
