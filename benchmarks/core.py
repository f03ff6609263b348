"""P2: the engine core on one core: in-memory SQS, a no-op ``python:`` handler, BatchSize 100.

Each run pre-fills an in-memory queue (on a RealClock; nothing is sent while the engine runs),
starts an :class:`~esm.engine.Engine` (memory:// store, one mapping with BatchSize 100 and
MaximumBatchingWindowInSeconds 1: the queue is full, so every batch fills at once) and measures
records/s from ``engine.start()`` until every message is deleted (``DeletedEventCount``).
Handlers: ``async`` (``benchmarks.handlers.noop_async``, on the loop) and ``sync``
(``benchmarks.handlers.noop``, in the function's thread pool).

The queue is :class:`esm.connectors.memory.MemoryBroker`, the in-memory SQS twin the testing
harness uses: receive, delete and release cost O(log n) (heaps of visible and hidden messages,
an index by receipt handle), and each message becomes a record through
``MemoryMessage.botocore_shape`` + ``esm.events.sqs_record``, as a real receive's would.

Baseline, in the same run: a bare loop that builds the same Lambda SQS events from the same kind
of stored messages in batches of 100, with a JSON round trip (``json.dumps`` + ``json.loads`` of
each event). ``--pairs`` interleaved pairs (:mod:`benchmarks.pairs`: esm first, then the
baseline first, …) so drift hits both alike: ``ratio`` is the median of the pairs' ratios, with
its spread and the load average before each pair; CPU seconds per 1,000 records (process time) of
each side beside the rates, steadier on a shared machine.

Where the esm side's CPU goes: every connector call runs under a meter that adds up the CPU of
its own steps (``connector_cpu_seconds``); ``engine_only_records_per_cpu_s`` is what is left for
the engine (batching, invoke, the handler's event parse, settle, metrics). The pre-filled
messages stand for the SQS server's state, so they are frozen out of the cyclic collector
(``gc.freeze``, as ``esm run`` freezes what exists after start; ``--no-gc-freeze`` to compare).

A run that does not finish within ``--timeout`` is reported with the records it got through
(``completed: false``): the rate is then records deleted / time spent.

Afterwards one esm run (``--profile-handler``, ``--profile-connector``, ``--profile-records``
messages) runs under cProfile; its top costs are reported in ``profile`` (and dumped with
``--profile FILE``).

Prints one JSON object per (connector, handler), then one with the profile.

    python -m benchmarks.core [--records 200000] [--batch-size 100] [--handlers async sync]
                              [--pairs 5] [--timeout 40] [--profile FILE] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import hashlib
import io
import json
import pstats
import time
import uuid
from collections.abc import Coroutine, Generator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.machine import machine

# the interleaving helper every comparison uses (benchmarks.pairs), re-exported for convenience
from benchmarks.pairs import (  # noqa: F401
    Sample,
    add_pairs_argument,
    cpu_seconds,
    interleave,
    interleave_sync,
    load_average,
    summarize,
)
from esm.clock import RealClock
from esm.config import parse_config
from esm.connectors.base import QueueConnector, Record, StreamConnector
from esm.connectors.memory import SENDER_ID, MemoryBroker
from esm.engine import Engine
from esm.queue_poller import QueuePoller

REGION = "us-east-1"
ACCOUNT = "000000000000"
HANDLERS = {
    "async": "python:benchmarks.handlers.noop_async",
    "sync": "python:benchmarks.handlers.noop",
}
TARGET_RATIO = 0.55  # async handler
TARGET_RATIO_SYNC = 0.5
TARGET_RECORDS_PER_S = 100_000

# the checkout this file is in, to shorten profile paths
_PROJECT = str(Path(__file__).resolve().parent.parent) + "/"


def body(i: int) -> str:
    """A small JSON body, as a typical producer sends."""
    return f'{{"order":{i},"status":"created","amount":{i % 997}.5}}'


# -- the baseline ----------------------------------------------------------------------------------


def baseline(records: int, batch_size: int, arn: str, *, freeze: bool = True) -> dict[str, float]:
    """Build Lambda's SQS events from stored messages in batches, each through json.dumps and
    json.loads."""
    sent = time.time()
    stored = [
        (
            str(uuid.uuid4()),
            uuid.uuid4().hex,
            body(i),
            hashlib.md5(body(i).encode()).hexdigest(),
            sent,
        )
        for i in range(records)
    ]
    if freeze:
        gc.collect()
        gc.freeze()
    started = time.perf_counter()
    cpu_started = time.process_time()
    received = 0
    for start in range(0, records, batch_size):
        now_ms = str(int(time.time() * 1000))
        batch = []
        for message_id, handle, text, md5, sent_at in stored[start : start + batch_size]:
            batch.append(
                {
                    "messageId": message_id,
                    "receiptHandle": handle,
                    "body": text,
                    "attributes": {
                        "ApproximateReceiveCount": "1",
                        "SentTimestamp": str(int(sent_at * 1000)),
                        "SenderId": SENDER_ID,
                        "ApproximateFirstReceiveTimestamp": now_ms,
                    },
                    "messageAttributes": {},
                    "md5OfBody": md5,
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": REGION,
                }
            )
        event = json.loads(json.dumps({"Records": batch}))
        received += len(event["Records"])
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    gc.unfreeze()
    assert received == records
    return {
        "records_per_s": records / elapsed,
        "records_per_cpu_s": records / cpu,
        "seconds": elapsed,
        "cpu_seconds": cpu,
    }


# -- esm -----------------------------------------------------------------------------------------


class _Stepped:
    """Awaits ``coro``, adding the CPU time of its own steps (this thread's, between its
    suspensions) to ``meter``: what a connector call costs, without what other tasks do while it
    waits."""

    def __init__(self, coro: Coroutine[Any, Any, Any], meter: Meter) -> None:
        self._coro = coro
        self._meter = meter

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, meter = self._coro, self._meter
        value: Any = None
        error: BaseException | None = None
        while True:
            t0 = time.thread_time()
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as stop:
                meter.cpu_s += time.thread_time() - t0
                return stop.value
            except BaseException:
                meter.cpu_s += time.thread_time() - t0
                raise
            meter.cpu_s += time.thread_time() - t0
            try:
                value, error = (yield yielded), None
            except BaseException as exc:  # thrown in (a cancellation): pass it on
                value, error = None, exc


class Meter:
    """What the connector cost, and when the run must stop feeding the engine."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.deadline = float("inf")  # perf_counter
        self.first_delete_at: float | None = None


