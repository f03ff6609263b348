"""Keep-alive HTTP/1.1 for small request/reply calls to one origin: what :mod:`esm.awsjson` posts
its AWS calls over.

An idle daemon makes a steady stream of tiny calls (GetRecords on every leased shard,
ReceiveMessage long polls on every SQS mapping). Through ``aiohttp`` each costs ~0.2 ms of CPU
before any byte moves: request and response objects, cookie jar, tracing hooks, timeout handles
per read, payload writers. :class:`Pool` keeps only what these calls need: a request written in
one ``write``, a reply parsed from the bytes as they come (status line, headers, then a
``Content-Length`` body, a chunked body, or one that ends with the connection), connections kept
open and reused last-in first-out, TLS through :mod:`ssl`. ~0.08 ms a call on loopback.

Failures are the caller's to retry (as botocore retries them), except one: a connection taken
from the pool that the server had closed meanwhile (servers drop idle keep-alive connections:
Node's after 5 s) is found out when the request gets no byte back, and the request goes once more
on a new connection, as HTTP clients do (urllib3, aiohttp). Proxies are not spoken here:
:mod:`esm.awsjson` sends calls that must go through one over ``aiohttp``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024


class HttpError(ConnectionError):
    """The connection failed, broke off, or the reply was not HTTP/1.1 this module reads."""


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    body: bytes


class _Conn(asyncio.Protocol):
    """One connection; at most one request on it at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._buf = bytearray()
        self._waiter: asyncio.Future[Reply] | None = None
        self._got_bytes = False
        # the reply being read
        self._status = 0
        self._headers: dict[str, str] | None = None
        self._length = -1  # -1: chunked or until close
        self._chunked = False
        self._keep = True
        self._body = bytearray()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self._waiter is None:  # nothing asked: a server that talks out of turn is not reused
            self.close()
            return
        self._buf += data
        try:
            reply = self._parse()
        except HttpError as exc:
            self._fail(exc)
            return
        if reply is not None:
            waiter, self._waiter = self._waiter, None
            if not self._keep or self._buf:
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
        if self._headers is not None and self._length < 0 and not self._chunked:
            # a body that ends with the connection
            waiter.set_result(Reply(self._status, self._headers, bytes(self._body + self._buf)))
            return
        error = HttpError("the server closed the connection before its reply was complete")
        if exc is not None:
            error.__cause__ = exc
        waiter.set_exception(error)

    # -- use

    @property
    def got_bytes(self) -> bool:
        return self._got_bytes

    def send(self, request: bytes) -> asyncio.Future[Reply]:
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._got_bytes = False
        self._headers = None
        self._body = bytearray()
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

    # -- parsing

    def _parse(self) -> Reply | None:
        buf = self._buf
        while self._headers is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    raise HttpError("a reply's headers are over 64 KiB")
                return None
            self._head(bytes(buf[:end]))
            del buf[: end + 4]
            if 100 <= self._status < 200:  # 100 Continue and the like: the reply follows
                self._headers = None
        if self._chunked:
            return self._parse_chunks()
        if self._length < 0:
            return None  # until the connection closes
        if len(buf) < self._length:
            return None
        body = bytes(buf[: self._length])
        del buf[: self._length]
        return Reply(self._status, self._headers, body)

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        self._status = int(code)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpError(f"a malformed header line: {line[:80]!r}")
            headers[name.lower()] = value.strip()
        self._headers = headers
        connection = headers.get("connection", "").lower()
        self._keep = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if self._chunked:
            self._length = -1
        elif "content-length" in headers:
            try:
                self._length = int(headers["content-length"])
            except ValueError:
                raise HttpError("a Content-Length that is not a number") from None
        elif self._status in (204, 304):
            self._length = 0
        else:
            self._length = -1
            self._keep = False

    def _parse_chunks(self) -> Reply | None:
        buf = self._buf
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                return None
            size_text = bytes(buf[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError(f"a malformed chunk size: {size_text[:20]!r}") from None
            if size == 0:  # the last chunk, then trailers (if any) and a blank line
                trailer_end = buf.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return None
                del buf[: trailer_end + 4]
                assert self._headers is not None
                return Reply(self._status, self._headers, bytes(self._body))
            start = line_end + 2
            if len(buf) < start + size + 2:
                return None
            self._body += buf[start : start + size]
            del buf[: start + size + 2]


class Pool:
    """Keep-alive connections to one ``http://`` or ``https://`` origin.

    ``limit`` bounds the connections open at once (0: no bound); a call waits for one to be free.
    ``connect_timeout`` bounds opening a connection (TCP and TLS), ``read_timeout`` the wait for a
    whole reply once the request is written; either failing is :class:`TimeoutError`."""

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limit: int = 0,
        connect_timeout: float = 5.0,
        read_timeout: float = 70.0,
        keepalive: float = 60.0,
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
        self._closed = False

    async def request(self, head: bytes, body: bytes) -> Reply:
        """Sends ``head`` (request line and headers, ending in the blank line) and ``body``."""
        if self._slots is None:
            return await self._request(head + body)
        async with self._slots:
            return await self._request(head + body)

    async def _request(self, request: bytes) -> Reply:
        conn = self._pooled()
        if conn is not None:
            try:
                return await self._exchange(conn, request)
            except HttpError:
                if conn.got_bytes:
                    raise
                # the server had closed it while it sat in the pool: once more, on a new one
        return await self._exchange(await self._connect(), request)

    def _pooled(self) -> _Conn | None:
        now = asyncio.get_running_loop().time()
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
                    _Conn,
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
        return reply

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
