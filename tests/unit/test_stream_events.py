"""Kinesis and DynamoDB Streams records → Lambda's record JSON (esm.events), against golden events.

The golden events in tests/events/ are the AWS Developer Guide's examples (docs/semantics.md §4.1, §5.1). The
DynamoDB ones keep the guide's values in the key order real Lambda events carry (the DynamoDB
Streams API's order, ``eventSourceARN`` after ``dynamodb``): the guide's hand-written example
orders keys differently from one record to the next.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from esm.events import dynamodb_item_key, dynamodb_record, kinesis_record

EVENTS = Path(__file__).parent.parent / "events"


def golden(name: str) -> dict[str, Any]:
    records = json.loads((EVENTS / name).read_text())["Records"]
    assert len(records) == 1
    record: dict[str, Any] = records[0]
    return record


def key_order(value: Any) -> Any:
    """Every object's keys, in order, all the way down."""
    if isinstance(value, dict):
        return [(k, key_order(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [key_order(v) for v in value]
    return None


# -- Kinesis ------------------------------------------------------------------------------------


def kinesis_input(event: dict[str, Any]) -> dict[str, Any]:
    """What botocore's GetRecords gives for the record behind a golden Kinesis event."""
    k = event["kinesis"]
    return {
        "SequenceNumber": k["sequenceNumber"],
        "ApproximateArrivalTimestamp": datetime.fromtimestamp(
            k["approximateArrivalTimestamp"], UTC
        ),
        "Data": base64.b64decode(k["data"]),
        "PartitionKey": k["partitionKey"],
        "EncryptionType": "NONE",
    }


def kinesis_from_golden(event: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    return kinesis_record(
        raw,
        shard_id=event["eventID"].split(":")[0],
        stream_arn=event["eventSourceARN"],
        region=event["awsRegion"],
        invoke_identity_arn=event["invokeIdentityArn"],
    )


def test_kinesis_record_is_the_doc_example() -> None:
    event = golden("kinesis.json")
    out = kinesis_from_golden(event, kinesis_input(event))
    assert key_order(out) == key_order(event)
    assert out == event


def test_kinesis_record_json_numbers_and_base64() -> None:
    event = golden("kinesis.json")
    raw = kinesis_input(event) | {"Data": b"\x00\xffbinary"}
    out = json.loads(orjson.dumps(kinesis_from_golden(event, raw)))
    assert out["kinesis"]["data"] == base64.b64encode(b"\x00\xffbinary").decode()
    assert isinstance(out["kinesis"]["approximateArrivalTimestamp"], float)
    assert "encryptionType" not in out["kinesis"] and "EncryptionType" not in out["kinesis"]


@pytest.mark.parametrize(
    ("arrival", "expected"),
    [
        (datetime(2018, 12, 17, 22, 10, 50, 987000, tzinfo=UTC), 1545084650.987),
        (
            datetime(2018, 12, 18, 0, 10, 50, 987000, tzinfo=timezone(timedelta(hours=2))),
            1545084650.987,
        ),
        (datetime(2018, 12, 17, 22, 10, 50, 987654, tzinfo=UTC), 1545084650.988),
        (1545084650.987, 1545084650.987),
        (1545084650, 1545084650.0),
    ],
)
def test_kinesis_arrival_is_epoch_seconds_to_the_millisecond(arrival: Any, expected: float) -> None:
    event = golden("kinesis.json")
    raw = kinesis_input(event) | {"ApproximateArrivalTimestamp": arrival}
    ts = kinesis_from_golden(event, raw)["kinesis"]["approximateArrivalTimestamp"]
    assert ts == expected and isinstance(ts, float)


def test_kinesis_data_given_as_str_is_encoded() -> None:
    event = golden("kinesis.json")
    raw = kinesis_input(event) | {"Data": "Hello, this is a test."}
    assert kinesis_from_golden(event, raw)["kinesis"]["data"] == event["kinesis"]["data"]


def test_kinesis_event_id_is_shard_and_sequence() -> None:
    event = golden("kinesis.json")
    raw = kinesis_input(event) | {"SequenceNumber": "7"}
    out = kinesis_record(
        raw, shard_id="shardId-000000000001", stream_arn="a", region="r", invoke_identity_arn="i"
    )
    assert out["eventID"] == "shardId-000000000001:7"
    assert out["kinesis"]["sequenceNumber"] == "7"


# -- DynamoDB Streams ---------------------------------------------------------------------------


def ddb_input(event: dict[str, Any]) -> dict[str, Any]:
    """What botocore's DynamoDB Streams GetRecords gives for a golden event's record: keys in the
    API's order, datetimes, ``Identity`` capitalised, no ``eventSourceARN``."""
    d = event["dynamodb"]
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": datetime.fromtimestamp(d["ApproximateCreationDateTime"], UTC)
    }
    ddb |= {k: v for k, v in d.items() if k != "ApproximateCreationDateTime"}
    raw: dict[str, Any] = {
        "eventID": event["eventID"],
        "eventName": event["eventName"],
        "eventVersion": event["eventVersion"],
        "eventSource": "aws:dynamodb",
        "awsRegion": event["awsRegion"],
        "dynamodb": ddb,
    }
    if "userIdentity" in event:
        u = event["userIdentity"]
        raw["userIdentity"] = {"PrincipalId": u["principalId"], "Type": u["type"]}
    return raw


DDB_GOLDEN = [
    "dynamodb_insert.json",
    "dynamodb_modify.json",
    "dynamodb_remove.json",
    "dynamodb_ttl_remove.json",
]


@pytest.mark.parametrize(
    "key",
    ["k", "", 'quo"te\\back', "ünïcødé 🐍", "tab\tnl\ncr\rnul\x00ctl\x1f", "</script>\u2028"],
)
@pytest.mark.parametrize(
    "arrival", [1_700_000_000, 1_700_000_000.5, 1_700_000_000.1234567, 1e9 + 0.001, 0]
)
def test_the_wire_path_builds_the_same_bytes_as_the_record_dict(key: str, arrival: Any) -> None:
    from esm.events import KinesisRecordJson, epoch_seconds

    entry = {
        "SequenceNumber": "49590338271490256608559692538361571095921575989136588898",
        "ApproximateArrivalTimestamp": arrival,
        "Data": base64.b64encode(b'{"a": 1}').decode(),
        "PartitionKey": key,
        "EncryptionType": "NONE",
    }
    where = {
        "shard_id": "shardId-000000000007",
        "stream_arn": "arn:aws:kinesis:eu-west-1:123456789012:stream/ünï",
        "region": "eu-west-1",
        "invoke_identity_arn": "arn:aws:iam::123456789012:role/lambda-role",
    }
    seq = str(entry["SequenceNumber"])
    fast = KinesisRecordJson(**where)(entry, seq, round(epoch_seconds(arrival), 3))
    assert fast == orjson.dumps(kinesis_record(entry, wire=True, **where))


@pytest.mark.parametrize("name", DDB_GOLDEN)
def test_dynamodb_record_is_the_golden_event(name: str) -> None:
    event = golden(name)
    out = dynamodb_record(
        ddb_input(event), stream_arn=event["eventSourceARN"], region=event["awsRegion"]
    )
    assert key_order(out) == key_order(event)
    assert out == event


@pytest.mark.parametrize("name", DDB_GOLDEN)
def test_dynamodb_record_key_order_does_not_depend_on_input_order(name: str) -> None:
    event = golden(name)
    raw = ddb_input(event)
    raw = dict(reversed(raw.items()))
    raw["dynamodb"] = dict(reversed(raw["dynamodb"].items()))
    out = dynamodb_record(raw, stream_arn=event["eventSourceARN"], region=event["awsRegion"])
    assert list(out) == list(event)
    assert list(out["dynamodb"]) == list(event["dynamodb"])


def test_dynamodb_creation_time_is_a_json_number() -> None:
    event = golden("dynamodb_insert.json")
    text = orjson.dumps(dynamodb_record(ddb_input(event), stream_arn="arn", region="r"))
    assert b'"ApproximateCreationDateTime":1678831218.0' in text


def test_dynamodb_event_source_arn_is_the_mappings() -> None:
    event = golden("dynamodb_insert.json")
    out = dynamodb_record(ddb_input(event), stream_arn="arn:mine", region="eu-west-1")
    assert out["eventSourceARN"] == "arn:mine"
    assert out["awsRegion"] == "us-west-2"  # the record's own region wins
    raw = ddb_input(event)
    del raw["awsRegion"]
    assert dynamodb_record(raw, stream_arn="arn:mine", region="eu-west-1")["awsRegion"] == (
        "eu-west-1"
    )


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def test_dynamodb_binary_values_become_base64() -> None:
    raw = {
        "eventID": "e",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2023, 3, 14, 22, 0, 18, tzinfo=UTC),
            "Keys": {"pk": {"B": b"\x00\x01"}},
            "NewImage": {
                "pk": {"B": b"\x00\x01"},
                "set": {"BS": [b"a", b"\xff"]},
                "map": {"M": {"inner": {"B": b"hi"}, "n": {"N": "1"}}},
                "list": {"L": [{"B": b"x"}, {"S": "s"}, {"M": {"deep": {"BS": [b"y"]}}}]},
                "flags": {"BOOL": True},
                "nothing": {"NULL": True},
                "numbers": {"NS": ["1", "2"]},
            },
            "SequenceNumber": "100000000000000000001",
            "SizeBytes": 40,
            "StreamViewType": "NEW_IMAGE",
        },
    }
    out = dynamodb_record(raw, stream_arn="arn", region="us-east-1")
    json.loads(orjson.dumps(out))  # JSON-serialisable: no bytes left
    assert out["dynamodb"]["Keys"] == {"pk": {"B": b64(b"\x00\x01")}}
    assert out["dynamodb"]["NewImage"] == {
        "pk": {"B": b64(b"\x00\x01")},
        "set": {"BS": [b64(b"a"), b64(b"\xff")]},
        "map": {"M": {"inner": {"B": b64(b"hi")}, "n": {"N": "1"}}},
        "list": {"L": [{"B": b64(b"x")}, {"S": "s"}, {"M": {"deep": {"BS": [b64(b"y")]}}}]},
        "flags": {"BOOL": True},
        "nothing": {"NULL": True},
        "numbers": {"NS": ["1", "2"]},
    }
    assert out["dynamodb"]["ApproximateCreationDateTime"] == 1678831218.0
    assert "OldImage" not in out["dynamodb"]
    # Converting Lambda's form again changes nothing.
    again = dynamodb_record(out, stream_arn="arn", region="us-east-1")
    assert again == out


@pytest.mark.parametrize(
    ("view", "event_name", "images"),
    [
        ("KEYS_ONLY", "MODIFY", []),
        ("NEW_IMAGE", "MODIFY", ["NewImage"]),
        ("OLD_IMAGE", "MODIFY", ["OldImage"]),
        ("NEW_AND_OLD_IMAGES", "MODIFY", ["NewImage", "OldImage"]),
        ("NEW_AND_OLD_IMAGES", "INSERT", ["NewImage"]),
        ("NEW_AND_OLD_IMAGES", "REMOVE", ["OldImage"]),
    ],
)
def test_dynamodb_images_appear_only_when_the_record_has_them(
    view: str, event_name: str, images: list[str]
) -> None:
    item = {"Id": {"N": "1"}, "v": {"S": "x"}}
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": 1678831218,
        "Keys": {"Id": {"N": "1"}},
        **{image: item for image in images},
        "SequenceNumber": "5",
        "SizeBytes": 9,
        "StreamViewType": view,
    }
    raw = {"eventID": "e", "eventName": event_name, "eventVersion": "1.1", "dynamodb": ddb}
    out = dynamodb_record(raw, stream_arn="arn", region="r")
    assert list(out["dynamodb"]) == [
        "ApproximateCreationDateTime",
        "Keys",
        *images,
        "SequenceNumber",
        "SizeBytes",
        "StreamViewType",
    ]
    assert out["dynamodb"]["ApproximateCreationDateTime"] == 1678831218.0
    assert "userIdentity" not in out


