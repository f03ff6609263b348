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
:mod:`esm.scaling`). So that start-up and that ramp do not decide the figure, each side's rate is
taken between the moments it had deleted 10 % and 90 % of its messages (``mid_msgs_per_s``), and
the messages grow with the concurrency (``--messages`` times concurrency / 20 past 20) so that the
ramp ends inside the first 10 % at 10 and 50 (at 200 it does not: reaching 200 takes ~40 s,
and ``esm.steady_msgs_per_s`` is the rate from then on); start-up is reported apart
(``seconds_to_10pct``, ``startup_share``, ``esm.seconds_to_full_concurrency``) and so is the
whole-run ratio (``whole_run_ratio_spread``). ``*_cpu_s_per_1k_msgs`` is this process's CPU
time (both cores; the emulator runs in another process) per 1,000 messages, whole run.

``--smoke`` (500 messages on fauxqs, 100 on moto, one pair, the first concurrency) only shows
that both sides run.

``--pairs`` interleaved pairs (esm first, then baseline first, …; :mod:`benchmarks.pairs`), each
side on a fresh queue: ``ratio`` is the median of the pairs' ratios, with ``ratio_spread``
(min, max, quartiles), the load average before each pair and every sample in ``pair_samples``.
A side that fails or passes ``--timeout`` is named in ``errors`` and its pair left out. Queues
are deleted afterwards and the emulator stopped. Prints one JSON object per concurrency.

    python -m benchmarks.sqs [--emulator fauxqs|moto] [--messages 20000 (moto: 1000)]
                             [--concurrency 10 50] [--handler-ms 20] [--pairs 5]
                             [--timeout 120] [--body-bytes 100] [--profile FILE] [--smoke]
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
from benchmarks.pairs import Sample, add_pairs_argument, interleave, spread
from esm.aws import AwsClients
from esm.config import EsmConfig, parse_config
from esm.engine import Engine
from esm.queue_poller import QueuePoller

REGION = "us-east-1"


def one_mapping(target: str, arn: str, **mapping: Any) -> tuple[str, EsmConfig]:
    """A config of one function ``bench-…`` (``target``, the memory store) and one mapping of it
    on ``arn`` with ``mapping``'s settings; the function's name with it."""
    name = "bench-" + uuid.uuid4().hex[:8]
    config = {
        "Settings": {"Region": REGION, "Store": "memory://"},
        "Functions": {name: {"Target": target}},
        "EventSourceMappings": [{"FunctionName": name, "EventSourceArn": arn, **mapping}],
    }
    return name, parse_config(config)


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


