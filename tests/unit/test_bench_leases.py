"""The benchmarks' own checks: P9's store twin answers as esm's store (fakeredis running the Lua)
does, its ownership registry catches a shard consumed twice, and the LocalStack comparison's
handler counts deliveries per id and fails a run that lost or duplicated one, and its chart
reads the figures benchmarks.pairs reports."""

from __future__ import annotations

import json
import random
from argparse import Namespace
from typing import Any

import pytest

from benchmarks.leases import LeaseTwin, Registry, simulate
from benchmarks.localstack import chart_svg, check_once
from benchmarks.localstack_driver import Tally
from benchmarks.pairs import Sample, summarize
from esm.clock import VirtualClock
from esm.store import Lease, Store

MAPPING = "m-1"


def _shape(lease: Lease | None) -> tuple[str, int, float] | None:
    return None if lease is None else (lease.owner, lease.token, lease.expires_at)


async def test_the_twin_answers_every_lease_call_as_the_lua_scripts_do() -> None:
    clock = VirtualClock()
    real = Store.from_url("memory://", clock=clock, prefix="t")
    twin = LeaseTwin(clock)
    rng = random.Random(7)
    owners = ["a", "b", "c"]
    shards = [f"s{i}" for i in range(4)]
    held: dict[str, list[Lease]] = {o: [] for o in owners}
    try:
        for _ in range(400):
            op = rng.choice(["acquire", "acquire", "renew", "release", "beat", "tick"])
            owner = rng.choice(owners)
            if op == "acquire":
                shard = rng.choice(shards)
                got = await real.acquire_lease(MAPPING, shard, owner, 10.0)
                want = await twin.acquire_lease(MAPPING, shard, owner, 10.0)
                assert _shape(got) == _shape(want), (op, owner, shard)
                if got is not None:
                    held[owner].append(got)
            elif op == "renew" and held[owner]:
                mine = held[owner][-3:]
                got_all = await real.renew_leases(mine, 10.0)
                want_all = await twin.renew_leases(mine, 10.0)
                assert [_shape(x) for x in got_all] == [_shape(x) for x in want_all]
            elif op == "release" and held[owner]:
                lease = held[owner].pop(rng.randrange(len(held[owner])))
                await real.release_lease(lease)
                await twin.release_lease(lease)
            elif op == "beat":
                await real.heartbeat("g", owner, 10.0)
                await twin.heartbeat("g", owner, 10.0)
            elif op == "tick":
                await clock.advance(rng.choice([1.0, 4.0, 10.0]))
            assert await real.live_workers("g") == await twin.live_workers("g")
            assert await real.leases(MAPPING) == await twin.leases(MAPPING), op
        # and the leases as Redis holds them at the end
        stored = await real.leases(MAPPING)
        assert stored, "the sequence took no lease at all"
        for shard in shards:
            token, expires, owner = twin._leases.get(shard, (0, 0.0, ""))
            info = stored.get(shard)
            if info is None:
                assert token == 0
            else:
                assert (info.owner, info.token, info.expires_at) == (owner, token, expires)
    finally:
        await real.aclose()


def test_the_registry_reports_a_shard_started_by_a_second_daemon() -> None:
    reg = Registry()
    reg.started("s1", "a")
    reg.started("s1", "b")
    assert reg.violations == ["s1: started by b while a consumes it"]


def test_a_shard_taken_after_its_owner_died_counts_as_a_steal_a_hand_over_does_not() -> None:
    reg = Registry()
    reg.started("s1", "a")
    reg.started("s2", "a")
    reg.stopped("s2", "a")  # handed back
    reg.started("s2", "b")
    reg.died("a")
    reg.started("s1", "c")
    assert (reg.steals, reg.takeovers, reg.violations) == (1, 2, [])


@pytest.mark.parametrize("store", ["twin", "fakeredis"])
async def test_a_small_simulation_balances_after_start_death_and_join(store: str) -> None:
    args = Namespace(
        lease_s=10.0, step_s=0.5, start_jitter_s=2.0, steady_leases=1.0, max_leases=10.0, seed=1
    )
    out = await simulate(5, 50, args, store)
    assert out["never_owned_twice"]
    assert [p["phase"] for p in out["phases"]] == ["start", "10% died", "10% joined"]
    for phase in out["phases"]:
        assert phase["balanced"], phase
        assert phase["shards_per_daemon_when_balanced"]["max"] <= phase["fair_share"]
    assert out["phases"][1]["steals"] == 10  # the dead daemon's 10 shards, taken after expiry
    assert out["phases"][1]["lease_periods_to_balance"] >= 1.0  # not before its leases expired


def _sqs(message_id: str, i: int) -> dict[str, Any]:
    return {"messageId": message_id, "body": json.dumps({"i": i})}


def test_the_handler_fails_one_in_seven_once_and_counts_deliveries_per_id() -> None:
    tally = Tally(expected=8, handler_ms=0, fail_every=7)
    batch = [_sqs(f"m{i}", i) for i in range(8)]
    assert tally.handle(batch) == ["m0", "m7"]
    assert not tally.done.is_set()
    assert tally.handle([batch[0], batch[7]]) == []
    assert tally.done.is_set()
    tally.handle([batch[3]])
    summary = tally.summary()
    assert (summary["delivered_ids"], summary["duplicates"], summary["failed_once"]) == (8, 1, 2)
    with pytest.raises(RuntimeError, match="1 duplicate deliveries"):
        check_once("esm", summary, 8, 0)


def test_a_run_that_left_messages_or_lost_some_fails() -> None:
    ok = {"delivered_ids": 10, "duplicates": 0}
    check_once("esm", ok, 10, 0)
    with pytest.raises(RuntimeError, match="9 of 10 delivered"):
        check_once("LocalStack", {"delivered_ids": 9, "duplicates": 0}, 10, None)
    with pytest.raises(RuntimeError, match="3 messages left on the queue"):
        check_once("LocalStack", ok, 10, 3)


def test_the_localstack_chart_shows_the_pairs_summary_with_localstack_as_the_baseline() -> None:
    pairs = [
        (Sample(units=2000, seconds=1, cpu_s=0.1), Sample(units=200, seconds=1, cpu_s=0.08), 1.0),
        (Sample(units=3000, seconds=1, cpu_s=0.15), Sample(units=250, seconds=1, cpu_s=0.1), 1.0),
    ]
    case = {"benchmark": "localstack-sqs", "unit": "msgs", **summarize(pairs, unit="msgs")}
    svg = chart_svg([case, {"benchmark": "localstack", "skipped": "no Python 3.13"}])
    assert svg.count("<rect") == 3  # the background and one case's two bars
    assert "esm 11.0\u00d7 (10.0\u201312.0), 2 pairs" in svg
    assert "esm 2,500 msg/s" in svg and "LocalStack 225 msg/s" in svg
    assert "CPU s per 1,000: esm 0.050, LocalStack 0.400" in svg
