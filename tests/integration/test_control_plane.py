"""The control plane through Lambda's API, as boto3 and the AWS CLI drive it.

Each test runs in-process engines (``Engine`` + ``esm.api.serve(engine, port=0)``) with the
registry on the real Redis under a key prefix of its own (deleted after), SQS, Kinesis and
DynamoDB Streams in moto's server, and ``python:`` handlers that record what they get
(:mod:`tests.fixtures.recorder`). What is checked is what a user sees: the answers, their
status codes and errors, and what happens to the messages on the queue.

boto3 checks ranges and required members before sending; the tests of the server's own checks
use a client with ``parameter_validation=False`` (``node.raw``), or raw HTTP where boto3 cannot
send the request at all (a Create-only member on Update).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from esm.aws import AwsClients
from tests.control_support import (
    TARGET,
    Cli,
    ControlWorld,
    Node,
    body,
    call,
    code,
    error,
    find_aws_cli,
    status,
)
from tests.fixtures import recorder
from tests.redis_cluster import on_redis
from tests.streams_support import create_queue, create_stream, put, receive_all, value
from tests.support import ACCOUNT, REGION, Queues, eventually, unique

pytestmark = pytest.mark.integration

FN_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
ESM_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping"
ESM_PATH = "/2015-03-31/event-source-mappings"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NOT_FOUND = "The resource you requested does not exist."
QUIET_S = 1.5  # how long "nothing happens" is watched for

# Stopping an SQS poller (Update, Disable, Delete, a daemon stopping) cancels its 20 s long polls.
# moto's server does not notice: the orphaned ReceiveMessage goes on for up to 20 s and may take
# a message sent meanwhile, hiding it for the queue's visibility timeout. Tests that stop pollers
# use a 1 s visibility timeout (and a 1 s function Timeout, which must not exceed it), wait up to
# AFTER_STOP_S for deliveries that follow a stop, and compare sets: SQS is at-least-once.
SHORT_VISIBILITY_S = 1
AFTER_STOP_S = 30.0


@pytest.fixture
async def world(aws: AwsClients, store_url: str) -> AsyncIterator[ControlWorld]:
    """Engines on the shared Redis, or on the Redis kind the test is parametrized with."""
    w = ControlWorld(aws, store_url)
    yield w
    await w.aclose()


@pytest.fixture
def queues(aws: AwsClients) -> Queues:
    return Queues(aws)


def fn(**settings: Any) -> dict[str, Any]:
    return {"Target": TARGET, **settings}


def bodies(name: str) -> list[str]:
    """The SQS message bodies function ``name`` has been given, in order."""
    return [r["body"] for e in recorder.EVENTS[name] for r in e["Records"]]


def kinesis_values(name: str) -> list[Any]:
    return [value(r) for e in recorder.EVENTS[name] for r in e["Records"]]


async def get_mapping(node: Node, uuid: str) -> dict[str, Any]:
    return await call(node.client, "get_event_source_mapping", UUID=uuid)


async def wait_state(node: Node, uuid: str, state: str) -> dict[str, Any]:
    """Get, until the mapping is in ``state``."""
    found: dict[str, Any] = {}

    async def reached() -> bool:
        found.update(await get_mapping(node, uuid))
        return bool(found["State"] == state)

    await eventually(reached, interval=0.1, what=f"mapping {uuid} {state}")
    return found


async def create_sqs_mapping(
    node: Node, function: str, arn: str, *, wait: bool = True, **kwargs: Any
) -> str:
    resp = await call(
        node.client,
        "create_event_source_mapping",
        FunctionName=function,
        EventSourceArn=arn,
        **kwargs,
    )
    if wait:
        await wait_state(node, resp["UUID"], "Enabled")
    return str(resp["UUID"])


async def create_table(aws: AwsClients) -> str:
    """A DynamoDB table with a stream; the stream's ARN."""
    c = await aws.client("dynamodb", REGION)
    resp = await c.create_table(
        TableName=unique("table"),
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    return str(resp["TableDescription"]["LatestStreamArn"])


def failing(event: Any, context: Any) -> Any:
    raise ValueError("boom")


# -- CreateEventSourceMapping ----------------------------------------------------------------------


async def test_create_sqs_mapping_is_creating_then_enabled_and_runs(
    world: ControlWorld, queues: Queues
) -> None:
    name = unique("cp-sqs")
    node = await world.start({name: fn()})
    arn, url = await queues.create(name)
    before = time.time()
    resp = await call(
        node.client,
        "create_event_source_mapping",
        FunctionName=name,
        EventSourceArn=arn,
        BatchSize=5,
    )
    assert status(resp) == 202
    uuid = resp["UUID"]
    assert UUID_RE.fullmatch(uuid)
    assert isinstance(resp["LastModified"], datetime)
    assert before - 1 <= resp["LastModified"].timestamp() <= time.time() + 1
    assert body(resp) == {
        "UUID": uuid,
        "BatchSize": 5,
        "MaximumBatchingWindowInSeconds": 0,
        "EventSourceArn": arn,
        "FunctionArn": f"{FN_ARN}:{name}",
        "LastModified": resp["LastModified"],
        "LastProcessingResult": "No records processed",
        "State": "Creating",
        "StateTransitionReason": "USER_INITIATED",
        "FunctionResponseTypes": [],
        "EventSourceMappingArn": f"{ESM_ARN}:{uuid}",
    }
    got = await wait_state(node, uuid, "Enabled")
    assert body(got) == {**body(resp), "State": "Enabled"}

    # on the wire, LastModified is epoch seconds as a JSON number
    http_status, _, doc = await node.http("GET", f"{ESM_PATH}/{uuid}")
    assert http_status == 200
    assert isinstance(doc["LastModified"], float)
    assert doc["LastModified"] == pytest.approx(resp["LastModified"].timestamp(), abs=0.001)

    await queues.send(url, ["m1", "m2", "m3"])
    await eventually(lambda: sorted(bodies(name)) == ["m1", "m2", "m3"], what="3 messages")
    await eventually(lambda: queues.is_empty(url), what="the queue emptied")

    async def ok() -> bool:
        return (await get_mapping(node, uuid))["LastProcessingResult"] == "OK"

    await eventually(ok, what="LastProcessingResult OK")


async def test_create_stream_mappings_show_the_stream_fields(
    world: ControlWorld, aws: AwsClients
) -> None:
    name = unique("cp-streams")
    node = await world.start({name: fn()})
    stream_arn = await create_stream(aws)
    table_stream_arn = await create_table(aws)
    dlq_arn, _ = await create_queue(aws, unique("cp-onfailure"))

    kinesis = await call(
        node.client,
        "create_event_source_mapping",
        FunctionName=f"{name}:$LATEST",
        EventSourceArn=stream_arn,
        StartingPosition="TRIM_HORIZON",
    )
    assert status(kinesis) == 202
    assert body(kinesis) == {
        "UUID": kinesis["UUID"],
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 0,
        "ParallelizationFactor": 1,
        "EventSourceArn": stream_arn,
        "FunctionArn": f"{FN_ARN}:{name}:$LATEST",
        "LastModified": kinesis["LastModified"],
        "LastProcessingResult": "No records processed",
        "State": "Creating",
        "StateTransitionReason": "USER_INITIATED",
        "DestinationConfig": {"OnFailure": {}},
        "MaximumRecordAgeInSeconds": -1,
        "BisectBatchOnFunctionError": False,
        "MaximumRetryAttempts": -1,
        "TumblingWindowInSeconds": 0,
        "FunctionResponseTypes": [],
        "EventSourceMappingArn": f"{ESM_ARN}:{kinesis['UUID']}",
    }

    dynamodb = await call(
        node.client,
        "create_event_source_mapping",
        FunctionName=f"{FN_ARN}:{name}",
        EventSourceArn=table_stream_arn,
        StartingPosition="LATEST",
        BatchSize=50,
        MaximumBatchingWindowInSeconds=2,
        ParallelizationFactor=3,
        MaximumRetryAttempts=2,
        MaximumRecordAgeInSeconds=120,
        BisectBatchOnFunctionError=True,
        TumblingWindowInSeconds=30,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
    )
    assert status(dynamodb) == 202
    assert body(dynamodb) == {
        "UUID": dynamodb["UUID"],
        "StartingPosition": "LATEST",
        "BatchSize": 50,
        "MaximumBatchingWindowInSeconds": 2,
        "ParallelizationFactor": 3,
        "EventSourceArn": table_stream_arn,
        "FunctionArn": f"{FN_ARN}:{name}",
        "LastModified": dynamodb["LastModified"],
        "LastProcessingResult": "No records processed",
        "State": "Creating",
        "StateTransitionReason": "USER_INITIATED",
        "DestinationConfig": {"OnFailure": {"Destination": dlq_arn}},
        "MaximumRecordAgeInSeconds": 120,
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": 2,
        "TumblingWindowInSeconds": 30,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "EventSourceMappingArn": f"{ESM_ARN}:{dynamodb['UUID']}",
    }
    for created in (kinesis, dynamodb):
        got = await wait_state(node, created["UUID"], "Enabled")
        assert body(got) == {**body(created), "State": "Enabled"}

    # an empty Destination removes the on-failure destination; the rest is kept
    cleared = await call(
        node.client,
        "update_event_source_mapping",
        UUID=dynamodb["UUID"],
        DestinationConfig={"OnFailure": {"Destination": ""}},
    )
    expected = {
        **body(dynamodb),
        "DestinationConfig": {"OnFailure": {}},
        "LastModified": cleared["LastModified"],
    }
    assert body(cleared) == {**expected, "State": "Updating"}
    got = await wait_state(node, dynamodb["UUID"], "Enabled")
    assert body(got) == {**expected, "State": "Enabled"}
    # OnSuccess is not a mapping's
    exc = await error(
        node.client,
        "update_event_source_mapping",
        UUID=dynamodb["UUID"],
        DestinationConfig={"OnSuccess": {"Destination": dlq_arn}},
    )
    assert code(exc) == (
        400,
        "InvalidParameterValueException",
        "DestinationConfig.OnSuccess: not supported for event source mappings (OnFailure only)",
    )


FIFO_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:cp-any.fifo"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/cp-any"
TABLE_STREAM_ARN = (
    f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/cp-any/stream/2024-01-01T00:00:00.000"
)

# (kwargs with {fn}, {slow}, {queue} placeholders, status, code, message or its start)
CREATE_ERRORS = [
    pytest.param(
        {"FunctionName": "cp-nope"},
        404,
        "ResourceNotFoundException",
        f"Function not found: {FN_ARN}:cp-nope",
        id="unknown-function",
    ),
    pytest.param(
        {"FunctionName": "{fn}:live"},
        404,
        "ResourceNotFoundException",
        f"Function not found: {FN_ARN}:{{fn}}:live",
        id="unknown-alias",
    ),
    pytest.param(
        {"FunctionName": "not a name!"},
        400,
        "InvalidParameterValueException",
        "'not a name!' is not a function name, partial ARN or function ARN",
        id="bad-function-name",
    ),
    pytest.param(
        {"BatchSize": 0},
        400,
        "InvalidParameterValueException",
        "BatchSize: must be between 1 and 10000 (got 0)",
        id="batch-size-0",
    ),
    pytest.param(
        {"BatchSize": 20},
        400,
        "InvalidParameterValueException",
        "MaximumBatchingWindowInSeconds: must be at least 1 when BatchSize is greater than 10 "
        "(BatchSize is 20)",
        id="batch-over-10-without-window",
    ),
    pytest.param(
        {"EventSourceArn": FIFO_ARN, "BatchSize": 11, "MaximumBatchingWindowInSeconds": 0},
        400,
        "InvalidParameterValueException",
        "BatchSize: must be at most 10 for FIFO queues (got 11)",
        id="fifo-batch-size-11",
    ),
    pytest.param(
        {"ParallelizationFactor": 2},
        400,
        "InvalidParameterValueException",
        "ParallelizationFactor: not supported for SQS event sources (streams only)",
        id="stream-only-on-sqs",
    ),
    pytest.param(
        {"StartingPosition": "LATEST"},
        400,
        "InvalidParameterValueException",
        "StartingPosition: not supported for SQS event sources (streams only)",
        id="starting-position-on-sqs",
    ),
    pytest.param(
        {"EventSourceArn": STREAM_ARN},
        400,
        "InvalidParameterValueException",
        "StartingPosition: required for Kinesis streams",
        id="kinesis-without-starting-position",
    ),
    pytest.param(
        {"EventSourceArn": TABLE_STREAM_ARN, "StartingPosition": "AT_TIMESTAMP"},
        400,
        "InvalidParameterValueException",
        "StartingPosition: AT_TIMESTAMP is not supported for DynamoDB Streams",
        id="dynamodb-at-timestamp",
    ),
    pytest.param(
        {"EventSourceArn": STREAM_ARN, "StartingPosition": "LATEST", "ScalingConfig": {}},
        400,
        "InvalidParameterValueException",
        "ScalingConfig: only supported for SQS event sources, not Kinesis streams",
        id="sqs-only-on-kinesis",
    ),
    pytest.param(
        {
            "FilterCriteria": {
                "Filters": [{"Pattern": '{"body": {"a": [1]}}'}, {"Pattern": "{oops"}]
            }
        },
        400,
        "InvalidParameterValueException",
        "FilterCriteria.Filters[1].Pattern: ",
        id="bad-filter-pattern",
    ),
    pytest.param(
        {"EventSourceArn": "arn:aws:sns:us-east-1:123456789012:topic"},
        400,
        "InvalidParameterValueException",
        "EventSourceArn: unsupported event source",
        id="unsupported-source",
    ),
    pytest.param(
        {"EventSourceArn": None},
        400,
        "InvalidParameterValueException",
        "EventSourceArn: required",
        id="no-event-source",
    ),
    pytest.param(
        {"FunctionName": "{slow}"},
        400,
        "InvalidParameterValueException",
        "Queue visibility timeout: 30 seconds is less than Function timeout: 60 seconds",
        id="visibility-below-function-timeout",
    ),
    pytest.param(
        {"EventSourceArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:cp-no-such-queue"},
        400,
        "InvalidParameterValueException",
        "Error occurred while ReceiveMessage. SQS Error Code: ",
        id="no-such-queue",
    ),
    pytest.param(
        {
            "EventSourceArn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/cp-no-such-stream",
            "StartingPosition": "LATEST",
        },
        400,
        "InvalidParameterValueException",
        f"Stream not found or not readable: arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/cp-no-such-stream",
        id="no-such-stream",
    ),
]


@pytest.mark.parametrize(("overrides", "http_status", "error_code", "message"), CREATE_ERRORS)
async def test_create_errors(
    world: ControlWorld,
    queues: Queues,
    overrides: dict[str, Any],
    http_status: int,
    error_code: str,
    message: str,
) -> None:
    name, slow = unique("cp-err"), unique("cp-slow")
    node = await world.start({name: fn(), slow: fn(Timeout=60)})
    arn, _ = await queues.create(name, visibility_s=30)
    kwargs: dict[str, Any] = {"FunctionName": name, "EventSourceArn": arn}
    for key, val in overrides.items():
        if isinstance(val, str):
            val = val.format(fn=name, slow=slow)
        if val is None:
            kwargs.pop(key)
        else:
            kwargs[key] = val
    exc = await error(node.raw, "create_event_source_mapping", **kwargs)
    got_status, got_code, got_message = code(exc)
    assert (got_status, got_code) == (http_status, error_code), got_message
    assert got_message.startswith(message.format(fn=name)), got_message
    assert isinstance(exc, getattr(node.client.exceptions, error_code))
    assert (await call(node.client, "list_event_source_mappings"))["EventSourceMappings"] == []


async def test_create_refuses_a_second_mapping_of_the_same_function_and_source(
    world: ControlWorld, queues: Queues
) -> None:
    name = unique("cp-dup")
    node = await world.start({name: fn()})
    arn, _ = await queues.create(name)
    uuid = await create_sqs_mapping(node, name, arn, wait=False)
    for form in (name, f"{FN_ARN}:{name}", f"{ACCOUNT}:function:{name}"):
        exc = await error(
            node.client, "create_event_source_mapping", FunctionName=form, EventSourceArn=arn
        )
        got_status, got_code, message = code(exc)
        assert (got_status, got_code) == (409, "ResourceConflictException")
        assert message == (
            f'The event source arn (" {arn} ") and function (" {name} ") provided mapping '
            f"already exists. Please update or delete the existing mapping with UUID {uuid}"
        )
    listed = await call(node.client, "list_event_source_mappings", EventSourceArn=arn)
    assert [m["UUID"] for m in listed["EventSourceMappings"]] == [uuid]


async def test_create_refuses_bad_json_and_unknown_members(
    world: ControlWorld, queues: Queues
) -> None:
    name = unique("cp-raw")
    node = await world.start({name: fn()})
    arn, _ = await queues.create(name)
    http_status, headers, doc = await node.http(
        "POST", ESM_PATH, {"FunctionName": name, "EventSourceArn": arn, "Bogus": 1}
    )
    assert (http_status, headers["x-amzn-ErrorType"]) == (400, "InvalidParameterValueException")
    assert doc["message"].startswith("Bogus: unknown property")
    http_status, headers, doc = await node.http("POST", ESM_PATH, None)
    assert (http_status, headers["x-amzn-ErrorType"]) == (400, "InvalidParameterValueException")
    assert doc == {"Type": "User", "message": "FunctionName: required"}
    for data in (b"{oops", b"[1, 2]", b"[" * 5000 + b"]" * 5000):
        http_status, headers, doc = await node.http("POST", ESM_PATH, data=data)
        assert (http_status, headers["x-amzn-ErrorType"]) == (400, "InvalidRequestContentException")
        assert doc["message"].startswith("Could not parse request body into json: ")
    assert (await call(node.client, "list_event_source_mappings"))["EventSourceMappings"] == []


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
        ({"BatchSize": 11}, "MaximumBatchingWindowInSeconds: must be at least 1 when BatchSize"),
        ({"MaximumRetryAttempts": 2}, "MaximumRetryAttempts: not supported for SQS"),
        ({"FilterCriteria": {"Filters": [{"Pattern": "[]"}]}}, "FilterCriteria.Filters[0].Pattern"),
        ({"FunctionName": "cp-nope"}, f"Function not found: {FN_ARN}:cp-nope"),
    ):
        exc = await error(node.raw, "update_event_source_mapping", UUID=uuid, **kwargs)
        got_status, got_code, got_message = code(exc)
        if "FunctionName" in kwargs:
            assert (got_status, got_code) == (404, "ResourceNotFoundException")
        else:
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


