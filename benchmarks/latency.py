"""P6: a new SQS message → handler start, through esm beside a plain long-polling loop, same run.

For each emulator (fauxqs, moto), on a fresh standard queue per side:

- a paced producer sends one message every ``--interval-ms`` (uniform between the two values,
  seeded), each ``SendMessage`` in its own task so a slow call does not hold the pace back; the
  body is ``repr(time.time())`` taken just before the call;
- esm: an :class:`~esm.engine.Engine` (``memory://`` store, ``AwsClients(endpoint_url=…)``) with
  one mapping, BatchSize 10 and ``MaximumBatchingWindowInSeconds`` 0, and the
  ``python:benchmarks.handlers.record_sqs_start`` handler, which notes ``time.time()`` when it
  starts beside each record's send time;
- baseline: one coroutine looping ``ReceiveMessage(MaxNumberOfMessages=10, WaitTimeSeconds=20)``
  → note the time for each message → ``DeleteMessageBatch``, through a plain aiobotocore client.

Each side gets ``--warmup`` seconds to start polling before the producer starts, then the
producer runs ``--seconds``; the side then has up to ``--drain`` seconds to see every message
(those it never saw are ``missing``). Latency is SendMessage call start → handler start (so it
includes the SendMessage round trip: ``send_ms`` gives the producer's own call time).
Producer, consumer and clock share one process and event loop, as a daemon serving its own
producers would. Target: esm p50 < 50 ms.

The sides run in ``--pairs`` interleaved pairs (:mod:`benchmarks.pairs`): ``ratio`` is the median
of the pairs' p50 ratios (esm over baseline, lower is better) with its spread and the load average
before each pair; ``esm_p50_ms`` the median of esm's p50s; CPU seconds per 1,000 messages are this
process's (producer included, on both sides alike). Prints one JSON object per emulator; a side
that fails or passes ``--timeout`` is named in ``errors`` and its pair left out. Queues are
deleted and emulators stopped afterwards.

    python -m benchmarks.latency [--emulators fauxqs moto] [--seconds 10] [--interval-ms 50 100]
                                 [--warmup 1] [--drain 5] [--timeout 60] [--pairs 5] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import time
from typing import Any

from benchmarks import handlers
from benchmarks.machine import machine
from benchmarks.pairs import Sample, add_pairs_argument, cpu_seconds, interleave, spread
from benchmarks.sqs import (
    emulator_version,
    fresh_queue,
    one_mapping,
    plain_client,
    sqs_emulator,
)
from esm.aws import AwsClients
from esm.engine import Engine
from esm.queue_poller import QueuePoller

HANDLER = "python:benchmarks.handlers.record_sqs_start"
TARGET_P50_MS = 50.0


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest rank."""
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def summary(pairs: list[tuple[float, float]], sent: int) -> dict[str, Any]:
    lat = sorted(1000 * (started - sent_at) for sent_at, started in pairs)
    if not lat:
        return {"samples": 0, "missing": sent}
    return {
        "p50_ms": round(percentile(lat, 50), 1),
        "p90_ms": round(percentile(lat, 90), 1),
        "p99_ms": round(percentile(lat, 99), 1),
        "max_ms": round(lat[-1], 1),
        "min_ms": round(lat[0], 1),
        "samples": len(lat),
        "missing": max(0, sent - len({s for s, _ in pairs})),
    }


class Producer:
    """Sends one message every ``interval`` (uniform in the range) for ``seconds``."""

    def __init__(self, client: Any, url: str, args: argparse.Namespace, seed: int) -> None:
        self.client, self.url, self.args = client, url, args
        self.rng = random.Random(seed)
        self.sent = 0
        self.send_ms: list[float] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def _send_one(self) -> None:
        t = time.time()
        t0 = time.perf_counter()
        await self.client.send_message(QueueUrl=self.url, MessageBody=repr(t))
        self.send_ms.append(1000 * (time.perf_counter() - t0))

    async def run(self) -> None:
        lo, hi = self.args.interval_ms
        end = time.perf_counter() + self.args.seconds
        try:
            while time.perf_counter() < end:
                task = asyncio.create_task(self._send_one())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                self.sent += 1
                await asyncio.sleep(self.rng.uniform(lo, hi) / 1000)
            if self._tasks:
                await asyncio.gather(*self._tasks)
        finally:
            for t in self._tasks:
                t.cancel()

    def send_summary(self) -> float | None:
        return round(sorted(self.send_ms)[len(self.send_ms) // 2], 1) if self.send_ms else None


async def _drain(starts: list[tuple[float, float]], sent: int, drain_s: float) -> None:
    for _ in range(int(drain_s / 0.01)):
        if len(starts) >= sent:
            return
        await asyncio.sleep(0.01)


async def esm_side(endpoint: str, client: Any, args: argparse.Namespace) -> dict[str, Any]:
    arn, url = await fresh_queue(client)
    _, config = one_mapping(HANDLER, arn, BatchSize=10, MaximumBatchingWindowInSeconds=0)
    aws = AwsClients(endpoint_url=endpoint)
    engine = Engine(config, aws=aws)
    handlers.SQS_STARTS.clear()
    producer = Producer(client, url, args, seed=1)
    try:
        await engine.start()
        await asyncio.sleep(args.warmup)
        await producer.run()
        await _drain(handlers.SQS_STARTS, producer.sent, args.drain)
        lanes = sum(
            rt.poller.concurrency
            for rt in engine.mappings.values()
            if isinstance(rt.poller, QueuePoller)
        )
    finally:
        await engine.aclose(deadline_s=2)
        await aws.aclose()
        with contextlib.suppress(Exception):
            await client.delete_queue(QueueUrl=url)
    out = summary(list(handlers.SQS_STARTS), producer.sent)
    out["lanes_at_end"] = lanes
    out["send_ms_p50"] = producer.send_summary()
    return out


async def baseline_side(endpoint: str, client: Any, args: argparse.Namespace) -> dict[str, Any]:
    _, url = await fresh_queue(client)
    starts: list[tuple[float, float]] = []
    producer = Producer(client, url, args, seed=1)
    async with plain_client(endpoint, 1) as sqs:

        async def worker() -> None:
            while True:
                resp = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=20
                )
                msgs = resp.get("Messages", [])
                if not msgs:
                    continue
                now = time.time()
                starts.extend((float(m["Body"]), now) for m in msgs)
                await sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(msgs)
                    ],
                )

        task = asyncio.create_task(worker())
        try:
            await asyncio.sleep(args.warmup)
            await producer.run()
            await _drain(starts, producer.sent, args.drain)
            if task.done():
                task.result()  # the worker failed: say why
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                await client.delete_queue(QueueUrl=url)
    out = summary(starts, producer.sent)
    out["send_ms_p50"] = producer.send_summary()
    return out