class Metered:
    """A QueueConnector around another: counts the CPU its calls take (:class:`Meter`) and, past
    the run's deadline, receives nothing more, so the lanes drain and the run can end even when
    the connector is slow."""

    def __init__(self, inner: QueueConnector, meter: Meter) -> None:
        self._inner = inner
        self._meter = meter
        self.source_arn = inner.source_arn
        self.fifo = inner.fifo

    async def visibility_timeout_s(self) -> int:
        return await self._inner.visibility_timeout_s()

    async def receive(
        self, max_records: int, wait_s: float, visibility_timeout_s: int | None = None
    ) -> list[Record]:
        if time.perf_counter() >= self._meter.deadline:
            await asyncio.sleep(0.05)
            return []
        coro = self._inner.receive(max_records, wait_s, visibility_timeout_s)
        records: list[Record] = await _Stepped(coro, self._meter)
        return records

    async def delete(self, records: Sequence[Record]) -> list[Record]:
        if self._meter.first_delete_at is None:
            self._meter.first_delete_at = time.perf_counter()
        left: list[Record] = await _Stepped(self._inner.delete(records), self._meter)
        return left

    async def release(self, records: Sequence[Record]) -> None:
        await _Stepped(self._inner.release(records), self._meter)

    async def close(self) -> None:
        await self._inner.close()


