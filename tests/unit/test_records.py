"""The records Lambda sends (docs/semantics.md §6.7, §8.7): AWS's examples, field by field and in key order."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from esm.records import (
    ResponseContext,
    async_s3_key,
    invocation_record,
    iso_ms,
    stream_failure_record,
    stream_s3_key,
)


def at(text: str) -> float:
    """Epoch seconds of an ISO-8601 UTC instant."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def same_document(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal values *and* the same key order at every level (JSON text compared)."""
    assert actual == expected
    assert json.dumps(actual) == json.dumps(expected)


# -- iso_ms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch_s", "text"),
    [
        (at("2019-11-14T18:16:05.568Z"), "2019-11-14T18:16:05.568Z"),
        (at("2019-11-14T00:38:05.580Z"), "2019-11-14T00:38:05.580Z"),
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1573755365.0, "2019-11-14T18:16:05.000Z"),
        (1573755365.0004, "2019-11-14T18:16:05.000Z"),
        (1573755365.9996, "2019-11-14T18:16:06.000Z"),  # rounds to the nearest millisecond
        (1573755365.001, "2019-11-14T18:16:05.001Z"),
    ],
)
def test_iso_ms(epoch_s: float, text: str) -> None:
    assert iso_ms(epoch_s) == text


# -- stream on-failure record (docs/semantics.md §6.7) ---------------------------------------------

KINESIS_EXAMPLE = {
    "requestContext": {
        "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
        "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 1,
    },
    "responseContext": {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    },
    "version": "1.0",
    "timestamp": "2019-11-14T00:38:06.021Z",
    "KinesisBatchInfo": {
        "shardId": "shardId-000000000001",
        "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
        "endSequenceNumber": "49601189658422359378836298522902373528957594348623495186",
        "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
        "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
        "batchSize": 500,
        "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream",
    },
}


def kinesis_record(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "request_id": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
        "function_arn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
        "condition": "RetryAttemptsExhausted",
        "approximate_invoke_count": 1,
        "response": ResponseContext(function_error="Unhandled"),
        "source": "kinesis",
        "shard_id": "shardId-000000000001",
        "start_sequence_number": "49601189658422359378836298521827638475320189012309704722",
        "end_sequence_number": "49601189658422359378836298522902373528957594348623495186",
        "first_arrival": at("2019-11-14T00:38:04.835Z"),
        "last_arrival": at("2019-11-14T00:38:05.580Z"),
        "batch_size": 500,
        "stream_arn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream",
        "now": at("2019-11-14T00:38:06.021Z"),
    }
    return stream_failure_record(**(args | overrides))


def test_kinesis_record_is_the_aws_example() -> None:
    same_document(kinesis_record(), KINESIS_EXAMPLE)


def test_dynamodb_record_uses_ddb_batch_info_and_second_precision_arrivals() -> None:
    stream_arn = (
        "arn:aws:dynamodb:us-east-2:123456789012:table/mytable/stream/2019-11-14T00:04:06.388"
    )
    record = stream_failure_record(
        request_id="b5f4ff5f-xmpl-4d77-a8a6-b4ac0d1c2cd6",
        function_arn="arn:aws:lambda:us-east-2:123456789012:function:myfunction",
        condition="RetryAttemptsExhausted",
        approximate_invoke_count=1,
        response=ResponseContext(function_error="Unhandled"),
        source="dynamodb",
        shard_id="shardId-00000001573689847184-864758bb",
        start_sequence_number="800000000003126276362",
        end_sequence_number="800000000003126276362",
        first_arrival=at("2019-11-14T00:13:19Z"),
        last_arrival=at("2019-11-14T00:13:19Z") + 0.75,  # still that second
        batch_size=1,
        stream_arn=stream_arn,
        now=at("2019-11-14T00:13:49.717Z"),
    )
    same_document(
        record,
        {
            "requestContext": {
                "requestId": "b5f4ff5f-xmpl-4d77-a8a6-b4ac0d1c2cd6",
                "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": 1,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": "2019-11-14T00:13:49.717Z",
            "DDBStreamBatchInfo": {
                "shardId": "shardId-00000001573689847184-864758bb",
                "startSequenceNumber": "800000000003126276362",
                "endSequenceNumber": "800000000003126276362",
                "approximateArrivalOfFirstRecord": "2019-11-14T00:13:19Z",
                "approximateArrivalOfLastRecord": "2019-11-14T00:13:19Z",
                "batchSize": 1,
                "streamArn": stream_arn,
            },
        },
    )


def test_stream_record_without_invocation_has_no_response_context() -> None:
    record = kinesis_record(
        response=None, condition="RecordAgeExceeded", approximate_invoke_count=0
    )
    assert "responseContext" not in record
    assert list(record) == ["requestContext", "version", "timestamp", "KinesisBatchInfo"]
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0


def test_stream_record_function_error_absent_when_none() -> None:
    record = kinesis_record(response=ResponseContext(executed_version="3"))
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "3"}


