"""Source records → the exact record JSON Lambda puts in ``event["Records"]``
(docs/semantics.md §3.1, §4.1, §5.1). Pure.

The functions here take what botocore returns and give back plain dicts in Lambda's shape and
key order. The batch event is assembled from each record's pre-serialised JSON bytes, so a record
is serialised once however many times it is retried.

botocore hands timestamps over as datetimes and binary values as bytes; Lambda's events carry
epoch seconds as JSON numbers and binary values as base64 strings, so both are converted here.
A reply read straight off the wire (:mod:`esm.awsjson`, ``wire=True``) already has both in
Lambda's form: its base64 strings pass through as they are.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson

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


def _as_is(value: str) -> str:
    return value


def sqs_message_attribute(value: Mapping[str, Any], *, wire: bool = False) -> dict[str, Any]:
    """One SQS message attribute in Lambda's camelCase shape."""
    b64: Any = _as_is if wire else _b64
    out: dict[str, Any] = {}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = b64(value["BinaryValue"])
    out["stringListValues"] = list(value.get("StringListValues", []))
    out["binaryListValues"] = [b64(v) for v in value.get("BinaryListValues", [])]
    out["dataType"] = value["DataType"]
    return out


def sqs_record(
    message: Mapping[str, Any], queue_arn: str, region: str, *, wire: bool = False
) -> dict[str, Any]:
    """A ReceiveMessage ``Messages[i]`` entry → Lambda's SQS record (docs/semantics.md §3.1)."""
    attrs: Mapping[str, str] = message.get("Attributes", {})
    attributes = {k: attrs[k] for k in _SQS_ATTRIBUTE_ORDER if k in attrs}
    if len(attributes) != len(attrs):  # attributes Lambda's order does not know: sorted, last
        for k in sorted(attrs.keys() - attributes.keys()):
            attributes[k] = attrs[k]
    raw_attributes = message.get("MessageAttributes")
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": attributes,
        "messageAttributes": (
            {name: sqs_message_attribute(v, wire=wire) for name, v in raw_attributes.items()}
            if raw_attributes
            else {}
        ),
    }
    # null without attributes, as recorded on AWS (its documentation's example leaves it out)
    record["md5OfMessageAttributes"] = message.get("MD5OfMessageAttributes") or None
    record["md5OfBody"] = message.get("MD5OfBody", "")
    record["eventSource"] = "aws:sqs"
    record["eventSourceARN"] = queue_arn
    record["awsRegion"] = region
    return record


# -- Kinesis (docs/semantics.md §4.1) --------------------------------------------------------------


def epoch_seconds(value: datetime | float | int | str) -> float:
    """A botocore timestamp (datetime) or an epoch-seconds number → epoch seconds (float)."""
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def kinesis_record(
    record: Mapping[str, Any],
    *,
    shard_id: str,
    stream_arn: str,
    region: str,
    invoke_identity_arn: str,
    wire: bool = False,
) -> dict[str, Any]:
    """A GetRecords ``Records[i]`` entry → Lambda's Kinesis record (docs/semantics.md §4.1).

    ``data`` is the payload in base64; ``approximateArrivalTimestamp`` is epoch seconds with a
    millisecond fraction; ``eventID`` is ``<shard id>:<sequence number>``. ``EncryptionType``
    is not part of Lambda's record and is dropped.
    """
    seq = str(record["SequenceNumber"])
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record["PartitionKey"],
            "sequenceNumber": seq,
            "data": record["Data"] if wire else _b64(record["Data"]),
            "approximateArrivalTimestamp": round(
                epoch_seconds(record["ApproximateArrivalTimestamp"]), 3
            ),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{seq}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": invoke_identity_arn,
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


class KinesisRecordJson:
    """Lambda's Kinesis record as JSON bytes, straight from a GetRecords entry as the wire
    carries it (``Data`` in base64, the arrival in epoch seconds): the same bytes as
    ``orjson.dumps(kinesis_record(entry, ..., wire=True))`` (a test holds them equal), at about
    half the cost, the parts that are the same for every record of a shard made once. This runs
    for every record read."""

    __slots__ = ("_event_id", "_tail")

    def __init__(
        self, *, shard_id: str, stream_arn: str, region: str, invoke_identity_arn: str
    ) -> None:
        self._event_id = shard_id + ":"
        self._tail = b"".join(
            (
                b',"eventName":"aws:kinesis:record","invokeIdentityArn":',
                orjson.dumps(invoke_identity_arn),
                b',"awsRegion":',
                orjson.dumps(region),
                b',"eventSourceARN":',
                orjson.dumps(stream_arn),
                b"}",
            )
        )

    def __call__(self, entry: Mapping[str, Any], seq: str, arrival: float) -> bytes:
        """``seq`` is ``str(entry["SequenceNumber"])``, ``arrival`` the entry's arrival time as
        the record carries it (epoch seconds, rounded to the millisecond)."""
        dumps = orjson.dumps
        return b"".join(
            (
                b'{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":',
                dumps(entry["PartitionKey"]),
                b',"sequenceNumber":',
                dumps(seq),
                b',"data":',
                dumps(entry["Data"]),
                b',"approximateArrivalTimestamp":',
                dumps(arrival),
                b'},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":',
                dumps(self._event_id + seq),
                self._tail,
            )
        )


