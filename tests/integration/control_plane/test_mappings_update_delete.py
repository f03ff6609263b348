"""UpdateEventSourceMapping and DeleteEventSourceMapping: a mapping paused, resumed, changed and removed."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from botocore.exceptions import ClientError

from esm.aws import AwsClients
from tests.control_support import (
    AFTER_STOP_S,
    ESM_PATH,
    FN_ARN,
    NOT_FOUND,
    QUIET_S,
    SHORT_VISIBILITY_S,
    ControlWorld,
    bodies,
    call,
    code,
    create_sqs_mapping,
    error,
    fn,
    get_mapping,
    kinesis_values,
    status,
    wait_state,
)
from tests.fixtures import recorder
from tests.streams_support import create_stream, put
from tests.support import Queues, eventually, unique

pytestmark = pytest.mark.integration


# -- a mapping runs, pauses, resumes ---------------------------------------------------------------


async def test_update_disable_and_enable_an_sqs_mapping(
    world: ControlWorld, queues: Queues
) -> None:
    name = unique("cp-toggle")
    node = await world.start({name: fn(Timeout=1)})
    arn, url = await queues.create(name, visibility_s=SHORT_VISIBILITY_S)
    uuid = await create_sqs_mapping(
        node, name, arn, FunctionResponseTypes=["ReportBatchItemFailures"], BatchSize=2
    )
    await queues.send(url, ["a1", "a2", "a3"])
    await eventually(lambda: set(bodies(name)) == {"a1", "a2", "a3"}, what="3 messages")
    assert max(len(e["Records"]) for e in recorder.EVENTS[name]) <= 2

    # a partial update keeps what it does not name
    updated = await call(node.client, "update_event_source_mapping", UUID=uuid, BatchSize=7)
    assert status(updated) == 202
    assert updated["State"] == "Updating"
    assert updated["BatchSize"] == 7
    assert updated["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    got = await wait_state(node, uuid, "Enabled")
    assert (got["BatchSize"], got["FunctionResponseTypes"]) == (7, ["ReportBatchItemFailures"])
    assert got["LastModified"] >= updated["LastModified"]

    disabled = await call(node.client, "update_event_source_mapping", UUID=uuid, Enabled=False)
    assert status(disabled) == 202
    assert disabled["State"] == "Disabling"
    await wait_state(node, uuid, "Disabled")
    seen = len(bodies(name))
    await queues.send(url, ["b1", "b2", "b3"])
    await asyncio.sleep(QUIET_S)
    assert len(bodies(name)) == seen
    assert await queues.total(url) == 3  # the messages stay on the queue

    enabled = await call(node.client, "update_event_source_mapping", UUID=uuid, Enabled=True)
    assert enabled["State"] == "Enabling"
    got = await wait_state(node, uuid, "Enabled")
    assert got["BatchSize"] == 7
    await eventually(
        lambda: set(bodies(name)) == {"a1", "a2", "a3", "b1", "b2", "b3"},
        timeout=AFTER_STOP_S,
        what="b1..b3",
    )
    await eventually(lambda: queues.is_empty(url), timeout=AFTER_STOP_S, what="the queue emptied")


async def test_kinesis_mapping_keeps_its_position_across_disable_and_enable(
    world: ControlWorld, aws: AwsClients
) -> None:
    name = unique("cp-kinesis")
    node = await world.start({name: fn()})
    stream = await create_stream(aws)
    await put(aws, stream, [("k", {"n": n}) for n in range(3)])
    created = await call(
        node.client,
        "create_event_source_mapping",
        FunctionName=name,
        EventSourceArn=stream,
        StartingPosition="TRIM_HORIZON",
    )
    uuid = created["UUID"]
    await eventually(lambda: len(kinesis_values(name)) == 3, what="the first 3 records")

    async def ok() -> bool:
        return (await get_mapping(node, uuid))["LastProcessingResult"] == "OK"

    await eventually(ok, what="LastProcessingResult OK")

    await call(node.client, "update_event_source_mapping", UUID=uuid, Enabled=False)
    await wait_state(node, uuid, "Disabled")
    await put(aws, stream, [("k", {"n": n}) for n in range(3, 5)])
    await asyncio.sleep(QUIET_S)
    assert len(kinesis_values(name)) == 3

    await call(node.client, "update_event_source_mapping", UUID=uuid, Enabled=True)
    await wait_state(node, uuid, "Enabled")
    await eventually(lambda: len(kinesis_values(name)) >= 5, what="records 3 and 4")
    await asyncio.sleep(0.5)
    assert Counter(v["n"] for v in kinesis_values(name)) == Counter(range(5))


# -- UpdateEventSourceMapping ------------------------------------------------------------------------


async def test_update_filter_criteria_and_errors(world: ControlWorld, queues: Queues) -> None:
    name = unique("cp-update")
    node = await world.start({name: fn(Timeout=1)})
    arn, url = await queues.create(name, visibility_s=SHORT_VISIBILITY_S)
    pattern = json.dumps({"body": {"keep": [True]}})
    uuid = await create_sqs_mapping(
        node, name, arn, FilterCriteria={"Filters": [{"Pattern": pattern}]}
    )
    got = await get_mapping(node, uuid)
    assert got["FilterCriteria"] == {"Filters": [{"Pattern": pattern}]}
    await queues.send(
        url, [json.dumps({"keep": True, "n": 1}), json.dumps({"keep": False, "n": 2})]
    )
    await eventually(lambda: queues.is_empty(url), what="both messages gone")
    assert [json.loads(b)["n"] for b in bodies(name)] == [1]  # the other was filtered out

    # FilterCriteria {} removes the filters
    updated = await call(node.client, "update_event_source_mapping", UUID=uuid, FilterCriteria={})
    assert "FilterCriteria" not in updated
    got = await wait_state(node, uuid, "Enabled")
    assert "FilterCriteria" not in got
    await queues.send(url, [json.dumps({"keep": False, "n": 3})])
    await eventually(
        lambda: 3 in [json.loads(b)["n"] for b in bodies(name)],
        timeout=AFTER_STOP_S,
        what="the unfiltered message",
    )

    # Create-only members: boto3 cannot send them on Update, so raw HTTP
    for member, val in (("EventSourceArn", arn), ("StartingPosition", "LATEST"), ("Tags", {})):
        http_status, headers, doc = await node.http(
            "PUT", f"{ESM_PATH}/{uuid}", {member: val, "BatchSize": 3}
        )
        assert (http_status, headers["x-amzn-ErrorType"]) == (400, "InvalidParameterValueException")
        assert doc["message"] == f"{member}: can only be set when the mapping is created"
    assert (await get_mapping(node, uuid))["BatchSize"] == 10  # nothing was applied

    # invalid values name the field; the mapping is unchanged
    for kwargs, message in (
        ({"BatchSize": 0}, "BatchSize: must be between 1 and 10000 (got 0)"),
        ({"BatchSize": 11}, "Maximum batch window in seconds must be greater than 0 if maximum"),
        ({"MaximumRetryAttempts": 2}, "MaximumRetryAttempts: not supported for SQS"),
        (
            {"FilterCriteria": {"Filters": [{"Pattern": "[]"}]}},
            "Invalid filter pattern definition.",
        ),
        ({"FunctionName": "cp-nope"}, "Function does not exist"),
    ):
        exc = await error(node.raw, "update_event_source_mapping", UUID=uuid, **kwargs)
        got_status, got_code, got_message = code(exc)
        assert (got_status, got_code) == (400, "InvalidParameterValueException")
        assert got_message.startswith(message), got_message
    got = await get_mapping(node, uuid)
    assert (got["State"], got["BatchSize"]) == ("Enabled", 10)

    # an unknown UUID
    exc = await error(
        node.client,
        "update_event_source_mapping",
        UUID="00000000-0000-0000-0000-000000000000",
        BatchSize=3,
    )
    assert code(exc) == (404, "ResourceNotFoundException", NOT_FOUND)
    assert exc.response["Message"] == NOT_FOUND  # the modelled member


async def test_update_function_name(world: ControlWorld, queues: Queues) -> None:
    name, slow, other, moved = (unique(f"cp-{n}") for n in ("fast", "slow", "other", "moved"))
    node = await world.start({name: fn(), slow: fn(Timeout=60), other: fn(), moved: fn()})
    arn, _ = await queues.create(name, visibility_s=30)
    uuid = await create_sqs_mapping(node, name, arn)
    other_uuid = await create_sqs_mapping(node, other, arn, wait=False)

    # the function's Timeout is checked against the queue again
    exc = await error(node.client, "update_event_source_mapping", UUID=uuid, FunctionName=slow)
    assert code(exc) == (
        400,
        "InvalidParameterValueException",
        "Queue visibility timeout: 30 seconds is less than Function timeout: 60 seconds",
    )
    # one mapping per function and source, on Update too
    exc = await error(node.client, "update_event_source_mapping", UUID=uuid, FunctionName=other)
    got_status, got_code, message = code(exc)
    assert (got_status, got_code) == (409, "ResourceConflictException")
    assert message.endswith(f"the existing mapping with UUID {other_uuid}")
    # naming its own function again is no conflict
    same = await call(
        node.client, "update_event_source_mapping", UUID=uuid, FunctionName=f"{FN_ARN}:{name}"
    )
    assert same["FunctionArn"] == f"{FN_ARN}:{name}"
    await wait_state(node, uuid, "Enabled")

    updated = await call(
        node.client, "update_event_source_mapping", UUID=uuid, FunctionName=f"{moved}:$LATEST"
    )
    assert updated["FunctionArn"] == f"{FN_ARN}:{moved}:$LATEST"
    await wait_state(node, uuid, "Enabled")
    assert node.engine.mappings[uuid].function_name == moved
    listed = await call(node.client, "list_event_source_mappings", FunctionName=moved)
    assert [m["UUID"] for m in listed["EventSourceMappings"]] == [uuid]

    # a malformed DestinationConfig is refused, not a crash
    http_status, headers, doc = await node.http(
        "PUT", f"{ESM_PATH}/{uuid}", {"DestinationConfig": "none"}
    )
    assert (http_status, headers["x-amzn-ErrorType"]) == (400, "InvalidParameterValueException")
    assert doc["message"].startswith("DestinationConfig")


async def test_create_disabled_mapping_leaves_the_queue_alone(
    world: ControlWorld, queues: Queues
) -> None:
    name = unique("cp-disabled")
    node = await world.start({name: fn()})
    arn, url = await queues.create(name)
    created = await call(
        node.client,
        "create_event_source_mapping",
        FunctionName=name,
        EventSourceArn=arn,
        Enabled=False,
    )
    assert created["State"] == "Creating"
    await wait_state(node, created["UUID"], "Disabled")
    await queues.send(url, ["d1", "d2"])
    await asyncio.sleep(QUIET_S)
    assert bodies(name) == []
    assert await queues.depth(url) == (2, 0)


async def test_resource_in_use_while_creating_or_updating(
    world: ControlWorld, queues: Queues
) -> None:
    """A mapping stays ``Creating`` / ``Updating`` until a daemon reconciles it. To hold it there
    deterministically, the test holds the engine's reconcile lock (the engine is "busy
    reconciling") while it calls the API."""
    name = unique("cp-inuse")
    node = await world.start({name: fn()})
    arn, _ = await queues.create(name)
    mapping_set = node.engine.mapping_set
    assert mapping_set is not None

    async with mapping_set._lock:
        uuid = await create_sqs_mapping(node, name, arn, wait=False)
        assert (await get_mapping(node, uuid))["State"] == "Creating"
        exc = await error(node.client, "update_event_source_mapping", UUID=uuid, BatchSize=3)
        assert code(exc) == (
            400,
            "ResourceInUseException",
            "Cannot update the event source mapping because it is in use (Creating).",
        )
        exc = await error(node.client, "delete_event_source_mapping", UUID=uuid)
        assert code(exc)[:2] == (400, "ResourceInUseException")
        assert isinstance(exc, node.client.exceptions.ResourceInUseException)
    await wait_state(node, uuid, "Enabled")

    async with mapping_set._lock:
        updated = await call(node.client, "update_event_source_mapping", UUID=uuid, BatchSize=3)
        assert updated["State"] == "Updating"
        exc = await error(node.client, "delete_event_source_mapping", UUID=uuid)
        assert code(exc) == (
            400,
            "ResourceInUseException",
            "Cannot delete the event source mapping because it is in use (Updating).",
        )
        exc = await error(node.client, "update_event_source_mapping", UUID=uuid, BatchSize=4)
        assert code(exc)[:2] == (400, "ResourceInUseException")
    got = await wait_state(node, uuid, "Enabled")
    assert got["BatchSize"] == 3


