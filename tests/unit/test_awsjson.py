"""The lean JSON-protocol path: signatures botocore would make, botocore's error codes, retries.

The HTTP side runs against a small aiohttp server on loopback that answers as AWS does.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, NoCredentialsError

from esm.awsjson import JsonClient, SigV4, _amz_date
from esm.connectors.base import translate_aws_errors
from esm.errors import SourceError
from esm.http1 import Pool
from tests.support import self_signed_cert, serve_app


@pytest.mark.parametrize("token", [None, "SESSIONTOKEN"])
@pytest.mark.parametrize(
    "url", ["https://kinesis.eu-west-1.amazonaws.com", "http://127.0.0.1:4567/base/"]
)
def test_signature_is_botocores(token: str | None, url: str) -> None:
    body = b'{"ShardIterator":"AAAA","Limit":100}'
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "Kinesis_20131202.GetRecords",
    }
    theirs = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(
        Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token), "kinesis", "eu-west-1"
    ).add_auth(theirs)
    parts = urlsplit(url)
    ours = {"Host": parts.netloc, **headers}
    SigV4("kinesis", "eu-west-1").sign(
        ours,
        path=parts.path or "/",
        body=body,
        access_key="AKIDEXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG",
        token=token,
        amz_date=theirs.headers["X-Amz-Date"],
    )
    assert ours["Authorization"] == theirs.headers["Authorization"]
    assert ours.get("X-Amz-Security-Token") == theirs.headers.get("X-Amz-Security-Token")


def test_the_signing_time_is_now_in_utc() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    stamp = _amz_date()
    after = datetime.now(UTC)
    assert before <= datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) <= after


class Frozen:
    access_key = "AKID"
    secret_key = "SECRET"
    token = None


class Creds:
    async def get_frozen_credentials(self) -> Frozen:
        return Frozen()


Reply = Callable[[web.Request], web.Response]


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[Reply], list[dict[str, Any]]]]:
    """A loopback server answering with the replies queued in the list, recording requests."""
    replies: list[Reply] = []
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({"headers": dict(request.headers), "body": await request.json()})
        return replies.pop(0)(request)

    app = web.Application()
    app.router.add_post("/", handle)
    async with serve_app(app) as port:
        yield f"http://127.0.0.1:{port}", replies, seen


Transport = Callable[[str], Pool | aiohttp.ClientSession]


@pytest.fixture(params=["pool", "aiohttp"])
async def http(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    """What a client posts over: esm.http1's pool (the usual way), or an aiohttp session (the
    way through an HTTP proxy)."""
    made: list[Pool | aiohttp.ClientSession] = []

    def make(url: str) -> Pool | aiohttp.ClientSession:
        if request.param == "pool":
            made.append(Pool(url))
        else:
            made.append(aiohttp.ClientSession(skip_auto_headers=("User-Agent",)))
        return made[-1]

    yield make
    for transport in made:
        await transport.close()


def client(url: str, http: Transport, *, query: bool = False, creds: Any = Creds) -> JsonClient:
    return JsonClient(
        http=http(url),
        endpoint_url=url,
        region="us-east-1",
        signing_name="sqs" if query else "kinesis",
        target_prefix="AmazonSQS" if query else "Kinesis_20131202",
        json_version="1.0" if query else "1.1",
        credentials=creds() if creds is Creds else creds,
        user_agent="esm/test",
        query_compatible=query,
    )


async def test_a_call_posts_signed_json_and_returns_the_reply(server: Any, http: Any) -> None:
    url, replies, seen = server
    replies.append(lambda r: web.json_response({"Records": [], "NextShardIterator": "B"}))
    out = await client(url, http).call("GetRecords", {"ShardIterator": "A", "Limit": 5})
    assert out == {"Records": [], "NextShardIterator": "B"}
    (req,) = seen
    assert req["body"] == {"ShardIterator": "A", "Limit": 5}
    assert req["headers"]["X-Amz-Target"] == "Kinesis_20131202.GetRecords"
    assert req["headers"]["Content-Type"] == "application/x-amz-json-1.1"
    assert req["headers"]["User-Agent"] == "esm/test"
    assert req["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/")


async def test_errors_carry_botocores_code_and_status(server: Any, http: Any) -> None:
    url, replies, _ = server
    replies.append(
        lambda r: web.json_response(
            {"__type": "com.amazonaws.kinesis#ExpiredIteratorException", "message": "too old"},
            status=400,
        )
    )
    with pytest.raises(SourceError) as caught, translate_aws_errors("GetRecords s/0"):
        await client(url, http).call("GetRecords", {"ShardIterator": "A"})
    assert caught.value.code == "ExpiredIteratorException"
    assert not caught.value.retriable
    assert "too old" in str(caught.value)


async def test_sqs_takes_the_query_compatible_code(server: Any, http: Any) -> None:
    url, replies, seen = server
    replies.append(
        lambda r: web.json_response(
            {"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "no queue"},
            status=400,
            headers={"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"},
        )
    )
    with pytest.raises(ClientError) as caught:
        await client(url, http, query=True).call("ReceiveMessage", {"QueueUrl": url})
    assert caught.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert seen[0]["headers"]["x-amzn-query-mode"] == "true"  # as botocore asks for them


async def test_5xx_and_throttles_are_retried_three_times_in_all(server: Any, http: Any) -> None:
    url, replies, seen = server
    replies += [
        lambda r: web.Response(status=500, text="<html>boom</html>"),
        lambda r: web.json_response(
            {"__type": "ProvisionedThroughputExceededException"}, status=400
        ),
        lambda r: web.json_response({"ok": True}),
    ]
    assert await client(url, http).call("GetRecords", {}) == {"ok": True}
    assert len(seen) == 3
    replies += [lambda r: web.Response(status=503)] * 3
    with pytest.raises(ClientError) as caught:
        await client(url, http).call("GetRecords", {})
    assert caught.value.response["Error"]["Code"] == "503"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert len(seen) == 6


async def test_a_pooled_connection_dropped_unanswered_is_resent_without_using_an_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server answers once per connection and hangs up on the next request (a keep-alive
    timer firing as it arrives). Every call is one botocore retries on a closed connection, so
    the pool sends it again at once, and that is not one of the call's attempts."""
    monkeypatch.setattr("esm.awsjson.MAX_ATTEMPTS", 1)
    requests: list[bytes] = []

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(2):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                requests.append(await reader.readexactly(length))
                if len(requests) % 2 == 0:
                    break  # the second request on this connection: no answer
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(once, "127.0.0.1", 0)
    pool = Pool(f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}")
    try:
        api = client(f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}", lambda url: pool)
        assert await api.call("GetRecords", {"ShardIterator": "A"}) == {}
        assert await api.call("GetRecords", {"ShardIterator": "B"}) == {}
        # B twice: on the pooled connection the server hung up on, then on a new one
        assert requests == [b'{"ShardIterator":"A"}', *[b'{"ShardIterator":"B"}'] * 2]
    finally:
        await pool.close()
        srv.close()
        await srv.wait_closed()


