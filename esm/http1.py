"""Keep-alive HTTP/1.1 for small request/reply calls to one origin: what :mod:`esm.awsjson` posts
its AWS calls over.

An idle daemon makes a steady stream of tiny calls (GetRecords on every leased shard,
ReceiveMessage long polls on every SQS mapping). Through ``aiohttp`` each costs ~0.2 ms of CPU
before any byte moves: request and response objects, cookie jar, tracing hooks, timeout handles
per read, payload writers. :class:`Pool` keeps only what these calls need: a request written in
one ``write``, a reply parsed as its bytes come, connections kept open and reused last-in
first-out, TLS through :mod:`ssl`. ~0.08 ms a call on loopback.

Parsing is ``httptools``' :class:`~httptools.HttpResponseParser`: llhttp, Node's HTTP parser
(the one uvicorn reads requests with), generated from a state machine and fuzzed continuously by
OSS-Fuzz. It reads the status line, headers, a ``Content-Length`` body, a chunked body (trailers
are read and dropped) or one that ends with the connection, skips ``1xx`` interim replies, and
says whether the connection may be kept. Anything it refuses is :class:`HttpError`, as is a reply
over a cap (each a :class:`Pool` argument; the defaults):

- ``max_body_bytes``, :data:`MAX_BODY_BYTES` (64 MiB): the body. AWS's largest replies on this
  path are an SQS ``ReceiveMessage`` of 10 messages of up to 1 MiB each (in JSON, escaping can
  double or, as ``\\u`` escapes, treble a body: ≤ ~30 MiB) and a Kinesis ``GetRecords`` of up to
  10 MiB of data (base64: ~14 MiB, plus each record's fields); DynamoDB Streams' are ≤ 1 MB.
  A ``Content-Length`` over the cap is refused before any of the body is read; other bodies as
  they reach it.
- ``max_chunk_bytes``, :data:`MAX_CHUNK_BYTES` (32 MiB): one chunk of a chunked body, above the
  largest reply above sent as a single chunk. llhttp does not hand on a chunk's declared size, so
  a chunk is refused once that much of it has come (the body cap bounds memory either way).
- :data:`MAX_HEAD_BYTES` (64 KiB): what is not body: the status line and headers, chunk-size lines
  past 32 bytes a chunk, trailers; checked as bytes come in, so an endless header (which httptools
  would gather without end) fails at the cap (give or take one read of the socket).

Errors are the caller's to retry (:mod:`esm.awsjson` retries them as botocore does), with one
exception, and only for a request the caller marks ``idempotent``: a connection taken from the
pool whose server had closed it meanwhile (servers drop idle keep-alive connections: Node's
after 5 s; ALBs after 60 s) is found out when the request gets no byte back before the
connection ends, and the request goes once more, on a new connection. A connection already
seen closed is never taken from the pool, so this is the race where the server's close crosses
the request on the wire. Nothing tells that race apart from a server that read the request, acted
on it and closed without answering, so the resend is for requests whose second execution does
no harm, as RFC 9112 (section 9.3.1) and aiohttp have it (aiohttp resends on a reused connection for
idempotent methods only; urllib3 checks a pooled connection for a close before using it and,
as botocore drives it, never resends: botocore retries). A POST is resent only when the caller
says so (:mod:`esm.awsjson` does, and says why); a connection opened for the request is never
resent on. Proxies are not spoken here: :mod:`esm.awsjson` sends calls that must go through one
over ``aiohttp``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_CHUNK_BYTES = 32 * 1024 * 1024
CHUNK_FRAMING_BYTES = 32  # a chunk-size line and the CRLF after its data, not counted as head


class HttpError(ConnectionError):
    """The connection failed, broke off, or the reply was not HTTP/1.1 this module reads."""


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    body: bytes


class _Conn(asyncio.Protocol):
    """One connection; at most one request on it at a time. Its methods ``on_*`` are the
    parser's callbacks."""

    def __init__(self, max_body: int, max_chunk: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._max_body = max_body
        self._max_chunk = max_chunk
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Reply] | None = None
        self._got_bytes = False
        # the reply being read
        self._status = 0
        self._headers: dict[str, str] = {}
        self._head_done = False
        self._until_close = False  # a body that ends with the connection
        self._keep = True
        self._pieces: list[bytes] = []
        self._size = 0  # body bytes so far
        self._chunk = -1  # bytes of the current chunk so far; -1: not chunked
        self._chunks = 0
        self._fed = 0  # bytes of the reply so far, all told
        self._reply: Reply | None = None
        self._after = False  # bytes came after the reply

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self._waiter is None:  # nothing asked: a server that talks out of turn is not reused
            self.close()
            return
        error: HttpError | None = None
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if isinstance(exc.__context__, HttpError):  # raised by a callback below
                error = exc.__context__
            else:
                where = "body" if self._head_done else "status line or headers"
                error = HttpError(f"a malformed reply ({where}): {exc}")
        reply = self._reply
        if reply is None:
            self._fed += len(data)
            if error is None and (
                self._fed - self._size - CHUNK_FRAMING_BYTES * self._chunks > MAX_HEAD_BYTES
            ):
                error = HttpError(
                    f"over {MAX_HEAD_BYTES} bytes of a reply's status line, headers, chunk-size "
                    f"lines and trailers (MAX_HEAD_BYTES)"
                )
            if error is not None:
                self._fail(error)
            return
        waiter, self._waiter = self._waiter, None
        if not self._keep or self._after or error is not None:
            self.close()
        if not waiter.done():
            waiter.set_result(reply)

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if self._head_done and self._until_close:
            waiter.set_result(Reply(self._status, self._headers, b"".join(self._pieces)))
            return
        error = HttpError(
            "the server closed the connection before its reply was complete"
            if self._got_bytes
            else "the server closed the connection without a byte of reply"
        )
        if exc is not None:
            error.__cause__ = exc
        waiter.set_exception(error)

    # -- the parser's callbacks

    def on_message_begin(self) -> None:
        if self._reply is not None:
            self._after = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._head_done:  # trailers are dropped
            self._headers[name.decode("latin-1").lower()] = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if status == 101:
            raise HttpError("a reply switching protocols (101), which was not asked for")
        if status < 200:  # 100 Continue and the like: no body; the reply follows
            return
        self._status = status
        self._head_done = True
        self._keep = parser.should_keep_alive()
        headers = self._headers
        length = headers.get("content-length")
        if length is not None:
            if int(length) > self._max_body:  # llhttp has checked it is digits
                raise self._refuse(f"a reply's Content-Length {length} is over", self._max_body)
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunk = 0
        elif status not in (204, 304):
            self._until_close = True

    def on_chunk_header(self) -> None:
        self._chunk = 0
        self._chunks += 1

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            raise self._refuse("a reply's body is over", self._max_body)
        if self._chunk >= 0:
            self._chunk += len(body)
            if self._chunk > self._max_chunk:
                raise self._refuse("a chunk of a reply is over", self._max_chunk, "max_chunk_bytes")
        self._pieces.append(body)

    def on_message_complete(self) -> None:
        if not self._head_done:  # an interim reply
            self._headers = {}
            return
        pieces = self._pieces
        body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._reply = Reply(self._status, self._headers, body)

    @staticmethod
    def _refuse(what: str, cap: int, name: str = "max_body_bytes") -> HttpError:
        return HttpError(f"{what} the cap of {cap} bytes ({name})")

    # -- use

    @property
    def got_bytes(self) -> bool:
        return self._got_bytes

    def send(self, request: bytes) -> asyncio.Future[Reply]:
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._got_bytes = False
        self._status = 0
        self._headers = {}
        self._head_done = False
        self._until_close = False
        self._pieces = []
        self._size = 0
        self._chunk = -1
        self._chunks = 0
        self._fed = 0
        self._reply = None
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def time_out(self) -> None:
        self._fail(TimeoutError("no whole reply within the read timeout"))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class Pool:
    """Keep-alive connections to one ``http://`` or ``https://`` origin.

    ``limit`` bounds the connections open at once (0: no bound); a call waits for one to be free.
    ``connect_timeout`` bounds opening a connection (TCP and TLS), ``read_timeout`` the wait for a
    whole reply once the request is written; either failing is :class:`TimeoutError`.
    ``max_body_bytes`` and ``max_chunk_bytes`` cap a reply (see the module's docstring).
    ``keepalive``: a connection left idle that long is closed, not reused (15 s, aiohttp's
    default), so that the sockets open come back down to what the calls in flight need."""

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limit: int = 0,
        connect_timeout: float = 5.0,
        read_timeout: float = 70.0,
        keepalive: float = 15.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_chunk_bytes: int = MAX_CHUNK_BYTES,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._idle: deque[_Conn] = deque()
        self._slots = asyncio.Semaphore(limit) if limit > 0 else None
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._keepalive = keepalive
        self._max_body = max_body_bytes
        self._max_chunk = max_chunk_bytes
        self._closed = False

    async def request(self, head: bytes, body: bytes, *, idempotent: bool = False) -> Reply:
        """Sends ``head`` (request line and headers, ending in the blank line) and ``body``.
        ``idempotent``: the request may be sent twice, so it is resent once when a reused
        connection ends without a byte of reply (see the module's docstring)."""
        if self._slots is None:
            return await self._request(head + body, idempotent)
        async with self._slots:
            return await self._request(head + body, idempotent)

    async def _request(self, request: bytes, idempotent: bool) -> Reply:
        conn = self._pooled()
        if conn is not None:
            try:
                return await self._exchange(conn, request)
            except HttpError:
                if conn.got_bytes or not idempotent:
                    raise
                # closed without a word: a stale keep-alive connection (or a server that read
                # the request and hung up): once more, on a new connection
        return await self._exchange(await self._connect(), request)

    def _pooled(self) -> _Conn | None:
        now = asyncio.get_running_loop().time()
        self._reap(now)
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive:
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Conn:
        if self._closed:
            raise HttpError("the pool is closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Conn(self._max_body, self._max_chunk),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except TimeoutError:
            raise
        except OSError as exc:  # ssl.SSLError is one too
            raise HttpError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return conn

    async def _exchange(self, conn: _Conn, request: bytes) -> Reply:
        loop = asyncio.get_running_loop()
        # a bare timer, not asyncio.timeout: a tenth of the cost, on every call
        timer = loop.call_at(loop.time() + self._read_timeout, conn.time_out)
        done = False
        try:
            reply = await conn.send(request)
            done = True
        finally:
            timer.cancel()
            if not done:  # failed, timed out or cancelled: the connection is in an unknown state
                conn.close()
        if not conn.closed:
            if self._closed:
                conn.close()
            else:
                conn.idle_since = loop.time()
                self._idle.append(conn)
                self._reap(conn.idle_since)
        return reply

    def _reap(self, now: float) -> None:
        """Closes the connections idle for ``keepalive`` seconds or more. Reuse is last in, first
        out, so the oldest sit at the far end and would otherwise never be taken again: after a
        burst (an SQS mapping's 5 first pollers, 2 once its queue proved idle) each would keep a
        socket (a file descriptor) open for good against a server that keeps them too."""
        idle = self._idle
        while idle and (idle[0].closed or now - idle[0].idle_since >= self._keepalive):
            idle.popleft().close()

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
