"""The Lambda-compatible HTTP API: boto3, the AWS CLI and SDKs talk to esm with ``--endpoint-url``.

::

    POST /2015-03-31/functions/{FunctionName}/invocations[?Qualifier=]    Invoke
    GET  /health                                                          backend.health()
    GET  /health/live                                                     200 while it answers

``build_app(backend)`` is the aiohttp application; ``serve(backend)`` runs it on a port. The engine
implements :class:`ApiBackend`; this module only speaks HTTP: it parses and validates what Lambda
validates, calls the backend, and renders answers and errors byte for byte as Lambda does
(``x-amzn-ErrorType`` + ``{"Type", "message"}``, see :func:`error_response`). Every response
carries ``x-amzn-RequestId``. Handlers raise :class:`~esm.errors.LambdaApiError`; one middleware
renders it, and turns any other exception into a logged 500 ``ServiceException``.

**Who may call** (``Settings.ApiAuth``). By default anyone who reaches the port may call every
operation: keep ``ApiHost`` on loopback, or turn on ``Mode: sigv4``. Then every request is
checked before any operation sees it, as AWS checks a signature (:mod:`esm.sigv4`: the refusals
are AWS's 403s, ``MissingAuthenticationTokenException``, ``UnrecognizedClientException``,
``InvalidSignatureException`` …, each one INFO line naming the peer and the error, never the
signature), except ``GET /health``, ``/health/live`` and ``/metrics``, which stay open for
orchestrators and Prometheus (they show function and mapping names and counts, no payloads).

Invoke, in the order it checks (docs/semantics.md §10.5, §9.1, §10.4):

=====================================  ========================================================
request                                answer
=====================================  ========================================================
``X-Amz-Invocation-Type`` not          400 InvalidParameterValueException
RequestResponse / Event / DryRun,
``X-Amz-Log-Type`` not None / Tail
FunctionName in none of Lambda's       400 InvalidParameterValueException
forms; qualifier in the name differs
from ``?Qualifier=``
body over 6,291,456 bytes (sync,       413 RequestTooLargeException, Lambda's message
DryRun) / 1,048,576 bytes (Event)
unknown function, qualifier other      404 ResourceNotFoundException (the backend decides)
than ``$LATEST``
body not JSON                          400 InvalidRequestContentException
DryRun                                 204
Event                                  202 once the backend has queued it durably
RequestResponse, ``Ok``                200, payload, ``X-Amz-Executed-Version``
RequestResponse, ``FunctionError``     200, error payload, ``X-Amz-Function-Error``
RequestResponse, ``Throttled``         429 TooManyRequestsException, ``Reason``, ``Retry-After``
RequestResponse, ``InvokeFailed``      502 ResourceNotReadyException
=====================================  ========================================================

Decisions where AWS's text is silent or esm differs:

- **Empty body.** Lambda runs the function with ``{}`` when Invoke has no payload (boto3 and the
  CLI then send an empty body); the backend gets ``b"{}"``. Only a zero-length body counts as
  empty: whitespace alone is not JSON.
- **JSON.** Any JSON value is accepted (object, array, string, number, ``null``), as on Lambda;
  ``NaN`` and ``Infinity`` are not JSON. The body is passed on as it came, not re-serialised.
- **Function could not be run** (``InvokeFailed``: connection refused, the target's Lambda API
  refused, the engine is shutting down). Lambda has no error for "the runtime could not be
  reached"; esm answers 502 ``ResourceNotReadyException`` (``Type: Service``), the Invoke error
  whose meaning is closest ("not ready, try again") and whose status is a gateway's. botocore
  surfaces the code, and its retry modes retry a 502, which is right: the function never ran.
- **Throttles** carry the ``Reason`` the outcome gives when it is one of Lambda's
  ``ThrottleReason`` values, otherwise ``ReservedFunctionConcurrentInvocationLimitExceeded``;
  ``Retry-After: 1``; message ``Rate Exceeded.`` as Lambda words it.
- **Oversized requests** use the modelled name ``RequestTooLargeException``
  (docs/semantics.md §10.5). Real Lambda has been seen to send ``RequestEntityTooLargeException``
  on the wire for the same 413, with the messages used here.
- **Oversized responses.** A function answer over 6,291,556 bytes becomes Lambda's
  ``Function.ResponseSizeTooLarge`` function error (200, ``X-Amz-Function-Error: Unhandled``).
- **LogType Tail.** ``X-Amz-Log-Result`` is the base64 of the last 4 KB of the call's log. A
  function run in execution environments gives its own (what it printed, START / END / REPORT);
  for other targets it is Lambda's ``START`` / ``END`` / ``REPORT`` lines for the call (request
  id, version, duration): python: handlers print to the daemon's own output, others elsewhere.
- **ClientContext** is passed through for synchronous calls as it came (base64 JSON, up to 3,583
  bytes per the model; not checked here) and ignored for ``Event``, as Lambda does.
- **ARNs.** Region and account in a function ARN are not compared with esm's own: the backend
  gets the function's name and qualifier only.
- The ``x-amzn-RequestId`` of a synchronous call is the API's own id; the function's
  ``aws_request_id`` is chosen by the backend.
- **JSON nested deeper than 1,024 levels** (orjson's limit; Python's parser, asked next, stops
  sooner) is refused like any body that is not JSON, 400 ``InvalidRequestContentException``.

Requests that reach no operation, decided here (AWS's common errors, which any AWS API answers and
no service models; botocore raises ``ClientError`` with the name as ``Error.Code``):

- **A Lambda operation esm does not implement** (CreateAlias, PublishVersion, AddPermission …,
  recognised by method and path from botocore's service model, :mod:`esm.lambda_model`): 501
  ``InternalFailure``, ``{"Type": "Service", "message": "esm does not support <Operation>: …"}``
  (docs/semantics.md §10.8).

- **Unknown operation.** A path esm does not serve, and a method that a served path does not take,
  are both 404 ``UnknownOperationException`` ("the action or operation requested is invalid", AWS's
  common error; ``{"Type": "User", "message": …}`` naming the method and path, and the methods the
  path takes). AWS's REST front end routes on method and path together, so a wrong method is an
  unknown operation there too, not a 405: LocalStack's router, which follows it, turns werkzeug's
  405 into the same 404. Real Lambda's body is empty of detail; esm's message says what it serves.
- **A body aiohttp refuses to read**: a control-plane body over 1 MiB is 413
  ``RequestEntityTooLargeException`` (Invoke keeps Lambda's ``RequestTooLargeException``).
- **Malformed HTTP, stalled bodies, too many connections**: 400
  ``MalformedHttpRequestException``, 408 ``RequestTimeoutException``, and 503 named
  ``ServiceException`` (Lambda's own name, as for the store being down) past the connection cap
  (:mod:`esm.api_server`, which also serves the port: ``ApiMaxConnections``,
  ``ApiReadTimeoutSeconds``).
- A client that goes away mid-request is an INFO line, not an error.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, cast

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from esm.api_server import BODY, LIMITS, ApiLimits, ApiServer, one_line, read_body, start
from esm.arns import parse_function_name, valid_qualifier
from esm.errors import (
    AuthError,
    InvalidParameterValueException,
    InvalidRequestContentException,
    LambdaApiError,
    MalformedHttpRequestException,
    OperationNotSupported,
    RequestEntityTooLargeException,
    RequestTimeoutException,
    RequestTooLargeException,
    ResourceNotReadyException,
    ServiceException,
    ServiceUnavailable,
    TooManyRequestsException,
    UnknownOperationException,
)
from esm.functions import (
    RESERVED_LIMIT_REASON,
    FunctionError,
    InvokeFailed,
    Ok,
    Outcome,
    Throttled,
)
from esm.lambda_model import operation_for
from esm.sigv4 import Arrived, Verifier
from esm.store import StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3001

INVOKE_PATH = "/2015-03-31/functions/{FunctionName}/invocations"
HEALTH_PATH = "/health"
LIVE_PATH = "/health/live"
METRICS_PATH = "/metrics"
OPEN_PATHS = frozenset({HEALTH_PATH, LIVE_PATH, METRICS_PATH})  # never signed (ApiAuth)

INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
LOG_TYPES = ("None", "Tail")
SYNC_PAYLOAD_LIMIT = 6_291_456  # bytes, request (docs/semantics.md §10.5)
ASYNC_PAYLOAD_LIMIT = 1_048_576  # bytes, Event request (docs/semantics.md §8.1)
RESPONSE_PAYLOAD_LIMIT = 6_291_556  # bytes, as Lambda's Function.ResponseSizeTooLarge states it
TAIL_LIMIT = 4096  # bytes of log in X-Amz-Log-Result
RETRY_AFTER_S = 1
THROTTLE_REASONS = frozenset(
    {
        "ConcurrentInvocationLimitExceeded",
        "FunctionInvocationRateLimitExceeded",
        "ReservedFunctionConcurrentInvocationLimitExceeded",
        "ReservedFunctionInvocationRateLimitExceeded",
        "CallerRateLimitExceeded",
        "ConcurrentSnapshotCreateLimitExceeded",
    }
)
SERVED = (
    "esm serves Invoke, the event source mapping and event invoke config operations, "
    "GetFunction, GetFunctionConfiguration, ListFunctions, function concurrency and tags"
)
PATH_CHARS = 200  # of a request's path, in an error message


class ApiBackend(Protocol):
    """What the API needs from the engine.

    ``resolve_function(name, qualifier)`` gets the bare function name (``my-fn`` from any form
    of docs/semantics.md §10.4) and the qualifier: the one in the name or in ``?Qualifier=``
    (the API has already refused the two disagreeing), or None. It returns the key the other
    calls take. Only ``$LATEST`` exists in esm (no versions, no aliases), so it raises
    ``ResourceNotFoundException("Function not found: <function ARN>")`` for an unknown name,
    and the same, with the qualifier appended to the ARN, for any qualifier but ``$LATEST``;
    ``InvalidParameterValueException`` for anything else it refuses.

    ``invoke_sync`` runs the function once and returns its outcome; ``invoke_event`` returns
    the request id only once the event is durably queued (the 202 is sent after it);
    ``health`` is ``{"status": "ok" | "degraded", ...}`` and must not block. Any of them may
    raise a ``LambdaApiError``, which is answered as Lambda does.
    """

    def resolve_function(self, name: str, qualifier: str | None) -> str: ...

    async def invoke_sync(
        self, function: str, payload: bytes, *, client_context: str | None, request_id: str
    ) -> Outcome: ...

    async def invoke_event(self, function: str, payload: bytes) -> str: ...

    def health(self) -> dict[str, Any]: ...


BACKEND: Final = web.AppKey[ApiBackend]("backend")
AUTH: Final = web.AppKey[Verifier]("auth")
CALLER: Final = web.RequestKey[str]("caller")  # the access key id that signed the request

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(
    backend: ApiBackend, limits: ApiLimits | None = None, auth: Verifier | None = None
) -> web.Application:
    """The API as an aiohttp application; operations are added per group of routes. A backend
    with a ``control`` plane and ``metrics`` (the engine) also serves the control plane
    (:mod:`esm.control_api`) and ``/metrics``. ``limits`` bound body reads (and, served by
    :func:`serve`, connections). With ``auth``, every request but :data:`OPEN_PATHS` must be
    signed with one of its keys (:func:`_authenticate`)."""
    middlewares: list[Any] = [_lambda_errors]
    if auth is not None:
        middlewares.append(_authenticate)
    app = web.Application(middlewares=middlewares)
    if auth is not None:
        app[AUTH] = auth
    app[BACKEND] = backend
    app[LIMITS] = limits or ApiLimits()
    app.router.add_post(INVOKE_PATH, invoke)
    app.router.add_get(HEALTH_PATH, health)
    app.router.add_get(LIVE_PATH, live)
    control = getattr(backend, "control", None)
    metrics = getattr(backend, "metrics", None)
    if control is not None and metrics is not None:
        from esm.control_api import add_routes

        add_routes(app, control, metrics)
    if hasattr(backend, "async_worker") and hasattr(backend, "mappings"):
        from esm import status

        status.add_routes(app, cast("status.StatusHost", backend))
    return app


# -- errors --------------------------------------------------------------------------------------

# Error shapes whose message member is ``Message`` in Lambda's model (and on the wire); every
# other Lambda error spells it ``message``. botocore reads either into Error.Message, but the
# modelled member (``e.response["Message"]``) is the one named in the shape.
_CAPITALISED_MESSAGE = frozenset(
    {
        "ResourceNotFoundException",
        "ResourceInUseException",
        "ServiceException",
    }
)


def error_response(
    exc: LambdaApiError,
    *,
    fields: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """``exc`` as Lambda sends it: its status, ``x-amzn-ErrorType: <Name>`` (what botocore's
    rest-json parser reads as ``Error.Code``) and ``{"Type": "User"|"Service", "message": …}``
    (``Error.Message``), plus modelled ``fields`` (``Reason``) and ``headers`` (``Retry-After``).
    """
    body: dict[str, str] = dict(exc.body())
    if exc.name in _CAPITALISED_MESSAGE and "message" in body:
        body["Message"] = body.pop("message")
    if fields:
        body.update(fields)
    try:
        data = orjson.dumps(body)
    except TypeError:  # a lone surrogate: a header's undecodable bytes quoted in the message
        data = orjson.dumps(
            {k: v.encode("utf-8", "backslashreplace").decode() for k, v in body.items()}
        )
    response = web.Response(
        status=exc.status,
        body=data,
        content_type="application/json",
        headers={"x-amzn-ErrorType": exc.name},
    )
    if headers:
        response.headers.update(headers)
    return response


@web.middleware
async def _lambda_errors(request: web.Request, handler: RouteHandler) -> web.StreamResponse:
    request_id = str(uuid.uuid4())  # unless the handler set its own
    response: web.StreamResponse
    try:
        response = await handler(request)
    except Exception as exc:
        response = answer_to(request, exc, request_id)
    response.headers.setdefault("x-amzn-RequestId", request_id)
    return response


@web.middleware
async def _authenticate(request: web.Request, handler: RouteHandler) -> web.StreamResponse:
    """``Settings.ApiAuth``: the request's SigV4 signature checked (:mod:`esm.sigv4`) before any
    handler runs, on every path but :data:`OPEN_PATHS` (unknown ones too: an unsigned caller
    learns nothing). The body is read here (at most Invoke's 6 MB; a larger one is refused with
    a 413 before its signature is checked) and handed to the handler through :data:`BODY`."""
    if request.path in OPEN_PATHS:
        return await handler(request)
    body = await read_body(
        request, SYNC_PAYLOAD_LIMIT, lambda size: _too_large_to_sign(request, size)
    )
    request[BODY] = body
    raw_path, _, query = request.raw_path.partition("?")
    arrived = Arrived(request.method, raw_path, query, list(request.headers.items()), body)
    try:
        request[CALLER] = request.app[AUTH].check(arrived)
    except AuthError as exc:
        log.info(
            "%s %s from %s refused: %s: %s",
            request.method,
            _path(request),
            request.remote,
            exc.name,
            one_line(exc.message.split("\n", 1)[0]),
        )
        raise
    return await handler(request)


def _too_large_to_sign(request: web.Request, size: int) -> LambdaApiError:
    route = request.match_info.route.resource
    if route is not None and route.canonical == INVOKE_PATH:
        return _too_large("RequestResponse", size, SYNC_PAYLOAD_LIMIT)
    return RequestEntityTooLargeException(
        f"Request must be smaller than {SYNC_PAYLOAD_LIMIT} bytes (got {size} bytes)"
    )


def answer_to(request: web.Request, exc: Exception, request_id: str) -> web.Response:
    """What a handler's exception is answered with: a Lambda error as Lambda sends it; the store
    down as a 503 ``ServiceException``; aiohttp's refusals (no such route or method, a body it
    cannot decode) as AWS's common errors; a client gone mid-request as nothing; anything else as
    a logged 500 ``ServiceException``."""
    if isinstance(exc, LambdaApiError):
        response = error_response(exc)
        if isinstance(exc, RequestTimeoutException):
            response.force_close()
        return response
    if isinstance(exc, StoreUnavailable):  # Redis is down: the SDK retries a 503
        log.warning("%s %s refused: %s", request.method, _path(request), exc)
        return error_response(ServiceUnavailable())
    if isinstance(exc, web.HTTPException):
        return error_response(http_error(request, exc))
    if isinstance(exc, RequestPayloadError | HttpProcessingError):  # e.g. a bad gzip body
        reason = one_line(str(exc))
        log.warning("%s %s from %s: %s", request.method, _path(request), request.remote, reason)
        response = error_response(MalformedHttpRequestException(f"The body is invalid: {reason}"))
        response.force_close()
        return response
    if isinstance(exc, ConnectionError) and (
        request.transport is None or request.transport.is_closing()
    ):
        log.info("%s %s: the client went away (%s)", request.method, _path(request), exc)
        return web.Response(status=400)  # nobody reads it
    log.error("%s %s failed (request %s)", request.method, request.path, request_id, exc_info=exc)
    return error_response(ServiceException("An internal error occurred in esm."))


def http_error(request: web.Request, exc: web.HTTPException) -> LambdaApiError:
    """aiohttp's own refusals as AWS's common errors (the module's decisions)."""
    if exc.status in (404, 405):
        operation = operation_for(request.method, request.path, request.query)
        if operation is not None:
            return OperationNotSupported(f"esm does not support {operation}: {SERVED}.")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        takes = ", ".join(sorted(exc.allowed_methods))
        return UnknownOperationException(
            f"Unknown operation {request.method} {_path(request)} (that path takes "
            f"{takes}): {SERVED}."
        )
    if exc.status == 404:
        return UnknownOperationException(
            f"Unknown operation {request.method} {_path(request)}: {SERVED}."
        )
    if exc.status == 413:
        return RequestEntityTooLargeException(f"The request body is too large: {exc.text}")
    if exc.status < 500:
        return MalformedHttpRequestException(f"{exc.status} {exc.reason}: {exc.text}")
    return ServiceException(f"{exc.status} {exc.reason}")


def _path(request: web.Request) -> str:
    path = request.path
    return path if len(path) <= PATH_CHARS else path[: PATH_CHARS - 1] + "…"


# -- Invoke --------------------------------------------------------------------------------------


async def invoke(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    invocation_type = _enum_header(
        request, "X-Amz-Invocation-Type", "invocationType", INVOCATION_TYPES
    )
    log_type = _enum_header(request, "X-Amz-Log-Type", "logType", LOG_TYPES)
    name, qualifier = function_from_request(request)
    body = await read_payload(request, invocation_type)
    function = backend.resolve_function(name, qualifier)
    payload = check_json(body)
    if invocation_type == "DryRun":
        return web.Response(status=204)
    if invocation_type == "Event":
        request_id = await backend.invoke_event(function, payload)
        return web.Response(status=202, headers={"x-amzn-RequestId": request_id})
    started = time.monotonic()
    request_id = str(uuid.uuid4())  # the function's aws_request_id, the log's and the answer's
    outcome = await backend.invoke_sync(
        function,
        payload,
        client_context=request.headers.get("X-Amz-Client-Context"),
        request_id=request_id,
    )
    elapsed_ms = (time.monotonic() - started) * 1000
    response = sync_response(outcome)
    response.headers["x-amzn-RequestId"] = request_id
    if log_type == "Tail" and isinstance(outcome, Ok | FunctionError):
        if outcome.log is not None:  # execution environments: the invocation's own log
            tail = outcome.log.encode()[-TAIL_LIMIT:]
            response.headers["X-Amz-Log-Result"] = base64.b64encode(tail).decode("ascii")
        else:
            version = outcome.executed_version
            response.headers["X-Amz-Log-Result"] = tail_log(request_id, version, elapsed_ms)
    return response


def _enum_header(request: web.Request, header: str, member: str, choices: tuple[str, ...]) -> str:
    """A header whose model shape is an enum: its value, the first choice when absent."""
    value = request.headers.get(header)
    if value is None:
        return choices[0]
    if value not in choices:
        raise InvalidParameterValueException(
            f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{', '.join(choices)}]"
        )
    return value


def function_from_request(request: web.Request) -> tuple[str, str | None]:
    """The function name and qualifier of ``/functions/{FunctionName}/…[?Qualifier=]``.

    FunctionName arrives percent-decoded once by aiohttp's router (boto3 sends ``:`` and ``$``
    as ``%3A`` and ``%24``). A qualifier in the name and one in the query must agree.
    """
    try:
        ref = parse_function_name(request.match_info["FunctionName"])
    except ValueError as exc:
        raise InvalidParameterValueException(str(exc)) from None
    query = request.query.get("Qualifier")
    if query is not None and not (valid_qualifier(query) and len(query) <= 128):
        raise InvalidParameterValueException(
            f"1 validation error detected: Value '{query}' at 'qualifier' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: "
            r"\$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+"
        )
    if ref.qualifier is not None and query is not None and ref.qualifier != query:
        raise InvalidParameterValueException(
            "The derived qualifier from the function name does not match the specified qualifier."
        )
    return ref.name, ref.qualifier if query is None else query


async def read_payload(request: web.Request, invocation_type: str) -> bytes:
    """The body, refused with Lambda's 413 past the invocation type's limit without reading
    more than limit + 1 bytes (aiohttp drains or drops the rest), and with 408 when it stalls."""
    limit = ASYNC_PAYLOAD_LIMIT if invocation_type == "Event" else SYNC_PAYLOAD_LIMIT
    return await read_body(request, limit, lambda size: _too_large(invocation_type, size, limit))


def _too_large(invocation_type: str, size: int, limit: int) -> RequestTooLargeException:
    if invocation_type == "Event":
        return RequestTooLargeException(
            f"{size} byte payload is too large for the Event invocation type (limit {limit} bytes)"
        )
    return RequestTooLargeException(
        f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
    )


def check_json(body: bytes) -> bytes:
    """The payload the function gets: the body when it is JSON, ``{}`` when it is empty."""
    if not body:
        return b"{}"
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson is strict where Lambda is not (integers past 64 bits are fine, so are lone
        # surrogate escapes and a UTF-8 BOM): ask the lenient parser before refusing.
        try:
            json.loads(body, parse_constant=_no_constants)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise InvalidRequestContentException(
                f"Could not parse request body into json: Could not parse payload into json: {exc}"
            ) from None
        except RecursionError:  # nested deeper than orjson's 1,024 levels and Python's stack
            raise InvalidRequestContentException(
                "Could not parse request body into json: Could not parse payload into json: "
                "nested deeper than 1024 levels"
            ) from None
    return body


def _no_constants(name: str) -> Any:
    raise ValueError(f"Unrecognized token '{name}': was expecting a JSON value")


def sync_response(outcome: Outcome) -> web.Response:
    """A RequestResponse outcome as Lambda answers it (the module's table)."""
    match outcome:
        case Ok(payload=payload, executed_version=version):
            if len(payload) > RESPONSE_PAYLOAD_LIMIT:
                return _function_error(_response_too_large(len(payload)), "Unhandled", version)
            response = web.Response(status=200, body=payload, content_type="application/json")
            response.headers["X-Amz-Executed-Version"] = version
            return response
        case FunctionError(payload=payload, kind=kind, executed_version=version):
            if len(payload) > RESPONSE_PAYLOAD_LIMIT:
                payload = _response_too_large(len(payload))
            return _function_error(payload, kind, version)
        case Throttled(reason=reason):
            known = reason in THROTTLE_REASONS
            return error_response(
                TooManyRequestsException("Rate Exceeded." if known else f"Rate Exceeded: {reason}"),
                fields={"Reason": reason if known else RESERVED_LIMIT_REASON},
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        case InvokeFailed(reason=reason):
            log.warning("invoke: the function could not be run: %s", reason)
            return error_response(
                ResourceNotReadyException(f"The function could not be run: {reason}")
            )


def _function_error(payload: bytes, kind: str, version: str) -> web.Response:
    response = web.Response(status=200, body=payload, content_type="application/json")
    response.headers["X-Amz-Function-Error"] = kind
    response.headers["X-Amz-Executed-Version"] = version
    return response


def _response_too_large(size: int) -> bytes:
    return orjson.dumps(
        {
            "errorMessage": f"Response payload size ({size} bytes) exceeded maximum allowed "
            f"payload size ({RESPONSE_PAYLOAD_LIMIT} bytes).",
            "errorType": "Function.ResponseSizeTooLarge",
        }
    )


def tail_log(request_id: str, version: str, duration_ms: float) -> str:
    """``X-Amz-Log-Result``: base64 of the last 4 KB of the call's log, Lambda's platform lines."""
    text = (
        f"START RequestId: {request_id} Version: {version}\n"
        f"END RequestId: {request_id}\n"
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t\n"
    )
    return base64.b64encode(text.encode()[-TAIL_LIMIT:]).decode("ascii")


# -- health --------------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    """Readiness: 200 with the backend's health while its status is ``ok``, 503 otherwise (the
    body says why: the store does not answer, a mapping is failing …)."""
    data = request.app[BACKEND].health()
    status = 200 if data.get("status") == "ok" else 503
    return web.Response(
        status=status,
        body=orjson.dumps(data, default=str),
        content_type="application/json",
    )


async def live(request: web.Request) -> web.Response:
    """Liveness: 200 whenever the daemon's loop answers, whatever the store or the mappings do
    (for an orchestrator that restarts what it finds dead: restarting esm does not bring Redis
    back)."""
    return web.Response(status=200, body=b'{"status":"alive"}', content_type="application/json")


# -- serving -------------------------------------------------------------------------------------


async def serve(
    backend: ApiBackend,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    shutdown_timeout_s: float = 30.0,
    limits: ApiLimits | None = None,
    auth: Verifier | None = None,
    access_log: bool = False,
) -> ApiServer:
    """Start the API on ``host:port`` (loopback and 3001 unless told; port 0 picks a free one),
    holding at most ``limits.max_connections`` and closing clients silent for
    ``limits.read_timeout_s`` (:mod:`esm.api_server`); with ``auth``, only to signed
    requests."""
    app = build_app(backend, limits, auth)
    server = await start(
        app,
        host,
        port,
        render=error_response,
        shutdown_timeout_s=shutdown_timeout_s,
        access_log=access_log,
    )
    log.info("api listening on %s", server.url)
    return server
