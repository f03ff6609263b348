"""esm.testing's pytest plugin (registered through the pytest11 entry point), its synchronous
harness, and ``esm generate-event``."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from typing import Any

import pytest

from esm.cli import main
from esm.testing import Harness, SyncHarness

QUEUE = "arn:aws:sqs:us-east-1:000000000000:orders"
CONFIG = {
    "Functions": {"orders": {"Target": "python:nowhere.handler"}},
    "EventSourceMappings": [{"FunctionName": "orders", "EventSourceArn": QUEUE}],
}


def test_the_plugin_is_registered() -> None:
    (ep,) = [ep for ep in entry_points(group="pytest11") if ep.name == "esm"]
    assert ep.value == "esm.testing.plugin"


async def test_esm_harness_fixture(esm_harness: Any) -> None:
    h = await esm_harness(CONFIG, functions={"orders": lambda event, context: None})
    assert isinstance(h, Harness)
    h.put_sqs_message("orders", "x")
    await h.run_until_idle()
    assert h.queue("orders").deleted_bodies() == ["x"]


def test_esm_sync_harness_fixture(esm_sync_harness: Any) -> None:
    seen: list[str] = []
    h = esm_sync_harness(
        CONFIG, functions={"orders": lambda e, c: seen.append(e["Records"][0]["body"])}
    )
    h.put_sqs_messages("orders", ["a"])
    h.run_until_idle()
    assert seen == ["a"] and h.queue("orders").deleted_bodies() == ["a"]
    assert h.busy() == [] and h.invoke("orders", {"Records": [{"body": "b"}]}).ok


def test_sync_harness_as_a_context_manager() -> None:
    with SyncHarness(CONFIG, functions={"orders": lambda e, c: None}) as h:
        h.put_sqs_message("orders", "x")
        h.advance(1)
        h.run_until(lambda: not h.queue("orders").messages)
        assert h.invocations()[0].bodies() == ["x"]


def test_lambda_context_fixture(lambda_context: Any) -> None:
    assert lambda_context.function_name == "test-function"
    assert lambda_context.get_remaining_time_in_millis() > 0


def generate(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["generate-event", *args]) == 0
    event: dict[str, Any] = json.loads(capsys.readouterr().out)
    return event


def test_generate_event_sqs(capsys: pytest.CaptureFixture[str]) -> None:
    event = generate(capsys, "sqs", "--body", "a", "--body", "b", "--fifo", "--group", "g")
    assert [r["body"] for r in event["Records"]] == ["a", "b"]
    assert event["Records"][0]["eventSourceARN"].endswith(".fifo")
    assert event["Records"][1]["attributes"]["MessageGroupId"] == "g"
    event = generate(capsys, "sqs", "--attribute", "kind=order", "--receive-count", "4")
    (rec,) = event["Records"]
    assert (
        rec["body"] == "Test message."
        and rec["messageAttributes"]["kind"]["stringValue"] == "order"
    )
    assert rec["attributes"]["ApproximateReceiveCount"] == "4"


def test_generate_event_kinesis(capsys: pytest.CaptureFixture[str]) -> None:
    event = generate(capsys, "kinesis", "--data", '{"n": 1}', "--partition-key", "p")
    (rec,) = event["Records"]
    assert rec["kinesis"]["partitionKey"] == "p"
    assert rec["eventID"] == f"shardId-000000000000:{rec['kinesis']['sequenceNumber']}"


def test_generate_event_dynamodb(capsys: pytest.CaptureFixture[str]) -> None:
    event = generate(
        capsys,
        "dynamodb",
        "--event-name",
        "MODIFY",
        "--keys",
        '{"Id": 1}',
        "--new-image",
        '{"Id": 1, "v": "new"}',
        "--old-image",
        '{"Id": 1, "v": "old"}',
    )
    (rec,) = event["Records"]
    assert rec["eventName"] == "MODIFY"
    assert rec["dynamodb"]["OldImage"]["v"] == {"S": "old"}
    event = generate(
        capsys, "dynamodb", "--event-name", "REMOVE", "--view-type", "KEYS_ONLY", "--ttl"
    )
    (rec,) = event["Records"]
    assert "OldImage" not in rec["dynamodb"] and rec["userIdentity"]["type"] == "Service"
    assert main(["generate-event", "dynamodb", "--keys", "[1]"]) == 2
    assert "--keys" in capsys.readouterr().err