# -- the item key ---------------------------------------------------------------------------------


def test_item_key_ignores_attribute_order() -> None:
    a = {"pk": {"S": "user#1"}, "sk": {"N": "42"}}
    b = {"sk": {"N": "42"}, "pk": {"S": "user#1"}}
    assert dynamodb_item_key(a) == dynamodb_item_key(b)


def test_item_key_is_the_same_for_bytes_and_base64() -> None:
    raw = {"pk": {"B": b"\x00\x01"}, "sk": {"S": "x"}}
    lambda_form = {"sk": {"S": "x"}, "pk": {"B": base64.b64encode(b"\x00\x01").decode()}}
    assert dynamodb_item_key(raw) == dynamodb_item_key(lambda_form)


@pytest.mark.parametrize(
    "other",
    [
        {"pk": {"S": "user#2"}, "sk": {"N": "42"}},
        {"pk": {"S": "user#1"}, "sk": {"N": "43"}},
        {"pk": {"S": "user#1"}, "sk": {"S": "42"}},  # same text, other type
        {"pk": {"S": "user#1"}},
    ],
)
def test_item_key_differs_between_items(other: dict[str, Any]) -> None:
    assert dynamodb_item_key({"pk": {"S": "user#1"}, "sk": {"N": "42"}}) != dynamodb_item_key(other)
