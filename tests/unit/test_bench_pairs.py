"""benchmarks.pairs: how every comparison in the benchmarks is run and summarized."""

from __future__ import annotations

import asyncio
import os

from benchmarks.pairs import Sample, cpu_seconds, interleave, spread, summarize


def test_pairs_alternate_which_side_goes_first_and_the_median_pair_ratio_is_reported() -> None:
    calls: list[str] = []
    esm_rates = iter([100.0, 300.0, 200.0, 400.0, 50.0])

    def esm() -> Sample:
        calls.append("esm")
        return Sample(units=next(esm_rates), seconds=1.0, cpu_s=0.5)

    async def baseline() -> Sample:
        calls.append("baseline")
        await asyncio.sleep(0)
        return Sample(units=100.0, seconds=1.0, cpu_s=1.0)

    got = asyncio.run(interleave(esm, baseline, pairs=5, unit="msgs"))
    assert calls == ["esm", "baseline", "baseline", "esm"] * 2 + ["esm", "baseline"]
    assert got["pairs"] == 5
    assert got["ratio"] == 2.0  # ratios 1, 3, 2, 4, 0.5
    assert got["ratio_spread"]["min"] == 0.5 and got["ratio_spread"]["max"] == 4.0
    assert got["ratio_spread"]["q1"] == 1.0 and got["ratio_spread"]["q3"] == 3.0
    assert got["esm_cpu_s_per_1k_msgs"] == 2.5  # 0.5 s over 200 msgs, the median pair
    assert got["baseline_cpu_s_per_1k_msgs"] == 10.0
    assert len(got["load_avg_1m"]) == 5
    assert [p["ratio"] for p in got["pair_samples"]] == [1.0, 3.0, 2.0, 4.0, 0.5]


def test_a_failing_side_is_named_and_its_pair_left_out() -> None:
    n = iter(range(10))

    def esm() -> Sample:
        if next(n) == 1:
            raise RuntimeError("queue gone")
        return Sample(units=10, seconds=1)

    got = asyncio.run(interleave(esm, lambda: {"units": 10, "seconds": 2}, pairs=3))
    assert got["pairs"] == 2
    assert got["errors"] == ["esm #2: RuntimeError: queue gone"]
    assert got["ratio"] == 2.0


def test_lower_is_better_values_compare_as_given() -> None:
    pairs = [(Sample(1, 1, value=3.0), Sample(1, 1, value=6.0), 0.5)]
    got = summarize(pairs, lower_is_better=True)
    assert got["ratio"] == 0.5
    assert got["esm_value"] == 3.0 and got["baseline_value"] == 6.0


def test_spread_of_nothing_is_empty_and_cpu_is_read_for_this_process_and_by_pid() -> None:
    assert spread([])["median"] is None
    assert cpu_seconds() > 0
    assert cpu_seconds(os.getpid()) >= 0