def test_stream_record_payload_only_when_given_as_a_json_string() -> None:
    assert "payload" not in kinesis_record()
    event = {"Records": [{"kinesis": {"data": "aGVsbG8="}, "eventSource": "aws:kinesis"}]}
    raw = json.dumps(event).encode()
    record = kinesis_record(payload=raw)
    assert list(record)[-1] == "payload"
    assert isinstance(record["payload"], str)
    assert json.loads(record["payload"]) == event
    # escaped inside the document, as AWS writes it to S3
    assert '"payload":"{\\"Records\\"' in json.dumps(record, separators=(",", ":"))


# -- invocation record (docs/semantics.md §8.7) ----------------------------------------------------

FAILURE_EXAMPLE = {
    "version": "1.0",
    "timestamp": "2019-11-14T18:16:05.568Z",
    "requestContext": {
        "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
        "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:my-function:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    },
    "requestPayload": {"ORDER_IDS": ["9e07af03-ce31-4ff3-xmpl-36dce652cb4f"]},
    "responseContext": {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    },
    "responsePayload": {
        "errorMessage": "RequestId: e4b46cbf-b738-xmpl-8880-a18cdf61200e Process exited before completing request"
    },
}


def test_failure_invocation_record_is_the_aws_example() -> None:
    record = invocation_record(
        request_id="e4b46cbf-b738-xmpl-8880-a18cdf61200e",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:my-function:$LATEST",
        condition="RetriesExhausted",
        approximate_invoke_count=3,
        request_payload=b'{"ORDER_IDS": ["9e07af03-ce31-4ff3-xmpl-36dce652cb4f"]}',
        response=ResponseContext(function_error="Unhandled"),
        response_payload=json.dumps(FAILURE_EXAMPLE["responsePayload"]).encode(),
        now=at("2019-11-14T18:16:05.568Z"),
    )
    same_document(record, FAILURE_EXAMPLE)


def test_success_invocation_record() -> None:
    record = invocation_record(
        request_id="r1",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST",
        condition="Success",
        approximate_invoke_count=1,
        request_payload=b'{"a": 1}',
        response=ResponseContext(),
        response_payload=b'"done"',
        now=at("2024-01-02T03:04:05.006Z"),
    )
    same_document(
        record,
        {
            "version": "1.0",
            "timestamp": "2024-01-02T03:04:05.006Z",
            "requestContext": {
                "requestId": "r1",
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST",
                "condition": "Success",
                "approximateInvokeCount": 1,
            },
            "requestPayload": {"a": 1},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
            "responsePayload": "done",
        },
    )


def test_invocation_record_never_invoked_has_no_response() -> None:
    record = invocation_record(
        request_id="r1",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST",
        condition="EventAgeExceeded",
        approximate_invoke_count=0,
        request_payload=b"{}",
        response=None,
        response_payload=None,
        now=0.0,
    )
    assert list(record) == ["version", "timestamp", "requestContext", "requestPayload"]
    assert record["requestPayload"] == {}


def test_invocation_record_response_context_without_payload() -> None:
    record = invocation_record(
        request_id="r1",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f:1",
        condition="RetriesExhausted",
        approximate_invoke_count=3,
        request_payload=b"[1, 2]",
        response=ResponseContext(status_code=200, executed_version="1", function_error="Handled"),
        response_payload=None,
        now=0.0,
    )
    assert list(record)[-1] == "responseContext"
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "1",
        "functionError": "Handled",
    }
    assert record["requestPayload"] == [1, 2]


@pytest.mark.parametrize(
    ("payload", "value"),
    [
        (b'{"k": [1, 2.5, null, true]}', {"k": [1, 2.5, None, True]}),
        (b"42", 42),
        (b"null", None),
        (b"", None),  # an empty body: as a handler that returns nothing
        (b"not json", "not json"),
        (b'{"truncated": ', '{"truncated": '),
        ("héllo wörld".encode(), "héllo wörld"),
        (b"\xff\xfeoops", "\ufffd\ufffdoops"),
    ],
)
def test_payloads_are_parsed_json_or_text(payload: bytes, value: Any) -> None:
    record = invocation_record(
        request_id="r",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST",
        condition="Success",
        approximate_invoke_count=1,
        request_payload=payload,
        response=ResponseContext(),
        response_payload=payload,
        now=0.0,
    )
    assert record["requestPayload"] == value
    assert record["responsePayload"] == value


# -- S3 keys --------------------------------------------------------------------------------------

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def test_stream_s3_key() -> None:
    now = at("2024-03-09T07:05:03.999Z")
    key = stream_s3_key("a1b2c3d4-0000-4000-8000-000000000000", "shardId-000000000002", now)
    assert re.fullmatch(
        r"aws/lambda/a1b2c3d4-0000-4000-8000-000000000000/shardId-000000000002/"
        rf"2024/03/09/2024-03-09T07\.05\.03-{UUID}",
        key,
    ), key
    assert key != stream_s3_key("a1b2c3d4-0000-4000-8000-000000000000", "shardId-000000000002", now)


def test_async_s3_key() -> None:
    key = async_s3_key("my-function", at("2019-11-14T18:16:05.568Z"))
    assert re.fullmatch(
        rf"aws/lambda/async/my-function/2019/11/14/2019-11-14T18\.16\.05-{UUID}", key
    ), key
