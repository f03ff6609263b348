"""Destinations against moto's server and small aiohttp servers: what lands where
(docs/semantics.md §6.7, §8.5, §8.6), and what a failed delivery looks like."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from esm.aws import AwsClients
from esm.clock import RealClock, VirtualClock
from esm.destinations import (
    DeliveryError,
    MemoryDestinations,
    build_dead_letter,
    build_destination,
)
from tests.support import ACCOUNT, REGION, Queues, eventually, unique

pytestmark = pytest.mark.integration

T = TypeVar("T")
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders:$LATEST"


def invocation(condition: str = "RetriesExhausted") -> dict[str, Any]:
    return {
        "version": "1.0",
        "timestamp": "2019-11-14T18:16:05.568Z",
        "requestContext": {
            "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            "functionArn": FUNCTION_ARN,
            "condition": condition,
            "approximateInvokeCount": 3 if condition != "Success" else 1,
        },
        "requestPayload": {"ORDER_IDS": ["a", "b"], "note": "héllo"},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "responsePayload": {"errorMessage": "boom"},
    }


# The DLQ's ErrorMessage: "a" then 600 two-byte characters (1,201 bytes); the first KB cut on a
# character boundary is "a" + 511 "é" (1,023 bytes).
LONG_ERROR = "a" + "é" * 600
CUT_ERROR = "a" + "é" * 511


async def drive(clock: VirtualClock, aw: Awaitable[T]) -> T:
    """Await ``aw`` while moving virtual time to each sleeper's deadline (retry waits)."""
    task = asyncio.ensure_future(aw)
    while not task.done():
        if not await clock.advance_to_next():
            await asyncio.sleep(0.005)
    return task.result()


