"""One line per invocation, and the recent past that ``esm status`` and the dashboard show.

Every invocation a mapping or the async worker makes ends in an :class:`LoggedInvocation`: which
function, which mapping (its UUID, or ``async``), the request id, the records (how many, the
first and last id: SQS message ids, stream sequence numbers; async: the request id), the outcome
and what happened next. :meth:`InvocationLog.record` logs it at INFO on the ``esm.invocation``
logger, as ``key=value`` text::

    invocation function=orders mapping=6f0c… request_id=3b1e… batch=10 first=a1… last=f9…
    outcome=partial failed=2 duration_ms=12.5 deleted=8 left=2

or, with ``--log-format json``, as one JSON object with the same keys (the record's ``esm``
attribute, read by :class:`esm.logs.JsonFormatter`).

Outcomes: ``ok``; ``partial`` (``failed`` records reported by a batch response); ``error`` (a
function error: ``error`` is its ``errorType``, or ``Handled``/``Unhandled``); ``timed_out``
(``Sandbox.Timedout``); ``throttled`` (``error``: the reason); ``invoke_failed`` (the target
could not be reached); ``not_invoked`` (an async event given up before it ran: ``error`` is the
condition).

What happened next, each key present only when it applies: ``deleted`` / ``left`` (SQS messages
deleted, left on the queue for their visibility timeout), ``checkpoint`` (a shard's records up to
this sequence number are done), ``bisected`` (the batch was split in two), ``retry_in_s`` (the
same records again after this pause; async: ``due`` is when), ``discarded`` (stream records
given up: the condition), ``destination`` (the ARN an on-failure / on-success record was sent
to), ``dead_letter`` (the dead-letter queue's ARN), ``delivery_error`` (a destination that did not
take the record).

The log keeps, per mapping and per async function, the last :data:`RECENT` invocations (with up
to :data:`IDS_KEPT` record ids, so a click on the dashboard shows a batch's fate) and counts in
:data:`BUCKET_S`-second buckets over the last :data:`HISTORY_S` seconds (sparklines, and the
"last minute" of ``esm status``). Memory is bounded by the number of mappings and functions.
Pure: no I/O but the log call, no clock (an invocation carries its time).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

log = logging.getLogger("esm.invocation")

RECENT = 20
IDS_KEPT = 100
BUCKET_S = 5.0
HISTORY_S = 600.0
TIMEOUT_ERROR = "Sandbox.Timedout"
UNMAPPED = ("async", "sync")  # invocations of no mapping: Invoke(Event), Invoke(RequestResponse)

OutcomeKind = Literal[
    "ok", "partial", "error", "timed_out", "throttled", "invoke_failed", "not_invoked"
]
# the order of a line's keys: who, which records, how it went, what happened next
FIELD_ORDER = (
    "function",
    "mapping",
    "shard",
    "request_id",
    "batch",
    "first",
    "last",
    "outcome",
    "failed",
    "error",
    "duration_ms",
    "deleted",
    "left",
    "checkpoint",
    "bisected",
    "retry_in_s",
    "due",
    "discarded",
    "destination",
    "dead_letter",
    "delivery_error",
)
FAILED: frozenset[str] = frozenset({"partial", "error", "timed_out", "invoke_failed"})


@dataclass(frozen=True, slots=True)
class LoggedInvocation:
    time: float  # epoch seconds, when the outcome was known
    function: str
    mapping: str  # a mapping's UUID, "async" or "sync" (Invoke RequestResponse)
    request_id: str
    outcome: OutcomeKind
    duration_ms: float = 0.0
    batch: int = 0
    first: str | None = None
    last: str | None = None
    shard: str | None = None
    failed: int | None = None
    error: str | None = None
    deleted: int | None = None
    left: int | None = None
    checkpoint: str | None = None
    bisected: bool | None = None
    retry_in_s: float | None = None
    due: float | None = None
    discarded: str | None = None
    destination: str | None = None
    dead_letter: str | None = None
    delivery_error: str | None = None
    ids: tuple[str, ...] = field(default=(), repr=False)  # the batch's record ids (capped)
    failed_ids: tuple[str, ...] = field(default=(), repr=False)

    @property
    def key(self) -> str:
        """Whose row this is: the mapping's UUID, or ``async:<function>`` / ``sync:<function>``."""
        return f"{self.mapping}:{self.function}" if self.mapping in UNMAPPED else self.mapping

    def fields(self) -> dict[str, Any]:
        """The log line's keys and values, in order, without the ones that do not apply."""
        out: dict[str, Any] = {}
        for k in FIELD_ORDER:
            v = getattr(self, k)
            if v is not None:
                out[k] = round(v, 3) if isinstance(v, float) else v
        return out

    def to_json(self) -> dict[str, Any]:
        """For ``esm status`` and the dashboard: the fields, the time and the record ids."""
        return {"time": self.time, **self.fields(), "ids": self.ids, "failed_ids": self.failed_ids}


