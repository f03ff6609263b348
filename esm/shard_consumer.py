"""One shard of a stream mapping, while this daemon holds its lease.

::

    reader ──records──> lane buffers (by partition key) ──> lanes: batch → invoke → decide → act
       │                                                                     │
       └── filtered-out records done at once          checkpoint tracker <───┘ done / discarded
                                                              │
                                   store.save_checkpoint(lease, seq)  (fenced, one round trip)

The reader reads in shard order and hands each record to the lane of its partition key
(``ParallelizationFactor`` lanes; one lane with a tumbling window). A lane runs one batch at a
time through the failure rules of :mod:`esm.streams`. The checkpoint moves when every record
before it is done. When the shard is closed and everything is done the checkpoint becomes
``SHARD_END`` and the consumer finishes, so the shard's children can start.

A lost lease (renewal refused, or a checkpoint write refused by the fencing token) stops the
consumer at once and writes nothing more.

The consumer's :attr:`~ShardConsumer.state` (Starting → Processing → Draining → ShardEnded, or
Stopping → Stopped, or LeaseLost) moves only through :func:`esm.shard_life.advance`; its loops
read it (``stopping``, ``read to its end``) rather than flags of their own.

A store that does not answer (a Redis restart or failover) is waited out: reading the checkpoint
at start and every checkpoint write are tried again with backoff for as long as the lease lasts,
so a batch that succeeded during a blip is checkpointed when the store is back, not read again.
Past the lease's expiry another daemon may own the shard: the consumer stops (lease lost) and
the shard's next owner resumes from the last checkpoint written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid as uuidlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from esm.batching import BatchBuilder, BatchLimits, Flush, Wait
from esm.clock import Clock
from esm.config import MappingSpec
from esm.connectors.base import Position, Record, StreamConnector
from esm.errors import SourceError
from esm.events import batch_event
from esm.filtering import RecordFilter
from esm.functions import Function, FunctionError, Ok, Outcome
from esm.invocation_log import stream_invocation
from esm.metrics import Metrics, count_outcome
from esm.partial import AllSucceeded, BatchFailed, BatchResult, parse_batch_response
from esm.records import ResponseContext as Response
from esm.records import iso_s
from esm.shard_life import ShardEvent, ShardState, advance, is_live
from esm.store import SHARD_END, Lease, Store, StoreUnavailable, retry_unavailable
from esm.streams import (
    Attempt,
    Backoff,
    CheckpointTracker,
    Discard,
    Settle,
    StreamPolicy,
    Window,
    after_invoke,
    before_invoke,
    lane_of,
    parse_window_state,
    window_of,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BUFFERED = 20_000
# GetRecords' Limit: a shard that was caught up is read FIRST_READ records (or one batch, if
# larger) at a time, doubling while more are waiting, up to the connector's ceiling (Kinesis
# 10,000, DynamoDB Streams 1,000); a full read means more are waiting. A backlog's first
# batch is then invoked while the next records are on their way, instead of after the whole of
# a 10,000-record read (~0.5 s on kinesalite); a backlog is still read in calls of 10,000.
FIRST_READ = 1000
MAX_READ = 10_000
RESTART_BACKOFF_MAX_S = 30.0

FailureSender = Callable[[Attempt[Record], str, bytes, str], Awaitable[None]]


IDLE_AFTER_EMPTY_POLLS = 10


def idle_pause(base_s: float, idle_s: float, empty_polls: int) -> float:
    """Lambda's poll rate (``base_s``) while records come; after ``IDLE_AFTER_EMPTY_POLLS``
    empty polls in a row the pause doubles up to ``idle_s``, so hundreds of idle shards cost
    little; the first record after a quiet spell then waits at most ``idle_s``."""
    if empty_polls <= IDLE_AFTER_EMPTY_POLLS or idle_s <= base_s:
        return base_s
    return float(min(idle_s, base_s * 2 ** min(empty_polls - IDLE_AFTER_EMPTY_POLLS, 16)))


class ReadPacer:
    """How much one shard's next read asks for, and how long it waits before it (pure).

    ``size``: FIRST_READ (or one batch, if larger) after the shard was caught up, doubling while
    more records wait, up to ``most`` (the connector's ceiling). The pause after a caught-up read
    is :func:`idle_pause`'s; the first one at the idle rate is a random part of it, so shards that
    went quiet together (all of them, after a start) poll at times of their own, not all in the
    same instant every ``StreamIdlePollSeconds``; records coming in start that over."""

    def __init__(
        self,
        *,
        batch_size: int,
        most: int,
        base_s: float,
        idle_s: float,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._most = most
        self._first = min(most, max(FIRST_READ, batch_size))
        self._base_s = base_s
        self._idle_s = idle_s
        self._uniform = uniform
        self._empty_polls = 0
        self._spread = False
        self.size = self._first

    def after(self, *, got: int, asked: int, behind: bool) -> float | None:
        """After a read that returned ``got`` records of the ``asked`` (``behind``: the source
        says more are waiting): the pause before the next read, None for at once."""
        caught_up = got < asked and not behind
        self.size = self._first if caught_up else min(self._most, self.size * 2)
        self._empty_polls = 0 if got else self._empty_polls + 1
        if got:
            self._spread = False
        if not caught_up:
            return None
        pause = idle_pause(self._base_s, self._idle_s, self._empty_polls)
        if not self._spread and pause >= self._idle_s > self._base_s:
            pause = self._uniform(self._base_s, pause)
            self._spread = True
        return pause


class LeaseLost(Exception):
    """This daemon no longer owns the shard: stop without writing anything."""


@dataclass
class StreamContext:
    """What every shard consumer of one mapping shares."""

    mapping: MappingSpec
    uuid: str
    function: Function
    connector: StreamConnector
    store: Store
    clock: Clock
    metrics: Metrics
    policy: StreamPolicy
    record_filter: RecordFilter
    on_failure: FailureSender  # (attempt, condition, event payload, shard id)
    lease_ttl_s: float
    poll_interval_s: float
    idle_poll_s: float  # the slowest poll of a shard that has been empty for a while
    status: dict[str, str]  # {"last": LastProcessingResult}

    @property
    def labels(self) -> dict[str, str]:
        return {"function_name": self.function.name, "uuid": self.uuid}


class ShardConsumer:
    def __init__(
        self,
        ctx: StreamContext,
        shard_id: str,
        lease: Lease,
        initial: Position,
        *,
        known: str | None = None,
    ) -> None:
        """``initial``: where to start without a checkpoint; ``known``: the checkpoint the
        poller last saw for this shard (gone from the store means the store lost it)."""
        self.ctx = ctx
        self.shard_id = shard_id
        self.lease = lease
        self._initial = initial
        self._known = known
        self.saved: str | None = None  # the last checkpoint this consumer wrote
        m = ctx.mapping
        self._window_s = m.tumbling_window_s
        self._lanes = 1 if self._window_s else m.parallelization_factor
        self._limits = BatchLimits(max_records=m.batch_size, window_s=float(m.window_s))
        self._buffers: list[deque[Record]] = [deque() for _ in range(self._lanes)]
        self._data = [asyncio.Event() for _ in range(self._lanes)]
        self._space = asyncio.Event()
        self._buffered = 0
        self._busy = [False] * self._lanes
        self._tracker = CheckpointTracker()
        self._checkpoint_lock = asyncio.Lock()
        self.state = ShardState.STARTING  # see esm.shard_life; changed only by _advance
        self._stop_signal = asyncio.Event()  # set when the state becomes Stopping: wakes pauses
        self._last_read: str | None = None
        self._window: Window | None = None
        self._window_state: dict[str, Any] = {}
        self._pending_state: dict[str, Any] | None = None  # from the last window response
        self._pending_oversized = False
        self._lease_lost = asyncio.Event()
        self.millis_behind: int | None = None  # the shard's, as of the last read (esm status)

    @property
    def in_flight(self) -> int:
        """Batches being invoked now (up to ParallelizationFactor), for esm status."""
        return sum(self._busy)

    # -- lifecycle ---------------------------------------------------------------------------------

    def _advance(self, event: ShardEvent) -> None:
        self.state = advance(self.state, event)

    def _stopping(self) -> bool:
        return self.state is ShardState.STOPPING

    def _read_done(self) -> bool:
        """The shard is closed and read to its end (and no stop was asked for)."""
        return self.state is ShardState.DRAINING

    def request_stop(self) -> None:
        """Stop reading; in-flight batches finish. A consumer whose life has ended ignores it."""
        if is_live(self.state):
            self._advance(ShardEvent.STOP_REQUESTED)
        self._stop_signal.set()
        for ev in self._data:
            ev.set()
        self._space.set()

    async def run(self) -> None:
        """Read and process until the shard ends, :meth:`request_stop`, or the lease is lost."""
        try:
            await self._run()
        except BaseException:
            if is_live(self.state):
                self._advance(ShardEvent.ABORTED)
            raise

    async def _run(self) -> None:
        ctx = self.ctx
        try:
            checkpoint = await self._retrying(lambda: ctx.store.checkpoint(ctx.uuid, self.shard_id))
            saved = None
            if self._window_s:
                saved = await self._retrying(
                    lambda: ctx.store.window_state(ctx.uuid, self.shard_id)
                )
        except StoreUnavailable as exc:
            log.warning(
                "mapping %s shard %s: not started, the store did not answer while the lease "
                "lasted: %s",
                ctx.uuid,
                self.shard_id,
                exc,
            )
            self._advance(ShardEvent.STORE_UNAVAILABLE)
            return
        if checkpoint == SHARD_END:
            self._advance(ShardEvent.FOUND_SHARD_END)
            return
        self._advance(ShardEvent.CHECKPOINT_READ)
        if checkpoint is None and self._known is not None:
            log.warning(
                "mapping %s shard %s: its checkpoint (%s) is gone, the store lost its data: "
                "reading the shard again from %s",
                ctx.uuid,
                self.shard_id,
                self._known,
                self._initial.type,
            )
        if saved:
            self._window = Window(float(saved["start"]), float(saved["end"]))
            self._window_state = dict(saved["state"])
        position = (
            Position("AFTER_SEQUENCE_NUMBER", sequence_number=checkpoint)
            if checkpoint
            else self._initial
        )
        lost = False
        try:
            async with asyncio.TaskGroup() as tg:
                watch = tg.create_task(self._watch_lease())
                workers = [tg.create_task(self._read(position))]
                workers += [tg.create_task(self._lane(i)) for i in range(self._lanes)]
                await asyncio.wait(workers)
                watch.cancel()
        except* LeaseLost:
            lost = True
        if lost:
            self._advance(ShardEvent.LEASE_LOST)
            log.warning("mapping %s shard %s: lease lost; stopped", ctx.uuid, self.shard_id)
            return
        if self._read_done() and len(self._tracker) == 0:
            try:
                await self._save(SHARD_END, clear_window=True)
            except LeaseLost:
                # Another daemon took the shard between the last batch and SHARD_END: it finds
                # the last checkpoint, reads nothing more and writes SHARD_END itself.
                self._advance(ShardEvent.LEASE_LOST)
                log.warning(
                    "mapping %s shard %s: lease lost before SHARD_END was saved; stopped",
                    ctx.uuid,
                    self.shard_id,
                )
                return
            self._advance(ShardEvent.SHARD_END_SAVED)
            log.info("mapping %s shard %s: finished (SHARD_END)", ctx.uuid, self.shard_id)
        else:
            self._advance(ShardEvent.LOOPS_ENDED)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """A store call, tried again while the store does not answer until the lease expires."""
        clock = self.ctx.clock
        return await retry_unavailable(
            call, clock=clock, until=lambda: clock.now() >= self.lease.expires_at
        )

    def lease_lost(self) -> None:
        """The poller could not renew this shard's lease: stop at once (another daemon may own
        the shard now; the fencing token already refuses this one's checkpoints)."""
        self._lease_lost.set()

    async def _watch_lease(self) -> None:
        await self._lease_lost.wait()
        raise LeaseLost

    # -- reading -----------------------------------------------------------------------------------

    async def _read(self, position: Position) -> None:
        ctx = self.ctx
        iterator: str | None = None
        failures = 0
        pacer = ReadPacer(
            batch_size=self._limits.max_records,
            most=min(MAX_READ, ctx.connector.max_read),
            base_s=ctx.poll_interval_s,
            idle_s=ctx.idle_poll_s,
        )
        while not self._stopping():
            if self._buffered >= MAX_BUFFERED:
                self._space.clear()
                await self._space.wait()
                continue
            try:
                if iterator is None:
                    iterator = await ctx.connector.open(self.shard_id, position)
                limit = max(1, min(pacer.size, MAX_BUFFERED - self._buffered))
                result = await ctx.connector.read(self.shard_id, iterator, limit)
            except SourceError as exc:
                failures += 1
                iterator = None
                position = self._reopen_position(position)
                delay = min(RESTART_BACKOFF_MAX_S, 0.5 * 2 ** min(failures, 16))
                if exc.code == "ExpiredIteratorException":
                    delay = 0.0
                    self._advance(ShardEvent.ITERATOR_EXPIRED)
                else:
                    self._advance(ShardEvent.READ_FAILED)
                log.warning("mapping %s shard %s: %s", ctx.uuid, self.shard_id, exc)
                await self._pause(delay)
                continue
            failures = 0
            self.millis_behind = result.millis_behind
            iterator = result.next_iterator
            if result.records:
                self._take(result.records)
                await self._checkpoint()  # filtered-out records may let it move
            if iterator is None:
                self._advance(ShardEvent.READ_TO_END)
                for ev in self._data:
                    ev.set()
                return
            pause = pacer.after(
                got=len(result.records), asked=limit, behind=bool(result.millis_behind)
            )
            if pause is not None:
                await self._pause(pause)

    def _reopen_position(self, initial: Position) -> Position:
        """After the last record read, else the checkpoint, else where we started."""
        seq = self._last_read or self._tracker.checkpoint
        if seq is not None:
            return Position("AFTER_SEQUENCE_NUMBER", sequence_number=seq)
        return initial

    async def _pause(self, seconds: float) -> None:
        if seconds > 0 and not self._stopping():
            with contextlib.suppress(TimeoutError):
                await self.ctx.clock.wait_for(self._stop_signal.wait(), seconds)

    def _take(self, records: Sequence[Record]) -> None:
        ctx = self.ctx
        ctx.metrics.incr("PolledEventCount", len(records), **ctx.labels)
        self._last_read = records[-1].item_id
        self._tracker.add(r.item_id for r in records)
        flt = ctx.record_filter
        dropped: list[str] = []
        kept: Sequence[Record] = records
        if flt:
            kept = []
            for r in records:
                if flt.matches(r.data):
                    kept.append(r)
                else:
                    dropped.append(r.item_id)
        if self._lanes <= 1:
            self._buffers[0].extend(kept)
            touched: Iterable[int] = (0,) if kept else ()
        else:
            touched = set()
            for r in kept:
                lane = lane_of(r.key, self._lanes)
                self._buffers[lane].append(r)
                touched.add(lane)
        self._buffered += len(kept)
        for lane in touched:
            self._data[lane].set()
        if dropped:
            ctx.metrics.incr("FilteredOutEventCount", len(dropped), **ctx.labels)
            self._tracker.done(dropped)

    # -- one lane ----------------------------------------------------------------------------------

    async def _lane(self, i: int) -> None:
        while not self._stopping():
            batch, window = await self._gather(i)
            if self._stopping():
                return  # not invoked: the next owner reads these again from the checkpoint
            if batch:
                self._busy[i] = True
                try:
                    await self._process(batch, window)
                finally:
                    self._busy[i] = False
            if window is not None and self._window_due(i):
                await self._final_invoke()
            if not batch and self._read_done() and not self._buffers[i]:
                if self._window is not None:
                    await self._final_invoke()
                return

    def _window_due(self, i: int) -> bool:
        """The open window is over: its time has passed, or the next record belongs to a later
        window."""
        w = self._window
        if w is None:
            return False
        buf = self._buffers[i]
        if buf:
            return not w.holds(buf[0].arrival)
        return self.ctx.clock.now() >= w.end

    async def _gather(self, i: int) -> tuple[list[Record], Window | None]:
        buf, data = self._buffers[i], self._data[i]
        builder: BatchBuilder[Record] = BatchBuilder(self._limits)
        window: Window | None = None
        clock = self.ctx.clock
        while not self._stopping():
            if not builder.records and self._window_due(i):
                break  # the final invocation of the open window comes first
            if not self._window_s and buf and builder.room:
                # no tumbling window: a chunk at once (offering one record at a time costs more
                # than the rest of the engine's work per record)
                n = min(builder.room, len(buf))
                chunk = [buf.popleft() for _ in range(n)]
                carry = builder.offer_all(chunk, clock.now())
                buf.extendleft(reversed(carry))
                self._buffered -= n - len(carry)
                self._space.set()
            while buf and builder.room and self._window_s:  # one at a time: windows end
                rec = buf[0]
                w = window_of(rec.arrival, self._window_s)
                if self._window is not None and w != self._window:
                    break  # the open window ends first
                window = self._window = w
                if not builder.offer(rec, clock.now()):
                    break
                buf.popleft()
                self._buffered -= 1
                self._space.set()
            if builder.records and (buf or self._read_done()):
                break  # flush: full, window boundary, or the shard's end
            decision = builder.decide(clock.now())
            if isinstance(decision, Flush) or (self._limits.window_s == 0 and builder.records):
                break
            if self._read_done():
                break
            timeout = decision.until - clock.now() if isinstance(decision, Wait) else None
            if self._window is not None and timeout is None:
                timeout = max(0.0, self._window.end - clock.now())
            data.clear()
            if timeout is None:
                await data.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await clock.wait_for(data.wait(), max(0.0, timeout))
                if not builder.records and self._window_due(i):
                    break
        return builder.records, window or self._window

    # -- one batch through the failure rules -------------------------------------------------------

    async def _process(self, records: list[Record], window: Window | None) -> None:
        ctx = self.ctx
        work: deque[Attempt[Record]] = deque([Attempt(tuple(records))])
        while work:
            att = work.popleft()
            expired = before_invoke(att, now=ctx.clock.now(), policy=ctx.policy)
            if expired is not None:
                await self._discard(expired.attempt, "RecordAgeExceeded", window)
                if expired.rest is not None:
                    work.appendleft(expired.rest)
                continue
            if self._stopping() and att.invokes + att.not_invoked > 0:
                return  # stopping: leave retries to the next owner (nothing checkpointed)
            payload = self._event(att.records, window, final=False, early=False)
            request_id, started = new_request_id(), ctx.clock.now()
            outcome = await self._invoke(payload, att.records, request_id)
            took_ms = (ctx.clock.now() - started) * 1000
            decision = after_invoke(
                att,
                invoked=isinstance(outcome, Ok | FunctionError),
                response=_response(outcome),
                result=self._result(outcome, att, window),
                policy=ctx.policy,
            )
            ctx.metrics.invocations.record(
                stream_invocation(
                    now=ctx.clock.now(),
                    function=ctx.function.name,
                    uuid=ctx.uuid,
                    shard=self.shard_id,
                    request_id=request_id,
                    ids=[r.item_id for r in att.records],
                    outcome=outcome,
                    decision=decision,
                    took_ms=took_ms,
                    on_failure=ctx.mapping.on_failure_arn,
                )
            )
            if isinstance(decision, Settle):
                await self._settle(decision.done, window)
                work.extendleft(reversed(decision.then))
                if decision.then:
                    await self._pause(decision.delay_s)
            elif isinstance(decision, Discard):
                await self._settle(decision.done, window)
                await self._discard(decision.attempt, decision.condition, window)
                work.extendleft(reversed(decision.then))
            elif isinstance(decision, Backoff):
                work.appendleft(decision.attempt)
                await self._pause(decision.delay_s)

    def _result(
        self, outcome: Outcome, att: Attempt[Record], window: Window | None
    ) -> BatchResult | None:
        if not isinstance(outcome, Ok):
            return None
        result = self._parse(outcome, att, window)
        if not isinstance(result, AllSucceeded):
            # docs/semantics.md §11: an invocation whose response has a non-empty
            # batchItemFailures (or that Lambda cannot accept) is a failed one for
            # FailedInvokeEventCount too.
            self.ctx.metrics.incr("FailedInvokeEventCount", len(att.records), **self.ctx.labels)
        return result

    def _parse(self, outcome: Ok, att: Attempt[Record], window: Window | None) -> BatchResult:
        ctx = self.ctx
        if window is not None:
            parsed = parse_window_state(outcome.payload)
            if parsed.state is None:
                log.info("mapping %s: window invocation failed: %s", ctx.uuid, parsed.error)
                return BatchFailed(parsed.error)
            self._pending_state = parsed.state
            self._pending_oversized = parsed.oversized
        return parse_batch_response(
            outcome.payload,
            {r.item_id for r in att.records},
            report_item_failures=ctx.policy.report_item_failures,
        )

    async def _invoke(
        self, payload: bytes, records: Sequence[Record], request_id: str | None = None
    ) -> Outcome:
        ctx = self.ctx
        if records:
            age_ms = max(0.0, (ctx.clock.now() - records[-1].arrival) * 1000)
            ctx.metrics.set("IteratorAge", age_ms, **ctx.labels)
            ctx.metrics.incr("InvokedEventCount", len(records), **ctx.labels)
            ctx.metrics.observe("BatchSize", len(records), **ctx.labels)
        started = ctx.clock.now()
        outcome = await ctx.function.invoke(payload, request_id=request_id)
        count_outcome(ctx.metrics, ctx.function.name, outcome, (ctx.clock.now() - started) * 1000)
        if isinstance(outcome, Ok):
            ctx.status["last"] = "OK"
        elif isinstance(outcome, FunctionError):
            ctx.status["last"] = "PROBLEM: Function call failed"
            ctx.metrics.incr("FailedInvokeEventCount", len(records), **ctx.labels)
        return outcome

    def _event(
        self, records: Sequence[Record], window: Window | None, *, final: bool, early: bool
    ) -> bytes:
        if window is None:
            return batch_event(r.raw for r in records)
        extra = orjson.dumps(
            {
                "window": {"start": iso_s(window.start), "end": iso_s(window.end)},
                "state": self._window_state,
                "shardId": self.shard_id,
                "eventSourceARN": self.ctx.mapping.event_source_arn,
                "isFinalInvokeForWindow": final,
                "isWindowTerminatedEarly": early,
            }
        )
        return batch_event(r.raw for r in records)[:-1] + b"," + extra[1:]

    async def _settle(self, done: Sequence[Record], window: Window | None) -> None:
        if not done:
            return
        if window is not None and self._pending_state is not None:
            self._window_state = self._pending_state
            self._pending_state = None
            if self._pending_oversized:
                await self._final_invoke(early=True)
        self._tracker.done(r.item_id for r in done)
        await self._checkpoint()

    async def _discard(self, att: Attempt[Record], condition: str, window: Window | None) -> None:
        ctx = self.ctx
        payload = self._event(att.records, window, final=False, early=False)
        await ctx.on_failure(att, condition, payload, self.shard_id)
        self._tracker.done(r.item_id for r in att.records)
        await self._checkpoint()

    async def _final_invoke(self, *, early: bool = False) -> None:
        """The window's last invocation: no records, ``isFinalInvokeForWindow``; retried until it
        succeeds (the shard waits, docs/semantics.md §6.9)."""
        window = self._window
        if window is None:
            return
        attempt = 0
        while not self._stopping():
            outcome = await self._invoke(self._event((), window, final=True, early=early), ())
            if isinstance(outcome, Ok) and parse_window_state(outcome.payload).state is not None:
                break
            attempt += 1
            await self._pause(min(RESTART_BACKOFF_MAX_S, 2.0 ** min(attempt - 1, 16)))
        else:
            return
        self._window_state = {}
        if not early:
            self._window = None
        await self._checkpoint(force=True)

    # -- checkpoints -------------------------------------------------------------------------------

    async def _checkpoint(self, *, force: bool = False) -> None:
        async with self._checkpoint_lock:
            seq = self._tracker.advance()
            if seq is None and force:
                seq = self._tracker.checkpoint
            if seq is None:
                return
            await self._save(seq)

    async def _save(self, seq: str, *, clear_window: bool = False) -> None:
        ctx = self.ctx
        window = None
        if self._window_s and not clear_window:
            if self._window is None:
                clear_window = True
            else:
                window = {
                    "start": self._window.start,
                    "end": self._window.end,
                    "state": self._window_state,
                }
        try:
            ok = await self._retrying(
                lambda: asyncio.shield(
                    ctx.store.save_checkpoint(
                        self.lease, seq, window=window, clear_window=clear_window
                    )
                )
            )
        except StoreUnavailable as exc:
            log.warning(
                "mapping %s shard %s: checkpoint %s not saved, the store did not answer while "
                "the lease lasted: %s",
                ctx.uuid,
                self.shard_id,
                seq,
                exc,
            )
            raise LeaseLost from exc
        if not ok:
            raise LeaseLost
        self.saved = seq


def _response(outcome: Outcome) -> Response | None:
    if isinstance(outcome, Ok):
        return Response(executed_version=outcome.executed_version)
    if isinstance(outcome, FunctionError):
        return Response(executed_version=outcome.executed_version, function_error=outcome.kind)
    return None


def new_request_id() -> str:
    return str(uuidlib.uuid4())
