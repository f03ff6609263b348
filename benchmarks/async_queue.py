"""P3: the async queue (``Invoke(InvocationType=Event)``) through esm beside arq, same run.

Everything runs against the real Redis at ``redis://127.0.0.1:6379/0``; each run has a private
``StorePrefix`` (esm) or queue name and job ids (arq), and deletes its keys afterwards (by
pattern, never FLUSHDB).

Drain (one JSON object per ``--concurrency`` value):

- esm: a *producer* :class:`~esm.engine.Engine` that is never started (its functions are built
  with :func:`esm.functions.build_functions`, so ``invoke_event`` works but no async worker runs)
  enqueues ``--events`` events through ``engine.invoke_event`` from ``--enqueue-concurrency``
  coroutines: ``enqueue_events_per_s``. Then a second Engine on the same prefix (RealClock,
  ``AsyncConcurrency`` = the concurrency, one function with the no-op async ``python:`` handler
  and ``EventInvokeConfig.DestinationConfig.OnSuccess`` = ``memory://bench``) is started, and the
  clock runs from just before ``engine.start()`` until the last success record reaches the memory
  destination (counted as it arrives; ``engine.memory.records("bench")`` is checked once
  afterwards): ``esm_events_per_s``.
- arq: the same number of no-op jobs enqueued with ``enqueue_job`` (same producer concurrency),
  then an arq ``Worker`` (``max_jobs`` = the concurrency, burst mode, results kept as arq does by
  default, ``log_results`` off) runs from just before ``worker.main()`` until it returns (burst:
  the queue is empty and every job has finished): ``baseline_arq_jobs_per_s``.

Latency (one JSON object): an Engine with ``AsyncConcurrency`` = the first concurrency value,
a paced producer calling ``engine.invoke_event`` at ``--rate`` events/s for ``--seconds`` (each
call in its own task, so a slow XADD does not hold the pace back); the payload carries
``time.time()`` taken just before the call and the handler (``benchmarks.handlers.record_start``)
notes ``time.time()`` when it starts. Producer and engine share one process and event loop, as
the HTTP API and the engine do in the daemon.

Drains run in ``--pairs`` interleaved pairs (:mod:`benchmarks.pairs`: esm first, then arq first,
…): ``ratio`` is the median of the pairs' ratios with its spread, the load average before each
pair, and each side's CPU seconds per 1,000 events (this process: Redis excluded; esm's producer
and arq's enqueue are not in the window). The latency run is repeated ``--pairs`` times: the
median p50 and p99 with their spread.

Every phase is bounded by ``--timeout``; a phase that fails or times out prints its object with an
``error`` field instead. What esm logs at WARNING or above during a phase is counted into
``esm_log``; events still claimed after a drain (completions that failed) are an ``error``, and
such a sample does not count in the medians. Past about 100 Redis commands at once (the producer
coroutines, or ``AsyncConcurrency`` completions), redis-py 8's connection pool refuses
(``MaxConnectionsError``): keep ``--enqueue-concurrency`` below that.

    python -m benchmarks.async_queue [--events 20000] [--rate 500] [--seconds 10]
                                     [--concurrency 64 256] [--enqueue-concurrency 64]
                                     [--pairs 5] [--arq-poll-delay 0.05] [--timeout 180]
                                     [--profile FILE] [--skip-latency]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import logging
import math
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from redis.asyncio import Redis

from benchmarks import handlers
from benchmarks.machine import machine
from benchmarks.pairs import (
    Sample,
    add_pairs_argument,
    cpu_seconds,
    interleave,
    load_average,
    spread,
)
from esm.clock import RealClock
from esm.config import EsmConfig, parse_config
from esm.destinations.memory import MemoryDestinations
from esm.engine import Engine
from esm.functions import build_functions

REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 0
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
FUNCTION = "bench"
DESTINATION = "bench"
NOOP = "python:benchmarks.handlers.noop_async"
RECORD_START = "python:benchmarks.handlers.record_start"


class LogTally(logging.Handler):
    """Counts what is logged at WARNING and above during a phase (instead of printing it), by
    message and exception; the five most frequent are reported."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        key = f"{record.levelname} {record.getMessage()}" + (
            f": {type(exc).__name__}: {exc}" if exc else ""
        )
        self.counts[key] = self.counts.get(key, 0) + 1


