"""Functions: invoke a function by its target URI and get one :data:`Outcome` back.

::

    Function.invoke(payload)
     ├── ReservedConcurrentExecutions full ─────────────────────> Throttled
     └── target, under clock.wait_for(Timeout) ── too slow ─────> FunctionError (Sandbox.Timedout)
          python:pkg.module.handler   in process; async handlers awaited, sync ones in a thread pool
          http://… https://…          POST the event through one aiohttp session per function
          rie://host:port             Lambda Runtime Interface Emulator: one request at a time
          lambda:arn:aws:lambda:…     Lambda's Invoke through aiobotocore

What each target's answer becomes (docs/semantics.md §9.1: a function error is an answer, not an
exception):

=====================================  =====================================================
the target said                        outcome
=====================================  =====================================================
a value / HTTP 2xx                     ``Ok(payload)``
an exception, timeout, import error,   ``FunctionError(payload, "Unhandled")`` with Lambda's
unserialisable value                   ``{"errorMessage", "errorType", …}`` payload
``X-Amz-Function-Error`` / Lambda's    ``FunctionError(payload, kind)`` (Handled / Unhandled)
``FunctionError``
HTTP 4xx (not 429), 5xx                ``FunctionError(…, "Unhandled")``: it reached the function
rie: 200 with ``errorType`` and        ``FunctionError(…, "Unhandled")``: the RIE does not always
``errorMessage``                       set the header
HTTP 429, ``TooManyRequestsException``  ``Throttled(reason)``
connection refused, DNS, connect       ``InvokeFailed(reason)``: the function never ran
timeout, Lambda API errors
(``ResourceNotFoundException`` …)
=====================================  =====================================================

Nothing here raises for a function's misbehaviour; ``CancelledError`` from the caller always
propagates. Calls are cheap on purpose (the engine's hot path): no pydantic per call, one session
and one thread pool per function, orjson for (de)serialisation.
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
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import orjson
from botocore.exceptions import BotoCoreError, ClientError

from esm.arns import Arn, function_arn
from esm.aws import AwsClients
from esm.clock import Clock
from esm.config import EsmConfig, FunctionConfig, Settings
from esm.outcomes import LATEST as LATEST
from esm.outcomes import FunctionError as FunctionError
from esm.outcomes import InvokeFailed as InvokeFailed
from esm.outcomes import Ok as Ok
from esm.outcomes import Outcome as Outcome
from esm.outcomes import Throttled as Throttled

log = logging.getLogger(__name__)

RESERVED_LIMIT_REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"
# threads (python:) and connections (http) of a function without reserved concurrency
DEFAULT_MAX_WORKERS = 256
CONNECT_TIMEOUT_S = 5.0
RIE_PATH = "/2015-03-31/functions/function/invocations"

# -- outcomes (esm.outcomes) --------------------------------------------------------------------

# -- the function --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    payload: bytes
    request_id: str
    invocation_type: str
    client_context: str | None
    deadline: float  # epoch seconds, on the function's clock


class _Target(Protocol):
    """Where a function runs. ``call`` maps everything the target does to an Outcome and never
    raises ``TimeoutError`` itself (that would read as the function's timeout)."""

    @property
    def gate(self) -> asyncio.Lock | asyncio.Semaphore | None:
        """Held around each call, outside the timeout (rie: one request at a time;
        environments: as many as the pool holds)."""
        ...

    async def call(self, call: _Call) -> Outcome: ...

    async def aclose(self) -> None: ...


class Function:
    """One function of the config: its target, its timeout and its reserved concurrency.

    ``invoke`` returns without waiting when ``ReservedConcurrentExecutions`` calls are already in
    flight (``Throttled``), otherwise runs the target under ``Timeout`` on the clock. A timed-out
    call is a ``Sandbox.Timedout`` function error and leaves the in-flight count at once, even when
    the target cannot be stopped (a sync python handler's thread runs on to its end).
    """

    def __init__(
        self, name: str, arn: str, config: FunctionConfig, target: _Target, clock: Clock
    ) -> None:
        self.name = name
        self.arn = arn
        self.config = config
        self._target = target
        self._clock = clock
        self._timeout_s = float(config.timeout_s)
        self._reserved = config.reserved_concurrency
        self._in_flight = 0
        self._closed = False
        # environments time the invocation themselves (a cold start's init is not in Timeout)
        self._times_itself = bool(getattr(target, "times_itself", False))

    def __repr__(self) -> str:
        return f"Function({self.name!r}, target={self.config.kind!r})"

    @property
    def reserved(self) -> int | None:
        """ReservedConcurrentExecutions now (PutFunctionConcurrency changes it at runtime)."""
        return self._reserved

    @reserved.setter
    def reserved(self, value: int | None) -> None:
        self._reserved = value

    @property
    def in_flight(self) -> int:
        """Calls started and not yet finished (queued behind an rie target's one slot included)."""
        return self._in_flight

    async def invoke(
        self,
        payload: bytes,
        *,
        request_id: str | None = None,
        invocation_type: str = "RequestResponse",
        client_context: str | None = None,
    ) -> Outcome:
        """Run the function once on ``payload`` (the event JSON); see the module's table."""
        reserved = self._reserved
        if reserved is not None and self._in_flight >= reserved:
            return Throttled(RESERVED_LIMIT_REASON)
        if self._closed:
            return InvokeFailed(f"function {self.name} is closed")
        rid = request_id or str(uuid.uuid4())
        self._in_flight += 1
        try:
            gate = self._target.gate
            if gate is None:
                return await self._call(payload, rid, invocation_type, client_context)
            async with gate:
                return await self._call(payload, rid, invocation_type, client_context)
        finally:
            self._in_flight -= 1

    async def _call(
        self, payload: bytes, rid: str, invocation_type: str, client_context: str | None
    ) -> Outcome:
        clock = self._clock
        timeout = self._timeout_s
        call = _Call(payload, rid, invocation_type, client_context, clock.now() + timeout)
        try:
            if self._times_itself:
                outcome = await self._target.call(call)
            else:
                outcome = await clock.wait_for(self._target.call(call), timeout)
        except TimeoutError:
            outcome = FunctionError(_timeout_payload(clock.now(), rid, timeout))
        except Exception as exc:  # a bug or an unforeseen library error: never an engine crash
            log.exception("function %s: invoking %s failed", self.name, self.config.kind)
            return InvokeFailed(f"{type(exc).__name__}: {exc}")
        if isinstance(outcome, FunctionError):
            _log_failure(self.name, rid, outcome.payload)
        return outcome

    async def aclose(self) -> None:
        """Release sessions and threads; safe to call twice. Later invokes are InvokeFailed."""
        if self._closed:
            return
        self._closed = True
        await self._target.aclose()


def build_functions(config: EsmConfig, *, clock: Clock, aws: AwsClients) -> dict[str, Function]:
    """One :class:`Function` per key of ``Functions``."""
    settings = config.settings
    return {
        name: build_function(
            name,
            fn,
            region=settings.region,
            account=settings.account_id,
            clock=clock,
            aws=aws,
            settings=settings,
        )
        for name, fn in config.functions.items()
    }


def build_function(
    name: str,
    fn: FunctionConfig,
    *,
    region: str,
    account: str,
    clock: Clock,
    aws: AwsClients,
    settings: Settings | None = None,
) -> Function:
    """A function named ``name`` (ARN from region and account) running at ``fn.target``, or in
    execution environments (:mod:`esm.environments`) when it has a ``Runtime``.

    ``fn.environment`` reaches environments only: python: handlers share this process's
    ``os.environ``, and http, rie and lambda targets have their own environments.
    """
    arn = function_arn(region, account, name)
    workers = fn.reserved_concurrency or DEFAULT_MAX_WORKERS
    built: _Target
    if fn.target is None:
        settings = settings or Settings()
        return Function(
            name, arn, fn, _environments(name, arn, fn, region, clock, aws, settings), clock
        )
    target = fn.target
    if target.startswith("python:"):
        built = _PythonTarget(
            target[len("python:") :],
            ContextInfo(name, arn, fn.memory_mb, _log_stream_name(clock.now())),
            clock,
            max_workers=workers,
        )
    elif target.startswith(("http://", "https://")):
        built = _HttpTarget(target, arn=arn, max_connections=workers)
    elif target.startswith("rie://"):
        built = _HttpTarget(_rie_url(target), arn=arn, max_connections=1, rie=True)
    elif target.startswith("lambda:"):
        built = _LambdaTarget(target[len("lambda:") :], aws)
    else:
        raise ValueError(f"function {name}: unsupported target {target!r}")
    return Function(name, arn, fn, built, clock)


def _environments(
    name: str,
    arn: str,
    fn: FunctionConfig,
    region: str,
    clock: Clock,
    aws: AwsClients,
    settings: Settings,
) -> _Target:
    from esm.environments import EnvironmentTarget, Spec

    assert fn.runtime is not None
    logging_config = fn.logging_config
    spec = Spec(
        name=name,
        arn=arn,
        runtime=fn.runtime,
        handler=fn.handler or "",
        code_dir=Path(fn.code_uri or ".").resolve(),
        layers=tuple(Path(p).resolve() for p in fn.layers),
        memory_mb=fn.memory_mb,
        timeout_s=float(fn.timeout_s),
        region=region,
        variables=dict(fn.environment.variables),
        endpoint_url=aws.endpoint_url,
        log_format=logging_config.log_format if logging_config else None,
        log_level=logging_config.application_log_level if logging_config else None,
    )
    pool = fn.reserved_concurrency or settings.max_environments
    return EnvironmentTarget(
        spec, clock, max_environments=max(pool, 1), idle_s=settings.environment_idle_s
    )


def _log_failure(name: str, request_id: str, payload: bytes) -> None:
    """A failed invocation, once, at WARNING: its type, message and stack (what Lambda's log
    shows), whatever the target."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        log.warning("function %s: request %s failed: %.500r", name, request_id, payload)
        return
    trace = data.get("stackTrace")
    stack = "".join(str(f) for f in trace) if isinstance(trace, list) else ""
    log.warning(
        "function %s: request %s failed: %s: %s%s",
        name,
        request_id,
        data.get("errorType", "?"),
        data.get("errorMessage", ""),
        f"\n{stack.rstrip()}" if stack else "",
    )


def _rie_url(target: str) -> str:
    parts = urlsplit(target)
    if not parts.hostname:
        raise ValueError(f"rie targets are rie://host:port (got {target!r})")
    netloc = parts.netloc if parts.port else f"{parts.netloc}:8080"  # the RIE's default port
    return f"http://{netloc}{RIE_PATH}"


# -- error payloads ------------------------------------------------------------------------------

_THIS_FILE = __file__


def _fault(error_type: str, message: str, request_id: str, trace: list[str] | None = None) -> bytes:
    return orjson.dumps(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": trace or [],
        }
    )


def _exception_payload(exc: BaseException, request_id: str) -> bytes:
    """Lambda's Python runtime's error shape; frames of this module are left out, as the runtime
    leaves out its bootstrap's."""
    frames = traceback.extract_tb(exc.__traceback__)
    start = 0
    while start < len(frames) and frames[start].filename == _THIS_FILE:
        start += 1
    return _fault(
        type(exc).__name__, _safe_str(exc), request_id, traceback.format_list(frames[start:])
    )


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def _timeout_payload(now: float, request_id: str, timeout_s: float) -> bytes:
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    stamp = stamp.replace("+00:00", "Z")
    return orjson.dumps(
        {
            "errorMessage": f"{stamp} {request_id} Task timed out after {timeout_s:.2f} seconds",
            "errorType": "Sandbox.Timedout",
        }
    )


# -- python: in process --------------------------------------------------------------------------


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


def _log_stream_name(now: float) -> str:
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


def _is_async(handler: Handler) -> bool:
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
            _fault("Runtime.MarshalError", f"Unable to marshal response: {exc}", request_id)
        )


