"""How the Lambda API's port is served: what one client can hold, and how long.

aiohttp speaks HTTP; this module bounds what a client can take from the daemon, and turns what
aiohttp's HTTP parser refuses into an answer an SDK can name:

==============================  ================================================================
a client that …                 esm …
==============================  ================================================================
connects while                  answers ``503 ServiceException`` at once and closes; one
``ApiMaxConnections`` are open  WARNING per 10 s counts the refusals. SDKs retry a 503 (and a
                                reset connection, if the client had already written and the
                                close resets it)
sends no complete request line  closes the connection without an answer (there is no request
and headers within              to answer): a socket that never speaks, or speaks too slowly,
``ApiReadTimeoutSeconds`` of    is not kept. An idle keep-alive connection is closed after the
connecting or of its last       same time; clients reconnect
answer
stalls its body: no byte for    ``408 RequestTimeoutException`` and closes. botocore's standard
``ApiReadTimeoutSeconds``       retry mode retries it by name; a client that stalled is rarely
                                listening, but one that is gets a named error, not a hang
sends what HTTP/1.1 does not    ``400 MalformedHttpRequestException`` (aiohttp's reason in the
allow (request line, header,    message) and closes; one WARNING line with the peer and the
chunked framing, length, a      reason, no traceback
line over 8,190 bytes)
==============================  ================================================================

The 408 and the 400 are AWS's common errors (any AWS API may answer them); the 503 is Lambda's
``ServiceException``, which SDKs name, with a 503 status, which their retry modes retry. Every
answer carries ``x-amzn-RequestId``. Defaults: 1,024 connections, 60 s (``Settings``:
``ApiMaxConnections``, ``ApiReadTimeoutSeconds``).

Mechanics: the listening socket's protocol factory is :class:`_CappedSite`'s; it counts the
connections it has handed to aiohttp and releases one when its socket closes, so the cap is exact
even when many connections are accepted at once (one past it holds its socket only while its 503
is written). Each connection is an aiohttp ``RequestHandler`` subclass using only what aiohttp
calls from outside: its constructor, ``handle_error`` (called with the parser's error) and
``log_exception`` (aiohttp's error log, which would otherwise print a traceback when it finds an
undecodable body after the answer). aiohttp's keep-alive timeout is the header deadline: from
aiohttp 3.14.4 it runs from the moment a connection opens, not only after a first answer. Body
reads go through :func:`read_body`, which times out each read.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from esm.errors import (
    LambdaApiError,
    MalformedHttpRequestException,
    RequestTimeoutException,
    ServiceUnavailable,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_READ_TIMEOUT_S = 60.0
LINGER_S = 10.0  # at most, reading what is left of a refused body before closing (aiohttp's)
REFUSAL_LOG_EVERY_S = 10.0
REASON_CHARS = 200  # of aiohttp's parser error, in the answer and the log line
_READ_CHUNK = 256 * 1024
UNLOGGED_PATHS = frozenset({"/health", "/health/live", "/metrics"})


@dataclass(frozen=True)
class ApiLimits:
    """What one client may hold: ``max_connections`` open at once, ``read_timeout_s`` without
    sending a byte of what it owes (headers, then each part of the body)."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1 (got {self.max_connections})")
        if not self.read_timeout_s > 0:
            raise ValueError(f"read_timeout_s must be positive (got {self.read_timeout_s})")


LIMITS: Final = web.AppKey[ApiLimits]("limits")
# The body, once read before the handler (to check its signature: esm.api's authentication)
BODY: Final = web.RequestKey[bytes]("body")

Renderer = Callable[[LambdaApiError], web.Response]


# -- bodies ----------------------------------------------------------------------------------------


async def read_body(
    request: web.Request, limit: int, too_large: Callable[[int], LambdaApiError]
) -> bytes:
    """The body, refused with ``too_large(size)`` past ``limit`` bytes (the declared
    Content-Length, or what arrived: never more than ``limit + 1`` bytes are read), and with
    ``408 RequestTimeoutException`` when no byte arrives for the app's read timeout. A body
    already read (:data:`BODY`) is answered from memory, under the same limit."""
    read: bytes | None = request.get(BODY)
    if read is not None:
        if len(read) > limit:
            raise too_large(len(read))
        return read
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(declared)
    timeout_s = request.app.get(LIMITS, ApiLimits()).read_timeout_s
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        try:
            async with asyncio.timeout(timeout_s):
                chunk = await request.content.read(_READ_CHUNK)
        except TimeoutError:
            log.warning(
                "%s %s from %s: no body byte for %gs after %d bytes: answered 408",
                request.method,
                request.path[:REASON_CHARS],
                request.remote,
                timeout_s,
                size,
            )
            raise RequestTimeoutException(
                f"Reading the request timed out: no byte of the body arrived for {timeout_s:g} "
                f"seconds ({size} bytes read)."
            ) from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise too_large(size)
    return b"".join(chunks)


# -- connections -----------------------------------------------------------------------------------


def one_line(text: str, limit: int = REASON_CHARS) -> str:
    """aiohttp's multi-line parser message (the offending bytes, a caret under them) as one line."""
    text = re.sub(r"^\d{3}, message:\s*", "", text)  # str() of aiohttp's HttpProcessingError
    parts = [p.strip() for p in text.splitlines()]
    line = " ".join(p for p in parts if p and set(p) != {"^"})
    return line if len(line) <= limit else line[: limit - 1] + "…"


