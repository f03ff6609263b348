"""The Lambda Runtime API (version 2018-06-01), served by esm on loopback to its environments.

A runtime (``awslambdaric``, a ``bootstrap``) finds the API at ``AWS_LAMBDA_RUNTIME_API``
(``host:port``) and speaks it as on Lambda::

    GET  /2018-06-01/runtime/invocation/next             long poll: the next event
    POST /2018-06-01/runtime/invocation/{id}/response    the function's answer
    POST /2018-06-01/runtime/invocation/{id}/error       the function failed
    POST /2018-06-01/runtime/init/error                  the runtime could not start

``AWS_LAMBDA_RUNTIME_API`` carries no path, so the port says which environment asks: one
:class:`RuntimeApi` (one aiohttp app and runner) listens on one loopback port per environment
and routes each request to that environment's :class:`Channel`.

What each call answers (AWS's runtimes-api reference; bodies are JSON):

======================  ======  ====================================================
call                    status  when
======================  ======  ====================================================
next                    200     the event as body; headers ``Lambda-Runtime-Aws-Request-Id``,
                                ``-Deadline-Ms`` (epoch ms), ``-Invoked-Function-Arn``,
                                ``-Trace-Id``, and ``-Client-Context`` (the Invoke's ClientContext,
                                decoded from base64) / ``-Cognito-Identity`` when there is one
next                    500     the environment is being shut down: the runtime should exit
response, error         202     ``{"status": "OK"}``
response, error         400     ``InvalidRequestID``: not the invocation in progress
response, error         403     ``InvalidStateTransition``: already answered
response                413     ``RequestEntityTooLarge`` past 6,291,556 bytes; the invocation
                                fails with ``Function.ResponseSizeTooLarge`` (as Lambda)
init/error              202     the environment's init failed with that error
init/error              403     ``InvalidStateTransition`` once the runtime asked for an event
======================  ======  ====================================================

An error's type is the ``Lambda-Runtime-Function-Error-Type`` header, else the body's
``errorType``; the body (``errorMessage``, ``errorType``, ``stackTrace``) is what Invoke returns,
wrapped as ``{"errorMessage", "errorType"}`` when it is not a JSON object.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import time
from dataclasses import dataclass

import orjson
from aiohttp import web

log = logging.getLogger(__name__)

PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
# Lambda's synchronous response limit (the Invoke API's 6 MB, as Lambda counts it)
RESPONSE_LIMIT = 6_291_556
# error bodies: Lambda takes them up to the same size; more is cut to this
ERROR_LIMIT = RESPONSE_LIMIT
_READ_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Invocation:
    """One event handed to an environment."""

    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str
    client_context: str | None = None  # base64 JSON, as Invoke's ClientContext
    cognito_identity: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """``…/response``: the function's answer, as bytes."""

    body: bytes


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """``…/error`` (or a response refused for its size): Lambda's error body and its type."""

    error_type: str
    body: bytes


Answer = Response | ErrorResponse


def trace_id(now: float) -> str:
    """An X-Ray trace header as Lambda passes it (``Root=1-<epoch hex>-<96 bits>``, not sampled)."""
    return f"Root=1-{int(now):08x}-{os.urandom(12).hex()};Parent={os.urandom(8).hex()};Sampled=0"


def error_body(raw: bytes, error_type: str | None) -> tuple[str, bytes]:
    """The error type and the body Invoke returns for an ``…/error`` or ``init/error`` post."""
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        kind = error_type or (
            data.get("errorType") if isinstance(data.get("errorType"), str) else None
        )
        return kind or "Runtime.Unknown", raw
    kind = error_type or "Runtime.Unknown"
    text = raw.decode("utf-8", "replace")
    return kind, orjson.dumps({"errorMessage": text, "errorType": kind})


def _decoded_client_context(value: str) -> str | None:
    """Lambda hands the runtime the ClientContext JSON itself, not its base64."""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


