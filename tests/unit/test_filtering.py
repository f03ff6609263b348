"""Lambda event filtering (docs/semantics.md §7): operators, body formats, metadata, refusals."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest

from esm.arns import SourceKind
from esm.filtering import (
    FilterPatternError,
    RecordFilter,
    compile_filter_criteria,
    undocumented_operators,
)

MISSING = object()  # the field is left out of the event

# -- realistic records (docs/semantics.md §3.1, §4.1, §5.1) ----------------------------------


def sqs_record(body: str) -> dict[str, Any]:
    return {
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "messageAttributes": {
            "color": {
                "stringValue": "red",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
        "awsRegion": "us-east-2",
    }


def kinesis_record(payload: bytes | str, partition_key: str = "1") -> dict[str, Any]:
    raw = payload.encode() if isinstance(payload, str) else payload
    seq = "49590338271490256608559692538361571095921575989136588898"
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": seq,
            "data": base64.b64encode(raw).decode(),
            "approximateArrivalTimestamp": 1545084650.987,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000006:{seq}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
        "awsRegion": "us-east-2",
        "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
    }


def ddb_record(item_id: str = "101") -> dict[str, Any]:
    return {
        "eventID": "1",
        "eventVersion": "1.0",
        "dynamodb": {
            "ApproximateCreationDateTime": 1678831218.0,
            "Keys": {"Id": {"N": item_id}},
            "NewImage": {
                "Message": {"S": "New item!"},
                "Id": {"N": item_id},
                "Tags": {"SS": ["blue", "green"]},
            },
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "SequenceNumber": "111",
            "SizeBytes": 26,
        },
        "awsRegion": "us-west-2",
        "eventName": "INSERT",
        "eventSourceARN": (
            "arn:aws:dynamodb:us-west-2:111122223333:table/TestTable/stream/2015-05-11T21:21:33.291"
        ),
        "eventSource": "aws:dynamodb",
    }


def cases(table: list[tuple[Any, ...]]) -> list[Any]:
    """Rows ``(id, *values)`` as pytest params."""
    return [pytest.param(*row[1:], id=row[0]) for row in table]


def matches(patterns: list[Any], source: SourceKind, record: dict[str, Any]) -> bool:
    texts = [p if isinstance(p, str) else json.dumps(p) for p in patterns]
    return compile_filter_criteria(texts, source).matches(record)


def refusal(pattern: Any, source: SourceKind = "sqs") -> FilterPatternError:
    text = pattern if isinstance(pattern, str) else json.dumps(pattern)
    with pytest.raises(FilterPatternError) as info:
        compile_filter_criteria([text], source)
    return info.value


# -- every row of the operator table, on SQS body and Kinesis data ----------------------------

OPERATORS = [
    # (rule array for field "f", value of "f" in the event or MISSING, expected)
    ("null", [None], None, True),
    ("null vs string", [None], "x", False),
    ("null vs missing", [None], MISSING, False),
    ("empty", [""], "", True),
    ("empty vs text", [""], "a", False),
    ("equals", ["Alice"], "Alice", True),
    ("equals is case sensitive", ["Alice"], "alice", False),
    ("equals number", [100], 100, True),
    ("equals number vs other", [100], 101, False),
    ("equals 100 vs 100.0", [100], 100.0, False),
    ("equals number vs string", [100], "100", False),
    ("equals string vs number", ["100"], 100, False),
    ("equals true vs 1", [True], 1, False),
    ("equals true", [True], True, True),
    ("equals-ignore-case", [{"equals-ignore-case": "alice"}], "ALiCe", True),
    ("equals-ignore-case other", [{"equals-ignore-case": "alice"}], "alicia", False),
    ("equals-ignore-case number", [{"equals-ignore-case": "1"}], 1, False),
    ("or", ["Credit", "Debit"], "Debit", True),
    ("or none", ["Credit", "Debit"], "Cash", False),
    ("or mixed rules", ["Credit", {"prefix": "Gift"}], "GiftCard", True),
    ("anything-but list", [{"anything-but": ["Raining"]}], "Sunny", True),
    ("anything-but list excluded", [{"anything-but": ["Raining"]}], "Raining", False),
    ("anything-but missing", [{"anything-but": ["Raining"]}], MISSING, False),
    ("anything-but single string", [{"anything-but": "Raining"}], "Snow", True),
    ("anything-but single excluded", [{"anything-but": "Raining"}], "Raining", False),
    ("anything-but number", [{"anything-but": 5}], 6, True),
    ("anything-but number excluded", [{"anything-but": 5}], 5, False),
    ("anything-but number vs string", [{"anything-but": 5}], "5", True),
    ("anything-but numbers", [{"anything-but": [1, 2]}], 2, False),
    ("anything-but numbers other", [{"anything-but": [1, 2]}], 3, True),
    ("numeric =", [{"numeric": ["=", 100]}], 100, True),
    ("numeric = float", [{"numeric": ["=", 100]}], 100.0, True),
    ("numeric = other", [{"numeric": ["=", 100]}], 101, False),
    ("numeric string", [{"numeric": ["=", 100]}], "100", False),
    ("numeric bool", [{"numeric": ["=", 1]}], True, False),
    ("numeric range inside", [{"numeric": [">", 10, "<=", 20]}], 15, True),
    ("numeric range upper edge", [{"numeric": [">", 10, "<=", 20]}], 20, True),
    ("numeric range lower edge", [{"numeric": [">", 10, "<=", 20]}], 10, False),
    ("numeric range above", [{"numeric": [">", 10, "<=", 20]}], 20.5, False),
    ("numeric range reversed order", [{"numeric": ["<", 20, ">=", 10]}], 10, True),
    ("numeric <", [{"numeric": ["<", 0]}], -1.5, True),
    ("numeric < no", [{"numeric": ["<", 0]}], 0, False),
    ("numeric >=", [{"numeric": [">=", 3]}], 3, True),
    ("numeric missing", [{"numeric": [">=", 3]}], MISSING, False),
    ("exists", [{"exists": True}], "x", True),
    ("exists null", [{"exists": True}], None, True),
    ("exists missing", [{"exists": True}], MISSING, False),
    ("exists on an object", [{"exists": True}], {"street": "Main"}, False),
    ("exists empty array", [{"exists": True}], [], False),
    ("does not exist", [{"exists": False}], MISSING, True),
    ("does not exist present", [{"exists": False}], "x", False),
    ("does not exist object", [{"exists": False}], {"street": "Main"}, True),
    ("prefix", [{"prefix": "us-"}], "us-east-1", True),
    ("prefix no", [{"prefix": "us-"}], "eu-west-1", False),
    ("prefix number", [{"prefix": "1"}], 123, False),
    ("suffix", [{"suffix": ".png"}], "cat.png", True),
    ("suffix no", [{"suffix": ".png"}], "cat.jpg", False),
    ("array any element", ["b"], ["a", "b"], True),
    ("array no element", ["c"], ["a", "b"], False),
    ("array nested", [2], [[1], [2]], True),
    ("array anything-but", [{"anything-but": ["a"]}], ["a", "b"], True),
    ("array anything-but all excluded", [{"anything-but": ["a"]}], ["a"], False),
    ("array numeric", [{"numeric": [">", 10]}], [1, 50], True),
    ("array prefix", [{"prefix": "x"}], ["ya", "xb"], True),
]


@pytest.mark.parametrize("source", ["sqs", "kinesis"])
@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    cases(OPERATORS),
)
def test_operator_table(source: SourceKind, rule: list[Any], value: Any, expected: bool) -> None:
    event = {"other": 1} if value is MISSING else {"f": value, "other": 1}
    if source == "sqs":
        pattern, record = {"body": {"f": rule}}, sqs_record(json.dumps(event))
    else:
        pattern, record = {"data": {"f": rule}}, kinesis_record(json.dumps(event))
    assert matches([pattern], source, record) is expected


AND_OR = [
    ("and both", {"Location": ["New York"], "Day": ["Monday"]}, True),
    ("and one fails", {"Location": ["New York"], "Day": ["Tuesday"]}, False),
    ("and field missing", {"Location": ["New York"], "Month": ["May"]}, False),
    ("$or first", {"$or": [{"Location": ["New York"]}, {"Day": ["Friday"]}]}, True),
    ("$or second", {"$or": [{"Location": ["Paris"]}, {"Day": ["Monday"]}]}, True),
    ("$or neither", {"$or": [{"Location": ["Paris"]}, {"Day": ["Friday"]}]}, False),
    ("$or and field", {"Day": ["Monday"], "$or": [{"Location": ["Paris"]}]}, False),
    ("nested object", {"order": {"type": ["buy"], "qty": [{"numeric": [">", 10]}]}}, True),
    ("nested object no", {"order": {"type": ["sell"]}}, False),
    ("nested $or", {"order": {"$or": [{"type": ["sell"]}, {"qty": [1000]}]}}, True),
    ("object pattern on a leaf", {"Day": {"name": ["Monday"]}}, False),
]


@pytest.mark.parametrize(("pattern", "expected"), cases(AND_OR))
def test_and_or(pattern: dict[str, Any], expected: bool) -> None:
    body = {"Location": "New York", "Day": "Monday", "order": {"type": "buy", "qty": 1000}}
    assert matches([{"body": pattern}], "sqs", sqs_record(json.dumps(body))) is expected


ARRAYS_OF_OBJECTS = [
    ("one element matches all fields", {"sku": ["b"], "qty": [2]}, True),
    ("fields from different elements", {"sku": ["a"], "qty": [2]}, False),
    ("one field", {"sku": ["a"]}, True),
    ("no element", {"sku": ["z"]}, False),
    ("exists false against every element", {"color": [{"exists": False}]}, True),
]


@pytest.mark.parametrize(("items", "expected"), cases(ARRAYS_OF_OBJECTS))
def test_arrays_of_objects(items: dict[str, Any], expected: bool) -> None:
    body = {"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]}
    assert matches([{"body": {"items": items}}], "sqs", sqs_record(json.dumps(body))) is expected


# -- the body-format table of docs/semantics.md §7.3 ---------------------------------------------

SQS_BODIES = [
    ("plain body, plain pattern", "hello", {"body": ["hello"]}, True),
    ("plain body, plain pattern no", "hello", {"body": ["bye"]}, False),
    ("plain body, plain prefix", "hello world", {"body": [{"prefix": "hello"}]}, True),
    ("plain body, JSON pattern: dropped", "hello", {"body": {"a": [{"exists": False}]}}, False),
    ("JSON body, plain pattern: dropped", '{"a": 1}', {"body": [{"exists": True}]}, False),
    ("JSON body, plain prefix: dropped", '{"a": 1}', {"body": [{"prefix": "{"}]}, False),
    ("JSON body, JSON pattern", '{"a": 1}', {"body": {"a": [1]}}, True),
    ("JSON body, JSON pattern no", '{"a": 1}', {"body": {"a": [2]}}, False),
    ("plain body, metadata only", "hello", {"awsRegion": ["us-east-2"]}, True),
    ("JSON body, metadata only", '{"a": 1}', {"awsRegion": ["us-east-2"]}, True),
    ("JSON body, metadata only no", '{"a": 1}', {"awsRegion": ["eu-west-1"]}, False),
    # esm's decision: only an object or array counts as JSON; scalars are plain strings
    ("JSON scalar is a plain string", "123", {"body": ["123"]}, True),
    ("JSON string is a plain string", '"x"', {"body": ['"x"']}, True),
    ("JSON scalar vs JSON pattern", "true", {"body": {"a": [{"exists": False}]}}, False),
    ("leading whitespace JSON", '  \n{"a": 1}', {"body": {"a": [1]}}, True),
    ("broken JSON is a plain string", '{"a": 1', {"body": [{"prefix": "{"}]}, True),
    ("broken JSON vs JSON pattern", '{"a": 1', {"body": {"a": [1]}}, False),
    ("NaN is not JSON", '{"a": NaN}', {"body": [{"suffix": "NaN}"}]}, True),
    ("JSON array body", '[{"a": 1}, {"a": 2}]', {"body": {"a": [2]}}, True),
    ("JSON array body vs plain", "[1, 2]", {"body": ["[1, 2]"]}, False),
    ("numeric rule on a plain body", "42", {"body": [{"numeric": ["=", 42]}]}, False),
]


@pytest.mark.parametrize(("body", "pattern", "expected"), cases(SQS_BODIES))
def test_sqs_body_formats(body: str, pattern: dict[str, Any], expected: bool) -> None:
    assert matches([pattern], "sqs", sqs_record(body)) is expected


BUY = {"data": {"order": {"type": ["buy"]}}}
NO_A = {"data": {"a": [{"exists": False}]}}  # matches any JSON object without "a"

STREAM_DATA = [
    ("JSON data, JSON pattern", b'{"order": {"type": "buy"}}', BUY, True),
    ("JSON data, JSON pattern no", b'{"order": {"type": "sell"}}', BUY, False),
    ("non-JSON data, JSON pattern: dropped", b"Hello, this is a test.", NO_A, False),
    ("non-UTF-8 data: dropped", b"\xff\xfe{", NO_A, False),
    ("JSON scalar data: dropped", b"42", NO_A, False),
    ("JSON object data without a", b'{"b": 1}', NO_A, True),
    ("non-JSON data, metadata only", b"Hello", {"partitionKey": ["1"]}, True),
    ("JSON data, metadata only", b'{"a": 1}', {"eventName": ["aws:kinesis:record"]}, True),
]


@pytest.mark.parametrize(("payload", "pattern", "expected"), cases(STREAM_DATA))
def test_kinesis_data_formats(payload: bytes, pattern: dict[str, Any], expected: bool) -> None:
    assert matches([pattern], "kinesis", kinesis_record(payload)) is expected


def test_kinesis_invalid_base64_is_dropped() -> None:
    record = kinesis_record(b"{}")
    record["kinesis"]["data"] = "not base64!"
    assert not matches([NO_A], "kinesis", record)
    assert matches([{"partitionKey": ["1"]}], "kinesis", record)


DYNAMODB = [
    ("Keys N equals", {"dynamodb": {"Keys": {"Id": {"N": ["101"]}}}}, True),
    ("Keys N other", {"dynamodb": {"Keys": {"Id": {"N": ["102"]}}}}, False),
    ("number as JSON number does not match", {"dynamodb": {"Keys": {"Id": {"N": [101]}}}}, False),
    ("NewImage prefix", {"dynamodb": {"NewImage": {"Message": {"S": [{"prefix": "New"}]}}}}, True),
    ("string set element", {"dynamodb": {"NewImage": {"Tags": {"SS": ["green"]}}}}, True),
    ("OldImage absent", {"dynamodb": {"OldImage": {"Id": {"N": ["101"]}}}}, False),
    ("OldImage does not exist", {"dynamodb": {"OldImage": [{"exists": False}]}}, True),
    ("metadata only", {"eventName": ["INSERT"]}, True),
    ("metadata only no", {"eventName": ["REMOVE", "MODIFY"]}, False),
    (
        "metadata and data",
        {"eventName": ["INSERT"], "dynamodb": {"Keys": {"Id": {"N": [""]}}}},
        False,
    ),
    ("source ARN prefix", {"eventSourceARN": [{"prefix": "arn:aws:dynamodb:us-west-2:"}]}, True),
]


@pytest.mark.parametrize(("pattern", "expected"), cases(DYNAMODB))
def test_dynamodb(pattern: dict[str, Any], expected: bool) -> None:
    assert matches([pattern], "dynamodb", ddb_record()) is expected


def test_dynamodb_non_object_data_is_dropped() -> None:
    record = ddb_record()
    record["dynamodb"] = "not an object"
    assert not matches([{"dynamodb": {"Keys": [{"exists": False}]}}], "dynamodb", record)
    assert matches([{"eventName": ["INSERT"]}], "dynamodb", record)


# -- metadata (docs/semantics.md §7.3) ---------------------------------------------------------

SQS_METADATA = [
    ("eventSource", {"eventSource": ["aws:sqs"]}, True),
    ("awsRegion", {"awsRegion": ["us-east-1"]}, False),
    ("eventSourceARN suffix", {"eventSourceARN": [{"suffix": ":my-queue"}]}, True),
    ("attributes", {"attributes": {"ApproximateReceiveCount": ["1"]}}, True),
    ("attributes are strings", {"attributes": {"ApproximateReceiveCount": [1]}}, False),
    ("message attribute", {"messageAttributes": {"color": {"stringValue": ["red"]}}}, True),
    ("message attribute absent", {"messageAttributes": {"size": {"stringValue": ["L"]}}}, False),
    ("metadata and body", {"awsRegion": ["us-east-2"], "body": {"a": ["b"]}}, True),
    ("metadata and body no", {"awsRegion": ["us-east-2"], "body": {"a": ["c"]}}, False),
    ("$or metadata or body", {"$or": [{"awsRegion": ["x"]}, {"body": {"a": ["b"]}}]}, True),
]


@pytest.mark.parametrize(("pattern", "expected"), cases(SQS_METADATA))
def test_sqs_metadata(pattern: dict[str, Any], expected: bool) -> None:
    assert matches([pattern], "sqs", sqs_record('{"a": "b"}')) is expected


KINESIS_METADATA = [
    # written as AWS documents it (invocation-eventfiltering.md, "Filtering examples")
    ("partitionKey and data", {"partitionKey": ["1"], "data": {"Location": ["LA"]}}, True),
    ("partitionKey other", {"partitionKey": ["2"]}, False),
    ("nested under kinesis", {"kinesis": {"partitionKey": ["1"]}}, True),
    ("nested data", {"kinesis": {"data": {"Location": ["LA"]}}}, True),
    ("nested data no", {"kinesis": {"data": {"Location": ["NY"]}}}, False),
    ("arrival timestamp", {"approximateArrivalTimestamp": [{"numeric": [">", 0]}]}, True),
    ("record-level field", {"eventSourceARN": [{"prefix": "arn:aws:kinesis:"}]}, True),
    ("record field is not under kinesis", {"kinesis": {"eventSource": ["aws:kinesis"]}}, False),
    ("$or metadata or data", {"$or": [{"partitionKey": ["9"]}, {"data": {"n": [1]}}]}, True),
]


@pytest.mark.parametrize(("pattern", "expected"), cases(KINESIS_METADATA))
def test_kinesis_metadata(pattern: dict[str, Any], expected: bool) -> None:
    record = kinesis_record('{"Location": "LA", "n": 1}')
    assert matches([pattern], "kinesis", record) is expected


# -- several filters, duplicate keys, empty criteria ----------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [('{"kind": "a"}', True), ('{"kind": "b"}', True), ('{"kind": "c"}', False), ("plain", True)],
)
def test_filters_are_ored(body: str, expected: bool) -> None:
    patterns = [
        {"body": {"kind": ["a"]}},
        {"body": {"kind": ["b"]}},
        {"body": ["plain"]},
    ]
    assert matches(patterns, "sqs", sqs_record(body)) is expected


@pytest.mark.parametrize(("value", "expected"), [("second", True), ("first", False)])
def test_duplicate_keys_last_wins(value: str, expected: bool) -> None:
    pattern = '{"body": {"a": ["first"], "a": ["second"]}}'
    assert matches([pattern], "sqs", sqs_record(json.dumps({"a": value}))) is expected


def test_no_filters_is_falsy_and_matches_everything() -> None:
    empty = compile_filter_criteria([], "sqs")
    assert not empty
    assert empty.matches(sqs_record("anything"))
    assert isinstance(empty, RecordFilter)
    assert compile_filter_criteria(['{"awsRegion": ["x"]}'], "sqs")


# -- compile-time refusals ------------------------------------------------------------------

DYNAMO_NUMERIC = {"dynamodb": {"NewImage": {"Id": {"N": [{"numeric": [">", 1]}]}}}}
DYNAMO_NUMERIC_OR = {"$or": [{"dynamodb": {"$or": [{"Id": [{"numeric": ["=", 1]}]}]}}]}

REFUSALS = [
    ("not JSON", "sqs", "{body: [1]}", "not valid JSON"),
    ("NaN", "sqs", '{"a": [NaN]}', "not valid JSON"),
    ("array", "sqs", "[1, 2]", "must be a JSON object"),
    ("string", "sqs", '"body"', "must be a JSON object"),
    ("empty object", "sqs", {}, "empty objects"),
    ("empty nested object", "sqs", {"body": {}}, "empty objects"),
    ("empty rule array", "sqs", {"a": []}, "empty arrays"),
    ("scalar value", "sqs", {"a": "x"}, "must be an array of rules or an object"),
    ("nested rule arrays", "sqs", {"a": [["x"]]}, "nested arrays"),
    ("wildcard", "sqs", {"a": [{"wildcard": "a*"}]}, "'wildcard' is not supported"),
    ("cidr not a block", "sqs", {"a": [{"cidr": "10.0.0.300/24"}]}, "'cidr' takes a CIDR"),
    ("cidr not a string", "sqs", {"a": [{"cidr": 10}]}, "'cidr' takes a CIDR"),
    ("unknown operator", "sqs", {"a": [{"between": [1, 2]}]}, "unknown operator 'between'"),
    ("two operators", "sqs", {"a": [{"prefix": "a", "suffix": "b"}]}, "exactly one"),
    ("anything-but prefix", "sqs", {"a": [{"anything-but": {"prefix": "x"}}]}, "with 'prefix'"),
    ("anything-but suffix", "sqs", {"a": [{"anything-but": {"suffix": "x"}}]}, "with 'suffix'"),
    (
        "anything-but equals-ignore-case",
        "sqs",
        {"a": [{"anything-but": {"equals-ignore-case": "x"}}]},
        "'anything-but' with 'equals-ignore-case'",
    ),
    ("anything-but wildcard", "sqs", {"a": [{"anything-but": {"wildcard": "*"}}]}, "'wildcard'"),
    ("anything-but empty", "sqs", {"a": [{"anything-but": []}]}, "'anything-but' takes"),
    ("anything-but null", "sqs", {"a": [{"anything-but": [None]}]}, "'anything-but' takes"),
    ("anything-but bool", "sqs", {"a": [{"anything-but": True}]}, "'anything-but' takes"),
    (
        "prefix equals-ignore-case",
        "sqs",
        {"a": [{"prefix": {"equals-ignore-case": "x"}}]},
        "'prefix' with 'equals-ignore-case' is not supported",
    ),
    (
        "suffix equals-ignore-case",
        "sqs",
        {"a": [{"suffix": {"equals-ignore-case": "x"}}]},
        "'suffix' with 'equals-ignore-case' is not supported",
    ),
    ("prefix number", "sqs", {"a": [{"prefix": 1}]}, "'prefix' takes a string"),
    ("equals-ignore-case number", "sqs", {"a": [{"equals-ignore-case": 1}]}, "takes a string"),
    ("exists string", "sqs", {"a": [{"exists": "yes"}]}, "exists takes true or false"),
    ("numeric bad op", "sqs", {"a": [{"numeric": ["==", 1]}]}, "'numeric' takes"),
    ("numeric string operand", "sqs", {"a": [{"numeric": ["=", "1"]}]}, "'numeric' takes"),
    ("numeric bool operand", "sqs", {"a": [{"numeric": ["=", True]}]}, "'numeric' takes"),
    ("numeric odd length", "sqs", {"a": [{"numeric": [">", 1, "<"]}]}, "'numeric' takes"),
    ("numeric two lower bounds", "sqs", {"a": [{"numeric": [">", 1, ">=", 2]}]}, "'numeric' takes"),
    ("numeric = in a range", "sqs", {"a": [{"numeric": ["=", 1, "<", 2]}]}, "'numeric' takes"),
    ("numeric empty range", "sqs", {"a": [{"numeric": [">", 10, "<", 5]}]}, "range is empty"),
    ("numeric not a list", "sqs", {"a": [{"numeric": 5}]}, "'numeric' takes"),
    ("$or not a list", "sqs", {"$or": {"a": ["x"]}}, "$or takes"),
    ("$or empty", "sqs", {"$or": []}, "$or takes"),
    ("$or of rule arrays", "sqs", {"$or": [["x"]]}, "$or takes"),
    ("numeric under dynamodb", "dynamodb", DYNAMO_NUMERIC, "not supported for DynamoDB"),
    ("numeric under dynamodb $or", "dynamodb", DYNAMO_NUMERIC_OR, "not supported for DynamoDB"),
    ("non-JSON dynamodb pattern", "dynamodb", {"dynamodb": ["x"]}, "must be a JSON object"),
    ("non-JSON kinesis data pattern", "kinesis", {"data": ["Hello"]}, "must be a JSON object"),
    ("kinesis data exists", "kinesis", {"data": [{"exists": True}]}, "must be a JSON object"),
    ("nested kinesis data", "kinesis", {"kinesis": {"data": ["x"]}}, "must be a JSON object"),
    ("wildcard in kinesis data", "kinesis", {"data": {"a": [{"wildcard": "*"}]}}, "'wildcard'"),
]


@pytest.mark.parametrize(("source", "pattern", "rule"), cases(REFUSALS))
def test_refused_patterns(source: SourceKind, pattern: Any, rule: str) -> None:
    error = refusal(pattern, source)
    assert error.index == 0
    assert rule in error.rule
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("10.0.0.7", True),
        ("10.0.0.255", True),
        ("10.0.1.0", False),
        ("2001:db8::1", True),
        ("not an address", False),
        (10, False),
    ],
)
def test_cidr_matches_addresses_inside_the_block_as_eventbridge_does(
    ip: Any, expected: bool
) -> None:
    pattern = {"body": {"sourceIp": [{"cidr": "10.0.0.0/24"}, {"cidr": "2001:db8::/32"}]}}
    record = sqs_record(json.dumps({"sourceIp": ip}))
    assert matches([pattern], "sqs", record) is expected


def test_undocumented_operators_are_found_anywhere_in_a_pattern() -> None:
    nested = json.dumps({"body": {"$or": [{"ip": [{"cidr": "10.0.0.0/8"}]}, {"a": ["x"]}]}})
    assert undocumented_operators(nested) == {"cidr"}
    assert undocumented_operators(json.dumps({"body": {"ip": [{"prefix": "10."}]}})) == set()
    assert undocumented_operators("not json") == set()


def test_numeric_is_allowed_outside_the_dynamodb_key() -> None:
    pattern = {"eventVersion": [{"numeric": [">", 0]}]}  # compiles; "1.0" is a string
    assert not matches([pattern], "dynamodb", ddb_record())
    assert matches([{"eventVersion": ["1.0"]}, pattern], "dynamodb", ddb_record())


def test_error_names_the_filter_index() -> None:
    patterns = ['{"body": {"a": ["x"]}}', '{"body": {"a": [{"wildcard": "x*"}]}}']
    with pytest.raises(FilterPatternError) as info:
        compile_filter_criteria(patterns, "sqs")
    assert info.value.index == 1
    assert "wildcard" in info.value.rule
    assert str(info.value).startswith("FilterCriteria.Filters[1].Pattern: body.a:")


# -- the hot path: the data key is parsed at most once, and only when named -------------------


@pytest.fixture
def parse_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = orjson.loads

    def counting(data: Any) -> Any:
        calls[0] += 1
        return real(data)

    monkeypatch.setattr(orjson, "loads", counting)  # esm.filtering looks it up on each call
    return calls


@pytest.mark.parametrize(
    ("source", "record"),
    [("sqs", sqs_record('{"a": 1}')), ("kinesis", kinesis_record(b'{"a": 1}'))],
)
def test_data_not_parsed_without_a_data_pattern(
    parse_count: list[int], source: SourceKind, record: dict[str, Any]
) -> None:
    f = compile_filter_criteria(['{"awsRegion": ["x"]}', '{"eventSource": ["y"]}'], source)
    parse_count[0] = 0
    assert not f.matches(record)
    assert parse_count[0] == 0


@pytest.mark.parametrize(
    ("source", "key", "record"),
    [("sqs", "body", sqs_record('{"a": 1}')), ("kinesis", "data", kinesis_record(b'{"a": 1}'))],
)
def test_data_parsed_once_per_record(
    parse_count: list[int], source: SourceKind, key: str, record: dict[str, Any]
) -> None:
    patterns = [json.dumps({key: {"a": [n]}}) for n in (5, 6, 7, 1)]
    f = compile_filter_criteria(patterns, source)
    parse_count[0] = 0
    assert f.matches(record)
    assert parse_count[0] == 1
