"""GetFunction, ListFunctions and reserved concurrency."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.control_support import (
    FN_ARN,
    TARGET,
    ControlWorld,
    body,
    call,
    code,
    error,
    fn,
    status,
)
from tests.support import ACCOUNT, unique

pytestmark = pytest.mark.integration


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


async def test_get_function_has_the_keys_aws_always_returns(world: ControlWorld) -> None:
    """As a real GetFunction answers (recorded on AWS): every key a Zip function always has,
    AWS's values where esm has nothing of its own, the declared Runtime (not the host's Python),
    and one RevisionId however the function is read; reserved concurrency leaves it alone."""
    name = unique("cp-shape")
    node = await world.start({name: fn(Runtime="python3.12", LoggingConfig={"LogFormat": "JSON"})})
    got = await call(node.client, "get_function", FunctionName=name)
    config = got["Configuration"]
    assert config["Runtime"] == "python3.12"
    assert {k: config[k] for k in ALWAYS} == {
        "TracingConfig": {"Mode": "PassThrough"},
        "EphemeralStorage": {"Size": 512},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": {"LogFormat": "JSON", "LogGroup": f"/aws/lambda/{name}"},
        "Architectures": ["x86_64"],
        "PackageType": "Zip",
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "Version": "$LATEST",
        "CodeSize": 0,
        "MemorySize": 128,
        "Timeout": 3,
    }
    revision = config["RevisionId"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", revision)
    assert "Tags" not in got
    listed = await call(node.client, "list_functions")
    assert [f["RevisionId"] for f in listed["Functions"]] == [revision]
    await call(
        node.client, "put_function_concurrency", FunctionName=name, ReservedConcurrentExecutions=3
    )
    again = await call(node.client, "get_function_configuration", FunctionName=name)
    assert again["RevisionId"] == revision


ALWAYS = (
    "TracingConfig",
    "EphemeralStorage",
    "SnapStart",
    "LoggingConfig",
    "Architectures",
    "PackageType",
    "State",
    "LastUpdateStatus",
    "Version",
    "CodeSize",
    "MemorySize",
    "Timeout",
)