# -- DynamoDB Streams (docs/semantics.md §5.1) -----------------------------------------------------

# Lambda's order, as real events show it: the DynamoDB Streams API's own order (Record, then
# StreamRecord) with ``eventSourceARN`` after ``dynamodb``. The Developer Guide's hand-written
# example orders keys differently from one record to the next, so it is no guide to order.
_DDB_STREAM_RECORD_ORDER = (
    "ApproximateCreationDateTime",
    "Keys",
    "NewImage",
    "OldImage",
    "SequenceNumber",
    "SizeBytes",
    "StreamViewType",
)
_DDB_IMAGES = frozenset({"Keys", "NewImage", "OldImage"})


def _ddb_binary(value: bytes | str) -> str:
    # botocore decodes binary values to bytes; a str is already DynamoDB JSON's base64 form.
    return value if isinstance(value, str) else base64.b64encode(value).decode("ascii")


def dynamodb_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """One DynamoDB JSON attribute value with bytes (``B``, ``BS``, nested) as base64 strings.

    Idempotent: a value already in Lambda's form comes back unchanged.
    """
    out: dict[str, Any] = {}
    for tag, v in value.items():
        if tag == "B":
            out[tag] = _ddb_binary(v)
        elif tag == "BS":
            out[tag] = [_ddb_binary(b) for b in v]
        elif tag == "M":
            out[tag] = dynamodb_item(v)
        elif tag == "L":
            out[tag] = [dynamodb_attribute(e) for e in v]
        else:
            out[tag] = v
    return out


def dynamodb_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """An attribute map (``Keys``, an image, an ``M`` value) in Lambda's DynamoDB JSON."""
    return {name: dynamodb_attribute(v) for name, v in item.items()}


def dynamodb_record(record: Mapping[str, Any], *, stream_arn: str, region: str) -> dict[str, Any]:
    """A DynamoDB Streams GetRecords ``Records[i]`` entry → Lambda's record
    (docs/semantics.md §5.1).

    ``ApproximateCreationDateTime`` becomes a JSON number of epoch seconds; images that the
    record does not carry (by event name and ``StreamViewType``) stay absent; ``userIdentity``
    (TTL deletes) is kept when present. ``awsRegion`` is the record's own, else ``region``.
    """
    src: Mapping[str, Any] = record.get("dynamodb", {})
    ddb: dict[str, Any] = {}
    for key in _DDB_STREAM_RECORD_ORDER:
        if key not in src:
            continue
        value = src[key]
        if key == "ApproximateCreationDateTime":
            ddb[key] = epoch_seconds(value)
        elif key in _DDB_IMAGES:
            ddb[key] = dynamodb_item(value)
        else:
            ddb[key] = value
    out: dict[str, Any] = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion") or region,
        "dynamodb": ddb,
        "eventSourceARN": stream_arn,
    }
    identity = record.get("userIdentity")
    if identity:
        out["userIdentity"] = {
            "type": identity.get("Type", identity.get("type")),
            "principalId": identity.get("PrincipalId", identity.get("principalId")),
        }
    return out


def dynamodb_item_key(keys: Mapping[str, Any]) -> str:
    """A canonical string for an item's ``Keys``: equal for the same item whatever the order
    of attributes (and whether binary values come as bytes or base64). Orders records for
    ``ParallelizationFactor``."""
    return orjson.dumps(dynamodb_item(keys), option=orjson.OPT_SORT_KEYS).decode()


_OPEN = b'{"Records":['
_CLOSE = b"]}"
EVENT_OVERHEAD = len(_OPEN) + len(_CLOSE)


def batch_event(raw_records: Iterable[bytes]) -> bytes:
    """``{"Records":[…]}`` from records already serialised to JSON."""
    return _OPEN + b",".join(raw_records) + _CLOSE
