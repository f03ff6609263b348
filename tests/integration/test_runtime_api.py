"""The Runtime API over HTTP, as a runtime client sees it (no process: requests from the test)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from esm.runtime_api import (
    RESPONSE_LIMIT,
    Channel,
    ErrorResponse,
    Invocation,
    Response,
    RuntimeApi,
)

pytestmark = pytest.mark.integration

BASE = "/2018-06-01/runtime"


@pytest.fixture
async def api() -> AsyncIterator[RuntimeApi]:
    server = RuntimeApi()
    yield server
    await server.aclose()


def invocation(rid: str = "r-1", **kw: object) -> Invocation:
    args: dict[str, object] = {
        "request_id": rid,
        "payload": b'{"k": 1}',
        "deadline_ms": 1_700_000_003_000,
        "function_arn": "arn:aws:lambda:us-east-1:123456789012:function:f",
        "trace_id": "Root=1-65000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
        **kw,
    }
    return Invocation(**args)  # type: ignore[arg-type]


async def test_next_response_and_lambdas_answers(api: RuntimeApi) -> None:
    channel = Channel()
    url = f"http://{await api.open(channel)}{BASE}"
    context = base64.b64encode(b'{"custom": {"a": 1}}').decode()
    answer = channel.submit(invocation(client_context=context))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/invocation/next") as resp:
            assert resp.status == 200
            assert await resp.read() == b'{"k": 1}'
            h = resp.headers
            assert h["Lambda-Runtime-Aws-Request-Id"] == "r-1"
            assert h["Lambda-Runtime-Deadline-Ms"] == "1700000003000"
            assert h["Lambda-Runtime-Invoked-Function-Arn"].endswith(":function:f")
            assert h["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
            assert json.loads(h["Lambda-Runtime-Client-Context"]) == {"custom": {"a": 1}}
            assert "Lambda-Runtime-Cognito-Identity" not in h
        async with http.post(f"{url}/invocation/other/response", data=b"1") as resp:
            assert resp.status == 400
            assert (await resp.json())["errorType"] == "InvalidRequestID"
        async with http.post(f"{url}/invocation/r-1/response", data=b'"done"') as resp:
            assert (resp.status, await resp.json()) == (202, {"status": "OK"})
        assert await answer == Response(b'"done"')
        async with http.post(f"{url}/invocation/r-1/response", data=b"1") as resp:
            assert resp.status == 403
            assert (await resp.json())["errorType"] == "InvalidStateTransition"
        async with http.post(f"{url}/init/error", data=b"{}") as resp:
            assert resp.status == 403  # init is over once the runtime asked for an event


async def test_error_and_too_large(api: RuntimeApi) -> None:
    channel = Channel()
    url = f"http://{await api.open(channel)}{BASE}"
    async with aiohttp.ClientSession() as http:
        answer = channel.submit(invocation("e-1"))
        async with http.get(f"{url}/invocation/next"):
            pass
        body = b'{"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}'
        headers = {"Lambda-Runtime-Function-Error-Type": "Runtime.ValueError"}
        async with http.post(f"{url}/invocation/e-1/error", data=body, headers=headers) as resp:
            assert resp.status == 202
        assert await answer == ErrorResponse("Runtime.ValueError", body)

        answer = channel.submit(invocation("big"))
        async with http.get(f"{url}/invocation/next"):
            pass
        async with http.post(
            f"{url}/invocation/big/response", data=io.BytesIO(b"x" * (RESPONSE_LIMIT + 1))
        ) as resp:
            assert resp.status == 413
            assert (await resp.json())["errorType"] == "RequestEntityTooLarge"
        result = await answer
        assert isinstance(result, ErrorResponse)
        assert result.error_type == "Function.ResponseSizeTooLarge"


async def test_init_error_and_shutdown(api: RuntimeApi) -> None:
    channel = Channel()
    address = await api.open(channel)
    url = f"http://{address}{BASE}"
    async with aiohttp.ClientSession() as http:
        body = b'{"errorMessage": "Unable to import module \'app\'", "errorType": "X"}'
        headers = {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"}
        async with http.post(f"{url}/init/error", data=body, headers=headers) as resp:
            assert resp.status == 202
        assert channel.init_error.result() == ErrorResponse("Runtime.ImportModuleError", body)
        waiting = asyncio.create_task(http.get(f"{url}/invocation/next"))
        await asyncio.sleep(0.05)
        await api.close(address)  # a long poll in progress is answered 500: exit
        resp = await waiting
        assert resp.status == 500
        resp.release()
