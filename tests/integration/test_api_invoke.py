"""The Lambda-compatible API on a loopback port, driven by boto3's ``lambda`` client and the AWS CLI.

The backend is the in-memory one of the unit tests: it records what it is given and answers each
function with a canned outcome. What is checked is what a boto3 or CLI user sees.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from esm.api import ASYNC_PAYLOAD_LIMIT, RESERVED_LIMIT_REASON, SYNC_PAYLOAD_LIMIT, ApiServer, serve
from esm.functions import FunctionError, InvokeFailed, Ok, Throttled
from tests.control_support import Cli, find_aws_cli
from tests.unit.test_api_invoke import FakeBackend, json_of_size

pytestmark = pytest.mark.integration

REGION = "us-east-1"
ACCOUNT = "123456789012"
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
ERROR = b'{"errorMessage":"boom","errorType":"KeyError","stackTrace":[]}'


def canned() -> FakeBackend:
    return FakeBackend(
        outcomes={
            "echo": Ok(b'{"echo": true}'),
            "boom": FunctionError(ERROR, "Unhandled"),
            "legacy": FunctionError(ERROR, "Handled"),
            "busy": Throttled(RESERVED_LIMIT_REASON),
            "down": InvokeFailed("cannot connect to http://127.0.0.1:9: connection refused"),
        }
    )


@pytest.fixture
def backend() -> FakeBackend:
    return canned()


@pytest.fixture
async def server(backend: FakeBackend) -> AsyncIterator[ApiServer]:
    server = await serve(backend, port=0)
    yield server
    await server.aclose()


@pytest.fixture
def lambda_client(server: ApiServer) -> Iterator[BaseClient]:
    client = boto3.client(
        "lambda",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        # one attempt: botocore would retry the 429 and 5xx answers below
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    yield client
    client.close()


async def invoke(client: BaseClient, **kwargs: Any) -> dict[str, Any]:
    """``client.invoke`` in a thread (boto3 blocks), with the payload read."""

    def call() -> dict[str, Any]:
        response: dict[str, Any] = client.invoke(**kwargs)
        response["Payload"] = response["Payload"].read()
        return response

    return await asyncio.to_thread(call)


async def invoke_error(client: BaseClient, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as info:
        await invoke(client, **kwargs)
    return info.value


# -- boto3: success paths ------------------------------------------------------------------------


async def test_request_response(lambda_client: BaseClient, backend: FakeBackend) -> None:
    context = base64.b64encode(b'{"custom": {"k": "v"}}').decode()
    resp = await invoke(
        lambda_client, FunctionName="echo", Payload=b'{"in": 1}', ClientContext=context
    )
    assert resp["StatusCode"] == 200
    assert resp["Payload"] == b'{"echo": true}'
    assert resp["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in resp and "LogResult" not in resp
    assert backend.calls == [("echo", b'{"in": 1}', context)]


@pytest.mark.parametrize(("function", "kind"), [("boom", "Unhandled"), ("legacy", "Handled")])
async def test_function_error_surfaces_as_FunctionError(
    lambda_client: BaseClient, function: str, kind: str
) -> None:
    resp = await invoke(lambda_client, FunctionName=function)
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == kind
    assert resp["Payload"] == ERROR
    assert resp["ExecutedVersion"] == "$LATEST"


async def test_log_type_tail(lambda_client: BaseClient) -> None:
    resp = await invoke(lambda_client, FunctionName="echo", LogType="Tail")
    log = base64.b64decode(resp["LogResult"]).decode()
    request_id = resp["ResponseMetadata"]["RequestId"]
    assert log.startswith(
        f"START RequestId: {request_id} Version: $LATEST\nEND RequestId: {request_id}\nREPORT"
    )


async def test_event_is_accepted_with_202(lambda_client: BaseClient, backend: FakeBackend) -> None:
    resp = await invoke(
        lambda_client, FunctionName="echo", InvocationType="Event", Payload=b'{"n": 1}'
    )
    assert resp["StatusCode"] == 202
    assert resp["Payload"] == b""
    assert resp["ResponseMetadata"]["RequestId"] == "event-1"
    assert backend.events == [("echo", b'{"n": 1}')]
    assert backend.calls == []


async def test_dry_run_is_204(lambda_client: BaseClient, backend: FakeBackend) -> None:
    resp = await invoke(lambda_client, FunctionName="echo", InvocationType="DryRun")
    assert resp["StatusCode"] == 204
    assert backend.calls == [] and backend.events == []


async def test_no_payload_is_the_empty_object(
    lambda_client: BaseClient, backend: FakeBackend
) -> None:
    await invoke(lambda_client, FunctionName="echo")
    assert backend.calls[0][1] == b"{}"


@pytest.mark.parametrize(
    ("kwargs", "qualifier"),
    [
        ({"FunctionName": "echo:$LATEST"}, "$LATEST"),
        ({"FunctionName": f"{ACCOUNT}:function:echo"}, None),
        ({"FunctionName": f"{REGION}:{ACCOUNT}:function:echo"}, None),
        ({"FunctionName": f"{ARN}:echo"}, None),
        ({"FunctionName": f"{ARN}:echo:$LATEST"}, "$LATEST"),
        ({"FunctionName": f"{ARN}:echo", "Qualifier": "$LATEST"}, "$LATEST"),
    ],
)
async def test_function_name_forms(
    lambda_client: BaseClient, backend: FakeBackend, kwargs: dict[str, str], qualifier: str | None
) -> None:
    resp = await invoke(lambda_client, **kwargs)
    assert resp["StatusCode"] == 200
    assert backend.resolved == [("echo", qualifier)]


async def test_payloads_at_the_limits_pass(lambda_client: BaseClient, backend: FakeBackend) -> None:
    resp = await invoke(
        lambda_client, FunctionName="echo", Payload=json_of_size(SYNC_PAYLOAD_LIMIT)
    )
    assert resp["StatusCode"] == 200
    resp = await invoke(
        lambda_client,
        FunctionName="echo",
        InvocationType="Event",
        Payload=json_of_size(ASYNC_PAYLOAD_LIMIT),
    )
    assert resp["StatusCode"] == 202
    assert [len(p) for _, p, _ in backend.calls] == [SYNC_PAYLOAD_LIMIT]
    assert [len(p) for _, p in backend.events] == [ASYNC_PAYLOAD_LIMIT]


# -- boto3: errors -------------------------------------------------------------------------------

ERRORS = [
    pytest.param(
        {"FunctionName": "nope"},
        404,
        "ResourceNotFoundException",
        f"Function not found: {ARN}:nope",
        id="unknown-function",
    ),
    pytest.param(
        {"FunctionName": "echo", "Qualifier": "v1"},
        404,
        "ResourceNotFoundException",
        f"Function not found: {ARN}:echo:v1",
        id="qualifier-not-latest",
    ),
    pytest.param(
        {"FunctionName": "echo:$LATEST", "Qualifier": "v1"},
        400,
        "InvalidParameterValueException",
        "The derived qualifier from the function name does not match the specified qualifier.",
        id="qualifiers-disagree",
    ),
    pytest.param(
        {"FunctionName": "echo", "InvocationType": "Later"},
        400,
        "InvalidParameterValueException",
        "1 validation error detected: Value 'Later' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [RequestResponse, Event, DryRun]",
        id="invocation-type",
    ),
    pytest.param(
        {"FunctionName": "echo", "Payload": b"{not json"},
        400,
        "InvalidRequestContentException",
        "Could not parse request body into json: Could not parse payload into json: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        id="not-json",
    ),
    pytest.param(
        {"FunctionName": "echo", "Payload": json_of_size(SYNC_PAYLOAD_LIMIT + 1)},
        413,
        "RequestTooLargeException",
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
        id="too-large-sync",
    ),
    pytest.param(
        {
            "FunctionName": "echo",
            "InvocationType": "Event",
            "Payload": json_of_size(ASYNC_PAYLOAD_LIMIT + 1),
        },
        413,
        "RequestTooLargeException",
        "1048577 byte payload is too large for the Event invocation type (limit 1048576 bytes)",
        id="too-large-event",
    ),
    pytest.param(
        {"FunctionName": "busy"},
        429,
        "TooManyRequestsException",
        "Rate Exceeded.",
        id="throttled",
    ),
    pytest.param(
        {"FunctionName": "down"},
        502,
        "ResourceNotReadyException",
        "The function could not be run: cannot connect to http://127.0.0.1:9: connection refused",
        id="invoke-failed",
    ),
]


@pytest.mark.parametrize(("kwargs", "status", "code", "message"), ERRORS)
async def test_errors_are_client_errors_with_lambdas_codes(
    lambda_client: BaseClient,
    backend: FakeBackend,
    kwargs: dict[str, Any],
    status: int,
    code: str,
    message: str,
) -> None:
    error = await invoke_error(lambda_client, **kwargs)
    assert error.response["Error"] == {"Code": code, "Message": message}
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error.response["ResponseMetadata"]["RequestId"]
    # the modelled exception class catches it, as it would against Lambda
    assert isinstance(error, getattr(lambda_client.exceptions, code))
    assert backend.events == []


async def test_throttle_carries_reason_and_retry_after(lambda_client: BaseClient) -> None:
    error = await invoke_error(lambda_client, FunctionName="busy")
    assert error.response["Reason"] == RESERVED_LIMIT_REASON
    assert error.response["retryAfterSeconds"] == "1"
    assert error.response["Type"] == "User"


async def test_not_found_uses_the_modelled_member_name(lambda_client: BaseClient) -> None:
    error = await invoke_error(lambda_client, FunctionName="nope")
    assert error.response["Message"] == f"Function not found: {ARN}:nope"
    assert error.response["Type"] == "User"


async def test_backend_failure_is_a_service_exception(
    lambda_client: BaseClient, backend: FakeBackend
) -> None:
    backend.fail_with = RuntimeError("store unreachable")
    error = await invoke_error(lambda_client, FunctionName="echo", InvocationType="Event")
    assert error.response["Error"] == {
        "Code": "ServiceException",
        "Message": "An internal error occurred in esm.",
    }
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert isinstance(error, lambda_client.exceptions.ServiceException)


# -- serving -------------------------------------------------------------------------------------


async def test_serve_binds_loopback_port_zero_and_closes_twice(backend: FakeBackend) -> None:
    server = await serve(backend, port=0)
    assert server.host == "127.0.0.1" and server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/health") as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "ok", "functions": 5}
        backend.status = "degraded"
        async with session.get(f"{server.url}/health") as resp:
            assert resp.status == 503
    await server.aclose()
    await server.aclose()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/health"):
            pass


# -- the AWS CLI ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def aws_cli() -> tuple[list[str], int]:
    return find_aws_cli()


class InvokeCli(Cli):
    async def invoke(self, *args: str) -> tuple[int, dict[str, Any] | None, str, bytes | None]:
        """``aws lambda invoke … out`` → exit code, stdout as JSON, stderr, the out file."""
        out = self.tmp / "out.json"
        out.unlink(missing_ok=True)
        rc, result, stderr = await self("invoke", *args, str(out))
        return rc, result, stderr, out.read_bytes() if out.exists() else None


@pytest.fixture
def cli(aws_cli: tuple[list[str], int], server: ApiServer, tmp_path: Path) -> InvokeCli:
    # v2 would read --payload as base64 without this; v1 reads it raw and knows no flag for it
    return InvokeCli(
        *aws_cli, server.url, tmp_path, settings="cli_binary_format = raw-in-base64-out\n"
    )


async def test_cli_request_response(cli: InvokeCli, backend: FakeBackend) -> None:
    rc, result, stderr, out = await cli.invoke("--function-name", "echo", "--payload", '{"a": 1}')
    assert rc == 0, stderr
    assert result == {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
    assert out == b'{"echo": true}'
    assert backend.calls == [("echo", b'{"a": 1}', None)]


async def test_cli_full_arn_and_function_error(cli: InvokeCli, backend: FakeBackend) -> None:
    rc, result, stderr, out = await cli.invoke("--function-name", f"{ARN}:boom:$LATEST")
    assert rc == 0, stderr
    assert result == {"StatusCode": 200, "FunctionError": "Unhandled", "ExecutedVersion": "$LATEST"}
    assert out == ERROR
    assert backend.resolved == [("boom", "$LATEST")]


async def test_cli_log_tail(cli: InvokeCli) -> None:
    rc, result, stderr, _ = await cli.invoke("--function-name", "echo", "--log-type", "Tail")
    assert rc == 0, stderr
    assert result is not None
    assert base64.b64decode(result["LogResult"]).decode().startswith("START RequestId: ")


async def test_cli_event_and_dry_run(cli: InvokeCli, backend: FakeBackend) -> None:
    rc, result, stderr, _ = await cli.invoke(
        "--function-name", "echo", "--invocation-type", "Event", "--payload", '{"n": 1}'
    )
    assert (rc, result) == (0, {"StatusCode": 202}), stderr
    rc, result, stderr, _ = await cli.invoke(
        "--function-name", "echo", "--invocation-type", "DryRun"
    )
    assert (rc, result) == (0, {"StatusCode": 204}), stderr
    assert backend.events == [("echo", b'{"n": 1}')]
    assert backend.calls == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--function-name", "nope"],
            "ResourceNotFoundException",
            f"Function not found: {ARN}:nope",
        ),
        (
            ["--function-name", "echo", "--payload", "not json"],
            "InvalidRequestContentException",
            "Could not parse request body into json: ",
        ),
        (
            ["--function-name", "echo", "--payload", "fileb://{big}"],
            "RequestTooLargeException",
            "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
        ),
        (["--function-name", "busy"], "TooManyRequestsException", "Rate Exceeded."),
    ],
)
async def test_cli_errors(cli: InvokeCli, args: list[str], code: str, message: str) -> None:
    big = cli.tmp / "big.json"
    big.write_bytes(json_of_size(SYNC_PAYLOAD_LIMIT + 1))
    rc, result, stderr, out = await cli.invoke(*(a.format(big=big) for a in args))
    assert rc == cli.error_exit
    assert result is None and out is None
    assert f"An error occurred ({code}) when calling the Invoke operation" in stderr
    assert message in stderr
