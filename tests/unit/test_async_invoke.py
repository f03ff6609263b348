"""Asynchronous invocation on memory:// Redis and a virtual clock: every condition, the records,
the dead-letter messages and the retry timings, in milliseconds."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from esm.clock import VirtualClock
from esm.config import parse_config
from esm.connectors.memory import MemoryBroker
from esm.engine import Engine
from esm.store import Store
from tests.fixtures import recorder
from tests.support import unique
from tests.unit.test_queue_poller import run_until

TARGET = "python:tests.fixtures.recorder.handle_async"
T0 = 1_700_000_000.0
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


def function(name: str, **props: Any) -> dict[str, Any]:
    return {"Target": TARGET, **props}


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    engines: list[Engine] = []
    clock = VirtualClock(T0)
    recorder.CLOCK_NOW = clock.now

    async def build(functions: dict[str, Any], **settings: Any) -> Engine:
        config = parse_config({"Settings": settings, "Functions": functions})
        eng = Engine(
            config,
            clock=clock,
            sources=MemoryBroker(clock),
            store=Store.from_url("memory://", clock=clock),
        )
        await eng.start()
        engines.append(eng)
        return eng

    build.clock = clock  # type: ignore[attr-defined]
    yield build
    for eng in engines:
        await eng.aclose(deadline_s=0)
        await eng.store.aclose()
    recorder.CLOCK_NOW = None


def invoke_times(name: str) -> list[float]:
    return [t - T0 for t in recorder.TIMES[name]]


async def test_success_goes_to_on_success_with_the_record(make: Any) -> None:
    name = unique("ok")
    recorder.ASYNC_BEHAVIOUR[name] = lambda e, c: {"echo": e}
    eng = await make(
        {
            name: function(
                name,
                EventInvokeConfig={
                    "DestinationConfig": {"OnSuccess": {"Destination": "memory://ok"}}
                },
            )
        }
    )
    request_id = await eng.invoke(name, b'{"order": 1}', invocation_type="Event")
    await run_until(make.clock, lambda: bool(eng.memory.records("ok")))
    (rec,) = eng.memory.records("ok")
    assert list(rec) == [
        "version",
        "timestamp",
        "requestContext",
        "requestPayload",
        "responseContext",
        "responsePayload",
    ]
    assert rec["requestContext"] == {
        "requestId": request_id,
        "functionArn": ARN + name + ":$LATEST",
        "condition": "Success",
        "approximateInvokeCount": 1,
    }
    assert rec["requestPayload"] == {"order": 1}
    assert rec["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert rec["responsePayload"] == {"echo": {"order": 1}}
    assert eng.metrics.get("AsyncEventsReceived") == 1
    assert await eng.async_queue.depth() == {"ready": 0, "claimed": 0, "delayed": 0}


@pytest.mark.parametrize("retries", [0, 1, 2])
async def test_retries_exhausted_after_n_retries_on_lambdas_schedule(
    make: Any, retries: int
) -> None:
    name = unique("fail")
    recorder.ASYNC_BEHAVIOUR[name] = lambda e, c: (_ for _ in ()).throw(ValueError("boom"))
    eng = await make(
        {
            name: function(
                name,
                EventInvokeConfig={
                    "MaximumRetryAttempts": retries,
                    "DestinationConfig": {"OnFailure": {"Destination": "memory://failed"}},
                },
                DeadLetterConfig={"TargetArn": "memory://dlq"},
            )
        }
    )
    request_id = await eng.invoke(name, b'{"n": 1}', invocation_type="Event")
    await run_until(make.clock, lambda: bool(eng.memory.records("failed")))
    times = invoke_times(name)
    assert len(times) == retries + 1
    if retries >= 1:
        assert 54 <= times[1] - times[0] <= 66  # about a minute
    if retries == 2:
        assert 108 <= times[2] - times[1] <= 132  # then about two
    (rec,) = eng.memory.records("failed")
    assert rec["requestContext"]["condition"] == "RetriesExhausted"
    assert rec["requestContext"]["approximateInvokeCount"] == retries + 1
    assert rec["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert rec["responsePayload"]["errorMessage"] == "boom"
    assert rec["responsePayload"]["errorType"] == "ValueError"
    (dead,) = eng.memory.dead_letters("dlq")
    assert dead.payload == b'{"n": 1}'
    assert (dead.request_id, dead.error_code, dead.error_message) == (request_id, 200, "boom")
    assert eng.metrics.get("AsyncEventsDropped") == 1
    assert eng.metrics.get("Errors") == retries + 1


async def test_event_age_exceeded_between_attempts(make: Any) -> None:
    name = unique("age")
    recorder.ASYNC_BEHAVIOUR[name] = lambda e, c: (_ for _ in ()).throw(ValueError("boom"))
    eng = await make(
        {
            name: function(
                name,
                EventInvokeConfig={
                    "MaximumEventAgeInSeconds": 60,
                    "DestinationConfig": {"OnFailure": {"Destination": "memory://failed"}},
                },
            )
        },
        AsyncRetryDelaysSeconds=[100, 100],  # the retry would come after the age limit
    )
    await eng.invoke(name, b"{}", invocation_type="Event")
    await run_until(make.clock, lambda: bool(eng.memory.records("failed")))
    (rec,) = eng.memory.records("failed")
    assert rec["requestContext"]["condition"] == "EventAgeExceeded"
    assert rec["requestContext"]["approximateInvokeCount"] == 1
    assert "responseContext" in rec  # it was invoked once
    assert 60 <= make.clock.now() - T0 < 61


async def test_zero_reserved_concurrency_goes_straight_to_failure_handling(make: Any) -> None:
    name = unique("zero")
    eng = await make(
        {
            name: function(
                name,
                ReservedConcurrentExecutions=0,
                EventInvokeConfig={
                    "DestinationConfig": {"OnFailure": {"Destination": "memory://failed"}}
                },
                DeadLetterConfig={"TargetArn": "memory://dlq"},
            )
        }
    )
    await eng.invoke(name, b'{"x": 1}', invocation_type="Event")
    await run_until(make.clock, lambda: bool(eng.memory.records("failed")))
    (rec,) = eng.memory.records("failed")
    assert rec["requestContext"]["condition"] == "ZeroReservedConcurrency"
    assert rec["requestContext"]["approximateInvokeCount"] == 0
    assert "responseContext" not in rec and "responsePayload" not in rec
    assert recorder.EVENTS[name] == []
    assert make.clock.now() == T0  # no retries, no waiting
    (dead,) = eng.memory.dead_letters("dlq")
    assert dead.error_message == "ZeroReservedConcurrency"


async def test_throttles_do_not_use_retry_attempts(make: Any) -> None:
    name = unique("throttle")

    async def slow(event: dict[str, Any], context: Any) -> str:
        await make.clock.sleep(30)
        return "done"

    recorder.ASYNC_BEHAVIOUR[name] = slow
    eng = await make(
        {
            name: function(
                name,
                Timeout=60,
                ReservedConcurrentExecutions=1,
                EventInvokeConfig={
                    "MaximumRetryAttempts": 0,
                    "DestinationConfig": {"OnSuccess": {"Destination": "memory://ok"}},
                },
            )
        }
    )
    for i in range(4):
        await eng.invoke(name, json.dumps({"i": i}).encode(), invocation_type="Event")
    await run_until(make.clock, lambda: len(eng.memory.records("ok")) == 4)
    assert eng.metrics.get("Throttles") > 0
    assert all(r["requestContext"]["approximateInvokeCount"] == 1 for r in eng.memory.records("ok"))


async def test_a_lambda_destination_served_by_esm_is_invoked_asynchronously(make: Any) -> None:
    first, second = unique("first"), unique("second")
    recorder.ASYNC_BEHAVIOUR[first] = lambda e, c: {"from": "first"}
    recorder.ASYNC_BEHAVIOUR[second] = lambda e, c: None
    eng = await make(
        {
            first: function(
                first,
                EventInvokeConfig={
                    "DestinationConfig": {"OnSuccess": {"Destination": ARN + second}}
                },
            ),
            second: function(second),
        }
    )
    await eng.invoke(first, b'{"a": 1}', invocation_type="Event")
    await run_until(make.clock, lambda: bool(recorder.EVENTS[second]))
    (record,) = recorder.EVENTS[second]
    assert record["requestContext"]["condition"] == "Success"
    assert record["responsePayload"] == {"from": "first"}


async def test_unknown_function_is_refused_and_nothing_is_queued(make: Any) -> None:
    from esm.errors import ResourceNotFoundException

    eng = await make({unique("f"): function("f")})
    with pytest.raises(ResourceNotFoundException, match="Function not found: "):
        await eng.invoke("nope", b"{}", invocation_type="Event")
    assert await eng.async_queue.depth() == {"ready": 0, "claimed": 0, "delayed": 0}