async def _serve(app: web.Application) -> AsyncIterator[str]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@dataclass
class Seen:
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 2xx


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
async def server(seen: Seen, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """An app endpoint (``/hook``) and Lambda's Invoke API (``/2015-03-31/functions/…``)."""

    async def hook(request: web.Request) -> web.Response:
        seen.requests.append((request.path, dict(request.headers), await request.read()))
        status = seen.statuses.pop(0) if seen.statuses else 200
        return web.Response(status=status, text="busy" if status >= 400 else "ok")

    async def invoke(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        seen.requests.append((name, dict(request.headers), await request.read()))
        status = seen.statuses.pop(0) if seen.statuses else 202
        if status == 202:
            return web.Response(status=202)
        error = {429: "TooManyRequestsException", 404: "ResourceNotFoundException"}[status]
        return web.json_response(
            {"Type": "User", "message": f"{error} for {name}"},
            status=status,
            headers={"X-Amzn-ErrorType": error},
        )

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # signing needs some
        monkeypatch.setenv(name, os.environ.get(name, "testing"))
    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/2015-03-31/functions/{name}/invocations", invoke)
    async for url in _serve(app):
        yield url


async def receive_one(aws: AwsClients, url: str) -> dict[str, Any]:
    sqs = await aws.client("sqs", REGION)
    for _ in range(20):
        resp = await sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
        )
        messages = resp.get("Messages", [])
        if messages:
            assert len(messages) == 1, messages
            return dict(messages[0])
    raise AssertionError(f"nothing arrived on {url}")


# -- SQS ------------------------------------------------------------------------------------------


async def test_sqs_destination_body_is_the_record(aws: AwsClients) -> None:
    arn, url = await Queues(aws).create(unique("dest"))
    dest = build_destination(arn, aws=aws, clock=RealClock())
    record = invocation()

    await dest.send(record)

    message = await receive_one(aws, url)
    assert message["Body"] == orjson.dumps(record).decode()  # compact JSON
    assert json.loads(message["Body"]) == record
    await dest.send(record)  # the queue URL was resolved once, and is reused
    assert await Queues(aws).total(url) == 2
    await dest.aclose()


async def test_sqs_dead_letter_is_the_event_with_attributes(aws: AwsClients) -> None:
    arn, url = await Queues(aws).create(unique("dlq"))
    dlq = build_dead_letter(arn, aws=aws, clock=RealClock())
    payload = '{"order": 7, "note": "ünïcode"}'.encode()

    await dlq.send_dead_letter(
        payload, request_id="req-1", error_code=200, error_message=LONG_ERROR
    )

    message = await receive_one(aws, url)
    assert message["Body"] == payload.decode()
    attrs = message["MessageAttributes"]
    assert attrs["RequestID"] == {"DataType": "String", "StringValue": "req-1"}
    assert attrs["ErrorCode"] == {"DataType": "Number", "StringValue": "200"}
    assert attrs["ErrorMessage"] == {"DataType": "String", "StringValue": CUT_ERROR}
    assert len(attrs["ErrorMessage"]["StringValue"].encode()) == 1023


async def test_sqs_dead_letter_leaves_out_empty_attributes(aws: AwsClients) -> None:
    arn, url = await Queues(aws).create(unique("dlq"))
    dlq = build_dead_letter(arn, aws=aws, clock=RealClock())

    await dlq.send_dead_letter(b"{}", request_id="req-2", error_code=429, error_message="")

    attrs = (await receive_one(aws, url))["MessageAttributes"]
    assert set(attrs) == {"RequestID", "ErrorCode"}
    assert attrs["ErrorCode"]["StringValue"] == "429"


async def test_missing_queue_is_a_delivery_error(
    aws: AwsClients, caplog: pytest.LogCaptureFixture
) -> None:
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{unique('missing')}"
    clock = VirtualClock()
    dest = build_destination(arn, aws=aws, clock=clock)

    with pytest.raises(DeliveryError) as err:
        await drive(clock, dest.send(invocation()))

    assert err.value.target == arn
    assert arn in str(err.value)
    assert "NonExistentQueue" in str(err.value) or "QueueDoesNotExist" in str(err.value)
    assert not err.value.retriable  # permanent: not retried, no time spent waiting
    assert clock.now() == VirtualClock().now()
    assert any(arn in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


# -- SNS ------------------------------------------------------------------------------------------


async def _topic_with_queue(aws: AwsClients) -> tuple[str, str]:
    sns = await aws.client("sns", REGION)
    topic_arn = (await sns.create_topic(Name=unique("topic")))["TopicArn"]
    queue_arn, url = await Queues(aws).create(unique("sub"))
    await sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return topic_arn, url


async def test_sns_destination_message_is_the_record(aws: AwsClients) -> None:
    topic_arn, url = await _topic_with_queue(aws)
    dest = build_destination(topic_arn, aws=aws, clock=RealClock())
    record = invocation("Success")

    await dest.send(record)

    envelope = json.loads((await receive_one(aws, url))["Body"])
    assert envelope["TopicArn"] == topic_arn
    assert envelope["Message"] == orjson.dumps(record).decode()
    assert json.loads(envelope["Message"]) == record


async def test_sns_dead_letter_is_the_event_with_attributes(aws: AwsClients) -> None:
    topic_arn, url = await _topic_with_queue(aws)
    dlq = build_dead_letter(topic_arn, aws=aws, clock=RealClock())

    await dlq.send_dead_letter(
        b'{"order": 7}', request_id="req-3", error_code=500, error_message=LONG_ERROR
    )

    envelope = json.loads((await receive_one(aws, url))["Body"])
    assert envelope["Message"] == '{"order": 7}'
    assert envelope["MessageAttributes"] == {
        "RequestID": {"Type": "String", "Value": "req-3"},
        "ErrorCode": {"Type": "Number", "Value": "500"},
        "ErrorMessage": {"Type": "String", "Value": CUT_ERROR},
    }


# -- EventBridge ----------------------------------------------------------------------------------


async def test_eventbridge_destination_puts_a_lambda_event(aws: AwsClients) -> None:
    events = await aws.client("events", REGION)
    bus = unique("bus")
    bus_arn = (await events.create_event_bus(Name=bus))["EventBusArn"]
    queue_arn, url = await Queues(aws).create(unique("rule-target"))
    rule = unique("rule")
    await events.put_rule(
        Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": ["lambda"]})
    )
    await events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])
    dest = build_destination(bus_arn, aws=aws, clock=RealClock())

    for condition in ("Success", "RetriesExhausted"):
        record = invocation(condition)
        await dest.send(record)
        event = json.loads((await receive_one(aws, url))["Body"])
        await Queues(aws).drain(url)
        assert event["source"] == "lambda"
        result = "Success" if condition == "Success" else "Failure"
        assert event["detail-type"] == f"Lambda Function Invocation Result - {result}"
        assert event["detail"] == record
        assert event["resources"] == [bus_arn, FUNCTION_ARN]  # (moto leaves out "account")