async def one_emulator(name: str, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "P6-sqs-latency",
        "emulator": name,
        "parameters": {
            "seconds": args.seconds,
            "interval_ms": args.interval_ms,
            "warmup_s": args.warmup,
            "batch_size": 10,
            "batching_window_s": 0,
            "baseline_wait_time_s": 20,
            "pairs": args.pairs,
            "smoke": args.smoke,
        },
    }
    runs: dict[str, list[dict[str, Any]]] = {"esm": [], "baseline": []}

    def side(which: str, endpoint: str, client: Any) -> Any:
        run = esm_side if which == "esm" else baseline_side

        async def measured() -> Sample:
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            got = await asyncio.wait_for(run(endpoint, client, args), args.timeout)
            cpu, seconds = cpu_seconds() - cpu0, time.perf_counter() - t0
            runs[which].append(got)
            if got.get("p50_ms") is None:
                raise RuntimeError(f"no message seen ({got.get('missing')} missing)")
            extra = {k: got.get(k) for k in ("p99_ms", "missing")}
            return Sample(
                units=got["samples"], seconds=seconds, cpu_s=cpu, value=got["p50_ms"], extra=extra
            )

        return measured

    with sqs_emulator(name) as endpoint:
        async with plain_client(endpoint, 16) as client:
            pairs = await interleave(
                side("esm", endpoint, client),
                side("baseline", endpoint, client),
                pairs=args.pairs,
                unit="messages",
                lower_is_better=True,
            )
    pairs["ratio_is"] = "esm p50 / baseline p50 (ms), lower is better"
    pairs["esm_p50_ms"] = pairs.pop("esm_value")
    pairs["baseline_p50_ms"] = pairs.pop("baseline_value")
    result.update(pairs)
    esm_p50, base_p50 = result["esm_p50_ms"], result["baseline_p50_ms"]
    for which in ("esm", "baseline"):
        good = [r for r in runs[which] if r.get("p50_ms") is not None]
        result[which] = {
            "p50_ms_spread": spread([r["p50_ms"] for r in good]),
            "p99_ms_spread": spread([r["p99_ms"] for r in good]),
            "missing": sum(int(r.get("missing", 0)) for r in runs[which]),
            "send_ms_p50": spread([r["send_ms_p50"] for r in good if r.get("send_ms_p50")])[
                "median"
            ],
        }
    result["emulator_version"] = emulator_version(name)
    result["target_p50_ms"] = TARGET_P50_MS
    result["esm_meets_target"] = esm_p50 is not None and esm_p50 < TARGET_P50_MS
    result["p50_vs_baseline_ms"] = (
        round(esm_p50 - base_p50, 1) if esm_p50 is not None and base_p50 is not None else None
    )
    result["machine"] = machine()
    return result


async def main_async(args: argparse.Namespace) -> None:
    for name in args.emulators:
        try:
            out = await one_emulator(name, args)
        except Exception as exc:  # the emulator did not start
            out = {
                "benchmark": "P6-sqs-latency",
                "emulator": name,
                "error": f"{type(exc).__name__}: {exc}",
                "machine": machine(),
            }
        print(json.dumps(out), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--emulators", nargs="+", choices=("fauxqs", "moto"), default=["fauxqs", "moto"])
    p.add_argument("--seconds", type=float, default=10.0, help="producer run per side")
    p.add_argument("--interval-ms", type=float, nargs=2, default=[50.0, 100.0])
    p.add_argument("--warmup", type=float, default=1.0, help="seconds polling before sending")
    p.add_argument("--drain", type=float, default=5.0, help="seconds to wait for the last ones")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per side")
    add_pairs_argument(p)
    p.add_argument("--smoke", action="store_true", help="a quick check: 0.5 s per side, one pair")
    args = p.parse_args()
    if args.smoke:
        args.seconds, args.warmup, args.drain = 0.5, 0.3, 2.0
        args.timeout = min(args.timeout, 20.0)
        args.pairs = 1
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
