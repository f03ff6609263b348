"""``kill -9`` of ``esm run`` at random (seeded) points while it works SQS (standard and FIFO),
Kinesis, DynamoDB Streams and async (Invoke ``Event``) items into a recording HTTP function,
started again after each kill; some kills land while it is still starting.

What must hold at the end, with the last daemon left running:

- **lost 0**: every item sent (every event the API accepted) reached the function;
- **duplicates only from batches in flight at a kill**: at most, per kill, the batches a daemon
  can hold at once (SQS: ``MaximumConcurrency`` batches of ``BatchSize`` per queue; a stream:
  per shard one batch being invoked and one invoked but not yet checkpointed; the async queue:
  ``AsyncConcurrency`` events, plus each Invoke whose 202 was lost with the daemon and that the
  producer sent again);
- **order**: no first delivery out of order per partition key or item key (per FIFO message
  group it is counted, not asserted: moto's server breaks it when a long poll outlives the
  visibility timeout of a killed daemon's messages; see tests/chaos/README.md);
- SQS queues empty (everything the function got was deleted, nothing else was).
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
    SOURCES,
    SQS_CONCURRENCY,
    Stack,
    run_all,
    stack,
)
from tests.chaos.tally import Tally, count

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

# FIFO order is counted, not asserted: moto breaks it (tests/chaos/README.md, "moto's FIFO")
ORDERED = ("kinesis", "ddb")


def duplicate_bound(source: str, kills: int, ambiguous: int) -> int:
    """The most duplicates ``kills`` kills may cause for ``source`` (module docstring)."""
    per_kill = {
        "sqs": SQS_CONCURRENCY * BATCH,
        "fifo": SQS_CONCURRENCY * BATCH,
        "kinesis": KINESIS_SHARDS * 2 * BATCH,
        "ddb": 2 * BATCH,
        "events": ASYNC_CONCURRENCY,
    }[source]
    return kills * per_kill + (ambiguous if source == "events" else 0)


async def kill_loop(s: Stack, rng: random.Random, kills: int) -> list[float]:
    """``kills`` times: let the daemon work a random while (a quarter of the time not even
    until it is ready), ``kill -9`` it, start another. Returns when each kill happened."""
    at = []
    s.spawn()
    for _ in range(kills):
        if rng.random() < 0.25:
            await asyncio.sleep(rng.uniform(0.1, 1.0))
        else:
            await s.ready()
            await asyncio.sleep(rng.uniform(0.2, 2.5))
        await s.kill_daemon()
        at.append(time.monotonic())
        s.spawn()
    await s.ready()
    return at


async def test_kill_9_during_sqs_stream_and_async_work(
    tmp_path: Path,
    moto_url: str,
    aws: AwsClients,
    chaos_scale: int,
    chaos_rng: random.Random,
    chaos_report: Callable[[Tally], None],
) -> None:
    kills = 4 * chaos_scale
    seconds = 1.6 * kills  # the producers' pace: they finish about when the kills do
    n = {"sqs": 150, "fifo": 80, "kinesis": 160, "ddb": 40, "events": 80}
    started = time.monotonic()
    async with stack(tmp_path, moto_url, aws, SOURCES) as s:
        await run_all(
            kill_loop(s, chaos_rng, kills),
            *(s.produce(src, n[src] * chaos_scale, seconds) for src in SOURCES),
        )
        await s.all_delivered(SOURCES, timeout=60 + 10 * chaos_scale)
        await asyncio.sleep(3)  # visibility timeouts and leases run out: late replays show
        await s.queues_empty()
        assert s.daemon is not None and s.daemon.proc.poll() is None, s.daemon.output
        assert "Traceback" not in s.daemon.output, s.daemon.output
        assert not s.recorder.errors, s.recorder.errors

        elapsed = round(time.monotonic() - started, 1)
        for src in SOURCES:
            tally = count(
                f"daemon-kill/{src}",
                s.sent.items[src],
                s.recorder.delivered(src),
                kills=kills,
                seconds=elapsed,
                **({"resent": s.sent.ambiguous} if src == "events" else {}),
            )
            chaos_report(tally)
            assert tally.lost == 0, tally
            assert tally.unexpected == 0, tally
            bound = duplicate_bound(src, kills, s.sent.ambiguous)
            assert tally.duplicated <= bound, (tally, bound)
            if src in ORDERED:
                assert tally.out_of_order == 0, tally
