"""P8: scale-out: 1, 2 and 4 ``esm run`` daemons on one Redis, and nothing run twice.

Each daemon is ``python -m esm.cli run cfg.yaml`` in a process of its own (as tests/daemon.py
starts them; the same config but for its API port: one ``StorePrefix`` on the real Redis), pinned
to one core (``os.sched_setaffinity``: daemon i on core i mod cores; ``pinned`` says where), with
the ``python:benchmarks.handlers.note_ids`` handler, which appends each id it runs to a file of
its process's own. Workloads (``--workloads``), each pre-filled before the daemons start:

- ``async``: ``--events`` events enqueued with ``Invoke(InvocationType=Event)`` (a producer
  engine on the same prefix, never started), drained by the daemons' async workers;
- ``sqs``: one SQS mapping (BatchSize 10) on a fauxqs queue of ``--messages`` messages;
- ``kinesis``: one mapping (BatchSize 100, TRIM_HORIZON) on a ``--shards``-shard kinesalite
  stream of ``--records`` records; the daemons share its shards through leases.

The rate of a run is taken from the moment every daemon answers ``/health`` (and 10 % of the ids
have run) until 90 % have: daemon start-up is reported apart (``seconds_to_all_healthy``,
``share_done_before_window``). CPU seconds per 1,000 units are
the daemons' own (``/proc/<pid>/stat`` over the same window; Redis and the emulators excluded).
Every id is counted: a run with an id lost or run twice is an ``error`` and the exit status is 1.

Rounds: ``--pairs`` rounds, each running 1, 2 and 4 daemons (``--daemons``) one after the other
(the order reversed every other round); ``scaling`` for N daemons is the median over rounds of
rate(N) / rate(1) of the same round, with its spread, against the target 0.9 times min(N, cores).

    python -m benchmarks.scaleout [--daemons 1 2 4] [--workloads async sqs kinesis] [--pairs 3]
                                  [--events 50000] [--messages 30000] [--records 64000]
                                  [--shards 16] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import fauxqs
from benchmarks.idle import _free_port, boto3_client, create_stream, kinesalite
from benchmarks.machine import machine
from benchmarks.pairs import cpu_seconds, load_average, spread
from esm.clock import RealClock
from esm.config import parse_config
from esm.engine import Engine
from esm.functions import build_functions

REGION = "us-east-1"
REDIS_URL = os.environ.get("ESM_BENCH_REDIS", "redis://127.0.0.1:6379/0")
HANDLER = "python:benchmarks.handlers.note_ids"
FUNCTION = "scale"
WIDTH = 8  # ids are fixed width: the notes' size says how many ran
ROOT = Path(__file__).resolve().parent.parent


def ident(i: int) -> str:
    return f"{i:0{WIDTH}d}"


def config(prefix: str, workload: str, arn: str | None, mapping_uuid: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Settings": {
            "Region": REGION,
            "Store": REDIS_URL,
            "StorePrefix": prefix,
            "ShardDiscoverySeconds": 2,
        },
        "Functions": {FUNCTION: {"Target": HANDLER, "Timeout": 10}},
    }
    if workload == "sqs":
        out["EventSourceMappings"] = [
            {"UUID": mapping_uuid, "FunctionName": FUNCTION, "EventSourceArn": arn, "BatchSize": 10}
        ]
    elif workload == "kinesis":
        out["EventSourceMappings"] = [
            {
                "UUID": mapping_uuid,
                "FunctionName": FUNCTION,
                "EventSourceArn": arn,
                "BatchSize": 100,
                "StartingPosition": "TRIM_HORIZON",
            }
        ]
    return out


# -- filling ---------------------------------------------------------------------------------------


async def fill_async(prefix: str, n: int) -> None:
    cfg = parse_config(config(prefix, "async", None, ""))
    clock = RealClock()
    producer = Engine(cfg, clock=clock)
    producer.functions = build_functions(cfg, clock=clock, aws=producer.aws)
    try:
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                await producer.invoke_event(FUNCTION, b'{"id":"%s"}' % ident(i).encode())

        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await producer.aclose(deadline_s=0)


def fill_sqs(endpoint: str, n: int) -> str:
    sqs = boto3_client("sqs", endpoint)
    url = sqs.create_queue(QueueName="scale-" + uuid.uuid4().hex[:8])["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]

    def tens(start: int) -> None:
        entries = [
            {"Id": str(j), "MessageBody": ident(i)}
            for j, i in enumerate(range(start, min(n, start + 10)))
        ]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(tens, range(0, n, 10)))
    return str(arn)


def fill_kinesis(endpoint: str, shards: int, n: int) -> str:
    arn = create_stream(endpoint, shards)
    kinesis = boto3_client("kinesis", endpoint)
    name = arn.rsplit("/", 1)[1]
    for start in range(0, n, 500):
        records = [
            {"Data": ident(i).encode(), "PartitionKey": str(random.random())}
            for i in range(start, min(n, start + 500))
        ]
        got = kinesis.put_records(StreamName=name, Records=records)
        if got.get("FailedRecordCount"):
            raise RuntimeError(f"kinesalite refused {got['FailedRecordCount']} records")
    return arn


# -- one run ---------------------------------------------------------------------------------------


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def noted(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.ids")) // (WIDTH + 1)


def count_ids(folder: Path, total: int) -> dict[str, int]:
    seen: Counter[str] = Counter()
    for p in folder.glob("*.ids"):
        seen.update(p.read_text().split())
    expected = {ident(i) for i in range(total)}
    return {
        "distinct": len(seen),
        "lost": len(expected - seen.keys()),
        "run_twice": sum(c - 1 for c in seen.values() if c > 1),
        "unknown": len(seen.keys() - expected),
    }


def delete_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


def fill(
    args: argparse.Namespace, workload: str, prefix: str, endpoints: dict[str, str]
) -> tuple[int, str | None]:
    """The work for one run, in place before any daemon starts: how much, and the source."""
    if workload == "async":
        asyncio.run(fill_async(prefix, args.events))
        return args.events, None
    if workload == "sqs":
        return args.messages, fill_sqs(endpoints["sqs"], args.messages)
    return args.records, fill_kinesis(endpoints["kinesis"], args.shards, args.records)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def delete_source(workload: str, arn: str | None, endpoints: dict[str, str]) -> None:
    if arn is None:
        return
    with contextlib.suppress(Exception):
        if workload == "sqs":
            sqs = boto3_client("sqs", endpoints["sqs"])
            sqs.delete_queue(
                QueueUrl=sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"]
            )
        else:  # kinesalite counts its streams' shards against a limit
            kinesis = boto3_client("kinesis", endpoints["kinesis"])
            kinesis.delete_stream(StreamName=arn.rsplit("/", 1)[1])


def run_daemons(
    args: argparse.Namespace,
    workload: str,
    daemons: int,
    endpoints: dict[str, str],
    workdir: Path,
) -> dict[str, Any]:
    prefix = f"esmscale-{uuid.uuid4().hex[:8]}"
    notes = workdir / prefix
    notes.mkdir()
    t0 = time.perf_counter()
    total, arn = fill(args, workload, prefix, endpoints)
    fill_s = time.perf_counter() - t0
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "ESM_BENCH_NOTES": str(notes),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_SQS": endpoints.get("sqs", ""),
        "AWS_ENDPOINT_URL_KINESIS": endpoints.get("kinesis", ""),
    }
    env.pop("AWS_ENDPOINT_URL", None)
    cores = sorted(os.sched_getaffinity(0))
    mapping_uuid = str(uuid.uuid4())
    procs: list[subprocess.Popen[bytes]] = []
    configs: list[Path] = []
    pinned: list[int | None] = []
    out: dict[str, Any] = {"daemons": daemons, "units": total, "fill_s": round(fill_s, 2)}
    try:
        load = load_average()
        started = time.perf_counter()
        for i in range(daemons):
            cfg = config(prefix, workload, arn, mapping_uuid)
            cfg["Settings"]["ApiPort"] = _free_port()
            path = workdir / f"{prefix}-{i}.yaml"
            path.write_text(json.dumps(cfg))
            configs.append(path)
            log = open(workdir / f"{prefix}-{i}.log", "wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "esm.cli", "run", str(path), "--log-level", "WARNING"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            log.close()
            procs.append(proc)
            core = cores[i % len(cores)] if len(cores) > 1 else None
            if core is not None:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(proc.pid, {core})
            pinned.append(core)
        low, high = max(1, total // 10), total - total // 10
        at_low = at_high = all_up = None
        cpu_low = cpu_high = 0.0
        deadline = started + args.timeout
        ports = [int(json.loads(c.read_text())["Settings"]["ApiPort"]) for c in configs]
        while (done := noted(notes)) < total:
            now = time.perf_counter()
            if all_up is None and all(healthy(port) for port in ports):
                all_up = now
                # the window opens once every daemon is up (and 10 % are done)
                low = max(low, done)
            if at_low is None and all_up is not None and done >= low:
                at_low, low, cpu_low = now, done, sum(cpu_seconds(p.pid) for p in procs)
            if at_high is None and done >= high:
                at_high, cpu_high = now, sum(cpu_seconds(p.pid) for p in procs)
            if now > deadline:
                raise TimeoutError(f"{done} of {total} run in {args.timeout} s")
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                tail = (workdir / f"{prefix}-{procs.index(dead[0])}.log").read_text()[-1500:]
                raise RuntimeError(f"a daemon exited ({dead[0].returncode}): {tail}")
            time.sleep(0.02)
        ended = time.perf_counter()
        if at_high is None:
            at_high, cpu_high = ended, sum(cpu_seconds(p.pid) for p in procs)
        window = "all daemons up (and 10 %) to 90 %"
        if at_low is None or at_high <= at_low:  # too short a run (smoke): the whole of it
            at_low, at_high, low, high, cpu_low = started, ended, 0, total, 0.0
            cpu_high = sum(cpu_seconds(p.pid) for p in procs)
            window = "whole run: too short for the window"
        time.sleep(args.settle)  # anything run twice would show by now
        units = high - low
        out.update(
            {
                "rate": units / (at_high - at_low),
                "window": window,
                "seconds_to_10pct": round(at_low - started, 2),
                "seconds_to_all_healthy": round((all_up or ended) - started, 2),
                "share_done_before_window": round(low / total, 3),
                "seconds": round(ended - started, 2),
                "cpu_s_per_1k": round(1000 * (cpu_high - cpu_low) / units, 4),
                "load_avg_1m_before": load,
                "pinned": pinned,
            }
        )
    finally:
        stop_all(procs)
        delete_prefix(prefix)
        delete_source(workload, arn, endpoints)
    out.update(count_ids(notes, total))
    shutil.rmtree(notes, ignore_errors=True)
    if out["lost"] or out["run_twice"] or out["unknown"]:
        out["error"] = (
            f"{out['lost']} ids lost, {out['run_twice']} run twice, {out['unknown']} unknown"
        )
    return out


def workload_result(
    args: argparse.Namespace, workload: str, rounds: list[dict[int, dict[str, Any]]]
) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0))
    by_n: dict[str, Any] = {}
    for n in args.daemons:
        runs = [r[n] for r in rounds if n in r and "rate" in r[n]]
        ratios = [
            r[n]["rate"] / r[1]["rate"]
            for r in rounds
            if n in r and 1 in r and "rate" in r[n] and "rate" in r[1]
        ]
        target = 0.9 * min(n, cores)
        med = spread(ratios)["median"]
        by_n[str(n)] = {
            "units_per_s": spread([r["rate"] for r in runs]),
            "cpu_s_per_1k": spread([r["cpu_s_per_1k"] for r in runs])["median"],
            "seconds_to_10pct": spread([r["seconds_to_10pct"] for r in runs])["median"],
            "scaling_vs_1": spread(ratios),
            "target_scaling": round(target, 2),
            "meets_target": None if med is None else med >= target,  # None: no 1-daemon run
            "pinned": runs[0]["pinned"] if runs else None,
        }
    errors = [
        f"{n} daemons, round {i + 1}: {r[n]['error']}"
        for i, r in enumerate(rounds)
        for n in r
        if r[n].get("error")
    ]
    out: dict[str, Any] = {
        "benchmark": "P8-scaleout",
        "workload": workload,
        "parameters": {
            "daemons": args.daemons,
            "rounds": args.pairs,
            "units": {"async": args.events, "sqs": args.messages, "kinesis": args.records}[
                workload
            ],
            "shards": args.shards if workload == "kinesis" else None,
            "handler": HANDLER,
            "cores": cores,
            "measured": "rate from every daemon healthy (and 10 % run) to 90 % of the ids run",
        },
        "by_daemons": by_n,
        "load_avg_1m": [r[n].get("load_avg_1m_before") for r in rounds for n in sorted(r)],
        "runs": [{str(n): r[n] for n in sorted(r)} for r in rounds],
        "machine": machine(),
    }
    if errors:
        out["error"] = "; ".join(errors)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--daemons", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument(
        "--workloads",
        nargs="+",
        choices=("async", "sqs", "kinesis"),
        default=["async", "sqs", "kinesis"],
    )
    p.add_argument("--pairs", "--rounds", dest="pairs", type=int, default=3, help="rounds")
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--messages", type=int, default=30_000)
    p.add_argument("--records", type=int, default=64_000)
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--timeout", type=float, default=240.0, help="seconds per run")
    p.add_argument("--settle", type=float, default=1.0, help="seconds after the last id")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="2 daemons sharing each workload (nothing lost or run twice), small counts, "
        "no scaling figure",
    )
    args = p.parse_args()
    if 1 not in args.daemons:
        args.daemons = [1, *args.daemons]
    if args.smoke:
        # the sharing is what can go wrong (a lease, an id run twice); one daemon alone is a
        # subset of it, and a scaling figure from a few hundred ids would mean nothing
        args.daemons, args.pairs = [2], 1
        args.events = args.messages = min(args.events, 600)
        args.records, args.shards = min(args.records, 1600), min(args.shards, 4)
        args.timeout, args.settle = 60.0, 0.3
    failed = False
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="esm-p8-")))
        endpoints: dict[str, str] = {}
        if "sqs" in args.workloads:
            endpoints["sqs"] = stack.enter_context(fauxqs.serve())
        if "kinesis" in args.workloads:
            _, endpoints["kinesis"] = stack.enter_context(kinesalite(max(10, args.shards * 2)))
        for workload in args.workloads:
            rounds: list[dict[int, dict[str, Any]]] = []
            for i in range(args.pairs):
                order = args.daemons if i % 2 == 0 else list(reversed(args.daemons))
                one: dict[int, dict[str, Any]] = {}
                for n in order:
                    try:
                        one[n] = run_daemons(args, workload, n, endpoints, workdir)
                    except Exception as exc:
                        one[n] = {"daemons": n, "error": f"{type(exc).__name__}: {exc}"}
                rounds.append(one)
            result = workload_result(args, workload, rounds)
            failed = failed or "error" in result
            print(json.dumps(result), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
