"""The Lambda API on a loopback port against hostile clients: idle and slow sockets, more
connections than the cap, stalled bodies, malformed HTTP, operations esm does not serve, and a
seeded fuzz of a few hundred raw requests. What is checked is what a client sees (status, error
name, the connection closed) and what the operator sees (log lines, sockets held)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from esm.api import ApiServer, serve
from esm.api_server import ApiLimits
from esm.clock import RealClock
from esm.config import parse_config
from esm.connectors.memory import MemoryBroker
from esm.engine import Engine
from tests.daemon import Daemon
from tests.support import eventually, unique
from tests.unit.test_api_invoke import FakeBackend

pytestmark = pytest.mark.integration

REGION, ACCOUNT = "us-east-1", "123456789012"
INVOKE = "/2015-03-31/functions/{}/invocations"
SQS = f"arn:aws:sqs:{REGION}:{ACCOUNT}:"
ERROR_NAMES = {
    "InvalidParameterValueException",
    "InvalidRequestContentException",
    "ResourceNotFoundException",
    "ResourceConflictException",
    "ResourceInUseException",
    "RequestTooLargeException",
    "UnknownOperationException",
    "MalformedHttpRequestException",
    "RequestTimeoutException",
    "RequestEntityTooLargeException",
    "InternalFailure",  # 501: a Lambda operation esm does not implement (DeleteFunction …)
    "ValidationException",
}


# -- raw HTTP --------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def error(self) -> tuple[int, str, dict[str, Any]]:
        return self.status, self.headers["x-amzn-errortype"], json.loads(self.body)


def parse_answer(data: bytes, *, head: bool = False) -> Answer | None:
    """The final answer in ``data`` (interim 1xx skipped), None when the server sent nothing."""
    while data:
        top, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"a truncated answer: {data[:300]!r}"
        lines = top.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:
            data = rest
            continue
        size = 0 if head or status in (204, 304) else int(headers.get("content-length", "0"))
        assert len(rest) >= size, f"a truncated body: {data[:300]!r}"
        return Answer(status, headers, rest[:size])
    return None


async def exchange(port: int, data: bytes, *, timeout: float = 20.0) -> bytes:
    """Write ``data`` on a new connection and read until the server closes it (a reset ends
    the read too: a server closing with unread bytes resets the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(data)
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                received += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return received


def request(method: str, path: str, body: bytes = b"", *headers: str) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    if body and not any(
        h.lower().startswith(("content-length", "transfer-encoding")) for h in headers
    ):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def server_sockets(port: int) -> int:
    """Sockets this process holds whose local port is ``port`` (the listening one aside): the
    connections the server has accepted and not yet closed."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] != "0A":  # 0A: LISTEN
                    inodes.add(fields[9])
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
    return held


needs_proc = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


@contextlib.contextmanager
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    for record in caplog.records:
        if record.name.startswith("esm"):
            assert "\n" not in record.getMessage() and record.exc_info is None, record.getMessage()


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


async def served(backend: Any, limits: ApiLimits) -> ApiServer:
    return await serve(backend, port=0, limits=limits)


@pytest.fixture
async def server(backend: FakeBackend) -> AsyncIterator[ApiServer]:
    server = await served(backend, ApiLimits(max_connections=16, read_timeout_s=1.0))
    yield server
    await server.aclose()


# -- connections: the cap and the header deadline ---------------------------------------------------


async def open_idle(port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return list(
        await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(n)))
    )


async def closed_at(reader: asyncio.StreamReader, started: float) -> tuple[float, bytes]:
    """When the server closed this idle connection (seconds after ``started``), and what it
    sent first."""
    try:
        data = await asyncio.wait_for(reader.read(), 30)
    except ConnectionResetError:
        data = b""
    return time.monotonic() - started, data


@needs_proc
async def test_idle_sockets_are_capped_closed_after_the_read_timeout_and_requests_still_served(
    server: ApiServer, backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's 1,000 idle sockets, scaled down: the server never keeps more than the cap
    (a connection past it is answered 503 and closed at once), serves a request while idle
    sockets are open, and closes every idle one once the read timeout has passed, never sooner."""
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, server.open_connections)
            await asyncio.sleep(0.002)

    with no_errors_logged(caplog):
        watcher = asyncio.create_task(watch())
        started = time.monotonic()
        idle = await open_idle(server.port, 10)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:  # 10 idle ones open
            async with session.post(f"{server.url}{INVOKE.format('f')}", data=b"{}") as resp:
                assert (resp.status, await resp.read()) == (200, b'{"ok":true}')
        idle += await open_idle(server.port, 40)  # 50 idle against a cap of 16
        closings = [asyncio.create_task(closed_at(reader, started)) for reader, _ in idle]
        await eventually(lambda: sum(t.done() for t in closings) >= 50 - 16, timeout=10)
        # what the process holds is what the cap counts
        await eventually(lambda: server_sockets(server.port) == server.open_connections)
        assert server.open_connections <= 16
        outcomes = await asyncio.gather(*closings)
        watcher.cancel()
        for _, writer in idle:
            writer.close()
    assert peak <= 16
    refused = [parse_answer(data) for _, data in outcomes if data]
    assert len(refused) >= 50 - 16
    for answer in refused:
        assert answer is not None
        status, name, error = answer.error()
        assert (status, name, error["Type"]) == (503, "ServiceException", "Service")
        assert "ApiMaxConnections" in error["Message"]
        assert answer.headers["retry-after"] == "1" and "x-amzn-requestid" in answer.headers
    timed_out = [elapsed for elapsed, data in outcomes if not data]
    assert len(refused) + len(timed_out) == 50
    assert len(timed_out) >= 15
    assert min(timed_out) >= 0.95  # closed for being silent 1 s, not before
    await eventually(lambda: server_sockets(server.port) == 0 and server.open_connections == 0)
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and all(r.levelno == logging.WARNING for r in refusals)
    assert len(refusals) <= 2  # one line per 10 s, not one per connection
    assert backend.calls == [("f", b"{}", None)]


