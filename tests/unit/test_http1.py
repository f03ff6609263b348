"""esm.http1: the keep-alive HTTP/1.1 pool the lean AWS path posts over.

A raw asyncio server on loopback plays the other side byte for byte, so each test says exactly
what arrives and when: bodies by length, in chunks or until close, split across packets;
connections kept, closed by the server while pooled or mid-reply; timeouts, cancellation, TLS.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from esm.http1 import MAX_BODY_BYTES, MAX_HEAD_BYTES, HttpError, Pool
from tests.support import self_signed_cert

HEAD = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n"


def request(body: bytes = b"{}") -> tuple[bytes, bytes]:
    return HEAD % len(body), body


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


class Server:
    """Runs ``script`` on each connection; counts connections and the requests read."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.open_now = 0
        self.most_open = 0
        self.disconnected = asyncio.Event()
        self.got_request = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pools: list[Pool] = []

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            await self.script(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            self.open_now -= 1
            self.disconnected.set()
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request's body, or None when the client closed the connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length)
        self.requests.append(body)
        self.got_request.set()
        return body

    def pool(self, **options: Any) -> Pool:
        """A pool to this server, closed with it."""
        self._pools.append(Pool(f"http://127.0.0.1:{self.port}", **options))
        return self._pools[-1]

    async def bodies(self, n: int) -> list[bytes]:
        """The bodies of ``n`` replies to ``n`` requests made one after the other."""
        pool = self.pool()
        return [(await pool.request(*request())).body for _ in range(n)]

    async def close(self) -> None:
        for pool in self._pools:
            await pool.close()
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    started: list[Server] = []

    async def start(script: Script, ssl_context: ssl.SSLContext | None = None) -> Server:
        server = Server(script)
        await server.start(ssl_context)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.close()


def reply(body: bytes, *, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n" % (status.encode(), len(body), extra) + body
    )


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server) -> None:
    """Answers every request on the connection with its own body, until the client leaves."""
    while (body := await srv.read_request(reader)) is not None:
        writer.write(reply(body, extra=b"X-Amzn-RequestId: r1\r\n"))
        await writer.drain()


async def test_replies_come_back_and_one_connection_serves_them_all(serve: Any) -> None:
    srv = await serve(echo)
    pool = srv.pool()
    for n in range(5):
        out = await pool.request(*request(b'{"n":%d}' % n))
        assert (out.status, out.body) == (200, b'{"n":%d}' % n)
        assert out.headers["x-amzn-requestid"] == "r1"  # names in lower case
    assert srv.connections == 1


async def test_a_reply_split_across_packets_is_put_together(serve: Any) -> None:
    body = b'{"Records":[' + b",".join([b'{"Data":"QUJD"}'] * 500) + b"]}"

    async def dribble(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server
    ) -> None:
        while await srv.read_request(reader) is not None:
            whole = reply(body)
            for i in range(0, len(whole), 7):
                writer.write(whole[i : i + 7])
                await writer.drain()
                await asyncio.sleep(0)

    srv = await serve(dribble)
    assert await srv.bodies(2) == [body, body]
    assert srv.connections == 1


async def test_a_chunked_reply_with_trailers_is_read_whole_and_the_connection_kept(
    serve: Any,
) -> None:
    async def chunked(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server
    ) -> None:
        while await srv.read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"5;ext=1\r\nhello\r\n", b"1", b"1\r\n", b"-abcdefghijklmnop\r\n"):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\nX-Checksum: 1\r\n\r\n")

    srv = await serve(chunked)
    assert await srv.bodies(2) == [b"hello-abcdefghijklmnop"] * 2
    assert srv.connections == 1


async def test_a_reply_without_length_ends_with_the_connection(serve: Any) -> None:
    async def until_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server
    ) -> None:
        await srv.read_request(reader)
        writer.write(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"a":')
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"1}")

    srv = await serve(until_close)
    assert await srv.bodies(2) == [b'{"a":1}'] * 2
    assert srv.connections == 2


