"""Redis ``kill -9``\\ ed and started again, several times, while ``esm run`` works SQS, Kinesis
and async (Invoke ``Event``) items into a recording HTTP function; the daemon itself is never
restarted.

- **With its append-only file** (``--appendfsync always``): nothing accepted is lost: every item
  sent and every event the API accepted (202) reaches the function. While Redis is down Invoke
  ``Event`` answers 503 and the producer tries again.
- **Restarted empty** (no persistence): what Redis could not keep is not counted as lost. That
  is exactly the async events accepted before a restart and not yet run when Redis died: they
  lived only in Redis (the README's Durability section says so); they are counted apart
  (``excused``). Every event accepted after the last restart before it ran, and every SQS
  message and Kinesis record, must reach the function. A stream's checkpoint lost with Redis
  restarts the shard from ``StartingPosition`` (TRIM_HORIZON here): those records arrive again,
  as duplicates, never as losses.

Duplicates, besides those re-reads: only batches in flight when Redis died (a checkpoint or an
acknowledgement that could not be written). Kinesis order per partition key holds throughout.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from esm.aws import AwsClients
from tests.chaos.stack import (
    ASYNC_CONCURRENCY,
    BATCH,
    KINESIS_SHARDS,
    SQS_CONCURRENCY,
    Stack,
    run_all,
    stack,
)
from tests.chaos.tally import Tally, count

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SOURCES = ("sqs", "kinesis", "events")


async def restart_loop(s: Stack, rng: random.Random, restarts: int) -> list[float]:
    """``restarts`` times: let the daemon work a random while, ``kill -9`` Redis, leave it down
    a random while, start it again (empty, or from its append-only file). Returns when each
    kill happened."""
    at = []
    for _ in range(restarts):
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        await asyncio.to_thread(s.redis.kill)
        at.append(time.monotonic())
        await asyncio.sleep(rng.uniform(0.1, 1.0))
        await asyncio.to_thread(s.redis.start)
    return at


def not_kept(s: Stack, kills: list[float]) -> set[str]:
    """Events a Redis without persistence may lose: accepted before a kill and not run before
    it (those never run at all)."""
    ran = {d.id: d.at for d in s.recorder.deliveries if d.source == "events"}
    out = set()
    for item, accepted in s.sent.accepted_at.items():
        after = [k for k in kills if k > accepted]
        if after and ran.get(item, float("inf")) > after[0]:
            out.add(item)
    return out


@pytest.mark.parametrize("aof", [True, False], ids=["aof", "empty"])
async def test_redis_restarted_during_sqs_stream_and_async_work(
    aof: bool,
    tmp_path: Path,
    moto_url: str,
    aws: AwsClients,
    chaos_scale: int,
    chaos_rng: random.Random,
    chaos_report: Callable[[Tally], None],
) -> None:
    restarts = 3 * chaos_scale
    seconds = 1.6 * restarts
    n = {"sqs": 100, "kinesis": 160, "events": 80}
    started = time.monotonic()
    async with stack(tmp_path, moto_url, aws, SOURCES, aof=aof) as s:
        s.spawn()
        d = await s.ready()
        kills, *_ = await run_all(
            restart_loop(s, chaos_rng, restarts),
            *(s.produce(src, n[src] * chaos_scale, seconds) for src in SOURCES),
        )
        excused = set() if aof else not_kept(s, kills)
        # events that ran after all: not excused, they are counted as delivered
        await s.all_delivered(SOURCES, timeout=60 + 10 * chaos_scale, excused=excused)
        await asyncio.sleep(3)  # leases and visibility timeouts run out: late replays show
        await s.queues_empty()
        assert d.proc.poll() is None, d.output
        assert "Traceback" not in d.output, d.output
        assert not s.recorder.errors, s.recorder.errors

        elapsed = round(time.monotonic() - started, 1)
        scenario = "redis-aof" if aof else "redis-empty"
        for src in SOURCES:
            tally = count(
                f"{scenario}/{src}",
                s.sent.items[src],
                s.recorder.delivered(src),
                excused=excused if src == "events" else (),
                restarts=restarts,
                seconds=elapsed,
                **({"resent": s.sent.ambiguous} if src == "events" else {}),
            )
            chaos_report(tally)
            assert tally.lost == 0, tally
            assert tally.unexpected == 0, tally
            if src == "kinesis":
                assert tally.out_of_order == 0, tally
            in_flight = {
                "sqs": SQS_CONCURRENCY * BATCH,
                "kinesis": KINESIS_SHARDS * 2 * BATCH,
                "events": ASYNC_CONCURRENCY,
            }[src]
            bound = restarts * in_flight + (s.sent.ambiguous if src == "events" else 0)
            if src == "kinesis" and not aof:
                bound += restarts * tally.sent  # each empty restart may read it all again
            assert tally.duplicated <= bound, (tally, bound)
