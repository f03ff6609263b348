"""Run every benchmark (or some), collect their JSON, draw the chart.

    python -m benchmarks                 the full suite (several minutes)
    python -m benchmarks --smoke         seconds: each benchmark on a tiny workload (CI runs it),
                                         3 at a time (--jobs)
    python -m benchmarks core sqs        only these (the others' latest results are kept)
    python -m benchmarks p1 p4           the same, by target number (P1 … P8)
    python -m benchmarks --pairs 9       interleaved esm/baseline pairs per comparison (default 5)
    python -m benchmarks --chart-only    redraw the chart from benchmarks/results/latest.json

Each benchmark runs in its own process (`python -m benchmarks.<name> …`) and prints JSON
objects; they are gathered into ``benchmarks/results/latest.json`` (``smoke.json`` for
``--smoke``) and, when matplotlib is installed (the ``bench`` extra), drawn side by side with
their baselines into ``docs/benchmarks.png``.

A full run runs one benchmark at a time (a figure must not share the machine with another
benchmark); ``--smoke`` runs ``--jobs`` (default 3) at once: it shows that every benchmark runs
and that nothing is lost or run twice, not how fast, and most of a smoke is waiting (daemons and
emulators starting, windows, visibility timeouts). ``suite_seconds`` in each object is the wall
time of its benchmark's process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CHART = ROOT / "docs" / "benchmarks.png"

# name → (full arguments, smoke arguments)
SUITE: dict[str, tuple[list[str], list[str]]] = {
    "sqs": ([], ["--smoke"]),  # P1, fauxqs
    "core": ([], ["--smoke"]),  # P2
    "async_queue": (
        [],
        [
            "--events",
            "300",
            "--concurrency",
            "16",
            "--repeat",
            "1",
            "--seconds",
            "1",
            "--timeout",
            "60",
        ],
    ),  # P3
    "kinesis": (
        ["--emulator", "kinesalite"],
        [
            "--emulator",
            "moto",
            "--records",
            "300",
            "--shards",
            "1",
            "--batch-sizes",
            "100",
            "--repeat",
            "1",
            "--timeout",
            "60",
        ],
    ),  # P4
    "idle": ([], ["--smoke"]),  # P5
    "latency": ([], ["--smoke"]),  # P6
    "environments": ([], ["--smoke"]),  # P7
    "scaleout": ([], ["--smoke"]),  # P8
    "leases": ([], ["--smoke"]),  # P9, simulated
    "localstack": ([], ["--smoke"]),  # esm beside LocalStack's poller (skips without Python 3.13)
}


# the targets' numbers, P1 … (benchmarks.pairs interleaves every comparison)
ALIASES = {
    "p1": "sqs",
    "p2": "core",
    "p3": "async_queue",
    "p4": "kinesis",
    "p5": "idle",
    "p6": "latency",
    "p7": "environments",
    "p8": "scaleout",
    "p9": "leases",
}
# full runs that take longer than the default 1,800 s (LocalStack's SQS poller: ~1 min a sample)
FULL_TIMEOUT_S = {"localstack": 2400}
SMOKE_JOBS = 3
# the longest smokes start first, so that the others fill the gaps beside them
SLOW_FIRST = ["idle", "localstack", "scaleout", "latency", "environments", "sqs"]


def run(name: str, args: list[str], timeout_s: float) -> list[dict[str, Any]]:
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{name}", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return [{"benchmark": name, "error": f"timed out after {timeout_s:.0f} s"}]
    out = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    if proc.returncode != 0 or not out:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        out.append({"benchmark": name, "error": f"exit {proc.returncode}: {' | '.join(tail)}"})
    for obj in out:
        obj["suite_seconds"] = round(time.monotonic() - started, 1)  # the whole process's wall
    return out


def chart(results: list[dict[str, Any]], path: Path) -> bool:
    """esm beside its baseline for each result that has both; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = []
    spans = []
    for r in results:
        esm, base = _pair(r)
        ratio = r.get("ratio")  # the median of the interleaved pairs' ratios
        if ratio is None and esm is not None and base is not None and base > 0:
            ratio = esm / base
        if ratio is None or r.get("ratio_is", "higher").endswith("lower is better"):
            continue
        rows.append((_label(r), float(ratio), r.get("target_ratio")))
        got = r.get("ratio_spread") or {}
        lo, hi = got.get("min"), got.get("max")
        spans.append((ratio - lo, hi - ratio) if lo is not None and hi is not None else (0, 0))
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.4))
    ys = list(range(len(rows)))
    ratios = [row[1] for row in rows]
    colors = ["#2e7d32" if t is None or ratio >= t else "#c62828" for _, ratio, t in rows]
    ax.barh(ys, ratios, color=colors)
    ax.errorbar(
        ratios, ys, xerr=list(zip(*spans, strict=True)), fmt="none", ecolor="black", elinewidth=0.8
    )
    ax.set_yticks(ys, [row[0] for row in rows], fontsize=8)
    ax.set_xscale("log")
    for y, (_, ratio, target) in zip(ys, rows, strict=True):
        ax.text(ratio * 1.05, y, f"{ratio:.2f}x", va="center", fontsize=8)
        if target is not None:
            ax.plot([target, target], [y - 0.4, y + 0.4], color="black", linewidth=1.5)
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(
        "esm / baseline: median of interleaved pairs, min to max\n(log scale; black tick: target)"
    )
    ax.set_title("esm beside its baselines (green: target met)", fontsize=10)
    ax.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _pair(r: dict[str, Any]) -> tuple[float | None, float | None]:
    for esm_key, base_key in (
        ("esm_msgs_per_s", "baseline_msgs_per_s"),
        ("esm_events_per_s", "baseline_events_per_s"),
        ("esm_records_per_s", "baseline_records_per_s"),
        ("esm_events_per_s", "baseline_arq_jobs_per_s"),
    ):
        if r.get(esm_key) is not None and r.get(base_key) is not None:
            return float(r[esm_key]), float(r[base_key])
    return None, None


