"""``python:package.module.handler``: a handler run in esm's own process.

The fastest target, and the one the testing library builds on; it shares esm's process (its
``os.environ``, ``sys.modules``, GIL and memory), which execution environments
(:mod:`esm.targets.environment`) do not. The ``context`` and the error payloads are those of
Lambda's Python runtime.
"""

from __future__ import annotations

import asyncio
import base64
import decimal
import importlib
import inspect
import json
import logging
import sys
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from esm.clock import Clock
from esm.outcomes import LATEST, FunctionError, Ok, Outcome
from esm.targets.base import Call, fault

log = logging.getLogger(__name__)

# files whose frames lead into a handler: left out of its error's stackTrace, as Lambda's runtime
# leaves out its bootstrap's (the testing library adds the wrappers it puts around handlers)
RUNTIME_FILES = {__file__}


def _exception_payload(exc: BaseException, request_id: str) -> bytes:
    """Lambda's Python runtime's error shape; frames of :data:`RUNTIME_FILES` are left out."""
    frames = traceback.extract_tb(exc.__traceback__)
    start = 0
    while start < len(frames) and frames[start].filename in RUNTIME_FILES:
        start += 1
    return fault(
        type(exc).__name__, _safe_str(exc), request_id, traceback.format_list(frames[start:])
    )


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


class Client:
    """``context.client_context.client`` (mobile SDK client data), as the Python runtime has it."""

    __slots__ = (
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        for field in self.__slots__:
            setattr(self, field, data.get(field))


class ClientContext:
    """``context.client_context``: the Invoke's ``ClientContext`` (base64 JSON), decoded."""

    __slots__ = ("client", "custom", "env")

    def __init__(self, data: Mapping[str, Any]) -> None:
        client = data.get("client")
        self.client = Client(client) if isinstance(client, Mapping) else None
        self.custom = data.get("custom")
        self.env = data.get("env")

    @classmethod
    def parse(cls, text: str | None) -> ClientContext | None:
        if not text:
            return None
        try:
            data = orjson.loads(base64.b64decode(text, validate=True))
        except ValueError:  # binascii.Error and orjson.JSONDecodeError are ValueErrors
            log.debug("ignoring a ClientContext that is not base64-encoded JSON")
            return None
        return cls(data) if isinstance(data, Mapping) else None


@dataclass(frozen=True, slots=True)
class ContextInfo:
    """What every context of one function shares."""

    function_name: str
    function_arn: str
    memory_mb: int
    log_stream_name: str


class LambdaContext:
    """The ``context`` a python: handler gets: the attributes of Lambda's Python runtime.

    ``identity`` is ``None`` (no Cognito); ``get_remaining_time_in_millis()`` reads the engine's
    clock, so it counts down in virtual time under the testing harness.
    """

    __slots__ = (
        "_clock",
        "_deadline",
        "aws_request_id",
        "client_context",
        "function_name",
        "function_version",
        "identity",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
        "tenant_id",
    )

    def __init__(
        self,
        info: ContextInfo,
        *,
        aws_request_id: str,
        deadline: float,
        clock: Clock,
        client_context: ClientContext | None = None,
    ) -> None:
        self.aws_request_id = aws_request_id
        self.function_name = info.function_name
        self.function_version = LATEST
        self.invoked_function_arn = info.function_arn
        self.memory_limit_in_mb = info.memory_mb
        self.log_group_name = f"/aws/lambda/{info.function_name}"
        self.log_stream_name = info.log_stream_name
        self.identity: object | None = None
        self.client_context = client_context
        self.tenant_id: str | None = None
        self._clock = clock
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock.now()) * 1000))

    def log(self, msg: object) -> None:
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return (
            f"LambdaContext(aws_request_id={self.aws_request_id!r}, "
            f"function_name={self.function_name!r}, "
            f"invoked_function_arn={self.invoked_function_arn!r})"
        )


def log_stream_name(now: float) -> str:
    """``2024/01/31/[$LATEST]<32 hex>``: one per Function, like one per sandbox."""
    day = datetime.fromtimestamp(now, UTC).strftime("%Y/%m/%d")
    return f"{day}/[{LATEST}]{uuid.uuid4().hex}"


Handler = Callable[[Any, LambdaContext], Any]


class _InitFault(Exception):
    """The handler could not be loaded, with Lambda's ``Runtime.*`` error type."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace


def _load_handler(spec: str) -> Handler:
    """Import ``package.module`` (once per process: ``sys.modules``) and get its handler.

    Errors as Lambda's runtime reports them: ``Runtime.ImportModuleError``,
    ``Runtime.UserCodeSyntaxError``, ``Runtime.HandlerNotFound``; any other exception raised by
    the module's init code propagates and is reported like a handler's exception. A failed import
    is tried again on the next call, as Lambda retries a failed init.
    """
    modname, _, attr = spec.rpartition(".")
    try:
        module = importlib.import_module(modname)
    except ImportError as exc:
        raise _InitFault(
            "Runtime.ImportModuleError", f"Unable to import module '{modname}': {exc}"
        ) from exc
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise _InitFault(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {exc}", trace
        ) from exc
    try:
        handler: Handler = getattr(module, attr)
    except AttributeError:
        raise _InitFault(
            "Runtime.HandlerNotFound", f"Handler '{attr}' missing on module '{modname}'"
        ) from None
    return handler


def is_async(handler: Handler) -> bool:
    """How the target runs a handler: coroutine functions and objects with an async
    ``__call__`` on the loop, others in the function's thread pool."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - an instance with an async __call__
    )