class Channel:
    """One environment's side of the API: at most one invocation in progress.

    The environment calls :meth:`invoke` (returns the answer) and :meth:`close`; the server
    calls :meth:`next`, :meth:`respond`, :meth:`fail` and :meth:`init_failed`. ``ready`` is set
    when the runtime first asks for an event (its init is done); ``init_error`` is set when it
    reports that its init failed.
    """

    def __init__(self) -> None:
        self._incoming: asyncio.Queue[Invocation | None] = asyncio.Queue()
        self._current: Invocation | None = None
        self._answer: asyncio.Future[Answer] | None = None
        self._answered: set[str] = set()
        self.ready = asyncio.Event()
        self.init_error: asyncio.Future[ErrorResponse] = asyncio.get_running_loop().create_future()
        self.closed = False

    # -- the environment's side --

    def submit(self, invocation: Invocation) -> asyncio.Future[Answer]:
        """Hand ``invocation`` to the runtime's next ``/next``; the future gets its answer."""
        if self._answer is not None and not self._answer.done():
            raise RuntimeError("an invocation is already in progress in this environment")
        self._answer = asyncio.get_running_loop().create_future()
        self._incoming.put_nowait(invocation)
        return self._answer

    def close(self) -> None:
        """Wake a waiting ``/next`` with a 500 (the runtime should exit); later ones get it too."""
        self.closed = True
        self._incoming.put_nowait(None)

    # -- the server's side --

    async def next(self) -> Invocation | None:
        self.ready.set()
        if self.closed:
            return None
        invocation = await self._incoming.get()
        if invocation is None:
            self._incoming.put_nowait(None)  # for whoever asks next
            return None
        self._current = invocation
        self._answered.discard(invocation.request_id)  # an async retry keeps its request id
        return invocation

    def _check(self, request_id: str) -> tuple[int, str, str] | None:
        if request_id in self._answered:
            return 403, "InvalidStateTransition", f"Invocation {request_id} was already answered"
        current = self._current
        if current is None or current.request_id != request_id:
            return 400, "InvalidRequestID", f"Invalid request ID: {request_id}"
        return None

    def _finish(self, answer: Answer) -> None:
        assert self._current is not None
        self._answered.add(self._current.request_id)
        if len(self._answered) > 64:  # only the last few ids can be answered twice
            self._answered = {self._current.request_id}
        self._current = None
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(answer)

    def respond(self, request_id: str, body: bytes) -> tuple[int, str, str] | None:
        """None when taken, else (status, errorType, errorMessage)."""
        problem = self._check(request_id)
        if problem is None:
            self._finish(Response(body))
        return problem

    def too_large(self, request_id: str, size: int) -> tuple[int, str, str]:
        problem = self._check(request_id)
        if problem is not None:
            return problem
        message = (
            f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
            f"({RESPONSE_LIMIT} bytes)."
        )
        self._finish(
            ErrorResponse(
                "Function.ResponseSizeTooLarge",
                orjson.dumps(
                    {"errorMessage": message, "errorType": "Function.ResponseSizeTooLarge"}
                ),
            )
        )
        return (
            413,
            "RequestEntityTooLarge",
            f"Exceeded maximum allowed payload size ({RESPONSE_LIMIT} bytes).",
        )

    def fail(
        self, request_id: str, raw: bytes, error_type: str | None
    ) -> tuple[int, str, str] | None:
        problem = self._check(request_id)
        if problem is None:
            kind, body = error_body(raw, error_type)
            self._finish(ErrorResponse(kind, body))
        return problem

    def init_failed(self, raw: bytes, error_type: str | None) -> tuple[int, str, str] | None:
        if self.ready.is_set() or self.init_error.done():
            return 403, "InvalidStateTransition", "init/error is only taken during init"
        kind, body = error_body(raw, error_type)
        self.init_error.set_result(ErrorResponse(kind, body))
        return None


# -- the server ----------------------------------------------------------------------------------

_CHANNELS = web.AppKey("channels", dict[int, Channel])


def _channel(request: web.Request) -> Channel:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    channel = request.app[_CHANNELS].get(sockname[1]) if sockname else None
    if channel is None:
        raise web.HTTPNotFound(text="no environment listens on this port")
    return channel