class Marks:
    """When a side got through 10 % and 90 % of its messages: its rate between the two leaves
    out start-up (client creation, engine start, esm's scaling ramp) and the last stragglers."""

    def __init__(self, total: int) -> None:
        self.low, self.high = max(1, total // 10), max(1, total - total // 10)
        self.at_low: float | None = None
        self.at_high: float | None = None
        self.n_low = self.n_high = 0

    def update(self, done: int) -> None:
        if self.at_low is None and done >= self.low:
            self.at_low, self.n_low = time.perf_counter(), done
        if self.at_high is None and done >= self.high:
            self.at_high, self.n_high = time.perf_counter(), done

    def out(self, started: float, elapsed: float) -> dict[str, Any]:
        if self.at_low is None or self.at_high is None or self.at_high <= self.at_low:
            return {"mid_msgs_per_s": None}
        return {
            "mid_msgs_per_s": (self.n_high - self.n_low) / (self.at_high - self.at_low),
            "seconds_to_10pct": self.at_low - started,
            "startup_share": (self.at_low - started) / elapsed,
        }


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
    marks = Marks(total)

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
            marks.update(consumed)
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
        "cpu_s": cpu,
        "cpu_s_per_1k_msgs": 1000 * cpu / total,
        **marks.out(started, elapsed),
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
    name, config = one_mapping(
        HANDLER, arn, BatchSize=10, ScalingConfig={"MaximumConcurrency": max(2, args.concurrency)}
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
        marks = Marks(total)
        while True:
            deleted = int(engine.metrics.get("DeletedEventCount"))
            feed.consumed[0] = deleted
            marks.update(deleted)
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
        "cpu_s": cpu,
        "cpu_s_per_1k_msgs": 1000 * cpu / total,
        **marks.out(started, elapsed),
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


async def one_concurrency(
    args: argparse.Namespace,
    endpoint: str,
    client: Any,
    profiler: cProfile.Profile | None,
) -> dict[str, Any]:
    """``--pairs`` interleaved pairs at ``args.concurrency``: the median pair ratio of the rates
    between 10 % and 90 % of the messages (start-up and ramp reported apart), with its spread."""
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "esm": []}

    def side(name: str) -> Any:
        async def run() -> Sample:
            got = await asyncio.wait_for(
                one_side(name, endpoint, client, args, profiler), args.timeout
            )
            runs[name].append(got)
            rate = got["mid_msgs_per_s"] or got["msgs_per_s"]
            return Sample(
                units=args.messages,
                seconds=got["seconds"],
                cpu_s=got["cpu_s"],
                value=rate,
                extra={"whole_run_msgs_per_s": round(got["msgs_per_s"], 1)},
            )

        return run

    summary = await interleave(side("esm"), side("baseline"), pairs=args.pairs, unit="msgs")
    esm, base = runs["esm"], runs["baseline"]
    whole = [
        e["msgs_per_s"] / b["msgs_per_s"]
        for e, b in zip(esm, base, strict=False)
        if b["msgs_per_s"]
    ]
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
            "pairs": args.pairs,
            "measured": "rate between 10 % and 90 % of the messages deleted (each side)",
            "smoke": args.smoke,
        },
        **summary,
        "target_ratio": 0.9,
        "handler_bound_msgs_per_s": round(args.concurrency * 10 / (args.handler_ms / 1000), 1),
        "whole_run_ratio_spread": spread(whole),
        "esm_seconds_to_first_batch": _round(_median(esm, "seconds_to_first_batch")),
        "baseline_seconds_to_first_batch": _round(_median(base, "seconds_to_first_batch")),
        "esm": {
            k: _round(_median(esm, k))
            for k in (
                "msgs_per_s",
                "seconds",
                "engine_start_s",
                "seconds_to_10pct",
                "startup_share",
                "seconds_to_full_concurrency",
                "steady_msgs_per_s",
                "invocations",
                "fill_msgs_per_s",
            )
        },
        "baseline": {
            k: _round(_median(base, k))
            for k in (
                "msgs_per_s",
                "seconds",
                "seconds_to_10pct",
                "startup_share",
                "fill_msgs_per_s",
            )
        },
        "machine": machine(),
    }
    return out


async def main_async(
    args: argparse.Namespace, profiler: cProfile.Profile | None
) -> list[dict[str, Any]]:
    handlers.SLEEP_S = args.handler_ms / 1000
    results = []
    with sqs_emulator(args.emulator) as endpoint:
        setup = AwsClients(endpoint_url=endpoint)
        try:
            client = await setup.client("sqs", REGION)
            for concurrency in args.concurrencies:
                one = argparse.Namespace(**vars(args))
                one.concurrency = concurrency
                # a window long enough that esm's ramp (+5 concurrent batches a second from 5)
                # is well inside the first 10 % of the messages at 10 and 50 (not at 200)
                one.messages = max(args.messages, args.messages * concurrency // 20)
                results.append(await one_concurrency(one, endpoint, client, profiler))
                print(json.dumps(results[-1]), flush=True)
        finally:
            await setup.aclose()
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--emulator", choices=("fauxqs", "moto"), default="fauxqs")
    p.add_argument("--messages", type=int, help="default: 20000 on fauxqs, 1000 on moto")
    p.add_argument(
        "--concurrency",
        dest="concurrencies",
        type=int,
        nargs="+",
        default=[10, 50],
        help="MaximumConcurrency (and the loop's workers); one comparison each",
    )
    p.add_argument("--handler-ms", type=float, default=20.0)
    p.add_argument("--body-bytes", type=int, default=100)
    add_pairs_argument(p)
    p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per sample (fill included)"
    )
    p.add_argument(
        "--profile", metavar="FILE", help="cProfile the esm side only into FILE (pstats)"
    )
    p.add_argument(
        "--smoke", action="store_true", help="a quick check: few messages, one pair, 30 s bound"
    )
    args = p.parse_args()
    if args.smoke:
        args.messages = args.messages or SMOKE_MESSAGES[args.emulator]
        args.pairs, args.timeout = 1, min(args.timeout, 30.0)
        args.concurrencies = args.concurrencies[:1]
    args.messages = args.messages or DEFAULT_MESSAGES[args.emulator]
    profiler = cProfile.Profile() if args.profile else None
    try:
        asyncio.run(main_async(args, profiler))
    finally:
        if profiler is not None:
            profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