def _unmarshal_error(exc: Exception, request_id: str) -> Outcome:
    return FunctionError(
        _fault("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}", request_id)
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


class _PythonTarget:
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
        self._is_async = _is_async(handler)
        log.info(
            "function %s: loaded %s (%s)",
            self._info.function_name,
            self._spec,
            "async" if self._is_async else "sync",
        )
        return handler

    async def call(self, call: _Call) -> Outcome:
        handler = self._handler
        if handler is None:
            try:
                handler = self._load()
            except _InitFault as fault:
                log.warning("function %s: %s", self._info.function_name, fault.message)
                return FunctionError(
                    _fault(fault.error_type, fault.message, call.request_id, fault.trace)
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


# -- http(s):// and rie:// -----------------------------------------------------------------------

_CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_STALE_CONNECTION_ERRORS = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientConnectionResetError,
)


class _HttpTarget:
    """POST the event to a URL through one pooled aiohttp session (created on the first call).

    Request headers: ``Content-Type: application/json``, the request id as ``X-Amz-Request-Id``
    and ``Lambda-Runtime-Aws-Request-Id``, ``Lambda-Runtime-Deadline-Ms``,
    ``Lambda-Runtime-Invoked-Function-Arn``, ``X-Amz-Invocation-Type`` and, when given,
    ``X-Amz-Client-Context``. A connection dropped before the response (a stale keep-alive
    connection, most often) is retried once on a fresh one, as aiohttp does for idempotent
    methods; dropped again, it is a function error (the server took the request and died).
    Other client errors mean the request never completed: ``InvokeFailed``.

    ``rie=True`` (``rie://``): one request at a time (the RIE serves one invoke per container and
    fails others), and a 200 whose body is an object with ``errorType`` and ``errorMessage`` is a
    function error even without ``X-Amz-Function-Error``, since the RIE does not always set it.
    A function that *returns* such an object is misread as failing: a known limitation.
    """

    def __init__(self, url: str, *, arn: str, max_connections: int, rie: bool = False) -> None:
        self._url = url
        self._rie = rie
        self._limit = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Invoked-Function-Arn": arn,
        }
        self.gate: asyncio.Lock | None = asyncio.Lock() if rie else None

    def _open(self) -> aiohttp.ClientSession:
        # Timeouts are the function's (clock.wait_for); only connecting has its own limit.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._limit),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S),
        )
        self._session = session
        return session

    async def call(self, call: _Call) -> Outcome:
        session = self._session or self._open()
        rid = call.request_id
        headers = {
            **self._headers,
            "X-Amz-Request-Id": rid,
            "Lambda-Runtime-Aws-Request-Id": rid,
            "Lambda-Runtime-Deadline-Ms": str(int(call.deadline * 1000)),
            "X-Amz-Invocation-Type": call.invocation_type,
        }
        if call.client_context:
            headers["X-Amz-Client-Context"] = call.client_context
        retried = False
        while True:
            try:
                resp = await session.post(
                    self._url, data=call.payload, headers=headers, allow_redirects=False
                )
                break
            except _CONNECT_ERRORS as exc:
                return InvokeFailed(f"cannot connect to {self._url}: {exc}")
            except _STALE_CONNECTION_ERRORS as exc:
                if not retried:
                    retried = True
                    continue
                return FunctionError(_fault(type(exc).__name__, f"{self._url}: {exc}", rid))
            except aiohttp.ClientError as exc:
                return InvokeFailed(f"{self._url}: {type(exc).__name__}: {exc}")
        async with resp:
            try:
                body = await resp.read()
            except aiohttp.ClientError as exc:  # it answered, then broke off
                return FunctionError(_fault(type(exc).__name__, f"{self._url}: {exc}", rid))
        return _http_outcome(resp.status, resp.headers, body, resp.reason or "", rie=self._rie)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _http_outcome(
    status: int, headers: Mapping[str, str], body: bytes, reason: str, *, rie: bool
) -> Outcome:
    version = headers.get("X-Amz-Executed-Version") or LATEST
    if 200 <= status < 300:
        error = headers.get("X-Amz-Function-Error")
        if error is not None:  # anything that sets it is a function error (docs/semantics.md §9.1)
            return FunctionError(body, "Handled" if error == "Handled" else "Unhandled", version)
        if rie and _is_error_body(body):
            return FunctionError(body, "Unhandled", version)
        return Ok(body, version)
    if status == 429:
        return Throttled(_throttle_reason(body))
    return FunctionError(_error_body(body, status, reason), "Unhandled", version)