@contextlib.contextmanager
def logs_tallied(into: dict[str, Any]) -> Iterator[None]:
    """esm's warnings and errors during the block, counted into ``into["esm_log"]``."""
    tally = LogTally()
    root = logging.getLogger()
    root.addHandler(tally)
    try:
        yield
    finally:
        root.removeHandler(tally)
        if tally.counts:
            into["esm_log"] = dict(sorted(tally.counts.items(), key=lambda kv: -kv[1])[:5])


def _tag() -> str:
    return "esmbench-p3-" + uuid.uuid4().hex[:8]


def esm_config(prefix: str, concurrency: int, target: str) -> EsmConfig:
    return parse_config(
        {
            "Settings": {
                "Store": REDIS_URL,
                "StorePrefix": prefix,
                "AsyncConcurrency": concurrency,
            },
            "Functions": {
                FUNCTION: {
                    "Target": target,
                    "EventInvokeConfig": {
                        "DestinationConfig": {
                            "OnSuccess": {"Destination": f"memory://{DESTINATION}"}
                        }
                    },
                }
            },
        }
    )


class CountingMemory(MemoryDestinations):
    """The memory destinations, counting ``bench`` records as they arrive (``records()`` copies
    every record through JSON: too dear to poll)."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.count = 0
        self.done = asyncio.Event()

    def add_record(self, name: str, record: dict[str, Any]) -> None:
        super().add_record(name, record)
        if name == DESTINATION:
            self.count += 1
            if self.count >= self.expected:
                self.done.set()


async def delete_keys(pattern: str) -> list[str]:
    """Delete every key matching ``pattern``; the keys found (sorted)."""
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        keys = sorted([k async for k in redis.scan_iter(match=pattern, count=1000)])
        for i in range(0, len(keys), 1000):
            await redis.delete(*keys[i : i + 1000])
        return keys
    finally:
        await redis.aclose()


async def fan_out(n: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> float:
    """``one(i)`` for i in range(n) from ``concurrency`` coroutines; seconds taken."""
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(n, concurrency))))
    return time.perf_counter() - started


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest rank."""
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


# -- drain: esm ----------------------------------------------------------------------------------


async def settled(engine: Engine, deadline_s: float = 5.0) -> dict[str, int]:
    """Once nothing is in flight (or ``deadline_s`` passed): the queue's depth. ``claimed`` left
    over means completions that failed (the events would run again after the visibility
    timeout)."""
    depth: dict[str, int] = {}
    for _ in range(int(deadline_s / 0.01)):
        # completions leave the queue a loop tick after the invocation (one batched round trip)
        if not engine.async_worker.in_flight:
            depth = await engine.async_queue.depth()
            if not any(depth.values()):
                return depth
        await asyncio.sleep(0.01)
    return depth or await engine.async_queue.depth()


async def esm_drain(
    n: int, concurrency: int, enqueue_concurrency: int, profiler: cProfile.Profile | None
) -> dict[str, Any]:
    prefix = _tag()
    config = esm_config(prefix, concurrency, NOOP)
    clock = RealClock()
    producer = Engine(config, clock=clock)
    # Never started: no async worker claims what it enqueues. invoke_event needs its functions.
    producer.functions = build_functions(config, clock=clock, aws=producer.aws)
    memory = CountingMemory(n)
    engine = Engine(config, clock=clock, memory=memory)
    payloads = [b'{"i":%d}' % i for i in range(n)]
    out: dict[str, Any] = {}
    try:
        with logs_tallied(out):

            async def enqueue(i: int) -> None:
                await producer.invoke_event(FUNCTION, payloads[i])

            enqueue_s = await fan_out(n, enqueue_concurrency, enqueue)
            depth = await producer.async_queue.depth()
            if depth["ready"] != n:
                raise RuntimeError(f"{depth['ready']} events ready after enqueueing {n}")
            if profiler is not None:
                profiler.enable()
            try:
                cpu0 = cpu_seconds()
                started = time.perf_counter()
                await engine.start()
                await memory.done.wait()
                drain_s = time.perf_counter() - started
                cpu_s = cpu_seconds() - cpu0
            finally:
                if profiler is not None:
                    profiler.disable()
            left = await settled(engine)
        records = engine.memory.records(DESTINATION)
        conditions = {r["requestContext"]["condition"] for r in records}
        out.update(
            {
                "events_per_s": n / drain_s,
                "drain_s": drain_s,
                "cpu_s": cpu_s,
                "enqueue_events_per_s": n / enqueue_s,
                "enqueue_s": enqueue_s,
                "invocations": int(engine.metrics.get("Invocations")),
                "left_in_queue": left,
            }
        )
        problems = []
        if len(records) != n or conditions != {"Success"}:
            problems.append(f"{len(records)} records ({sorted(conditions)}) for {n} events")
        if any(left.values()):
            problems.append(f"left in the queue after the drain: {left}")
        if problems:
            out["error"] = "; ".join(problems)
    finally:
        await engine.aclose(deadline_s=2)
        await producer.aclose(deadline_s=0)
        out["keys_deleted"] = len(await delete_keys(f"{prefix}:*"))
    return out