# -- DeleteEventSourceMapping ------------------------------------------------------------------------


async def test_delete_mapping_stops_it(world: ControlWorld, queues: Queues) -> None:
    name = unique("cp-delete")
    node = await world.start({name: fn(Timeout=1)})
    arn, url = await queues.create(name, visibility_s=SHORT_VISIBILITY_S)
    uuid = await create_sqs_mapping(node, name, arn)
    await queues.send(url, ["before"])
    await eventually(lambda: set(bodies(name)) == {"before"}, what="the first message")

    deleted = await call(node.client, "delete_event_source_mapping", UUID=uuid)
    assert status(deleted) == 202
    assert deleted["State"] == "Deleting"
    assert deleted["UUID"] == uuid

    async def gone() -> bool:
        try:
            await get_mapping(node, uuid)
        except ClientError as exc:
            return code(exc) == (404, "ResourceNotFoundException", NOT_FOUND)
        return False

    await eventually(gone, interval=0.1, what="the mapping gone")
    assert uuid not in node.engine.mappings
    listed = await call(node.client, "list_event_source_mappings")
    assert listed["EventSourceMappings"] == []

    await queues.send(url, ["after-1", "after-2"])
    await asyncio.sleep(QUIET_S)
    assert set(bodies(name)) == {"before"}
    assert await queues.total(url) == 2  # the messages stay

    exc = await error(node.client, "delete_event_source_mapping", UUID=uuid)
    assert code(exc) == (404, "ResourceNotFoundException", NOT_FOUND)
    exc = await error(node.raw, "get_event_source_mapping", UUID="not-a-uuid")
    assert code(exc)[:2] == (404, "ResourceNotFoundException")