@needs_proc
async def test_a_client_trickling_its_headers_is_closed_by_the_deadline(
    server: ApiServer,
) -> None:
    """Slowloris: a byte every 0.2 s keeps no connection past the read timeout (1 s), measured
    from the connection's start, not from its last byte."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    closed = asyncio.create_task(closed_at(reader, started))
    line = request("POST", INVOKE.format("f"))
    with contextlib.suppress(ConnectionError):
        for byte in line[:-4]:  # never the blank line that ends the headers
            if closed.done():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(0.2)
    elapsed, data = await closed
    writer.close()
    assert data == b""  # nothing to answer: no request arrived
    assert 0.95 <= elapsed < 0.2 * len(line)
    await eventually(lambda: server_sockets(server.port) == 0)


async def test_a_stalled_body_is_answered_408_and_closed(
    server: ApiServer, backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    with no_errors_logged(caplog):
        started = time.monotonic()
        data = await exchange(
            server.port,
            request("POST", INVOKE.format("f"), b'{"a": 1', "Content-Length: 100"),
            timeout=30,
        )
    answer = parse_answer(data)
    assert answer is not None
    status, name, error = answer.error()
    assert (status, name, error["Type"]) == (408, "RequestTimeoutException", "User")
    assert error["message"] == (
        "Reading the request timed out: no byte of the body arrived for 1 seconds (7 bytes read)."
    )
    assert answer.headers["connection"] == "close" and "x-amzn-requestid" in answer.headers
    assert time.monotonic() - started >= 0.95
    (line,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert line.getMessage() == (
        f"POST {INVOKE.format('f')} from 127.0.0.1: no body byte for 1s after 7 bytes: answered 408"
    )
    assert backend.calls == []


async def test_esm_run_applies_the_api_settings(tmp_path: Path) -> None:
    """The daemon's Settings reach the server: ApiMaxConnections 2, ApiReadTimeoutSeconds 1."""
    (tmp_path / "esm.yaml").write_text(
        "Settings: {ApiPort: 0, Store: 'memory://', ApiMaxConnections: 2, "
        "ApiReadTimeoutSeconds: 1}\n"
        "Functions:\n  f: {Target: 'python:tests.fixtures.handlers.async_echo'}\n"
    )
    daemon = Daemon(["run", str(tmp_path / "esm.yaml")])
    try:
        found = await eventually(
            lambda: re.search(r"Lambda API at http://127.0.0.1:(\d+)", daemon.output),
            timeout=30,
            what=daemon.output,
        )
        port = int(found.group(1))
        started = time.monotonic()
        idle = await open_idle(port, 3)
        outcomes = await asyncio.gather(*(closed_at(reader, started) for reader, _ in idle))
        for _, writer in idle:
            writer.close()
        answers = [parse_answer(data) for _, data in outcomes if data]
        assert [a.error()[:2] for a in answers if a] == [(503, "ServiceException")]
        timed_out = [elapsed for elapsed, data in outcomes if not data]
        assert len(timed_out) == 2 and min(timed_out) >= 0.95
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert "refused 1 new ones with 503" in daemon.output