def _label(r: dict[str, Any]) -> str:
    p = r.get("parameters", {})
    extra = []
    for key, short in (
        ("shards", "shards"),
        ("batch_size", "batch"),
        ("esm_async_concurrency", "concurrency"),
        ("concurrency", "concurrency"),
        ("connector", "connector"),
    ):
        if key in p:
            extra.append(f"{short}={p[key]}")
    if "handler" in p and str(p["handler"]).endswith("noop"):
        extra.append("sync handler")
    emulator = r.get("emulator")
    workload = r.get("workload")
    return " ".join(x for x in [r.get("benchmark", "?"), workload, emulator, *extra] if x)


def _previous(path: Path) -> list[dict[str, Any]]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("names", nargs="*", default=[], help=f"some of: {', '.join([*SUITE, *ALIASES])}")
    p.add_argument("--pairs", type=int, help="interleaved pairs per comparison (default: 5)")
    p.add_argument("--smoke", action="store_true", help="tiny workloads, seconds each")
    p.add_argument(
        "--jobs",
        type=int,
        help=f"benchmarks at once (default 1; {SMOKE_JOBS} with --smoke: no figure counts there)",
    )
    p.add_argument("--chart-only", action="store_true")
    args = p.parse_args()
    args.names = [ALIASES.get(n.lower(), n) for n in args.names]
    unknown = [n for n in args.names if n not in SUITE]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)} (choose from {', '.join(SUITE)})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_file = RESULTS / ("smoke.json" if args.smoke else "latest.json")
    if args.chart_only:
        results = json.loads(out_file.read_text())
    else:
        names = args.names or list(SUITE)
        # some benchmarks only: the others' latest results stay in the file (and the chart)
        results = [r for r in _previous(out_file) if r.get("suite") not in names]

        def one(name: str) -> list[dict[str, Any]]:
            full, smoke = SUITE[name]
            # P9 is a simulation: no pairs to interleave
            extra = ["--pairs", str(args.pairs)] if args.pairs and name != "leases" else []
            return run(
                name,
                [*(smoke if args.smoke else full), *extra],
                180 if args.smoke else FULL_TIMEOUT_S.get(name, 1800),
            )

        jobs = max(1, args.jobs or (SMOKE_JOBS if args.smoke else 1))
        with ThreadPoolExecutor(jobs) as pool:
            order = sorted(names, key=lambda n: SLOW_FIRST.index(n) if n in SLOW_FIRST else 99)
            started = {name: pool.submit(one, name) for name in order}
            for name in names:  # reported in the suite's order
                got = started[name].result()
                for obj in got:
                    obj["suite"] = name
                    print(json.dumps(obj), flush=True)
                took = max((float(obj.get("suite_seconds", 0)) for obj in got), default=0.0)
                print(f"{name}: {took:.1f} s", file=sys.stderr, flush=True)
                results += got
        out_file.write_text(json.dumps(results, indent=1))
    if not args.smoke and chart(results, CHART):
        print(f"chart: {CHART.relative_to(ROOT)}", file=sys.stderr)
    errors = [r for r in results if r.get("error")]
    if args.smoke and errors:
        print(f"{len(errors)} benchmark(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
