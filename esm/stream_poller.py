"""A Kinesis or DynamoDB Streams mapping: shard discovery, lineage, leases, fair share.

Every ``ShardDiscoverySeconds`` (and whenever a shard finishes) the poller:

1. heartbeats in the mapping's worker group, so daemons sharing one Redis see each other;
2. lists the shards and the checkpoints: where each one stands (:func:`esm.shard_life.standing`)
   — *Ready* when it is not finished (``SHARD_END``) and every parent it names is finished or gone
   from the stream, else *WaitingOnParents* or *ShardEnded*;
3. keeps its fair share: ``ceil(ready / live workers)`` shards. It takes free or expired leases
   up to its share and hands back (gracefully) what it holds beyond it; a lease is only ever
   taken from another owner after it expired. Below its share it reads the mapping's leases once
   and calls ``acquire_lease`` only on the shards they show free, expired or its own, so a daemon
   left below its share (shares that do not divide evenly) costs a few round trips per tick, not
   one per shard;
4. runs one :class:`~esm.shard_consumer.ShardConsumer` per shard it leases.

:attr:`StreamPoller.shard_states` says where every shard of the last listing is, from
:mod:`esm.shard_life` only: the state of its consumer while one runs here, otherwise its standing
(a Ready shard this daemon found leased by another, or was refused, on the last tick is
*LeasedElsewhere*).

A child shard starts from ``TRIM_HORIZON`` (its parents were read to their end); other shards
start from the mapping's ``StartingPosition`` unless a checkpoint says where to resume. A
checkpoint this poller saw that is gone (the store lost its data) is said once, at WARNING: the
shard starts again from there, as Lambda starts a new mapping.

The store failing for a while (Redis restarting, a failover) stops nothing: discovery and lease
renewals are tried again (one WARNING when the outage starts, one INFO when it ends); consumers
keep reading and retry their checkpoints (see :mod:`esm.shard_consumer`). A consumer whose lease
is gone stops, and the shard is leased again when the store answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Literal

from esm.clock import Clock
from esm.config import MappingSpec
from esm.connectors.base import Position, Record, Shard
from esm.destinations.base import DeliveryError, Destination
from esm.errors import EsmError, InvalidParameterValueException, SourceError
from esm.functions import Function
from esm.metrics import Metrics
from esm.records import stream_failure_record, stream_s3_key
from esm.shard_consumer import FailureSender, ShardConsumer, StreamContext, new_request_id
from esm.shard_life import ShardEvent, ShardState, advance, ready, standings
from esm.store import Lease, OutageLog, StoreError
from esm.streams import Attempt

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Running:
    consumer: ShardConsumer
    task: asyncio.Task[None]


class StreamPoller:
    def __init__(self, ctx: StreamContext, *, owner: str, discovery_s: float) -> None:
        self.ctx = ctx
        self.owner = owner
        self._discovery_s = discovery_s
        self._running: dict[str, _Running] = {}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._group = f"mapping:{ctx.uuid}"
        self._shards: list[Shard] | None = None
        self._next_discovery = 0.0
        self._known: dict[str, str] = {}  # the last checkpoint seen of each shard
        self._standing: dict[str, ShardState] = {}  # every listed shard, as of the last tick
        self.failing: str | None = None  # why discovery or the store keeps failing, for /health

    @property
    def last_processing_result(self) -> str:
        return self.ctx.status.get("last", "No records processed")

    @last_processing_result.setter
    def last_processing_result(self, value: str) -> None:
        self.ctx.status["last"] = value

    @property
    def shards(self) -> list[str]:
        """The shards this daemon is consuming now."""
        return sorted(self._running)

    @property
    def shard_states(self) -> dict[str, ShardState]:
        """Every shard of the last listing (and every shard consumed here): its consumer's
        state while one runs here, otherwise where it stood on the last tick."""
        states = dict(self._standing)
        states.update((sid, run.consumer.state) for sid, run in self._running.items())
        return dict(sorted(states.items()))

    @property
    def consumers(self) -> dict[str, ShardConsumer]:
        """The shard consumers running now, by shard id (esm status)."""
        return {sid: run.consumer for sid, run in sorted(self._running.items())}

    async def check(self) -> None:
        """Lambda's start-up check: the stream exists."""
        try:
            await self.ctx.connector.list_shards()
        except SourceError as exc:
            arn = self.ctx.mapping.event_source_arn
            if exc.code == "ResourceNotFoundException":  # Lambda's words
                raise InvalidParameterValueException(f"Stream not found: {arn}") from exc
            raise InvalidParameterValueException(
                f"Stream not readable: {arn} ({exc.code or exc})"
            ) from exc

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        renewals = asyncio.create_task(self._renew_leases(), name=f"leases-{self.ctx.uuid}")
        outage = OutageLog(log, f"mapping {self.ctx.uuid}")
        try:
            while not self._stopping.is_set():
                try:
                    await self._tick()
                except SourceError as exc:
                    self.failing = f"shard discovery failed: {exc}"
                    log.warning("mapping %s: shard discovery failed: %s", self.ctx.uuid, exc)
                except StoreError as exc:
                    self.failing = str(exc)
                    outage.failed(exc)
                else:
                    self.failing = None
                    outage.ok()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    # heartbeats (and lease hand-overs) every third of a lease
                    interval = min(self._discovery_s, self.ctx.lease_ttl_s / 3)
                    await self.ctx.clock.wait_for(self._wake.wait(), interval)
        except BaseException:
            await asyncio.shield(self._cancel_all())
            raise
        finally:
            renewals.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewals

    async def _renew_leases(self) -> None:
        """Every third of a lease, renew the leases of every shard this daemon consumes, in one
        round trip; a consumer whose lease is gone stops. A store error is tried again sooner,
        every tenth of a lease, until the leases run out."""
        ctx = self.ctx
        outage = OutageLog(log, f"mapping {ctx.uuid}: renewing leases")
        pause = ctx.lease_ttl_s / 3
        while True:
            await ctx.clock.sleep(pause)
            pause = ctx.lease_ttl_s / 3
            runs = [r for r in self._running.values() if not r.task.done()]
            if not runs:
                continue
            try:
                renewed = await ctx.store.renew_leases(
                    [r.consumer.lease for r in runs], ctx.lease_ttl_s
                )
            except StoreError as exc:
                outage.failed(exc)
                pause = ctx.lease_ttl_s / 10
                continue
            outage.ok()
            for run, lease in zip(runs, renewed, strict=True):
                if lease is None:
                    run.consumer.lease_lost()
                else:
                    run.consumer.lease = lease

    async def _tick(self) -> None:
        ctx = self.ctx
        self._reap()
        await ctx.store.heartbeat(self._group, self.owner, ctx.lease_ttl_s)
        workers = await ctx.store.live_workers(self._group)
        now = ctx.clock.now()
        if self._shards is None or now >= self._next_discovery or self._wake.is_set():
            self._shards = await ctx.connector.list_shards()
            self._next_discovery = now + self._discovery_s
        shards = self._shards
        checkpoints = await ctx.store.checkpoints(ctx.uuid)
        self._known.update(checkpoints)
        self._standing = standing = standings(shards, checkpoints)
        ready_ids = ready(standing)
        share = math.ceil(len(ready_ids) / max(1, len(workers))) if ready_ids else 0
        mine = [sid for sid in self._running if sid in ready_ids]
        for sid in mine[share:]:  # beyond the fair share: hand back gracefully
            await self._stop_one(sid, deadline_s=ctx.lease_ttl_s)
        if len(self._running) >= share or self._stopping.is_set():
            return
        # Below the share: one read of the leases, then acquire_lease only on the shards it
        # shows free, expired or ours; a shard another daemon holds is skipped without a round
        # trip (else a daemon left below its share by uneven shares would try every shard on
        # every tick). The acquire script still decides: a stale read costs a refusal or a tick.
        held = await ctx.store.leases(ctx.uuid)
        now = ctx.clock.now()
        by_id = {s.shard_id: s for s in shards}
        for sid in ready_ids:
            if len(self._running) >= share or self._stopping.is_set():
                break
            if sid in self._running:
                continue
            info = held.get(sid)
            if info is not None and info.owner != self.owner and info.expires_at > now:
                standing[sid] = advance(standing[sid], ShardEvent.LEASE_REFUSED)
                continue
            lease = await ctx.store.acquire_lease(ctx.uuid, sid, self.owner, ctx.lease_ttl_s)
            if lease is None:
                standing[sid] = advance(standing[sid], ShardEvent.LEASE_REFUSED)
            else:
                standing[sid] = advance(standing[sid], ShardEvent.LEASED)
                self._start(by_id[sid], lease, has_known_parent=_has_parent(by_id[sid], by_id))

    def _start(self, shard: Shard, lease: Lease, *, has_known_parent: bool) -> None:
        m = self.ctx.mapping
        if has_known_parent or m.starting_position == "TRIM_HORIZON":
            initial = Position("TRIM_HORIZON")
        elif m.starting_position == "AT_TIMESTAMP":
            initial = Position("AT_TIMESTAMP", timestamp=m.starting_position_timestamp)
        else:
            initial = Position("LATEST")
        consumer = ShardConsumer(
            self.ctx, shard.shard_id, lease, initial, known=self._known.pop(shard.shard_id, None)
        )
        task = asyncio.create_task(self._consume(consumer), name=f"shard-{shard.shard_id}")
        self._running[shard.shard_id] = _Running(consumer, task)
        log.info(
            "mapping %s: consuming %s (lease token %d)", self.ctx.uuid, shard.shard_id, lease.token
        )

    async def _consume(self, consumer: ShardConsumer) -> None:
        try:
            await consumer.run()
        except EsmError as exc:  # the store failed past the consumer's retries
            log.warning("mapping %s shard %s stopped: %s", self.ctx.uuid, consumer.shard_id, exc)
            await self.ctx.clock.sleep(1.0)
        except Exception:
            log.exception("mapping %s shard %s crashed", self.ctx.uuid, consumer.shard_id)
            self.ctx.status["last"] = "PROBLEM: internal error"
            await self.ctx.clock.sleep(5.0)
        finally:
            if consumer.saved is not None:
                self._known[consumer.shard_id] = consumer.saved
            if not self._stopping.is_set():
                with contextlib.suppress(Exception):
                    await self.ctx.store.release_lease(consumer.lease)
            self._wake.set()

    def _reap(self) -> None:
        for sid, run in list(self._running.items()):
            if run.task.done():
                del self._running[sid]

    # -- stopping ----------------------------------------------------------------------------------

    async def _stop_one(self, shard_id: str, *, deadline_s: float) -> None:
        run = self._running.pop(shard_id, None)
        if run is None:
            return
        run.consumer.request_stop()
        with contextlib.suppress(TimeoutError):
            await self.ctx.clock.wait_for(asyncio.shield(run.task), deadline_s)
        run.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run.task
        with contextlib.suppress(Exception):
            await self.ctx.store.release_lease(run.consumer.lease)

    async def stop(self, deadline_s: float) -> None:
        """Stop reading; in-flight batches finish (checkpointed) up to the deadline; leases go."""
        self._stopping.set()
        self._wake.set()
        await asyncio.gather(
            *(self._stop_one(sid, deadline_s=deadline_s) for sid in list(self._running)),
            return_exceptions=True,
        )

    async def _cancel_all(self) -> None:
        runs = list(self._running.values())
        self._running.clear()
        for run in runs:
            run.task.cancel()
        await asyncio.gather(*(r.task for r in runs), return_exceptions=True)


