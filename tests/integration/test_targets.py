"""esm.functions against real HTTP on loopback: http(s)://, rie:// and lambda: targets
(esm.targets.http, esm.targets.lambda_).

Each target talks to a small aiohttp server started on a free port: an app endpoint, a Runtime
Interface Emulator look-alike and a Lambda Invoke API look-alike.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from esm.aws import AwsClients
from esm.clock import Clock, RealClock
from esm.config import FunctionConfig
from esm.functions import (
    Function,
    FunctionError,
    InvokeFailed,
    Ok,
    Throttled,
    build_function,
)

pytestmark = pytest.mark.integration

REGION = "us-east-1"
ACCOUNT = "123456789012"
JSON = "application/json"


@dataclass
class Recorder:
    """What the servers saw."""

    headers: list[dict[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    current: int = 0
    max_concurrent: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def record(self, request: web.Request) -> bytes:
        body = await request.read()
        self.headers.append(dict(request.headers))
        self.bodies.append(body)
        self.paths.append(request.match_info.get("name", request.path))
        return body


async def _serve(app: web.Application) -> AsyncIterator[str]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
def seen() -> Recorder:
    return Recorder()


@pytest.fixture
async def app_url(seen: Recorder) -> AsyncIterator[str]:
    """An application endpoint: one route per behaviour."""

    async def ok(request: web.Request) -> web.Response:
        body = await seen.record(request)
        return web.Response(body=body, content_type=JSON)

    async def function_error(request: web.Request) -> web.Response:
        await seen.record(request)
        error = {"errorMessage": "bad", "errorType": "ValueError"}
        kind = request.match_info["kind"]
        return web.json_response(error, headers={"X-Amz-Function-Error": kind})

    async def status(request: web.Request) -> web.Response:
        await seen.record(request)
        code = int(request.match_info["code"])
        if request.query.get("json"):
            error = {"errorMessage": "db down", "errorType": "DbError"}
            return web.json_response(error, status=code)
        return web.Response(status=code, text="upstream exploded")

    async def slow(request: web.Request) -> web.Response:
        await seen.record(request)
        await asyncio.wait_for(seen.release.wait(), 10)
        return web.json_response("late")

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/error/{kind}", function_error)
    app.router.add_post("/status/{code}", status)
    app.router.add_post("/slow", slow)
    async for url in _serve(app):
        yield url
        seen.release.set()  # let a slow handler finish before the server closes


@pytest.fixture
async def rie_url(seen: Recorder) -> AsyncIterator[str]:
    """A Runtime Interface Emulator look-alike: errors in the body, without the header."""

    async def invocations(request: web.Request) -> web.Response:
        body = await seen.record(request)
        seen.current += 1
        seen.max_concurrent = max(seen.max_concurrent, seen.current)
        try:
            await asyncio.sleep(0.02)
        finally:
            seen.current -= 1
        event = orjson.loads(body)
        if event.get("fail"):
            return web.json_response({"errorType": "X", "errorMessage": "boom"})
        return web.Response(body=body, content_type=JSON)

    app = web.Application()
    app.router.add_post("/2015-03-31/functions/function/invocations", invocations)
    async for url in _serve(app):
        yield "rie://" + url.removeprefix("http://")


@pytest.fixture
async def lambda_url(seen: Recorder) -> AsyncIterator[str]:
    """Lambda's Invoke API, enough of it: the function's name says how it behaves."""

    async def invoke(request: web.Request) -> web.Response:
        body = await seen.record(request)
        name = request.match_info["name"].rsplit(":", 1)[-1]
        if name == "ok":
            return web.Response(body=body, headers={"X-Amz-Executed-Version": "7"})
        if name == "fails":
            error = orjson.dumps({"errorMessage": "boom", "errorType": "Exception"})
            return web.Response(
                body=error,
                headers={"X-Amz-Function-Error": "Unhandled", "X-Amz-Executed-Version": "$LATEST"},
            )
        if name == "busy":
            return web.json_response(
                {"Type": "User", "message": "Rate exceeded"},
                status=429,
                headers={"x-amzn-ErrorType": "TooManyRequestsException"},
            )
        return web.json_response(
            {"Type": "User", "Message": f"Function not found: {name}"},
            status=404,
            headers={"x-amzn-ErrorType": "ResourceNotFoundException"},
        )

    app = web.Application()
    app.router.add_post("/2015-03-31/functions/{name}/invocations", invoke)
    async for url in _serve(app):
        yield url


@pytest.fixture
async def aws(lambda_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AwsClients]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    clients = AwsClients(endpoint_url=lambda_url)
    yield clients
    await clients.aclose()


MakeFn = Callable[..., Function]


@pytest.fixture
async def make_fn() -> AsyncIterator[MakeFn]:
    built: list[Function] = []
    spare_aws = AwsClients()

    def make(
        target: str, *, aws: AwsClients | None = None, clock: Clock | None = None, **props: Any
    ) -> Function:
        fn = build_function(
            "fn",
            FunctionConfig.model_validate({"Target": target, **props}),
            region=REGION,
            account=ACCOUNT,
            clock=clock or RealClock(),
            aws=aws or spare_aws,
        )
        built.append(fn)
        return fn

    yield make
    for fn in built:
        await fn.aclose()
    await spare_aws.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- http(s):// ----------------------------------------------------------------------------------


async def test_http_ok_posts_the_event_with_lambda_headers(
    make_fn: MakeFn, app_url: str, seen: Recorder
) -> None:
    fn = make_fn(f"{app_url}/ok")

    outcome = await fn.invoke(
        b'{"Records": []}', request_id="req-1", invocation_type="Event", client_context="e30="
    )

    assert outcome == Ok(b'{"Records": []}')
    headers = seen.headers[0]
    assert headers["Content-Type"] == JSON
    assert headers["X-Amz-Request-Id"] == headers["Lambda-Runtime-Aws-Request-Id"] == "req-1"
    assert headers["X-Amz-Invocation-Type"] == "Event"
    assert headers["X-Amz-Client-Context"] == "e30="
    assert headers["Lambda-Runtime-Invoked-Function-Arn"] == fn.arn
    assert abs(int(headers["Lambda-Runtime-Deadline-Ms"]) / 1000 - (time.time() + 3)) < 2


async def test_http_reuses_connections(make_fn: MakeFn, app_url: str, seen: Recorder) -> None:
    fn = make_fn(f"{app_url}/ok")

    outcomes = await asyncio.gather(*(fn.invoke(b"{}") for _ in range(50)))

    assert outcomes == [Ok(b"{}")] * 50
    assert len({h["X-Amz-Request-Id"] for h in seen.headers}) == 50  # a fresh uuid each
    assert fn.in_flight == 0


@pytest.mark.parametrize("kind", ["Handled", "Unhandled"])
async def test_http_function_error_header(make_fn: MakeFn, app_url: str, kind: str) -> None:
    outcome = await make_fn(f"{app_url}/error/{kind}").invoke(b"{}")

    assert isinstance(outcome, FunctionError)
    assert outcome.kind == kind
    assert orjson.loads(outcome.payload) == {"errorMessage": "bad", "errorType": "ValueError"}


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/status/500", {"errorMessage": "upstream exploded", "errorType": "HTTP500"}),
        ("/status/503?json=1", {"errorMessage": "db down", "errorType": "DbError"}),
        ("/status/400", {"errorMessage": "upstream exploded", "errorType": "HTTP400"}),
        ("/nowhere", {"errorMessage": "404: Not Found", "errorType": "HTTP404"}),
    ],
)
async def test_http_error_statuses_are_unhandled_function_errors(
    make_fn: MakeFn, app_url: str, path: str, payload: dict[str, str]
) -> None:
    outcome = await make_fn(f"{app_url}{path}").invoke(b"{}")

    assert isinstance(outcome, FunctionError)
    assert outcome.kind == "Unhandled"
    assert orjson.loads(outcome.payload) == payload


async def test_http_429_is_a_throttle(make_fn: MakeFn, app_url: str) -> None:
    outcome = await make_fn(f"{app_url}/status/429").invoke(b"{}")

    assert isinstance(outcome, Throttled)


async def test_http_connection_refused_is_invoke_failed(make_fn: MakeFn) -> None:
    outcome = await make_fn(f"http://127.0.0.1:{free_port()}/invoke").invoke(b"{}")

    assert isinstance(outcome, InvokeFailed)
    assert "cannot connect" in outcome.reason


async def test_http_unknown_host_is_invoke_failed(make_fn: MakeFn) -> None:
    outcome = await make_fn("http://esm-no-such-host.invalid/invoke").invoke(b"{}")

    assert isinstance(outcome, InvokeFailed)


async def test_http_timeout_on_the_real_clock(
    make_fn: MakeFn, app_url: str, seen: Recorder
) -> None:
    fn = make_fn(f"{app_url}/slow", Timeout=1)
    started = time.monotonic()

    outcome = await fn.invoke(b"{}", request_id="req-slow")

    assert 0.9 < time.monotonic() - started < 3
    assert isinstance(outcome, FunctionError)
    error = orjson.loads(outcome.payload)
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"].endswith(" req-slow Task timed out after 1.00 seconds")
    assert fn.in_flight == 0


# -- rie:// --------------------------------------------------------------------------------------


async def test_rie_error_body_without_header_is_a_function_error(
    make_fn: MakeFn, rie_url: str
) -> None:
    outcome = await make_fn(rie_url).invoke(b'{"fail": true}')

    assert outcome == FunctionError(b'{"errorType": "X", "errorMessage": "boom"}', "Unhandled")


async def test_rie_ok(make_fn: MakeFn, rie_url: str, seen: Recorder) -> None:
    outcome = await make_fn(rie_url).invoke(b'{"errorType": 1}')

    assert outcome == Ok(b'{"errorType": 1}')  # no errorMessage: a value, not an error
    assert seen.paths == ["/2015-03-31/functions/function/invocations"]


async def test_rie_one_request_in_flight(make_fn: MakeFn, rie_url: str, seen: Recorder) -> None:
    fn = make_fn(rie_url)

    outcomes = await asyncio.gather(*(fn.invoke(b'{"n": 1}') for _ in range(5)))

    assert outcomes == [Ok(b'{"n": 1}')] * 5
    assert seen.max_concurrent == 1
    assert len(seen.bodies) == 5


# -- lambda: -------------------------------------------------------------------------------------


def lambda_target(name: str) -> str:
    return f"lambda:arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


async def test_lambda_ok_carries_the_executed_version(
    make_fn: MakeFn, aws: AwsClients, seen: Recorder
) -> None:
    outcome = await make_fn(lambda_target("ok"), aws=aws).invoke(b'{"k": "v"}')

    assert outcome == Ok(b'{"k": "v"}', executed_version="7")
    assert seen.paths == [f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:ok"]
    assert seen.headers[0]["X-Amz-Invocation-Type"] == "RequestResponse"


async def test_lambda_function_error(make_fn: MakeFn, aws: AwsClients) -> None:
    outcome = await make_fn(lambda_target("fails"), aws=aws).invoke(b"{}")

    assert isinstance(outcome, FunctionError)
    assert outcome.kind == "Unhandled"
    assert orjson.loads(outcome.payload)["errorMessage"] == "boom"


async def test_lambda_throttle(make_fn: MakeFn, aws: AwsClients) -> None:
    outcome = await make_fn(lambda_target("busy"), aws=aws, Timeout=30).invoke(b"{}")

    assert outcome == Throttled("Rate exceeded")


async def test_lambda_api_error_is_invoke_failed(make_fn: MakeFn, aws: AwsClients) -> None:
    outcome = await make_fn(lambda_target("missing"), aws=aws).invoke(b"{}")

    assert isinstance(outcome, InvokeFailed)
    assert outcome.reason.startswith("ResourceNotFoundException")
