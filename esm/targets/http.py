"""``http(s)://`` and ``rie://`` targets: the event POSTed to a URL (a Lambda container image
behind the Runtime Interface Emulator for ``rie://``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp
import orjson

from esm.outcomes import LATEST, FunctionError, InvokeFailed, Ok, Outcome, Throttled
from esm.targets.base import Call, fault

CONNECT_TIMEOUT_S = 5.0
RIE_PATH = "/2015-03-31/functions/function/invocations"


def rie_url(target: str) -> str:
    parts = urlsplit(target)
    if not parts.hostname:
        raise ValueError(f"rie targets are rie://host:port (got {target!r})")
    netloc = parts.netloc if parts.port else f"{parts.netloc}:8080"  # the RIE's default port
    return f"http://{netloc}{RIE_PATH}"


_CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_STALE_CONNECTION_ERRORS = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientConnectionResetError,
)


class HttpTarget:
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

    async def call(self, call: Call) -> Outcome:
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
                return FunctionError(fault(type(exc).__name__, f"{self._url}: {exc}", rid))
            except aiohttp.ClientError as exc:
                return InvokeFailed(f"{self._url}: {type(exc).__name__}: {exc}")
        async with resp:
            try:
                body = await resp.read()
            except aiohttp.ClientError as exc:  # it answered, then broke off
                return FunctionError(fault(type(exc).__name__, f"{self._url}: {exc}", rid))
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