def _has_parent(shard: Shard, by_id: dict[str, Shard]) -> bool:
    return any(p in by_id for p in shard.parent_ids)


def on_failure_handler(
    *,
    mapping: MappingSpec,
    uuid: str,
    function: Function,
    destination: Destination | None,
    clock: Clock,
    metrics: Metrics,
) -> FailureSender:
    """What a discarded batch becomes: the on-failure record of docs/semantics.md §6.7 on the
    mapping's ``DestinationConfig.OnFailure`` (with the whole event as ``payload`` for S3),
    counted as Lambda counts it (docs/semantics.md §11). A failed delivery is counted and logged;
    the shard moves on."""
    labels = {"function_name": function.name, "uuid": uuid}
    source: Literal["kinesis", "dynamodb"] = (
        "kinesis" if mapping.source == "kinesis" else "dynamodb"
    )
    to_s3 = destination is not None and destination.target.startswith("arn:aws:s3:")

    async def handle(att: Attempt[Record], condition: str, event: bytes, shard_id: str) -> None:
        n = len(att.records)
        first, last = att.records[0], att.records[-1]
        if destination is None:
            metrics.incr("DroppedEventCount", n, **labels)
            log.warning(
                "mapping %s shard %s: discarded %d record(s) %s..%s (%s); no on-failure "
                "destination",
                uuid,
                shard_id,
                n,
                first.item_id,
                last.item_id,
                condition,
            )
            return
        now = clock.now()
        request_id = new_request_id()
        record = stream_failure_record(
            request_id=request_id,
            function_arn=function.arn,
            condition=condition,
            approximate_invoke_count=att.invokes,
            # RecordAgeExceeded records carry no responseContext, even after invocations (as
            # recorded on AWS); RetryAttemptsExhausted ones carry the last answer
            response=att.response if att.invokes and condition != "RecordAgeExceeded" else None,
            source=source,
            shard_id=shard_id,
            start_sequence_number=first.item_id,
            end_sequence_number=last.item_id,
            first_arrival=first.arrival,
            last_arrival=last.arrival,
            batch_size=n,
            stream_arn=mapping.event_source_arn,
            now=now,
            payload=event if to_s3 else None,
        )
        try:
            await destination.send(
                record, s3_key=stream_s3_key(uuid, shard_id, now) if to_s3 else None
            )
        except DeliveryError as exc:
            metrics.incr("DestinationDeliveryFailures", function_name=function.name)
            metrics.incr("DroppedEventCount", n, **labels)
            log.error(
                "mapping %s shard %s: on-failure record %s for %s..%s not delivered: %s",
                uuid,
                shard_id,
                request_id,
                first.item_id,
                last.item_id,
                exc,
            )
            return
        metrics.incr("OnFailureDestinationDeliveredEventCount", n, **labels)
        log.info(
            "mapping %s shard %s: discarded %d record(s) %s..%s (%s) -> %s",
            uuid,
            shard_id,
            n,
            first.item_id,
            last.item_id,
            condition,
            destination.target,
        )

    return handle
