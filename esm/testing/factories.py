"""Event factories: the exact records and events Lambda sends, for tests of batch handlers.

Every record is built by the engine's own :mod:`esm.events` functions from what botocore would
return for it, so what a test feeds a handler and what the engine sends it cannot drift apart::

    sqs_record("hello")                    ─┐
    kinesis_record({"n": 1})                ├─ botocore-shaped input ──> esm.events ──> record
    dynamodb_record(keys={"Id": 1}, …)     ─┘
    sqs_event(…) / kinesis_event(…) / dynamodb_event(…)  ──>  {"Records": [...]}

Keyword arguments set the common fields and keep derived fields consistent: ``md5OfBody`` and
``md5OfMessageAttributes`` from the body and attributes, FIFO attributes from the queue ARN,
``eventID`` from the shard and sequence number, sequence numbers that increase from one record to
the next (a module-wide counter), ``data`` in base64, ``SizeBytes`` from the images, plain Python
values as DynamoDB JSON. ``**overrides`` (the record's own field names, e.g. ``messageId=…``) are
deep-merged last, verbatim: nothing is derived from them.
"""

from __future__ import annotations

import base64
import decimal
import hashlib
import itertools
import json
import math
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from esm import events
from esm.arns import Arn, is_fifo_queue
from esm.clock import Clock, RealClock
from esm.connectors.memory import SENDER_ID, message_attributes_md5
from esm.outcomes import LATEST
from esm.targets.python import ContextInfo, LambdaContext

REGION = "us-east-1"
ACCOUNT = "123456789012"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:my-queue"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/my-stream"
TABLE_STREAM_ARN = (
    f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/my-table/stream/2024-01-01T00:00:00.000"
)
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/lambda-role"
SHARD_ID = "shardId-000000000000"

EventName = Literal["INSERT", "MODIFY", "REMOVE"]
ViewType = Literal["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"]
VIEW_TYPES: tuple[str, ...] = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")

# Increasing sequence numbers, shaped like the services' own (module-wide, so records made one
# after the other are in order).
_SQS_SEQUENCE = itertools.count(18849496460467696128)
_KINESIS_SEQUENCE = itertools.count(49590338271490256608559692538361571095921575989136588898)
_DYNAMODB_SEQUENCE = itertools.count(100000000000000000001)


def next_kinesis_sequence_number() -> str:
    """A 56-digit Kinesis sequence number, greater than every one given before."""
    return str(next(_KINESIS_SEQUENCE))


def next_dynamodb_sequence_number() -> str:
    """A 21-digit DynamoDB Streams sequence number, greater than every one given before."""
    return str(next(_DYNAMODB_SEQUENCE))


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in: nested objects merge, anything else replaces."""
    out = dict(base)
    for key, value in overrides.items():
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = deep_merge(current, value)
        else:
            out[key] = value
    return out


def _text(value: Any) -> str:
    """A message body or record payload: strings as they are, bytes decoded, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode()
    return json.dumps(value)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return _text(value).encode()


def _region(arn: str) -> str:
    try:
        return Arn.parse(arn).region or REGION
    except ValueError:
        return REGION


# -- SQS -------------------------------------------------------------------------------------------


def message_attribute(value: Any) -> dict[str, Any]:
    """A message attribute in botocore's shape from a plain value: ``str`` → String, ``int`` /
    ``float`` / ``Decimal`` → Number, ``bytes`` → Binary; a dict with ``DataType`` is kept."""
    if isinstance(value, Mapping):
        if "DataType" not in value:
            raise ValueError(f"a message attribute dict needs a DataType (got {dict(value)!r})")
        return dict(value)
    if isinstance(value, bool):
        return {"DataType": "String", "StringValue": str(value).lower()}
    if isinstance(value, int | float | decimal.Decimal):
        return {"DataType": "Number", "StringValue": str(value)}
    if isinstance(value, bytes | bytearray):
        return {"DataType": "Binary", "BinaryValue": bytes(value)}
    if isinstance(value, str):
        return {"DataType": "String", "StringValue": value}
    raise TypeError(f"cannot make an SQS message attribute of {type(value).__name__}")


