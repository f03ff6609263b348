"""P5: what one idle daemon costs: memory (RSS) and CPU while nothing happens.

The daemon is ``esm run cfg.yaml`` in a subprocess (through :func:`child`, which counts the AWS
calls and Redis commands it makes and can be profiled; see below), on the real Redis with a
private ``StorePrefix`` (every key under it is deleted afterwards), the SQS queues in fauxqs
(``--sqs moto`` for moto's server, which answers ``Connection: close``, so that every long poll
pays for a new connection, as it would not with SQS) and the Kinesis stream in kinesalite, each in
a process of its own. Phases, one daemon each:

- ``baseline-empty``: the config has no functions and no mappings (``esm run`` and its API);
- ``baseline-function``: one function, no mappings (the async worker then has a stream to
  block on);
- ``idle``: ``--mappings`` mappings on one function: one Kinesis mapping (StartingPosition
  LATEST) on a stream of ``--shards`` shards, all leased by this daemon; ``--enabled-sqs``
  enabled SQS mappings, each on an empty queue of its own (no ``MaximumConcurrency``: Lambda's 5
  pollers at first, 2 once the queue proved idle; long polls of 20 s); the rest disabled SQS
  mappings. 1,000 = 1 + 255 + 744 by default;
- ``baseline-poll-loop``: no esm: a plain aiobotocore loop (:func:`poll_loop`) making the calls
  the ``idle`` daemon makes, at the same rates (2 long polls of 20 s on each queue, GetRecords on
  each shard every ``StreamIdlePollSeconds``): what the polling alone costs on this machine.

A phase waits for the API's ``/health`` (and, for ``idle``, for every shard's lease to be held),
lets the daemon settle for ``--warmup`` seconds, then measures (see below): CPU as % of one
core from ``/proc/<pid>/stat`` (utime + stime), RSS from ``/proc/<pid>/status`` (sampled each
second), threads and open file descriptors, and the AWS calls and Redis commands per second the
daemon made meanwhile. Then, for ``idle``, ``--profile-seconds`` of profile: ``py-spy record``
on the PID when ``py-spy`` is found (``--py-spy PATH``; e.g. ``python -m venv /tmp/pyspy &&
/tmp/pyspy/bin/pip install py-spy``): shares of the event loop thread's samples, and
``est_core_percent``, the measured CPU spread over them; else cProfile inside the daemon
(toggled by SIGUSR2; it slows what it profiles, so shares matter, not absolute times).

The poll loop runs beside the idle daemon from the start (both make the same calls, at the same
rates; the load of either is small): after the warmup, ``--pairs`` pairs of ``--seconds`` windows,
the daemon's and the loop's, alternating which goes first, each with the load average before it;
``ratio`` is the median pair ratio of the CPU the daemon uses over the loop's (lower is better),
with its spread, and ``*_cpu_s_per_1k_aws_calls`` what each side spends per 1,000 calls.

Targets for ``idle``: < 200 MB RSS; CPU ≤ 0.4 times the plain poll loop's (Lambda's own poll rates
make "< 2 % of a core" unreachable on loopback, so the target is a ratio); ≤ 3 open file
descriptors per enabled SQS mapping (``fds_per_enabled_queue``: the daemon's open descriptors
over its enabled queues, so that 1,000 queues fit under a 4,096 limit). Prints one JSON object
per phase; the ``idle`` one compares itself with the baselines (``vs_<phase>``).

    python -m benchmarks.idle [--mappings 1000] [--shards 256] [--enabled-sqs 255] [--pairs 5]
                              [--seconds 20] [--warmup 40] [--profile-seconds 10] [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import json
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import fauxqs
from benchmarks.machine import machine
from benchmarks.pairs import Sample, add_pairs_argument, load_average, summarize
from benchmarks.sqs import start_moto
from esm.scaling import IDLE_CONCURRENCY

REGION = "us-east-1"
REDIS_URL = os.environ.get("ESM_BENCH_REDIS", "redis://127.0.0.1:6379/0")
HANDLER = "python:benchmarks.handlers.noop_async"
TARGET_RSS_MB = 200.0
# Lambda's own poll rates (2 long polls per idle queue, GetRecords on every shard each second)
# make "< 2 % of a core" unreachable on loopback; the target is a ratio: at most 0.4 of the CPU
# of a plain aiobotocore loop making the same calls, in the same run (interleaved windows)
TARGET_CPU_RATIO = 0.4
TARGET_FDS_PER_QUEUE = 3.0  # 1,000 queues under a 4,096 descriptor limit
CLK_TCK = os.sysconf("SC_CLK_TCK")
PHASES = ("baseline-empty", "baseline-function", "idle", "baseline-poll-loop")
IDLE_SQS_POLLERS = IDLE_CONCURRENCY  # long polls an idle queue keeps going (docs/semantics.md §3.7)

# -- the daemon (child side) ---------------------------------------------------------------------

# the checkout this file is in, to shorten profile paths
_PROJECT = str(Path(__file__).resolve().parent.parent) + "/"


def child(config_path: str, counts_path: str) -> int:
    """``esm run config_path``, counting AWS calls and Redis commands. SIGUSR1 writes the counts
    so far to ``counts_path`` (JSON); SIGUSR2 starts cProfile, the next SIGUSR2 stops it and dumps
    the stats to ``counts_path + ".prof"``."""
    from aiobotocore.client import AioBaseClient
    from redis.asyncio.client import Pipeline, Redis

    from esm import cli
    from esm.awsjson import JsonClient

    aws: Counter[str] = Counter()
    redis: Counter[str] = Counter()
    seq = [0]

    make_api_call = AioBaseClient._make_api_call

    async def counted_api_call(self: Any, operation_name: str, api_params: Any) -> Any:
        aws[f"{self.meta.service_model.service_name}.{operation_name}"] += 1
        return await make_api_call(self, operation_name, api_params)

    json_call = JsonClient.call

    async def counted_json_call(self: Any, operation: str, params: Any) -> Any:
        aws[f"{self.service_name}.{operation}"] += 1
        return await json_call(self, operation, params)

    execute_command: Callable[..., Awaitable[Any]] = Redis.execute_command

    async def counted_command(self: Any, *args: Any, **options: Any) -> Any:
        name = str(args[0]).upper()
        if name == "EVALSHA":
            name = f"EVALSHA {str(args[1])[:8]}"
        redis[name] += 1
        return await execute_command(self, *args, **options)

    pipeline_execute = Pipeline.execute

    async def counted_pipeline(self: Any, raise_on_error: bool = True) -> Any:
        redis["(pipeline)"] += 1
        return await pipeline_execute(self, raise_on_error)

    AioBaseClient._make_api_call = counted_api_call
    JsonClient.call = counted_json_call  # type: ignore[method-assign]
    Redis.execute_command = counted_command  # type: ignore[method-assign]
    Pipeline.execute = counted_pipeline  # type: ignore[method-assign]

    def dump_counts(signum: int, frame: Any) -> None:
        seq[0] += 1
        tmp = counts_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"seq": seq[0], "aws": aws, "redis": redis}, f)
        os.replace(tmp, counts_path)

    profiler: list[cProfile.Profile] = []

    def toggle_profile(signum: int, frame: Any) -> None:
        if not profiler:
            profiler.append(cProfile.Profile())
            profiler[0].enable()
        else:
            prof = profiler.pop()
            prof.disable()
            # written aside, then renamed: the parent reads it as soon as the name exists
            prof.dump_stats(counts_path + ".prof.tmp")
            os.replace(counts_path + ".prof.tmp", counts_path + ".prof")

    signal.signal(signal.SIGUSR1, dump_counts)
    signal.signal(signal.SIGUSR2, toggle_profile)
    return cli.main(["run", config_path, "--log-level", "WARNING"])


# -- emulators -----------------------------------------------------------------------------------


@contextlib.contextmanager
def kinesalite(shard_limit: int) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """kinesalite (from tests/node_modules) with room for ``shard_limit`` shards."""
    from tests.kinesalite import server

    with server(shard_limit) as found:
        yield found


def stop(proc: subprocess.Popen[Any], timeout_s: float) -> str:
    """SIGTERM, then SIGKILL after ``timeout_s``; says which one ended it."""
    if proc.poll() is not None:
        return "exited"
    proc.terminate()
    try:
        proc.wait(timeout_s)
        return "SIGTERM"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "SIGKILL"


def boto3_client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_queues(endpoint: str, n: int) -> list[str]:
    sqs = boto3_client("sqs", endpoint)
    tag = uuid.uuid4().hex[:6]
    arns = []
    for i in range(n):
        url = sqs.create_queue(QueueName=f"idle-{tag}-{i}")["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        arns.append(attrs["Attributes"]["QueueArn"])
    return arns


def create_stream(endpoint: str, shards: int) -> str:
    kinesis = boto3_client("kinesis", endpoint)
    name = "idle-" + uuid.uuid4().hex[:6]
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    for _ in range(200):
        desc = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if desc["StreamStatus"] == "ACTIVE":
            return str(desc["StreamARN"])
        time.sleep(0.05)
    raise RuntimeError(f"stream {name} did not become ACTIVE")


# -- the same calls from a plain loop (baseline) -------------------------------------------------


def poll_loop(spec_path: str, counts_path: str) -> int:
    """A plain aiobotocore loop making the calls an idle daemon makes, at the same rates: on each
    queue ``pollers`` tasks long-polling ReceiveMessage (20 s), on each shard one task reading
    GetRecords every ``period_s`` (their starts spread over one period). No engine, no Redis:
    what polling alone costs. SIGUSR1 writes the call counts so far to ``counts_path``."""
    import asyncio

    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    spec = json.loads(Path(spec_path).read_text())
    calls: Counter[str] = Counter()
    seq = [0]

    def dump(*_: Any) -> None:
        seq[0] += 1
        tmp = counts_path + ".tmp"
        Path(tmp).write_text(json.dumps({"seq": seq[0], "aws": calls, "redis": {}}))
        os.replace(tmp, counts_path)

    signal.signal(signal.SIGUSR1, dump)

    async def run() -> None:
        session = get_session()
        config = AioConfig(max_pool_connections=2 * len(spec["queues"]) + 16, read_timeout=70)
        async with (
            session.create_client("sqs", config=config) as sqs,
            session.create_client("kinesis", config=config) as kinesis,
        ):
            urls = [(await sqs.get_queue_url(QueueName=q))["QueueUrl"] for q in spec["queues"]]
            shards = (
                [
                    s["ShardId"]
                    for s in (await kinesis.list_shards(StreamName=spec["stream"]))["Shards"]
                ]
                if spec["stream"]
                else []
            )

            async def receive(url: str) -> None:
                while True:
                    await sqs.receive_message(
                        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=20
                    )
                    calls["sqs.ReceiveMessage"] += 1

            async def read(shard: str, offset: float) -> None:
                iterator = (
                    await kinesis.get_shard_iterator(
                        StreamName=spec["stream"], ShardId=shard, ShardIteratorType="LATEST"
                    )
                )["ShardIterator"]
                await asyncio.sleep(offset)
                while True:
                    out = await kinesis.get_records(ShardIterator=iterator, Limit=1000)
                    calls["kinesis.GetRecords"] += 1
                    iterator = out["NextShardIterator"]
                    await asyncio.sleep(spec["period_s"])

            period = spec["period_s"]
            tasks = [receive(u) for u in urls for _ in range(spec["pollers"])]
            tasks += [read(s, period * i / len(shards)) for i, s in enumerate(shards)]
            with open(counts_path + ".ready", "w"):  # noqa: ASYNC230 - once, at start
                pass
            await asyncio.gather(*tasks)

    asyncio.run(run())
    return 0


# -- /proc ---------------------------------------------------------------------------------------


def cpu_times(pid: int) -> tuple[float, float]:
    """CPU seconds in user space and in the kernel (on loopback, the kernel side of a send
    includes the peer's TCP receive path)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


# -- one daemon ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _script_names() -> dict[str, str]:
    """EVALSHA prefixes → the store's and the async queue's script names."""
    from esm import async_queue, store

    names = {}
    for module in (store, async_queue):
        for attr, value in vars(module).items():
            if isinstance(value, str) and "redis.call" in value:
                names[hashlib.sha1(value.encode()).hexdigest()[:8]] = attr.strip("_").lower()
    return names


class Daemon:
    """``esm run`` of one config in a subprocess, through :func:`child`; or, with ``mode``
    ``--poll-loop``, :func:`poll_loop` of a spec (``config``)."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        config: dict[str, Any],
        env: dict[str, str],
        mode: str = "--child",
    ):
        self.workdir = workdir
        self.name = name
        self.mode = mode
        self.port = int(config.get("Settings", {}).get("ApiPort", 0))
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(json.dumps(config))  # JSON is YAML
        self.counts_path = workdir / f"{name}.counts.json"
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "w")  # closed in stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.idle",
                mode,
                str(self.config_path),
                str(self.counts_path),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        self.pid = self.proc.pid

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-n:])

    def wait_healthy(self, deadline: float) -> None:
        url = f"http://127.0.0.1:{self.port}/health"
        ready = Path(str(self.counts_path) + ".ready")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: daemon exited:\n{self.log_tail()}")
            if self.mode == "--poll-loop":
                if ready.exists():
                    return
                time.sleep(0.2)
                continue
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name}: /health not ok in time:\n{self.log_tail()}")

    def counts(self) -> dict[str, Any]:
        before = -1
        with contextlib.suppress(OSError, ValueError):
            before = json.loads(self.counts_path.read_text())["seq"]
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                data: dict[str, Any] = json.loads(self.counts_path.read_text())
                if data["seq"] != before:
                    return data
            time.sleep(0.02)
        raise TimeoutError(f"{self.name}: the daemon did not answer SIGUSR1")

    def measure(self, seconds: float) -> dict[str, Any]:
        counts0 = self.counts()
        (user0, sys0), t0 = cpu_times(self.pid), time.monotonic()
        samples = []
        while True:
            st = status(self.pid)
            samples.append((st["VmRSS"], st["Threads"], open_fds(self.pid)))
            left = t0 + seconds - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(1.0, left))
        (user1, sys1), t1 = cpu_times(self.pid), time.monotonic()
        counts1 = self.counts()
        elapsed = t1 - t0
        names = _script_names()

        def rates(kind: str) -> dict[str, float]:
            delta = Counter(counts1[kind])
            delta.subtract(counts0[kind])
            out = {}
            for key, n in delta.most_common():
                if n:
                    if key.startswith("EVALSHA "):
                        key = f"EVALSHA {names.get(key.split()[1], key.split()[1])}"
                    out[key] = round(n / elapsed, 2)
            return out

        rss = [s[0] / 1024 for s in samples]
        st = status(self.pid)
        return {
            "seconds": round(elapsed, 2),
            "cpu_percent": round(100 * (user1 + sys1 - user0 - sys0) / elapsed, 2),
            "cpu_user_percent": round(100 * (user1 - user0) / elapsed, 2),
            "cpu_kernel_percent": round(100 * (sys1 - sys0) / elapsed, 2),
            "rss_mb": round(sum(rss) / len(rss), 1),
            "rss_mb_max": round(max(rss), 1),
            "peak_rss_mb": round(st["VmHWM"] / 1024, 1),  # since the daemon started
            "threads": max(s[1] for s in samples),
            "open_fds": max(s[2] for s in samples),
            "aws_calls_per_s": rates("aws"),
            "redis_commands_per_s": rates("redis"),
        }

    def stop(self, timeout_s: float) -> dict[str, Any]:
        t0 = time.monotonic()
        how = stop(self.proc, timeout_s)
        self._log.close()
        return {"stopped_by": how, "stop_seconds": round(time.monotonic() - t0, 2)}


# -- profiling -----------------------------------------------------------------------------------


def _fold(
    raw: str, duration_s: float, rate: int, cpu_percent: float, top: int = 25
) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks → where the event loop's thread spends its samples.

    Shares are of the main thread's samples outside ``epoll`` (the loop: all of esm's work; py-spy
    also counts an idle thread-pool worker and the loop's waits as busy, so other threads are only
    listed in ``samples_by_thread``), and ``est_core_percent`` spreads the CPU measured without
    the profiler (``cpu_percent``) over them."""
    own: Counter[str] = Counter()
    within: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    main = waiting = 0
    for line in raw.splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not stack or not n_text.isdigit():
            continue
        n = int(n_text)
        parts = stack.split(";")
        thread = next((p.split(": ", 1)[-1] for p in parts if p.startswith("thread ")), "?")
        threads[thread] += n
        if thread != "MainThread":
            continue
        frames = [f for f in (_frame(p) for p in parts) if f]
        if not frames or frames[-1].startswith("EpollSelector.select"):
            waiting += n  # the loop waiting for I/O, which py-spy may sample as busy
            continue
        main += n
        own[frames[-1]] += n
        for f in set(frames):
            within[f] += n
    ours = ("(esm/", "(connectors/", "(destinations/")
    main = max(1, main)

    def row(f: str, n: int) -> dict[str, Any]:
        return {
            "function": f,
            "share": round(n / main, 3),
            "est_core_percent": round(cpu_percent * n / main, 2),
        }

    return {
        "samples_expected": int(duration_s * rate),
        "samples_by_thread": dict(threads.most_common()),
        "main_thread_samples_in_epoll": waiting,
        "esm_functions_inclusive": [
            row(f, n) for f, n in within.most_common() if any(o in f for o in ours)
        ][:top],
        "top_self": [row(f, n) for f, n in own.most_common(top)],
        "top_inclusive": [
            row(f, n)
            for f, n in within.most_common(top + 15)
            if "(asyncio/" not in f
            and not f.startswith(
                ("_run_module_as_main", "_run_code", "<module>", "child ", "main ")
            )
        ][:top],
    }


def _frame(frame: str) -> str:
    """``name (path/file.py:123)`` → ``name (file.py)``; the process/thread roots are dropped."""
    if frame.startswith(("process ", "thread ")) or "(" not in frame:
        return ""
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("/site-packages/", _PROJECT, "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def profile(
    daemon: Daemon, seconds: float, py_spy: str | None, cpu_percent: float
) -> dict[str, Any]:
    if seconds <= 0:
        return {}
    if py_spy:
        out = daemon.workdir / f"{daemon.name}.pyspy.txt"
        rate = 100
        proc = subprocess.run(
            [
                py_spy,
                "record",
                "--pid",
                str(daemon.pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--threads",
                "--output",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
        if proc.returncode == 0 and out.exists():
            folded = _fold(out.read_text(), int(seconds), rate, cpu_percent)
            return {"tool": "py-spy", **folded}
        note = f"py-spy failed ({proc.returncode}): {proc.stderr.strip()[-300:]}; cProfile instead"
    else:
        note = "py-spy not found: cProfile inside the daemon (slows it; read shares only)"
    prof_path = Path(str(daemon.counts_path) + ".prof")
    cpu0 = cpu_seconds(daemon.pid)
    os.kill(daemon.pid, signal.SIGUSR2)
    time.sleep(seconds)
    os.kill(daemon.pid, signal.SIGUSR2)
    cpu = cpu_seconds(daemon.pid) - cpu0
    deadline = time.monotonic() + 10
    while not prof_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not prof_path.exists():
        return {"tool": "cProfile", "note": note, "error": "no profile written"}
    stats = pstats.Stats(str(prof_path), stream=io.StringIO())
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    for (path, line, name), (_cc, calls, tt, ct, _callers) in raw.items():
        if "epoll" in name:
            continue  # the loop waiting: not CPU
        short = path.split("/site-packages/")[-1].split(_PROJECT)[-1]
        rows.append(
            {
                "function": f"{name} ({short}:{line})",
                "calls_per_s": round(calls / seconds, 1),
                "tottime_s": round(tt, 4),
                "cumtime_s": round(ct, 4),
            }
        )
    return {
        "tool": "cProfile",
        "note": note,
        "cpu_percent_while_profiled": round(100 * cpu / seconds, 2),
        "top_self": sorted(rows, key=lambda r: float(r["tottime_s"]), reverse=True)[:25],
        "top_cumulative": sorted(rows, key=lambda r: float(r["cumtime_s"]), reverse=True)[:25],
    }


# -- the phases ----------------------------------------------------------------------------------


def settings(prefix: str) -> dict[str, Any]:
    return {
        "Region": REGION,
        "Store": REDIS_URL,
        "StorePrefix": prefix,
        "ApiPort": _free_port(),
    }


def idle_config(
    prefix: str,
    *,
    mappings: int,
    queue_arns: list[str],
    stream_arn: str | None,
    stream_uuid: str,
) -> dict[str, Any]:
    fn = "idle"
    out: list[dict[str, Any]] = []
    if stream_arn is not None:
        out.append(
            {
                "UUID": stream_uuid,
                "FunctionName": fn,
                "EventSourceArn": stream_arn,
                "StartingPosition": "LATEST",
                "BatchSize": 100,
            }
        )
    out += [{"FunctionName": fn, "EventSourceArn": arn, "BatchSize": 10} for arn in queue_arns]
    account = "000000000000"
    out += [
        {
            "FunctionName": fn,
            "EventSourceArn": f"arn:aws:sqs:{REGION}:{account}:{prefix}-off-{i}",
            "Enabled": False,
        }
        for i in range(max(0, mappings - len(out)))
    ]
    return {
        "Settings": settings(prefix),
        "Functions": {fn: {"Target": HANDLER}},
        "EventSourceMappings": out,
    }


def leases_held(prefix: str, stream_uuid: str) -> int:
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        values = client.hgetall(f"{prefix}:leases:{{{stream_uuid}}}")
    finally:
        client.close()
    now = time.time()
    held = 0
    for value in values.values():
        # decode_responses: str values (redis-py's types say bytes or str)
        _token, expires, owner = str(value).split(":", 2)
        if owner and float(expires) > now:
            held += 1
    return held


def delete_prefix(prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


def run_phase(
    name: str,
    config: dict[str, Any],
    args: argparse.Namespace,
    env: dict[str, str],
    workdir: Path,
    *,
    shards: int = 0,
    stream_uuid: str = "",
    profile_s: float = 0.0,
    loop: Daemon | None = None,
) -> dict[str, Any]:
    prefix = config["Settings"]["StorePrefix"]
    daemon = Daemon(workdir, name, config, env)
    out: dict[str, Any] = {
        "benchmark": "P5-idle",
        "phase": name,
        "parameters": {
            "functions": len(config.get("Functions", {})),
            "mappings": len(config.get("EventSourceMappings", [])),
            "enabled_sqs_mappings": sum(
                1
                for m in config.get("EventSourceMappings", [])
                if ":sqs:" in m["EventSourceArn"] and m.get("Enabled", True)
            ),
            "disabled_mappings": sum(
                1 for m in config.get("EventSourceMappings", []) if not m.get("Enabled", True)
            ),
            "shards": shards,
            "warmup_s": args.warmup,
            "store": "redis (private StorePrefix)",
            "stream_idle_poll_s": config["Settings"].get("StreamIdlePollSeconds", "default"),
            "sqs_emulator": args.sqs,
        },
    }
    try:
        deadline = time.monotonic() + args.startup_timeout
        health_s = args.startup_timeout if shards else min(args.startup_timeout, args.health_wait)
        try:
            daemon.wait_healthy(time.monotonic() + health_s)
            out["seconds_to_healthy"] = round(time.monotonic() - daemon.started, 2)
        except TimeoutError:
            # measured all the same: an unhealthy daemon's cost is a finding too
            out["healthy"] = False
            out["health_waited_s"] = health_s
        if shards:
            while leases_held(prefix, stream_uuid) < shards:
                if time.monotonic() > deadline or daemon.proc.poll() is not None:
                    raise TimeoutError(
                        f"{name}: {leases_held(prefix, stream_uuid)} of {shards} leases held:\n"
                        f"{daemon.log_tail()}"
                    )
                time.sleep(0.25)
            out["seconds_to_all_leases"] = round(time.monotonic() - daemon.started, 2)
        time.sleep(args.warmup)
        if loop is not None:
            out.update(interleaved(daemon, loop, args, enabled_queues=out["parameters"]))
        else:
            out.update(daemon.measure(args.seconds if name == "idle" else args.baseline_seconds))
        if shards:
            out["leases_held_after"] = leases_held(prefix, stream_uuid)
        if profile_s:
            out["profile"] = profile(daemon, profile_s, args.py_spy, out["cpu_percent"])
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        out.update(daemon.stop(args.stop_timeout))
        out["keys_deleted"] = delete_prefix(prefix)
    if name == "idle" and "cpu_percent" in out:
        queues = out["parameters"]["enabled_sqs_mappings"]
        out["fds_per_enabled_queue"] = round(out["open_fds"] / queues, 2) if queues else None
        out["target_rss_mb"] = TARGET_RSS_MB
        out["target_cpu_ratio_vs_poll_loop"] = TARGET_CPU_RATIO
        out["target_fds_per_enabled_queue"] = TARGET_FDS_PER_QUEUE
        cpu_ratio = out.get("ratio")  # the median pair ratio, when interleaved with the loop
        out["meets_target"] = (
            out["rss_mb_max"] < TARGET_RSS_MB
            and (cpu_ratio is None or cpu_ratio <= TARGET_CPU_RATIO)
            and (not queues or out["fds_per_enabled_queue"] <= TARGET_FDS_PER_QUEUE)
        )
    return out


def interleaved(
    daemon: Daemon, loop: Daemon, args: argparse.Namespace, enabled_queues: dict[str, Any]
) -> dict[str, Any]:
    """``--pairs`` pairs of ``--seconds`` windows, the idle daemon's and the poll loop's (both
    running all along, making the same calls), alternating which is measured first: the CPU
    ratio of each pair, its median and spread; CPU seconds per 1,000 AWS calls of each side."""
    pairs: list[tuple[Sample, Sample, float | None]] = []
    windows: list[dict[str, Any]] = []
    loops: list[dict[str, Any]] = []

    def sample(m: dict[str, Any]) -> Sample:
        calls = sum(m["aws_calls_per_s"].values()) * m["seconds"]
        return Sample(
            units=calls,
            seconds=m["seconds"],
            cpu_s=m["cpu_percent"] / 100 * m["seconds"],
            value=m["cpu_percent"],
        )

    for i in range(args.pairs):
        load = load_average()
        if i % 2 == 0:
            esm, base = daemon.measure(args.seconds), loop.measure(args.seconds)
        else:
            base, esm = loop.measure(args.seconds), daemon.measure(args.seconds)
        windows.append(esm)
        loops.append(base)
        pairs.append((sample(esm), sample(base), load))
    summary = summarize(pairs, unit="aws_calls", lower_is_better=True)
    summary["ratio_is"] = "esm daemon's CPU % / the plain poll loop's, lower is better"
    summary["baseline_poll_loop_cpu_percent"] = summary.pop("baseline_value")
    summary["esm_cpu_percent_median"] = summary.pop("esm_value")
    mid = sorted(windows, key=lambda m: float(m["cpu_percent"]))[len(windows) // 2]
    out = dict(mid)
    out["seconds"] = round(sum(float(m["seconds"]) for m in windows), 2)
    out["rss_mb_max"] = max(float(m["rss_mb_max"]) for m in windows)
    out["open_fds"] = max(int(m["open_fds"]) for m in windows)
    out["baseline_poll_loop"] = {
        "open_fds": max(int(m["open_fds"]) for m in loops),
        "rss_mb": sorted(float(m["rss_mb"]) for m in loops)[len(loops) // 2],
        "aws_calls_per_s": loops[len(loops) // 2]["aws_calls_per_s"],
    }
    out.update(summary)
    return out


def poll_loop_daemon(
    args: argparse.Namespace,
    env: dict[str, str],
    workdir: Path,
    queue_arns: list[str],
    stream_arn: str | None,
) -> Daemon:
    """The ``baseline-poll-loop``: :func:`poll_loop` making the idle daemon's calls, at its
    rates (2 long polls per queue, GetRecords on each shard every ``StreamIdlePollSeconds``)."""
    from esm.config import Settings

    period = args.stream_idle_poll or Settings().stream_idle_poll_s
    spec = {
        "queues": [arn.rsplit(":", 1)[1] for arn in queue_arns],
        "pollers": IDLE_SQS_POLLERS,
        "stream": stream_arn.rsplit("/", 1)[1] if stream_arn else None,
        "period_s": period,
    }
    return Daemon(workdir, "baseline-poll-loop", spec, env, mode="--poll-loop")


def main_run(args: argparse.Namespace) -> None:
    results: list[dict[str, Any]] = []
    tag = uuid.uuid4().hex[:8]
    with contextlib.ExitStack() as stack:
        if args.workdir:
            workdir = Path(args.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="esm-idle-")))
        if args.sqs == "moto":
            moto, sqs_url = start_moto()
            stack.callback(stop, moto, 10)
            sqs_pid = moto.pid
        else:
            pids: list[int] = []
            sqs_url = stack.enter_context(fauxqs.serve(pids))
            sqs_pid = pids[0]
        kinesalite_proc, kinesis_url = stack.enter_context(kinesalite(max(10, args.shards)))
        env = dict(os.environ)
        env.update(
            {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_ENDPOINT_URL_SQS": sqs_url,
                "AWS_ENDPOINT_URL_KINESIS": kinesis_url,
            }
        )
        env.pop("AWS_ENDPOINT_URL", None)
        t0 = time.monotonic()
        queue_arns = create_queues(sqs_url, args.enabled_sqs)
        stream_arn = create_stream(kinesis_url, args.shards) if args.shards else None
        setup_s = time.monotonic() - t0

        baselines = [
            ("baseline-empty", {"Settings": settings(f"esmidle-{tag}-e")}),
            (
                "baseline-function",
                {
                    "Settings": settings(f"esmidle-{tag}-f"),
                    "Functions": {"idle": {"Target": HANDLER}},
                },
            ),
        ]
        for name, config in baselines:
            if name not in args.phases:
                continue
            results.append(run_phase(name, config, args, env, workdir))
            print(json.dumps(results[-1] | {"machine": machine()}), flush=True)

        if "idle" not in args.phases:
            return
        stream_uuid = str(uuid.uuid4())
        config = idle_config(
            f"esmidle-{tag}-i",
            mappings=args.mappings,
            queue_arns=queue_arns,
            stream_arn=stream_arn,
            stream_uuid=stream_uuid,
        )
        if args.stream_idle_poll is not None:
            config["Settings"]["StreamIdlePollSeconds"] = args.stream_idle_poll
        loop: Daemon | None = None
        if "baseline-poll-loop" in args.phases:
            # runs beside the idle daemon from the start: their windows are interleaved
            loop = poll_loop_daemon(args, env, workdir, queue_arns, stream_arn)
            stack.callback(loop.stop, args.stop_timeout)
            loop.wait_healthy(time.monotonic() + args.startup_timeout)
        emulators0 = {"sqs": cpu_seconds(sqs_pid), "kinesalite": cpu_seconds(kinesalite_proc.pid)}
        t1 = time.monotonic()
        idle = run_phase(
            "idle",
            config,
            args,
            env,
            workdir,
            shards=args.shards,
            stream_uuid=stream_uuid,
            profile_s=args.profile_seconds,
            loop=loop,
        )
        elapsed = time.monotonic() - t1
        idle["emulators_cpu_percent_during_phase"] = {
            args.sqs: round(100 * (cpu_seconds(sqs_pid) - emulators0["sqs"]) / elapsed, 1),
            "kinesalite": round(
                100 * (cpu_seconds(kinesalite_proc.pid) - emulators0["kinesalite"]) / elapsed, 1
            ),
        }
        idle["setup_seconds"] = round(setup_s, 2)
        for base in results:
            if "cpu_percent" in base and "cpu_percent" in idle:
                idle[f"vs_{base['phase']}"] = {
                    "cpu_percent_delta": round(idle["cpu_percent"] - base["cpu_percent"], 2),
                    "rss_mb_delta": round(idle["rss_mb"] - base["rss_mb"], 1),
                }
        print(json.dumps(idle | {"machine": machine()}), flush=True)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2], sys.argv[3]))
    if len(sys.argv) == 4 and sys.argv[1] == "--poll-loop":
        sys.exit(poll_loop(sys.argv[2], sys.argv[3]))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mappings", type=int, default=1000, help="all of them, the Kinesis one too")
    p.add_argument("--shards", type=int, default=256, help="shards of the one Kinesis stream")
    p.add_argument(
        "--stream-idle-poll",
        type=float,
        help="Settings.StreamIdlePollSeconds for the idle phase (default: esm's own)",
    )
    p.add_argument(
        "--sqs",
        choices=("fauxqs", "moto"),
        default="fauxqs",
        help="the SQS emulator (moto closes every connection: each long poll then opens one)",
    )
    p.add_argument("--enabled-sqs", type=int, default=255, help="enabled SQS mappings")
    p.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="idle: each side's window in a pair (one long poll); poll loop alone: the window",
    )
    p.add_argument("--baseline-seconds", type=float, default=15.0, help="measured window")
    p.add_argument(
        "--warmup",
        type=float,
        default=40.0,
        help="after health and leases (idle SQS pollers settle after one 20 s long poll; the "
        "connections they no longer need close 15 s later)",
    )
    p.add_argument("--profile-seconds", type=float, default=10.0, help="0: no profile")
    p.add_argument("--startup-timeout", type=float, default=90.0)
    p.add_argument(
        "--health-wait",
        type=float,
        default=15.0,
        help="baselines: seconds to wait for /health before measuring anyway",
    )
    p.add_argument("--stop-timeout", type=float, default=10.0, help="SIGTERM, then SIGKILL")
    p.add_argument("--py-spy", default=shutil.which("py-spy"), help="path to py-spy")
    p.add_argument(
        "--phases",
        nargs="+",
        choices=PHASES,
        default=list(PHASES),
        help="which daemons to run (default: all)",
    )
    p.add_argument("--workdir", help="keep configs, logs and profiles here (default: a temp dir)")
    add_pairs_argument(p)
    p.add_argument("--smoke", action="store_true", help="a few mappings and shards, seconds")
    args = p.parse_args()
    if args.smoke:
        args.mappings = min(args.mappings, 20)
        args.shards = min(args.shards, 4)
        args.enabled_sqs = min(args.enabled_sqs, 4)
        args.seconds = min(args.seconds, 1.0)
        args.pairs = min(args.pairs, 1)
        args.baseline_seconds = min(args.baseline_seconds, 1.0)
        args.warmup = min(args.warmup, 0.5)
        args.profile_seconds = min(args.profile_seconds, 1.0)
        args.health_wait = min(args.health_wait, 5.0)
        args.stop_timeout = min(args.stop_timeout, 3.0)
    args.enabled_sqs = min(args.enabled_sqs, args.mappings - (1 if args.shards else 0))
    main_run(args)


if __name__ == "__main__":
    main()
