"""AWS failing under ``esm run``: its AWS endpoint is a proxy (tests/chaos/faults.py) that
answers a share of the calls with HTTP 500 ``InternalFailure``, 503 ``ServiceUnavailable``, the
service's own throttling error, or a reset connection, before the emulator sees them or after
it carried them out (the reply lost), while the daemon works SQS (standard and FIFO), Kinesis
and DynamoDB Streams items into a recording HTTP function. The test's own clients go to the
emulator directly.

What must hold: **lost 0**; nothing deleted from SQS that the function did not get (that is lost
0: a message deleted unseen would never be delivered), and the queues empty at the end (every
message the function got was deleted); Kinesis and DynamoDB order per key; the daemon still up.
Duplicates come only from faults, at most a batch each: a DeleteMessageBatch carried out but
answered with an error is tried again (harmless), one that failed three times leaves its
messages to come back, retries and their backoff may stretch a batch past the queue's 2 s
visibility timeout; a ReceiveMessage carried out whose reply was lost hides its messages for the
visibility timeout (a delay, not a duplicate). FIFO order is counted, not asserted (moto breaks
it after such a lost receive: tests/chaos/README.md).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from esm.aws import AwsClients
from tests.chaos.faults import FaultyProxy
from tests.chaos.stack import BATCH, run_all, stack
from tests.chaos.tally import Tally, count
from tests.support import serve_app

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SOURCES = ("sqs", "fifo", "kinesis", "ddb")
FAULT_RATE = 0.15


async def test_aws_faults_during_sqs_and_stream_work(
    tmp_path: Path,
    moto_url: str,
    aws: AwsClients,
    chaos_scale: int,
    chaos_seed: int,
    chaos_rng: random.Random,
    chaos_report: Callable[[Tally], None],
) -> None:
    seconds = 8.0 * chaos_scale
    n = {"sqs": 150, "fifo": 80, "kinesis": 160, "ddb": 40}
    proxy = FaultyProxy(moto_url, rate=FAULT_RATE, seed=chaos_rng.randrange(1 << 30))
    started = time.monotonic()
    async with (
        serve_app(proxy.app()) as port,
        stack(tmp_path, moto_url, aws, SOURCES, endpoint_url=f"http://127.0.0.1:{port}") as s,
    ):
        s.spawn()
        d = await s.ready(timeout=60)  # its start-up calls see faults too
        await run_all(*(s.produce(src, n[src] * chaos_scale, seconds) for src in SOURCES))
        await s.all_delivered(SOURCES, timeout=60 + 10 * chaos_scale)
        await asyncio.sleep(3)  # visibility timeouts run out: late redeliveries show
        await s.queues_empty()
        assert d.proc.poll() is None, d.output
        assert "Traceback" not in d.output, d.output
        assert not s.recorder.errors, s.recorder.errors
        assert sum(proxy.faults.values()) > 0, proxy.summary()

        elapsed = round(time.monotonic() - started, 1)
        for src in SOURCES:
            tally = count(
                f"aws-faults/{src}",
                s.sent.items[src],
                s.recorder.delivered(src),
                seconds=elapsed,
                proxy=proxy.summary(),
            )
            chaos_report(tally)
            assert tally.lost == 0, tally
            assert tally.unexpected == 0, tally
            if src in ("kinesis", "ddb"):
                assert tally.out_of_order == 0, tally
        # each fault costs at most one batch its visibility timeout (a delete that failed three
        # times, or a receive-invoke-delete slowed past 2 s by retries and their backoff)
        sqs_dups = sum(
            count("", s.sent.items[q], s.recorder.delivered(q)).duplicated for q in ("sqs", "fifo")
        )
        assert sqs_dups <= sum(proxy.faults.values()) * BATCH, (sqs_dups, proxy.summary())