async def test_a_client_gone_mid_body_is_an_info_line(
    server: ApiServer, backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    with no_errors_logged(caplog):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request("POST", INVOKE.format("f"), b'{"a": 1', "Content-Length: 100"))
        await writer.drain()
        await eventually(lambda: server.open_connections == 1)
        writer.close()
        await eventually(lambda: any(r.name == "esm.api" for r in caplog.records))
    (line,) = [r for r in caplog.records if r.name == "esm.api"]
    assert line.levelno == logging.INFO
    assert line.getMessage() == (
        f"POST {INVOKE.format('f')}: the client went away (Connection lost)"
    )
    assert backend.calls == []
    await eventually(lambda: server.open_connections == 0)


@pytest.mark.parametrize(
    ("code", "retried"),
    [
        ("RequestTimeoutException", True),
        ("ServiceException", False),  # the 503 past the cap: retried for its status instead
        ("UnknownOperationException", False),
        ("MalformedHttpRequestException", False),
    ],
)
def test_which_of_these_errors_botocore_retries_by_name(code: str, retried: bool) -> None:
    """Why the stalled body is a 408 RequestTimeoutException: botocore's standard retry mode
    counts the name as transient."""
    from botocore.retries.standard import RetryContext, TransientRetryableChecker

    context = RetryContext(attempt_number=1, parsed_response={"Error": {"Code": code}})
    assert TransientRetryableChecker().is_retryable(context) is retried


# -- malformed HTTP --------------------------------------------------------------------------------

