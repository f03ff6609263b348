"""P1: SQS throughput through esm beside a plain aiobotocore receive/handle/delete loop, same run.

Both sides consume ``--messages`` messages from a fresh queue of their own on the same emulator,
with the same concurrency and the same 20 ms handler (an ``async`` sleep), BatchSize 10:

- baseline: ``--concurrency`` coroutines, each ``ReceiveMessage(MaxNumberOfMessages=10,
  WaitTimeSeconds=20)`` → ``asyncio.sleep(handler)`` → ``DeleteMessageBatch``, through a plain
  aiobotocore client of its own (botocore's default settings, not esm's ``AwsClients``, so a
  change to esm's client settings shows in the ratio); the clock runs from the client's
  creation (as esm's clock includes ``engine.start()``) to the last delete;
- esm: an :class:`~esm.engine.Engine` (``memory://`` store, its own ``AwsClients(endpoint_url=…)``)
  with one mapping (BatchSize 10, ``ScalingConfig.MaximumConcurrency`` = ``--concurrency``) and
  the ``python:benchmarks.handlers.sleep_async_first`` handler; the clock runs from just before
  ``engine.start()`` (its start-up checks included) until its ``DeletedEventCount`` reaches the
  count (polled every 5 ms).

How the queue is fed:

- ``--emulator fauxqs`` (default): each queue is filled with every message *before* its side
  starts (``SendMessageBatch``, 8 at a time, untimed: ``fill_msgs_per_s``); fauxqs does not slow
  down with depth, so both sides read a full queue from the first receive;
- ``--emulator moto``: moto's cost grows with queue depth, so a paced producer sends in tens
  during the timed section and stays at most 200 messages ahead of the consumer (and the default
  count is smaller). moto is for behaviour: its figures say little about esm.

``seconds_to_first_batch`` is from the side's start to its first handler call. esm starts with 5
concurrent batches and adds 5 a second while receives come back full (Lambda's scaling,
:mod:`esm.scaling`): ``esm.seconds_to_full_concurrency`` says when it reached the ceiling and
``esm.steady_msgs_per_s`` is its rate from then on. ``cpu_s_per_1k_msgs`` is this process's CPU
time (both cores; the emulator runs in another process) per 1,000 messages, and ``cpu_ratio`` the
baseline's over esm's: what the throughput ratio tends to when this process is CPU-bound (as it
is when the emulator and other work leave it less than a core), and a figure that other load on
the machine moves far less than the rates.

``--smoke`` (500 messages on fauxqs, 100 on moto, one pair) only shows that both sides run: at
that size start-up and esm's scaling ramp dominate, so its ratio says nothing about P1.

``--repeat`` pairs run alternating (baseline first, then esm first, …), each side on a fresh queue,
and the medians are reported with every sample: this 2-core machine runs other work too.
``ratio`` is the median esm rate over the median baseline rate; ``pair_ratios`` compare the two
sides of each pair (run back to back, so they saw much the same load). A sample
that fails or passes ``--timeout`` is named in ``errors`` and left out of the medians. Queues are
deleted afterwards and the emulator stopped. Prints one JSON object.

    python -m benchmarks.sqs [--emulator fauxqs|moto] [--messages 20000 (moto: 1000)]
                             [--concurrency 10] [--handler-ms 20] [--repeat 3] [--timeout 60]
                             [--body-bytes 100] [--profile FILE] [--skip-baseline] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from benchmarks import handlers
from benchmarks.machine import machine
from esm.aws import AwsClients
from esm.config import parse_config
from esm.engine import Engine
from esm.queue_poller import QueuePoller

REGION = "us-east-1"
PACED_DEPTH = 200  # moto: messages the paced producer may be ahead of the consumer
FILL_CONCURRENCY = 8
HANDLER = "python:benchmarks.handlers.sleep_async_first"
DEFAULT_MESSAGES = {"fauxqs": 20_000, "moto": 1000}
SMOKE_MESSAGES = {"fauxqs": 500, "moto": 100}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """moto's server in its own process, so it does not share the GIL with what is measured."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto's server did not start")


def emulator_version(name: str) -> str | None:
    if name == "fauxqs":
        from benchmarks.fauxqs import version

        return version()
    from importlib.metadata import version as dist_version

    return dist_version("moto")


