"""esm beside LocalStack's own event source mapping poller, on the same emulators, same handler.

    python -m benchmarks.localstack [--cases sqs sqs-failures kinesis] [--pairs 5]
                                    [--messages 20000] [--records 100000]
                                    [--failure-visibility 2] [--smoke]

LocalStack (``localstack-core`` from PyPI) needs Python ≥ 3.13. The benchmark looks for one
(``$ESM_BENCH_PYTHON313``, ``python3.13`` on the PATH, pyenv's versions), makes a venv of its own
under the benchmark cache (``$XDG_CACHE_HOME/esm-benchmarks/localstack-venv``, default
``~/.cache``; never in the checkout) and installs :data:`LOCALSTACK_PACKAGES` there once (not
under ``--smoke``, which uses the venv only if it is there). Without a 3.13 (or that venv, for
``--smoke``) it prints a JSON object with ``skipped`` saying why, and exits 0.

LocalStack's side runs in that venv, in a subprocess: :mod:`benchmarks.localstack_driver` builds
its ``SqsPoller`` / ``KinesisPoller``, ``EsmEventProcessor`` and ``EsmWorker`` as LocalStack's
``EsmWorkerFactory`` does, with a ``Sender`` calling the handler in process (no Lambda, no
container, no LocalStack gateway: its poller talks straight to the emulator). esm's side is an
:class:`~esm.engine.Engine` in this process (``memory://`` store) calling the same handler code
through a ``python:`` target. Both read the same emulator: fauxqs for SQS, kinesalite for
Kinesis.

Cases:

- ``sqs``: ``--messages`` on a fresh standard queue (filled before the side starts), BatchSize 10,
  a 20 ms handler;
- ``sqs-failures``: the same with ``ReportBatchItemFailures``; every message whose ``i`` is a
  multiple of 7 fails once (it comes back after the queue's visibility timeout,
  ``--failure-visibility`` 2 s, on both sides, and then succeeds);
- ``kinesis``: ``--records`` on a 4-shard stream (filled once per case; each side reads it all
  from TRIM_HORIZON), BatchSize ``--kinesis-batch-size``, a no-op handler.

LocalStack's poll interval is ``--localstack-poll-interval`` (its default is 1 s between polls,
i.e. 10 msg/s at BatchSize 10; the default here is 0, its fastest). esm runs with Lambda's default
scaling unless ``--esm-max-concurrency`` is given.

Every message must be delivered exactly once on both sides, counted per ``messageId`` / sequence
number by the handler (a failed delivery is not a delivery), and an SQS queue must be empty after
its side: otherwise the sample is an error and the benchmark exits 1.

Each case runs ``--pairs`` interleaved pairs (esm first, then LocalStack first, …); reported: the
median of the per-pair rate ratios (esm / LocalStack) with min, max and every pair, the load
average before each pair, and CPU seconds per 1,000 messages of each side's own process (the
emulator excluded), as every comparison in the suite is (:mod:`benchmarks.pairs`; LocalStack is
the ``baseline`` in its keys).

``--smoke`` runs the ``sqs-failures`` case (the SQS poller, with retries) and the ``kinesis`` one
on 140 messages (1 s visibility timeout) and 1,000 records, one pair: it shows that both sides run
and deliver exactly once, not how fast.

A full run of every case (not ``--smoke``) also draws ``docs/localstack.svg`` from its results
(``--chart-from FILE`` redraws it from saved JSON lines).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import localstack_driver as driver
from benchmarks.machine import machine
from benchmarks.pairs import add_pairs_argument, interleave

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "docs" / "localstack.svg"
REGION = "us-east-1"
LOCALSTACK_VERSION = "2026.3.0"
LOCALSTACK_PACKAGES = [
    f"localstack-core=={LOCALSTACK_VERSION}",
    # what its event source mapping modules import without declaring them
    "boto3",
    "rolo",
    "jsonpatch",
    "moto",
    "pydantic",
]
CASES = ("sqs", "sqs-failures", "kinesis")
# --smoke: the failure case covers the SQS poller and its retries, kinesis the other poller
SMOKE_CASES = ("sqs-failures", "kinesis")
FAIL_EVERY = 7


# -- the LocalStack venv ------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "esm-benchmarks"


def find_python313() -> str | None:
    """A Python ≥ 3.13 interpreter on this machine, or None."""
    candidates = [os.environ.get("ESM_BENCH_PYTHON313", "")]
    candidates += [shutil.which(n) or "" for n in ("python3.14", "python3.13")]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.1[3-9]*/bin/python3"), reverse=True)
    for c in candidates:
        if not c or not os.path.exists(c):
            continue
        probe = subprocess.run(
            [c, "-c", "import sys; print(sys.version_info >= (3, 13))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == "True":
            return c
    return None


def localstack_python(install: bool = True) -> tuple[str | None, str]:
    """The venv's python with LocalStack importable, or (None, why not). ``install=False``
    (``--smoke``): only a venv that is ready already, no pip."""
    venv = cache_dir() / "localstack-venv"
    py = venv / "bin" / "python"
    # written once the probe passed: importing LocalStack to check it takes ~1.5 s a run
    ready, wanted = venv / "esm-bench-ready", "\n".join(LOCALSTACK_PACKAGES)
    if py.exists() and ready.exists() and ready.read_text() == wanted:
        return str(py), "ready"
    probe = "import localstack.services.lambda_.event_source_mapping.esm_worker"
    if py.exists() and subprocess.run([py, "-c", probe], capture_output=True).returncode == 0:
        ready.write_text(wanted)
        return str(py), "ready"
    if not install:
        return None, (
            "no LocalStack venv yet (a full `python -m benchmarks.localstack` makes one "
            "under the benchmark cache)"
        )
    base = find_python313()
    if base is None:
        return None, (
            "LocalStack needs Python >= 3.13 and none was found "
            "(set ESM_BENCH_PYTHON313, or install one, e.g. with pyenv)"
        )
    venv.parent.mkdir(parents=True, exist_ok=True)
    if not py.exists():
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [py, "-m", "pip", "install", "-q", *LOCALSTACK_PACKAGES], capture_output=True, text=True
    )
    if pip.returncode != 0:
        return None, f"pip install into {venv.name} failed: {pip.stderr.strip()[-300:]}"
    if subprocess.run([py, "-c", probe], capture_output=True).returncode != 0:
        return None, "localstack-core installed but its event source mapping does not import"
    ready.write_text(wanted)
    return str(py), "installed"


# -- emulators and sources ----------------------------------------------------------------------


@contextlib.contextmanager
def emulators(cases: list[str]) -> Iterator[dict[str, str]]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        if any(c.startswith("sqs") for c in cases):
            from benchmarks.fauxqs import serve as fauxqs

            urls["sqs"] = stack.enter_context(fauxqs())
        if "kinesis" in cases:
            from tests.kinesalite import serve as kinesalite

            urls["kinesis"] = stack.enter_context(kinesalite())
        yield urls


async def fresh_full_queue(sqs: Any, messages: int, visibility_s: int) -> tuple[str, str]:
    from benchmarks.sqs import fill

    name = "ls-" + uuid.uuid4().hex[:8]
    attributes = {"VisibilityTimeout": str(visibility_s)}
    url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
    attrs = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    await fill(sqs, url, messages, 100)
    return attrs["Attributes"]["QueueArn"], url


async def queue_left(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attrs = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names))["Attributes"]
    return sum(int(attrs.get(n, 0)) for n in names)


def check_once(side: str, summary: dict[str, Any], expected: int, left: int | None) -> None:
    problems = []
    if summary["delivered_ids"] != expected:
        problems.append(f"{summary['delivered_ids']} of {expected} delivered")
    if summary["duplicates"]:
        problems.append(f"{summary['duplicates']} duplicate deliveries")
    if left:
        problems.append(f"{left} messages left on the queue")
    if problems:
        raise RuntimeError(f"{side}: not exactly once: {', '.join(problems)}")


# -- the sides ----------------------------------------------------------------------------------


def run_driver(python: str, spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [python, "-m", "benchmarks.localstack_driver", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=spec["timeout_s"] + 60,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-4:])
        raise RuntimeError(f"LocalStack driver exit {proc.returncode}: {tail}")
    got: dict[str, Any] = json.loads(lines[-1])
    if not got["completed"]:
        why = f"; its poller failed {got['poll_errors']} times: {got['last_poll_error']}"
        raise RuntimeError(
            f"LocalStack: {got['delivered_ids']} delivered in {got['seconds']:.0f} s"
            + (why if got["poll_errors"] else "")
        )
    return got


async def esm_side(
    aws: Any, kind: str, arn: str, expected: int, args: argparse.Namespace, fail: bool
) -> dict[str, Any]:
    from esm.config import parse_config
    from esm.engine import Engine

    fn = "ls-" + uuid.uuid4().hex[:8]
    mapping: dict[str, Any] = {"FunctionName": fn, "EventSourceArn": arn}
    function: dict[str, Any] = {"Target": f"python:benchmarks.localstack_driver.esm_{kind}"}
    if kind == "sqs":
        mapping["BatchSize"] = 10
        if fail:
            mapping["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
            function["Timeout"] = args.failure_visibility
        if args.esm_max_concurrency:
            mapping["ScalingConfig"] = {"MaximumConcurrency": args.esm_max_concurrency}
    else:
        mapping["BatchSize"] = args.kinesis_batch_size
        mapping["StartingPosition"] = "TRIM_HORIZON"
    config = parse_config(
        {
            "Settings": {"Region": REGION, "Store": "memory://"},
            "Functions": {fn: function},
            "EventSourceMappings": [mapping],
        }
    )
    handler_ms = args.handler_ms if kind == "sqs" else 0.0
    tally = driver.TALLY = driver.Tally(expected, handler_ms, FAIL_EVERY if fail else 0)
    engine = Engine(config, aws=aws)
    cpu0 = time.process_time()
    started = time.perf_counter()
    try:
        await engine.start()
        # the handler sets ``done`` from the loop; a thread waits for it without polling
        await asyncio.to_thread(
            tally.done.wait, max(0.0, started + args.timeout - time.perf_counter())
        )
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        await asyncio.sleep(0.3)  # the same grace as LocalStack's side: late duplicates show
    finally:
        await engine.aclose(deadline_s=5)
    out = tally.summary()
    if not tally.done.is_set():
        raise RuntimeError(f"esm: {out['delivered_ids']} delivered in {args.timeout} s")
    first = None if tally.first_at is None else tally.first_at - started
    return {**out, "seconds": elapsed, "cpu_s": cpu, "seconds_to_first_batch": first}


async def run_case(
    case: str, python: str, urls: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    from esm.aws import AwsClients

    kind = "kinesis" if case == "kinesis" else "sqs"
    fail = case == "sqs-failures"
    aws = AwsClients(endpoint_url=urls[kind])
    try:
        client = await aws.client(kind, REGION)
        stream: Any = None
        if kind == "kinesis":
            from benchmarks.kinesis import fill_stream

            stream = await fill_stream(client, 4, args.records, 100)
        expected = args.records if kind == "kinesis" else args.messages
        visibility = args.failure_visibility if fail else 30

        async def esm() -> dict[str, Any]:
            if stream is not None:
                got = await esm_side(aws, kind, stream.arn, expected, args, fail)
                check_once("esm", got, expected, None)
                return {"units": expected, **got}
            arn, url = await fresh_full_queue(client, expected, visibility)
            got = await esm_side(aws, kind, arn, expected, args, fail)
            check_once("esm", got, expected, await queue_left(client, url))
            await client.delete_queue(QueueUrl=url)
            return {"units": expected, **got}

        async def localstack() -> dict[str, Any]:
            spec: dict[str, Any] = {
                "kind": kind,
                "endpoint": urls[kind],
                "region": REGION,
                "account": "000000000000",
                "uuid": str(uuid.uuid4()),
                "expected": expected,
                "handler_ms": args.handler_ms if kind == "sqs" else 0.0,
                "fail_every": FAIL_EVERY if fail else 0,
                "poll_interval_s": args.localstack_poll_interval,
                "timeout_s": args.timeout,
            }
            url = None
            if stream is not None:
                spec.update(source_arn=stream.arn, batch_size=args.kinesis_batch_size)
            else:
                arn, url = await fresh_full_queue(client, expected, visibility)
                spec.update(source_arn=arn, queue_url=url, batch_size=10)
            got = await asyncio.to_thread(run_driver, python, spec)
            if url is not None:
                check_once("LocalStack", got, expected, await queue_left(client, url))
                await client.delete_queue(QueueUrl=url)
            else:
                check_once("LocalStack", got, expected, None)
            return {"units": expected, **got}

        unit = "records" if kind == "kinesis" else "msgs"
        summary = await interleave(esm, localstack, pairs=args.pairs, unit=unit)
        if stream is not None:
            with contextlib.suppress(Exception):
                await client.delete_stream(StreamName=stream.name)
    finally:
        await aws.aclose()
    params: dict[str, Any] = {"case": case, "emulator": "kinesalite" if stream else "fauxqs"}
    if kind == "sqs":
        params.update(
            messages=args.messages,
            batch_size=10,
            handler_ms=args.handler_ms,
            esm_max_concurrency=args.esm_max_concurrency or "Lambda's default scaling",
        )
        if fail:
            params.update(fail_one_in=FAIL_EVERY, visibility_timeout_s=args.failure_visibility)
    else:
        params.update(
            records=args.records, shards=4, batch_size=args.kinesis_batch_size, handler="no-op"
        )
    params["localstack_poll_interval_s"] = args.localstack_poll_interval
    return {
        "benchmark": f"localstack-{case}",
        "unit": unit,
        "baseline": f"LocalStack {LOCALSTACK_VERSION} (its event source mapping poller)",
        "parameters": params,
        **summary,
        "exactly_once": "errors" not in summary,
    }


# -- the chart ----------------------------------------------------------------------------------

_LABELS = {
    "localstack-sqs": "SQS, BatchSize 10, 20 ms handler",
    "localstack-sqs-failures": "the same, 1 in 7 failed once",
    "localstack-kinesis": "Kinesis, 4 shards, no-op handler",
}


def _figures(r: dict[str, Any]) -> dict[str, float] | None:
    """The chart's figures from a case's JSON (:func:`benchmarks.pairs.summarize`'s keys, with
    LocalStack as the baseline), or None for a line that is not a measured case."""
    unit = r.get("unit")
    keys = {
        "esm": f"esm_{unit}_per_s",
        "localstack": f"baseline_{unit}_per_s",
        "esm_cpu": f"esm_cpu_s_per_1k_{unit}",
        "localstack_cpu": f"baseline_cpu_s_per_1k_{unit}",
    }
    spread = r.get("ratio_spread") or {}
    got = {name: r.get(key) for name, key in keys.items()}
    got.update(ratio=r.get("ratio"), ratio_min=spread.get("min"), ratio_max=spread.get("max"))
    if not got["esm"] or not got["localstack"]:
        return None
    figures = {k: float(v) for k, v in got.items() if v is not None}
    return figures if len(figures) == len(got) else None


def chart_svg(results: list[dict[str, Any]]) -> str:
    """Horizontal bars, throughput of each side per case (linear, per case scale), with the
    median ratio and CPU per 1,000; no machine paths, nothing but the figures."""
    rows = [(r, f) for r in results if (f := _figures(r)) is not None]
    width, left, bar_w = 790, 305, 330
    row_h = 78
    height = 60 + row_h * len(rows) + 6
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="22" font-size="15" font-weight="bold">'
        "esm vs LocalStack's event source mapping poller (same emulator, same handler)</text>",
        '<text x="10" y="42" fill="#555">throughput, median of interleaved pairs; '
        "ratio = median of per-pair ratios (min\u2013max); CPU s per 1,000</text>",
    ]
    for i, (r, f) in enumerate(rows):
        y = 60 + i * row_h
        unit = "rec/s" if r.get("unit") == "records" else "msg/s"
        top = max(f["esm"], f["localstack"])
        label = _LABELS.get(str(r["benchmark"]), str(r["benchmark"]))
        out.append(f'<text x="10" y="{y + 16}" font-weight="bold">{label}</text>')
        out.append(
            f'<text x="10" y="{y + 34}" fill="#333">esm {f["ratio"]:.1f}\u00d7 '
            f"({f['ratio_min']:.1f}\u2013{f['ratio_max']:.1f}), "
            f"{r['pairs']} pairs</text>"
        )
        out.append(
            f'<text x="10" y="{y + 52}" fill="#333">CPU s per 1,000: esm '
            f"{f['esm_cpu']:.3f}, LocalStack {f['localstack_cpu']:.3f}</text>"
        )
        for j, (name, key, color) in enumerate(
            (("esm", "esm", "#2e7d32"), ("LocalStack", "localstack", "#6d4c41"))
        ):
            v = f[key]
            w = max(1.0, bar_w * v / top)
            by = y + 6 + j * 26
            out.append(
                f'<rect x="{left}" y="{by}" width="{w:.1f}" height="20" fill="{color}"/>'
                f'<text x="{left + w + 6:.1f}" y="{by + 15}">{name} {v:,.0f} {unit}</text>'
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- main ---------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    python, how = localstack_python(install=not args.smoke)
    if python is None:
        print(json.dumps({"benchmark": "localstack", "skipped": how}), flush=True)
        print(f"skipped: {how}", file=sys.stderr)
        return 0
    results = []
    failed = False
    with emulators(args.cases) as urls:
        for case in args.cases:
            res = await run_case(case, python, urls, args)
            res["machine"] = machine()
            failed = failed or bool(res.get("errors"))
            results.append(res)
            print(json.dumps(res), flush=True)
    if not args.smoke and not failed and set(args.cases) == set(CASES):
        CHART.write_text(chart_svg(results))
        print(f"chart: {CHART.relative_to(ROOT)}", file=sys.stderr)
    return 1 if failed else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=CASES, help=f"default: all ({', '.join(CASES)})")
    add_pairs_argument(p)
    p.add_argument("--messages", type=int, default=20_000, help="SQS messages per side")
    p.add_argument("--records", type=int, default=100_000, help="Kinesis records")
    p.add_argument("--kinesis-batch-size", type=int, default=100)
    p.add_argument("--handler-ms", type=float, default=20.0, help="the SQS handler's sleep")
    p.add_argument("--localstack-poll-interval", type=float, default=0.0)
    p.add_argument("--esm-max-concurrency", type=int, default=0, help="0: Lambda's scaling")
    visibility = "sqs-failures: the queue's VisibilityTimeout (and the function's Timeout), s"
    p.add_argument("--failure-visibility", type=int, default=2, help=visibility)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per side")
    p.add_argument("--chart-from", metavar="FILE", help="redraw the chart from JSON lines")
    p.add_argument(
        "--smoke",
        action="store_true",
        help=f"{', '.join(SMOKE_CASES)} only, 140 messages / 1,000 records, one pair",
    )
    args = p.parse_args()
    if args.chart_from:
        lines = Path(args.chart_from).read_text().splitlines()
        found = [json.loads(ln) for ln in lines if ln.startswith("{")]
        CHART.write_text(chart_svg(found))
        return
    if args.smoke:
        args.cases = args.cases or list(SMOKE_CASES)
        args.messages, args.records, args.pairs = 140, 1000, 1
        args.failure_visibility, args.timeout = 1, min(args.timeout, 60.0)
    args.cases = args.cases or list(CASES)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