class _Connection(RequestHandler):
    """One client connection (aiohttp's handler): releases its place under the cap when its
    socket closes; a request aiohttp's parser refuses is one WARNING line and a Lambda-shaped
    400."""

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        render: Renderer,
        on_close: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._render = render
        self._on_close: Callable[[], None] | None = on_close

    def connection_lost(self, exc: BaseException | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            if self._on_close is not None:
                self._on_close()
                self._on_close = None

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, RequestPayloadError | HttpProcessingError):
            # aiohttp reading past a body it could not decode (a bad gzip body, say) after the
            # answer was sent: the request was answered, the connection is closed.
            log.debug("closed a connection after an undecodable body: %s", one_line(str(exc)))
            return
        super().log_exception(*args, **kw)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        reason = one_line(exc.message) or type(exc).__name__
        log.warning("refused a malformed request from %s: %s", request.remote, reason)
        response = self._render(
            MalformedHttpRequestException(f"The request is not valid HTTP/1.1: {reason}")
        )
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        response.force_close()
        return response


def refusal_bytes(render: Renderer, message: str) -> bytes:
    """A whole ``503`` answer (:class:`ServiceUnavailable`, ``ServiceException`` on the wire, as
    Lambda's model names it), to write before the request is read."""
    response = render(ServiceUnavailable(message))
    assert isinstance(response.body, bytes)
    head = [f"HTTP/1.1 {response.status} {response.reason}"]
    head += [f"{name}: {value}" for name, value in response.headers.items()]
    head += [
        f"x-amzn-RequestId: {uuid.uuid4()}",
        "Retry-After: 1",
        "Connection: close",
        f"Content-Length: {len(response.body)}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body


class _Refusal(asyncio.Protocol):
    """A connection past the cap: the 503, then the socket is closed."""

    def __init__(self, answer: bytes) -> None:
        self._answer = answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self._answer)
        transport.close()


class _CappedSite(web.BaseSite):
    """A TCP site whose protocol factory keeps at most ``limits.max_connections`` open."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        limits: ApiLimits,
        render: Renderer,
        backlog: int = 128,
        access_log: bool = False,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._access_log = logging.getLogger("aiohttp.access") if access_log else None
        self._host = host
        self._port = port
        self._limits = limits
        self._render = render
        self._open = 0
        self._refused = 0
        self._refusal_logged_at: float | None = None

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def open_connections(self) -> int:
        return self._open

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self._host, self._port, backlog=self._backlog
        )

    def _protocol(self) -> asyncio.BaseProtocol:
        limits = self._limits
        if self._open >= limits.max_connections:
            self._note_refusal()
            return _Refusal(
                refusal_bytes(
                    self._render,
                    f"esm is serving its limit of {limits.max_connections} connections "
                    "(ApiMaxConnections); try again.",
                )
            )
        server = self._runner.server
        assert server is not None
        self._open += 1
        timeout_s = limits.read_timeout_s
        return _Connection(
            server,
            loop=asyncio.get_running_loop(),
            render=self._render,
            on_close=self._release,
            keepalive_timeout=timeout_s,
            lingering_time=min(LINGER_S, timeout_s),
            # the handler is made here, not by aiohttp's Server: its access log is set here too
            access_log=self._access_log,
            access_log_class=QuietAccessLogger,
        )

    def _release(self) -> None:
        self._open -= 1

    def _note_refusal(self) -> None:
        self._refused += 1
        now = time.monotonic()
        if self._refusal_logged_at is None or now - self._refusal_logged_at >= REFUSAL_LOG_EVERY_S:
            log.warning(
                "api: %d connections open (ApiMaxConnections): refused %d new ones with 503",
                self._open,
                self._refused,
            )
            self._refusal_logged_at = now
            self._refused = 0


# -- the server ------------------------------------------------------------------------------------


class AccessLog(AbstractAccessLogger):
    """aiohttp's access log (``aiohttp.access``, INFO), one line a request, without the query
    string: a presigned URL's query is a credential until it expires."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %s %.3fs',
            request.remote,
            request.method,
            request.path[:REASON_CHARS],
            response.status,
            response.body_length,
            time,
        )


class ApiServer:
    """The API listening on ``host:port`` (``port`` is the bound one when 0 was asked).

    ``aclose()`` stops accepting, lets in-flight requests finish for up to
    ``shutdown_timeout_s`` and is safe to call twice.
    """

    def __init__(self, runner: web.AppRunner, site: _CappedSite, host: str, port: int) -> None:
        self._runner = runner
        self._site = site
        self.host = host
        self.port = port
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """Client connections held now (at most ``ApiMaxConnections``)."""
        return self._site.open_connections

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._runner.cleanup()
        log.info("api stopped")

    async def __aenter__(self) -> ApiServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class QuietAccessLogger(AccessLog):
    """:class:`AccessLog` without the probes: :data:`UNLOGGED_PATHS` are never logged."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.path not in UNLOGGED_PATHS:
            super().log(request, response, time)


async def start(
    app: web.Application,
    host: str,
    port: int,
    *,
    render: Renderer,
    shutdown_timeout_s: float,
    access_log: bool = False,
) -> ApiServer:
    """Serve ``app`` on ``host:port`` under its :data:`LIMITS`; ``render`` draws the Lambda
    errors this module answers itself. ``access_log``: one ``aiohttp.access`` line per request
    (probes and scrapes excepted); off by default."""
    limits = app.get(LIMITS, ApiLimits())
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    try:
        site = _CappedSite(runner, host, port, limits=limits, render=render, access_log=access_log)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return ApiServer(runner, site, host, int(bound))