@contextlib.contextmanager
def sqs_emulator(name: str) -> Iterator[str]:
    """``fauxqs`` or ``moto`` on loopback; yields the endpoint URL and stops it afterwards."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    if name == "fauxqs":
        from benchmarks.fauxqs import serve

        with serve() as url:
            yield url
        return
    proc, url = start_moto()
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def fresh_queue(client: Any, **attributes: str) -> tuple[str, str]:
    """A new standard queue: (ARN, URL)."""
    name = "bench-" + uuid.uuid4().hex[:8]
    url = (await client.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
    attrs = await client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attrs["Attributes"]["QueueArn"], url


def _body(i: int, body_bytes: int) -> str:
    head = f'{{"i":{i},"p":"'
    return head + "x" * max(0, body_bytes - len(head) - 2) + '"}'


async def _send_tens(client: Any, url: str, start: int, n: int, body_bytes: int) -> None:
    resp = await client.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": str(i), "MessageBody": _body(start + i, body_bytes)} for i in range(n)],
    )
    if resp.get("Failed"):
        raise RuntimeError(f"send_message_batch: {len(resp['Failed'])} failed")


async def fill(client: Any, url: str, total: int, body_bytes: int) -> float:
    """Send ``total`` messages up front, ``FILL_CONCURRENCY`` batches at a time; msgs/s."""
    starts = iter(range(0, total, 10))

    async def sender() -> None:
        for s in starts:
            await _send_tens(client, url, s, min(10, total - s), body_bytes)

    t0 = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(FILL_CONCURRENCY)))
    return total / (time.perf_counter() - t0)


async def produce(
    client: Any, url: str, total: int, consumed: list[int], depth: int, body_bytes: int = 20
) -> None:
    """Send ``total`` messages in tens, never more than ``depth`` ahead of ``consumed[0]``."""
    sent = 0
    while sent < total:
        if sent - consumed[0] >= depth:
            await asyncio.sleep(0.005)
            continue
        n = min(10, total - sent)
        await _send_tens(client, url, sent, n, body_bytes)
        sent += n


class Feed:
    """What feeds a queue during a timed section: nothing (prefilled) or the paced producer."""

    def __init__(self, client: Any, url: str, total: int, paced: bool, body_bytes: int) -> None:
        self.consumed = [0]
        self._task: asyncio.Task[None] | None = None
        if paced:
            self._task = asyncio.create_task(
                produce(client, url, total, self.consumed, PACED_DEPTH, body_bytes)
            )

    async def aclose(self) -> None:
        if self._task is not None:
            if not self._task.done():
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -- baseline ------------------------------------------------------------------------------------


def plain_client(endpoint: str, concurrency: int) -> Any:
    """A plain aiobotocore SQS client: botocore's defaults, enough pooled connections."""
    return get_session().create_client(
        "sqs",
        region_name=REGION,
        endpoint_url=endpoint,
        config=AioConfig(max_pool_connections=max(10, concurrency)),
    )


async def baseline(
    endpoint: str, client: Any, url: str, args: argparse.Namespace, paced: bool
) -> dict[str, Any]:
    total, handler_s = args.messages, args.handler_ms / 1000
    stack = contextlib.AsyncExitStack()
    cpu0 = time.process_time()
    started = time.perf_counter()  # the client's creation counts, as it does in engine.start()
    sqs = await stack.enter_async_context(plain_client(endpoint, args.concurrency))
    done = asyncio.Event()
    first: list[float] = []
    consumed = 0
    feed = Feed(client, url, total, paced, args.body_bytes)

    async def worker() -> None:
        nonlocal consumed
        while True:
            resp = await sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=20
            )
            msgs = resp.get("Messages", [])
            if not msgs:
                continue
            if not first:
                first.append(time.perf_counter())
            await asyncio.sleep(handler_s)
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)
            ]
            await sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            consumed += len(msgs)
            feed.consumed[0] = consumed
            if consumed >= total:
                done.set()

    workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
    try:
        waiter = asyncio.create_task(done.wait())
        finished, _ = await asyncio.wait([waiter, *workers], return_when=asyncio.FIRST_COMPLETED)
        if waiter not in finished:  # a worker failed
            waiter.cancel()
            for t in finished:
                t.result()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
    finally:
        for t in workers:
            t.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await feed.aclose()
        await stack.aclose()
    return {
        "msgs_per_s": total / elapsed,
        "seconds": elapsed,
        "seconds_to_first_batch": first[0] - started,
        "cpu_s_per_1k_msgs": 1000 * cpu / total,
    }


