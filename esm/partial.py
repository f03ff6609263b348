"""Partial batch responses (``ReportBatchItemFailures``): the table of docs/semantics.md §2.4. Pure.

:func:`parse_batch_response` reads what a function returned for a batch and says which records
failed:

================================================  =================
function result                                    outcome
================================================  =================
``batchItemFailures`` empty list or ``null``       complete success
empty object, empty payload, ``null`` response     complete success
response is not valid JSON                         complete failure
response is JSON but not an object (e.g. "ok")     complete failure
``batchItemFailures`` not a list                   complete failure
an item not an object                              complete failure
``itemIdentifier`` empty string, ``null``,         complete failure
missing (wrong key name) or not a string
``itemIdentifier`` not an id of this batch         complete failure
valid list of ids                                  those ids failed
================================================  =================

A function error never reaches this table: the caller treats it as a complete failure first.
When the mapping does not turn on ``ReportBatchItemFailures`` the response is ignored and the
batch succeeded.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class AllSucceeded:
    pass


@dataclass(frozen=True, slots=True)
class ItemsFailed:
    """The ids the function reported, in the order it reported them (duplicates removed)."""

    item_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BatchFailed:
    """The response is malformed: the whole batch failed. ``reason`` says which rule."""

    reason: str


BatchResult = AllSucceeded | ItemsFailed | BatchFailed

ALL_SUCCEEDED = AllSucceeded()


def parse_batch_response(
    payload: bytes | None, batch_ids: Collection[str], *, report_item_failures: bool
) -> BatchResult:
    """Decide what a successful invocation's response means for the batch."""
    if not report_item_failures:
        return ALL_SUCCEEDED
    if payload is None or not payload.strip():
        return ALL_SUCCEEDED
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return BatchFailed("the response is not valid JSON")
    if doc is None:
        return ALL_SUCCEEDED
    if not isinstance(doc, dict):
        return BatchFailed("the response is not a JSON object")
    failures = doc.get("batchItemFailures")
    if failures is None:
        return ALL_SUCCEEDED
    if not isinstance(failures, list):
        return BatchFailed("batchItemFailures is not a list")
    ids: dict[str, None] = {}
    for i, item in enumerate(failures):
        problem = _item_problem(item, batch_ids)
        if problem:
            return BatchFailed(f"batchItemFailures[{i}]{problem}")
        ids[item["itemIdentifier"]] = None
    if not ids:
        return ALL_SUCCEEDED
    return ItemsFailed(tuple(ids))


def _item_problem(item: object, batch_ids: Collection[str]) -> str:
    if not isinstance(item, dict):
        return " is not an object"
    if "itemIdentifier" not in item:
        return " has no itemIdentifier"
    ident = item["itemIdentifier"]
    if ident is None or ident == "":
        return ".itemIdentifier is null or empty"
    if not isinstance(ident, str):
        return ".itemIdentifier is not a string"
    if ident not in batch_ids:
        return f".itemIdentifier {ident!r} is not in the batch"
    return ""