async def test_client_errors_are_not_retried(server: Any, http: Any) -> None:
    url, replies, seen = server
    replies.append(lambda r: web.json_response({"__type": "InvalidArgumentException"}, status=400))
    with pytest.raises(ClientError):
        await client(url, http).call("GetRecords", {})
    assert len(seen) == 1


async def test_no_credentials_is_botocores_error(http: Any) -> None:
    with pytest.raises(NoCredentialsError):
        await client("http://127.0.0.1:9", http, creds=None).call("GetRecords", {})


async def test_a_connection_that_keeps_failing_is_a_retriable_source_error(http: Any) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError) as caught, translate_aws_errors("GetRecords s/0"):
        await client(f"http://127.0.0.1:{port}", http).call("GetRecords", {})
    assert caught.value.code == "EndpointConnectionError"
    assert caught.value.retriable


async def test_a_reply_that_is_not_json_is_a_source_error(server: Any, http: Any) -> None:
    url, replies, _ = server
    replies.append(lambda r: web.Response(status=200, text="<html>moto</html>"))
    with pytest.raises(SourceError) as caught, translate_aws_errors("GetRecords s/0"):
        await client(url, http).call("GetRecords", {})
    assert caught.value.code == "ResponseParserError"
    assert caught.value.retriable


async def test_the_error_type_header_names_the_code_when_the_body_does_not(
    server: Any, http: Any
) -> None:
    url, replies, _ = server
    replies.append(
        lambda r: web.Response(
            status=400,
            text="",
            headers={"x-amzn-ErrorType": "ResourceNotFoundException:http://internal/"},
        )
    )
    with pytest.raises(ClientError) as caught:
        await client(url, http).call("GetRecords", {})
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


# -- AwsClients: which transport, which TLS settings ---------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    return monkeypatch


async def test_calls_go_over_esms_pool_and_over_aiohttp_only_behind_a_proxy(
    aws_env: pytest.MonkeyPatch,
) -> None:
    from esm.aws import AwsClients

    aws = AwsClients(endpoint_url="http://10.9.8.7:4567")
    try:
        assert isinstance((await aws.json("kinesis", "us-east-1"))._http, Pool)
    finally:
        await aws.aclose()
    aws_env.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    aws = AwsClients(endpoint_url="http://10.9.8.7:4567")
    try:
        assert isinstance((await aws.json("kinesis", "us-east-1"))._http, aiohttp.ClientSession)
    finally:
        await aws.aclose()


async def test_https_endpoints_are_verified_against_botocores_ca_bundle(
    aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``AWS_CA_BUNDLE`` (botocore's setting) is what the lean path trusts, as botocore does."""
    import ssl

    from esm.aws import AwsClients

    cert, key = self_signed_cert(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"Records": [], "NextShardIterator": "B"})

    app = web.Application()
    app.router.add_post("/", handle)
    async with serve_app(app, ssl_context=tls) as port:
        url = f"https://127.0.0.1:{port}"
        aws = AwsClients(endpoint_url=url)
        try:
            with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"):
                with translate_aws_errors("GetRecords s/0"):
                    await (await aws.json("kinesis", "us-east-1")).call("GetRecords", {})
        finally:
            await aws.aclose()
        aws_env.setenv("AWS_CA_BUNDLE", str(cert))
        aws = AwsClients(endpoint_url=url)
        try:
            out = await (await aws.json("kinesis", "us-east-1")).call("GetRecords", {})
            assert out == {"Records": [], "NextShardIterator": "B"}
        finally:
            await aws.aclose()