def _problem(problem: tuple[int, str, str] | None) -> web.Response:
    if problem is None:
        return web.json_response({"status": "OK"}, status=202)
    status, kind, message = problem
    return web.json_response({"errorMessage": message, "errorType": kind}, status=status)


async def _read(request: web.Request, limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of the body and its size (what is past the limit is read away)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_READ_CHUNK)
        if not chunk:
            break
        if size < limit + 1:
            chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[: limit + 1], size


async def _next(request: web.Request) -> web.StreamResponse:
    channel = _channel(request)
    invocation = await channel.next()
    if invocation is None:
        return web.json_response(
            {"errorMessage": "The environment is shutting down", "errorType": "Runtime.Shutdown"},
            status=500,
        )
    headers = {
        "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
        "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
        "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
        "Lambda-Runtime-Trace-Id": invocation.trace_id,
        "Content-Type": "application/json",
    }
    if invocation.client_context:
        decoded = _decoded_client_context(invocation.client_context)
        if decoded is not None:
            headers["Lambda-Runtime-Client-Context"] = decoded
    if invocation.cognito_identity:
        headers["Lambda-Runtime-Cognito-Identity"] = invocation.cognito_identity
    return web.Response(body=invocation.payload, headers=headers)


async def _response(request: web.Request) -> web.Response:
    channel = _channel(request)
    request_id = request.match_info["id"]
    body, size = await _read(request, RESPONSE_LIMIT)
    if size > RESPONSE_LIMIT:
        return _problem(channel.too_large(request_id, size))
    return _problem(channel.respond(request_id, body))


async def _error(request: web.Request) -> web.Response:
    channel = _channel(request)
    body, _ = await _read(request, ERROR_LIMIT)
    return _problem(
        channel.fail(
            request.match_info["id"], body[:ERROR_LIMIT], request.headers.get(ERROR_TYPE_HEADER)
        )
    )


async def _init_error(request: web.Request) -> web.Response:
    channel = _channel(request)
    body, _ = await _read(request, ERROR_LIMIT)
    return _problem(channel.init_failed(body[:ERROR_LIMIT], request.headers.get(ERROR_TYPE_HEADER)))


class RuntimeApi:
    """The Runtime API for every environment of this process: ``open(channel)`` listens on a new
    loopback port for it and returns ``host:port`` (``AWS_LAMBDA_RUNTIME_API``); ``close``
    stops listening there. Started on the first ``open``; ``aclose`` is safe twice."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._app = web.Application(client_max_size=RESPONSE_LIMIT + 1)
        self._app[_CHANNELS] = {}
        self._app.router.add_get(f"{PREFIX}/invocation/next", _next)
        self._app.router.add_post(f"{PREFIX}/invocation/{{id}}/response", _response)
        self._app.router.add_post(f"{PREFIX}/invocation/{{id}}/error", _error)
        self._app.router.add_post(f"{PREFIX}/init/error", _init_error)
        self._runner: web.AppRunner | None = None
        self._sites: dict[int, web.TCPSite] = {}
        self._lock = asyncio.Lock()

    async def open(self, channel: Channel) -> str:
        async with self._lock:
            if self._runner is None:
                runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
                await runner.setup()
                self._runner = runner
            site = web.TCPSite(self._runner, self._host, 0, reuse_address=True)
            await site.start()
        server = site._server  # the site's asyncio.Server: which port it took
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        self._sites[port] = site
        self._app[_CHANNELS][port] = channel
        return f"{self._host}:{port}"

    async def close(self, address: str) -> None:
        port = int(address.rpartition(":")[2])
        channel = self._app[_CHANNELS].pop(port, None)
        if channel is not None:
            channel.close()
        site = self._sites.pop(port, None)
        if site is not None:
            await site.stop()

    async def aclose(self) -> None:
        for address in [f"{self._host}:{p}" for p in list(self._sites)]:
            await self.close(address)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


def now_ms() -> int:
    return int(time.time() * 1000)
