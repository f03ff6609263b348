"""esm.api's Invoke and /health through aiohttp's test client against an in-memory backend."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import botocore
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from botocore.model import ServiceModel
from botocore.parsers import RestJSONParser

from esm import errors
from esm.api import (
    ASYNC_PAYLOAD_LIMIT,
    RESERVED_LIMIT_REASON,
    RESPONSE_PAYLOAD_LIMIT,
    SYNC_PAYLOAD_LIMIT,
    ResourceNotReadyException,
    build_app,
    error_response,
)
from esm.arns import function_arn
from esm.errors import LambdaApiError, ResourceNotFoundException, ServiceException
from esm.functions import FunctionError, InvokeFailed, Ok, Outcome, Throttled

REGION = "us-east-1"
ACCOUNT = "123456789012"
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f"
PATH = "/2015-03-31/functions/{}/invocations"


@dataclass
class FakeBackend:
    """An ApiBackend in memory: canned outcomes per function, every call recorded."""

    outcomes: dict[str, Outcome] = field(default_factory=lambda: {"f": Ok(b'{"ok":true}')})
    status: str = "ok"
    resolved: list[tuple[str, str | None]] = field(default_factory=list)
    calls: list[tuple[str, bytes, str | None]] = field(default_factory=list)
    events: list[tuple[str, bytes]] = field(default_factory=list)
    fail_with: BaseException | None = None

    def resolve_function(self, name: str, qualifier: str | None) -> str:
        self.resolved.append((name, qualifier))
        if name not in self.outcomes:
            raise ResourceNotFoundException(
                f"Function not found: {function_arn(REGION, ACCOUNT, name)}"
            )
        if qualifier not in (None, "$LATEST"):
            arn = function_arn(REGION, ACCOUNT, name, qualifier)
            raise ResourceNotFoundException(f"Function not found: {arn}")
        return name

    async def invoke_sync(
        self, function: str, payload: bytes, *, client_context: str | None, request_id: str
    ) -> Outcome:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append((function, payload, client_context))
        return self.outcomes[function]

    async def invoke_event(self, function: str, payload: bytes) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        self.events.append((function, payload))
        return f"event-{len(self.events)}"

    def health(self) -> dict[str, Any]:
        return {"status": self.status, "functions": len(self.outcomes)}


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
async def client(backend: FakeBackend) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_app(backend))) as client:
        yield client


async def invoke(
    client: TestClient[Any, Any],
    name: str = "f",
    body: bytes | None = b"{}",
    *,
    invocation_type: str | None = None,
    query: str = "",
    **headers: str,
) -> tuple[int, dict[str, str], bytes]:
    if invocation_type is not None:
        headers["X-Amz-Invocation-Type"] = invocation_type
    data = None if body is None else io.BytesIO(body)  # aiohttp warns about large raw bytes
    resp = await client.post(PATH.format(name) + query, data=data, headers=headers)
    return resp.status, dict(resp.headers), await resp.read()


def error_of(status: int, headers: dict[str, str], body: bytes) -> tuple[int, str, dict[str, Any]]:
    return status, headers["x-amzn-ErrorType"], json.loads(body)


# -- RequestResponse -----------------------------------------------------------------------------


async def test_sync_ok_returns_payload_version_and_request_id(
    client: Any, backend: FakeBackend
) -> None:
    status, headers, body = await invoke(
        client, body=b'{"a": 1}', **{"X-Amz-Client-Context": "e30="}
    )
    assert status == 200
    assert body == b'{"ok":true}'
    assert headers["X-Amz-Executed-Version"] == "$LATEST"
    assert headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f-]{36}", headers["x-amzn-RequestId"])
    assert "X-Amz-Function-Error" not in headers and "X-Amz-Log-Result" not in headers
    assert backend.calls == [("f", b'{"a": 1}', "e30=")]  # byte for byte, client context passed


async def test_request_response_is_the_default_and_can_be_named(
    client: Any, backend: FakeBackend
) -> None:
    assert (await invoke(client, invocation_type="RequestResponse"))[0] == 200
    assert (await invoke(client))[0] == 200
    assert len(backend.calls) == 2 and not backend.events


@pytest.mark.parametrize("kind", ["Unhandled", "Handled"])
async def test_function_error_is_200_with_the_error_header(
    client: Any, backend: FakeBackend, kind: Any
) -> None:
    error = b'{"errorMessage":"boom","errorType":"KeyError","stackTrace":[]}'
    backend.outcomes["f"] = FunctionError(error, kind)
    status, headers, body = await invoke(client)
    assert (status, body) == (200, error)
    assert headers["X-Amz-Function-Error"] == kind
    assert headers["X-Amz-Executed-Version"] == "$LATEST"


async def test_throttle_is_429_with_reason_and_retry_after(
    client: Any, backend: FakeBackend
) -> None:
    backend.outcomes["f"] = Throttled(RESERVED_LIMIT_REASON)
    status, headers, body = await invoke(client)
    assert error_of(status, headers, body) == (
        429,
        "TooManyRequestsException",
        {"Type": "User", "message": "Rate Exceeded.", "Reason": RESERVED_LIMIT_REASON},
    )
    assert headers["Retry-After"] == "1"


async def test_throttle_reasons_outside_lambdas_enum_keep_their_text_in_the_message(
    client: Any, backend: FakeBackend
) -> None:
    backend.outcomes["f"] = Throttled("HTTP 429 from http://app:8080")
    status, headers, body = await invoke(client)
    _, _, data = error_of(status, headers, body)
    assert data["Reason"] == RESERVED_LIMIT_REASON
    assert data["message"] == "Rate Exceeded: HTTP 429 from http://app:8080"


async def test_other_throttle_reasons_pass_through(client: Any, backend: FakeBackend) -> None:
    backend.outcomes["f"] = Throttled("ConcurrentInvocationLimitExceeded")
    _, _, body = await invoke(client)
    assert json.loads(body)["Reason"] == "ConcurrentInvocationLimitExceeded"


async def test_invoke_failed_is_502_resource_not_ready(client: Any, backend: FakeBackend) -> None:
    backend.outcomes["f"] = InvokeFailed("cannot connect to http://app:8080: refused")
    status, headers, body = await invoke(client)
    assert error_of(status, headers, body) == (
        502,
        "ResourceNotReadyException",
        {
            "Type": "Service",
            "message": "The function could not be run: cannot connect to http://app:8080: refused",
        },
    )


async def test_oversized_function_answers_become_lambdas_function_error(
    client: Any, backend: FakeBackend
) -> None:
    backend.outcomes["f"] = Ok(b"x" * RESPONSE_PAYLOAD_LIMIT)
    status, headers, body = await invoke(client)
    assert (
        status == 200
        and len(body) == RESPONSE_PAYLOAD_LIMIT
        and "X-Amz-Function-Error" not in headers
    )

    backend.outcomes["f"] = Ok(b"x" * (RESPONSE_PAYLOAD_LIMIT + 1))
    status, headers, body = await invoke(client)
    assert status == 200
    assert headers["X-Amz-Function-Error"] == "Unhandled"
    assert json.loads(body) == {
        "errorMessage": "Response payload size (6291557 bytes) exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }


async def test_log_type_tail_returns_lambdas_platform_lines(client: Any) -> None:
    status, headers, _ = await invoke(client, **{"X-Amz-Log-Type": "Tail"})
    assert status == 200
    log = base64.b64decode(headers["X-Amz-Log-Result"]).decode()
    rid = headers["x-amzn-RequestId"]
    lines = log.splitlines()
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert lines[1] == f"END RequestId: {rid}"
    assert re.fullmatch(rf"REPORT RequestId: {rid}\tDuration: \d+\.\d\d ms\t", lines[2])
    _, headers, _ = await invoke(client, **{"X-Amz-Log-Type": "None"})
    assert "X-Amz-Log-Result" not in headers


async def test_log_type_tail_is_not_added_to_errors(client: Any, backend: FakeBackend) -> None:
    backend.outcomes["f"] = Throttled(RESERVED_LIMIT_REASON)
    _, headers, _ = await invoke(client, **{"X-Amz-Log-Type": "Tail"})
    assert "X-Amz-Log-Result" not in headers


# -- Event and DryRun ----------------------------------------------------------------------------


async def test_event_is_202_empty_once_queued(client: Any, backend: FakeBackend) -> None:
    status, headers, body = await invoke(
        client, body=b'{"n": 1}', invocation_type="Event", **{"X-Amz-Client-Context": "e30="}
    )
    assert (status, body) == (202, b"")
    assert headers["x-amzn-RequestId"] == "event-1"  # the backend's id for the queued event
    assert backend.events == [("f", b'{"n": 1}')]
    assert backend.calls == []


async def test_event_answer_waits_for_the_queue(client: Any, backend: FakeBackend) -> None:
    queued = asyncio.Event()
    original = backend.invoke_event

    async def slow_queue(function: str, payload: bytes) -> str:
        await queued.wait()
        return await original(function, payload)

    backend.invoke_event = slow_queue  # type: ignore[method-assign]
    answer = asyncio.create_task(invoke(client, invocation_type="Event"))
    await asyncio.sleep(0.05)
    assert not answer.done()
    queued.set()
    status, _, _ = await answer
    assert status == 202 and len(backend.events) == 1


async def test_dry_run_is_204_after_resolving(client: Any, backend: FakeBackend) -> None:
    status, _, body = await invoke(client, invocation_type="DryRun")
    assert (status, body) == (204, b"")
    assert backend.resolved == [("f", None)]
    assert backend.calls == [] and backend.events == []
    status, headers, body = await invoke(client, "nope", invocation_type="DryRun")
    assert error_of(status, headers, body)[:2] == (404, "ResourceNotFoundException")


@pytest.mark.parametrize(
    ("header", "value", "member", "allowed"),
    [
        ("X-Amz-Invocation-Type", "Async", "invocationType", "[RequestResponse, Event, DryRun]"),
        ("X-Amz-Invocation-Type", "event", "invocationType", "[RequestResponse, Event, DryRun]"),
        ("X-Amz-Log-Type", "Full", "logType", "[None, Tail]"),
    ],
)
async def test_unknown_header_values_are_invalid_parameters(
    client: Any, backend: FakeBackend, header: str, value: str, member: str, allowed: str
) -> None:
    status, headers, body = await invoke(client, **{header: value})
    assert error_of(status, headers, body) == (
        400,
        "InvalidParameterValueException",
        {
            "Type": "User",
            "message": f"1 validation error detected: Value '{value}' at '{member}' failed to "
            f"satisfy constraint: Member must satisfy enum value set: {allowed}",
        },
    )
    assert backend.calls == [] and backend.events == []


# -- FunctionName and qualifier ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "qualifier"),
    [
        ("f", None),
        ("f:$LATEST", "$LATEST"),
        (f"{ACCOUNT}:function:f", None),
        (f"{ACCOUNT}:function:f:$LATEST", "$LATEST"),
        (f"{REGION}:{ACCOUNT}:function:f", None),
        (ARN, None),
        (f"{ARN}:$LATEST", "$LATEST"),
        ("arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af", None),  # as boto3 sends it
        ("arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af%3A%24LATEST", "$LATEST"),
        ("f%3A%24LATEST", "$LATEST"),
    ],
)
async def test_every_function_name_form_reaches_the_function(
    client: Any, backend: FakeBackend, name: str, qualifier: str | None
) -> None:
    status, _, _ = await invoke(client, name)
    assert status == 200
    assert backend.resolved == [("f", qualifier)]
    assert backend.calls[0][0] == "f"


async def test_qualifier_query_parameter(client: Any, backend: FakeBackend) -> None:
    assert (await invoke(client, query="?Qualifier=$LATEST"))[0] == 200
    assert (await invoke(client, query="?Qualifier=%24LATEST"))[0] == 200
    assert (await invoke(client, "f:$LATEST", query="?Qualifier=$LATEST"))[0] == 200
    assert backend.resolved == [("f", "$LATEST")] * 3


@pytest.mark.parametrize(
    ("name", "query", "arn"),
    [
        ("f:v1", "", f"{ARN}:v1"),
        ("f:1", "", f"{ARN}:1"),
        ("f", "?Qualifier=prod", f"{ARN}:prod"),
        (f"{ARN}:prod", "?Qualifier=prod", f"{ARN}:prod"),
        ("nope", "", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:nope"),
        ("nope:$LATEST", "", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:nope"),
    ],
)
async def test_only_latest_exists(
    client: Any, backend: FakeBackend, name: str, query: str, arn: str
) -> None:
    status, headers, body = await invoke(client, name, query=query)
    # Lambda's model spells this shape's member ``Message``
    assert error_of(status, headers, body) == (
        404,
        "ResourceNotFoundException",
        {"Type": "User", "Message": f"Function not found: {arn}"},
    )
    assert backend.calls == []


@pytest.mark.parametrize(
    ("name", "query"),
    [("f:$LATEST", "?Qualifier=v1"), ("f:v1", "?Qualifier=$LATEST"), ("f:v1", "?Qualifier=v2")],
)
async def test_disagreeing_qualifiers_are_invalid(
    client: Any, backend: FakeBackend, name: str, query: str
) -> None:
    status, headers, body = await invoke(client, name, query=query)
    assert error_of(status, headers, body) == (
        400,
        "InvalidParameterValueException",
        {
            "Type": "User",
            "message": "The derived qualifier from the function name does not match the specified qualifier.",
        },
    )
    assert backend.resolved == []


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("bad%20name", ""),
        ("f" * 65, ""),
        ("arn:aws:lambda:f", ""),
        (f"{ACCOUNT}:f", ""),
        ("f", "?Qualifier=bad!"),
        ("f", "?Qualifier="),
        ("f", "?Qualifier=" + "a" * 129),
    ],
)
async def test_malformed_names_and_qualifiers_are_invalid(
    client: Any, backend: FakeBackend, name: str, query: str
) -> None:
    status, headers, body = await invoke(client, name, query=query)
    assert error_of(status, headers, body)[:2] == (400, "InvalidParameterValueException")
    assert backend.resolved == []


# -- body ----------------------------------------------------------------------------------------


async def test_empty_body_is_the_empty_object(client: Any, backend: FakeBackend) -> None:
    assert (await invoke(client, body=None))[0] == 200
    assert (await invoke(client, body=b"", invocation_type="Event"))[0] == 202
    assert backend.calls[0][1] == b"{}"
    assert backend.events[0][1] == b"{}"


@pytest.mark.parametrize(
    "body",
    [
        b'"text"',
        b"42",
        b"null",
        b"[1, 2]",
        b' {"a": [1, {"b": null}]} \n',
        b"123456789012345678901234567890",
        b'"\\ud800"',
        b"\xef\xbb\xbf{}",
    ],
)
async def test_any_json_value_is_passed_on_as_it_came(
    client: Any, backend: FakeBackend, body: bytes
) -> None:
    assert (await invoke(client, body=body))[0] == 200
    assert backend.calls[0][1] == body


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


async def test_json_nested_1024_deep_passes(client: Any, backend: FakeBackend) -> None:
    body = b'{"a": ' + nested(1023) + b"}"
    assert (await invoke(client, body=body))[0] == 200
    assert backend.calls[0][1] == body


@pytest.mark.parametrize("invocation_type", ["RequestResponse", "Event", "DryRun"])
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{",
        b'{"a": NaN}',
        b"Infinity",
        b" ",
        b"\xff\xfe",
        nested(1025),  # past orjson's limit: json.loads' RecursionError was a 500
        nested(100_000),
        b'{"a": ' * 3000 + b"1" + b"}" * 3000,
    ],
    ids=lambda b: repr(b[:12]) + f"…{len(b)}",
)
async def test_a_body_that_is_not_json_is_invalid_content(
    client: Any, backend: FakeBackend, body: bytes, invocation_type: str
) -> None:
    status, headers, data = await invoke(client, body=body, invocation_type=invocation_type)
    status, name, error = error_of(status, headers, data)
    assert (status, name, error["Type"]) == (400, "InvalidRequestContentException", "User")
    assert error["message"].startswith(
        "Could not parse request body into json: Could not parse payload into json: "
    )
    assert backend.calls == [] and backend.events == []


def json_of_size(size: int) -> bytes:
    return b'"' + b"a" * (size - 2) + b'"'


@pytest.mark.parametrize(
    ("invocation_type", "limit"),
    [("RequestResponse", SYNC_PAYLOAD_LIMIT), ("DryRun", SYNC_PAYLOAD_LIMIT)],
)
async def test_synchronous_payload_limit(client: Any, invocation_type: str, limit: int) -> None:
    assert limit == 6_291_456
    status, _, _ = await invoke(client, body=json_of_size(limit), invocation_type=invocation_type)
    assert status in (200, 204)
    status, headers, body = await invoke(
        client, body=json_of_size(limit + 1), invocation_type=invocation_type
    )
    assert error_of(status, headers, body) == (
        413,
        "RequestTooLargeException",
        {
            "Type": "User",
            "message": "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
        },
    )


async def test_event_payload_limit(client: Any, backend: FakeBackend) -> None:
    assert ASYNC_PAYLOAD_LIMIT == 1_048_576
    assert (await invoke(client, body=json_of_size(ASYNC_PAYLOAD_LIMIT), invocation_type="Event"))[
        0
    ] == 202
    status, headers, body = await invoke(
        client, body=json_of_size(ASYNC_PAYLOAD_LIMIT + 1), invocation_type="Event"
    )
    assert error_of(status, headers, body) == (
        413,
        "RequestTooLargeException",
        {
            "Type": "User",
            "message": "1048577 byte payload is too large for the Event invocation type (limit 1048576 bytes)",
        },
    )
    assert len(backend.events) == 1


async def test_limit_holds_without_content_length(client: Any, backend: FakeBackend) -> None:
    async def chunks(size: int) -> AsyncIterator[bytes]:
        body = json_of_size(size)
        for i in range(0, len(body), 100_000):
            yield body[i : i + 100_000]

    resp = await client.post(
        PATH.format("f"),
        data=chunks(ASYNC_PAYLOAD_LIMIT),
        headers={"X-Amz-Invocation-Type": "Event"},
    )
    assert resp.status == 202 and "Content-Length" not in resp.request_info.headers
    resp = await client.post(
        PATH.format("f"),
        data=chunks(ASYNC_PAYLOAD_LIMIT + 1),
        headers={"X-Amz-Invocation-Type": "Event"},
    )
    assert resp.status == 413
    assert (await resp.json())["message"].startswith("1048577 byte payload is too large")


# -- what reaches no operation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "takes"),
    [
        ("POST", "/", None),
        ("GET", "/2018-10-31/layerz", None),
        ("DELETE", "/2015-03-31/functions/f/configuration", None),  # no Lambda operation
        ("PATCH", "/x" * 300, None),
        ("GET", PATH.format("f"), "POST"),
        ("PUT", PATH.format("f"), "POST"),
        ("POST", "/health", "GET, HEAD"),
    ],
)
async def test_unknown_operations_are_404_unknown_operation(
    client: Any, backend: FakeBackend, method: str, path: str, takes: str | None
) -> None:
    resp = await client.request(method, path, data=b"{}")
    headers, body = dict(resp.headers), await resp.read()
    status, name, error = error_of(resp.status, headers, body)
    assert (status, name, error["Type"]) == (404, "UnknownOperationException", "User")
    assert re.fullmatch(r"[0-9a-f-]{36}", headers["x-amzn-RequestId"])
    assert headers["Content-Type"] == "application/json"
    assert error["message"].startswith(f"Unknown operation {method} {path[:150]}")
    assert "esm serves Invoke" in error["message"]
    if takes:
        assert f"(that path takes {takes})" in error["message"]
    else:
        assert "takes" not in error["message"]
    assert len(error["message"]) < 600
    assert backend.calls == [] and backend.events == []


async def test_an_unknown_operation_parses_as_a_named_client_error() -> None:
    response = error_response(errors.UnknownOperationException("Unknown operation GET /x"))
    parsed = RestJSONParser().parse(
        {
            "status_code": response.status,
            "headers": {k.lower(): v for k, v in response.headers.items()},
            "body": response.body,
        },
        _lambda_model().operation_model("ListLayers").output_shape,
    )
    assert parsed["Error"] == {
        "Code": "UnknownOperationException",
        "Message": "Unknown operation GET /x",
    }
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_undecodable_bytes_quoted_in_a_message_are_escaped() -> None:
    """aiohttp decodes header bytes with surrogateescape; quoting them must not break the JSON."""
    response = error_response(errors.InvalidParameterValueException("Value '\udcff\udcfe'"))
    assert response.status == 400
    assert orjson.loads(response.body) == {  # type: ignore[arg-type]
        "Type": "User",
        "message": "Value '\\udcff\\udcfe'",
    }


# -- errors from the backend ---------------------------------------------------------------------


async def test_unexpected_exceptions_are_logged_500_service_exceptions(
    client: Any, backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    backend.fail_with = RuntimeError("disk on fire")
    with caplog.at_level(logging.ERROR, logger="esm.api"):
        status, headers, body = await invoke(client)
    assert error_of(status, headers, body) == (
        500,
        "ServiceException",
        {"Type": "Service", "Message": "An internal error occurred in esm."},
    )
    assert "x-amzn-RequestId" in headers
    (record,) = caplog.records
    assert "POST /2015-03-31/functions/f/invocations failed" in record.getMessage()
    assert record.exc_info is not None and "disk on fire" in str(record.exc_info[1])


async def test_backend_api_errors_are_rendered_as_they_are(
    client: Any, backend: FakeBackend
) -> None:
    backend.fail_with = errors.TooManyRequestsException("Rate Exceeded.")
    status, headers, body = await invoke(client, invocation_type="Event")
    assert error_of(status, headers, body) == (
        429,
        "TooManyRequestsException",
        {"Type": "User", "message": "Rate Exceeded."},
    )


# -- rendering, checked against botocore ---------------------------------------------------------


def _lambda_model() -> ServiceModel:
    path = os.path.join(
        os.path.dirname(botocore.__file__), "data/lambda/2015-03-31/service-2.json.gz"
    )
    with gzip.open(path) as f:
        return ServiceModel(json.load(f), "lambda")


ERROR_CLASSES = sorted(
    [
        *(
            cls
            for cls in vars(errors).values()
            if isinstance(cls, type)
            and issubclass(cls, LambdaApiError)
            and not issubclass(cls, errors.AwsCommonError)
            and cls is not LambdaApiError
            and cls is not errors.ServiceUnavailable  # esm's 503 ServiceException, below
        ),
        ResourceNotReadyException,
    ],
    key=lambda c: c.__name__,
)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_matches_lambdas_model_and_parses_in_botocore(
    cls: type[LambdaApiError],
) -> None:
    model = _lambda_model()
    shape = model.shape_for(cls.__name__)
    assert shape.metadata["exception"]
    assert shape.metadata["error"]["httpStatusCode"] == cls.status

    response = error_response(cls("it broke"))
    body = orjson.loads(response.body)  # type: ignore[arg-type]
    message_member = "Message" if "Message" in shape.members else "message"
    assert body == {
        "Type": "Service"
        if issubclass(cls, ServiceException | ResourceNotReadyException)
        else "User",
        message_member: "it broke",
    }

    parsed = RestJSONParser().parse(
        {
            "status_code": response.status,
            "headers": {k.lower(): v for k, v in response.headers.items()},
            "body": response.body,
        },
        model.operation_model("Invoke").output_shape,
    )
    assert parsed["Error"] == {"Code": cls.__name__, "Message": "it broke"}


def _example_request(request_uri: str) -> tuple[str, str]:
    """A path and query for an operation's requestUri: each label one plausible segment."""
    path, _, query = request_uri.partition("?")
    return re.sub(r"\{[^}]+\}", "my-fn", path), query