async def test_connection_close_is_honoured(serve: Any) -> None:
    async def closing(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server
    ) -> None:
        await srv.read_request(reader)
        writer.write(reply(b"{}", extra=b"Connection: close\r\n"))
        await writer.drain()
        await srv.read_request(reader)  # the client must not send another here

    srv = await serve(closing)
    assert await srv.bodies(3) == [b"{}"] * 3
    assert (srv.connections, len(srv.requests)) == (3, 3)


async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server) -> None:
    """Answers once per connection, then closes it when the next request arrives, unanswered (as
    when a keep-alive timer fires while the request is on the way)."""
    await srv.read_request(reader)
    writer.write(reply(b'"ok"'))
    await writer.drain()
    await srv.read_request(reader)  # the next request: dropped without a byte back


async def test_an_idempotent_request_on_a_pooled_connection_the_server_dropped_goes_once_more(
    serve: Any,
) -> None:
    srv = await serve(once)
    pool = srv.pool()
    for n in range(3):
        assert (await pool.request(*request(b"%d" % n), idempotent=True)).body == b'"ok"'
    assert srv.connections == 3
    # each later request reached the server twice: on the stale connection, then on a new one
    assert srv.requests == [b"0", b"1", b"1", b"2", b"2"]


async def test_any_other_request_on_a_pooled_connection_dropped_unanswered_is_an_error(
    serve: Any,
) -> None:
    """The server read it and hung up: it may have acted on it, so it is not sent again."""
    srv = await serve(once)
    pool = srv.pool()
    assert (await pool.request(*request(b"0"))).body == b'"ok"'
    with pytest.raises(HttpError, match="without a byte of reply"):
        await pool.request(*request(b"1"))
    assert (srv.connections, srv.requests) == (1, [b"0", b"1"])
    assert (await pool.request(*request(b"2"))).body == b'"ok"'  # on a new connection


async def test_a_resend_is_once_not_a_loop(serve: Any) -> None:
    """After one reply, every request is read and left unanswered: the idempotent one goes on
    the pooled connection and once more on a new one, then the error is the caller's."""

    async def first_only(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server
    ) -> None:
        await srv.read_request(reader)
        if len(srv.requests) == 1:
            writer.write(reply(b'"ok"'))
            await writer.drain()
            await srv.read_request(reader)

    srv = await serve(first_only)
    pool = srv.pool()
    await pool.request(*request(b"0"), idempotent=True)
    with pytest.raises(HttpError, match="without a byte of reply"):
        await pool.request(*request(b"1"), idempotent=True)
    assert (srv.connections, srv.requests) == (2, [b"0", b"1", b"1"])


@pytest.mark.parametrize("idempotent", [False, True])
async def test_a_new_connection_closed_without_a_reply_is_an_error_not_a_resend(
    serve: Any, idempotent: bool
) -> None:
    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server) -> None:
        await srv.read_request(reader)

    srv = await serve(rude)
    pool = srv.pool()
    with pytest.raises(HttpError, match="without a byte of reply"):
        await pool.request(*request(), idempotent=idempotent)
    assert (srv.connections, len(srv.requests)) == (1, 1)


async def test_a_reply_cut_off_midway_is_an_error_even_on_a_pooled_connection(
    serve: Any,
) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server) -> None:
        await srv.read_request(reader)
        writer.write(reply(b'"ok"'))
        await srv.read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"half')
        await writer.drain()

    srv = await serve(cut)
    pool = srv.pool()
    await pool.request(*request())
    with pytest.raises(HttpError, match="before its reply was complete"):
        await pool.request(*request(), idempotent=True)  # it was answered in part: not resent
    assert len(srv.requests) == 2


async def test_garbage_instead_of_http_is_an_error(serve: Any) -> None:
    async def garbage(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server
    ) -> None:
        await srv.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        await reader.read()

    srv = await serve(garbage)
    pool = srv.pool()
    with pytest.raises(HttpError, match="status line"):
        await pool.request(*request())