async def test_eventbridge_missing_bus_is_a_delivery_error(aws: AwsClients) -> None:
    bus_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{unique('nobus')}"
    clock = VirtualClock()
    dest = build_destination(bus_arn, aws=aws, clock=clock)

    with pytest.raises(DeliveryError) as err:
        await drive(clock, dest.send(invocation()))
    assert bus_arn in str(err.value)


# -- S3 -------------------------------------------------------------------------------------------


async def test_s3_destination_puts_the_record_at_the_key(aws: AwsClients) -> None:
    s3 = await aws.client("s3", "")
    bucket = unique("records")
    await s3.create_bucket(Bucket=bucket)
    dest = build_destination(f"arn:aws:s3:::{bucket}", aws=aws, clock=RealClock())
    record = invocation() | {"payload": '{"Records": []}'}
    key = "aws/lambda/async/orders/2019/11/14/2019-11-14T18.16.05-0e1c1a0e-0000-4000-8000-000000000000"

    await dest.send(record, s3_key=key)

    obj = await s3.get_object(Bucket=bucket, Key=key)
    async with obj["Body"] as body:
        assert json.loads(await body.read()) == record
    assert obj["ContentType"] == "application/json"


async def test_s3_destination_needs_a_key(aws: AwsClients) -> None:
    dest = build_destination("arn:aws:s3:::some-bucket", aws=aws, clock=RealClock())
    with pytest.raises(DeliveryError, match="s3_key"):
        await dest.send(invocation())


# -- Lambda ---------------------------------------------------------------------------------------


async def test_lambda_destination_local_function(aws: AwsClients) -> None:
    calls: list[tuple[str, bytes]] = []

    async def local_invoke(name: str, payload: bytes) -> None:
        calls.append((name, payload))

    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:audit"
    dest = build_destination(
        arn, aws=aws, clock=RealClock(), local_functions={"audit"}, local_invoke=local_invoke
    )
    record = invocation("Success")

    await dest.send(record)

    assert calls == [("audit", orjson.dumps(record))]


async def test_lambda_destination_remote_invokes_with_event_type(server: str, seen: Seen) -> None:
    aws = AwsClients(endpoint_url=server)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:elsewhere:live"
    try:
        dest = build_destination(arn, aws=aws, clock=RealClock(), local_functions={"audit"})
        record = invocation()
        await dest.send(record)
    finally:
        await aws.aclose()

    [(name, headers, body)] = seen.requests
    assert name == arn
    assert headers["X-Amz-Invocation-Type"] == "Event"
    assert json.loads(body) == record


async def test_lambda_destination_retries_throttles(server: str, seen: Seen) -> None:
    aws = AwsClients(endpoint_url=server)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:busy"
    clock = VirtualClock()
    seen.statuses = [429, 429]  # then 202
    try:
        dest = build_destination(arn, aws=aws, clock=clock)
        await drive(clock, dest.send(invocation()))
    finally:
        await aws.aclose()

    assert len(seen.requests) == 3
    # at least one retry waited on the engine's clock (the client may also retry once itself)
    assert clock.now() - VirtualClock().now() >= 0.2 - 1e-6


async def test_lambda_destination_missing_function_is_not_retried(server: str, seen: Seen) -> None:
    aws = AwsClients(endpoint_url=server)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:gone"
    clock = VirtualClock()
    seen.statuses = [404]
    try:
        dest = build_destination(arn, aws=aws, clock=clock)
        with pytest.raises(DeliveryError, match="ResourceNotFoundException") as err:
            await drive(clock, dest.send(invocation()))
    finally:
        await aws.aclose()

    assert len(seen.requests) == 1
    assert not err.value.retriable


# -- HTTP -----------------------------------------------------------------------------------------


async def test_http_destination_posts_the_record(aws: AwsClients, server: str, seen: Seen) -> None:
    dest = build_destination(f"{server}/hook", aws=aws, clock=RealClock())
    record = invocation()
    try:
        await dest.send(record)
    finally:
        await dest.aclose()
        await dest.aclose()  # safe twice

    [(path, headers, body)] = seen.requests
    assert path == "/hook"
    assert headers["Content-Type"] == "application/json"
    assert body == orjson.dumps(record)