def _not_served_by_invoke_only() -> list[tuple[str, str, str]]:
    model = _lambda_model()
    found = []
    for name in model.operation_names:
        if name == "Invoke":
            continue
        http = model.operation_model(name).http
        path, query = _example_request(http["requestUri"])
        found.append((name, http["method"], path + ("?" + query if query else "")))
    return found


@pytest.mark.parametrize(
    ("operation", "method", "target"), _not_served_by_invoke_only(), ids=lambda v: str(v)[:60]
)
async def test_every_lambda_operation_not_served_is_501_naming_it(
    client: Any, backend: FakeBackend, operation: str, method: str, target: str
) -> None:
    """Every operation in botocore's Lambda model, by its method and path: an API serving only
    Invoke (no control plane) answers each with 501 InternalFailure naming the operation, as
    JSON Lambda's SDKs parse, never a plain-text 404 / 405 (docs/semantics.md §10.8)."""
    resp = await client.request(method, target, data=b"{}")
    headers, body = dict(resp.headers), await resp.read()
    status, name, error = error_of(resp.status, headers, body)
    assert (status, name, error["Type"]) == (501, "InternalFailure", "Service")
    assert error["message"].startswith(f"esm does not support {operation}: esm serves Invoke")
    assert headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f-]{36}", headers["x-amzn-RequestId"])
    assert backend.calls == [] and backend.events == []


