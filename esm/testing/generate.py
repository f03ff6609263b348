"""``esm generate-event``: an event as Lambda sends it, from command-line options, printed as
JSON (in the manner of ``sam local generate-event``). The options map onto the factories."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from esm.testing import factories


def event(source: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The event for ``source`` (sqs, kinesis, dynamodb); ValueError names a bad option."""
    if source == "sqs":
        return _sqs(options)
    if source == "kinesis":
        return _kinesis(options)
    if source == "dynamodb":
        return _dynamodb(options)
    raise ValueError(f"unknown event source {source!r}: sqs, kinesis or dynamodb")


def _sqs(o: Mapping[str, Any]) -> dict[str, Any]:
    arn = o.get("queue_arn") or factories.QUEUE_ARN
    if o.get("fifo") and not arn.endswith(".fifo"):
        arn += ".fifo"
    attributes = dict(_assignment(a, "--attribute") for a in o.get("attribute") or ())
    common: dict[str, Any] = {
        "queue_arn": arn,
        "receive_count": o.get("receive_count") or 1,
        "message_attributes": attributes,
        "group_id": o.get("group"),
        "deduplication_id": o.get("deduplication_id"),
    }
    return factories.sqs_event(*(o.get("body") or ["Test message."]), **common)


def _kinesis(o: Mapping[str, Any]) -> dict[str, Any]:
    return factories.kinesis_event(
        *(o.get("data") or ["Hello, this is a test."]),
        partition_key=o.get("partition_key") or "1",
        stream_arn=o.get("stream_arn") or factories.STREAM_ARN,
        shard_id=o.get("shard_id") or factories.SHARD_ID,
    )


def _dynamodb(o: Mapping[str, Any]) -> dict[str, Any]:
    keys = _json(o.get("keys") or '{"Id": 101}', "--keys")
    new = _json(o["new_image"], "--new-image") if o.get("new_image") else None
    old = _json(o["old_image"], "--old-image") if o.get("old_image") else None
    name = o.get("event_name")
    if new is None and old is None:
        name = name or "INSERT"
        if name in ("INSERT", "MODIFY"):
            new = dict(keys)
        if name in ("MODIFY", "REMOVE"):
            old = dict(keys)
    record = factories.dynamodb_record(
        name,
        keys=keys,
        new_image=new,
        old_image=old,
        view_type=o.get("view_type") or "NEW_AND_OLD_IMAGES",
        stream_arn=o.get("stream_arn") or factories.TABLE_STREAM_ARN,
        ttl=bool(o.get("ttl")),
    )
    return factories.dynamodb_event(record)


def _json(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{option}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option}: a JSON object of attributes, e.g. '{{\"Id\": 1}}'")
    return value


def _assignment(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"{option}: NAME=VALUE (got {text!r})")
    return name, value
