"""/metrics and /health, and the AWS CLI driving the control plane."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.control_support import (
    FN_ARN,
    NOT_FOUND,
    Cli,
    ControlWorld,
    call,
    code,
    error,
    find_aws_cli,
    fn,
    wait_state,
)
from tests.support import Queues, eventually, unique

pytestmark = pytest.mark.integration


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