# -- esm -----------------------------------------------------------------------------------------


async def through_esm(
    endpoint: str,
    client: Any,
    arn: str,
    url: str,
    args: argparse.Namespace,
    paced: bool,
    profiler: cProfile.Profile | None,
) -> dict[str, Any]:
    total = args.messages
    name = "bench-" + uuid.uuid4().hex[:8]
    config = parse_config(
        {
            "Settings": {"Region": REGION, "Store": "memory://"},
            "Functions": {name: {"Target": HANDLER}},
            "EventSourceMappings": [
                {
                    "FunctionName": name,
                    "EventSourceArn": arn,
                    "BatchSize": 10,
                    "ScalingConfig": {"MaximumConcurrency": max(2, args.concurrency)},
                }
            ],
        }
    )
    aws = AwsClients(endpoint_url=endpoint)
    engine = Engine(config, aws=aws)
    feed: Feed | None = None
    full_at: float | None = None
    deleted_at_full = 0
    try:
        if profiler is not None:
            profiler.enable()
        cpu0 = time.process_time()
        started = time.perf_counter()
        await engine.start()
        start_s = time.perf_counter() - started
        feed = Feed(client, url, total, paced, args.body_bytes)
        poller = next(iter(engine.mappings.values())).poller
        assert isinstance(poller, QueuePoller)
        ceiling = max(2, args.concurrency)
        while True:
            deleted = int(engine.metrics.get("DeletedEventCount"))
            feed.consumed[0] = deleted
            if deleted >= total:
                break
            if full_at is None and poller.concurrency >= ceiling:
                full_at, deleted_at_full = time.perf_counter(), deleted
            await asyncio.sleep(0.005)
        ended = time.perf_counter()
        cpu = time.process_time() - cpu0
    finally:
        if profiler is not None:
            profiler.disable()
        if feed is not None:
            await feed.aclose()
        await engine.aclose(deadline_s=2)
        await aws.aclose()
    elapsed = ended - started
    first = handlers.FIRST_START.pop(name, ended)
    steady = None
    if full_at is not None and ended > full_at:
        steady = (total - deleted_at_full) / (ended - full_at)
    return {
        "msgs_per_s": total / elapsed,
        "seconds": elapsed,
        "seconds_to_first_batch": first - started,
        "engine_start_s": start_s,
        "seconds_to_full_concurrency": None if full_at is None else full_at - started,
        "steady_msgs_per_s": steady,
        "invocations": int(engine.metrics.get("Invocations")),
        "cpu_s_per_1k_msgs": 1000 * cpu / total,
    }


# -- the run -------------------------------------------------------------------------------------


async def one_side(
    side: str,
    endpoint: str,
    client: Any,
    args: argparse.Namespace,
    profiler: cProfile.Profile | None,
) -> dict[str, Any]:
    paced = args.emulator == "moto"
    arn, url = await fresh_queue(client)
    try:
        fill_rate = None
        if not paced:
            fill_rate = await fill(client, url, args.messages, args.body_bytes)
        if side == "baseline":
            out = await baseline(endpoint, client, url, args, paced)
        else:
            out = await through_esm(endpoint, client, arn, url, args, paced, profiler)
        out["fill_msgs_per_s"] = fill_rate
        return out
    finally:
        with contextlib.suppress(Exception):
            await client.delete_queue(QueueUrl=url)


def _round(v: Any) -> Any:
    return round(v, 3) if isinstance(v, float) else v


