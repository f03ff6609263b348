"""The records Lambda sends to destinations: pure builders, no I/O.

- :func:`stream_failure_record`: what a Kinesis or DynamoDB Streams mapping sends to its
  on-failure destination when it discards a batch (docs/semantics.md §6.7). SQS and SNS get the
  metadata; S3 gets the same document plus ``payload``, the whole invocation event as a JSON
  *string*.
- :func:`invocation_record`: what asynchronous invocation sends to ``OnSuccess`` / ``OnFailure``
  (docs/semantics.md §8.7).
- :func:`stream_s3_key` and :func:`async_s3_key`: where S3 destinations put those records.

Keys come out in the order of AWS's examples. Timestamps are ISO-8601 UTC with milliseconds
(``2019-11-14T18:16:05.568Z``), except the arrival times of DynamoDB records, which AWS writes to
the second (``2019-11-14T00:13:19Z``): DynamoDB's ``ApproximateCreationDateTime`` has no finer
precision, and the records AWS delivers show it that way.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
VERSION = "1.0"


@dataclass(frozen=True, slots=True)
class ResponseContext:
    """How the function answered the last attempt (``responseContext``)."""

    status_code: int = 200
    executed_version: str = "$LATEST"
    function_error: str | None = None  # "Unhandled" / "Handled"; None: no function error

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "statusCode": self.status_code,
            "executedVersion": self.executed_version,
        }
        if self.function_error is not None:
            out["functionError"] = self.function_error
        return out


# -- time -----------------------------------------------------------------------------------------


def _utc(epoch_s: float) -> tuple[datetime, int]:
    """The instant rounded to the millisecond (no 0.568 → 567 float drift), and its ms part."""
    ms = round(epoch_s * 1000)
    return _EPOCH + timedelta(milliseconds=ms), ms % 1000


def iso_ms(epoch_s: float) -> str:
    """``2019-11-14T18:16:05.568Z``: UTC, milliseconds, a literal ``Z``."""
    at, ms = _utc(epoch_s)
    return f"{at:%Y-%m-%dT%H:%M:%S}.{ms:03d}Z"


def iso_s(epoch_s: float) -> str:
    """``2019-11-14T00:13:19Z``: UTC to the second (DynamoDB arrival times)."""
    at, _ = _utc(epoch_s)
    return f"{at:%Y-%m-%dT%H:%M:%S}Z"


# -- streams (docs/semantics.md §6.7) --------------------------------------------------------------


def stream_failure_record(
    *,
    request_id: str,
    function_arn: str,
    condition: str,
    approximate_invoke_count: int,
    response: ResponseContext | None,
    source: Literal["kinesis", "dynamodb"],
    shard_id: str,
    start_sequence_number: str,
    end_sequence_number: str,
    first_arrival: float,
    last_arrival: float,
    batch_size: int,
    stream_arn: str,
    now: float,
    payload: bytes | None = None,
) -> dict[str, Any]:
    """The on-failure record of a discarded stream batch.

    ``response`` is None when the batch was never invoked (e.g. throttled until it aged out):
    ``responseContext`` is then left out (docs/semantics.md §6.7). ``payload`` is the invocation
    event as sent to the function; give it for S3 destinations only, where it becomes a JSON
    string.
    """
    record: dict[str, Any] = {
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": approximate_invoke_count,
        }
    }
    if response is not None:
        record["responseContext"] = response.to_json()
    record["version"] = VERSION
    record["timestamp"] = iso_ms(now)
    arrival = iso_ms if source == "kinesis" else iso_s
    info_key = "KinesisBatchInfo" if source == "kinesis" else "DDBStreamBatchInfo"
    record[info_key] = {
        "shardId": shard_id,
        "startSequenceNumber": start_sequence_number,
        "endSequenceNumber": end_sequence_number,
        "approximateArrivalOfFirstRecord": arrival(first_arrival),
        "approximateArrivalOfLastRecord": arrival(last_arrival),
        "batchSize": batch_size,
        "streamArn": stream_arn,
    }
    if payload is not None:
        record["payload"] = payload.decode("utf-8", errors="replace")
    return record


# -- asynchronous invocation (docs/semantics.md §8.7) ----------------------------------------------


def invocation_record(
    *,
    request_id: str,
    function_arn: str,
    condition: str,
    approximate_invoke_count: int,
    request_payload: bytes,
    response: ResponseContext | None,
    response_payload: bytes | None,
    now: float,
) -> dict[str, Any]:
    """The record of an asynchronous invocation, for ``OnSuccess`` / ``OnFailure``.

    ``function_arn`` carries the qualifier that was invoked (``…:function:f:$LATEST``).
    ``response`` is None when the event was never run (``EventAgeExceeded`` before any attempt,
    ``ZeroReservedConcurrency``); ``response_payload`` None leaves ``responsePayload`` out.
    Payloads that are JSON appear parsed; anything else appears as a string.
    """
    record: dict[str, Any] = {
        "version": VERSION,
        "timestamp": iso_ms(now),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": approximate_invoke_count,
        },
        "requestPayload": _json_or_text(request_payload),
    }
    if response is not None:
        record["responseContext"] = response.to_json()
    if response_payload is not None:
        record["responsePayload"] = _json_or_text(response_payload)
    return record


def _json_or_text(payload: bytes) -> Any:
    """Parsed JSON; an empty body is ``null`` (what a handler returning nothing gives);
    anything else that is not JSON is kept as text."""
    if not payload.strip():
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", errors="replace")


# -- S3 object keys -------------------------------------------------------------------------------


def _key_tail(now: float) -> str:
    at, _ = _utc(now)
    return f"{at:%Y/%m/%d}/{at:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}"


def stream_s3_key(mapping_uuid: str, shard_id: str, now: float) -> str:
    """``aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<random UUID>``."""
    return f"aws/lambda/{mapping_uuid}/{shard_id}/{_key_tail(now)}"


def async_s3_key(function_name: str, now: float) -> str:
    """``aws/lambda/async/<function-name>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<random UUID>``."""
    return f"aws/lambda/async/{function_name}/{_key_tail(now)}"