# -- drain: arq ----------------------------------------------------------------------------------


async def arq_drain(
    n: int, concurrency: int, enqueue_concurrency: int, poll_delay: float
) -> dict[str, Any]:
    from arq.connections import RedisSettings, create_pool
    from arq.worker import Worker, func

    tag = _tag()
    queue = f"arq:queue:{tag}"
    pool = await create_pool(
        RedisSettings(host=REDIS_HOST, port=REDIS_PORT, database=REDIS_DB),
        default_queue_name=queue,
    )
    worker: Worker | None = None
    out: dict[str, Any] = {}
    try:

        async def enqueue(i: int) -> None:
            if await pool.enqueue_job("noop", {"i": i}, _job_id=f"{tag}-{i}") is None:
                raise RuntimeError(f"arq refused job {i}")

        enqueue_s = await fan_out(n, enqueue_concurrency, enqueue)
        worker = Worker(
            functions=[func(handlers.arq_noop, name="noop")],
            redis_pool=pool,
            queue_name=queue,
            burst=True,
            max_jobs=concurrency,
            poll_delay=poll_delay,
            handle_signals=False,
            log_results=False,
        )
        cpu0 = cpu_seconds()
        started = time.perf_counter()
        await worker.main()
        drain_s = time.perf_counter() - started
        cpu_s = cpu_seconds() - cpu0
        if worker.jobs_complete != n or worker.jobs_failed:
            raise RuntimeError(
                f"arq: {worker.jobs_complete} complete, {worker.jobs_failed} failed of {n}"
            )
        out = {
            "jobs_per_s": n / drain_s,
            "drain_s": drain_s,
            "cpu_s": cpu_s,
            "enqueue_jobs_per_s": n / enqueue_s,
        }
    finally:
        if worker is not None:
            await worker.close()  # closes the pool too
        else:
            await pool.aclose()
        out["keys_deleted"] = len(await delete_keys(f"arq:*{tag}*"))
    return out


# -- latency -------------------------------------------------------------------------------------


async def paced(
    engine: Engine, rate: float, total: int, calls: list[float]
) -> tuple[float, list[BaseException]]:
    """``total`` events through ``engine.invoke_event`` at ``rate`` a second, each call in its own
    task (open loop: a slow call does not hold the pace back); seconds taken and the failures.
    Each payload carries ``time.time()`` taken just before its call."""

    async def one(i: int) -> None:
        t = time.time()
        await engine.invoke_event(FUNCTION, orjson.dumps({"i": i, "t": t}))
        calls.append(time.time() - t)

    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    interval = 1.0 / rate
    begun = loop.time()
    for i in range(total):
        delay = begun + i * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    produced_s = loop.time() - begun
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return produced_s, [r for r in results if isinstance(r, BaseException)]