def text(fields: dict[str, Any]) -> str:
    """``key=value`` pairs; a value with a space, a quote or an ``=`` is JSON-quoted."""
    parts = []
    for k, v in fields.items():
        s = str(v).lower() if isinstance(v, bool) else str(v)
        if not s or any(c in s for c in ' "=\n\t'):
            s = orjson.dumps(s).decode()
        parts.append(f"{k}={s}")
    return " ".join(parts)


# -- describing an outcome -----------------------------------------------------------------------


def describe(outcome: object) -> tuple[OutcomeKind, str | None]:
    """An :data:`esm.functions.Outcome` as (outcome kind, error); a reported partial failure is
    the caller's to say (it parsed the response)."""
    from esm.functions import FunctionError, InvokeFailed, Ok, Throttled

    if isinstance(outcome, Ok):
        return "ok", None
    if isinstance(outcome, FunctionError):
        error = error_type(outcome.payload) or outcome.kind
        return ("timed_out" if error == TIMEOUT_ERROR else "error"), error
    if isinstance(outcome, Throttled):
        return "throttled", outcome.reason
    assert isinstance(outcome, InvokeFailed)
    return "invoke_failed", outcome.reason


def error_type(payload: bytes) -> str | None:
    """The ``errorType`` of a Lambda error payload, if it has one."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    value = doc.get("errorType") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and value else None


def id_range(ids: Sequence[str]) -> dict[str, Any]:
    """``batch``, ``first``, ``last`` and the capped ``ids`` of a batch."""
    return {
        "batch": len(ids),
        "first": ids[0] if ids else None,
        "last": ids[-1] if ids else None,
        "ids": tuple(ids[:IDS_KEPT]),
    }


# -- the recent past ---------------------------------------------------------------------------


@dataclass(slots=True)
class Bucket:
    start: float
    invocations: int = 0
    records: int = 0
    errors: int = 0  # invocations whose outcome was a failure
    throttles: int = 0
    sent_on: int = 0  # on-failure destination or dead-letter queue
    dropped: int = 0  # discarded without a destination
    delivery_errors: int = 0


class _Row:
    __slots__ = ("buckets", "recent")

    def __init__(self) -> None:
        self.recent: deque[LoggedInvocation] = deque(maxlen=RECENT)
        self.buckets: deque[Bucket] = deque()


class InvocationLog:
    """Logs each :class:`LoggedInvocation`; keeps the recent past per mapping / async function."""

    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}

    def record(self, inv: LoggedInvocation) -> None:
        if log.isEnabledFor(logging.INFO):  # the line is built only when someone reads it
            fields = inv.fields()
            extra = {"esm": {"event": "invocation", **fields}}
            log.info("invocation %s", text(fields), extra=extra)
        row = self._rows.get(inv.key)
        if row is None:
            row = self._rows[inv.key] = _Row()
        row.recent.append(inv)
        b = self._bucket(row, inv.time)
        b.invocations += inv.outcome != "not_invoked"
        b.records += inv.batch
        b.errors += inv.outcome in FAILED
        b.throttles += inv.outcome == "throttled"
        sent_on = (inv.destination or inv.dead_letter) and inv.discarded
        b.sent_on += inv.batch if sent_on else 0
        b.dropped += inv.batch if inv.discarded and not inv.destination else 0
        b.delivery_errors += inv.delivery_error is not None

    @staticmethod
    def _bucket(row: _Row, t: float) -> Bucket:
        start = math.floor(t / BUCKET_S) * BUCKET_S
        buckets = row.buckets
        if not buckets or buckets[-1].start < start:
            buckets.append(Bucket(start))
        elif buckets[-1].start > start:  # out of order (a slow batch): the bucket it ended in
            for b in reversed(buckets):
                if b.start <= start:
                    return b
            return buckets[0]
        while buckets and buckets[0].start <= start - HISTORY_S:
            buckets.popleft()
        return buckets[-1]

    def recent(self, key: str) -> list[LoggedInvocation]:
        row = self._rows.get(key)
        return list(row.recent) if row else []

    def matching(self, ident: str) -> list[LoggedInvocation]:
        """Recent invocations whose request id, or one of whose kept record ids, is ``ident``,
        oldest first."""
        found = [
            inv
            for row in self._rows.values()
            for inv in row.recent
            if inv.request_id == ident or ident in inv.ids
        ]
        return sorted(found, key=lambda inv: inv.time)

    def series(self, key: str, now: float, span_s: float = HISTORY_S) -> list[Bucket]:
        """One bucket per :data:`BUCKET_S` from ``now - span_s`` to ``now``, empty ones included."""
        row = self._rows.get(key)
        have = {b.start: b for b in row.buckets} if row else {}
        end = math.floor(now / BUCKET_S) * BUCKET_S
        n = int(span_s / BUCKET_S)
        starts = [end - BUCKET_S * i for i in range(n - 1, -1, -1)]
        return [have.get(s) or Bucket(s) for s in starts]

    def last_minute(self, key: str, now: float) -> Bucket:
        """The sums over the buckets of the last 60 seconds."""
        total = Bucket(now - 60)
        row = self._rows.get(key)
        for b in row.buckets if row else ():
            if b.start + BUCKET_S > now - 60:
                total.invocations += b.invocations
                total.records += b.records
                total.errors += b.errors
                total.throttles += b.throttles
                total.sent_on += b.sent_on
                total.dropped += b.dropped
                total.delivery_errors += b.delivery_errors
        return total

    def forget(self, keys: Iterable[str]) -> None:
        for k in keys:
            self._rows.pop(k, None)


# -- what the pollers know -------------------------------------------------------------------------


def stream_invocation(
    *,
    now: float,
    function: str,
    uuid: str,
    shard: str,
    request_id: str,
    ids: Sequence[str],
    outcome: object,
    decision: object,
    took_ms: float,
    on_failure: str | None,
) -> LoggedInvocation:
    """A shard's invocation and what :func:`esm.streams.after_invoke` decided for it."""
    from esm.streams import Backoff, Discard, Settle

    kind, error = describe(outcome)
    nxt: dict[str, Any] = {}
    failed = None
    if isinstance(decision, Backoff):
        nxt["retry_in_s"] = decision.delay_s
    elif isinstance(decision, Settle | Discard):
        if decision.done:
            nxt["checkpoint"] = decision.done[-1].item_id
        rest = decision.then
        if isinstance(decision, Discard):  # given up: done too, the checkpoint passes them
            nxt["checkpoint"] = decision.attempt.records[-1].item_id
            nxt["discarded"] = decision.condition
            nxt["destination"] = on_failure
            rest = (decision.attempt, *rest)
        elif len(rest) == 2:
            nxt["bisected"] = True
        elif rest:
            nxt["retry_in_s"] = decision.delay_s
        if kind == "ok" and rest:
            kind = "partial"
            failed = sum(len(a.records) for a in rest)
    return LoggedInvocation(
        now,
        function,
        uuid,
        request_id,
        kind,
        took_ms,
        **id_range(ids),
        shard=shard,
        failed=failed,
        error=error,
        **nxt,
    )