async def test_http_destination_retries_5xx_then_gives_up(
    aws: AwsClients, server: str, seen: Seen, caplog: pytest.LogCaptureFixture
) -> None:
    clock = VirtualClock()
    dest = build_destination(f"{server}/hook", aws=aws, clock=clock)
    seen.statuses = [503, 502, 500, 200]
    try:
        with pytest.raises(DeliveryError, match="HTTP 500") as err:
            await drive(clock, dest.send(invocation()))
    finally:
        await dest.aclose()

    assert len(seen.requests) == 3  # three attempts, then DeliveryError
    assert err.value.retriable
    assert f"{server}/hook" in str(err.value)
    assert clock.now() - VirtualClock().now() == pytest.approx(0.2 + 0.4)
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "attempts: 3" in warning.getMessage()


async def test_http_destination_4xx_is_not_retried(
    aws: AwsClients, server: str, seen: Seen
) -> None:
    clock = VirtualClock()
    dest = build_destination(f"{server}/hook", aws=aws, clock=clock)
    seen.statuses = [400]
    try:
        with pytest.raises(DeliveryError, match="HTTP 400"):
            await drive(clock, dest.send(invocation()))
    finally:
        await dest.aclose()
    assert len(seen.requests) == 1


async def test_http_destination_unreachable_is_retried(aws: AwsClients, seen: Seen) -> None:
    clock = VirtualClock()
    dest = build_destination("http://127.0.0.1:9/hook", aws=aws, clock=clock)  # discard port
    try:
        with pytest.raises(DeliveryError) as err:
            await drive(clock, dest.send(invocation()))
    finally:
        await dest.aclose()
    assert err.value.retriable
    assert clock.now() - VirtualClock().now() == pytest.approx(0.2 + 0.4)


async def test_cancelling_a_send_during_a_retry_wait_propagates(
    aws: AwsClients, server: str, seen: Seen
) -> None:
    clock = VirtualClock()
    dest = build_destination(f"{server}/hook", aws=aws, clock=clock)
    seen.statuses = [503]
    task = asyncio.ensure_future(dest.send(invocation()))
    try:
        await eventually(lambda: seen.requests and clock.pending(), what="a retry wait")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await dest.aclose()
    assert len(seen.requests) == 1


# -- memory ---------------------------------------------------------------------------------------


async def test_memory_destination_and_dead_letter(aws: AwsClients) -> None:
    memory = MemoryDestinations()
    dest = build_destination("memory://failures", aws=aws, clock=RealClock(), memory=memory)
    dlq = build_dead_letter("memory://dlq", aws=aws, clock=RealClock(), memory=memory)
    record = invocation()

    await dest.send(record)
    await dlq.send_dead_letter(
        b'{"a": 1}', request_id="r", error_code=200, error_message=LONG_ERROR
    )

    assert memory.records("failures") == [record]
    assert memory.records("dlq") == []
    [letter] = memory.dead_letters("dlq")
    assert (letter.payload, letter.request_id, letter.error_code) == (b'{"a": 1}', "r", 200)
    assert letter.error_message == CUT_ERROR
    memory.records("failures")[0]["version"] = "changed"  # copies: the registry is untouched
    assert memory.records("failures") == [record]
    with pytest.raises(DeliveryError, match="not JSON-serialisable"):
        await dest.send({"not json": {1, 2}})
    assert memory.records("failures") == [record]


# -- what cannot be a destination -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        (f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders.fifo", "FIFO"),
        (f"arn:aws:sns:{REGION}:{ACCOUNT}:orders.fifo", "FIFO"),
        (f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t", "a destination is"),
        (f"arn:aws:events:{REGION}:{ACCOUNT}:rule/r", "event-bus"),
        (f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:l", "function ARN"),
        ("arn:aws:s3:::bucket/prefix", "bucket ARN"),
        ("sqs://orders", "a destination is"),
        ("memory://", "memory://<name>"),
        ("memory://x", "registry"),
    ],
)
async def test_build_destination_refuses(aws: AwsClients, target: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        build_destination(target, aws=aws, clock=RealClock())


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        (f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders.fifo", "FIFO"),
        (f"arn:aws:sns:{REGION}:{ACCOUNT}:orders.fifo", "FIFO"),
        (f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/b", "standard SQS queue or SNS topic"),
        (f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f", "standard SQS queue or SNS topic"),
        ("https://example.com/dlq", "standard SQS queue or SNS topic"),
    ],
)
async def test_build_dead_letter_refuses(aws: AwsClients, target: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        build_dead_letter(target, aws=aws, clock=RealClock())
