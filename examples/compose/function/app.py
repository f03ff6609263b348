"""The compose stack's example function, ``orders``: a Lambda container image (``Dockerfile``
next to this file) that esm invokes through the Runtime Interface Emulator (``rie://orders:8080``).

It takes two kinds of event:

- **an SQS batch** (an event source mapping): each order is saved; an order that cannot be saved
  (a poison one) is reported in ``batchItemFailures``, so esm deletes the others and the queue's
  redrive policy moves the poison message to the dead-letter queue after ``maxReceiveCount``;
- **one order** (``Invoke``, ``RequestResponse`` or ``Event``): saved, answered with
  ``{"processed": id}``; a poison order raises, so an asynchronous invoke ends at its
  ``OnFailure`` destination.

Saved orders are items of the DynamoDB table ``ORDERS_TABLE`` (default ``orders``) at
``AWS_ENDPOINT_URL`` (the AWS emulator), with ``source`` = the queue's name or ``invoke``: that
is what you look at from outside (``aws dynamodb scan --table-name orders``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

TABLE = os.environ.get("ORDERS_TABLE", "orders")

# Init code: runs once per container (a cold start), as on Lambda.
_dynamodb = boto3.client("dynamodb", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def handler(event: Any, context: Any) -> dict[str, Any]:
    if isinstance(event, dict) and "Records" in event:
        return _batch(event["Records"], context)
    order = _order(event)
    _save(order, "invoke", context.aws_request_id)
    return {"processed": str(order["id"])}


def _batch(records: list[dict[str, Any]], context: Any) -> dict[str, Any]:
    failures = []
    for record in records:
        queue = record["eventSourceARN"].rsplit(":", 1)[-1]
        try:
            _save(_order(json.loads(record["body"])), queue, context.aws_request_id)
        except Exception as exc:
            receives = record["attributes"]["ApproximateReceiveCount"]
            print(f"{queue}: message {record['messageId']} failed (receive {receives}): {exc}")
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def _order(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or "id" not in doc:
        raise ValueError(f"not an order: {doc!r}")
    if doc.get("poison"):
        raise ValueError(f"order {doc['id']} is poison")
    return doc


def _save(order: dict[str, Any], source: str, request_id: str) -> None:
    _dynamodb.put_item(
        TableName=TABLE,
        Item={
            "id": {"S": str(order["id"])},
            "item": {"S": str(order.get("item", ""))},
            "source": {"S": source},
            "requestId": {"S": request_id},
        },
    )
    print(f"saved order {order['id']} from {source}")