# -- ListEventSourceMappings -------------------------------------------------------------------------


async def test_list_filters_and_pages(world: ControlWorld, queues: Queues) -> None:
    f, g = unique("cp-list-f"), unique("cp-list-g")
    node = await world.start({f: fn(), g: fn()})
    (q1, _), (q2, _) = await queues.create(unique("cp-q1")), await queues.create(unique("cp-q2"))
    f_q1 = await create_sqs_mapping(node, f, q1, wait=False)
    f_q2 = await create_sqs_mapping(node, f, q2, wait=False)
    g_q1 = await create_sqs_mapping(node, g, q1, wait=False)

    async def uuids(**kwargs: Any) -> set[str]:
        resp = await call(node.client, "list_event_source_mappings", **kwargs)
        assert status(resp) == 200
        assert "NextMarker" not in resp
        return {m["UUID"] for m in resp["EventSourceMappings"]}

    assert await uuids() == {f_q1, f_q2, g_q1}
    assert await uuids(EventSourceArn=q1) == {f_q1, g_q1}
    assert await uuids(EventSourceArn=q2) == {f_q2}
    for form in (
        f,
        f"{FN_ARN}:{f}",
        f"{ACCOUNT}:function:{f}",
        f"{REGION}:{ACCOUNT}:function:{f}",
    ):
        assert await uuids(FunctionName=form) == {f_q1, f_q2}, form
    assert await uuids(FunctionName=g, EventSourceArn=q1) == {g_q1}
    assert await uuids(FunctionName=g, EventSourceArn=q2) == set()
    assert await uuids(EventSourceArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:cp-none") == set()

    # paging: one at a time, in a stable order, every mapping once
    seen: list[str] = []
    marker: str | None = None
    for _ in range(5):
        kwargs: dict[str, Any] = {"MaxItems": 1}
        if marker:
            kwargs["Marker"] = marker
        page = await call(node.client, "list_event_source_mappings", **kwargs)
        assert len(page["EventSourceMappings"]) == 1
        seen.append(page["EventSourceMappings"][0]["UUID"])
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == sorted([f_q1, f_q2, g_q1])
    # boto3's paginator follows NextMarker the same way
    paginator = node.client.get_paginator("list_event_source_mappings")
    pages = await asyncio.to_thread(
        lambda: list(paginator.paginate(FunctionName=f, PaginationConfig={"PageSize": 1}))
    )
    assert [m["UUID"] for p in pages for m in p["EventSourceMappings"]] == sorted([f_q1, f_q2])

    for max_items in (0, 10001):
        exc = await error(node.raw, "list_event_source_mappings", MaxItems=max_items)
        assert code(exc) == (
            400,
            "InvalidParameterValueException",
            f"MaxItems must be between 1 and 10000: {max_items}",
        )
    for marker in ("%%%", "not-a-marker"):
        exc = await error(node.client, "list_event_source_mappings", Marker=marker)
        assert code(exc) == (400, "InvalidParameterValueException", f"Invalid Marker: {marker}")
    exc = await error(node.client, "list_event_source_mappings", FunctionName="not a name!")
    assert code(exc) == (
        400,
        "InvalidParameterValueException",
        "'not a name!' is not a function name, partial ARN or function ARN",
    )


# -- mappings from the config file, and daemons sharing the registry ----------------------------


async def test_config_file_mappings_are_listed_under_stable_uuids(
    world: ControlWorld, queues: Queues
) -> None:
    name = unique("cp-config")
    arn, url = await queues.create(name, visibility_s=SHORT_VISIBILITY_S)
    functions = {name: fn(Timeout=1)}
    mappings = [{"FunctionName": name, "EventSourceArn": arn, "BatchSize": 4}]
    node = await world.start(functions, mappings)
    listed = (await call(node.client, "list_event_source_mappings"))["EventSourceMappings"]
    assert len(listed) == 1
    first = listed[0]
    uuid = first["UUID"]
    assert UUID_RE.fullmatch(uuid)
    assert (first["EventSourceArn"], first["BatchSize"], first["FunctionArn"]) == (
        arn,
        4,
        f"{FN_ARN}:{name}",
    )
    assert first["State"] == "Enabled"
    await queues.send(url, ["c1"])
    await eventually(lambda: set(bodies(name)) == {"c1"}, what="the config mapping runs")
    await world.stop(node)

    again = await world.start(functions, mappings)
    listed = (await call(again.client, "list_event_source_mappings"))["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uuid]
    assert listed[0]["LastModified"] == first["LastModified"]  # not rewritten
    await wait_state(again, uuid, "Enabled")
    await queues.send(url, ["c2"])
    await eventually(
        lambda: set(bodies(name)) == {"c1", "c2"},
        timeout=AFTER_STOP_S,
        what="it runs after the restart",
    )

    # the config file's mapping is a mapping like any other through the API
    api_arn, _ = await queues.create(unique("cp-config-api"))
    api_uuid = await create_sqs_mapping(again, name, api_arn, wait=False)
    exc = await error(
        again.client, "create_event_source_mapping", FunctionName=name, EventSourceArn=arn
    )
    assert code(exc)[:2] == (409, "ResourceConflictException")
    assert uuid in code(exc)[2]

    # taken out of the file: gone at the next start; the API's mapping stays
    await world.stop(again)
    third = await world.start(functions, [])

    async def only_the_api_mapping() -> bool:
        listed = await call(third.client, "list_event_source_mappings")
        return [m["UUID"] for m in listed["EventSourceMappings"]] == [api_uuid]

    await eventually(only_the_api_mapping, what="the config file's mapping deleted")


@on_redis("redis", "cluster")
async def test_a_mapping_created_on_one_daemon_runs_on_another_and_survives_restarts(
    world: ControlWorld, queues: Queues
) -> None:
    name = unique("cp-shared")
    arn, url = await queues.create(name, visibility_s=SHORT_VISIBILITY_S)
    functions = {name: fn(Timeout=1)}
    a = await world.start(functions)
    b = await world.start(functions)
    uuid = await create_sqs_mapping(a, name, arn, BatchSize=3)
    # b sees the definition within RegistryPollSeconds and runs it
    await eventually(
        lambda: uuid in b.engine.mappings and b.engine.mappings[uuid].state == "Enabled",
        what="b runs the mapping",
    )
    assert (await get_mapping(b, uuid))["BatchSize"] == 3
    await world.stop(a)  # from here on only b can process
    await queues.send(url, ["s1", "s2"])
    await eventually(
        lambda: set(bodies(name)) == {"s1", "s2"}, timeout=AFTER_STOP_S, what="b processes"
    )

    # an update through b reaches a new daemon c; b stops, c carries on
    await call(b.client, "update_event_source_mapping", UUID=uuid, BatchSize=1)
    await wait_state(b, uuid, "Enabled")
    await world.stop(b)
    c = await world.start(functions)
    got = await get_mapping(c, uuid)
    assert (got["State"], got["BatchSize"], got["EventSourceArn"]) == ("Enabled", 1, arn)
    assert c.engine.mappings[uuid].state == "Enabled"
    await queues.send(url, ["s3"])
    await eventually(
        lambda: set(bodies(name)) == {"s1", "s2", "s3"}, timeout=AFTER_STOP_S, what="c processes"
    )
    await eventually(lambda: queues.is_empty(url), timeout=AFTER_STOP_S, what="the queue emptied")


# -- FunctionEventInvokeConfig ---------------------------------------------------------------------


async def test_event_invoke_config_put_replaces_update_merges(
    world: ControlWorld, aws: AwsClients
) -> None:
    name, other = unique("cp-eic"), unique("cp-eic-other")
    node = await world.start({name: fn(), other: fn()})
    dest_arn, _ = await create_queue(aws, unique("cp-eic-dest"))
    arn_latest = f"{FN_ARN}:{name}:$LATEST"
    none_message = f"The function {arn_latest} doesn't have an EventInvokeConfig"

    exc = await error(node.client, "get_function_event_invoke_config", FunctionName=name)
    assert code(exc) == (404, "ResourceNotFoundException", none_message)
    exc = await error(
        node.client,
        "update_function_event_invoke_config",
        FunctionName=name,
        MaximumRetryAttempts=1,
    )
    assert code(exc) == (404, "ResourceNotFoundException", none_message)
    exc = await error(node.client, "delete_function_event_invoke_config", FunctionName=name)
    assert code(exc) == (404, "ResourceNotFoundException", none_message)
    listed = await call(node.client, "list_function_event_invoke_configs", FunctionName=name)
    assert body(listed) == {"FunctionEventInvokeConfigs": []}

    put1 = await call(
        node.client,
        "put_function_event_invoke_config",
        FunctionName=name,
        MaximumRetryAttempts=1,
        MaximumEventAgeInSeconds=120,
    )
    assert status(put1) == 200
    assert isinstance(put1["LastModified"], datetime)
    assert body(put1) == {
        "LastModified": put1["LastModified"],
        "FunctionArn": arn_latest,
        "MaximumRetryAttempts": 1,
        "MaximumEventAgeInSeconds": 120,
        "DestinationConfig": {"OnSuccess": {}, "OnFailure": {}},
    }
    assert body(
        await call(node.client, "get_function_event_invoke_config", FunctionName=name)
    ) == body(put1)

    # Put replaces: what it leaves out is gone
    put2 = await call(
        node.client,
        "put_function_event_invoke_config",
        FunctionName=f"{FN_ARN}:{name}",
        Qualifier="$LATEST",
        MaximumEventAgeInSeconds=300,
    )
    assert body(put2) == {
        "LastModified": put2["LastModified"],
        "FunctionArn": arn_latest,
        "MaximumEventAgeInSeconds": 300,
        "DestinationConfig": {"OnSuccess": {}, "OnFailure": {}},
    }

    # Update merges
    upd = await call(
        node.client,
        "update_function_event_invoke_config",
        FunctionName=name,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": dest_arn}},
    )
    assert body(upd) == {
        "LastModified": upd["LastModified"],
        "FunctionArn": arn_latest,
        "MaximumRetryAttempts": 0,
        "MaximumEventAgeInSeconds": 300,
        "DestinationConfig": {"OnSuccess": {}, "OnFailure": {"Destination": dest_arn}},
    }
    got = await call(
        node.client, "get_function_event_invoke_config", FunctionName=f"{name}:$LATEST"
    )
    assert body(got) == body(upd)
    listed = await call(node.client, "list_function_event_invoke_configs", FunctionName=name)
    assert [body(c) for c in listed["FunctionEventInvokeConfigs"]] == [body(upd)]
    assert "NextMarker" not in listed
    # the other function's is its own
    exc = await error(node.client, "get_function_event_invoke_config", FunctionName=other)
    assert code(exc)[:2] == (404, "ResourceNotFoundException")

    # ranges and other refusals leave the config as it was
    for kwargs, message in (
        ({"MaximumRetryAttempts": 3}, "MaximumRetryAttempts: must be between 0 and 2 (got 3)"),
        (
            {"MaximumEventAgeInSeconds": 59},
            "MaximumEventAgeInSeconds: must be between 60 and 21600 (got 59)",
        ),
        (
            {"MaximumEventAgeInSeconds": 21601},
            "MaximumEventAgeInSeconds: must be between 60 and 21600 (got 21601)",
        ),
        (
            {"DestinationConfig": {"OnSuccess": {"Destination": "not-an-arn"}}},
            "DestinationConfig.OnSuccess.Destination: not an ARN",
        ),
    ):
        for operation in (
            "put_function_event_invoke_config",
            "update_function_event_invoke_config",
        ):
            exc = await error(node.raw, operation, FunctionName=name, **kwargs)
            got_status, got_code, got_message = code(exc)
            assert (got_status, got_code) == (400, "InvalidParameterValueException"), got_message
            assert got_message.startswith(message), got_message
    got = await call(node.client, "get_function_event_invoke_config", FunctionName=name)
    assert body(got) == body(upd)

    # a qualifier other than $LATEST, an unknown function
    exc = await error(
        node.client, "get_function_event_invoke_config", FunctionName=name, Qualifier="live"
    )
    assert code(exc) == (
        404,
        "ResourceNotFoundException",
        f"Function not found: {FN_ARN}:{name}:live",
    )
    exc = await error(
        node.client,
        "put_function_event_invoke_config",
        FunctionName="cp-nope",
        MaximumRetryAttempts=1,
    )
    assert code(exc) == (404, "ResourceNotFoundException", f"Function not found: {FN_ARN}:cp-nope")

    # Delete is 204, and then there is none
    deleted = await call(node.client, "delete_function_event_invoke_config", FunctionName=name)
    assert status(deleted) == 204
    exc = await error(node.client, "get_function_event_invoke_config", FunctionName=name)
    assert code(exc) == (404, "ResourceNotFoundException", none_message)
    listed = await call(node.client, "list_function_event_invoke_configs", FunctionName=name)
    assert listed["FunctionEventInvokeConfigs"] == []
    exc = await error(
        node.raw, "list_function_event_invoke_configs", FunctionName=name, MaxItems=51
    )
    assert code(exc)[:2] == (400, "InvalidParameterValueException")


async def test_event_invoke_config_takes_effect_on_async_invokes(
    world: ControlWorld, aws: AwsClients
) -> None:
    name = unique("cp-async")
    recorder.BEHAVIOUR[name] = failing
    node = await world.start({name: fn()})
    dest_arn, dest_url = await create_queue(aws, unique("cp-async-failure"))
    await call(
        node.client,
        "put_function_event_invoke_config",
        FunctionName=name,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": dest_arn}},
    )
    resp = await call(
        node.client, "invoke", FunctionName=name, InvocationType="Event", Payload=b'{"n": 7}'
    )
    assert resp["StatusCode"] == 202
    received: list[str] = []

    async def delivered() -> bool:
        received.extend(await receive_all(aws, dest_url))
        return bool(received)

    await eventually(delivered, timeout=20, what="the on-failure record")
    record = json.loads(received[0])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestContext"]["functionArn"] == f"{FN_ARN}:{name}:$LATEST"
    assert record["requestPayload"] == {"n": 7}
    assert record["responsePayload"]["errorMessage"] == "boom"
    assert recorder.EVENTS[name] == [{"n": 7}]  # one attempt, no retries
    assert len(received) == 1


# -- functions ---------------------------------------------------------------------------------------


async def test_get_function_and_configuration(world: ControlWorld) -> None:
    name = unique("cp-fn")
    node = await world.start(
        {
            name: fn(
                Timeout=7,
                MemorySize=256,
                Description="orders",
                Environment={"Variables": {"A": "1"}},
            )
        }
    )
    config = await call(node.client, "get_function_configuration", FunctionName=name)
    assert status(config) == 200
    expected = {
        "FunctionName": name,
        "FunctionArn": f"{FN_ARN}:{name}",
        "Handler": "tests.fixtures.recorder.handle",
        "Timeout": 7,
        "MemorySize": 256,
        "Description": "orders",
        "Version": "$LATEST",
        "Environment": {"Variables": {"A": "1"}},
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
    }
    assert {k: config[k] for k in expected} == expected
    assert config["Runtime"].startswith("python3.")
    assert config["Role"] == f"arn:aws:iam::{ACCOUNT}:role/esm-{name}"

    for kwargs in (
        {"FunctionName": name},
        {"FunctionName": f"{FN_ARN}:{name}"},
        {"FunctionName": name, "Qualifier": "$LATEST"},
        {"FunctionName": f"{name}:$LATEST"},
    ):
        got = await call(node.client, "get_function", **kwargs)
        assert body(got["Configuration"]) == body(config), kwargs
        assert got["Code"]["Location"] == TARGET
        assert "Concurrency" not in got
        got = await call(node.client, "get_function_configuration", **kwargs)
        assert body(got) == body(config)

    for operation in ("get_function", "get_function_configuration"):
        exc = await error(node.client, operation, FunctionName="cp-nope")
        assert code(exc) == (
            404,
            "ResourceNotFoundException",
            f"Function not found: {FN_ARN}:cp-nope",
        )
        exc = await error(node.client, operation, FunctionName=name, Qualifier="1")
        assert code(exc) == (
            404,
            "ResourceNotFoundException",
            f"Function not found: {FN_ARN}:{name}:1",
        )
        exc = await error(node.client, operation, FunctionName=f"{name}:$LATEST", Qualifier="live")
        assert code(exc) == (
            400,
            "InvalidParameterValueException",
            "The derived qualifier from the function name does not match the specified qualifier.",
        )


async def test_list_functions_pages(world: ControlWorld) -> None:
    names = sorted(unique(f"cp-lf{i}") for i in range(3))
    node = await world.start({n: fn() for n in names})
    everything = await call(node.client, "list_functions")
    assert [f["FunctionName"] for f in everything["Functions"]] == names
    assert "NextMarker" not in everything
    seen: list[str] = []
    marker: str | None = None
    for _ in range(5):
        kwargs: dict[str, Any] = {"MaxItems": 1}
        if marker:
            kwargs["Marker"] = marker
        page = await call(node.client, "list_functions", **kwargs)
        seen += [f["FunctionName"] for f in page["Functions"]]
        assert body(page["Functions"][0]) == body(everything["Functions"][len(seen) - 1])
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == names
    paginator = node.client.get_paginator("list_functions")
    pages = await asyncio.to_thread(
        lambda: list(paginator.paginate(PaginationConfig={"PageSize": 2}))
    )
    assert [len(p["Functions"]) for p in pages] == [2, 1]
    exc = await error(node.raw, "list_functions", MaxItems=0)
    assert code(exc) == (
        400,
        "InvalidParameterValueException",
        "MaxItems must be between 1 and 10000: 0",
    )


# -- reserved concurrency ------------------------------------------------------------------------------


async def test_function_concurrency(world: ControlWorld) -> None:
    name = unique("cp-conc")
    node = await world.start({name: fn()})
    assert body(await call(node.client, "get_function_concurrency", FunctionName=name)) == {}
    resp = await call(node.client, "invoke", FunctionName=name, Payload=b"{}")
    assert resp["StatusCode"] == 200

    put0 = await call(
        node.client, "put_function_concurrency", FunctionName=name, ReservedConcurrentExecutions=0
    )
    assert status(put0) == 200
    assert body(put0) == {"ReservedConcurrentExecutions": 0}
    got = await call(node.client, "get_function_concurrency", FunctionName=name)
    assert body(got) == {"ReservedConcurrentExecutions": 0}
    function = await call(node.client, "get_function", FunctionName=name)
    assert function["Concurrency"] == {"ReservedConcurrentExecutions": 0}

    exc = await error(node.client, "invoke", FunctionName=name, Payload=b"{}")
    assert code(exc) == (429, "TooManyRequestsException", "Rate Exceeded.")
    assert exc.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"

    deleted = await call(node.client, "delete_function_concurrency", FunctionName=name)
    assert status(deleted) == 204
    assert body(await call(node.client, "get_function_concurrency", FunctionName=name)) == {}
    assert "Concurrency" not in await call(node.client, "get_function", FunctionName=name)
    resp = await call(node.client, "invoke", FunctionName=name, Payload=b"{}")
    assert resp["StatusCode"] == 200

    put5 = await call(
        node.client,
        "put_function_concurrency",
        FunctionName=f"{FN_ARN}:{name}",
        ReservedConcurrentExecutions=5,
    )
    assert body(put5) == {"ReservedConcurrentExecutions": 5}

    exc = await error(
        node.raw, "put_function_concurrency", FunctionName=name, ReservedConcurrentExecutions=-1
    )
    assert code(exc) == (
        400,
        "InvalidParameterValueException",
        "ReservedConcurrentExecutions: must be an integer of at least 0",
    )
    for operation, extra in (
        ("put_function_concurrency", {"ReservedConcurrentExecutions": 1}),
        ("get_function_concurrency", {}),
        ("delete_function_concurrency", {}),
    ):
        exc = await error(node.client, operation, FunctionName="cp-nope", **extra)
        assert code(exc) == (
            404,
            "ResourceNotFoundException",
            f"Function not found: {FN_ARN}:cp-nope",
        )
    assert body(await call(node.client, "get_function_concurrency", FunctionName=name)) == {
        "ReservedConcurrentExecutions": 5
    }


# -- /metrics and /health --------------------------------------------------------------------------


async def test_metrics_and_health(world: ControlWorld) -> None:
    name = unique("cp-metrics")
    node = await world.start({name: fn()})
    await call(node.client, "invoke", FunctionName=name, Payload=b"{}")
    await call(node.client, "invoke", FunctionName=name, Payload=b"{}")
    http_status, headers, text = await node.http("GET", "/metrics")
    assert http_status == 200
    assert headers["Content-Type"].startswith("text/plain")
    lines = text.splitlines()
    assert "# TYPE esm_Invocations_total counter" in lines
    assert f'esm_Invocations_total{{function_name="{name}"}} 2.0' in lines

    http_status, _, doc = await node.http("GET", "/health")
    assert http_status == 200
    assert doc == {
        "status": "ok",
        "reasons": [],
        "store": "ok",
        "mappings": {"enabled": 0, "running": 0, "states": {}},
        "async_worker": "running",
    }


# -- the AWS CLI -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def aws_cli() -> tuple[list[str], int]:
    return find_aws_cli()


async def test_aws_cli_drives_the_control_plane(
    world: ControlWorld, queues: Queues, aws_cli: tuple[list[str], int], tmp_path: Path
) -> None:
    name = unique("cp-cli")
    node = await world.start({name: fn()})
    arn, url = await queues.create(name)
    cli = Cli(*aws_cli, node.url, tmp_path)

    created, put_eic, function, functions, concurrency, missing, invalid = await asyncio.gather(
        cli.ok(
            "create-event-source-mapping",
            "--function-name", name,
            "--event-source-arn", arn,
            "--batch-size", "4",
        ),
        cli.ok(
            "put-function-event-invoke-config",
            "--function-name", name,
            "--maximum-retry-attempts", "1",
        ),
        cli.ok("get-function", "--function-name", name),
        cli.ok("list-functions"),
        cli.ok(
            "put-function-concurrency",
            "--function-name", name,
            "--reserved-concurrent-executions", "3",
        ),
        cli("get-event-source-mapping", "--uuid", "00000000-0000-0000-0000-000000000000"),
        cli(
            "put-function-event-invoke-config",
            "--function-name", name,
            "--maximum-retry-attempts", "3",
        ),
    )  # fmt: skip
    uuid = created["UUID"]
    assert created["State"] == "Creating"
    assert (created["BatchSize"], created["FunctionArn"]) == (4, f"{FN_ARN}:{name}")
    assert isinstance(created["LastModified"], (int, float))  # the CLI prints the number
    assert put_eic["FunctionArn"] == f"{FN_ARN}:{name}:$LATEST"
    assert put_eic["MaximumRetryAttempts"] == 1
    assert function["Configuration"]["FunctionName"] == name
    assert [f["FunctionName"] for f in functions["Functions"]] == [name]
    assert concurrency == {"ReservedConcurrentExecutions": 3}

    rc, out, err = missing
    assert (rc, out) == (cli.error_exit, None)
    assert (
        "An error occurred (ResourceNotFoundException) when calling the GetEventSourceMapping "
        "operation"
    ) in err
    assert err.rstrip().endswith(f": {NOT_FOUND}")
    rc, out, err = invalid
    assert (rc, out) == (cli.error_exit, None)
    assert (
        "An error occurred (InvalidParameterValueException) when calling the "
        "PutFunctionEventInvokeConfig operation"
    ) in err
    assert err.rstrip().endswith(": MaximumRetryAttempts: must be between 0 and 2 (got 3)")

    await wait_state(node, uuid, "Enabled")
    got, listed, eic = await asyncio.gather(
        cli.ok("get-event-source-mapping", "--uuid", uuid),
        cli.ok("list-event-source-mappings", "--function-name", name),
        cli.ok("get-function-event-invoke-config", "--function-name", name),
    )
    assert got["State"] == "Enabled" and got["UUID"] == uuid
    assert [m["UUID"] for m in listed["EventSourceMappings"]] == [uuid]
    assert eic["MaximumRetryAttempts"] == 1

    updated, (rc, out, err) = await asyncio.gather(
        cli.ok("update-event-source-mapping", "--uuid", uuid, "--no-enabled"),
        cli("delete-function-event-invoke-config", "--function-name", name),
    )
    assert (updated["State"], updated["BatchSize"]) == ("Disabling", 4)
    assert (rc, out) == (0, None), err
    await wait_state(node, uuid, "Disabled")
    exc = await error(node.client, "get_function_event_invoke_config", FunctionName=name)
    assert code(exc)[:2] == (404, "ResourceNotFoundException")

    deleted = await cli.ok("delete-event-source-mapping", "--uuid", uuid)
    assert deleted["State"] == "Deleting"

    async def gone() -> bool:
        return not (await call(node.client, "list_event_source_mappings"))["EventSourceMappings"]

    await eventually(gone, what="the mapping deleted")
    assert await queues.total(url) == 0


async def test_a_daemon_that_does_not_serve_the_function(
    world: ControlWorld, queues: Queues
) -> None:
    """Daemons sharing a registry may serve different functions: each shows every mapping, runs
    only its own functions' ones, and refuses to change a mapping to what it cannot check."""
    f, g = unique("cp-only-a"), unique("cp-only-b")
    a = await world.start({f: fn()})
    b = await world.start({g: fn()})
    arn, _ = await queues.create(f)
    uuid = await create_sqs_mapping(a, f, arn)
    got = await get_mapping(b, uuid)
    assert (got["FunctionArn"], got["State"]) == (f"{FN_ARN}:{f}", "Enabled")
    assert uuid not in b.engine.mappings
    exc = await error(b.client, "update_event_source_mapping", UUID=uuid, BatchSize=3)
    assert code(exc) == (404, "ResourceNotFoundException", f"Function not found: {FN_ARN}:{f}")
    exc = await error(b.client, "create_event_source_mapping", FunctionName=f, EventSourceArn=arn)
    assert code(exc) == (404, "ResourceNotFoundException", f"Function not found: {FN_ARN}:{f}")
    # deleting through b: a, which runs it, stops it and removes it
    deleted = await call(b.client, "delete_event_source_mapping", UUID=uuid)
    assert deleted["State"] == "Deleting"

    async def gone() -> bool:
        return not (await call(b.client, "list_event_source_mappings"))["EventSourceMappings"]

    await eventually(gone, what="the mapping deleted by a")
    assert uuid not in a.engine.mappings
