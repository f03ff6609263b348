"""The control plane's rules without HTTP: paging tokens, MaxItems, the JSON shapes, which
fields Update keeps, removes or refuses, Put-replaces / Update-merges for invoke configs, and
reserved concurrency, on an engine with a ``memory://`` store, in-memory sources and a virtual
clock."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from esm.clock import VirtualClock, settle
from esm.config import parse_config
from esm.connectors.memory import MemoryBroker
from esm.control import UNRESERVED, ControlPlane, _max_items, _no_on_failure, _page
from esm.engine import Engine
from esm.errors import (
    InvalidParameterValueException,
    LambdaApiError,
    ResourceConflictException,
    ResourceInUseException,
    ResourceNotFoundException,
    ValidationException,
)
from esm.registry import MappingRecord
from tests.support import unique

REGION, ACCOUNT = "us-east-1", "123456789012"
FN_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
SQS = f"arn:aws:sqs:{REGION}:{ACCOUNT}:"
KINESIS = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/"
DDB = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t/stream/2024-01-01T00:00:00.000"
TARGET = "python:tests.fixtures.recorder.handle_async"
T0 = 1_700_000_000.0


# -- pure helpers ----------------------------------------------------------------------------------


def token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


ITEMS = [{"K": k} for k in "abcde"]


@pytest.mark.parametrize(
    ("marker", "size", "keys", "next_key"),
    [
        (None, 2, "ab", "b"),
        (token("b"), 2, "cd", "d"),
        (token("d"), 2, "e", None),
        (None, 5, "abcde", None),
        (None, 100, "abcde", None),
        (token("e"), 2, "", None),
        (token("gone"), 2, "", None),  # the marker's item was deleted meanwhile
        ("", 1, "a", "a"),
    ],
)
def test_page(marker: str | None, size: int, keys: str, next_key: str | None) -> None:
    page, next_marker = _page(ITEMS, marker, size, "K")
    assert "".join(i["K"] for i in page) == keys
    assert next_marker == (token(next_key) if next_key else "")


def test_page_markers_are_opaque_and_walk_everything_once() -> None:
    items = [{"UUID": f"{n:04d}-id"} for n in range(7)]
    seen: list[str] = []
    marker: str | None = None
    while True:
        page, marker = _page(items, marker, 3, "UUID")
        seen += [i["UUID"] for i in page]
        if not marker:
            break
        assert "-id" not in marker
    assert seen == [i["UUID"] for i in items]


@pytest.mark.parametrize(
    "marker", ["%%%", "not base64!", base64.urlsafe_b64encode(b"\xff").decode()]
)
def test_page_refuses_a_bad_marker(marker: str) -> None:
    with pytest.raises(InvalidParameterValueException, match="Invalid Marker"):
        _page(ITEMS, marker, 2, "K")


@pytest.mark.parametrize(
    ("value", "hi", "expected"),
    [(None, 10000, 100), ("1", 10000, 1), ("10000", 10000, 10000), ("50", 50, 50)],
)
def test_max_items(value: str | None, hi: int, expected: int) -> None:
    assert _max_items(value, 100, hi) == expected


@pytest.mark.parametrize(
    ("value", "hi", "message"),
    [
        ("0", 10000, "MaxItems must be between 1 and 10000: 0"),
        ("10001", 10000, "MaxItems must be between 1 and 10000: 10001"),
        ("51", 50, "MaxItems must be between 1 and 50: 51"),
        ("-1", 50, "MaxItems must be between 1 and 50: -1"),
        ("ten", 50, "MaxItems must be a number: ten"),
    ],
)
def test_max_items_refused(value: str, hi: int, message: str) -> None:
    with pytest.raises(InvalidParameterValueException) as info:
        _max_items(value, 100, hi)
    assert info.value.message == message


@pytest.mark.parametrize(
    ("value", "removes"),
    [
        ({}, True),
        ({"OnFailure": {}}, True),
        ({"OnFailure": {"Destination": ""}}, True),
        ({"OnFailure": None}, True),
        ({"OnFailure": {"Destination": SQS + "dlq"}}, False),
        ({"OnSuccess": {"Destination": SQS + "ok"}}, False),  # left to validation (refused)
        ("", False),
        ({"OnFailure": "x"}, False),
    ],
)
def test_which_update_destination_config_removes_the_destination(value: Any, removes: bool) -> None:
    assert _no_on_failure(value) is removes


# -- an engine on memory ---------------------------------------------------------------------------


class Plane:
    """An engine (not polling on its own: the clock only moves when told) and its control plane."""

    def __init__(self, engine: Engine, broker: MemoryBroker, clock: VirtualClock) -> None:
        self.engine = engine
        self.broker = broker
        self.clock = clock

    @property
    def control(self) -> ControlPlane:
        return self.engine.control

    async def reconciled(self) -> None:
        """What the registry watcher does after a change: apply it."""
        await self.engine.sync()
        await settle()

    async def create(self, **params: Any) -> dict[str, Any]:
        return await self.control.create_mapping(params)

    async def created(self, **params: Any) -> dict[str, Any]:
        """Create, then reconcile: the mapping as Get shows it afterwards."""
        out = await self.create(**params)
        await self.reconciled()
        return await self.control.get_mapping(out["UUID"])


FUNCTIONS: dict[str, Any] = {
    "f": {"Target": TARGET},
    "g": {"Target": TARGET, "Timeout": 60},
    "cfg": {
        "Target": TARGET,
        "ReservedConcurrentExecutions": 7,
        "EventInvokeConfig": {"MaximumRetryAttempts": 1},
    },
    "img": {"Target": "rie://127.0.0.1:9"},
    "declared": {
        "Target": TARGET,
        "Runtime": "python3.9",
        "LoggingConfig": {
            "LogFormat": "JSON",
            "LogGroup": "/orders/declared",
            "ApplicationLogLevel": "DEBUG",
        },
    },
    "web": {
        "Target": "http://127.0.0.1:9/invoke",
        "Role": "arn:aws:iam::123456789012:role/web",
        "Description": "over http",
        "MemorySize": 512,
        "Environment": {"Variables": {"A": "1"}},
        "DeadLetterConfig": {"TargetArn": SQS + "web-dlq"},
    },
}


@pytest.fixture
async def plane() -> AsyncIterator[Plane]:
    clock = VirtualClock(T0)
    broker = MemoryBroker(clock)
    for name in ("q1", "q2", "vis10"):
        broker.create_queue(SQS + name, visibility_timeout_s=10 if name == "vis10" else 30)
    broker.create_queue(SQS + "fifo.fifo")
    broker.create_stream(KINESIS + "s1")
    broker.create_stream(DDB)
    config = parse_config(
        {
            "Settings": {
                "Region": REGION,
                "AccountId": ACCOUNT,
                "Store": f"memory://{unique('control')}",
            },
            "Functions": FUNCTIONS,
        }
    )
    engine = Engine(config, clock=clock, sources=broker)
    await engine.start()
    yield Plane(engine, broker, clock)
    await engine.aclose(deadline_s=0)


async def refused(aw: Any, kind: type[LambdaApiError], message: str = "") -> LambdaApiError:
    with pytest.raises(kind) as info:
        await aw
    assert info.value.message.startswith(message), info.value.message
    return info.value


# -- functions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "qualifier"),
    [
        ("f", None),
        ("f:$LATEST", None),
        ("f", "$LATEST"),
        (f"{FN_ARN}:f", None),
        (f"{FN_ARN}:f:$LATEST", "$LATEST"),
        (f"{ACCOUNT}:function:f", None),
        (f"{REGION}:{ACCOUNT}:function:f", None),
    ],
)
async def test_function_name_forms(plane: Plane, name: str, qualifier: str | None) -> None:
    assert plane.control.function_name(name, qualifier) == "f"


@pytest.mark.parametrize(
    ("name", "qualifier", "kind", "message"),
    [
        ("nope", None, ResourceNotFoundException, f"Function not found: {FN_ARN}:nope"),
        ("f:live", None, ResourceNotFoundException, f"Function not found: {FN_ARN}:f:live"),
        ("f", "1", ResourceNotFoundException, f"Function not found: {FN_ARN}:f:1"),
        (
            "f:$LATEST",
            "1",
            InvalidParameterValueException,
            "The derived qualifier from the function name does not match",
        ),
        ("a b", None, InvalidParameterValueException, "'a b' is not a function name"),
        ("arn:aws:lambda:f", None, InvalidParameterValueException, ""),
    ],
)
def test_function_name_refused(
    plane: Plane, name: str, qualifier: str | None, kind: type[LambdaApiError], message: str
) -> None:
    with pytest.raises(kind) as info:
        plane.control.function_name(name, qualifier)
    assert info.value.message.startswith(message)


def test_function_configuration_shapes(plane: Plane) -> None:
    f = plane.control.function_configuration("f", {})
    assert f["FunctionArn"] == f"{FN_ARN}:f"
    assert f["Runtime"].startswith("python3.")  # declared nowhere: the Python it runs in
    assert f["Handler"] == "tests.fixtures.recorder.handle_async"
    assert (f["Timeout"], f["MemorySize"], f["Version"], f["PackageType"]) == (
        3,
        128,
        "$LATEST",
        "Zip",
    )
    assert f["Role"] == f"arn:aws:iam::{ACCOUNT}:role/esm-f"
    assert f["LastModified"].endswith("+0000") and "T" in f["LastModified"]
    assert "Environment" not in f and "DeadLetterConfig" not in f
    # the keys AWS always returns, with the values a function without them has on AWS
    assert {k: f[k] for k in ALWAYS} == {
        "TracingConfig": {"Mode": "PassThrough"},
        "EphemeralStorage": {"Size": 512},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": "/aws/lambda/f"},
        "Architectures": ["x86_64"],
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "CodeSize": 0,
    }
    assert uuid.UUID(f["RevisionId"]).version == 5

    web = plane.control.function_configuration("web", {})
    assert "Runtime" not in web and "Handler" not in web
    assert web["Role"] == "arn:aws:iam::123456789012:role/web"
    assert (web["Description"], web["MemorySize"]) == ("over http", 512)
    assert web["Environment"] == {"Variables": {"A": "1"}}
    assert web["DeadLetterConfig"] == {"TargetArn": SQS + "web-dlq"}
    assert plane.control.function_configuration("img", {})["PackageType"] == "Image"
    declared = plane.control.function_configuration("declared", {})
    assert declared["Runtime"] == "python3.9"  # as declared, whatever Python runs it
    assert declared["LoggingConfig"] == {
        "LogFormat": "JSON",
        "LogGroup": "/orders/declared",
        "ApplicationLogLevel": "DEBUG",
    }


ALWAYS = (
    "TracingConfig",
    "EphemeralStorage",
    "SnapStart",
    "LoggingConfig",
    "Architectures",
    "State",
    "LastUpdateStatus",
    "CodeSize",
)


def test_revision_id_follows_the_configuration_and_the_tags(plane: Plane) -> None:
    """Same configuration and tags, same RevisionId (every daemon, every restart); a change of
    either, another one."""
    control = plane.control
    f = control.function_configuration("f", {})
    assert control.function_configuration("f", {})["RevisionId"] == f["RevisionId"]
    tagged = control.function_configuration("f", {"team": "a"})["RevisionId"]
    assert tagged != f["RevisionId"]
    assert control.function_configuration("f", {"team": "b"})["RevisionId"] != tagged
    assert control.function_configuration("g", {})["RevisionId"] != f["RevisionId"]


async def test_list_functions_pages_in_name_order(plane: Plane) -> None:
    names = sorted(FUNCTIONS)
    seen: list[str] = []
    marker = None
    while True:
        out = await plane.control.list_functions(marker, "2")
        seen += [f["FunctionName"] for f in out["Functions"]]
        marker = out.get("NextMarker")
        if marker is None:
            break
    assert seen == names
    assert "NextMarker" not in await plane.control.list_functions(None, None)


async def test_get_function(plane: Plane) -> None:
    out = await plane.control.get_function("cfg", "$LATEST")
    assert out["Configuration"]["FunctionName"] == "cfg"
    assert out["Code"] == {"RepositoryType": "esm", "Location": TARGET}
    assert out["Concurrency"] == {"ReservedConcurrentExecutions": 7}
    assert "Tags" not in out  # as recorded on AWS: none without tags
    assert "Concurrency" not in await plane.control.get_function("f", None)
    await plane.control.tag_resource(f"{FN_ARN}:f", {"Tags": {"team": "orders"}})
    tagged = await plane.control.get_function("f", None)
    assert tagged["Tags"] == {"team": "orders"}
    assert tagged["Configuration"] == await plane.control.get_function_configuration("f", None)


# -- reserved concurrency --------------------------------------------------------------------------


async def test_concurrency_put_get_delete(plane: Plane) -> None:
    c = plane.control
    assert c.get_concurrency("f") == {}
    assert c.get_concurrency("cfg") == {"ReservedConcurrentExecutions": 7}  # the config file's
    assert await c.put_concurrency("f", {"ReservedConcurrentExecutions": 0}) == {
        "ReservedConcurrentExecutions": 0
    }
    assert plane.engine.functions["f"].reserved == 0
    assert c.get_concurrency(f"{FN_ARN}:f") == {"ReservedConcurrentExecutions": 0}
    await c.delete_concurrency("f")
    assert c.get_concurrency("f") == {}
    # Delete also removes the config file's value, and says so in the registry
    await c.delete_concurrency("cfg")
    assert c.get_concurrency("cfg") == {}
    assert (await plane.engine.registry.concurrency())["cfg"] == UNRESERVED


@pytest.mark.parametrize("value", [-1, 1.5, "3", True, None])
async def test_concurrency_refused(plane: Plane, value: Any) -> None:
    await refused(
        plane.control.put_concurrency("f", {"ReservedConcurrentExecutions": value}),
        InvalidParameterValueException,
        "ReservedConcurrentExecutions: must be an integer of at least 0",
    )
    assert plane.control.get_concurrency("f") == {}


# -- event invoke configs --------------------------------------------------------------------------


EMPTY_DESTINATIONS = {"OnSuccess": {}, "OnFailure": {}}


async def test_invoke_config_put_replaces_and_update_merges(plane: Plane) -> None:
    c = plane.control
    none = f"The function {FN_ARN}:f:$LATEST doesn't have an EventInvokeConfig"
    with pytest.raises(ResourceNotFoundException) as info:
        c.get_invoke_config("f", None)
    assert info.value.message == none
    await refused(
        c.put_invoke_config("f", None, {"MaximumRetryAttempts": 1}, merge=True),
        ResourceNotFoundException,
        none,
    )
    await refused(c.delete_invoke_config("f", None), ResourceNotFoundException, none)
    assert c.list_invoke_configs("f", None, None) == {"FunctionEventInvokeConfigs": []}

    put = await c.put_invoke_config(
        "f", None, {"MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 100}, merge=False
    )
    assert put == {
        "LastModified": T0,
        "FunctionArn": f"{FN_ARN}:f:$LATEST",
        "MaximumRetryAttempts": 1,
        "MaximumEventAgeInSeconds": 100,
        "DestinationConfig": EMPTY_DESTINATIONS,
    }
    # the engine uses it
    assert plane.engine.invoke_config("f").maximum_retry_attempts == 1

    await plane.clock.advance(5)
    replaced = await c.put_invoke_config(
        "f", "$LATEST", {"MaximumEventAgeInSeconds": 200, "MaximumRetryAttempts": None}, merge=False
    )
    assert replaced == {
        "LastModified": T0 + 5,
        "FunctionArn": f"{FN_ARN}:f:$LATEST",
        "MaximumEventAgeInSeconds": 200,
        "DestinationConfig": EMPTY_DESTINATIONS,
    }
    assert plane.engine.invoke_config("f").maximum_retry_attempts == 2  # the default again

    dest = {"OnFailure": {"Destination": SQS + "q1"}}
    merged = await c.put_invoke_config(
        "f", None, {"MaximumRetryAttempts": 0, "DestinationConfig": dest}, merge=True
    )
    assert merged["MaximumRetryAttempts"] == 0
    assert merged["MaximumEventAgeInSeconds"] == 200
    assert merged["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": dest["OnFailure"]}
    assert c.get_invoke_config("f", None) == merged
    assert c.list_invoke_configs("f", None, "1") == {"FunctionEventInvokeConfigs": [merged]}

    await c.delete_invoke_config("f", None)
    with pytest.raises(ResourceNotFoundException):
        c.get_invoke_config("f", None)
    assert plane.engine.invoke_config("f").maximum_retry_attempts == 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"MaximumRetryAttempts": 3}, "MaximumRetryAttempts: must be between 0 and 2 (got 3)"),
        ({"MaximumRetryAttempts": -1}, "MaximumRetryAttempts: must be between 0 and 2 (got -1)"),
        (
            {"MaximumEventAgeInSeconds": 59},
            "MaximumEventAgeInSeconds: must be between 60 and 21600 (got 59)",
        ),
        ({"Qualifier": "1"}, "Qualifier: unknown parameter"),
        (
            {"DestinationConfig": {"OnSuccess": {"Destination": "arn:aws:s3:::bucket"}}},
            "DestinationConfig.OnSuccess.Destination: an S3 bucket is an on-failure destination",
        ),
        (
            {"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:dynamodb:x:y:table/t"}}},
            "DestinationConfig.OnFailure.Destination: must be an ARN of",
        ),
    ],
)
@pytest.mark.parametrize("merge", [False, True])
async def test_invoke_config_refused(
    plane: Plane, params: dict[str, Any], message: str, merge: bool
) -> None:
    await plane.control.put_invoke_config("f", None, {"MaximumRetryAttempts": 1}, merge=False)
    await refused(
        plane.control.put_invoke_config("f", None, params, merge=merge),
        InvalidParameterValueException,
        message,
    )
    assert plane.control.get_invoke_config("f", None)["MaximumRetryAttempts"] == 1


async def test_invoke_config_from_the_config_file_shows_and_can_be_deleted(plane: Plane) -> None:
    c = plane.control
    got = c.get_invoke_config("cfg", None)
    assert got["MaximumRetryAttempts"] == 1
    assert "MaximumEventAgeInSeconds" not in got  # not set in the file
    assert got["DestinationConfig"] == EMPTY_DESTINATIONS
    merged = await c.put_invoke_config("cfg", None, {"MaximumEventAgeInSeconds": 90}, merge=True)
    assert (merged["MaximumRetryAttempts"], merged["MaximumEventAgeInSeconds"]) == (1, 90)
    await c.delete_invoke_config("cfg", None)
    with pytest.raises(ResourceNotFoundException):
        c.get_invoke_config("cfg", None)
    assert plane.engine.invoke_config("cfg").maximum_retry_attempts == 2


# -- event source mappings: shapes -----------------------------------------------------------------


async def test_sqs_mapping_shape(plane: Plane) -> None:
    out = await plane.create(
        FunctionName="f",
        EventSourceArn=SQS + "q1",
        ScalingConfig={"MaximumConcurrency": 5},
        FilterCriteria={"Filters": []},
        MetricsConfig={"Metrics": ["EventCount"]},
        KMSKeyArn=None,
    )
    uuid = out["UUID"]
    assert out == {
        "UUID": uuid,
        "BatchSize": 10,
        "MaximumBatchingWindowInSeconds": 0,
        "EventSourceArn": SQS + "q1",
        "FunctionArn": f"{FN_ARN}:f",
        "LastModified": T0,
        "State": "Creating",  # no LastProcessingResult in AWS's answer for SQS
        "StateTransitionReason": "USER_INITIATED",
        "FunctionResponseTypes": [],
        "ScalingConfig": {"MaximumConcurrency": 5},
        "MetricsConfig": {"Metrics": ["EventCount"]},
        "EventSourceMappingArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:{uuid}",
    }
    record = await plane.engine.registry.mapping(uuid)
    assert record is not None
    assert record.params["FunctionName"] == "f" and "KMSKeyArn" not in record.params
    await plane.reconciled()
    got = await plane.control.get_mapping(uuid)
    assert (got["State"], got["LastProcessingResult"]) == ("Enabled", "No records processed")
    assert plane.engine.mappings[uuid].state == "Enabled"


@pytest.mark.parametrize(
    ("arn", "position", "function", "function_arn"),
    [
        (KINESIS + "s1", "TRIM_HORIZON", "f", f"{FN_ARN}:f"),
        (KINESIS + "s1", "LATEST", "f:$LATEST", f"{FN_ARN}:f:$LATEST"),
        (DDB, "LATEST", f"{FN_ARN}:f:$LATEST", f"{FN_ARN}:f:$LATEST"),
    ],
)
async def test_stream_mapping_shape_and_defaults(
    plane: Plane, arn: str, position: str, function: str, function_arn: str
) -> None:
    out = await plane.create(FunctionName=function, EventSourceArn=arn, StartingPosition=position)
    assert out == {
        "UUID": out["UUID"],
        "StartingPosition": position,
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 0,
        "ParallelizationFactor": 1,
        "EventSourceArn": arn,
        "FunctionArn": function_arn,
        "LastModified": T0,
        "LastProcessingResult": "No records processed",
        "State": "Creating",
        "StateTransitionReason": "User action",  # streams' word on AWS
        "DestinationConfig": {"OnFailure": {}},
        "MaximumRecordAgeInSeconds": -1,
        "BisectBatchOnFunctionError": False,
        "MaximumRetryAttempts": -1,
        "TumblingWindowInSeconds": 0,
        "FunctionResponseTypes": [],
        "EventSourceMappingArn": out["EventSourceMappingArn"],
    }


async def test_at_timestamp_is_echoed(plane: Plane) -> None:
    out = await plane.create(
        FunctionName="f",
        EventSourceArn=KINESIS + "s1",
        StartingPosition="AT_TIMESTAMP",
        StartingPositionTimestamp=T0 - 60,
    )
    assert (out["StartingPosition"], out["StartingPositionTimestamp"]) == ("AT_TIMESTAMP", T0 - 60)


# -- event source mappings: create -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "kind", "message"),
    [
        (
            {"EventSourceArn": SQS + "q1"},
            ValidationException,
            "1 validation error detected: Value null at 'functionName' failed to satisfy "
            "constraint: Member must not be null.",
        ),
        ({"FunctionName": "f"}, InvalidParameterValueException, "Unrecognized event source."),
        (
            {"FunctionName": "nope", "EventSourceArn": SQS + "q1"},
            InvalidParameterValueException,
            "Function does not exist",
        ),
        (
            {"FunctionName": "g", "EventSourceArn": SQS + "q1"},
            InvalidParameterValueException,
            "Queue visibility timeout: 30 seconds is less than Function timeout: 60 seconds",
        ),
        (
            {"FunctionName": "f", "EventSourceArn": SQS + "missing"},
            InvalidParameterValueException,
            "Error occurred while ReceiveMessage. SQS Error Code: "
            "AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue "
            "does not exist.",
        ),
        (
            {"FunctionName": "f", "EventSourceArn": SQS + "fifo.fifo", "BatchSize": 11},
            InvalidParameterValueException,
            "BatchSize: must be at most 10 for FIFO queues (got 11)",
        ),
        (
            {"FunctionName": "f", "EventSourceArn": SQS + "q1", "TumblingWindowInSeconds": 5},
            InvalidParameterValueException,
            "TumblingWindowInSeconds: not supported for SQS event sources (streams only)",
        ),
        (
            {"FunctionName": "f", "EventSourceArn": KINESIS + "s1"},
            InvalidParameterValueException,
            "1 validation error detected: Value null at 'startingPosition' failed to satisfy "
            "constraint: Member must not be null.",
        ),
        (
            {
                "FunctionName": "f",
                "EventSourceArn": KINESIS + "s1",
                "StartingPosition": "LATEST",
                "MaximumRecordAgeInSeconds": 30,
            },
            InvalidParameterValueException,
            "MaximumRecordAgeInSeconds: must be -1 or between 60 and 604800 (got 30)",
        ),
        (
            {"FunctionName": "f", "EventSourceArn": SQS + "q1", "Bogus": 1},
            InvalidParameterValueException,
            "Bogus: unknown property",
        ),
    ],
)
async def test_create_refused(
    plane: Plane, params: dict[str, Any], kind: type[LambdaApiError], message: str
) -> None:
    await refused(plane.create(**params), kind, message)
    assert await plane.engine.registry.mappings() == {}


async def test_create_disabled_mapping_on_a_missing_queue_is_not_checked(plane: Plane) -> None:
    """esm runs Lambda's checks against the source when the mapping is to poll: a disabled
    mapping is created; enabling it is refused while the queue is missing."""
    out = await plane.created(FunctionName="f", EventSourceArn=SQS + "missing", Enabled=False)
    assert out["State"] == "Disabled"
    await refused(
        plane.control.update_mapping(out["UUID"], {"Enabled": True}),
        InvalidParameterValueException,
        "Error occurred while ReceiveMessage. SQS Error Code: ",
    )
    assert (await plane.control.get_mapping(out["UUID"]))["State"] == "Disabled"


async def test_create_refuses_a_duplicate_in_any_name_form(plane: Plane) -> None:
    first = await plane.create(FunctionName="f", EventSourceArn=SQS + "q1")
    for form in ("f:$LATEST", f"{FN_ARN}:f"):
        error = await refused(
            plane.create(FunctionName=form, EventSourceArn=SQS + "q1"), ResourceConflictException
        )
        assert error.status == 409
        assert error.message.endswith(f"with UUID {first['UUID']}")
    await plane.create(FunctionName="f", EventSourceArn=SQS + "q2")  # another source is fine


# -- event source mappings: update -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("enabled_before", "update", "state", "final"),
    [
        (True, {"BatchSize": 5}, "Updating", "Enabled"),
        (True, {"Enabled": True}, "Updating", "Enabled"),
        (True, {"Enabled": False}, "Disabling", "Disabled"),
        (False, {"Enabled": True}, "Enabling", "Enabled"),
        (False, {"BatchSize": 5}, "Updating", "Disabled"),
        (False, {"Enabled": False}, "Updating", "Disabled"),
    ],
)
async def test_update_states(
    plane: Plane, enabled_before: bool, update: dict[str, Any], state: str, final: str
) -> None:
    uuid = (
        await plane.created(FunctionName="f", EventSourceArn=SQS + "q1", Enabled=enabled_before)
    )["UUID"]
    out = await plane.control.update_mapping(uuid, update)
    assert out["State"] == state
    await plane.reconciled()
    got = await plane.control.get_mapping(uuid)
    assert got["State"] == final
    assert (plane.engine.mappings[uuid].task is not None) is (final == "Enabled")


async def test_update_keeps_what_it_does_not_name_and_removes_with_empty_values(
    plane: Plane,
) -> None:
    pattern = '{"body": {"a": [1]}}'
    uuid = (
        await plane.created(
            FunctionName="f",
            EventSourceArn=SQS + "q1",
            BatchSize=20,
            MaximumBatchingWindowInSeconds=2,
            FunctionResponseTypes=["ReportBatchItemFailures"],
            FilterCriteria={"Filters": [{"Pattern": pattern}]},
            ScalingConfig={"MaximumConcurrency": 3},
            MetricsConfig={"Metrics": ["EventCount"]},
        )
    )["UUID"]
    await plane.clock.advance(3)
    out = await plane.control.update_mapping(uuid, {"BatchSize": 30, "Enabled": None})
    assert out["LastModified"] == T0 + 3
    assert (out["BatchSize"], out["MaximumBatchingWindowInSeconds"]) == (30, 2)
    assert out["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert out["FilterCriteria"] == {"Filters": [{"Pattern": pattern}]}
    assert out["ScalingConfig"] == {"MaximumConcurrency": 3}
    await plane.reconciled()

    out = await plane.control.update_mapping(
        uuid, {"FilterCriteria": {}, "ScalingConfig": {}, "MetricsConfig": {}}
    )
    for removed in ("FilterCriteria", "ScalingConfig", "MetricsConfig"):
        assert removed not in out
    assert out["BatchSize"] == 30
    await plane.reconciled()
    assert plane.engine.mappings[uuid].config.filter_patterns == []


async def test_update_removes_a_stream_destination_with_an_empty_string(plane: Plane) -> None:
    uuid = (
        await plane.created(
            FunctionName="f",
            EventSourceArn=KINESIS + "s1",
            StartingPosition="TRIM_HORIZON",
            DestinationConfig={"OnFailure": {"Destination": SQS + "q2"}},
            MaximumRetryAttempts=3,
        )
    )["UUID"]
    assert (await plane.control.get_mapping(uuid))["DestinationConfig"] == {
        "OnFailure": {"Destination": SQS + "q2"}
    }
    out = await plane.control.update_mapping(
        uuid, {"DestinationConfig": {"OnFailure": {"Destination": ""}}}
    )
    assert out["DestinationConfig"] == {"OnFailure": {}}
    assert (out["MaximumRetryAttempts"], out["StartingPosition"]) == (3, "TRIM_HORIZON")


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"EventSourceArn": SQS + "q2"}, "EventSourceArn: can only be set when the mapping"),
        ({"StartingPosition": "LATEST"}, "StartingPosition: can only be set when the mapping"),
        ({"StartingPositionTimestamp": T0}, "StartingPositionTimestamp: can only be set"),
        ({"Tags": {"a": "b"}}, "Tags: can only be set when the mapping is created"),
        ({"BatchSize": 0}, "BatchSize: must be between 1 and 10000 (got 0)"),
        ({"ParallelizationFactor": 2}, "ParallelizationFactor: not supported for SQS"),
        ({"DestinationConfig": "x"}, "DestinationConfig"),
        (
            {"DestinationConfig": {"OnSuccess": {"Destination": SQS + "q2"}}},
            "Unsupported DestinationConfig parameter for given event source mapping type.",
        ),
        ({"FilterCriteria": {"Filters": [{"Pattern": "1"}]}}, "Invalid filter pattern definition."),
    ],
)
async def test_update_refused(plane: Plane, update: dict[str, Any], message: str) -> None:
    uuid = (await plane.created(FunctionName="f", EventSourceArn=SQS + "q1"))["UUID"]
    before = await plane.engine.registry.mapping(uuid)
    await refused(
        plane.control.update_mapping(uuid, update), InvalidParameterValueException, message
    )
    assert await plane.engine.registry.mapping(uuid) == before


async def test_update_function_name(plane: Plane) -> None:
    one = (await plane.created(FunctionName="f", EventSourceArn=SQS + "vis10"))["UUID"]
    two = (await plane.created(FunctionName="web", EventSourceArn=SQS + "vis10"))["UUID"]
    await refused(
        plane.control.update_mapping(one, {"FunctionName": "web"}),
        ResourceConflictException,
        f'An event source mapping with SQS arn (" {SQS}vis10 ") and function (" web ")',
    )
    await refused(
        plane.control.update_mapping(one, {"FunctionName": "g"}),
        InvalidParameterValueException,
        "Queue visibility timeout: 10 seconds is less than Function timeout: 60 seconds",
    )
    await refused(
        plane.control.update_mapping(one, {"FunctionName": "nope"}),
        InvalidParameterValueException,
        "Function does not exist",
    )
    out = await plane.control.update_mapping(one, {"FunctionName": f"{FN_ARN}:img:$LATEST"})
    assert out["FunctionArn"] == f"{FN_ARN}:img:$LATEST"
    record = await plane.engine.registry.mapping(one)
    assert record is not None
    assert (record.params["FunctionName"], record.qualifier) == ("img", "$LATEST")
    out = await plane.control.update_mapping(two, {"FunctionName": "web"})  # its own: no conflict
    assert out["FunctionArn"] == f"{FN_ARN}:web"


@pytest.mark.parametrize("state", ["Creating", "Updating", "Enabling", "Disabling", "Deleting"])
async def test_update_refused_while_in_transition(plane: Plane, state: str) -> None:
    record = MappingRecord(
        uuid="11111111-1111-1111-1111-111111111111",
        params={"FunctionName": "f", "EventSourceArn": SQS + "q1"},
        state=state,
    )
    await plane.engine.registry.put_mapping(record)
    error = await refused(
        plane.control.update_mapping(record.uuid, {"BatchSize": 2}),
        ResourceInUseException,
        f"Cannot update the event source mapping because it is in use ({state}).",
    )
    assert error.status == 400


async def test_update_and_delete_of_an_unknown_uuid(plane: Plane) -> None:
    for aw in (
        plane.control.update_mapping("nope", {"BatchSize": 2}),
        plane.control.delete_mapping("nope"),
        plane.control.get_mapping("nope"),
    ):
        await refused(aw, ResourceNotFoundException, "The resource you requested does not exist.")


# -- event source mappings: delete -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "allowed"),
    [
        ("Enabled", True),
        ("Disabled", True),
        ("Deleting", True),
        ("Creating", False),
        ("Updating", False),
        ("Enabling", False),
        ("Disabling", False),
    ],
)
async def test_delete_by_state(plane: Plane, state: str, allowed: bool) -> None:
    record = MappingRecord(
        uuid="22222222-2222-2222-2222-222222222222",
        params={"FunctionName": "f", "EventSourceArn": SQS + "q1"},
        state=state,
    )
    await plane.engine.registry.put_mapping(record)
    if not allowed:
        await refused(
            plane.control.delete_mapping(record.uuid),
            ResourceInUseException,
            f"Cannot delete the event source mapping because it is in use ({state}).",
        )
        return
    out = await plane.control.delete_mapping(record.uuid)
    assert out["State"] == "Deleting"
    await plane.reconciled()
    assert await plane.engine.registry.mapping(record.uuid) is None
    assert record.uuid not in plane.engine.mappings


# -- event source mappings: list -------------------------------------------------------------------


async def test_list_filters_and_pages(plane: Plane) -> None:
    made = {
        ("f", "q1"): (await plane.create(FunctionName="f", EventSourceArn=SQS + "q1"))["UUID"],
        ("f", "q2"): (await plane.create(FunctionName="f", EventSourceArn=SQS + "q2"))["UUID"],
        ("web", "q1"): (await plane.create(FunctionName="web", EventSourceArn=SQS + "q1"))["UUID"],
    }

    async def listed(arn: str | None = None, fn: str | None = None) -> set[str]:
        out = await plane.control.list_mappings(arn, fn, None, None)
        return {m["UUID"] for m in out["EventSourceMappings"]}

    assert await listed() == set(made.values())
    assert await listed(SQS + "q1") == {made["f", "q1"], made["web", "q1"]}
    assert await listed(None, f"{FN_ARN}:f:$LATEST") == {made["f", "q1"], made["f", "q2"]}
    assert await listed(SQS + "q2", "web") == set()
    assert await listed(None, "nope") == set()
    with pytest.raises(InvalidParameterValueException):
        await listed(None, "not a name!")

    uuids: list[str] = []
    marker = None
    while True:
        out = await plane.control.list_mappings(None, None, marker, "2")
        uuids += [m["UUID"] for m in out["EventSourceMappings"]]
        marker = out.get("NextMarker")
        if marker is None:
            break
    assert uuids == sorted(made.values())


async def test_list_returns_at_most_100_a_page(plane: Plane) -> None:
    for n in range(101):
        await plane.engine.registry.put_mapping(
            MappingRecord(
                uuid=f"{n:08d}-0000-0000-0000-000000000000",
                params={"FunctionName": "f", "EventSourceArn": f"{SQS}q{n}"},
                state="Disabled",
            )
        )
    out = await plane.control.list_mappings(None, None, None, "10000")
    assert len(out["EventSourceMappings"]) == 100
    rest = await plane.control.list_mappings(None, None, out["NextMarker"], "10000")
    assert [m["UUID"] for m in rest["EventSourceMappings"]] == [
        "00000100-0000-0000-0000-000000000000"
    ]
    assert "NextMarker" not in rest


async def test_update_of_a_mapping_whose_function_another_daemon_serves(plane: Plane) -> None:
    """Another daemon on the same registry made it; this one cannot check it against its source."""
    record = MappingRecord(
        uuid="33333333-3333-3333-3333-333333333333",
        params={"FunctionName": "elsewhere", "EventSourceArn": SQS + "q1"},
        state="Enabled",
    )
    await plane.engine.registry.put_mapping(record)
    assert (await plane.control.get_mapping(record.uuid))["FunctionArn"] == f"{FN_ARN}:elsewhere"
    await refused(
        plane.control.update_mapping(record.uuid, {"BatchSize": 2}),
        ResourceNotFoundException,
        f"Function not found: {FN_ARN}:elsewhere",
    )
    assert await plane.engine.registry.mapping(record.uuid) == record
