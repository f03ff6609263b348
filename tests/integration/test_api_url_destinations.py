"""Destinations through the API are ARNs, as on AWS: ``http(s)://`` and ``memory://`` destinations
come from esm.yaml, or through the API only when ``Settings.ApiAllowUrlDestinations`` is true.

Without the rule, anyone who reaches the API could point a function's ``OnSuccess`` at a URL of
their own and receive every asynchronous payload.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from esm.aws import AwsClients
from tests.control_support import TARGET, ControlWorld, call, code, error
from tests.support import unique

pytestmark = pytest.mark.integration

RULE = (
    "is not an ARN. Through the API a destination is an ARN (SQS, SNS, EventBridge, Lambda, "
    "S3), as on AWS; http(s):// and memory:// destinations are set in esm.yaml, or through the "
    "API when Settings.ApiAllowUrlDestinations is true"
)


@pytest.fixture
async def world(aws: AwsClients, store_url: str) -> AsyncIterator[ControlWorld]:
    w = ControlWorld(aws, store_url)
    yield w
    await w.aclose()


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("OnSuccess", "http://attacker.example/collect"),
        ("OnSuccess", " HTTPS://attacker.example/collect"),
        ("OnFailure", "memory://stolen"),
    ],
)
async def test_a_url_destination_through_the_api_is_refused(
    world: ControlWorld, kind: str, url: str
) -> None:
    name = unique("dest")
    node = await world.start({name: {"Target": TARGET}})
    for operation in ("put_function_event_invoke_config", "update_function_event_invoke_config"):
        exc = await error(
            node.client,
            operation,
            FunctionName=name,
            DestinationConfig={kind: {"Destination": url}},
        )
        status, err_code, message = code(exc)
        assert (status, err_code) == (400, "InvalidParameterValueException")
        assert message == f"DestinationConfig.{kind}.Destination: {url!r} {RULE}"
    # nothing was stored
    missing = await error(node.client, "get_function_event_invoke_config", FunctionName=name)
    assert code(missing)[1] == "ResourceNotFoundException"


async def test_a_mappings_url_on_failure_destination_through_the_api_is_refused(
    world: ControlWorld,
) -> None:
    name = unique("dest")
    node = await world.start({name: {"Target": TARGET}})
    exc = await error(
        node.raw,
        "create_event_source_mapping",
        FunctionName=name,
        EventSourceArn="arn:aws:kinesis:us-east-1:123456789012:stream/s",
        StartingPosition="LATEST",
        DestinationConfig={"OnFailure": {"Destination": "memory://stolen"}},
    )
    assert code(exc) == (
        400,
        "InvalidParameterValueException",
        f"DestinationConfig.OnFailure.Destination: 'memory://stolen' {RULE}",
    )
    listed = await call(node.client, "list_event_source_mappings", FunctionName=name)
    assert listed["EventSourceMappings"] == []


async def test_esm_yaml_keeps_its_url_destinations_and_the_api_may_change_the_rest(
    world: ControlWorld,
) -> None:
    name = unique("dest")
    url = "http://127.0.0.1:9/on-success"
    config = {"DestinationConfig": {"OnSuccess": {"Destination": url}}}
    node = await world.start({name: {"Target": TARGET, "EventInvokeConfig": config}})
    got = await call(node.client, "get_function_event_invoke_config", FunctionName=name)
    assert got["DestinationConfig"]["OnSuccess"] == {"Destination": url}
    updated = await call(
        node.client,
        "update_function_event_invoke_config",
        FunctionName=name,
        MaximumRetryAttempts=0,
    )
    assert updated["MaximumRetryAttempts"] == 0
    assert updated["DestinationConfig"]["OnSuccess"] == {"Destination": url}


async def test_settings_may_allow_url_destinations_through_the_api(world: ControlWorld) -> None:
    name = unique("dest")
    node = await world.start({name: {"Target": TARGET}}, ApiAllowUrlDestinations=True)
    url = "http://127.0.0.1:9/on-success"
    await call(
        node.client,
        "put_function_event_invoke_config",
        FunctionName=name,
        DestinationConfig={"OnSuccess": {"Destination": url}},
    )
    got = await call(node.client, "get_function_event_invoke_config", FunctionName=name)
    assert got["DestinationConfig"]["OnSuccess"] == {"Destination": url}
