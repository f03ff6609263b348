"""P7: functions in execution environments beside the same handler in process, SQS on fauxqs.

One SQS mapping (BatchSize 10, ``ScalingConfig.MaximumConcurrency`` ``--concurrency``) on a fresh
fauxqs queue pre-filled with ``--messages`` messages, an :class:`~esm.engine.Engine` with the
``memory://`` store, from ``engine.start()`` until every message is deleted; each side's rate is
taken between 10 % and 90 % of the messages deleted (cold starts and scaling reported apart, as
in P1). The handler, per workload (``--workloads``):

- ``sleep``: ``time.sleep`` of ``--handler-ms`` (20 ms) per batch;
- ``noop``: returns at once;
- ``cpu``: ``--handler-ms`` of CPU per batch (a busy loop on the thread's CPU clock).

Comparisons, each in ``--pairs`` interleaved pairs (:mod:`benchmarks.pairs`):

- ``sleep`` and ``noop``: the function in environments (``Runtime`` python3.x + ``Handler`` +
  ``CodeUri``: ``python -m awslambdaric`` processes, up to ``--concurrency`` of them) vs the same
  handler as a ``python:`` target (the function's thread pool in esm's process). Target at 20 ms:
  ≥ 0.8 of the in-process rate; ``esm_cpu_ms_per_invocation``: esm's own CPU (this process: the
  environments, fauxqs and the handler's CPU are not in it) per invocation, target < 1 ms;
- ``cpu``: 2 environments (MaximumConcurrency 2, ReservedConcurrentExecutions 2) vs 1 (both 1):
  the handler's CPU runs in the environments' processes, so 2 can use 2 cores; target ≥ 1.7 times
  (the machine has ``machine.cores`` cores, shared with whatever else runs).

Cold start: each environment's ``Init Duration`` (from the REPORT lines the function's logger
writes) beside ``python -c 'import awslambdaric'`` timed on this machine (median of 5): what an
environment's start costs besides the runtime's own import.

    python -m benchmarks.environments [--messages 5000] [--concurrency 10] [--handler-ms 20]
                                      [--workloads sleep noop cpu] [--pairs 5] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks import handlers
from benchmarks.machine import machine
from benchmarks.pairs import Sample, add_pairs_argument, cpu_seconds, interleave, spread
from benchmarks.sqs import REGION, Marks, emulator_version, fill, fresh_queue, sqs_emulator
from esm.aws import AwsClients
from esm.config import parse_config
from esm.engine import Engine

TARGET_RATIO_SLEEP = 0.8
TARGET_CPU_MS_PER_INVOCATION = 1.0
TARGET_CPU_SCALING = 1.7
RUNTIME = f"python3.{sys.version_info.minor}"  # the host's: no other interpreter needed

APP = """
import os, time
MODE = os.environ["P7_MODE"]
SECONDS = float(os.environ["P7_SECONDS"])

def handler(event, context):
    if MODE == "sleep":
        time.sleep(SECONDS)
    elif MODE == "cpu":
        end = time.thread_time() + SECONDS
        while time.thread_time() < end:
            pass
"""
IN_PROCESS = {
    "sleep": "python:benchmarks.handlers.sleep_sync",
    "noop": "python:benchmarks.handlers.noop",
    "cpu": "python:benchmarks.handlers.spin",
}
INIT = re.compile(r"Init Duration: ([0-9.]+) ms")


class InitDurations(logging.Handler):
    """The Init Duration of each cold start, from the REPORT lines of ``esm.function.*``."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.ms: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = INIT.search(record.getMessage())
        if found:
            self.ms.append(float(found.group(1)))


def function_config(workload: str, where: str, code: Path, args: argparse.Namespace) -> Any:
    if where == "process":
        return {"Target": IN_PROCESS[workload], "Timeout": 10}
    return {
        "Runtime": RUNTIME,
        "Handler": "app.handler",
        "CodeUri": str(code),
        "Timeout": 10,
        "Environment": {
            "Variables": {"P7_MODE": workload, "P7_SECONDS": str(args.handler_ms / 1000)}
        },
    }


async def one_run(
    endpoint: str,
    client: Any,
    code: Path,
    args: argparse.Namespace,
    *,
    workload: str,
    where: str,
    concurrency: int,
    inits: InitDurations,
) -> Sample:
    """One side: a fresh queue of ``args.messages``, drained by one mapping."""
    arn, url = await fresh_queue(client)
    total = args.messages
    try:
        await fill(client, url, total, 100)
        name = "p7-" + uuid.uuid4().hex[:8]
        fn = function_config(workload, where, code, args)
        if where == "environments":
            fn["ReservedConcurrentExecutions"] = concurrency
        config = parse_config(
            {
                "Settings": {"Region": REGION, "Store": "memory://"},
                "Functions": {name: fn},
                "EventSourceMappings": [
                    {
                        "FunctionName": name,
                        "EventSourceArn": arn,
                        "BatchSize": 10,
                        "ScalingConfig": {"MaximumConcurrency": max(2, concurrency)},
                    }
                ],
            }
        )
        aws = AwsClients(endpoint_url=endpoint)
        engine = Engine(config, aws=aws)
        marks = Marks(total)
        cold0 = len(inits.ms)
        try:
            cpu0 = cpu_seconds()
            started = time.perf_counter()
            await engine.start()
            deadline = started + args.timeout
            while (deleted := int(engine.metrics.get("DeletedEventCount"))) < total:
                marks.update(deleted)
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{deleted} of {total} deleted in {args.timeout} s")
                await asyncio.sleep(0.005)
            marks.update(deleted)
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds() - cpu0
            invocations = int(engine.metrics.get("Invocations"))
        finally:
            await engine.aclose(deadline_s=5)
            await aws.aclose()
    finally:
        with contextlib.suppress(Exception):
            await client.delete_queue(QueueUrl=url)
    mid = marks.out(started, elapsed)
    return Sample(
        units=total,
        seconds=elapsed,
        cpu_s=cpu,
        value=mid["mid_msgs_per_s"] or total / elapsed,
        extra={
            "whole_run_msgs_per_s": round(total / elapsed, 1),
            "invocations": invocations,
            "esm_cpu_ms_per_invocation": round(1000 * cpu / max(1, invocations), 3),
            "cold_starts": len(inits.ms) - cold0,
            "startup_share": round(mid.get("startup_share") or 0.0, 3),
        },
    )