class MeteredSources:
    def __init__(self, inner: Any, meter: Meter) -> None:
        self._inner = inner
        self._meter = meter

    def queue(self, arn: str) -> QueueConnector:
        return Metered(self._inner.queue(arn), self._meter)

    def stream(self, arn: str, *, invoke_identity_arn: str) -> StreamConnector:
        raise ValueError("queues only")


async def through_esm(
    records: int,
    *,
    batch_size: int,
    handler: str,
    timeout_s: float,
    freeze: bool = True,
    profiler: cProfile.Profile | None = None,
) -> dict[str, Any]:
    clock = RealClock()
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:core-{uuid.uuid4().hex[:8]}"
    fn = "core-" + uuid.uuid4().hex[:8]
    config = parse_config(
        {
            "Settings": {"Region": REGION, "AccountId": ACCOUNT, "Store": "memory://"},
            "Functions": {fn: {"Target": HANDLERS[handler]}},
            "EventSourceMappings": [
                {
                    "FunctionName": fn,
                    "EventSourceArn": arn,
                    "BatchSize": batch_size,
                    "MaximumBatchingWindowInSeconds": 1 if batch_size > 10 else 0,
                }
            ],
        }
    )
    sources = MemoryBroker(clock)
    sources.create_queue(arn)
    for i in range(records):
        sources.send(arn, body(i))
    meter = Meter()
    engine = Engine(config, clock=clock, sources=MeteredSources(sources, meter))

    def deleted() -> int:
        return int(engine.metrics.get("DeletedEventCount"))

    if freeze:
        # The messages stand for the SQS server's state, not the daemon's: keep them out of the
        # cyclic collector, as `esm run` freezes what exists after start (gc.freeze).
        gc.collect()
        gc.freeze()
    if profiler is not None:
        profiler.enable()
    started = time.perf_counter()
    cpu_started = time.process_time()
    meter.deadline = started + timeout_s
    completed = False
    try:
        await engine.start()
        while time.perf_counter() < meter.deadline:
            await asyncio.sleep(0.005)
            if deleted() >= records:
                completed = True
                break
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        done = deleted()
        lanes = max(
            (
                rt.poller.concurrency
                for rt in engine.mappings.values()
                if isinstance(rt.poller, QueuePoller)
            ),
            default=0,
        )
    finally:
        if profiler is not None:
            profiler.disable()
        await engine.aclose(deadline_s=2)
        gc.unfreeze()
    first = meter.first_delete_at
    engine_cpu = max(1e-9, cpu - meter.cpu_s)
    return {
        "records_per_s": done / elapsed,
        "records_per_cpu_s": done / cpu,
        "engine_only_records_per_cpu_s": done / engine_cpu,
        "completed": completed,
        "records_done": done,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "connector_cpu_seconds": meter.cpu_s,
        "connector_cpu_share": meter.cpu_s / cpu if cpu else None,
        "seconds_to_first_delete": None if first is None else first - started,
        "invocations": int(engine.metrics.get("Invocations")),
        "lanes_at_end": lanes,
    }


# -- the profile ---------------------------------------------------------------------------------


def top_costs(
    profiler: cProfile.Profile, n: int = 20, key: str = "tottime_s"
) -> list[dict[str, Any]]:
    stats = pstats.Stats(profiler, stream=io.StringIO())
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in raw.values()) or 1.0
    rows = []
    for (path, line, name), (_cc, calls, tt, ct, _callers) in raw.items():
        short = path.split("/site-packages/")[-1].split(_PROJECT)[-1]
        rows.append(
            {
                "function": f"{short}:{line}({name})",
                "calls": calls,
                "tottime_s": round(tt, 3),
                "cumtime_s": round(ct, 3),
                "self_share": round(tt / total, 3),
            }
        )
    rows.sort(key=lambda r: float(r[key]), reverse=True)
    return rows[:n]


# -- main ----------------------------------------------------------------------------------------


