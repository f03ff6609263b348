"""esm.testing's event factories: equal to the golden AWS events, derived fields consistent.

Each golden event in tests/events/ is rebuilt with the factory, from the values a user would pass
(body, ids, times, keys and images as plain Python values): the result must be the golden event,
key order included. What the factory derives (MD5s, FIFO attributes, eventID, SizeBytes …) is
checked against the golden values where the documentation's example is self-consistent, and
against the services' own rules everywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from esm.testing import (
    deep_merge,
    dynamodb_event,
    dynamodb_json,
    dynamodb_record,
    dynamodb_value,
    kinesis_event,
    kinesis_record,
    lambda_context,
    sqs_event,
    sqs_record,
    window_event,
)
from esm.testing.factories import dynamodb_item_size

EVENTS = Path(__file__).parent.parent / "events"


def golden(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def key_order(value: Any) -> Any:
    if isinstance(value, dict):
        return [(k, key_order(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [key_order(v) for v in value]
    return None


def ms(text: str) -> float:
    return int(text) / 1000


def test_every_golden_event_is_covered() -> None:
    covered = {
        "sqs_standard.json",
        "sqs_fifo.json",
        "sqs_message_attributes.json",
        "kinesis.json",
        *DDB_GOLDEN,
    }
    assert {p.name for p in EVENTS.glob("*.json")} == covered


# -- SQS --------------------------------------------------------------------------------------------


def sqs_from_golden(rec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    a = rec["attributes"]
    return sqs_record(
        rec["body"],
        queue_arn=rec["eventSourceARN"],
        message_id=rec["messageId"],
        receipt_handle=rec["receiptHandle"],
        receive_count=int(a["ApproximateReceiveCount"]),
        sent_at=ms(a["SentTimestamp"]),
        first_received_at=ms(a["ApproximateFirstReceiveTimestamp"]),
        sender_id=a["SenderId"],
        **extra,
    )


def test_sqs_standard_is_the_golden_event() -> None:
    event = golden("sqs_standard.json")
    (rec,) = event["Records"]
    out = sqs_event(sqs_from_golden(rec))
    assert out == event and key_order(out) == key_order(event)
    assert rec["md5OfBody"] == hashlib.md5(rec["body"].encode()).hexdigest()  # derived, equal


def test_sqs_fifo_is_the_golden_event() -> None:
    event = golden("sqs_fifo.json")
    (rec,) = event["Records"]
    a = rec["attributes"]
    out = sqs_from_golden(
        rec,
        group_id=a["MessageGroupId"],
        deduplication_id=a["MessageDeduplicationId"],
        sequence_number=a["SequenceNumber"],
    )
    assert out == rec and key_order(out) == key_order(rec)


def test_sqs_message_attributes_golden_event() -> None:
    """The guide's example carries made-up MD5s: with them given, the record is the example;
    computed, they are SQS's (checked against moto's implementation of SQS)."""
    from moto.sqs.models import Message as MotoMessage

    event = golden("sqs_message_attributes.json")
    (rec,) = event["Records"]
    attributes = {
        "Attribute2": {"DataType": "Number", "StringValue": "123"},
        "Attribute1": "AttributeValue1",
        "Attribute3": b"1100",
    }
    out = sqs_from_golden(
        rec,
        message_attributes=attributes,
        md5OfBody=rec["md5OfBody"],
        md5OfMessageAttributes=rec["md5OfMessageAttributes"],
    )
    assert out == rec and key_order(out) == key_order(rec)

    derived = sqs_from_golden(rec, message_attributes=attributes)
    moto = MotoMessage("id", rec["body"])
    moto.message_attributes = {
        "Attribute2": {"DataType": "Number", "StringValue": "123"},
        "Attribute1": {"DataType": "String", "StringValue": "AttributeValue1"},
        "Attribute3": {"DataType": "Binary", "BinaryValue": b"1100"},
    }
    assert derived["md5OfBody"] == moto.body_md5
    assert derived["md5OfMessageAttributes"] == moto.attribute_md5


def test_sqs_defaults_are_consistent() -> None:
    first, second = sqs_record({"order": 1}), sqs_record("plain", receive_count=3)
    assert first["body"] == '{"order": 1}'
    assert first["md5OfBody"] == hashlib.md5(first["body"].encode()).hexdigest()
    assert first["messageId"] != second["messageId"]
    assert first["receiptHandle"] != second["receiptHandle"]
    assert second["attributes"]["ApproximateReceiveCount"] == "3"
    assert first["eventSourceARN"] == "arn:aws:sqs:us-east-1:123456789012:my-queue"
    assert first["awsRegion"] == "us-east-1"
    assert first["md5OfMessageAttributes"] is None and first["messageAttributes"] == {}
    assert "SequenceNumber" not in first["attributes"]


def test_sqs_fifo_attributes_follow_the_queue_arn() -> None:
    arn = "arn:aws:sqs:eu-west-1:123456789012:orders.fifo"
    a, b = (sqs_record(body, queue_arn=arn, group_id="g") for body in ("x", "y"))
    assert a["awsRegion"] == "eu-west-1"
    assert a["attributes"]["MessageGroupId"] == "g"
    assert a["attributes"]["MessageDeduplicationId"] == hashlib.sha256(b"x").hexdigest()
    assert int(b["attributes"]["SequenceNumber"]) > int(a["attributes"]["SequenceNumber"])
    assert list(a["attributes"]) == [
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SequenceNumber",
        "MessageGroupId",
        "SenderId",
        "MessageDeduplicationId",
        "ApproximateFirstReceiveTimestamp",
    ]


def test_sqs_overrides_are_deep_merged_last() -> None:
    rec = sqs_record("x", message_attributes={"n": 1}, trace_header="Root=1-abc")
    assert rec["messageAttributes"]["n"] == {
        "stringValue": "1",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "Number",
    }
    assert rec["attributes"]["AWSTraceHeader"] == "Root=1-abc"
    over = sqs_record("x", awsRegion="xx")
    assert over["awsRegion"] == "xx"
    deep = sqs_record("x", attributes={"ApproximateReceiveCount": "9"})
    assert deep["attributes"]["ApproximateReceiveCount"] == "9"
    assert deep["attributes"]["SenderId"]  # the rest of the object is kept
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}, "d": 4}) == {
        "a": {"b": 3, "c": 2},
        "d": 4,
    }


def test_sqs_event_takes_bodies_and_records() -> None:
    rec = sqs_record("made")
    event = sqs_event("a", {"b": 1}, rec, queue_arn="arn:aws:sqs:us-east-1:1:q")
    assert [r["body"] for r in event["Records"]] == ["a", '{"b": 1}', "made"]
    assert event["Records"][0]["eventSourceARN"] == "arn:aws:sqs:us-east-1:1:q"
    assert event["Records"][2] == rec


# -- Kinesis ----------------------------------------------------------------------------------------


def test_kinesis_is_the_golden_event() -> None:
    event = golden("kinesis.json")
    (rec,) = event["Records"]
    k = rec["kinesis"]
    out = kinesis_event(
        kinesis_record(
            base64.b64decode(k["data"]),
            partition_key=k["partitionKey"],
            sequence_number=k["sequenceNumber"],
            shard_id="shardId-000000000006",
            stream_arn=rec["eventSourceARN"],
            arrival=k["approximateArrivalTimestamp"],
            invoke_identity_arn=rec["invokeIdentityArn"],
        )
    )
    assert out == event and key_order(out) == key_order(event)
    # eventID is derived from the shard and the sequence number
    assert rec["eventID"] == f"shardId-000000000006:{k['sequenceNumber']}"


def test_kinesis_derived_fields() -> None:
    a = kinesis_record({"n": 1}, shard_id="shardId-000000000003")
    b = kinesis_record("text")
    assert base64.b64decode(a["kinesis"]["data"]) == b'{"n": 1}'
    assert base64.b64decode(b["kinesis"]["data"]) == b"text"
    seq_a, seq_b = a["kinesis"]["sequenceNumber"], b["kinesis"]["sequenceNumber"]
    assert len(seq_a) == 56 and int(seq_b) > int(seq_a)
    assert a["eventID"] == f"shardId-000000000003:{seq_a}"
    assert isinstance(a["kinesis"]["approximateArrivalTimestamp"], float)
    event = kinesis_event(b"\x00\xff", "x", partition_key="k")
    assert [r["kinesis"]["partitionKey"] for r in event["Records"]] == ["k", "k"]


# -- DynamoDB Streams -------------------------------------------------------------------------------

DDB_GOLDEN = [
    "dynamodb_insert.json",
    "dynamodb_modify.json",
    "dynamodb_remove.json",
    "dynamodb_ttl_remove.json",
]


def plain(item: dict[str, Any]) -> dict[str, Any]:
    """The golden images as a user writes them: plain Python values."""
    out: dict[str, Any] = {}
    for name, value in item.items():
        ((tag, v),) = value.items()
        out[name] = int(v) if tag == "N" else v
    return out


@pytest.mark.parametrize("name", DDB_GOLDEN)
def test_dynamodb_is_the_golden_event(name: str) -> None:
    event = golden(name)
    (rec,) = event["Records"]
    d = rec["dynamodb"]
    out = dynamodb_record(
        rec["eventName"],
        keys=plain(d["Keys"]),
        new_image=plain(d["NewImage"]) if "NewImage" in d else None,
        old_image=plain(d["OldImage"]) if "OldImage" in d else None,
        view_type=d["StreamViewType"],
        stream_arn=rec["eventSourceARN"],
        sequence_number=d["SequenceNumber"],
        created_at=d["ApproximateCreationDateTime"],
        event_id=rec["eventID"],
        event_version=rec["eventVersion"],
        ttl="userIdentity" in rec,
        **(
            {"dynamodb": {"SizeBytes": d["SizeBytes"]}}
            if name == "dynamodb_ttl_remove.json"
            else {}
        ),
    )
    assert dynamodb_event(out) == event
    assert key_order(out) == key_order(rec)


@pytest.mark.parametrize("name", DDB_GOLDEN[:3])
def test_dynamodb_size_bytes_is_derived_from_the_images(name: str) -> None:
    """The guide's INSERT / MODIFY / REMOVE sizes are DynamoDB's item sizes of their images."""
    (rec,) = golden(name)["Records"]
    d = rec["dynamodb"]
    images = [d[k] for k in ("Keys", "NewImage", "OldImage") if k in d]
    assert sum(dynamodb_item_size(i) for i in images) == d["SizeBytes"]


def test_dynamodb_event_name_and_view_types() -> None:
    keys, new, old = {"Id": 1}, {"Id": 1, "v": "new"}, {"Id": 1, "v": "old"}
    assert dynamodb_record(keys=keys, new_image=new)["eventName"] == "INSERT"
    assert dynamodb_record(keys=keys, new_image=new, old_image=old)["eventName"] == "MODIFY"
    assert dynamodb_record(keys=keys, old_image=old)["eventName"] == "REMOVE"
    images = {
        "KEYS_ONLY": [],
        "NEW_IMAGE": ["NewImage"],
        "OLD_IMAGE": ["OldImage"],
        "NEW_AND_OLD_IMAGES": ["NewImage", "OldImage"],
    }
    for view, expected in images.items():
        d = dynamodb_record(keys=keys, new_image=new, old_image=old, view_type=view)["dynamodb"]
        assert [k for k in ("NewImage", "OldImage") if k in d] == expected
        assert d["StreamViewType"] == view
    with pytest.raises(ValueError, match="INSERT has no old image"):
        dynamodb_record("INSERT", keys=keys, old_image=old)
    with pytest.raises(ValueError, match="StreamViewType"):
        dynamodb_record(keys=keys, new_image=new, view_type="ALL")


def test_dynamodb_record_defaults() -> None:
    a = dynamodb_record(keys={"pk": "a"}, new_image={"pk": "a"})
    b = dynamodb_record(keys={"pk": "b"}, new_image={"pk": "b"})
    assert len(a["eventID"]) == 32 and a["eventID"] != b["eventID"]
    seq_a, seq_b = a["dynamodb"]["SequenceNumber"], b["dynamodb"]["SequenceNumber"]
    assert len(seq_a) == 21 and int(seq_b) > int(seq_a)
    assert isinstance(a["dynamodb"]["ApproximateCreationDateTime"], float)
    assert a["dynamodb"]["ApproximateCreationDateTime"].is_integer()
    assert a["eventSource"] == "aws:dynamodb" and "userIdentity" not in a
    typed = dynamodb_record(keys={"pk": {"S": "a"}}, new_image={"pk": {"S": "a"}}, typed=True)
    assert typed["dynamodb"]["Keys"] == a["dynamodb"]["Keys"]


def test_plain_values_become_dynamodb_json() -> None:
    from decimal import Decimal

    item = {
        "s": "x",
        "n": 3,
        "f": 1.5,
        "d": Decimal("2.50"),
        "t": True,
        "z": None,
        "b": b"\x00\x01",
        "m": {"inner": [1, "two"]},
        "ss": {"b", "a"},
        "ns": {3, 1},
        "bs": {b"y"},
    }
    assert dynamodb_json(item) == {
        "s": {"S": "x"},
        "n": {"N": "3"},
        "f": {"N": "1.5"},
        "d": {"N": "2.50"},
        "t": {"BOOL": True},
        "z": {"NULL": True},
        "b": {"B": "AAE="},
        "m": {"M": {"inner": {"L": [{"N": "1"}, {"S": "two"}]}}},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "3"]},
        "bs": {"BS": ["eQ=="]},
    }
    for bad in (set(), {1, "a"}, float("nan"), object()):
        with pytest.raises((TypeError, ValueError)):
            dynamodb_value(bad)


# -- windows and the context ------------------------------------------------------------------------


def test_window_event_adds_lambdas_window_fields() -> None:
    event = kinesis_event("a", shard_id="shardId-000000000002")
    w = window_event(event, start=1_704_067_200, size_s=300, state={"n": 1})
    assert w["window"] == {"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T00:05:00Z"}
    assert w["state"] == {"n": 1} and w["shardId"] == "shardId-000000000002"
    assert w["isFinalInvokeForWindow"] is False and w["isWindowTerminatedEarly"] is False
    final = window_event(event, start=1_704_067_200, final=True)
    assert final["Records"] == [] and final["isFinalInvokeForWindow"] is True


def test_lambda_context_has_what_handlers_and_powertools_read() -> None:
    ctx = lambda_context("orders", timeout_s=30, memory_mb=256)
    assert ctx.function_name == "orders"
    assert ctx.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:orders"
    assert ctx.memory_limit_in_mb == 256 and ctx.function_version == "$LATEST"
    assert ctx.log_group_name == "/aws/lambda/orders"
    assert len(ctx.aws_request_id) == 36
    assert 29_000 < ctx.get_remaining_time_in_millis() <= 30_000

    from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model

    model = build_lambda_context_model(ctx)
    assert model.function_request_id == ctx.aws_request_id


def test_events_are_json() -> None:
    event = dynamodb_event(dynamodb_record(keys={"k": b"\x00"}, new_image={"k": b"\x00"}))
    assert orjson.loads(orjson.dumps(event)) == event