def _median_extra(summary: dict[str, Any], side: str, key: str) -> float | None:
    values = [p[f"{side}_extra"][key] for p in summary["pair_samples"] if f"{side}_extra" in p]
    return statistics.median(values) if values else None


def import_awslambdaric_ms(n: int = 5) -> float:
    """``python -c 'import awslambdaric'`` wall time on this machine, median of ``n``."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import awslambdaric"], check=True)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def main_async(args: argparse.Namespace) -> None:
    handlers.SLEEP_S = handlers.SPIN_S = args.handler_ms / 1000
    inits = InitDurations()
    logging.getLogger("esm.function").addHandler(inits)
    logging.getLogger("esm.function").setLevel(logging.INFO)
    logging.getLogger("esm.function").propagate = False
    with (
        tempfile.TemporaryDirectory(prefix="esm-p7-") as tmp,
        sqs_emulator("fauxqs") as endpoint,
    ):
        code = Path(tmp)
        (code / "app.py").write_text(textwrap.dedent(APP))
        setup = AwsClients(endpoint_url=endpoint)
        try:
            client = await setup.client("sqs", REGION)
            for workload in args.workloads:

                def side(where: str, concurrency: int, workload: str = workload) -> Any:
                    async def run() -> Sample:
                        return await one_run(
                            endpoint,
                            client,
                            code,
                            args,
                            workload=workload,
                            where=where,
                            concurrency=concurrency,
                            inits=inits,
                        )

                    return run

                if workload == "cpu":
                    esm, base = side("environments", 2), side("environments", 1)
                    compared = "2 environments vs 1"
                    target: float | None = TARGET_CPU_SCALING
                else:
                    esm = side("environments", args.concurrency)
                    base = side("process", args.concurrency)
                    compared = "environments vs in-process python: target (thread pool)"
                    target = TARGET_RATIO_SLEEP if workload == "sleep" else None
                summary = await interleave(esm, base, pairs=args.pairs, unit="msgs")
                cpu_ms = _median_extra(summary, "esm", "esm_cpu_ms_per_invocation")
                out: dict[str, Any] = {
                    "benchmark": "P7-environments",
                    "workload": workload,
                    "compared": compared,
                    "emulator": "fauxqs",
                    "emulator_version": emulator_version("fauxqs"),
                    "parameters": {
                        "messages": args.messages,
                        "batch_size": 10,
                        "maximum_concurrency": 2 if workload == "cpu" else args.concurrency,
                        "handler_ms": 0 if workload == "noop" else args.handler_ms,
                        "runtime": RUNTIME,
                        "pairs": args.pairs,
                        "measured": "rate between 10 % and 90 % of the messages deleted",
                    },
                    **summary,
                    "target_ratio": target,
                    "esm_cpu_ms_per_invocation": cpu_ms,
                    "baseline_esm_cpu_ms_per_invocation": (
                        base_ms := _median_extra(summary, "baseline", "esm_cpu_ms_per_invocation")
                    ),
                    # what running the handler in an environment adds to esm's own CPU
                    "esm_cpu_ms_per_invocation_overhead": (
                        round(cpu_ms - base_ms, 3)
                        if cpu_ms is not None and base_ms is not None and workload != "cpu"
                        else None
                    ),
                    "machine": machine(),
                }
                if workload != "cpu":
                    out["target_esm_cpu_ms_per_invocation"] = TARGET_CPU_MS_PER_INVOCATION
                print(json.dumps(out), flush=True)
        finally:
            await setup.aclose()
    print(
        json.dumps(
            {
                "benchmark": "P7-cold-start",
                "runtime": RUNTIME,
                "cold_starts": len(inits.ms),
                "init_duration_ms": spread(inits.ms),
                "python_import_awslambdaric_ms": round(import_awslambdaric_ms(), 1),
                "machine": machine(),
            }
        ),
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=10, help="MaximumConcurrency")
    p.add_argument("--handler-ms", type=float, default=20.0)
    p.add_argument(
        "--workloads", nargs="+", choices=("sleep", "noop", "cpu"), default=["sleep", "noop", "cpu"]
    )
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per side")
    add_pairs_argument(p)
    p.add_argument("--smoke", action="store_true", help="a few hundred messages, one pair")
    args = p.parse_args()
    if args.smoke:
        args.messages, args.pairs, args.timeout = min(args.messages, 200), 1, 60.0
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