async def test_a_slow_reply_times_out_and_its_connection_is_dropped(serve: Any) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server) -> None:
        await srv.read_request(reader)
        await reader.read()  # never answers; returns when the client closes

    srv = await serve(slow)
    pool = srv.pool(read_timeout=0.05)
    with pytest.raises(TimeoutError):
        await pool.request(*request())
    await asyncio.wait_for(srv.disconnected.wait(), 2)


async def test_a_cancelled_call_drops_its_connection_and_the_next_opens_a_new_one(
    serve: Any,
) -> None:
    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server) -> None:
        while await srv.read_request(reader) is not None:
            if srv.connections == 1:
                await reader.read()  # the first call: cancelled before any answer
                return
            writer.write(reply(b"{}"))
            await writer.drain()

    srv = await serve(held)
    pool = srv.pool()
    call = asyncio.create_task(pool.request(*request()))
    await asyncio.wait_for(srv.got_request.wait(), 2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(srv.disconnected.wait(), 2)
    assert (await pool.request(*request())).body == b"{}"
    assert srv.connections == 2


async def test_limit_bounds_the_connections_open_at_once(serve: Any) -> None:
    async def slowish(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server
    ) -> None:
        while await srv.read_request(reader) is not None:
            await asyncio.sleep(0.01)
            writer.write(reply(b"{}"))
            await writer.drain()

    srv = await serve(slowish)
    pool = srv.pool(limit=2)
    replies = await asyncio.gather(*(pool.request(*request()) for _ in range(8)))
    assert [r.status for r in replies] == [200] * 8
    assert srv.most_open == 2


async def test_a_refused_connection_is_an_error() -> None:
    srv = Server(echo)
    await srv.start()
    await srv.close()  # nobody listens there now
    pool = srv.pool()
    with pytest.raises(HttpError, match="cannot connect"):
        await pool.request(*request())


async def test_https_verifies_the_server_against_the_context_given(
    serve: Any, tmp_path: Path
) -> None:
    cert, key = self_signed_cert(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    srv = await serve(echo, server_side)
    url = f"https://127.0.0.1:{srv.port}"

    trusting = ssl.create_default_context(cafile=str(cert))
    pool = Pool(url, ssl_context=trusting)
    assert (await pool.request(*request(b'{"tls":1}'))).body == b'{"tls":1}'
    assert (await pool.request(*request(b'{"tls":2}'))).body == b'{"tls":2}'
    assert srv.connections == 1
    await pool.close()

    default = Pool(url)  # the system's CAs do not know this certificate
    with pytest.raises(HttpError, match="CERTIFICATE_VERIFY_FAILED"):
        await default.request(*request())
    await default.close()


def test_only_http_urls_make_a_pool() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Pool("ftp://example.com")


# -- parsing (httptools' llhttp) and caps

CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Amzn-RequestId: r1\r\n\r\n"
    b"5;ext=1\r\nhello\r\n11\r\n-abcdefghijklmnop\r\n0\r\nX-Checksum: 1\r\n\r\n"
)


def canned(*replies: bytes, pause: float = 0.0) -> Script:
    """Answers the n-th request on a connection with ``replies[n]``, each sent in its parts
    (bytes, or a tuple of bytes written with ``pause`` between them); then reads until the
    client leaves."""

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server
    ) -> None:
        for whole in replies:
            if await srv.read_request(reader) is None:
                return
            for part in whole if isinstance(whole, tuple) else (whole,):
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(pause)
        await reader.read()

    return script


async def test_a_chunked_reply_split_at_every_byte_is_read_whole_on_one_connection(
    serve: Any,
) -> None:
    splits = [(CHUNKED[:i], CHUNKED[i:]) for i in range(1, len(CHUNKED))]
    srv = await serve(canned(*splits, pause=0.002))  # type: ignore[arg-type]
    pool = srv.pool()
    for _ in splits:
        out = await pool.request(*request())
        assert (out.status, out.body) == (200, b"hello-abcdefghijklmnop")
        assert out.headers["x-amzn-requestid"] == "r1"
        assert "x-checksum" not in out.headers  # trailers are dropped
    assert srv.connections == 1


