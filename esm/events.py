"""Source records → the exact record JSON Lambda puts in ``event["Records"]`` (spec §2). Pure.

The functions here take what botocore returns and give back plain dicts in Lambda's shape and
key order. The batch event is assembled from each record's pre-serialised JSON bytes, so a record
is serialised once however many times it is retried.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

# Lambda's order for SQS attributes (standard example, then the FIFO ones, then the optional).
_SQS_ATTRIBUTE_ORDER = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "SenderId",
    "MessageDeduplicationId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)


def _b64(value: bytes | str) -> str:
    if isinstance(value, str):
        value = value.encode()
    return base64.b64encode(value).decode("ascii")


def sqs_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """One SQS message attribute in Lambda's camelCase shape."""
    out: dict[str, Any] = {}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = _b64(value["BinaryValue"])
    out["stringListValues"] = list(value.get("StringListValues", []))
    out["binaryListValues"] = [_b64(v) for v in value.get("BinaryListValues", [])]
    out["dataType"] = value["DataType"]
    return out


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """A ReceiveMessage ``Messages[i]`` entry → Lambda's SQS record (spec §2.1)."""
    attrs: Mapping[str, str] = message.get("Attributes", {})
    attributes = {k: attrs[k] for k in _SQS_ATTRIBUTE_ORDER if k in attrs}
    for k in sorted(attrs.keys() - attributes.keys()):
        attributes[k] = attrs[k]
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": attributes,
        "messageAttributes": {
            name: sqs_message_attribute(v)
            for name, v in message.get("MessageAttributes", {}).items()
        },
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record["md5OfBody"] = message.get("MD5OfBody", "")
    record["eventSource"] = "aws:sqs"
    record["eventSourceARN"] = queue_arn
    record["awsRegion"] = region
    return record


_OPEN = b'{"Records":['
_CLOSE = b"]}"
EVENT_OVERHEAD = len(_OPEN) + len(_CLOSE)


def batch_event(raw_records: Iterable[bytes]) -> bytes:
    """``{"Records":[…]}`` from records already serialised to JSON."""
    return _OPEN + b",".join(raw_records) + _CLOSE


def event_size(record_sizes: Iterable[int]) -> int:
    """Bytes of :func:`batch_event` for records of these sizes, without building it."""
    n = 0
    total = EVENT_OVERHEAD
    for size in record_sizes:
        total += size
        n += 1
    return total + max(0, n - 1)
