"""Destinations: where invocation records, stream on-failure records and dead letters go.

:mod:`esm.destinations.factory` builds them from a target::

    build_destination(target)                 build_dead_letter(target)
     ├── arn:aws:sqs:…          sqs.py         ├── arn:aws:sqs:…   (standard queues only)
     ├── arn:aws:sns:…          sns.py         ├── arn:aws:sns:…   (standard topics only)
     ├── arn:aws:events:…:event-bus/…          └── memory://name
     │                          eventbridge.py
     ├── arn:aws:lambda:…:function:…  lambda_.py
     ├── arn:aws:s3:::bucket    s3.py
     ├── http(s)://…            http.py
     └── memory://name          memory.py (the in-process twin)

Every ``send`` / ``send_dead_letter`` makes up to :data:`ATTEMPTS` attempts, waiting
:data:`FIRST_WAIT_S`, then twice that, on the engine's :class:`~esm.clock.Clock` (virtual clocks
work), and retries only transient failures: connection errors, timeouts, HTTP 5xx and throttles.
Anything else (a missing queue, access denied, a FIFO target AWS would refuse) fails at once.
A failure ends as :class:`DeliveryError`, whose message names the target and the cause.

The aiobotocore clients of :class:`~esm.aws.AwsClients` retry throttles and 5xx on their own
(botocore's standard mode) inside each attempt; Lambda's client does not.

Callers own the bookkeeping: counting ``DestinationDeliveryFailures`` / ``DeadLetterErrors`` /
``DroppedEventCount`` (docs/semantics.md §11) and logging the request id of the record that was
lost. This module only logs one warning per final failure.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

import aiohttp
import orjson
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from esm.clock import Clock
from esm.errors import EsmError

log = logging.getLogger(__name__)

ATTEMPTS = 3
FIRST_WAIT_S = 0.2
MAX_WAIT_S = 2.0
ERROR_MESSAGE_MAX_BYTES = 1024  # DLQ ErrorMessage: "the first 1 KB" (docs/semantics.md §8.5)

LocalInvoke = Callable[[str, bytes], Awaitable[None]]
"""Invoke a function esm serves, asynchronously: ``(function name, payload)``."""


class DeliveryError(EsmError):
    """A record or dead letter could not be delivered; ``retriable`` says whether trying again
    later may help (a timeout, a throttle, a 5xx) or not (a missing queue, access denied)."""

    def __init__(self, target: str, cause: str, *, retriable: bool = False) -> None:
        self.target = target
        self.cause = cause
        self.retriable = retriable
        super().__init__(f"delivery to {target} failed: {cause}")


class Destination(Protocol):
    """An ``OnSuccess`` / ``OnFailure`` target."""

    target: str

    async def send(self, record: Mapping[str, Any], *, s3_key: str | None = None) -> None:
        """Deliver ``record`` (S3 puts it at ``s3_key``); DeliveryError after retries."""
        ...

    async def aclose(self) -> None: ...


class DeadLetterTarget(Protocol):
    """A function's ``DeadLetterConfig.TargetArn``: a standard SQS queue or SNS topic
    (docs/semantics.md §8.5)."""

    target: str

    async def send_dead_letter(
        self, payload: bytes, *, request_id: str, error_code: int, error_message: str
    ) -> None:
        """Deliver the event as-is with RequestID / ErrorCode / ErrorMessage attributes."""
        ...

    async def aclose(self) -> None: ...


# -- helpers for the implementations --------------------------------------------------------------


def encode(target: str, record: Mapping[str, Any]) -> bytes:
    """The record as compact JSON; DeliveryError when it cannot be serialised."""
    try:
        return orjson.dumps(record if isinstance(record, dict) else dict(record))
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        log.warning("record for %s is not JSON-serialisable: %s", target, exc)
        raise DeliveryError(target, f"record is not JSON-serialisable: {exc}") from exc


def truncate_utf8(text: str, max_bytes: int = ERROR_MESSAGE_MAX_BYTES) -> str:
    """The first ``max_bytes`` bytes of ``text``, never splitting a character."""
    return text.encode()[:max_bytes].decode("utf-8", errors="ignore")


def dead_letter_attributes(
    request_id: str, error_code: int, error_message: str
) -> dict[str, dict[str, str]]:
    """SQS/SNS ``MessageAttributes`` of a dead letter (docs/semantics.md §8.5). Empty values are
    left out: both services refuse an attribute with an empty value."""
    attrs = {
        "RequestID": {"DataType": "String", "StringValue": request_id},
        "ErrorCode": {"DataType": "Number", "StringValue": str(error_code)},
        "ErrorMessage": {"DataType": "String", "StringValue": truncate_utf8(error_message)},
    }
    return {name: value for name, value in attrs.items() if value["StringValue"]}


_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KMSThrottlingException",
    }
)


@contextlib.contextmanager
def translate_errors(target: str) -> Iterator[None]:
    """botocore, aiohttp and socket errors → :class:`DeliveryError`, in one place."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        retriable = status >= 500 or status == 429 or code in _THROTTLING_CODES
        cause = f"{code or 'HTTP ' + str(status)}: {error.get('Message', '')}".rstrip(": ")
        raise DeliveryError(target, cause, retriable=retriable) from exc
    except (
        BotoConnectionError,
        HTTPClientError,
        aiohttp.ClientError,
        OSError,
        TimeoutError,
    ) as exc:
        raise DeliveryError(target, f"{type(exc).__name__}: {exc}", retriable=True) from exc
    except BotoCoreError as exc:
        # bad parameters, no credentials, no region: trying again won't help
        raise DeliveryError(target, f"{type(exc).__name__}: {exc}") from exc


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.retriable


async def deliver(
    target: str, clock: Clock, attempt: Callable[[], Awaitable[None]], *, what: str = "record"
) -> None:
    """Run ``attempt`` until it succeeds, retrying transient :class:`DeliveryError`; the last
    error is raised (and logged once) when attempts run out or the failure is permanent."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential(multiplier=FIRST_WAIT_S, max=MAX_WAIT_S),
        retry=retry_if_exception(_transient),
        sleep=clock.sleep,
        reraise=True,
    )
    try:
        async for state in retrying:
            with state:
                await attempt()
    except DeliveryError as exc:
        log.warning(
            "%s delivery to %s failed (attempts: %d): %s",
            what,
            target,
            retrying.statistics.get("attempt_number", 1),
            exc.cause,
        )
        raise