MALFORMED = {
    "request line": b"GET / HTTP/1.1 garbage\r\n\r\n",
    "method": b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "header": request("POST", INVOKE.format("f"), b"{}", "Bad Header Name: x"),
    "header line over 8190 bytes": request("GET", "/health", b"", "X-Big: " + "a" * 9000),
    "too many headers": request("GET", "/health", b"", *(f"X-N{i}: v" for i in range(200))),
    "chunk size": request(
        "POST", INVOKE.format("f"), b"zz\r\nabc\r\n0\r\n\r\n", "Transfer-Encoding: chunked"
    ),
    "content length": request("POST", INVOKE.format("f"), b"{}", "Content-Length: abc"),
    "two content lengths": request(
        "POST", INVOKE.format("f"), b"{}", "Content-Length: 2", "Content-Length: 3"
    ),
    "path bytes": b"POST /2015-03-31/functions/\xff\xfe/invocations HTTP/1.1\r\nHost: x\r\n\r\n",
    "TLS on the HTTP port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_requests_are_400_and_one_warning_line(
    server: ApiServer, backend: FakeBackend, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with no_errors_logged(caplog):
        answer = parse_answer(await exchange(server.port, data))
    assert answer is not None
    status, name, error = answer.error()
    assert (status, name, error["Type"]) == (400, "MalformedHttpRequestException", "User")
    assert error["message"].startswith("The request is not valid HTTP/1.1: ")
    assert len(error["message"]) < 300
    uuid.UUID(answer.headers["x-amzn-requestid"])
    (line,) = [r for r in caplog.records if r.name.startswith("esm")]
    assert line.levelno == logging.WARNING
    assert line.getMessage().startswith("refused a malformed request from 127.0.0.1: ")
    assert backend.calls == [] and backend.events == []


async def test_a_body_that_cannot_be_decompressed_is_malformed(
    server: ApiServer, backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    with no_errors_logged(caplog):
        data = await exchange(
            server.port,
            request("POST", INVOKE.format("f"), b"not gzip at all", "Content-Encoding: gzip"),
        )
    answer = parse_answer(data)
    assert answer is not None
    assert answer.error()[:2] == (400, "MalformedHttpRequestException")
    assert backend.calls == []


async def test_undecodable_header_bytes_are_quoted_not_a_500(
    server: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    with no_errors_logged(caplog):
        data = await exchange(
            server.port,
            request("POST", INVOKE.format("f"), b"{}", "X-Amz-Invocation-Type: \xff\xfe"),
        )
    answer = parse_answer(data)
    assert answer is not None
    status, name, error = answer.error()
    assert (status, name) == (400, "InvalidParameterValueException")
    assert error["message"].startswith("1 validation error detected: Value '\\udcff\\udcfe'")


# -- boto3 against what esm does not serve ---------------------------------------------------------


@pytest.fixture
def lambda_client(server: ApiServer) -> Iterator[BaseClient]:
    client = boto3.client(
        "lambda",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )
    yield client
    client.close()


async def client_error(call: Callable[[], Any]) -> ClientError:
    with pytest.raises(ClientError) as info:
        await asyncio.to_thread(call)
    return info.value


async def test_boto3_names_an_operation_esm_does_not_implement(lambda_client: BaseClient) -> None:
    """A Lambda operation esm does not serve: 501 InternalFailure saying so, which botocore's
    standard retry mode does not retry (it will never succeed)."""
    error = await client_error(lambda: lambda_client.list_layers())
    assert error.response["Error"]["Code"] == "InternalFailure"
    assert error.response["Error"]["Message"].startswith("esm does not support ListLayers: ")
    meta = error.response["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == 501 and meta["RetryAttempts"] == 0
    uuid.UUID(meta["RequestId"])


async def test_boto3_names_a_wrong_method_on_a_served_path(lambda_client: BaseClient) -> None:
    def as_get(request: Any, **_: Any) -> None:
        request.method = "GET"

    lambda_client.meta.events.register("before-send.lambda.Invoke", as_get)
    error = await client_error(lambda: lambda_client.invoke(FunctionName="f", Payload=b"{}"))
    assert error.response["Error"]["Code"] == "UnknownOperationException"
    assert "(that path takes POST)" in error.response["Error"]["Message"]
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# -- the fuzz --------------------------------------------------------------------------------------


@pytest.fixture
async def engine_server() -> AsyncIterator[ApiServer]:
    """The whole API (Invoke, control plane, /metrics) of an in-memory engine."""
    config = parse_config(
        {
            "Settings": {
                "Region": REGION,
                "AccountId": ACCOUNT,
                "Store": f"memory://{unique('fz')}",
            },
            "Functions": {
                "f": {"Target": "python:tests.fixtures.handlers.async_echo"},
                "boom": {"Target": "python:tests.fixtures.handlers.async_fail"},
            },
        }
    )
    broker = MemoryBroker(RealClock())
    broker.create_queue(SQS + "q1")
    engine = Engine(config, sources=broker)
    await engine.start()
    server = await served(engine, ApiLimits(max_connections=64, read_timeout_s=0.5))
    yield server
    await server.aclose()
    await engine.aclose(deadline_s=0)


NAMES = [
    "f",
    "boom",
    "nope",
    f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f",
    "f:$LATEST",
    "f%3A7",
    "x" * 300,
    "%00",
    "%ff%fe",
    "..%2F..",
    "f%20g",
    "%E2%9C%93",
]


def fuzz_path(rng: random.Random) -> str:
    name = rng.choice(NAMES)
    uid = rng.choice([str(uuid.UUID(int=rng.getrandbits(128))), "not-a-uuid", "%ff", "a" * 500])
    query = rng.choice(
        [
            "",
            "?Qualifier=" + rng.choice(["$LATEST", "7", "%ff", "a" * 200, "", "x&Qualifier=y"]),
            "?MaxItems=" + rng.choice(["-1", "0", "5", "abc", "99999999999999999999"]),
            "?Marker=" + rng.choice(["", "%ff", "bm9wZQ", "!!!"]),
            "?FunctionName=" + name + "&EventSourceArn=" + rng.choice([SQS + "q1", "arn:x"]),
        ]
    )
    path = rng.choice(
        [
            INVOKE.format(name),
            "/2015-03-31/event-source-mappings",
            "/2015-03-31/event-source-mappings/",
            "/2015-03-31/event-source-mappings/" + uid,
            f"/2019-09-25/functions/{name}/event-invoke-config",
            f"/2019-09-25/functions/{name}/event-invoke-config/list",
            "/2015-03-31/functions",
            f"/2015-03-31/functions/{name}",
            f"/2015-03-31/functions/{name}/configuration",
            f"/2017-10-31/functions/{name}/concurrency",
            f"/2019-09-30/functions/{name}/concurrency",
            "/metrics",
            "/",
            "/2018-10-31/layers",
            "/" + "".join(rng.choice("abc/%.-~:") for _ in range(rng.randint(1, 60))),
            "//2015-03-31/functions/f/invocations",
            "http://127.0.0.1/2015-03-31/functions",
        ]
    )
    return path + query


def fuzz_body(rng: random.Random) -> bytes:
    depth = rng.choice([1000, 1024, 1025, 5000])
    return rng.choice(
        [
            b"",
            b"{}",
            json.dumps({"FunctionName": "f", "EventSourceArn": SQS + "q1"}).encode(),
            json.dumps(
                {
                    "FunctionName": rng.choice(NAMES),
                    "EventSourceArn": rng.choice([SQS + "q1", SQS + "missing", "arn:aws:x", 7]),
                    "BatchSize": rng.choice([-5, 0, 1, 10_001, "ten", None, 1e300]),
                    "FilterCriteria": rng.choice(
                        [{"Filters": [{"Pattern": "{not json"}]}, {"Filters": "x"}, [], None]
                    ),
                    "Enabled": rng.choice([True, "yes", None]),
                }
            ).encode(),
            json.dumps(
                {
                    "ReservedConcurrentExecutions": rng.choice([-1, 0, 5, 10**12, "5", None]),
                    "MaximumRetryAttempts": rng.choice([-1, 0, 2, 3, "x"]),
                    "MaximumEventAgeInSeconds": rng.choice([0, 60, 21601, 1.5]),
                    "DestinationConfig": rng.choice(
                        [{"OnFailure": {"Destination": "arn:x"}}, {"OnSuccess": 7}, "x", {}]
                    ),
                }
            ).encode(),
            b"[" * depth + b"]" * depth,
            b'{"a": ' * depth + b"1" + b"}" * depth,
            b'{"a": "\xff\xfe"}',
            bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))),
            b'{"a": NaN}',
            b"null",
            b"[1, 2]",
            b'"\\ud800"',
            b"1" * 400,
            b'{"a": "' + b"x" * 200_000 + b'"}',
        ]
    )


def fuzz_headers(rng: random.Random) -> list[str]:
    benign = [
        "X-Amz-Invocation-Type: "
        + rng.choice(["RequestResponse", "Event", "DryRun", "bogus", "", "\xff"]),
        "X-Amz-Log-Type: " + rng.choice(["None", "Tail", "x"]),
        "X-Amz-Client-Context: " + rng.choice(["e30=", "!!!", "a" * 5000]),
        "Content-Type: " + rng.choice(["application/json", "text/plain", "", "multipart/x"]),
        "Content-Encoding: " + rng.choice(["gzip", "deflate", "br", "identity", "bogus"]),
        "Expect: 100-continue",
        "X-Amz-Invocation-Type: Event",  # perhaps a second one
        "X-Bin: \xff\xfe\x80",
    ]
    hostile = [
        "X-Big: " + "a" * rng.choice([8000, 9000, 20_000]),
        "Garbage",
        "Bad Name: x",
        *(f"X-N{i}: v" for i in range(150)),
    ]
    picked = rng.sample(benign, rng.choice([0, 0, 1, 1, 2, 3]))
    if rng.random() < 0.1:
        picked.append(rng.choice(hostile[:3]) if rng.random() < 0.8 else hostile[3:])
    return [h for group in picked for h in ([group] if isinstance(group, str) else group)]


def fuzz_request(rng: random.Random) -> tuple[str, bytes]:
    method = rng.choice(
        ["GET", "GET", "POST", "POST", "POST", "PUT", "PUT", "DELETE", "PATCH", "HEAD", "FOO"]
    )
    body = fuzz_body(rng)
    headers = fuzz_headers(rng)
    framing = rng.choice(["exact"] * 12 + ["short", "long", "long", "none", "chunked", "chunked"])
    framing = framing if rng.random() > 0.05 else rng.choice(["bad-chunks", "bad"])
    match framing:
        case "exact":
            headers.append(f"Content-Length: {len(body)}")
        case "short":
            headers.append(f"Content-Length: {max(0, len(body) - 5)}")
        case "long":  # the body never completes: a 408 after the read timeout
            headers.append(f"Content-Length: {len(body) + 10}")
        case "chunked":
            headers.append("Transfer-Encoding: chunked")
            body = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
        case "bad-chunks":
            headers.append("Transfer-Encoding: chunked")
            body = b"zz\r\n" + body + b"\r\n0\r\n\r\n"
        case "bad":
            headers.append("Content-Length: " + rng.choice(["-1", "abc", "1 2", "+5"]))
    return method, request(method, fuzz_path(rng), body, *headers)


async def test_fuzzed_requests_get_named_json_errors_and_no_error_is_logged(
    engine_server: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """300 seeded random requests: no 5xx, every answer has a request id, every error is JSON
    with ``x-amzn-ErrorType`` (one of the names esm sends), and nothing is logged at ERROR."""
    rng = random.Random(20_261_205)
    cases = [fuzz_request(rng) for _ in range(300)]
    gate = asyncio.Semaphore(24)

    async def send(data: bytes) -> bytes:
        async with gate:
            return await exchange(engine_server.port, data)

    with no_errors_logged(caplog):
        started = time.monotonic()
        received = await asyncio.gather(*(send(data) for _, data in cases))
        took = time.monotonic() - started
    seen: Counter[str] = Counter()
    for (method, data), raw in zip(cases, received, strict=True):
        answer = parse_answer(raw, head=method == "HEAD")
        if answer is None:  # closed unanswered: headers never completed (or a reset)
            seen["closed"] += 1
            continue
        what = f"{data[:120]!r} -> {answer.status} {answer.body[:300]!r}"
        assert answer.status < 500 or answer.status == 501, what
        uuid.UUID(answer.headers["x-amzn-requestid"])
        if answer.status >= 400:
            assert answer.headers["content-type"].startswith("application/json"), what
            name = answer.headers["x-amzn-errortype"]
            assert name in ERROR_NAMES, what
            if method != "HEAD":
                doc = json.loads(answer.body)
                assert isinstance(doc.get("message", doc.get("Message")), str), what
            seen[name] += 1
        else:
            seen[str(answer.status)] += 1
    # the fuzz reached what it is for
    for name in (
        "200",
        "UnknownOperationException",
        "MalformedHttpRequestException",
        "RequestTimeoutException",
        "InvalidRequestContentException",
        "InvalidParameterValueException",
        "ResourceNotFoundException",
    ):
        assert seen[name] > 0, seen
    assert took < 30, took
