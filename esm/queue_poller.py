"""The SQS event source mapping at work: lanes that receive, batch, invoke and delete.

A *lane* is one concurrent batch: it gathers a batch (several receives when ``BatchSize`` > 10 or
a batching window is set), invokes the function with it, settles it (delete what succeeded) and
starts over. The number of lanes follows :class:`esm.scaling.SqsScaler`; each lane holds at most
one batch (plus what did not fit in it), so memory stays bounded whatever the backlog.

The decisions are pure and live elsewhere (:mod:`esm.batching`, :mod:`esm.filtering`,
:mod:`esm.partial`, :mod:`esm.queues`, :mod:`esm.scaling`); this module carries them out.

Shutdown: :meth:`QueuePoller.stop` stops receiving at once (lanes in a receive are cancelled and
release the messages they held but had not invoked), lets lanes that are invoking or deleting
finish until the deadline, then cancels them: an unfinished batch is never deleted, so its
messages come back after their visibility timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid as uuidlib
from dataclasses import dataclass, field

from esm.batching import BatchBuilder, BatchLimits, Empty, Flush, Wait
from esm.clock import Clock
from esm.config import MappingSpec
from esm.connectors.base import QueueConnector, Record
from esm.errors import InvalidParameterValueException, SourceError
from esm.events import batch_event
from esm.filtering import RecordFilter, compile_filter_criteria
from esm.functions import Function, FunctionError, Ok, Outcome
from esm.invocation_log import IDS_KEPT, LoggedInvocation, describe, id_range
from esm.metrics import Metrics, count_outcome
from esm.partial import parse_batch_response
from esm.queues import Settlement, settle
from esm.scaling import SqsScaler

log = logging.getLogger(__name__)

LONG_POLL_S = 20
RECEIVE_BACKOFF_MAX_S = 20.0
THROTTLE_BACKOFF_MAX_S = 30.0
VISIBILITY_MARGIN_S = 2.0

NO_RECORDS = "No records processed"
OK = "OK"
PROBLEM = "PROBLEM: Function call failed"


@dataclass(eq=False)
class _Lane:
    task: asyncio.Task[None] | None = None
    invoking: bool = False
    held: list[Record] = field(default_factory=list)


_NO_QUEUE = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


def receive_error(exc: SourceError) -> str:
    """Lambda's words when it cannot read the queue (CreateEventSourceMapping's check)."""
    if exc.code in _NO_QUEUE:
        code, message = _NO_QUEUE[0], "The specified queue does not exist."
    else:
        code, message = exc.code or "InternalError", str(exc)
    return (
        f"Error occurred while ReceiveMessage. SQS Error Code: {code}. SQS Error Message: {message}"
    )


class QueuePoller:
    """Runs one SQS mapping until :meth:`stop`."""

    def __init__(
        self,
        mapping: MappingSpec,
        *,
        uuid: str,
        function: Function,
        connector: QueueConnector,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.mapping = mapping
        self.uuid = uuid
        self.function = function
        self.connector = connector
        self.clock = clock
        self.metrics = metrics
        self.last_processing_result = NO_RECORDS
        self.failing: str | None = None  # why receiving keeps failing, for /health
        self._filter: RecordFilter = compile_filter_criteria(mapping.filter_patterns, "sqs")
        self._limits = BatchLimits(max_records=mapping.batch_size, window_s=float(mapping.window_s))
        self._scaler = SqsScaler(
            ceiling=mapping.maximum_concurrency,
            last_up=clock.now(),
            capped=bool(mapping.scaling_config and mapping.scaling_config.maximum_concurrency),
        )
        self._lanes: set[_Lane] = set()
        self._stopping = asyncio.Event()
        self._lanes_changed = asyncio.Event()
        self._visibility_s = 30
        self._receive_visibility: int | None = None
        self._labels = {"function_name": function.name, "uuid": uuid}

    # -- lifecycle -----------------------------------------------------------------------------

    async def check(self) -> None:
        """Lambda's start-up checks: the queue exists; the function timeout fits its visibility."""
        try:
            visibility = await self.connector.visibility_timeout_s()
        except SourceError as exc:
            raise InvalidParameterValueException(receive_error(exc)) from exc
        timeout = self.function.config.timeout_s
        if visibility < timeout:
            raise InvalidParameterValueException(
                f"Queue visibility timeout: {visibility} seconds is less than Function "
                f"timeout: {timeout} seconds"
            )
        self._visibility_s = visibility
        window = self._limits.window_s
        if window + timeout > visibility:
            # Lambda's rule: the effective visibility becomes window + timeout + 30 s.
            self._receive_visibility = int(window + timeout + 30)

    @property
    def concurrency(self) -> int:
        return len(self._lanes)

    @property
    def in_flight(self) -> int:
        """Batches being invoked (or settled) now."""
        return sum(1 for lane in self._lanes if lane.invoking)

    async def run(self) -> None:
        """Keep as many lanes as the scaler wants until stopped (or cancelled)."""
        try:
            while not self._stopping.is_set():
                while len(self._lanes) < self._scaler.target:
                    lane = _Lane()
                    lane.task = asyncio.create_task(self._lane(lane), name=f"sqs-lane-{self.uuid}")
                    self._lanes.add(lane)
                self._lanes_changed.clear()
                await self._lanes_changed.wait()
        except BaseException:
            # Cancelled or crashed: nobody will drain the lanes gracefully. (A graceful stop
            # ends the loop instead, and :meth:`stop` drains.)
            await asyncio.shield(self._cancel_lanes(invoking_too=True))
            raise

    async def stop(self, deadline_s: float) -> None:
        """Stop receiving; let invoking lanes finish for up to ``deadline_s``; cancel the rest."""
        self._stopping.set()
        self._lanes_changed.set()
        await self._cancel_lanes(invoking_too=False)
        tasks = [lane.task for lane in self._lanes if lane.task]
        if tasks:
            with contextlib.suppress(TimeoutError):
                await self.clock.wait_for(
                    asyncio.gather(*tasks, return_exceptions=True), deadline_s
                )
        await self._cancel_lanes(invoking_too=True)

    async def _cancel_lanes(self, *, invoking_too: bool) -> None:
        tasks = [
            lane.task
            for lane in list(self._lanes)
            if lane.task and (invoking_too or not lane.invoking)
        ]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one lane ------------------------------------------------------------------------------

    async def _lane(self, lane: _Lane) -> None:
        try:
            while not self._stopping.is_set() and len(self._lanes) <= self._scaler.target:
                batch = await self._gather(lane)
                if batch is None:
                    continue
                lane.invoking = True
                try:
                    await self._process(batch)
                finally:
                    lane.invoking = False
        finally:
            self._lanes.discard(lane)
            self._lanes_changed.set()
            if lane.held:
                held, lane.held = lane.held, []
                await asyncio.shield(self.connector.release(held))

    async def _gather(self, lane: _Lane) -> list[Record] | None:
        """Receive until the batch is due; None if stopping, scaled down or nothing came.

        ``lane.held`` always lists the records this lane holds but has not invoked, so a
        cancelled lane can release them.
        """
        builder: BatchBuilder[Record] = BatchBuilder(self._limits)
        carry = builder.offer_all(lane.held, self.clock.now())
        failures = 0
        while not carry and not self._stopping.is_set():
            decision = builder.decide(self.clock.now())
            if isinstance(decision, Flush) or (self._limits.window_s == 0 and builder.records):
                break
            if isinstance(decision, Wait):
                wait_s = min(LONG_POLL_S, math.ceil(decision.until - self.clock.now()))
            else:
                wait_s = LONG_POLL_S
            asked = min(10, builder.room)
            try:
                records = await self.connector.receive(asked, wait_s, self._receive_visibility)
            except SourceError as exc:
                failures += 1
                self.failing = str(exc)
                delay = min(RECEIVE_BACKOFF_MAX_S, 0.5 * 2**failures)
                log.warning("mapping %s: %s; polling again in %.1fs", self.uuid, exc, delay)
                await self.clock.sleep(delay)
                continue
            failures = 0
            self.failing = None
            self._scaler.on_receive(len(records), asked, self.clock.now())
            self._lanes_changed.set()
            if records:
                self.metrics.incr("PolledEventCount", len(records), **self._labels)
                carry = builder.offer_all(await self._filtered(records), self.clock.now())
                lane.held = builder.records + carry
            elif isinstance(decision, Empty) and len(self._lanes) > self._scaler.target:
                break  # scaled down while idle: this lane ends
        lane.held = carry
        if self._stopping.is_set() or not builder.records:
            lane.held = builder.records + carry
            return None
        return builder.records

    async def _filtered(self, records: list[Record]) -> list[Record]:
        if not self._filter:
            return records
        keep: list[Record] = []
        drop: list[Record] = []
        for r in records:
            (keep if self._filter.matches(r.data) else drop).append(r)
        if drop:
            self.metrics.incr("FilteredOutEventCount", len(drop), **self._labels)
            await self.connector.delete(drop)
        return keep

    # -- one batch -----------------------------------------------------------------------------

    async def _process(self, batch: list[Record]) -> None:
        received_at = self.clock.now()
        payload = batch_event(r.raw for r in batch)
        request_id = str(uuidlib.uuid4())
        outcome = await self._invoke(payload, received_at, request_id)
        took_ms = (self.clock.now() - received_at) * 1000
        self.metrics.incr("InvokedEventCount", len(batch), **self._labels)
        self.metrics.observe("BatchSize", len(batch), **self._labels)
        result = None
        if isinstance(outcome, Ok):
            result = parse_batch_response(
                outcome.payload,
                {r.item_id for r in batch},
                report_item_failures=self.mapping.report_item_failures,
            )
        settlement = settle(result, batch, fifo=self.connector.fifo)
        deleted = await self._apply(settlement)
        kind, error = describe(outcome)
        if kind == "ok" and settlement.verdict != "ok":  # reported failures, or a bad response
            kind = "partial" if settlement.verdict == "partial" else "error"
            error = None if kind == "partial" else settlement.reason or None
        self.metrics.invocations.record(
            LoggedInvocation(
                self.clock.now(),
                self.function.name,
                self.uuid,
                request_id,
                kind,
                took_ms,
                **id_range([r.item_id for r in batch]),
                failed=len(settlement.keep) if kind == "partial" else None,
                error=error,
                deleted=deleted,
                left=len(batch) - deleted,
                failed_ids=tuple(r.item_id for r in settlement.keep[:IDS_KEPT]),
            )
        )

    async def _invoke(self, payload: bytes, received_at: float, request_id: str) -> Outcome:
        """Invoke; throttles and unreachable targets are retried while the messages stay hidden."""
        visibility = self._receive_visibility or self._visibility_s
        give_up_at = received_at + visibility - VISIBILITY_MARGIN_S
        attempt = 0
        while True:
            started = self.clock.now()
            outcome = await self.function.invoke(payload, request_id=request_id)
            took_ms = (self.clock.now() - started) * 1000
            count_outcome(self.metrics, self.function.name, outcome, took_ms)
            if isinstance(outcome, Ok | FunctionError):
                return outcome
            attempt += 1
            delay = min(THROTTLE_BACKOFF_MAX_S, 2.0 ** (attempt - 1))
            if self._stopping.is_set() or self.clock.now() + delay >= give_up_at:
                log.warning(
                    "mapping %s: giving up on a batch (%s); its messages return after their "
                    "visibility timeout",
                    self.uuid,
                    outcome,
                )
                return outcome
            await self.clock.sleep(delay)

    async def _apply(self, settlement: Settlement[Record]) -> int:
        """Delete what succeeded; returns how many messages were deleted."""
        if settlement.verdict == "ok":
            self.last_processing_result = OK
        else:
            self.last_processing_result = PROBLEM
            self.metrics.incr(
                "FailedInvokeEventCount",
                len(settlement.keep)
                + (len(settlement.delete) if settlement.verdict == "partial" else 0),
                **self._labels,
            )
        if not settlement.delete:
            return 0
        not_deleted = await asyncio.shield(self.connector.delete(settlement.delete))
        deleted = len(settlement.delete) - len(not_deleted)
        self.metrics.incr("DeletedEventCount", deleted, **self._labels)
        return deleted