def _event(payload: bytes) -> Any:
    """A fresh event for each call; Lambda hands ``{}`` to a call without a payload.

    orjson, twice as fast as ``json.loads`` on a batch, gives the same objects except for
    integers outside 64 bits (below -2**63 or from 2**64), which it reads as floats: a deviation
    kept for speed, as event sources send numbers as strings or small ints.
    """
    if not payload:
        return {}
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload)  # what orjson refuses but json takes (NaN, Infinity)


_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _orjson_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):  # the runtime writes Decimals as JSON numbers
        return orjson.Fragment(str(value)) if value.is_finite() else None
    raise TypeError


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else None
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _marshal(result: Any, request_id: str) -> Outcome:
    """The handler's value as the runtime serialises it: bytes as they are, the rest as JSON.

    orjson first; what it refuses (sets, datetimes, huge ints …) goes through ``json.dumps``,
    which either manages or gives the runtime's own ``Runtime.MarshalError`` message. orjson is
    more lenient for UUIDs and enums, which it writes as strings.
    """
    if isinstance(result, bytes):
        return Ok(result)
    try:
        return Ok(orjson.dumps(result, default=_orjson_default, option=_ORJSON_OPTIONS))
    except orjson.JSONEncodeError:
        pass
    try:
        return Ok(json.dumps(result, default=_json_default, ensure_ascii=False).encode())
    except (TypeError, ValueError, RecursionError) as exc:
        return FunctionError(
            fault("Runtime.MarshalError", f"Unable to marshal response: {exc}", request_id)
        )


def _unmarshal_error(exc: Exception, request_id: str) -> Outcome:
    return FunctionError(
        fault("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}", request_id)
    )


@dataclass(frozen=True, slots=True)
class _Awaitable:
    """A sync handler returned an awaitable (an async handler behind a sync decorator)."""

    awaitable: Awaitable[Any]


def _run_sync(handler: Handler, payload: bytes, context: LambdaContext) -> Outcome | _Awaitable:
    """In a worker thread: parse, call, serialise; every failure becomes a FunctionError."""
    rid = context.aws_request_id
    try:
        event = _event(payload)
    except ValueError as exc:
        return _unmarshal_error(exc, rid)
    try:
        result = handler(event, context)
    except BaseException as exc:  # even SystemExit: in a worker thread it is the handler's error
        return FunctionError(_exception_payload(exc, rid))
    if inspect.isawaitable(result):
        return _Awaitable(result)
    return _marshal(result, rid)


async def _run_async(handler: Handler, payload: bytes, context: LambdaContext) -> Outcome:
    rid = context.aws_request_id
    try:
        event = _event(payload)
    except ValueError as exc:
        return _unmarshal_error(exc, rid)
    try:
        awaitable = handler(event, context)
    except (Exception, SystemExit) as exc:
        return FunctionError(_exception_payload(exc, rid))
    return await _finish(awaitable, rid)


async def _finish(awaitable: Awaitable[Any], request_id: str) -> Outcome:
    try:
        result = await awaitable
    except (Exception, SystemExit) as exc:  # CancelledError (a BaseException) propagates
        return FunctionError(_exception_payload(exc, request_id))
    return _marshal(result, request_id)


class PythonTarget:
    """``python:package.module.handler``, run in this process like a warm Lambda sandbox.

    The module is imported on the first call, on the event loop (its init code runs once per
    process and may block the loop that once). Coroutine handlers run on the loop and are
    cancelled on timeout (so is a plain function that returns an awaitable, once seen doing so).
    Plain handlers run in this function's thread pool (created on the first
    call, ``ReservedConcurrentExecutions`` or 256 threads): a thread cannot be killed, so a
    timed-out sync handler runs on to its end while the call is already reported as timed out;
    the process waits for such threads when it exits.
    """

    gate: asyncio.Lock | None = None

    def __init__(self, spec: str, info: ContextInfo, clock: Clock, *, max_workers: int) -> None:
        self._spec = spec
        self._info = info
        self._clock = clock
        self._max_workers = max_workers
        self._handler: Handler | None = None
        self._is_async = False
        self._pool: ThreadPoolExecutor | None = None

    def _load(self) -> Handler:
        handler = _load_handler(self._spec)
        self._handler = handler
        self._is_async = is_async(handler)
        log.info(
            "function %s: loaded %s (%s)",
            self._info.function_name,
            self._spec,
            "async" if self._is_async else "sync",
        )
        return handler

    async def call(self, call: Call) -> Outcome:
        handler = self._handler
        if handler is None:
            try:
                handler = self._load()
            except _InitFault as init:
                log.warning("function %s: %s", self._info.function_name, init.message)
                return FunctionError(
                    fault(init.error_type, init.message, call.request_id, init.trace)
                )
            except (Exception, SystemExit) as exc:  # the module's init code raised
                log.warning(
                    "function %s: init of %s failed: %r", self._info.function_name, self._spec, exc
                )
                return FunctionError(_exception_payload(exc, call.request_id))
        context = LambdaContext(
            self._info,
            aws_request_id=call.request_id,
            deadline=call.deadline,
            clock=self._clock,
            client_context=ClientContext.parse(call.client_context),
        )
        if self._is_async:
            return await _run_async(handler, call.payload, context)
        pool = self._pool
        if pool is None:
            pool = self._pool = ThreadPoolExecutor(
                self._max_workers, thread_name_prefix=f"esm-{self._info.function_name}"
            )
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(pool, _run_sync, handler, call.payload, context)
        if isinstance(outcome, _Awaitable):
            self._is_async = True  # its awaitables are the loop's: call it on the loop from now on
            return await _finish(outcome.awaitable, call.request_id)
        return outcome

    async def aclose(self) -> None:
        if self._pool is not None:  # queued calls still run: their callers are awaiting them
            self._pool.shutdown(wait=False)
            self._pool = None