def _median(samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(values) if values else None


async def main_async(args: argparse.Namespace, profiler: cProfile.Profile | None) -> dict[str, Any]:
    handlers.SLEEP_S = args.handler_ms / 1000
    samples: dict[str, list[dict[str, Any]]] = {"baseline": [], "esm": []}
    errors: list[str] = []
    with sqs_emulator(args.emulator) as endpoint:
        setup = AwsClients(endpoint_url=endpoint)
        try:
            client = await setup.client("sqs", REGION)
            for i in range(args.repeat):
                order = ["baseline", "esm"] if i % 2 == 0 else ["esm", "baseline"]
                for side in order:
                    if side == "baseline" and args.skip_baseline:
                        continue
                    try:
                        samples[side].append(
                            await asyncio.wait_for(
                                one_side(side, endpoint, client, args, profiler), args.timeout
                            )
                        )
                    except Exception as exc:
                        msg = (
                            f"timed out after {args.timeout} s"
                            if isinstance(exc, TimeoutError)
                            else f"{type(exc).__name__}: {exc}"
                        )
                        errors.append(f"{side} #{i + 1}: {msg}")
        finally:
            await setup.aclose()
    esm, base = samples["esm"], samples["baseline"]
    esm_rate, base_rate = _median(esm, "msgs_per_s"), _median(base, "msgs_per_s")
    esm_cpu, base_cpu = _median(esm, "cpu_s_per_1k_msgs"), _median(base, "cpu_s_per_1k_msgs")
    out: dict[str, Any] = {
        "benchmark": "P1-sqs",
        "emulator": args.emulator,
        "emulator_version": emulator_version(args.emulator),
        "parameters": {
            "messages": args.messages,
            "concurrency": args.concurrency,
            "handler_ms": args.handler_ms,
            "batch_size": 10,
            "body_bytes": args.body_bytes,
            "feed": f"paced, at most {PACED_DEPTH} ahead"
            if args.emulator == "moto"
            else "prefilled",
            "repeat": args.repeat,
            "smoke": args.smoke,
        },
        "esm_msgs_per_s": _round(esm_rate),
        "baseline_msgs_per_s": _round(base_rate),
        "ratio": round(esm_rate / base_rate, 3) if esm_rate and base_rate else None,
        "pair_ratios": [
            round(e["msgs_per_s"] / b["msgs_per_s"], 3) for e, b in zip(esm, base, strict=False)
        ],
        "target_ratio": 0.9,
        "cpu_ratio": round(base_cpu / esm_cpu, 3) if base_cpu and esm_cpu else None,
        "esm_seconds_to_first_batch": _round(_median(esm, "seconds_to_first_batch")),
        "baseline_seconds_to_first_batch": _round(_median(base, "seconds_to_first_batch")),
        "esm_samples": [round(s["msgs_per_s"], 1) for s in esm],
        "baseline_samples": [round(s["msgs_per_s"], 1) for s in base],
        "esm": {
            k: _round(_median(esm, k))
            for k in (
                "engine_start_s",
                "seconds_to_full_concurrency",
                "steady_msgs_per_s",
                "cpu_s_per_1k_msgs",
                "invocations",
                "fill_msgs_per_s",
            )
        },
        "baseline": {k: _round(_median(base, k)) for k in ("cpu_s_per_1k_msgs", "fill_msgs_per_s")},
        "machine": machine(),
    }
    if errors:
        out["errors"] = errors
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--emulator", choices=("fauxqs", "moto"), default="fauxqs")
    p.add_argument("--messages", type=int, help="default: 20000 on fauxqs, 1000 on moto")
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--handler-ms", type=float, default=20.0)
    p.add_argument("--body-bytes", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3, help="baseline/esm pairs; medians reported")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per sample (fill included)")
    p.add_argument("--skip-baseline", action="store_true", help="esm only (for profiling)")
    p.add_argument(
        "--profile", metavar="FILE", help="cProfile the esm side only into FILE (pstats)"
    )
    p.add_argument(
        "--smoke", action="store_true", help="a quick check: few messages, one pair, 30 s bound"
    )
    args = p.parse_args()
    if args.smoke:
        args.messages = args.messages or SMOKE_MESSAGES[args.emulator]
        args.repeat, args.timeout = 1, min(args.timeout, 30.0)
    args.messages = args.messages or DEFAULT_MESSAGES[args.emulator]
    profiler = cProfile.Profile() if args.profile else None
    try:
        print(json.dumps(asyncio.run(main_async(args, profiler))), flush=True)
    finally:
        if profiler is not None:
            profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
