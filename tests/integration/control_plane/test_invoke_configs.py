"""FunctionEventInvokeConfig: Put, Update, Get, List, Delete, and its effect on async invokes."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from esm.aws import AwsClients
from tests.control_support import (
    FN_ARN,
    ControlWorld,
    body,
    call,
    code,
    error,
    failing,
    fn,
    status,
)
from tests.fixtures import recorder
from tests.streams_support import create_queue, receive_all
from tests.support import eventually, unique

pytestmark = pytest.mark.integration


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
