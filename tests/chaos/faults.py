"""A fault-injecting HTTP proxy in front of the AWS emulator: ``esm run``'s endpoint
(``AWS_ENDPOINT_URL``) points here, the test's own clients go to the emulator directly.

Each request, by a seeded random choice made with probability ``rate``, gets one fault, the rest
pass through unchanged:

=================  ===========================================================================
fault              what the client sees
=================  ===========================================================================
``500``            HTTP 500 ``InternalFailure``; the request never reached the emulator
``503``            HTTP 503 ``ServiceUnavailable``; never reached it
``throttle``       HTTP 400 with the service's own throttling error (below); never reached it
``reset``          the connection reset (RST) before any reply; never reached it
``500-after``      HTTP 500, *after* the emulator carried the request out (a lost reply)
``reset-after``    the connection reset after the emulator carried the request out
=================  ===========================================================================

Throttling, in the AWS JSON protocol's shape (``__type`` and ``x-amzn-ErrorType``) with the code
each service uses, all of which botocore's standard retry mode (and :mod:`esm.awsjson`) treat as
throttling: Kinesis ``ProvisionedThroughputExceededException``, DynamoDB Streams
``ThrottlingException`` (``com.amazon.coral.availability#``), SQS ``RequestThrottled`` with the
``x-amzn-query-error: RequestThrottled;Sender`` header its query-compatible JSON protocol sends
(botocore takes the code from that header).
"""

from __future__ import annotations

import json
import random
import socket
import struct
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

FAULTS = ("500", "503", "throttle", "reset", "500-after", "reset-after")

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
}

_THROTTLE = {
    "sqs": ("com.amazonaws.sqs#RequestThrottled", "RequestThrottled;Sender"),
    "kinesis": ("ProvisionedThroughputExceededException", None),
    "dynamodbstreams": ("com.amazon.coral.availability#ThrottlingException", None),
}


def service_of(target: str) -> str:
    """The service an ``X-Amz-Target`` header names (``AmazonSQS.ReceiveMessage`` → sqs)."""
    prefix = target.split(".", 1)[0]
    if prefix == "AmazonSQS":
        return "sqs"
    if prefix.startswith("Kinesis_"):
        return "kinesis"
    if prefix.startswith("DynamoDBStreams_"):
        return "dynamodbstreams"
    return prefix or "unknown"


def error_reply(fault: str, service: str) -> web.Response:
    """The reply of a fault that answers (500, 503, throttle) for ``service``."""
    headers: dict[str, str] = {}
    if fault == "throttle":
        kind, query_error = _THROTTLE.get(service, ("ThrottlingException", None))
        status = 400
        if query_error:
            headers["x-amzn-query-error"] = query_error
    elif fault == "503":
        kind, status = "ServiceUnavailable", 503
    else:
        kind, status = "InternalFailure", 500
    headers["x-amzn-ErrorType"] = kind.rsplit("#", 1)[-1]
    body = json.dumps({"__type": kind, "message": f"injected {fault}"})
    return web.Response(
        status=status, body=body, headers=headers, content_type="application/x-amz-json-1.0"
    )


def reset(request: web.Request) -> None:
    """Close the client's connection with a TCP RST (SO_LINGER 0), no reply."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class FaultyProxy:
    def __init__(
        self, upstream: str, *, rate: float, seed: int, kinds: tuple[str, ...] = FAULTS
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.rate = rate
        self.kinds = kinds
        self.rng = random.Random(seed)
        self.calls: Counter[str] = Counter()  # "sqs.ReceiveMessage"
        self.faults: Counter[str] = Counter()  # "reset-after"
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # closed at shutdown, before the server waits for its handlers: long polls forwarded
        # for a daemon already gone end at once instead of after their 20 s
        app.on_shutdown.append(self._close)
        return app

    async def _close(self, _: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    def _choose(self) -> str | None:
        if self.rng.random() >= self.rate:
            return None
        return self.rng.choice(self.kinds)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        target = request.headers.get("X-Amz-Target", "")
        service = service_of(target)
        self.calls[f"{service}.{target.rsplit('.', 1)[-1]}"] += 1
        fault = self._choose()
        if fault is not None:
            self.faults[fault] += 1
        if fault in ("500", "503", "throttle"):
            return error_reply(fault, service)
        if fault == "reset":
            reset(request)
            return web.Response()
        status, headers, data = await self._forward(request, body)
        if fault == "500-after":
            return error_reply("500", service)
        if fault == "reset-after":
            reset(request)
            return web.Response()
        return web.Response(status=status, body=data, headers=headers)

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, Any, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_read=70),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Content-Type", "Accept", "Accept-Encoding"),
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as resp:
            data = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP}
            return resp.status, out, data

    def summary(self) -> str:
        """``calls=194 faults=26(500:2,reset:8,…)``: the calls seen and the faults injected."""
        faults = ",".join(f"{k}:{v}" for k, v in sorted(self.faults.items()))
        return f"calls={sum(self.calls.values())} faults={sum(self.faults.values())}({faults})"
