"""Workers of the async queue: claim due events, invoke, decide (:mod:`esm.retry`), act.

One worker per daemon runs up to ``Settings.AsyncConcurrency`` invocations at once; several
daemons on one Redis share the queue through its consumer group (each event to one of them).
Memory is bounded by the claims in flight. On shutdown the worker stops claiming and lets
in-flight invocations finish up to the deadline; what it still holds is reclaimed later (by
another daemon or by itself after a restart) once the visibility timeout has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Protocol

from esm.async_queue import AsyncQueue, LastResponse, QueuedEvent
from esm.clock import Clock
from esm.config import DeadLetterConfig, EventInvokeConfig
from esm.dispatcher import Dispatched, Dispatcher
from esm.errors import EsmError
from esm.functions import Function, FunctionError, InvokeFailed, Ok, Outcome, Throttled
from esm.invocation_log import LoggedInvocation, describe, id_range
from esm.invocation_log import OutcomeKind as LoggedKind
from esm.metrics import Metrics, count_outcome
from esm.retry import (
    AsyncPolicy,
    Condition,
    GiveUp,
    OutcomeKind,
    Retry,
    Succeed,
    after_invoke,
    before_invoke,
)
from esm.store import OutageLog, retry_unavailable

log = logging.getLogger(__name__)

IDLE_POLL_S = 1.0
DUE_RECHECK_S = 1.0
BLOCK_MS = 1000
ERROR_BACKOFF_S = 1.0


class AsyncHost(Protocol):
    """What the worker needs from the engine (configuration can change at runtime)."""

    def function_for_event(self, name: str) -> Function | None: ...

    def invoke_config(self, name: str) -> EventInvokeConfig: ...

    def dead_letter_config(self, name: str) -> DeadLetterConfig | None: ...

    def reserved_concurrency(self, name: str) -> int | None: ...


class AsyncWorker:
    def __init__(
        self,
        *,
        queue: AsyncQueue,
        host: AsyncHost,
        dispatcher: Dispatcher,
        clock: Clock,
        metrics: Metrics,
        concurrency: int,
        retry_delays_s: tuple[float, ...],
        blocking_reads: bool = True,
    ) -> None:
        self.queue = queue
        self._host = host
        self._dispatcher = dispatcher
        self._clock = clock
        self._metrics = metrics
        self._concurrency = concurrency
        self._delays = retry_delays_s
        self._inflight: dict[asyncio.Task[None], QueuedEvent] = {}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        # Redis waits for new events (XREADGROUP BLOCK) on a real clock with a real server
        self._redis_blocks = clock.real and blocking_reads
        self._next_reclaim = 0.0
        self._next_touch = 0.0
        self._next_due: float | None = None
        self._check_due_at = 0.0
        self._completed: list[QueuedEvent] = []
        self._to_complete = asyncio.Event()

    def wake(self) -> None:
        """A local enqueue: look at the queue now (a virtual clock's loop does not block)."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def in_flight_of(self, function: str) -> int:
        return sum(1 for ev in self._inflight.values() if ev.function == function)

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        flusher = asyncio.create_task(self._flush_completed(), name="async-complete")
        outage = OutageLog(log, "async queue")
        try:
            while not self._stopping.is_set():
                try:
                    await self.queue.setup()
                    await self._cycle()
                except EsmError as exc:  # Redis unavailable: keep trying
                    outage.failed(exc)
                    await self._sleep(ERROR_BACKOFF_S)
                else:
                    outage.ok()
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await asyncio.shield(self._flush_now())

    async def _cycle(self) -> None:
        queue, clock = self.queue, self._clock
        if not queue.functions:  # nothing to claim: no blocking read would pace this loop
            self._wake.clear()
            await self._sleep(None)
            return
        now = clock.now()
        if now >= self._check_due_at:
            # Retries: move the due ones; know when the next is due without asking again
            # (another daemon's retries are picked up at the next periodic look).
            self._next_due = await queue.move_due()
            # On a virtual clock nothing else moves time: look again only when a retry is due.
            self._check_due_at = now + DUE_RECHECK_S if clock.real else float("inf")
            if self._next_due is not None:
                self._check_due_at = min(self._check_due_at, self._next_due)
        visibility_s = queue.visibility_ms / 1000
        if self._inflight and now >= self._next_touch:
            self._next_touch = now + visibility_s / 3
            await queue.touch(self._inflight.values())
        capacity = self._concurrency - len(self._inflight)
        if capacity <= 0:
            self._wake.clear()
            await self._sleep(IDLE_POLL_S)
            return
        events: list[QueuedEvent] = []
        if now >= self._next_reclaim:
            self._next_reclaim = now + max(1.0, visibility_s / 2)
            events = await queue.reclaim(capacity)
        if len(events) < capacity:
            block = None
            if self._redis_blocks and not events:
                # wait for new events in Redis, but not past the next look at the retries
                wait_ms = int((self._check_due_at - now) * 1000)
                block = max(1, min(BLOCK_MS, wait_ms))
            self._wake.clear()
            events += await queue.claim(capacity - len(events), block_ms=block)
            if not events:
                self._drained()
        for ev in events:
            task = asyncio.create_task(self._handle(ev), name=f"async-{ev.request_id}")
            self._inflight[task] = ev
            task.add_done_callback(self._done)
        if not events and not self._redis_blocks:
            # until a retry is due, or a local enqueue / finished invocation wakes the worker
            # (a virtual clock, or memory:// whose XREADGROUP does not block: only this process
            # can enqueue there, and it wakes the worker when it does)
            wait = self._check_due_at - now
            await self._sleep(None if wait == float("inf") else max(0.0, wait))

    def _drained(self) -> None:
        """The ready queues are empty: no event waits to be invoked (AsyncEventAge 0)."""
        busy = {ev.function for ev in self._inflight.values()}
        for name in self.queue.functions:
            if name not in busy:
                self._metrics.set("AsyncEventAge", 0, function_name=name)

    async def _flush_completed(self) -> None:
        """Completions leave the queue together: one round trip per loop tick, not per event.
        While the store does not answer they wait and are tried again, so a short outage does not
        make finished events run a second time."""
        while True:
            await self._to_complete.wait()
            await asyncio.sleep(0)  # let the other completions of this tick join
            if not await self._flush_now():
                await self._clock.sleep(ERROR_BACKOFF_S)
                self._to_complete.set()

    async def _flush_now(self) -> bool:
        self._to_complete.clear()
        batch, self._completed = self._completed, []
        if not batch:
            return True
        try:
            await self.queue.complete_many(batch)
        except EsmError as exc:
            self._completed[:0] = batch
            if self._stopping.is_set():  # they stay claimed: reclaimed and run again later
                log.warning("async queue: %d completion(s) not recorded: %s", len(batch), exc)
            return False
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        event = self._inflight.pop(task, None)
        self._wake.set()
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, EsmError):  # the store: the event stays claimed, reclaimed later
            log.warning("async event %s: %s", event.request_id if event else "?", exc)
        elif exc is not None:
            log.error("async event handling failed", exc_info=exc)

    async def _sleep(self, seconds: float | None) -> None:
        if self._stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await self._clock.wait_for(self._wake.wait(), seconds)

    async def stop(self, deadline_s: float) -> None:
        """Stop claiming; in-flight invocations get ``deadline_s``; the rest stays claimed."""
        self._stopping.set()
        self._wake.set()
        tasks = list(self._inflight)
        if tasks:
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(
                    asyncio.gather(*(asyncio.shield(t) for t in tasks), return_exceptions=True),
                    deadline_s,
                )
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one event ---------------------------------------------------------------------------------

    async def _handle(self, event: QueuedEvent) -> None:
        host = self._host
        fn = host.function_for_event(event.function)
        if fn is None:
            log.error(
                "async event %s: function %s no longer exists; dropped",
                event.request_id,
                event.function,
            )
            self._completed.append(event)
            self._to_complete.set()
            return
        config = host.invoke_config(event.function)
        policy = AsyncPolicy(
            maximum_retry_attempts=config.maximum_retry_attempts,
            maximum_event_age_s=config.maximum_event_age_s,
            retry_delays_s=self._delays,
        )
        now = self._clock.now()
        give_up = before_invoke(
            event.history,
            now=now,
            policy=policy,
            reserved_concurrency=host.reserved_concurrency(event.function),
        )
        if give_up is not None:
            sent = await self._finish(event, give_up.condition, config)
            self._log(event, "not_invoked", give_up.condition, 0.0, sent, give_up.condition)
            return
        self._metrics.set(
            "AsyncEventAge", (now - event.history.received_at) * 1000, function_name=fn.name
        )
        outcome = await fn.invoke(
            event.payload, request_id=event.request_id, invocation_type="Event"
        )
        took_ms = (self._clock.now() - now) * 1000
        count_outcome(self._metrics, fn.name, outcome, took_ms)
        described = describe(outcome)
        kind, last = _describe(outcome)
        if last.reason and event.last is not None and not event.last.reason:
            last = event.last  # keep the last real answer for the record; this one never ran
        decision = after_invoke(event.history, kind, now=self._clock.now(), policy=policy)
        event = replace(event, history=decision.history, last=last)
        if isinstance(decision, Retry):
            # A short outage must not lose the retry's history: try again until the claim is
            # about to be taken over by a reclaim (which would invoke the event once more).
            give_up_at = self._clock.now() + self.queue.visibility_ms / 2000
            await retry_unavailable(
                lambda: self.queue.retry(event, decision.delay_s),
                clock=self._clock,
                until=lambda: self._clock.now() >= give_up_at,
            )
            due = self._clock.now() + decision.delay_s
            self._check_due_at = min(self._check_due_at, due)
            self._log(event, *described, took_ms, retry=(decision.delay_s, due))
        elif isinstance(decision, Succeed):
            sent = await self._finish(event, "Success", config)
            self._log(event, *described, took_ms, sent)
        elif isinstance(decision, GiveUp):
            sent = await self._finish(event, decision.condition, config)
            self._log(event, *described, took_ms, sent, decision.condition)

    async def _finish(
        self, event: QueuedEvent, condition: Condition, config: EventInvokeConfig
    ) -> Dispatched:
        dead_letter = self._host.dead_letter_config(event.function)
        sent = await self._dispatcher.dispatch(event, condition, config, dead_letter)
        self._completed.append(event)
        self._to_complete.set()
        return sent

    def _log(
        self,
        event: QueuedEvent,
        kind: LoggedKind,
        error: str | None,
        took_ms: float,
        sent: Dispatched | None = None,
        given_up: str | None = None,
        retry: tuple[float, float] | None = None,
    ) -> None:
        """The invocation's line (:mod:`esm.invocation_log`) with where the event went."""
        self._metrics.invocations.record(
            LoggedInvocation(
                self._clock.now(),
                event.function,
                "async",
                event.request_id,
                kind,
                took_ms,
                **id_range([event.request_id]),
                error=error,
                retry_in_s=retry[0] if retry else None,
                due=retry[1] if retry else None,
                discarded=given_up,
                destination=sent.destination if sent else None,
                dead_letter=sent.dead_letter if sent else None,
                delivery_error=sent.delivery_error if sent else None,
            )
        )


def _describe(outcome: Outcome) -> tuple[OutcomeKind, LastResponse]:
    if isinstance(outcome, Ok):
        return "ok", LastResponse(200, outcome.executed_version, None, outcome.payload)
    if isinstance(outcome, FunctionError):
        return "function_error", LastResponse(
            200, outcome.executed_version, outcome.kind, outcome.payload
        )
    if isinstance(outcome, Throttled):
        return "throttled", LastResponse(429, reason=f"Rate Exceeded. ({outcome.reason})")
    assert isinstance(outcome, InvokeFailed)
    return "invoke_failed", LastResponse(500, reason=outcome.reason)