async def esm_latency(rate: float, seconds: float, concurrency: int) -> dict[str, Any]:
    prefix = _tag()
    config = esm_config(prefix, concurrency, RECORD_START)
    handlers.STARTS.clear()
    engine = Engine(config, clock=RealClock())
    total = int(rate * seconds)
    calls: list[float] = []  # how long each invoke_event took (the XADD round trip and around)
    out: dict[str, Any] = {}
    try:
        with logs_tallied(out):
            await engine.start()
            # Warm-up: the handler's module is imported on the first call.
            await engine.invoke_event(FUNCTION, orjson.dumps({"i": -1, "t": time.time()}))
            for _ in range(500):
                if handlers.STARTS:
                    break
                await asyncio.sleep(0.01)
            handlers.STARTS.clear()
            # as `esm run` does once started: what exists now is kept out of the cyclic
            # collector, whose full passes would otherwise stall the loop
            gc.collect()
            gc.freeze()

            produced_s, failed = await paced(engine, rate, total, calls)
            enqueued = total - len(failed)
            for _ in range(1000):  # 10 s at most
                if len(handlers.STARTS) >= enqueued:
                    break
                await asyncio.sleep(0.01)
            left = await settled(engine)
        lat = sorted((start - enq) * 1000 for enq, start in handlers.STARTS)
        call_ms = sorted(c * 1000 for c in calls)
        out.update(
            {
                "events": total,
                "achieved_rate": total / produced_s,
                "enqueue_failures": len(failed),
                "handlers_started": len(lat),
                "left_in_queue": left,
            }
        )
        if lat:
            out.update(
                {
                    "p50_ms": percentile(lat, 50),
                    "p90_ms": percentile(lat, 90),
                    "p99_ms": percentile(lat, 99),
                    "max_ms": lat[-1],
                }
            )
        if call_ms:
            out["invoke_event_p50_ms"] = percentile(call_ms, 50)
            out["invoke_event_p99_ms"] = percentile(call_ms, 99)
        problems = []
        if failed:
            problems.append(f"{len(failed)} invoke_event calls failed, first: {failed[0]!r}")
        if len(lat) < enqueued:
            problems.append(f"{len(lat)} handlers started for {enqueued} events enqueued")
        if any(left.values()):
            problems.append(f"left in the queue: {left}")
        if problems:
            out["error"] = "; ".join(problems)
    finally:
        gc.unfreeze()
        await engine.aclose(deadline_s=2)
        out["keys_deleted"] = len(await delete_keys(f"{prefix}:*"))
    return out


# -- the runs ------------------------------------------------------------------------------------


async def bounded(coro: Awaitable[dict[str, Any]], limit_s: float) -> dict[str, Any]:
    """The phase's result, or ``{"error": …}`` when it fails or takes longer than ``limit_s``."""
    try:
        return await asyncio.wait_for(coro, limit_s)
    except TimeoutError:
        return {"error": f"timed out after {limit_s} s"}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _round(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}