def _is_error_body(body: bytes) -> bool:
    if not body.lstrip().startswith(b"{") or b'"errorType"' not in body:
        return False
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and "errorType" in data and "errorMessage" in data


def _error_body(body: bytes, status: int, reason: str) -> bytes:
    """A non-2xx answer as an error payload: JSON as it came, anything else wrapped."""
    if body:
        try:
            orjson.loads(body)
            return body
        except orjson.JSONDecodeError:
            pass
    text = body.decode("utf-8", "replace") or reason
    return orjson.dumps({"errorMessage": text, "errorType": f"HTTP{status}"})


def _throttle_reason(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "HTTP 429"
    if isinstance(data, dict):
        for key in ("Reason", "message", "Message"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return "HTTP 429"


# -- lambda: a real Lambda function --------------------------------------------------------------


class _LambdaTarget:
    """``lambda:arn:aws:lambda:region:account:function:name[:qualifier]``: Lambda's Invoke with
    ``RequestResponse`` (esm runs the async side itself), through the shared aiobotocore client.

    ``TooManyRequestsException`` is ``Throttled`` (its ``Reason`` kept); every other API error
    (``ResourceNotFoundException``, ``AccessDeniedException``, ``ServiceException`` …) and every
    connection error is ``InvokeFailed``: the function did not run.

    The shared client retries first (AwsClients: standard mode, 3 attempts, throttles included,
    with up to ~3 s of backoff), inside this function's ``Timeout``: with a Timeout of 1 or 2 s a
    throttled Invoke can surface as a timeout. Its read timeout (70 s) also caps a Lambda call.
    """

    gate: asyncio.Lock | None = None

    def __init__(self, arn: str, aws: AwsClients) -> None:
        self._arn = arn
        self._region = Arn.parse(arn).region
        self._aws = aws

    async def call(self, call: _Call) -> Outcome:
        kwargs: dict[str, Any] = {
            "FunctionName": self._arn,
            "InvocationType": "RequestResponse",
            "Payload": call.payload,
        }
        if call.client_context:
            kwargs["ClientContext"] = call.client_context
        try:
            client = await self._aws.client("lambda", self._region)
            resp = await client.invoke(**kwargs)
            async with resp["Payload"] as stream:
                body: bytes = await stream.read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", ""), error.get("Message", "")
            if code == "TooManyRequestsException":
                return Throttled(str(exc.response.get("Reason") or message or code))
            return InvokeFailed(f"{code}: {message}")
        except (BotoCoreError, aiohttp.ClientError) as exc:
            return InvokeFailed(f"{type(exc).__name__}: {exc}")
        version = str(resp.get("ExecutedVersion") or LATEST)
        kind = resp.get("FunctionError")
        if kind is not None:
            return FunctionError(body, "Handled" if kind == "Handled" else "Unhandled", version)
        return Ok(body, version)

    async def aclose(self) -> None:
        """The aiobotocore client belongs to AwsClients."""
