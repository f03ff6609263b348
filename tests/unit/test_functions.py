"""esm.functions with python: targets (esm.targets.python): in process, on a virtual clock, no network."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from esm.aws import AwsClients
from esm.clock import VirtualClock
from esm.config import FunctionConfig, parse_config
from esm.functions import (
    Function,
    FunctionError,
    InvokeFailed,
    Ok,
    Outcome,
    Throttled,
    build_function,
    build_functions,
)
from tests.fixtures import INIT_COUNTS, handlers

REGION = "us-east-1"
ACCOUNT = "123456789012"
H = "python:tests.fixtures.handlers"
_STREAM = re.compile(r"2023/11/14/\[\$LATEST\][0-9a-f]{32}")  # VirtualClock: 2023-11-14

MakeFn = Callable[..., Function]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    clock = VirtualClock()
    monkeypatch.setattr(handlers, "CLOCK", clock)
    return clock


@pytest.fixture
def release() -> Iterator[None]:
    handlers.RELEASE.clear()
    yield
    handlers.RELEASE.set()  # never leave a blocked worker thread behind


@pytest.fixture
async def make_fn(clock: VirtualClock) -> AsyncIterator[MakeFn]:
    """Build functions on the virtual clock; all closed at the end."""
    aws = AwsClients()  # python: targets never use it
    built: list[Function] = []

    def make(target: str, name: str = "fn", **props: Any) -> Function:
        fn = build_function(
            name,
            FunctionConfig.model_validate({"Target": target, **props}),
            region=REGION,
            account=ACCOUNT,
            clock=clock,
            aws=aws,
        )
        built.append(fn)
        return fn

    yield make
    for fn in built:
        await fn.aclose()
    await aws.aclose()


async def advancing(clock: VirtualClock, aw: Awaitable[Outcome]) -> Outcome:
    """Run ``aw`` (an async handler's call) to its end, moving virtual time from deadline to
    deadline whenever it waits on the clock. Not for sync handlers: time would move while their
    thread works, and they would time out."""
    task = asyncio.ensure_future(aw)
    while True:
        await let_run()
        if task.done():
            return task.result()
        assert await clock.advance_to_next(), "the call waits for something besides the clock"


async def let_run() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def error_of(outcome: Outcome) -> dict[str, Any]:
    assert isinstance(outcome, FunctionError), outcome
    assert outcome.kind == "Unhandled"
    data = orjson.loads(outcome.payload)
    assert isinstance(data, dict)
    return data


# -- handlers and values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "payload", "expected"),
    [
        ("echo", b'{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}),
        ("async_echo", b'{"a": 1}', {"async": True, "event": {"a": 1}}),
        ("async_instance", b"{}", "called"),
        ("decorated_async", b'{"a": 1}', {"async": True, "event": {"a": 1}}),
        ("returns_none", b"{}", None),
        ("returns_decimal", b"{}", {"price": 1.10, "keys": {"1": "one"}}),
        ("echo", b"", {}),  # no payload: Lambda hands the handler {}
        ("echo", b'{"u64": 18446744073709551615}', {"u64": 18446744073709551615}),
        ("echo", b'{"nan": NaN}', {"nan": None}),  # json.loads takes NaN; it is written as null
    ],
)
async def test_handler_value_is_the_ok_payload(
    make_fn: MakeFn, clock: VirtualClock, handler: str, payload: bytes, expected: Any
) -> None:
    outcome = await make_fn(f"{H}.{handler}").invoke(payload)

    assert isinstance(outcome, Ok), outcome
    assert outcome.executed_version == "$LATEST"
    assert json.loads(outcome.payload) == expected
    if handler == "returns_none":
        assert outcome.payload == b"null"
    if handler == "returns_decimal":
        assert b"1.10" in outcome.payload  # a Decimal is written as the exact number


async def test_bytes_are_returned_as_they_are(make_fn: MakeFn, clock: VirtualClock) -> None:
    outcome = await make_fn(f"{H}.returns_bytes").invoke(b"{}")

    assert outcome == Ok(b"raw \xff bytes")


async def test_each_call_gets_a_fresh_event(make_fn: MakeFn, clock: VirtualClock) -> None:
    fn = make_fn(f"{H}.mutate")

    first = await fn.invoke(b'{"k": 1}')
    second = await fn.invoke(b'{"k": 1}')

    assert first == second == Ok(orjson.dumps({"k": 1, "seen": 1}))


async def test_sync_handlers_run_in_parallel_threads(make_fn: MakeFn, clock: VirtualClock) -> None:
    fn = make_fn(f"{H}.barrier")
    payload = orjson.dumps({"parties": 8})

    outcomes = await asyncio.gather(*(fn.invoke(payload) for _ in range(8)))

    assert outcomes == [Ok(b'"together"')] * 8
    assert fn.in_flight == 0


async def test_module_init_runs_once_per_process(make_fn: MakeFn, clock: VirtualClock) -> None:
    one = make_fn("python:tests.fixtures.init_once.handler", name="one")
    two = make_fn("python:tests.fixtures.init_once.handler", name="two")

    outcomes = [await fn.invoke(b"{}") for fn in (one, two, one, two)]

    assert outcomes == [Ok(b"1")] * 4
    assert INIT_COUNTS["tests.fixtures.init_once"] == 1


# -- function errors -----------------------------------------------------------------------------


async def test_exception_is_an_unhandled_error_in_the_runtime_shape(
    make_fn: MakeFn, clock: VirtualClock
) -> None:
    fn = make_fn(f"{H}.fail")

    outcome = await fn.invoke(b'{"message": "bad record"}', request_id="req-1")

    error = error_of(outcome)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "bad record"
    assert error["requestId"] == "req-1"
    trace = error["stackTrace"]
    assert len(trace) == 1  # the handler's frame only, not esm's
    assert "handlers.py" in trace[0] and "in fail" in trace[0]
    assert 'raise ValueError(event.get("message", "boom"))' in trace[0]


async def test_async_exception(make_fn: MakeFn, clock: VirtualClock) -> None:
    error = error_of(await make_fn(f"{H}.async_fail").invoke(b"{}"))

    assert error["errorType"] == "KeyError"
    assert error["errorMessage"] == "'missing'"
    assert any("in async_fail" in line for line in error["stackTrace"])
    assert not any("esm/targets/" in line for line in error["stackTrace"])


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [("raises_timeout_error", "TimeoutError"), ("exits", "SystemExit")],
)
async def test_unusual_exceptions_are_still_the_handlers(
    make_fn: MakeFn, clock: VirtualClock, handler: str, error_type: str
) -> None:
    error = error_of(await make_fn(f"{H}.{handler}").invoke(b"{}"))

    assert error["errorType"] == error_type  # a handler's TimeoutError is not Sandbox.Timedout


@pytest.mark.parametrize(
    ("target", "error_type", "message"),
    [
        (
            "python:tests.fixtures.no_such_module.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'tests.fixtures.no_such_module': "
            "No module named 'tests.fixtures.no_such_module'",
        ),
        (
            "python:tests.fixtures.broken_import.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'tests.fixtures.broken_import': "
            "No module named 'esm_tests_no_such_dependency'",
        ),
        (
            f"{H}.no_such_handler",
            "Runtime.HandlerNotFound",
            "Handler 'no_such_handler' missing on module 'tests.fixtures.handlers'",
        ),
        ("python:tests.fixtures.init_raises.handler", "RuntimeError", "DATABASE_URL is not set"),
        (f"{H}.NOT_A_FUNCTION", "TypeError", "'int' object is not callable"),
        (
            f"{H}.returns_set",
            "Runtime.MarshalError",
            "Unable to marshal response: Object of type set is not JSON serializable",
        ),
    ],
)
async def test_runtime_errors(
    make_fn: MakeFn, clock: VirtualClock, target: str, error_type: str, message: str
) -> None:
    fn = make_fn(target)

    for _ in range(2):  # a failed init is tried again, and fails again
        error = error_of(await fn.invoke(b"{}", request_id="req-2"))
        assert error["errorType"] == error_type
        assert error["errorMessage"] == message
        assert error["requestId"] == "req-2"
    if target.endswith("init_raises.handler"):
        assert any("in _configure" in line for line in error["stackTrace"])


async def test_syntax_error_in_the_module(
    make_fn: MakeFn, clock: VirtualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"esm_test_syntax_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("def handler(event, context)\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    error = error_of(await make_fn(f"python:{name}.handler").invoke(b"{}"))

    assert error["errorType"] == "Runtime.UserCodeSyntaxError"
    assert error["errorMessage"].startswith(f"Syntax error in module '{name}'")
    sys.modules.pop(name, None)


async def test_payload_that_is_not_json(make_fn: MakeFn, clock: VirtualClock) -> None:
    error = error_of(await make_fn(f"{H}.echo").invoke(b"{not json"))

    assert error["errorType"] == "Runtime.UnmarshalError"
    assert error["errorMessage"].startswith("Unable to unmarshal input: ")


# -- context -------------------------------------------------------------------------------------


async def test_context_fields(make_fn: MakeFn, clock: VirtualClock) -> None:
    fn = make_fn(f"{H}.context_fields", name="orders", MemorySize=512, Timeout=30)

    outcome = await fn.invoke(b"{}", request_id="req-3")

    assert isinstance(outcome, Ok)
    fields = orjson.loads(outcome.payload)
    assert _STREAM.fullmatch(fields.pop("log_stream_name"))
    assert fields == {
        "aws_request_id": "req-3",
        "function_name": "orders",
        "function_version": "$LATEST",
        "invoked_function_arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders",
        "memory_limit_in_mb": 512,
        "log_group_name": "/aws/lambda/orders",
        "identity": None,
        "client_context": None,
        "client": None,
        "remaining_ms": 30000,
    }
    assert fn.arn == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders"


async def test_log_stream_name_format(make_fn: MakeFn, clock: VirtualClock) -> None:
    fn = make_fn(f"{H}.context_fields")

    first = orjson.loads(_ok(await fn.invoke(b"{}")))["log_stream_name"]
    again = orjson.loads(_ok(await fn.invoke(b"{}")))["log_stream_name"]

    assert _STREAM.fullmatch(first), first
    assert again == first  # one stream per function instance, like one per sandbox


def _ok(outcome: Outcome) -> bytes:
    assert isinstance(outcome, Ok), outcome
    return outcome.payload


async def test_client_context_is_decoded(make_fn: MakeFn, clock: VirtualClock) -> None:
    cc = {"custom": {"tenant": "t1"}, "env": {"locale": "en"}, "client": {"app_title": "app"}}
    encoded = base64.b64encode(orjson.dumps(cc)).decode()

    fields = orjson.loads(
        _ok(await make_fn(f"{H}.context_fields").invoke(b"{}", client_context=encoded))
    )

    assert fields["client_context"] == {"custom": {"tenant": "t1"}, "env": {"locale": "en"}}
    assert fields["client"] == "app"


async def test_remaining_time_follows_the_clock(make_fn: MakeFn, clock: VirtualClock) -> None:
    outcome = await advancing(clock, make_fn(f"{H}.remaining", Timeout=3).invoke(b"{}"))

    assert outcome == Ok(b"[3000,2000]")


# -- timeout -------------------------------------------------------------------------------------


async def test_timeout_on_the_virtual_clock(make_fn: MakeFn, clock: VirtualClock) -> None:
    fn = make_fn(f"{H}.sleepy", Timeout=3)
    start, real_start = clock.now(), time.monotonic()

    outcome = await advancing(clock, fn.invoke(b'{"sleep": 10}', request_id="req-4"))

    error = error_of(outcome)
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"] == (
        "2023-11-14T22:13:23.000Z req-4 Task timed out after 3.00 seconds"
    )
    assert clock.now() - start == 3
    assert time.monotonic() - real_start < 1
    assert handlers.CANCELLED[-1] == "req-4"  # the handler's task was cancelled
    assert fn.in_flight == 0


async def test_sync_handler_timeout(make_fn: MakeFn, clock: VirtualClock, release: None) -> None:
    fn = make_fn(f"{H}.blocking", Timeout=5)
    task = asyncio.create_task(fn.invoke(b"{}"))
    await let_run()  # the handler's thread now waits for RELEASE

    await clock.advance(5)

    error = error_of(await task)
    assert "Task timed out after 5.00 seconds" in error["errorMessage"]
    assert fn.in_flight == 0  # the thread runs on (it cannot be killed); the call is over


async def test_caller_cancellation_propagates(make_fn: MakeFn, clock: VirtualClock) -> None:
    fn = make_fn(f"{H}.sleepy", Timeout=30)
    task = asyncio.create_task(fn.invoke(b'{"sleep": 10}', request_id="req-5"))
    await let_run()
    assert fn.in_flight == 1

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert fn.in_flight == 0
    assert "req-5" in handlers.CANCELLED


# -- reserved concurrency ------------------------------------------------------------------------


async def test_reserved_concurrency_throttles_the_call_over_the_limit(
    make_fn: MakeFn, clock: VirtualClock
) -> None:
    fn = make_fn(f"{H}.sleepy", ReservedConcurrentExecutions=3)
    slow = [asyncio.create_task(fn.invoke(b'{"sleep": 1}')) for _ in range(3)]
    await let_run()
    assert fn.in_flight == 3

    assert await fn.invoke(b'{"sleep": 1}') == Throttled(
        "ReservedFunctionConcurrentInvocationLimitExceeded"
    )

    await clock.advance(1)
    assert [await t for t in slow] == [Ok(b'"slept"')] * 3
    assert fn.in_flight == 0
    assert await advancing(clock, fn.invoke(b'{"sleep": 1}')) == Ok(b'"slept"')


async def test_reserved_concurrency_zero_always_throttles(make_fn: MakeFn) -> None:
    fn = make_fn(f"{H}.echo", ReservedConcurrentExecutions=0)

    assert isinstance(await fn.invoke(b"{}"), Throttled)
    assert fn.in_flight == 0


# -- building and closing ------------------------------------------------------------------------


async def test_build_functions_one_per_config_entry(clock: VirtualClock) -> None:
    config = parse_config(
        {
            "Settings": {"Region": "eu-west-1", "AccountId": "000000000042"},
            "Functions": {
                "a": {"Target": f"{H}.echo"},
                "b": {"Target": "http://127.0.0.1:1/invoke"},
                "c": {"Target": "rie://127.0.0.1:9000"},
                "d": {"Target": "lambda:arn:aws:lambda:eu-west-1:000000000042:function:d"},
            },
        }
    )
    aws = AwsClients()

    functions = build_functions(config, clock=clock, aws=aws)

    assert sorted(functions) == ["a", "b", "c", "d"]
    assert functions["b"].arn == "arn:aws:lambda:eu-west-1:000000000042:function:b"
    assert functions["c"].config.target == "rie://127.0.0.1:9000"
    for fn in functions.values():
        await fn.aclose()
    await aws.aclose()


async def test_closed_function_fails_to_invoke(make_fn: MakeFn, clock: VirtualClock) -> None:
    fn = make_fn(f"{H}.echo")
    assert isinstance(await fn.invoke(b"{}"), Ok)

    await fn.aclose()
    await fn.aclose()  # twice is fine

    assert isinstance(await fn.invoke(b"{}"), InvokeFailed)
