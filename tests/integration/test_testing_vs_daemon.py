"""The testing harness and the daemon agree: one SQS partial-failure scenario, run by the harness
(in-memory queues, virtual clock) and by the engine against moto's server over HTTP (real
queues, real time), gives the same deleted / left-on-queue / dead-letter outcome and the same
batch contents: every record delivered as often, the poison one alone in its retry.

(How the first receive is split among the mapping's five concurrent lanes is a race against a
real queue, as on AWS: the daemon may deliver the first four messages in one batch or several.)"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from esm.aws import AwsClients
from esm.engine import Engine
from esm.testing import Harness
from tests.support import ACCOUNT, REGION, Queues, engine_config, eventually, unique

pytestmark = pytest.mark.integration

TARGET = "python:tests.integration.test_testing_vs_daemon.handle"
BODIES = ["order-1", "poison", "order-2", "order-3"]
BATCHES: defaultdict[str, list[list[str]]] = defaultdict(list)


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    BATCHES[context.function_name].append([r["body"] for r in event["Records"]])
    return {
        "batchItemFailures": [
            {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "poison"
        ]
    }


def scenario(name: str, queue_arn: str) -> dict[str, Any]:
    return {
        "Functions": {name: {"Target": TARGET, "Timeout": 1}},
        "EventSourceMappings": [
            {
                "FunctionName": name,
                "EventSourceArn": queue_arn,
                "BatchSize": 10,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }
        ],
    }


async def run_in_harness() -> tuple[set[str], list[str], list[str], list[list[str]]]:
    name = unique("harness")
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
    config = scenario(name, arn)
    config["Resources"] = {
        "Q": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": name,
                "VisibilityTimeout": 2,
                "RedrivePolicy": {"deadLetterTargetArn": arn + "-dlq", "maxReceiveCount": 2},
            },
        }
    }
    h = Harness(config)
    h.put_sqs_messages(arn, BODIES)  # on the queue before the mapping starts, as below
    async with h:
        await h.run_until_idle()
        q = h.queue(arn)
        return set(q.deleted_bodies()), q.bodies(), q.dead_letter_queue.bodies(), BATCHES[name]


async def run_in_daemon(aws: AwsClients) -> tuple[set[str], list[str], list[str], list[list[str]]]:
    queues = Queues(aws)
    name = unique("daemon")
    dlq_arn, dlq_url = await queues.create(name + "-dlq")
    arn, url = await queues.create(name, visibility_s=2, dlq_arn=dlq_arn, max_receive_count=2)
    await queues.send(url, BODIES)
    config = scenario(name, arn)
    engine = Engine(engine_config(config["Functions"], config["EventSourceMappings"]), aws=aws)
    await engine.start()
    try:
        await eventually(lambda: queues.holds(dlq_url, 1), timeout=30, what="the DLQ message")
        await eventually(lambda: queues.is_empty(url), timeout=10, what="an empty queue")
    finally:
        await engine.aclose()
    left = [m["Body"] for m in await queues.drain(url)]
    dead = [m["Body"] for m in await queues.drain(dlq_url)]
    deleted = set(BODIES) - set(left) - set(dead)
    return deleted, left, dead, BATCHES[name]


async def test_harness_and_daemon_agree_on_a_partial_failure(aws: AwsClients) -> None:
    harness = await run_in_harness()
    daemon = await run_in_daemon(aws)
    deleted, left, dead, batches = harness
    assert deleted == {"order-1", "order-2", "order-3"}
    assert left == [] and dead == ["poison"]
    assert [sorted(b) for b in batches] == [sorted(BODIES), ["poison"]]
    assert (daemon[0], daemon[1], daemon[2]) == (deleted, left, dead)
    assert delivered(daemon[3]) == delivered(batches) == sorted([*BODIES, "poison"])
    assert daemon[3][-1] == batches[-1] == ["poison"]


def delivered(batches: list[list[str]]) -> list[str]:
    return sorted(body for batch in batches for body in batch)