def shape_message_attributes(attributes: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Message attributes in botocore's shape (see :func:`message_attribute`)."""
    return {name: message_attribute(v) for name, v in (attributes or {}).items()}


def _millis(epoch_s: float) -> str:
    return str(int(epoch_s * 1000))


def sqs_record(
    body: Any = "Test message.",
    *,
    queue_arn: str = QUEUE_ARN,
    message_id: str | None = None,
    receipt_handle: str | None = None,
    receive_count: int = 1,
    sent_at: float | None = None,
    first_received_at: float | None = None,
    sender_id: str = SENDER_ID,
    message_attributes: Mapping[str, Any] | None = None,
    group_id: str | None = None,
    deduplication_id: str | None = None,
    sequence_number: str | None = None,
    trace_header: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """One SQS record as Lambda delivers it (docs/semantics.md §3.1).

    ``body`` that is not a string is sent as JSON. ``message_attributes`` are plain values or
    botocore-shaped (see :func:`message_attribute`). Times are epoch seconds (default:
    now). A ``.fifo`` queue ARN adds ``SequenceNumber``, ``MessageGroupId`` (default ``"1"``)
    and ``MessageDeduplicationId`` (default: the SHA-256 of the body, as content-based
    deduplication does).
    """
    text = _text(body)
    sent = time.time() if sent_at is None else sent_at
    attrs: dict[str, str] = {
        "ApproximateReceiveCount": str(receive_count),
        "SentTimestamp": _millis(sent),
        "SenderId": sender_id,
        "ApproximateFirstReceiveTimestamp": _millis(
            sent if first_received_at is None else first_received_at
        ),
    }
    if is_fifo_queue(queue_arn):
        attrs["SequenceNumber"] = sequence_number or str(next(_SQS_SEQUENCE))
        attrs["MessageGroupId"] = group_id or "1"
        attrs["MessageDeduplicationId"] = (
            deduplication_id or hashlib.sha256(text.encode()).hexdigest()
        )
    elif group_id is not None:  # a fair queue: standard, with message groups
        attrs["MessageGroupId"] = group_id
    if trace_header is not None:
        attrs["AWSTraceHeader"] = trace_header
    message: dict[str, Any] = {
        "MessageId": message_id or str(uuid.uuid4()),
        "ReceiptHandle": receipt_handle or _receipt_handle(),
        "MD5OfBody": hashlib.md5(text.encode()).hexdigest(),
        "Body": text,
        "Attributes": attrs,
    }
    shaped = shape_message_attributes(message_attributes)
    if shaped:
        message["MessageAttributes"] = shaped
        message["MD5OfMessageAttributes"] = message_attributes_md5(shaped)
    record = events.sqs_record(message, queue_arn, _region(queue_arn))
    return deep_merge(record, overrides)


def _receipt_handle() -> str:
    return "AQEB" + base64.b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode()


def sqs_event(*messages: Any, **common: Any) -> dict[str, Any]:
    """``{"Records": [...]}`` of SQS records: each positional item is a record (a dict made by
    :func:`sqs_record`) or a body; ``common`` keyword arguments go to every record built here."""
    records = [
        dict(m) if _is_record(m, "aws:sqs") else sqs_record(m, **common) for m in messages or ("",)
    ]
    return {"Records": records}


def _is_record(item: Any, source: str) -> bool:
    return isinstance(item, Mapping) and item.get("eventSource") == source


# -- Kinesis ---------------------------------------------------------------------------------------


def kinesis_record(
    data: Any = "Hello, this is a test.",
    *,
    partition_key: str = "1",
    sequence_number: str | None = None,
    shard_id: str = SHARD_ID,
    stream_arn: str = STREAM_ARN,
    arrival: float | None = None,
    invoke_identity_arn: str = ROLE_ARN,
    **overrides: Any,
) -> dict[str, Any]:
    """One Kinesis record as Lambda delivers it (docs/semantics.md §4.1): ``data`` (bytes as they
    are, strings UTF-8, anything else as JSON) in base64, ``eventID`` =
    ``<shard id>:<sequence number>``, ``approximateArrivalTimestamp`` in epoch seconds (default:
    now)."""
    raw = {
        "SequenceNumber": sequence_number or next_kinesis_sequence_number(),
        "ApproximateArrivalTimestamp": time.time() if arrival is None else arrival,
        "Data": _bytes(data),
        "PartitionKey": partition_key,
    }
    record = events.kinesis_record(
        raw,
        shard_id=shard_id,
        stream_arn=stream_arn,
        region=_region(stream_arn),
        invoke_identity_arn=invoke_identity_arn,
    )
    return deep_merge(record, overrides)


def kinesis_event(*items: Any, **common: Any) -> dict[str, Any]:
    """``{"Records": [...]}`` of Kinesis records: each positional item is a record (from
    :func:`kinesis_record`) or a payload; ``common`` goes to every record built here."""
    records = [
        dict(i) if _is_record(i, "aws:kinesis") else kinesis_record(i, **common)
        for i in items or ("",)
    ]
    return {"Records": records}


# -- DynamoDB Streams ------------------------------------------------------------------------------


def dynamodb_value(value: Any) -> dict[str, Any]:
    """A plain Python value as a DynamoDB JSON attribute value, in Lambda's form (binary values
    in base64): ``str`` S, ``bool`` BOOL, numbers N, ``None`` NULL, ``bytes`` B, mappings M,
    lists and tuples L, sets SS / NS / BS."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | float | decimal.Decimal):
        return {"N": _number(value)}
    if isinstance(value, bytes | bytearray):
        return {"B": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Mapping):
        return {"M": dynamodb_json(value)}
    if isinstance(value, list | tuple):
        return {"L": [dynamodb_value(v) for v in value]}
    if isinstance(value, set | frozenset):
        return _dynamodb_set(value)
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def _number(value: int | float | decimal.Decimal) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"DynamoDB numbers must be finite (got {value})")
    if isinstance(value, decimal.Decimal) and not value.is_finite():
        raise ValueError(f"DynamoDB numbers must be finite (got {value})")
    return str(value) if not isinstance(value, float) else repr(value)


def _dynamodb_set(values: set[Any] | frozenset[Any]) -> dict[str, Any]:
    if not values:
        raise ValueError("DynamoDB sets cannot be empty")
    if all(isinstance(v, str) for v in values):
        return {"SS": sorted(values)}
    if all(isinstance(v, bytes | bytearray) for v in values):
        return {"BS": sorted(base64.b64encode(bytes(v)).decode() for v in values)}
    numbers = (int, float, decimal.Decimal)
    if all(isinstance(v, numbers) and not isinstance(v, bool) for v in values):
        return {"NS": sorted((_number(v) for v in values), key=decimal.Decimal)}
    raise TypeError("a DynamoDB set holds only strings, only numbers or only bytes")


def dynamodb_json(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item (``Keys``, an image) of plain Python values as DynamoDB JSON."""
    return {str(name): dynamodb_value(v) for name, v in item.items()}


def dynamodb_item_size(item: Mapping[str, Any]) -> int:
    """The size DynamoDB counts for an item in DynamoDB JSON: attribute names plus values
    (strings and binary by length, numbers by significant digits / 2 + 1, 1 byte for booleans
    and null, 3 bytes plus 1 per element for lists and maps)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    ((tag, v),) = value.items()
    match tag:
        case "S":
            return len(str(v).encode())
        case "N":
            return _number_size(str(v))
        case "B":
            return len(base64.b64decode(v)) if isinstance(v, str) else len(v)
        case "BOOL" | "NULL":
            return 1
        case "SS":
            return sum(len(s.encode()) for s in v)
        case "NS":
            return sum(_number_size(n) for n in v)
        case "BS":
            return sum(len(base64.b64decode(b)) if isinstance(b, str) else len(b) for b in v)
        case "M":
            return 3 + sum(len(k.encode()) + _value_size(x) + 1 for k, x in v.items())
        case "L":
            return 3 + sum(_value_size(x) + 1 for x in v)
    raise ValueError(f"unknown DynamoDB type {tag!r}")


def _number_size(text: str) -> int:
    digits = decimal.Decimal(text).normalize().as_tuple().digits
    significant = len(digits) if any(digits) else 1
    return (significant + 1) // 2 + 1


def dynamodb_event_name(
    new_image: Mapping[str, Any] | None, old_image: Mapping[str, Any] | None
) -> EventName:
    """INSERT (only a new image), MODIFY (both) or REMOVE (only an old image)."""
    if new_image is not None:
        return "MODIFY" if old_image is not None else "INSERT"
    if old_image is not None:
        return "REMOVE"
    raise ValueError("give new_image (INSERT), old_image (REMOVE) or both (MODIFY)")


def dynamodb_stream_record(
    event_name: str,
    keys: Mapping[str, Any],
    *,
    new_image: Mapping[str, Any] | None = None,
    old_image: Mapping[str, Any] | None = None,
    view_type: str = "NEW_AND_OLD_IMAGES",
    sequence_number: str | None = None,
    created_at: float | None = None,
    event_id: str | None = None,
    region: str = REGION,
    event_version: str = "1.1",
    ttl: bool = False,
) -> dict[str, Any]:
    """What DynamoDB Streams' GetRecords returns for one change, images already in DynamoDB
    JSON: only the images the event and ``view_type`` carry, ``SizeBytes`` computed from them.
    ``ttl`` marks a REMOVE made by TTL (``userIdentity``)."""
    if event_name not in ("INSERT", "MODIFY", "REMOVE"):
        raise ValueError(f"eventName is INSERT, MODIFY or REMOVE (got {event_name!r})")
    if view_type not in VIEW_TYPES:
        raise ValueError(f"StreamViewType is one of {', '.join(VIEW_TYPES)} (got {view_type!r})")
    if event_name == "INSERT" and old_image is not None:
        raise ValueError("an INSERT has no old image")
    if event_name == "REMOVE" and new_image is not None:
        raise ValueError("a REMOVE has no new image")
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": datetime.fromtimestamp(
            int(time.time() if created_at is None else created_at), UTC
        ),
        "Keys": dict(keys),
    }
    if new_image is not None and view_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        ddb["NewImage"] = dict(new_image)
    if old_image is not None and view_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
        ddb["OldImage"] = dict(old_image)
    size = sum(dynamodb_item_size(ddb[k]) for k in ("Keys", "NewImage", "OldImage") if k in ddb)
    ddb["SequenceNumber"] = sequence_number or next_dynamodb_sequence_number()
    ddb["SizeBytes"] = max(1, size)
    ddb["StreamViewType"] = view_type
    raw: dict[str, Any] = {
        "eventID": event_id or uuid.uuid4().hex,
        "eventName": event_name,
        "eventVersion": event_version,
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": ddb,
    }
    if ttl:
        raw["userIdentity"] = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    return raw


def dynamodb_record(
    event_name: str | None = None,
    *,
    keys: Mapping[str, Any],
    new_image: Mapping[str, Any] | None = None,
    old_image: Mapping[str, Any] | None = None,
    view_type: str = "NEW_AND_OLD_IMAGES",
    stream_arn: str = TABLE_STREAM_ARN,
    sequence_number: str | None = None,
    created_at: float | None = None,
    event_id: str | None = None,
    event_version: str = "1.1",
    ttl: bool = False,
    typed: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """One DynamoDB Streams record as Lambda delivers it (docs/semantics.md §5.1).

    ``keys`` and the images are plain Python values (``typed=True``: already DynamoDB JSON);
    ``event_name`` defaults from the images given (INSERT / MODIFY / REMOVE); the images kept
    follow ``view_type``; ``ttl`` makes a REMOVE by TTL (``userIdentity``). ``eventID`` is 32 hex
    digits, ``ApproximateCreationDateTime`` epoch seconds (default: now), ``SizeBytes`` counted
    from the images.
    """

    def convert(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if item is None:
            return None
        return events.dynamodb_item(item) if typed else dynamodb_json(item)

    name = event_name or dynamodb_event_name(new_image, old_image)
    raw = dynamodb_stream_record(
        name,
        convert(keys) or {},
        new_image=convert(new_image),
        old_image=convert(old_image),
        view_type=view_type,
        sequence_number=sequence_number,
        created_at=created_at,
        event_id=event_id,
        region=_region(stream_arn),
        event_version=event_version,
        ttl=ttl,
    )
    record = events.dynamodb_record(raw, stream_arn=stream_arn, region=_region(stream_arn))
    return deep_merge(record, overrides)


def dynamodb_event(*records: Mapping[str, Any]) -> dict[str, Any]:
    """``{"Records": [...]}`` of DynamoDB records made by :func:`dynamodb_record`."""
    for r in records:
        if not _is_record(r, "aws:dynamodb"):
            raise TypeError("dynamodb_event takes records made by dynamodb_record(...)")
    return {"Records": [dict(r) for r in records]}


# -- tumbling windows ------------------------------------------------------------------------------


def window_event(
    event: Mapping[str, Any],
    *,
    start: float,
    size_s: int = 60,
    state: Mapping[str, Any] | None = None,
    final: bool = False,
    terminated_early: bool = False,
    shard_id: str | None = None,
) -> dict[str, Any]:
    """A Kinesis / DynamoDB event as a tumbling-window invocation sees it (docs/semantics.md
    §6.9): the window (``start`` epoch seconds, ``size_s`` long), the state from the previous
    invocation, the shard, and the final / terminated-early flags. A final invocation has no
    records."""
    records = [] if final else list(event.get("Records", []))
    first = records[0] if records else {}
    arn = first.get("eventSourceARN", STREAM_ARN)
    if shard_id is None:
        shard_id = str(first.get("eventID", SHARD_ID)).split(":")[0]
        if not shard_id.startswith("shardId-"):
            shard_id = SHARD_ID
    return {
        "Records": records,
        "window": {"start": _iso(start), "end": _iso(start + size_s)},
        "state": dict(state or {}),
        "shardId": shard_id,
        "eventSourceARN": arn,
        "isFinalInvokeForWindow": final,
        "isWindowTerminatedEarly": terminated_early,
    }


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the context -----------------------------------------------------------------------------------


def lambda_context(
    function_name: str = "test-function",
    *,
    timeout_s: float = 3.0,
    memory_mb: int = 128,
    region: str = REGION,
    account: str = ACCOUNT,
    request_id: str | None = None,
    clock: Clock | None = None,
) -> LambdaContext:
    """The ``context`` object esm gives ``python:`` handlers, as Lambda's Python runtime has it:
    ``aws_request_id``, ``function_name``, ``function_version``, ``invoked_function_arn``,
    ``memory_limit_in_mb``, ``log_group_name``, ``log_stream_name``, ``identity``,
    ``client_context`` and ``get_remaining_time_in_millis()`` (counting down from ``timeout_s``
    on ``clock``). What Powertools' Logger, Tracer and batch utilities read is there."""
    clock = clock or RealClock()
    now = clock.now()
    day = datetime.fromtimestamp(now, UTC).strftime("%Y/%m/%d")
    info = ContextInfo(
        function_name=function_name,
        function_arn=f"arn:aws:lambda:{region}:{account}:function:{function_name}",
        memory_mb=memory_mb,
        log_stream_name=f"{day}/[{LATEST}]{uuid.uuid4().hex}",
    )
    return LambdaContext(
        info,
        aws_request_id=request_id or str(uuid.uuid4()),
        deadline=now + timeout_s,
        clock=clock,
    )
