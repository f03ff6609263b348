"""Asynchronous invocation end to end on the real Redis, destinations in moto's server, time on a
virtual clock: each condition on each destination type, and the dead-letter messages."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from esm.clock import VirtualClock
from esm.config import parse_config
from esm.engine import Engine
from esm.store import Store
from tests.environment_support import Functions, tracked_functions
from tests.fixtures import recorder
from tests.streams_support import (
    CountingAws,
    InFlight,
    create_bucket,
    create_queue,
    create_topic_to_queue,
    delete_keys,
    drive,
    s3_objects,
)
from tests.support import ACCOUNT, REGION, unique

pytestmark = pytest.mark.integration

TARGET = "python:tests.fixtures.recorder.handle_async"
T0 = 1_700_000_000.0
CONDITIONS = [
    "Success",
    "RetriesExhausted-0",
    "RetriesExhausted-1",
    "RetriesExhausted-2",
    "EventAgeExceeded",
    "ZeroReservedConcurrency",
]
KINDS = ["sqs", "sns", "events", "lambda", "s3"]


class AsyncWorld:
    def __init__(self, moto_url: str, redis_url: str) -> None:
        self.clock = VirtualClock(T0)
        self.in_flight = InFlight()
        self.aws = CountingAws(self.in_flight, endpoint_url=moto_url)
        self.prefix = unique("esm-test")
        self.redis_url = redis_url
        self.engines: list[Engine] = []

    async def engine(self, functions: dict[str, Any], **settings: Any) -> Engine:
        config = parse_config(
            {
                "Settings": {"Region": REGION, "AccountId": ACCOUNT, **settings},
                "Functions": functions,
            }
        )
        store = Store.from_url(self.redis_url, clock=self.clock, prefix=self.prefix)
        functions = tracked_functions(
            config, clock=self.clock, aws=self.aws, in_flight=self.in_flight
        )
        eng = Engine(config, clock=self.clock, aws=self.aws, store=store, functions=functions)
        await eng.start()
        self.engines.append(eng)
        return eng

    async def aclose(self) -> None:
        for eng in self.engines:
            await eng.aclose(deadline_s=0)
            await eng.store.aclose()
        await self.aws.aclose()
        await delete_keys(self.redis_url, f"{self.prefix}:*")


@pytest.fixture
async def world(moto_url: str, redis_url: str) -> AsyncIterator[AsyncWorld]:
    w = AsyncWorld(moto_url, redis_url)
    recorder.CLOCK_NOW = w.clock.now
    yield w
    recorder.CLOCK_NOW = None
    await w.aclose()


async def destination(world: AsyncWorld, kind: str) -> tuple[str, Any]:
    """(the destination ARN, an async reader returning the records that reached it)."""
    aws = world.aws
    if kind == "sqs":
        arn, url = await create_queue(aws, unique("dest"))
        return arn, lambda: _receive(world, url, lambda body: json.loads(body))
    if kind == "sns":
        topic, url = await create_topic_to_queue(aws, unique("dest"))
        return topic, lambda: _receive(
            world, url, lambda body: json.loads(json.loads(body)["Message"])
        )
    if kind == "events":
        events = await aws.client("events", REGION)
        bus = unique("bus")
        bus_arn = (await events.create_event_bus(Name=bus))["EventBusArn"]
        arn, url = await create_queue(aws, unique("busq"))
        await events.put_rule(
            Name="all", EventBusName=bus, EventPattern=json.dumps({"source": ["lambda"]})
        )
        await events.put_targets(Rule="all", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        return bus_arn, lambda: _receive(world, url, lambda body: json.loads(body))
    if kind == "s3":
        bucket = unique("dest")
        bucket_arn = await create_bucket(aws, bucket)

        async def objects() -> list[Any]:
            found = await s3_objects(aws, bucket, "aws/lambda/async/")
            return [(key, json.loads(body)) for key, body in found.items()]

        return bucket_arn, objects
    assert kind == "lambda"
    target = unique("target")
    recorder.ASYNC_BEHAVIOUR[target] = lambda e, c: None

    async def invoked() -> list[Any]:
        return list(recorder.EVENTS[target])

    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{target}", invoked


async def _receive(world: AsyncWorld, url: str, parse: Any) -> list[Any]:
    sqs = await world.aws.client("sqs", REGION)
    resp = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [parse(m["Body"]) for m in resp.get("Messages", [])]


def function_for(
    condition: str, name: str, dest_arn: str, functions: Functions | None = None
) -> dict[str, Any]:
    """A function (and its EventInvokeConfig) that ends in ``condition``, in process unless
    ``functions`` says otherwise."""
    fails = condition != "Success"
    functions = functions or Functions("in-process", Path())
    retries = int(condition.split("-")[1]) if condition.startswith("RetriesExhausted") else 2
    props: dict[str, Any] = {
        **functions.function(name, "boom" if fails else "echo", asynchronous=True),
        "EventInvokeConfig": {
            "MaximumRetryAttempts": retries,
            "MaximumEventAgeInSeconds": 60 if condition == "EventAgeExceeded" else 21600,
            "DestinationConfig": {
                ("OnFailure" if fails else "OnSuccess"): {"Destination": dest_arn}
            },
        },
    }
    if condition == "ZeroReservedConcurrency":
        props["ReservedConcurrentExecutions"] = 0
    return props


@pytest.mark.parametrize(
    ("condition", "kind", "runs_on"),
    [(condition, kind, "in-process") for condition in CONDITIONS for kind in KINDS]
    + [
        ("Success", "sqs", "environment"),
        ("RetriesExhausted-2", "sqs", "environment"),
        ("EventAgeExceeded", "events", "environment"),
    ],
)
async def test_each_condition_reaches_each_destination_type_as_lambdas_record(
    world: AsyncWorld, condition: str, kind: str, runs_on: str, tmp_path: Path
) -> None:
    if kind == "s3" and condition == "Success":
        pytest.skip("S3 is an on-failure destination only (docs/semantics.md §8.6)")
    dest_arn, read = await destination(world, kind)
    name = unique("fn")
    functions = {name: function_for(condition, name, dest_arn, Functions(runs_on, tmp_path))}
    if kind == "lambda":
        target = dest_arn.rsplit(":", 1)[1]
        functions[target] = {"Target": TARGET}
    eng = await world.engine(functions, AsyncRetryDelaysSeconds=[100, 100])
    request_id = await eng.invoke(name, b'{"order": 7}', invocation_type="Event")
    got: list[Any] = []

    async def arrived() -> bool:
        got.extend(await read())
        return bool(got)

    await drive(
        world.clock, arrived, in_flight=world.in_flight, max_virtual_s=7200, what=f"{kind} record"
    )
    if kind == "s3":
        ((key, record),) = got
        assert re.fullmatch(
            rf"aws/lambda/async/{name}/\d{{4}}/\d\d/\d\d/\d{{4}}-\d\d-\d\dT\d\d\.\d\d\.\d\d-[0-9a-f-]{{36}}",
            key,
        ), key
    elif kind == "events":
        (event,) = got
        assert event["source"] == "lambda"
        assert event["detail-type"] == (
            "Lambda Function Invocation Result - Success"
            if condition == "Success"
            else "Lambda Function Invocation Result - Failure"
        )
        record = event["detail"]
    else:
        (record,) = got
    base = condition.split("-")[0]
    invokes = {
        "Success": 1,
        "RetriesExhausted-0": 1,
        "RetriesExhausted-1": 2,
        "RetriesExhausted-2": 3,
        "EventAgeExceeded": 1,
        "ZeroReservedConcurrency": 0,
    }[condition]
    assert list(record)[:4] == ["version", "timestamp", "requestContext", "requestPayload"]
    assert record["version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}:$LATEST",
        "condition": base,
        "approximateInvokeCount": invokes,
    }
    assert record["requestPayload"] == {"order": 7}
    if base == "Success":
        assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
        assert record["responsePayload"] == {"ok": {"order": 7}}
    elif base == "ZeroReservedConcurrency":
        assert "responseContext" not in record and "responsePayload" not in record
    else:
        assert record["responseContext"] == {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        }
        assert record["responsePayload"]["errorMessage"] == "boom"
        assert record["responsePayload"]["errorType"] == "ValueError"


@pytest.mark.parametrize(
    ("condition", "kind", "runs_on"),
    [
        (condition, kind, "in-process")
        for condition in ("RetriesExhausted-1", "EventAgeExceeded", "ZeroReservedConcurrency")
        for kind in ("sqs", "sns")
    ]
    + [("RetriesExhausted-1", "sqs", "environment")],
)
async def test_the_dead_letter_queue_gets_the_event_and_its_attributes(
    world: AsyncWorld, kind: str, condition: str, runs_on: str, tmp_path: Path
) -> None:
    aws = world.aws
    if kind == "sqs":
        dlq_arn, url = await create_queue(aws, unique("dlq"))
    else:
        dlq_arn, url = await create_topic_to_queue(aws, unique("dlq"))
    name = unique("fn")
    props = function_for(condition, name, "memory://unused", Functions(runs_on, tmp_path))
    props["DeadLetterConfig"] = {"TargetArn": dlq_arn}
    eng = await world.engine({name: props}, AsyncRetryDelaysSeconds=[100, 100])
    request_id = await eng.invoke(name, b'{"order": 8}', invocation_type="Event")
    sqs = await aws.client("sqs", REGION)
    got: list[dict[str, Any]] = []

    async def arrived() -> bool:
        resp = await sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        got.extend(resp.get("Messages", []))
        return bool(got)

    await drive(
        world.clock, arrived, in_flight=world.in_flight, max_virtual_s=7200, what="the DLQ message"
    )
    (msg,) = got
    if kind == "sqs":
        body = msg["Body"]
        attrs = {k: (v["DataType"], v["StringValue"]) for k, v in msg["MessageAttributes"].items()}
    else:
        envelope = json.loads(msg["Body"])
        body = envelope["Message"]
        attrs = {k: (v["Type"], v["Value"]) for k, v in envelope["MessageAttributes"].items()}
    assert body == '{"order": 8}'  # the event as-is
    expected_code = "429" if condition == "ZeroReservedConcurrency" else "200"
    expected_message = (
        "ZeroReservedConcurrency" if condition == "ZeroReservedConcurrency" else "boom"
    )
    assert attrs == {
        "RequestID": ("String", request_id),
        "ErrorCode": ("Number", expected_code),
        "ErrorMessage": ("String", expected_message),
    }
    assert eng.metrics.get("AsyncEventsDropped") == 1
    assert eng.metrics.get("DeadLetterErrors") == 0


async def test_a_failed_delivery_is_counted_never_silent(world: AsyncWorld) -> None:
    name = unique("fn")
    missing = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{unique('missing')}"
    props = function_for("RetriesExhausted-0", name, missing)
    props["DeadLetterConfig"] = {"TargetArn": missing}
    eng = await world.engine({name: props})
    await eng.invoke(name, b"{}", invocation_type="Event")
    await drive(
        world.clock,
        lambda: (
            eng.metrics.get("DestinationDeliveryFailures") == 1
            and eng.metrics.get("DeadLetterErrors") == 1
        ),
        in_flight=world.in_flight,
        what="both failures counted",
    )
    assert await eng.async_queue.depth() == {"ready": 0, "claimed": 0, "delayed": 0}