def result(
    args: argparse.Namespace,
    handler: str,
    connector: str,
    records: int,
    summary: dict[str, Any],
    runs: list[dict[str, Any]],
) -> dict[str, Any]:
    runs = sorted(runs, key=lambda r: float(r["records_per_s"]))
    median = runs[len(runs) // 2] if runs else {}
    target = TARGET_RATIO if handler == "async" else TARGET_RATIO_SYNC
    rate, ratio = summary["esm_records_per_s"], summary["ratio"]
    return {
        "benchmark": "P2-core",
        "parameters": {
            "records": records,
            "batch_size": args.batch_size,
            "window_s": 1 if args.batch_size > 10 else 0,
            "handler": HANDLERS[handler],
            "connector": connector,
            "store": "memory://",
            "gc_freeze": args.gc_freeze,
            "pairs": args.pairs,
            "timeout_s": args.timeout,
        },
        **summary,
        "target_ratio": target,
        "target_records_per_s": TARGET_RECORDS_PER_S,
        "meets_target": ratio is not None
        and ratio >= target
        and rate is not None
        and rate >= TARGET_RECORDS_PER_S,
        "esm": {
            k: round(v, 3) if isinstance(v, float) else v
            for k, v in median.items()
            if k not in ("records_per_s", "records_per_cpu_s")
        },
        "machine": machine(),
    }


async def main_async(args: argparse.Namespace) -> None:
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:core-baseline"
    records = args.records
    for handler in args.handlers:
        runs: list[dict[str, Any]] = []

        def base_side() -> Sample:
            got = baseline(records, args.batch_size, arn, freeze=args.gc_freeze)
            return Sample(units=records, seconds=got["seconds"], cpu_s=got["cpu_seconds"])

        async def esm_side(handler: str = handler, runs: list[dict[str, Any]] = runs) -> Sample:
            got = await through_esm(
                records,
                batch_size=args.batch_size,
                handler=handler,
                timeout_s=args.timeout,
                freeze=args.gc_freeze,
            )
            runs.append(got)
            return Sample(
                units=got["records_done"], seconds=got["seconds"], cpu_s=got["cpu_seconds"]
            )

        summary = await interleave(esm_side, base_side, pairs=args.pairs, unit="records")
        print(json.dumps(result(args, handler, "memory", records, summary, runs)), flush=True)
    if args.profile_records <= 0:
        return
    profiler = cProfile.Profile()
    run = await through_esm(
        args.profile_records,
        batch_size=args.batch_size,
        handler=args.profile_handler,
        timeout_s=args.timeout,
        freeze=args.gc_freeze,
        profiler=profiler,
    )
    if args.profile:
        profiler.dump_stats(args.profile)
    print(
        json.dumps(
            {
                "benchmark": "P2-core-profile",
                "parameters": {
                    "records": args.profile_records,
                    "batch_size": args.batch_size,
                    "handler": HANDLERS[args.profile_handler],
                    "connector": "memory",
                },
                "records_per_s_under_cprofile": round(run["records_per_s"], 1),
                "completed": run["completed"],
                "connector_cpu_share": round(run["connector_cpu_share"], 3),
                "top_by_self_time": top_costs(profiler),
                "top_by_cumulative_time": top_costs(profiler, key="cumtime_s"),
            }
        ),
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--records", type=int, default=200_000, help="messages on the queue")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--handlers", nargs="+", choices=tuple(HANDLERS), default=["async", "sync"])
    add_pairs_argument(p)
    p.add_argument("--timeout", type=float, default=40.0, help="seconds per esm run")
    p.add_argument("--profile-records", type=int, default=50_000, help="0: no profile run")
    p.add_argument("--profile-handler", choices=tuple(HANDLERS), default="async")
    p.add_argument("--profile", metavar="FILE", help="also dump the cProfile stats into FILE")
    p.add_argument(
        "--no-gc-freeze",
        dest="gc_freeze",
        action="store_false",
        help="leave the pre-filled messages in the cyclic collector's view",
    )
    p.add_argument("--smoke", action="store_true", help="a few thousand records, for CI")
    args = p.parse_args()
    if args.smoke:
        args.records = min(args.records, 3000)
        args.profile_records = min(args.profile_records, 2000)
        args.timeout = min(args.timeout, 20.0)
        args.pairs = min(args.pairs, 2)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
