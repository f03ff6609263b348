"""SQS event source mappings end to end: moto's server over HTTP, aiobotocore, the real engine."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from esm.aws import AwsClients
from esm.clock import RealClock
from esm.connectors.base import Record
from esm.connectors.sqs import SqsConnector
from esm.engine import Engine, MappingStartError
from tests.environment_support import RUNS_ON, Functions
from tests.fixtures import recorder
from tests.support import Queues, engine_config, eventually, serve_app, unique

pytestmark = pytest.mark.integration

EVENTS_DIR = Path(__file__).parent.parent / "events"
TARGET = "python:tests.fixtures.recorder.handle"
ASYNC_TARGET = "python:tests.fixtures.recorder.handle_async"


@pytest.fixture
def queues(aws: AwsClients) -> Queues:
    return Queues(aws)


def shape(value: Any) -> Any:
    """The JSON shape: keys in order, leaves as type names."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


def body_ids(name: str) -> list[str]:
    return [r["body"] for e in recorder.EVENTS[name] for r in e["Records"]]


async def run(config: Any, aws: AwsClients) -> Engine:
    engine = Engine(config, aws=aws)
    await engine.start()
    return engine


# -- the event ----------------------------------------------------------------------------------


async def test_event_is_lambdas_sqs_event(aws: AwsClients, queues: Queues) -> None:
    name = unique("shape")
    arn, url = await queues.create(name)
    c = await queues.client()
    await c.send_message(QueueUrl=url, MessageBody="Test message.")
    await c.send_message(
        QueueUrl=url,
        MessageBody="Message Body",
        MessageAttributes={
            "Attribute2": {"DataType": "Number", "StringValue": "123"},
            "Attribute1": {"DataType": "String", "StringValue": "AttributeValue1"},
            "Attribute3": {"DataType": "Binary", "BinaryValue": b"1100"},
        },
    )
    config = engine_config(
        {name: {"Target": TARGET}},
        [{"FunctionName": name, "EventSourceArn": arn, "BatchSize": 1}],
    )
    engine = await run(config, aws)
    try:
        await eventually(lambda: len(recorder.EVENTS[name]) == 2, what="two events")
    finally:
        await engine.aclose()
    plain, with_attrs = sorted(recorder.EVENTS[name], key=lambda e: e["Records"][0]["body"])[::-1]
    golden = json.loads((EVENTS_DIR / "sqs_standard.json").read_text())
    assert shape(plain) == shape(golden)
    golden_attrs = json.loads((EVENTS_DIR / "sqs_message_attributes.json").read_text())
    assert shape(with_attrs["Records"][0]["messageAttributes"]["Attribute3"]) == shape(
        golden_attrs["Records"][0]["messageAttributes"]["Attribute3"]
    )
    assert with_attrs["Records"][0]["messageAttributes"] == {
        "Attribute2": {
            "stringValue": "123",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Number",
        },
        "Attribute1": {
            "stringValue": "AttributeValue1",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "Attribute3": {
            "binaryValue": "MTEwMA==",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    assert "md5OfMessageAttributes" in with_attrs["Records"][0]
    for event in (plain, with_attrs):
        rec = event["Records"][0]
        assert rec["md5OfBody"] == hashlib.md5(rec["body"].encode()).hexdigest()
        assert rec["eventSource"] == "aws:sqs"
        assert rec["eventSourceARN"] == arn
        assert rec["awsRegion"] == "us-east-1"
        assert rec["attributes"]["ApproximateReceiveCount"] == "1"
        assert int(rec["attributes"]["SentTimestamp"]) <= int(
            rec["attributes"]["ApproximateFirstReceiveTimestamp"]
        )


async def test_fifo_event_carries_group_and_dedup_ids(aws: AwsClients, queues: Queues) -> None:
    name = unique("fifoshape")
    arn, url = await queues.create(name, fifo=True)
    await queues.send(url, ["Test message."], group="1")
    config = engine_config(
        {name: {"Target": TARGET}}, [{"FunctionName": name, "EventSourceArn": arn}]
    )
    engine = await run(config, aws)
    try:
        await eventually(lambda: recorder.EVENTS[name], what="an event")
    finally:
        await engine.aclose()
    rec = recorder.EVENTS[name][0]["Records"][0]
    golden = json.loads((EVENTS_DIR / "sqs_fifo.json").read_text())["Records"][0]
    expected_attrs = set(golden["attributes"])
    expected_attrs.discard(
        "SequenceNumber"
    )  # moto's FIFO receive does not return it (real SQS does)
    assert set(rec["attributes"]) >= expected_attrs
    assert rec["attributes"]["MessageGroupId"] == "1"
    assert [k for k, _ in shape(rec)] == [k for k, _ in shape(golden)]


# -- targets ------------------------------------------------------------------------------------


@pytest.fixture
async def http_function() -> AsyncIterator[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """An HTTP function: records events; ``mode["error_body"]`` makes it answer like the RIE does
    for a failed invocation (status 200, error JSON, no X-Amz-Function-Error header)."""
    events: list[dict[str, Any]] = []
    mode: dict[str, Any] = {"error_body": False}

    async def invoke(request: web.Request) -> web.Response:
        event = await request.json()
        events.append(event)
        if mode["error_body"]:
            return web.json_response({"errorType": "ValueError", "errorMessage": "boom"})
        return web.json_response({"batchItemFailures": []})

    app = web.Application()
    app.router.add_post("/invoke", invoke)
    app.router.add_post("/2015-03-31/functions/function/invocations", invoke)
    async with serve_app(app) as port:
        yield f"127.0.0.1:{port}", events, mode


@pytest.mark.parametrize("kind", ["python", "python-async", "http", "rie"])
async def test_each_target_kind_gets_the_batch_and_success_deletes(
    kind: str,
    aws: AwsClients,
    queues: Queues,
    http_function: tuple[str, list[dict[str, Any]], dict[str, Any]],
) -> None:
    hostport, http_events, _ = http_function
    name = unique(kind)
    target = {
        "python": TARGET,
        "python-async": ASYNC_TARGET,
        "http": f"http://{hostport}/invoke",
        "rie": f"rie://{hostport}",
    }[kind]
    arn, url = await queues.create(name)
    await queues.send(url, [f"m{i}" for i in range(5)])
    config = engine_config(
        {name: {"Target": target}}, [{"FunctionName": name, "EventSourceArn": arn}]
    )
    engine = await run(config, aws)
    try:
        got = recorder.EVENTS[name] if kind.startswith("python") else http_events
        await eventually(
            lambda: (
                sorted(r["body"] for e in got for r in e["Records"]) == [f"m{i}" for i in range(5)]
            ),
            what="all five messages",
        )
        await eventually(lambda: queues.is_empty(url), what="the queue to be empty")
    finally:
        await engine.aclose()
    assert engine.metrics.get("DeletedEventCount") == 5


async def test_rie_error_body_without_header_is_a_function_error(
    aws: AwsClients,
    queues: Queues,
    http_function: tuple[str, list[dict[str, Any]], dict[str, Any]],
) -> None:
    hostport, events, mode = http_function
    mode["error_body"] = True
    name = unique("rieerr")
    arn, url = await queues.create(name, visibility_s=30)
    await queues.send(url, ["a", "b"])
    config = engine_config(
        {name: {"Target": f"rie://{hostport}"}},
        [
            {
                "FunctionName": name,
                "EventSourceArn": arn,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }
        ],
    )
    engine = await run(config, aws)
    try:
        await eventually(lambda: sum(len(e["Records"]) for e in events) == 2, what="the batch")
        await eventually(lambda: engine.metrics.get("Errors") >= 1, what="an error counted")
    finally:
        await engine.aclose()
    assert await queues.depth(url) == (0, 2)  # nothing deleted: both wait out their visibility
    assert engine.metrics.get("DeletedEventCount") == 0
    assert engine.mappings[
        config.event_source_mappings[0].mapping_uuid(name)
    ].last_processing_result == ("PROBLEM: Function call failed")


# -- failure rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("runs_on", RUNS_ON)
async def test_partial_failure_deletes_successes_and_the_poison_reaches_the_dlq(
    aws: AwsClients, queues: Queues, runs_on: str, tmp_path: Path
) -> None:
    name = unique("partial")
    dlq_arn, dlq_url = await queues.create(name + "-dlq")
    arn, url = await queues.create(name, visibility_s=1, dlq_arn=dlq_arn, max_receive_count=2)
    ids = await queues.send(url, ["ok-1", "poison", "ok-2", "ok-3"])
    functions = Functions(runs_on, tmp_path)
    config = engine_config(
        {name: functions.function(name, "report_poison", Timeout=1)},
        [
            {
                "FunctionName": name,
                "EventSourceArn": arn,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }
        ],
    )
    engine = await run(config, aws)
    try:
        await eventually(lambda: queues.holds(dlq_url, 1), timeout=20, what="the DLQ")
        assert await queues.depth(dlq_url) == (1, 0)
        await eventually(lambda: queues.is_empty(url), what="the source queue to empty")
    finally:
        await engine.aclose()
    in_dlq = await queues.drain(dlq_url)
    assert [m["Body"] for m in in_dlq] == ["poison"]
    assert in_dlq[0]["MessageId"] == ids[1]
    events = functions.events(name)
    bodies = [r["body"] for e in events for r in e["Records"]]
    assert sorted(b for b in bodies if b != "poison") == ["ok-1", "ok-2", "ok-3"]  # each once
    poison_receives = [
        r["attributes"]["ApproximateReceiveCount"]
        for e in events
        for r in e["Records"]
        if r["body"] == "poison"
    ]
    assert poison_receives == ["1", "2"]  # maxReceiveCount 2, then the queue's redrive policy


async def test_function_error_deletes_nothing_and_messages_come_back(
    aws: AwsClients, queues: Queues
) -> None:
    name = unique("fnerr")
    arn, url = await queues.create(name, visibility_s=1)
    await queues.send(url, ["a", "b", "c"])
    calls = {"n": 0}

    def behave(event: dict[str, Any], context: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first call fails")

    recorder.BEHAVIOUR[name] = behave
    config = engine_config(
        {name: {"Target": TARGET, "Timeout": 1}},
        [{"FunctionName": name, "EventSourceArn": arn, "BatchSize": 10}],
    )
    engine = await run(config, aws)
    try:
        await eventually(lambda: queues.is_empty(url), what="the queue to empty after a retry")
    finally:
        await engine.aclose()
    first = recorder.EVENTS[name][0]["Records"]
    redelivered = [r for e in recorder.EVENTS[name][1:] for r in e["Records"]]
    assert {r["body"] for r in redelivered} >= {r["body"] for r in first}
    assert {r["attributes"]["ApproximateReceiveCount"] for r in redelivered} == {"2"}
    assert engine.metrics.get("Errors") == 1
    assert engine.metrics.get("FailedInvokeEventCount") == len(first)


@pytest.mark.parametrize(
    "response",
    [
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"id": "x"}]},
        {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]},
        "not an object",
    ],
)
async def test_malformed_partial_response_fails_the_whole_batch(
    response: Any, aws: AwsClients, queues: Queues
) -> None:
    name = unique("malformed")
    arn, url = await queues.create(name, visibility_s=30)
    await queues.send(url, ["a", "b"])
    recorder.BEHAVIOUR[name] = lambda event, context: response
    config = engine_config(
        {name: {"Target": TARGET}},
        [
            {
                "FunctionName": name,
                "EventSourceArn": arn,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }
        ],
    )
    engine = await run(config, aws)
    try:
        await eventually(
            lambda: engine.metrics.get("FailedInvokeEventCount") == 2, what="a failed batch"
        )
    finally:
        await engine.aclose()
    assert await queues.depth(url) == (0, 2)
    assert engine.metrics.get("DeletedEventCount") == 0


async def test_filters_delete_what_does_not_match_without_invoking(
    aws: AwsClients, queues: Queues
) -> None:
    name = unique("filter")
    arn, url = await queues.create(name)
    await queues.send(
        url,
        [
            json.dumps({"type": "order", "amount": 50}),
            json.dumps({"type": "order", "amount": 5}),
            json.dumps({"type": "refund", "amount": 50}),
            "plain text",
        ],
    )
    pattern = json.dumps({"body": {"type": ["order"], "amount": [{"numeric": [">", 10]}]}})
    config = engine_config(
        {name: {"Target": TARGET}},
        [
            {
                "FunctionName": name,
                "EventSourceArn": arn,
                "FilterCriteria": {"Filters": [{"Pattern": pattern}]},
            }
        ],
    )
    engine = await run(config, aws)
    try:
        await eventually(lambda: queues.is_empty(url), what="every message deleted")
    finally:
        await engine.aclose()
    assert [json.loads(b) for b in body_ids(name)] == [{"type": "order", "amount": 50}]
    assert engine.metrics.get("FilteredOutEventCount") == 3
    assert engine.metrics.get("InvokedEventCount") == 1


# -- FIFO ---------------------------------------------------------------------------------------


async def test_fifo_keeps_group_order_under_concurrency(aws: AwsClients, queues: Queues) -> None:
    """One batch per message group in flight, each group in order, with four lanes busy.

    (A group stopping at its first failure is tested on the in-memory queue, in
    tests/unit/test_queue_poller.py: moto redelivers a group out of order when several of its
    messages time out together, which real SQS does not.)
    """
    name = unique("fifo")
    arn, url = await queues.create(name, visibility_s=5, fifo=True)
    groups = ["g1", "g2", "g3", "g4"]
    for g in groups:
        await queues.send(url, [json.dumps({"g": g, "n": n}) for n in range(8)], group=g)
    processed: list[tuple[str, int]] = []
    in_flight: set[str] = set()
    overlaps: list[str] = []
    batches_at_once = {"now": 0, "max": 0}

    async def behave(event: dict[str, Any], context: Any) -> None:
        batch_groups = {json.loads(r["body"])["g"] for r in event["Records"]}
        overlaps.extend(batch_groups & in_flight)
        in_flight.update(batch_groups)
        batches_at_once["now"] += 1
        batches_at_once["max"] = max(batches_at_once["max"], batches_at_once["now"])
        await asyncio.sleep(0.1)
        processed.extend(
            (json.loads(r["body"])["g"], json.loads(r["body"])["n"]) for r in event["Records"]
        )
        in_flight.difference_update(batch_groups)
        batches_at_once["now"] -= 1

    recorder.ASYNC_BEHAVIOUR[name] = behave
    config = engine_config(
        {name: {"Target": ASYNC_TARGET, "Timeout": 5}},
        [
            {
                "FunctionName": name,
                "EventSourceArn": arn,
                "BatchSize": 2,
                "ScalingConfig": {"MaximumConcurrency": 4},
            }
        ],
    )
    engine = await run(config, aws)
    try:
        await eventually(lambda: len(processed) == 32, timeout=30, what="all groups done")
        await eventually(lambda: queues.is_empty(url), what="all deleted")
    finally:
        await engine.aclose()
    assert overlaps == []  # one batch per message group in flight
    assert batches_at_once["max"] > 1  # and groups did run concurrently
    for g in groups:
        assert [n for gg, n in processed if gg == g] == list(range(8)), g


# -- batching -----------------------------------------------------------------------------------


async def test_batching_window_gathers_more_than_ten_into_one_batch(
    aws: AwsClients, queues: Queues
) -> None:
    name = unique("window")
    arn, url = await queues.create(name)
    await queues.send(url, [f"m{i:02d}" for i in range(40)])
    config = engine_config(
        {name: {"Target": TARGET}},
        [
            {
                "FunctionName": name,
                "EventSourceArn": arn,
                "BatchSize": 15,
                "MaximumBatchingWindowInSeconds": 5,
                "ScalingConfig": {"MaximumConcurrency": 2},
            }
        ],
    )
    engine = await run(config, aws)
    started = time.monotonic()
    try:
        await eventually(lambda: len(body_ids(name)) >= 30, timeout=20, what="two full batches")
        elapsed = time.monotonic() - started
        await eventually(lambda: len(body_ids(name)) == 40, timeout=20, what="40 messages")
    finally:
        await engine.aclose()
    sizes = [len(e["Records"]) for e in recorder.EVENTS[name]]
    # Two lanes, each receiving 10 then 5: BatchSize reached in two receives, well before the
    # 5 s window; the last 10 wait for the window to elapse. How the two lanes share those last
    # 10 depends on which receive the queue answers first (AWS too), so only their sum is fixed.
    assert sizes[:2] == [15, 15], sizes
    assert elapsed < 4.0
    assert sum(sizes[2:]) == 10 and len(sizes) <= 4, sizes
    assert sorted(body_ids(name)) == [f"m{i:02d}" for i in range(40)]


async def test_window_flushes_a_partial_batch_when_it_elapses(
    aws: AwsClients, queues: Queues
) -> None:
    name = unique("window2")
    arn, url = await queues.create(name)
    arrivals: list[float] = []
    recorder.BEHAVIOUR[name] = lambda event, context: arrivals.append(time.monotonic())
    config = engine_config(
        {name: {"Target": TARGET}},
        [
            {
                "FunctionName": name,
                "EventSourceArn": arn,
                "BatchSize": 100,
                "MaximumBatchingWindowInSeconds": 1,
                "ScalingConfig": {"MaximumConcurrency": 2},
            }
        ],
    )
    engine = await run(config, aws)
    try:
        await asyncio.sleep(0.3)
        sent_at = time.monotonic()
        await queues.send(url, ["a", "b", "c"])
        await eventually(lambda: len(body_ids(name)) == 3, timeout=10, what="three messages")
    finally:
        await engine.aclose()
    # (Two lanes poll: the three messages may be split between them.)
    assert sum(len(e["Records"]) for e in recorder.EVENTS[name]) == 3
    assert all(0.9 <= t - sent_at < 3.5 for t in arrivals)  # waited for the window, not BatchSize


async def test_six_megabyte_cap_splits_batches(aws: AwsClients, queues: Queues) -> None:
    name = unique("sixmb")
    arn, url = await queues.create(name)
    big = 400 * 1024
    # 16 MB, two per call: aiohttp warns about request bodies over 1 MB
    await queues.send(url, [f"{i:03d}" + "x" * big for i in range(40)], per_call=2)
    sizes: list[int] = []

    def behave(event: dict[str, Any], context: Any) -> None:
        sizes.append(len(json.dumps(event, separators=(",", ":")).encode()))

    recorder.BEHAVIOUR[name] = behave
    config = engine_config(
        {name: {"Target": TARGET}},
        [
            {
                "FunctionName": name,
                "EventSourceArn": arn,
                "BatchSize": 100,
                "MaximumBatchingWindowInSeconds": 3,
                "ScalingConfig": {"MaximumConcurrency": 2},
            }
        ],
    )
    engine = await run(config, aws)
    try:
        await eventually(lambda: len(body_ids(name)) == 40, timeout=30, what="40 big messages")
    finally:
        await engine.aclose()
    assert len(sizes) >= 2
    assert all(s <= 6 * 1024 * 1024 for s in sizes), sizes
    assert max(sizes) > 5.5 * 1024 * 1024  # filled up to the cap, not cut early
    assert sorted(b[:3] for b in body_ids(name)) == [f"{i:03d}" for i in range(40)]


# -- timeouts, enablement, start-up checks ------------------------------------------------------


async def test_timeout_is_a_function_error_and_the_batch_comes_back(
    aws: AwsClients, queues: Queues
) -> None:
    name = unique("timeout")
    arn, url = await queues.create(name, visibility_s=2)
    await queues.send(url, ["slow"])
    calls = {"n": 0}

    async def behave(event: dict[str, Any], context: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            await asyncio.sleep(5)

    recorder.ASYNC_BEHAVIOUR[name] = behave
    config = engine_config(
        {name: {"Target": ASYNC_TARGET, "Timeout": 1}},
        [{"FunctionName": name, "EventSourceArn": arn}],
    )
    engine = await run(config, aws)
    try:
        await eventually(lambda: queues.is_empty(url), timeout=15, what="the retry to succeed")
    finally:
        await engine.aclose()
    receives = [
        e["Records"][0]["attributes"]["ApproximateReceiveCount"] for e in recorder.EVENTS[name]
    ]
    assert receives == ["1", "2"]
    assert engine.metrics.get("Errors") == 1


async def test_disabled_mapping_is_loaded_but_never_polled(aws: AwsClients, queues: Queues) -> None:
    name = unique("disabled")
    arn, url = await queues.create(name)
    await queues.send(url, ["stay"])
    config = engine_config(
        {name: {"Target": TARGET}},
        [{"FunctionName": name, "EventSourceArn": arn, "Enabled": False}],
    )
    engine = await run(config, aws)
    try:
        await asyncio.sleep(1.0)
        (rt,) = engine.mappings.values()
        assert rt.state == "Disabled"
    finally:
        await engine.aclose()
    assert recorder.EVENTS[name] == []
    assert await queues.depth(url) == (1, 0)


async def test_function_timeout_above_visibility_timeout_is_refused_as_aws_does(
    aws: AwsClients, queues: Queues
) -> None:
    name = unique("vis")
    arn, _ = await queues.create(name, visibility_s=10)
    config = engine_config(
        {name: {"Target": TARGET, "Timeout": 60}}, [{"FunctionName": name, "EventSourceArn": arn}]
    )
    with pytest.raises(MappingStartError) as info:
        await run(config, aws)
    assert info.value.error.name == "InvalidParameterValueException"
    assert "Queue visibility timeout: 10 seconds is less than Function timeout: 60 seconds" in str(
        info.value
    )
    assert str(info.value).startswith("EventSourceMappings[0] (")


async def test_missing_queue_is_refused_at_start(aws: AwsClients) -> None:
    name = unique("missing")
    config = engine_config(
        {name: {"Target": TARGET}},
        [{"FunctionName": name, "EventSourceArn": f"arn:aws:sqs:us-east-1:123456789012:{name}"}],
    )
    with pytest.raises(MappingStartError, match=r"NonExistentQueue|QueueDoesNotExist"):
        await run(config, aws)


# -- shutdown -----------------------------------------------------------------------------------


async def test_graceful_shutdown_finishes_in_flight_batches_and_leaves_the_rest(
    aws: AwsClients, queues: Queues
) -> None:
    name = unique("drain")
    arn, url = await queues.create(name, visibility_s=6)
    await queues.send(url, [f"m{i}" for i in range(5)])

    async def behave(event: dict[str, Any], context: Any) -> None:
        await asyncio.sleep(1.0)

    recorder.ASYNC_BEHAVIOUR[name] = behave
    config = engine_config(
        {name: {"Target": ASYNC_TARGET, "Timeout": 5}},
        [
            {
                "FunctionName": name,
                "EventSourceArn": arn,
                "BatchSize": 2,
                "ScalingConfig": {"MaximumConcurrency": 2},
            }
        ],
    )
    engine = await run(config, aws)
    await eventually(lambda: recorder.STARTED[name].is_set(), what="a batch in flight")
    await engine.aclose(deadline_s=10)
    invoked = body_ids(name)
    assert invoked  # at least one batch was in flight, and it finished
    assert engine.metrics.get("DeletedEventCount") == len(invoked)
    # Nothing lost: every message not invoked is on the queue. A receive cancelled by the stop
    # may have been answered after esm stopped listening (AWS and moto both hide such messages
    # for one visibility timeout), so they are waited for, not required at once.
    assert await queues.depth(url) in {(5 - len(invoked) - n, n) for n in range(3)}
    left = (5 - len(invoked), 0)

    async def settled() -> bool:
        return await queues.depth(url) == left

    await eventually(settled, timeout=10, what="every message not invoked visible again")


async def test_shutdown_releases_messages_held_in_a_batching_window(
    aws: AwsClients, queues: Queues
) -> None:
    name = unique("held")
    arn, url = await queues.create(name, visibility_s=60)
    await queues.send(url, ["m0", "m1", "m2"])
    config = engine_config(
        {name: {"Target": TARGET}},
        [
            {
                "FunctionName": name,
                "EventSourceArn": arn,
                "BatchSize": 50,
                "MaximumBatchingWindowInSeconds": 30,
            }
        ],
    )
    engine = await run(config, aws)

    async def held() -> bool:
        return await queues.depth(url) == (0, 3)

    await eventually(held, what="3 messages received into the window")
    await engine.aclose(deadline_s=5)
    assert body_ids(name) == []
    # Received but never invoked: made visible again at once, not after the 60 s timeout.
    assert await queues.depth(url) == (3, 0)


async def test_shutdown_deadline_leaves_unfinished_batches_on_the_queue(
    aws: AwsClients, queues: Queues
) -> None:
    name = unique("deadline")
    arn, url = await queues.create(name, visibility_s=2)
    await queues.send(url, [f"m{i}" for i in range(4)])

    async def behave(event: dict[str, Any], context: Any) -> None:
        await asyncio.sleep(10)

    recorder.ASYNC_BEHAVIOUR[name] = behave
    config = engine_config(
        {name: {"Target": ASYNC_TARGET, "Timeout": 2}},
        [{"FunctionName": name, "EventSourceArn": arn}],
    )
    engine = await run(config, aws)
    await eventually(lambda: recorder.STARTED[name].is_set(), what="a batch in flight")
    started = time.monotonic()
    await engine.aclose(deadline_s=0.5)
    assert time.monotonic() - started < 3
    assert engine.metrics.get("DeletedEventCount") == 0
    # All four come back after their visibility timeout. (A long poll the shutdown cancelled may
    # still take them once inside moto, hiding them for one more timeout: wait for that too.)
    back: list[str] = []

    async def all_back() -> bool:
        back.extend(m["Body"] for m in await queues.drain(url))
        return len(back) >= 4

    await eventually(all_back, timeout=10, interval=0.5, what="the four messages back")
    assert sorted(back) == [f"m{i}" for i in range(4)]


# -- the connector ------------------------------------------------------------------------------


async def test_delete_reports_the_entries_sqs_refused_and_deletes_the_rest(
    aws: AwsClients, queues: Queues
) -> None:
    name = unique("del")
    arn, url = await queues.create(name)
    await queues.send(url, ["a", "b", "c"])
    conn = SqsConnector(arn, aws=aws, clock=RealClock())
    got = await conn.receive(10, 1)
    assert sorted(r.data["body"] for r in got) == ["a", "b", "c"]
    one = got[1]
    bad = Record(one.data, item_id=one.item_id, token="not-a-receipt-handle", arrival=one.arrival)
    left = await conn.delete([got[0], bad, got[2]])
    assert left == [bad]  # refused entry by entry (ReceiptHandleIsInvalid), after retries
    assert await queues.depth(url) == (0, 1)  # only the message behind the bad handle is left
