"""Interleaved pairs: the one way every comparison in this suite is measured.

A figure measured once on a shared 2-core machine depends on what else ran at that moment. So
each comparison runs its two sides back to back, ``--pairs`` times, alternating which goes first
(esm, baseline; baseline, esm; …), and reports the **median of the per-pair ratios** with its
spread (min to max and the interquartile range), the 1-minute load average read before each pair,
and the CPU seconds per 1,000 units of work of each side (the steadier number when other work
competes for the cores).

A side is a callable (sync or async) returning a :class:`Sample` (or a dict with at least
``units`` and ``seconds``; ``cpu_s`` when it measured its CPU). Use :func:`cpu_seconds` around the
measured window to get the CPU of the right process: this one by default, or a child (a daemon, a
runtime) by pid; never the emulator's::

    from benchmarks.pairs import Sample, cpu_seconds, interleave

    async def esm_side() -> Sample:
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        n = await run_it()
        return Sample(units=n, seconds=time.perf_counter() - t0, cpu_s=cpu_seconds() - cpu0)

    summary = await interleave(esm_side, baseline_side, pairs=5, unit="msgs")
    print(json.dumps({"benchmark": "Px", **summary}))

The summary's ``ratio`` is esm's rate over the baseline's (higher is better for esm) unless
``lower_is_better=True`` (latencies, CPU shares), where it is esm's value over the baseline's and
lower is better. Sides that fail are recorded in ``errors`` and their pair is left out.
"""

from __future__ import annotations

import inspect
import os
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Sample:
    """One side's measurement: ``units`` of work (messages, records, events) in ``seconds`` of
    wall time, costing ``cpu_s`` CPU seconds of the process that does it (None: not measured).
    ``value`` replaces the rate for measurements that are not throughputs (a latency, an RSS);
    ``extra`` is reported as is."""

    units: float
    seconds: float
    cpu_s: float | None = None
    value: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        if self.value is not None:
            return self.value
        return self.units / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_1k(self) -> float | None:
        if self.cpu_s is None or self.units <= 0:
            return None
        return self.cpu_s / self.units * 1000


def cpu_seconds(pid: int | None = None, *, children: bool = False) -> float:
    """User + system CPU seconds of process ``pid`` (None: this process, all its threads), read
    from /proc/<pid>/stat; with ``children=True`` also of its waited-for children."""
    if pid is None and not children:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime
    with open(f"/proc/{pid or 'self'}/stat") as f:
        # the command name (field 2) may hold spaces: split after its closing parenthesis
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _as_sample(got: Any) -> Sample:
    if isinstance(got, Sample):
        return got
    if isinstance(got, dict):
        known = {k: got[k] for k in ("units", "seconds", "cpu_s", "value") if k in got}
        extra = {k: v for k, v in got.items() if k not in known}
        return Sample(**known, extra=extra)
    raise TypeError(f"a side must return a Sample or a dict, got {type(got).__name__}")


async def _run(side: Callable[[], Any]) -> Sample:
    got = side()
    if inspect.isawaitable(got):
        got = await got
    return _as_sample(got)


def _r(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


def spread(values: list[float]) -> dict[str, float | None]:
    """median, min, max, and the interquartile range (q1, q3) of ``values``."""
    if not values:
        return {"median": None, "min": None, "max": None, "q1": None, "q3": None}
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "median": _r(statistics.median(ordered)),
        "min": _r(ordered[0]),
        "max": _r(ordered[-1]),
        "q1": _r(q1),
        "q3": _r(q3),
    }