async def test_an_interim_100_continue_is_skipped(serve: Any) -> None:
    srv = await serve(canned(b"HTTP/1.1 100 Continue\r\n\r\n" + reply(b"{}")))
    out = await srv.pool().request(*request())
    assert (out.status, out.body) == (200, b"{}")


async def test_bytes_after_a_reply_leave_it_whole_but_the_connection_is_not_reused(
    serve: Any,
) -> None:
    srv = await serve(canned(reply(b"{}") + b"HTTP/1.1 200 OK\r\n", reply(b"{}")))
    assert await srv.bodies(2) == [b"{}", b"{}"]
    assert srv.connections == 2


@pytest.mark.parametrize(
    ("wire", "where"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "status line"),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", "status line"),
        (b"HTTP/2 200\r\nContent-Length: 0\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", "headers"),
        (b"HTTP/1.1 200 OK\r\nBad Name : x\r\nContent-Length: 0\r\n\r\n", "headers"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", "headers"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "headers"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "headers"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "body"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", "switching protocols"),
    ],
)
async def test_a_malformed_reply_is_an_error_that_says_where(
    serve: Any, wire: bytes, where: str
) -> None:
    srv = await serve(canned(wire))
    with pytest.raises(HttpError, match=where):
        await srv.pool().request(*request())
    await asyncio.wait_for(srv.disconnected.wait(), 2)  # and the connection is dropped


async def test_a_content_length_over_the_cap_is_refused_before_the_body_comes(
    serve: Any,
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1)
    srv = await serve(canned(head))  # and no body: the client must not wait for it
    with pytest.raises(HttpError, match=f"over the cap of {MAX_BODY_BYTES} bytes"):
        await srv.pool(read_timeout=5).request(*request())


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1001, id="until-close"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"64\r\n" + b"x" * 100 + b"\r\n") * 11,
            id="chunked",
        ),
        pytest.param(reply(b"x" * 1001), id="content-length"),
    ],
)
async def test_a_body_over_the_cap_is_an_error_naming_the_cap(serve: Any, wire: bytes) -> None:
    srv = await serve(canned(wire))
    pool = srv.pool(max_body_bytes=1000, max_chunk_bytes=500)
    with pytest.raises(HttpError, match=r"over the cap of 1000 bytes \(max_body_bytes\)"):
        await pool.request(*request())


async def test_a_body_at_the_cap_is_read(serve: Any) -> None:
    srv = await serve(canned(reply(b"x" * 1000)))
    pool = srv.pool(max_body_bytes=1000, max_chunk_bytes=500)
    assert len((await pool.request(*request())).body) == 1000


async def test_a_chunk_over_the_cap_is_an_error_naming_the_cap(serve: Any) -> None:
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1f5\r\n" + b"x" * 501
    srv = await serve(canned((wire, b"\r\n0\r\n\r\n")))
    pool = srv.pool(max_body_bytes=1000, max_chunk_bytes=500)
    with pytest.raises(HttpError, match=r"chunk .* over the cap of 500 bytes \(max_chunk_bytes\)"):
        await pool.request(*request())


async def test_the_default_caps_take_a_reply_as_large_as_aws_largest_in_one_chunk(
    serve: Any,
) -> None:
    """~30 MiB: 10 SQS messages of 1 MiB each, every character escaped as ``\\uXXXX``."""
    body = b"y" * (30 * 1024 * 1024)
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
    srv = await serve(canned(wire % (len(body), body)))
    assert (await srv.pool().request(*request())).body == body


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * (MAX_HEAD_BYTES + 1), id="header"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: "
            + b"a" * (MAX_HEAD_BYTES + 1),
            id="trailer",
        ),
    ],
)
async def test_a_head_that_does_not_end_is_cut_off_at_its_cap(serve: Any, wire: bytes) -> None:
    srv = await serve(canned(wire))
    with pytest.raises(HttpError, match=rf"over {MAX_HEAD_BYTES} bytes .*\(MAX_HEAD_BYTES\)"):
        await srv.pool(read_timeout=5).request(*request())