async def drain(args: argparse.Namespace, concurrency: int) -> dict[str, Any]:
    """``--pairs`` interleaved esm/arq drains; a drain with an error (completions that failed,
    events left) fails its side, and its pair is left out of the medians."""
    esm_samples: list[dict[str, Any]] = []
    arq_samples: list[dict[str, Any]] = []

    async def esm_side() -> Sample:
        r = await bounded(
            esm_drain(args.events, concurrency, args.enqueue_concurrency, args.profiler),
            args.timeout,
        )
        esm_samples.append(r)
        if "error" in r:
            raise RuntimeError(r["error"])
        extra = {"enqueue_events_per_s": round(r["enqueue_events_per_s"], 1)}
        return Sample(units=args.events, seconds=r["drain_s"], cpu_s=r["cpu_s"], extra=extra)

    async def arq_side() -> Sample:
        r = await bounded(
            arq_drain(args.events, concurrency, args.enqueue_concurrency, args.arq_poll_delay),
            args.timeout,
        )
        arq_samples.append(r)
        if "error" in r:
            raise RuntimeError(r["error"])
        extra = {"enqueue_jobs_per_s": round(r["enqueue_jobs_per_s"], 1)}
        return Sample(units=args.events, seconds=r["drain_s"], cpu_s=r["cpu_s"], extra=extra)

    summary = await interleave(esm_side, arq_side, pairs=args.pairs, unit="events")
    esm_runs = [r for r in esm_samples if "error" not in r]
    arq_runs = [r for r in arq_samples if "error" not in r]
    result: dict[str, Any] = {
        "benchmark": "P3-async-drain",
        "parameters": {
            "events": args.events,
            "esm_async_concurrency": concurrency,
            "arq_max_jobs": concurrency,
            "arq_poll_delay_s": args.arq_poll_delay,
            "arq_keep_result_s": 3600,
            "enqueue_concurrency": args.enqueue_concurrency,
            "handler": NOOP,
            "on_success": f"memory://{DESTINATION}",
            "pairs": args.pairs,
            "redis": REDIS_URL,
        },
        **summary,
        "baseline_arq_jobs_per_s": summary["baseline_events_per_s"],
        "target_ratio": 5.0,
        "enqueue_events_per_s": (
            round(statistics.median(r["enqueue_events_per_s"] for r in esm_runs), 1)
            if esm_runs
            else None
        ),
        "baseline_arq_enqueue_jobs_per_s": (
            round(statistics.median(r["enqueue_jobs_per_s"] for r in arq_runs), 1)
            if arq_runs
            else None
        ),
        "machine": machine(),
    }
    if summary.get("errors"):
        result["error"] = "; ".join(summary["errors"])
    return result


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    """``--pairs`` latency runs (no baseline to pair with: the same run repeated, the load
    average before each): the median p50 and p99 of the runs, with their spread."""
    concurrency = args.concurrency[0]
    runs: list[dict[str, Any]] = []
    loads: list[float | None] = []
    errors: list[str] = []
    for _ in range(args.pairs):
        loads.append(load_average())
        cpu0 = cpu_seconds()
        r = await bounded(esm_latency(args.rate, args.seconds, concurrency), args.timeout)
        r["cpu_s_per_1k_events"] = (cpu_seconds() - cpu0) / max(1, r.get("events", 0)) * 1000
        if "error" in r:
            errors.append(r["error"])
        runs.append(r)
    good = [r for r in runs if "error" not in r and "p99_ms" in r]
    result: dict[str, Any] = {
        "benchmark": "P3-async-latency",
        "parameters": {
            "rate": args.rate,
            "seconds": args.seconds,
            "runs": args.pairs,
            "esm_async_concurrency": concurrency,
            "handler": RECORD_START,
            "on_success": f"memory://{DESTINATION}",
            "redis": REDIS_URL,
        },
        "p50_ms": spread([r["p50_ms"] for r in good])["median"],
        "p99_ms": spread([r["p99_ms"] for r in good])["median"],
        "p50_ms_spread": spread([r["p50_ms"] for r in good]),
        "p99_ms_spread": spread([r["p99_ms"] for r in good]),
        "max_ms": max((r["max_ms"] for r in good), default=None),
        "cpu_s_per_1k_events": spread([r["cpu_s_per_1k_events"] for r in good])["median"],
        "load_avg_1m": loads,
        "target_p99_ms": 10,
        "runs": [_round(r) for r in runs],
        "machine": machine(),
    }
    if errors:
        result["error"] = "; ".join(errors)
    return result


async def main_async(args: argparse.Namespace) -> None:
    for concurrency in args.concurrency:
        print(json.dumps(await drain(args, concurrency)), flush=True)
    if not args.skip_latency:
        print(json.dumps(await latency(args)), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=20000, help="events per drain run")
    p.add_argument("--rate", type=float, default=500.0, help="latency: events/s")
    p.add_argument("--seconds", type=float, default=10.0, help="latency: how long to produce")
    p.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[64, 256],
        help="esm AsyncConcurrency = arq max_jobs; one drain object each (latency: the first)",
    )
    p.add_argument(
        "--enqueue-concurrency",
        type=int,
        default=64,
        help="producer coroutines (esm's Redis pool refuses more than 100 commands at once)",
    )
    add_pairs_argument(p)
    p.add_argument(
        "--arq-poll-delay",
        type=float,
        default=0.05,
        help="arq Worker poll_delay (arq's default 0.5 s sleeps between reads of its queue; "
        "0.05 drained fastest here)",
    )
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per phase")
    p.add_argument("--profile", metavar="FILE", help="cProfile the esm drains into FILE")
    p.add_argument("--skip-latency", action="store_true")
    args = p.parse_args()
    args.profiler = cProfile.Profile() if args.profile else None
    try:
        asyncio.run(main_async(args))
    finally:
        if args.profiler is not None:
            with contextlib.suppress(Exception):
                args.profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