def summarize(
    pairs: list[tuple[Sample, Sample, float | None]],
    *,
    unit: str = "units",
    lower_is_better: bool = False,
    errors: list[str] | None = None,
) -> dict[str, Any]:
    """The JSON of a set of (esm, baseline, load average before the pair) measurements."""
    ratios = []
    rows = []
    for esm, base, load in pairs:
        ratio = esm.rate / base.rate if base.rate else None
        if ratio is not None:
            ratios.append(ratio)
        rows.append(
            {
                "load_avg_1m_before": load,
                "esm": _r(esm.rate, 4),
                "baseline": _r(base.rate, 4),
                "ratio": _r(ratio),
                "esm_cpu_s_per_1k": _r(esm.cpu_per_1k, 4),
                "baseline_cpu_s_per_1k": _r(base.cpu_per_1k, 4),
                **({"esm_extra": esm.extra} if esm.extra else {}),
                **({"baseline_extra": base.extra} if base.extra else {}),
            }
        )

    def med(xs: list[float | None]) -> float | None:
        got = [x for x in xs if x is not None]
        return statistics.median(got) if got else None

    esm_cpu = med([e.cpu_per_1k for e, _, _ in pairs])
    base_cpu = med([b.cpu_per_1k for _, b, _ in pairs])
    what = "value" if lower_is_better else f"{unit}_per_s"
    out: dict[str, Any] = {
        "pairs": len(pairs),
        "ratio": spread(ratios)["median"],
        "ratio_spread": spread(ratios),
        "ratio_is": "esm / baseline, lower is better"
        if lower_is_better
        else "esm rate / baseline rate, higher is better",
        f"esm_{what}": _r(med([e.rate for e, _, _ in pairs]), 4),
        f"baseline_{what}": _r(med([b.rate for _, b, _ in pairs]), 4),
        f"esm_cpu_s_per_1k_{unit}": _r(esm_cpu, 4),
        f"baseline_cpu_s_per_1k_{unit}": _r(base_cpu, 4),
        "cpu_ratio": _r(base_cpu / esm_cpu) if esm_cpu and base_cpu else None,
        "load_avg_1m": [load for _, _, load in pairs],
        "pair_samples": rows,
    }
    if errors:
        out["errors"] = errors
    return out


async def interleave(
    esm: Callable[[], Sample | dict[str, Any] | Awaitable[Sample | dict[str, Any]]],
    baseline: Callable[[], Sample | dict[str, Any] | Awaitable[Sample | dict[str, Any]]],
    *,
    pairs: int = 5,
    unit: str = "units",
    lower_is_better: bool = False,
    on_pair: Callable[[int, Sample, Sample], None] | None = None,
) -> dict[str, Any]:
    """Run ``pairs`` interleaved (esm, baseline) pairs, alternating which side goes first, and
    summarize them (:func:`summarize`). A side that raises is named in ``errors`` and its pair
    is dropped; ``cpu_ratio`` is the baseline's CPU per unit over esm's (higher: esm cheaper)."""
    done: list[tuple[Sample, Sample, float | None]] = []
    errors: list[str] = []
    for i in range(pairs):
        load = load_average()
        got: dict[str, Sample] = {}
        order = [("esm", esm), ("baseline", baseline)]
        if i % 2:
            order.reverse()
        for name, side in order:
            try:
                got[name] = await _run(side)
            except Exception as exc:  # a failed side is reported, not fatal
                errors.append(f"{name} #{i + 1}: {type(exc).__name__}: {exc}")
                break
        if len(got) == 2:
            done.append((got["esm"], got["baseline"], load))
            if on_pair is not None:
                on_pair(i, got["esm"], got["baseline"])
    return summarize(done, unit=unit, lower_is_better=lower_is_better, errors=errors)


def interleave_sync(
    esm: Callable[[], Sample | dict[str, Any]],
    baseline: Callable[[], Sample | dict[str, Any]],
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`interleave` for two plain (blocking) callables."""
    import asyncio

    return asyncio.run(interleave(esm, baseline, **kwargs))


def timed(fn: Callable[[], float]) -> Sample:
    """Run a blocking ``fn`` that returns the units it did; measure wall and this process's CPU."""
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    units = fn()
    return Sample(units=units, seconds=time.perf_counter() - t0, cpu_s=cpu_seconds() - cpu0)


def add_pairs_argument(parser: Any, *, default: int = 5) -> None:
    """``--pairs N`` (and its old name ``--repeat``): interleaved pairs per comparison."""
    parser.add_argument(
        "--pairs",
        "--repeat",
        dest="pairs",
        type=int,
        default=default,
        help=f"interleaved esm/baseline pairs; median pair ratio reported (default {default})",
    )