async def test_a_chunked_reply_cut_off_mid_chunk_is_an_error(serve: Any) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nhalf")
        await writer.drain()

    srv = await serve(cut)
    with pytest.raises(HttpError, match="before its reply was complete"):
        await srv.pool().request(*request())


VALID = [
    reply(b'{"Messages":[{"Body":"hello"}]}', extra=b"X-Amzn-RequestId: r1\r\n"),
    CHUNKED,
    b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    reply(b'{"__type":"Throttling"}', status="400 Bad Request", extra=b"Connection: close\r\n"),
]


def mutate(rng: random.Random, wire: bytes) -> bytes:
    out = bytearray(wire)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out) + 1)
        match rng.randrange(6):
            case 0 if out:  # flip a byte
                out[min(at, len(out) - 1)] = rng.randrange(256)
            case 1:  # insert bytes, often ones that mean something to HTTP
                out[at:at] = rng.choice(
                    [b"\r\n", b"\n", b":", b" ", b";", b"0", b"f" * 17, bytes([rng.randrange(256)])]
                )
            case 2:  # delete a run
                del out[at : at + rng.randint(1, 8)]
            case 3:  # repeat a run
                out[at:at] = out[at : at + rng.randint(1, 16)]
            case 4:  # cut the reply short
                del out[at:]
            case _:  # a digit changed (lengths, chunk sizes, status)
                digits = [i for i, b in enumerate(out) if 0x30 <= b <= 0x39]
                if digits:
                    out[rng.choice(digits)] = rng.choice(b"0123456789abcdef")
    return bytes(out)


async def test_mutated_replies_parse_or_raise_http_error_and_never_hang(serve: Any) -> None:
    """Seeded: the same 400 cases each run. The server sends the case and closes."""
    rng = random.Random(20261125)
    cases = [mutate(rng, rng.choice(VALID)) for _ in range(400)]
    queue = list(cases)

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server) -> None:
        await srv.read_request(reader)
        writer.write(queue.pop(0))
        await writer.drain()

    srv = await serve(one)
    pool = srv.pool(read_timeout=5, max_body_bytes=4096, max_chunk_bytes=1024)
    outcomes = {"reply": 0, "error": 0}
    for case in cases:
        try:
            out = await pool.request(*request())
        except HttpError:
            outcomes["error"] += 1
        except Exception as exc:  # pragma: no cover - the failure being looked for
            raise AssertionError(f"{case!r} raised {exc!r}") from exc
        else:
            assert 200 <= out.status <= 999 and isinstance(out.body, bytes), case
            outcomes["reply"] += 1
    assert min(outcomes.values()) > 40, outcomes  # both kinds were exercised


async def test_connections_left_idle_past_the_keepalive_are_closed(serve: Any) -> None:
    # a burst of 5 calls at once opens 5 connections; afterwards calls one at a time need one:
    # the other 4 (never taken again, as reuse is last in, first out) must not stay open
    async def slowish(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Server
    ) -> None:
        while await srv.read_request(reader) is not None:
            await asyncio.sleep(0.02)
            writer.write(reply(b"{}"))
            await writer.drain()

    srv = await serve(slowish)
    pool = srv.pool(keepalive=0.3)
    await asyncio.gather(*(pool.request(*request()) for _ in range(5)))
    assert srv.open_now == 5
    for _ in range(25):  # 0.5 s of calls one after another, on one connection
        assert (await pool.request(*request())).status == 200
    for _ in range(100):
        if srv.open_now == 1:
            break
        await asyncio.sleep(0.01)
    assert srv.open_now == 1
    assert srv.connections == 5