# AWS's common errors, status as the "Common Errors" page of AWS's API references lists them.
COMMON_ERRORS = {
    errors.UnknownOperationException: (404, "User"),
    errors.OperationNotSupported: (501, "Service"),
    errors.MalformedHttpRequestException: (400, "User"),
    errors.RequestTimeoutException: (408, "User"),
    errors.RequestEntityTooLargeException: (413, "User"),
    errors.ValidationException: (400, None),  # as recorded on AWS: no Type
    errors.AuthError: (403, "User"),
    errors.MissingAuthenticationTokenException: (403, "User"),
    errors.IncompleteSignatureException: (400, "User"),
    errors.UnrecognizedClientException: (403, "User"),
    errors.InvalidSignatureException: (403, "User"),
}


def test_the_common_errors_are_all_listed() -> None:
    common = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.AwsCommonError)
        and cls is not errors.AwsCommonError
    }
    assert common == set(COMMON_ERRORS)


@pytest.mark.parametrize("cls", COMMON_ERRORS, ids=lambda c: c.__name__)
def test_common_errors_are_not_lambdas_and_parse_in_botocore(
    cls: type[LambdaApiError],
) -> None:
    model = _lambda_model()
    assert cls.__name__ not in model.shape_names
    status, kind = COMMON_ERRORS[cls]
    response = error_response(cls("it broke"))
    assert response.status == cls.status == status
    expected = {"message": "it broke"} if kind is None else {"Type": kind, "message": "it broke"}
    assert orjson.loads(response.body) == expected  # type: ignore[arg-type]
    parsed = RestJSONParser().parse(
        {
            "status_code": response.status,
            "headers": {k.lower(): v for k, v in response.headers.items()},
            "body": response.body,
        },
        model.operation_model("Invoke").output_shape,
    )
    assert parsed["Error"] == {"Code": cls("it broke").name, "Message": "it broke"}


def test_store_unavailable_is_a_503_service_exception_to_botocore() -> None:
    """Redis down: Lambda's ServiceException by name (what SDKs catch), 503 by status (what
    botocore's retry modes and load balancers read as "try again later")."""
    model = _lambda_model()
    response = error_response(errors.ServiceUnavailable())
    assert response.status == 503
    parsed = RestJSONParser().parse(
        {
            "status_code": response.status,
            "headers": {k.lower(): v for k, v in response.headers.items()},
            "body": response.body,
        },
        model.operation_model("Invoke").output_shape,
    )
    assert parsed["Error"]["Code"] == "ServiceException"
    assert "store does not answer" in parsed["Error"]["Message"]
    assert orjson.loads(response.body)["Type"] == "Service"  # type: ignore[arg-type]


# -- health --------------------------------------------------------------------------------------


async def test_health(client: Any, backend: FakeBackend) -> None:
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "functions": 1}
    backend.status = "degraded"
    resp = await client.get("/health")
    assert resp.status == 503
    assert (await resp.json())["status"] == "degraded"
