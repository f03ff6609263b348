"""The partial batch response table (docs/semantics.md §2.4), row by row."""

from __future__ import annotations

import pytest

from esm.partial import AllSucceeded, BatchFailed, ItemsFailed, parse_batch_response

IDS = {"m1", "m2", "m3"}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # complete success
        (b'{"batchItemFailures": []}', AllSucceeded()),
        (b'{"batchItemFailures": null}', AllSucceeded()),
        (b"{}", AllSucceeded()),
        (b"", AllSucceeded()),
        (None, AllSucceeded()),
        (b"null", AllSucceeded()),
        (b"  \n", AllSucceeded()),
        (b'{"somethingElse": 1}', AllSucceeded()),
        # partial
        (b'{"batchItemFailures": [{"itemIdentifier": "m2"}]}', ItemsFailed(("m2",))),
        (
            b'{"batchItemFailures": [{"itemIdentifier": "m3"}, {"itemIdentifier": "m1"},'
            b' {"itemIdentifier": "m3"}]}',
            ItemsFailed(("m3", "m1")),
        ),
    ],
)
def test_valid_responses(payload: bytes | None, expected: object) -> None:
    assert parse_batch_response(payload, IDS, report_item_failures=True) == expected


@pytest.mark.parametrize(
    ("payload", "rule"),
    [
        (b"{not json", "not valid JSON"),
        (b'"ok"', "not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', "null or empty"),
        (b'{"batchItemFailures": [{"itemIdentifier": null}]}', "null or empty"),
        (b'{"batchItemFailures": [{"itemId": "m1"}]}', "no itemIdentifier"),
        (b'{"batchItemFailures": [{"itemIdentifier": "nope"}]}', "not in the batch"),
        (b'{"batchItemFailures": [{"itemIdentifier": 7}]}', "not a string"),
        (b'{"batchItemFailures": ["m1"]}', "not an object"),
        (b'{"batchItemFailures": {"itemIdentifier": "m1"}}', "not a list"),
        (
            b'{"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": ""}]}',
            "null or empty",
        ),
    ],
)
def test_malformed_responses_fail_the_whole_batch(payload: bytes, rule: str) -> None:
    result = parse_batch_response(payload, IDS, report_item_failures=True)
    assert isinstance(result, BatchFailed)
    assert rule in result.reason


@pytest.mark.parametrize(
    "payload", [b'{"batchItemFailures": [{"itemIdentifier": "m1"}]}', b"{not json", b'"ok"']
)
def test_response_ignored_without_report_batch_item_failures(payload: bytes) -> None:
    assert parse_batch_response(payload, IDS, report_item_failures=False) == AllSucceeded()
