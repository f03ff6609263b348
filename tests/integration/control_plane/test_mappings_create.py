"""CreateEventSourceMapping: what a new mapping shows and runs, and every refusal."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from esm.aws import AwsClients
from tests.control_support import (
    ESM_ARN,
    ESM_PATH,
    FN_ARN,
    UUID_RE,
    ControlWorld,
    bodies,
    body,
    call,
    code,
    create_sqs_mapping,
    create_table,
    error,
    fn,
    get_mapping,
    status,
    wait_state,
)
from tests.streams_support import create_queue, create_stream
from tests.support import ACCOUNT, REGION, Queues, eventually, unique

pytestmark = pytest.mark.integration


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
        "State": "Creating",  # no LastProcessingResult in AWS's create answer for SQS
        "StateTransitionReason": "USER_INITIATED",
        "FunctionResponseTypes": [],
        "EventSourceMappingArn": f"{ESM_ARN}:{uuid}",
    }
    got = await wait_state(node, uuid, "Enabled")
    assert body(got) == {
        **body(resp),
        "LastProcessingResult": "No records processed",
        "State": "Enabled",
    }

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
        "StateTransitionReason": "User action",
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
        "StateTransitionReason": "User action",
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
        "Unsupported DestinationConfig parameter for given event source mapping type.",
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
        400,
        "InvalidParameterValueException",
        "Function does not exist",
        id="unknown-function",
    ),
    pytest.param(
        {"FunctionName": "{fn}:live"},
        400,
        "InvalidParameterValueException",
        "Function does not exist",
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
        "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater "
        "than 10",
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
        "StartingPosition is not valid for SQS event sources.",
        id="starting-position-on-sqs",
    ),
    pytest.param(
        {"EventSourceArn": STREAM_ARN},
        400,
        "InvalidParameterValueException",
        "1 validation error detected: Value null at 'startingPosition' failed to satisfy "
        "constraint: Member must not be null.",
        id="kinesis-without-starting-position",
    ),
    pytest.param(
        {"EventSourceArn": TABLE_STREAM_ARN, "StartingPosition": "AT_TIMESTAMP"},
        400,
        "InvalidParameterValueException",
        f"Unsupported starting position for arn type: {TABLE_STREAM_ARN}",
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
        "Invalid filter pattern definition.",
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
        "Unrecognized event source.",
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
        f"Stream not found: arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/cp-no-such-stream",
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
        assert message == (  # AWS's words for SQS
            f'An event source mapping with SQS arn (" {arn} ") and function (" {name} ") '
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
    assert doc == {"Type": "User", "message": "Unrecognized event source."}
    for data in (b"{oops", b"[1, 2]", b"[" * 5000 + b"]" * 5000):
        http_status, headers, doc = await node.http("POST", ESM_PATH, data=data)
        assert (http_status, headers["x-amzn-ErrorType"]) == (400, "InvalidRequestContentException")
        assert doc["message"].startswith("Could not parse request body into json: ")
    assert (await call(node.client, "list_event_source_mappings"))["EventSourceMappings"] == []
