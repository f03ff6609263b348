"""A lean path for the calls esm makes most: AWS JSON-protocol operations, signed and posted
without botocore's per-call machinery.

An idle daemon polls all the time (GetRecords on every leased shard, ReceiveMessage long polls on
every SQS mapping), and a busy one does little else. Through aiobotocore each such call costs
~1.5 ms of CPU (parameter validation, serialisation through the service model, event hooks, a
signer that rebuilds its request, the response parser walking the output shape); the HTTP
request itself is ~0.5 ms through ``aiohttp``. :class:`JsonClient` keeps only that: ``orjson``
for the body, a Signature Version 4 computed here (the day's signing key cached), keep-alive
connections of :mod:`esm.http1` (~0.08 ms a call; an ``aiohttp`` session where an HTTP proxy
must be spoken), ``orjson`` for the reply. Blobs stay base64 strings, timestamps epoch numbers,
which is what Lambda's events carry anyway.

It is built from the aiobotocore client for the same service and region, so the endpoint
(``AWS_ENDPOINT_URL*``, ``--embedded``, FIPS or dual-stack rules), region, signing name and
target prefix are botocore's, and credentials come from the same session (refreshed as botocore
refreshes them). Errors are raised as botocore's :class:`~botocore.exceptions.ClientError` with
the same ``Error.Code`` (including SQS's query-compatible codes from ``x-amzn-query-error``) and
HTTP status, so :func:`esm.connectors.base.translate_aws_errors` treats both paths alike.

Retries. Connection errors (refused, broken off, timed out), HTTP 5xx and the codes of
:data:`THROTTLING_CODES` are retried, three attempts in all as in botocore's standard mode (the
mode of esm's aiobotocore clients), but after shorter waits: before attempt n + 1 (n = 1, 2) esm
sleeps uniform(0, min(:data:`BACKOFF_MAX_S`, :data:`BACKOFF_BASE_S` * 2ⁿ)) = up to 0.1 s, then up
to 0.2 s, whatever the error. Standard mode (``botocore/retries/standard.py``,
``ExponentialBackoff``) sleeps uniform(0, min(20 s, 2ⁿ⁻¹ s)) = up to 1 s, then up to 2 s, for
throttles and other errors alike, and draws on a retry quota (500 tokens, 5 a retry) that esm does
not keep; legacy mode (``botocore/data/_retry.json``) sleeps rand * 2ⁿ⁻¹ s over 5 attempts
(DynamoDB: 0.05 * 2ⁿ⁻¹ s, no jitter, over 10). The short waits are on purpose: every caller of
this path is a poller that backs off on its own once a call fails (from 1 s, doubling:
:mod:`esm.queue_poller`, :mod:`esm.shard_consumer`), so these retries only ride out a blip. They
sleep in real time, as botocore's do: this path only ever talks to a real endpoint. A connection
that still fails is botocore's ``EndpointConnectionError``; a 2xx reply that is not JSON, a
``ClientError`` with the code ``ResponseParserError`` (retriable for
:func:`esm.connectors.base.translate_aws_errors`).

Every call is posted ``idempotent`` to the :class:`~esm.http1.Pool`: when a keep-alive connection
taken from the pool ends without a byte of reply (the server's idle timer crossing the request),
the call goes once more at once, on a new connection, and that is not one of its three attempts.
A POST in general may not be resent like that (the server may have acted on it), but every
operation esm sends here is one botocore itself retries on a closed connection
(``ConnectionClosedError`` is among standard mode's transient errors, for any operation), so a
second execution is what any AWS SDK would do, and for these it does no harm: a ``GetRecords``
again with the same iterator reads the same records; a ``DeleteMessageBatch`` again deletes
nothing more; a ``ReceiveMessage`` again leaves the first one's messages (if it took any) in
flight until their visibility timeout, then they come back with an ``ApproximateReceiveCount``
one higher, as after botocore's retry.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from esm.http1 import HttpError, Pool
from esm.sigv4 import signing_key

MAX_ATTEMPTS = 3  # as botocore's standard retry mode
BACKOFF_BASE_S = 0.05  # standard mode's is 1 s (see the module's docstring)
BACKOFF_MAX_S = 2.0
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "EC2ThrottledException",
    }
)


_stamp: tuple[int, str] = (0, "")


def _amz_date() -> str:
    """Now as ``X-Amz-Date`` (``20261125T210000Z``), formatted once a second."""
    global _stamp
    second = int(time.time())
    if _stamp[0] != second:
        _stamp = (second, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second)))
    return _stamp[1]


class SigV4:
    """AWS Signature Version 4 for a POST with a body, headers given; the key cached per day."""

    __slots__ = ("_key", "_key_for", "region", "service")

    def __init__(self, service: str, region: str) -> None:
        self.service = service
        self.region = region
        self._key_for: tuple[str, str] = ("", "")
        self._key = b""

    def _signing_key(self, secret: str, day: str) -> bytes:
        if self._key_for != (secret, day):
            self._key = signing_key(secret, day, self.region, self.service)
            self._key_for = (secret, day)
        return self._key

    def sign(
        self,
        headers: dict[str, str],
        *,
        path: str,
        body: bytes,
        access_key: str,
        secret_key: str,
        token: str | None,
        amz_date: str,
    ) -> None:
        """Adds ``X-Amz-Date`` (``amz_date``, the time of signing as ``20261125T210000Z``; and
        the session token) and ``Authorization`` to ``headers``, which must already hold
        ``Host`` and every other header to be signed."""
        day = amz_date[:8]
        headers["X-Amz-Date"] = amz_date
        if token:
            headers["X-Amz-Security-Token"] = token
        signed = sorted((k.lower(), " ".join(v.split())) for k, v in headers.items())
        names = ";".join([k for k, _ in signed])
        canonical = "\n".join(
            (
                "POST",
                path or "/",
                "",
                "".join([f"{k}:{v}\n" for k, v in signed]),
                names,
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        signature = hmac.digest(
            self._signing_key(secret_key, day), to_sign.encode(), "sha256"
        ).hex()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )


def endpoint_proxy(url: str) -> str | None:
    """The proxy ``HTTP(S)_PROXY`` and ``NO_PROXY`` name for ``url``, as botocore reads them."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class JsonClient:
    """JSON-protocol calls to one service in one region, over a connection :class:`Pool` to the
    endpoint, or over an ``aiohttp`` session (which speaks to HTTP proxies: see
    :func:`endpoint_proxy`)."""

    def __init__(
        self,
        *,
        http: Pool | aiohttp.ClientSession,
        endpoint_url: str,
        region: str,
        signing_name: str,
        target_prefix: str,
        json_version: str,
        credentials: Any,
        user_agent: str,
        query_compatible: bool = False,
        service_name: str = "",
    ) -> None:
        parts = urlsplit(endpoint_url)
        self.service_name = service_name or signing_name  # botocore's name, for logs and counts
        self._http = http
        self._url = endpoint_url if parts.path else endpoint_url + "/"
        self._path = parts.path or "/"
        self._host = parts.netloc
        self._target_prefix = target_prefix
        self._content_type = f"application/x-amz-json-{json_version}"
        self._credentials = credentials
        self._user_agent = user_agent
        self._query_compatible = query_compatible
        self._signer = SigV4(signing_name, region)
        # HTTP(S)_PROXY and NO_PROXY, as botocore honours them; looked up once here (aiohttp's
        # trust_env looks them up in a thread on every request)
        self._proxy = endpoint_proxy(endpoint_url)
        self._request_line = f"POST {self._path} HTTP/1.1\r\n"

    @classmethod
    def from_botocore(
        cls,
        client: Any,
        *,
        http: Pool | aiohttp.ClientSession,
        credentials: Any,
        user_agent: str,
    ) -> JsonClient:
        """The same endpoint, region and signing as an aiobotocore client's."""
        meta = client.meta
        model = meta.service_model
        if model.metadata.get("protocol") != "json":
            raise ValueError(f"{model.service_name} does not speak the AWS JSON protocol")
        return cls(
            http=http,
            endpoint_url=meta.endpoint_url,
            region=meta.region_name,
            signing_name=model.signing_name,
            target_prefix=model.metadata["targetPrefix"],
            json_version=model.metadata.get("jsonVersion", "1.0"),
            credentials=credentials,
            user_agent=user_agent,
            query_compatible="awsQueryCompatible" in model.metadata,
            service_name=model.service_name,
        )

    async def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """``operation`` with ``params`` (botocore's names); the reply as a dict."""
        body = orjson.dumps(params)
        attempt = 1
        while True:
            try:
                return await self._once(operation, body)
            except ClientError as exc:
                status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
                code = exc.response["Error"]["Code"]
                if attempt >= MAX_ATTEMPTS or (status < 500 and code not in THROTTLING_CODES):
                    raise
            except (aiohttp.ClientError, HttpError) as exc:  # the connection failed or broke off
                if attempt >= MAX_ATTEMPTS:
                    raise EndpointConnectionError(endpoint_url=self._url, error=exc) from exc
            except TimeoutError:
                if attempt >= MAX_ATTEMPTS:
                    raise
            await asyncio.sleep(random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt)))
            attempt += 1

    async def _once(self, operation: str, body: bytes) -> dict[str, Any]:
        creds = self._credentials
        if creds is None:
            raise NoCredentialsError()
        frozen = await creds.get_frozen_credentials()
        headers = {
            "Host": self._host,
            "Content-Type": self._content_type,
            "X-Amz-Target": f"{self._target_prefix}.{operation}",
        }
        if self._query_compatible:
            headers["x-amzn-query-mode"] = "true"  # as botocore sends it (SQS)
        self._signer.sign(
            headers,
            path=self._path,
            body=body,
            access_key=frozen.access_key,
            secret_key=frozen.secret_key,
            token=frozen.token,
            amz_date=_amz_date(),
        )
        headers["User-Agent"] = self._user_agent
        if isinstance(self._http, Pool):
            head = "".join(
                (
                    self._request_line,
                    "".join(f"{k}: {v}\r\n" for k, v in headers.items()),
                    f"Content-Length: {len(body)}\r\n\r\n",
                )
            )
            reply = await self._http.request(head.encode(), body, idempotent=True)
            raw, status, reply_headers = reply.body, reply.status, reply.headers
        else:
            async with self._http.post(
                self._url, data=body, headers=headers, proxy=self._proxy
            ) as resp:
                raw = await resp.read()
                status = resp.status
                reply_headers = {k.lower(): v for k, v in resp.headers.items()}
        query_error = reply_headers.get("x-amzn-query-error")
        error_type = reply_headers.get("x-amzn-errortype")
        if 200 <= status < 300:
            try:
                out = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError as exc:
                error = {
                    "Error": {"Code": "ResponseParserError", "Message": "a reply that is not JSON"},
                    "ResponseMetadata": {"HTTPStatusCode": status},
                }
                raise ClientError(error, operation) from exc
            return out if isinstance(out, dict) else {}
        raise ClientError(self._error(status, raw, query_error, error_type), operation)

    def _error(
        self, status: int, raw: bytes, query_error: str | None, error_type: str | None
    ) -> Any:
        """botocore's error shape from a JSON-protocol error reply (or a non-JSON one)."""
        try:
            doc = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        code = str(doc.get("__type") or doc.get("code") or error_type or status)
        code = code.rsplit("#", 1)[-1].split(":", 1)[0]
        if self._query_compatible and query_error:
            code = query_error.split(";", 1)[0]
        message = doc.get("message") or doc.get("Message") or ""
        return {
            "Error": {"Code": code, "Message": str(message)},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
