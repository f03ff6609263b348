"""The handlers of powertools_handlers.py, and what happens around them, in a few lines each.

Every scenario runs the engine of ``esm run`` on in-memory queues and streams and a virtual
clock: minutes of visibility timeouts, retries and windows take milliseconds.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import powertools_handlers
import pytest

from esm.testing import Harness, kinesis_event, sqs_event

CONFIG = Path(__file__).parent / "esm.yaml"


@pytest.fixture(autouse=True)
def forget_processed() -> None:
    powertools_handlers.PROCESSED.clear()


async def harness(esm_harness: Any) -> Harness:
    h: Harness = await esm_harness(CONFIG)
    return h


def test_the_handler_alone_with_an_exact_event(lambda_context: Any) -> None:
    """Without the harness: an AWS-exact event instead of hand-copied JSON."""
    event = sqs_event(json.dumps({"id": 1}), json.dumps({"id": 2, "poison": True}))
    response = powertools_handlers.orders(event, lambda_context)
    poison_id = event["Records"][1]["messageId"]
    assert response == {"batchItemFailures": [{"itemIdentifier": poison_id}]}


async def test_poison_message_reaches_the_dlq_after_max_receive_count(esm_harness: Any) -> None:
    h = await harness(esm_harness)
    h.put_sqs_messages("orders", [{"id": 1}, {"id": 2, "poison": True}, {"id": 3}])

    await h.run_until_idle()

    assert [json.loads(b)["id"] for b in h.queue("orders").deleted_bodies()] == [1, 3]
    assert h.queue("orders").bodies() == []
    (dead,) = h.queue("orders-dlq").messages
    assert dead.json() == {"id": 2, "poison": True} and dead.receive_count == 3
    # received three times (maxReceiveCount: 3), 60 s of visibility timeout apart
    receives = [
        r["attributes"]["ApproximateReceiveCount"]
        for i in h.invocations("orders")
        for r in i.records
        if "poison" in r["body"]
    ]
    assert receives == ["1", "2", "3"]
    assert h.elapsed >= 180


async def test_poison_record_is_isolated_by_bisect(esm_harness: Any) -> None:
    h = await harness(esm_harness)
    entries = [{"id": i, "amount": -5 if i == 6 else 10} for i in range(10)]
    sequence_numbers = h.put_kinesis_records("ledger", entries)

    await h.run_until_idle()

    (failure,) = h.on_failure_records("ledger")
    batch = failure["KinesisBatchInfo"]
    assert batch["batchSize"] == 1
    assert batch["startSequenceNumber"] == batch["endSequenceNumber"] == sequence_numbers[6]
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3  # first try + 2 retries
    assert sorted(e["id"] for e in powertools_handlers.PROCESSED) == [0, 1, 2, 3, 4, 5, 7, 8, 9]
    assert await h.checkpoints("ledger") == {"shardId-000000000000": sequence_numbers[-1]}


async def test_async_invocation_fails_into_its_on_failure_destination(esm_harness: Any) -> None:
    h = await harness(esm_harness)
    request_id = await h.invoke_async("notify", {"to": "ann@example.com"})

    await h.run_until_idle()

    (record,) = h.async_records("notify")  # the message on notify-failures
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"] == {"to": "ann@example.com"}
    assert record["responsePayload"]["errorType"] == "ConnectionError"
    # Lambda's schedule: retried about one minute, then two minutes later
    first, second, third = (i.started_at for i in h.invocations("notify"))
    assert 50 <= second - first <= 70 and 100 <= third - second <= 140


async def test_tumbling_window_aggregate(esm_harness: Any) -> None:
    h = await harness(esm_harness)
    h.put_kinesis_records(
        "sales", [{"store": "north", "amount": 5}, {"store": "south", "amount": 7}]
    )
    await h.advance(120)
    h.put_kinesis_records("sales", [{"store": "north", "amount": 3}])
    await h.advance(240)  # the first window (00:00 to 00:05) is over
    h.put_kinesis_records("sales", [{"store": "north", "amount": 100}])

    await h.run_until_idle()

    assert powertools_handlers.PROCESSED == [
        {
            "window": {"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T00:05:00Z"},
            "totals": {"north": 8, "south": 7},
        },
        {
            "window": {"start": "2024-01-01T00:05:00Z", "end": "2024-01-01T00:10:00Z"},
            "totals": {"north": 100},
        },
    ]


def test_the_same_with_a_kinesis_event_factory(lambda_context: Any) -> None:
    event = kinesis_event({"id": 1, "amount": 10}, {"id": 2, "amount": 20})
    powertools_handlers.ledger(event, lambda_context)
    assert [e["id"] for e in powertools_handlers.PROCESSED] == [1, 2]
    assert base64.b64decode(event["Records"][0]["kinesis"]["data"]) == b'{"id": 1, "amount": 10}'
