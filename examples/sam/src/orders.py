"""ProcessOrderFunction: an SQS batch handler that reports partial batch failures.

A poison order fails; only its message is reported in ``batchItemFailures``, so the others are
deleted and the poison one comes back after the queue's visibility timeout, until the redrive
policy moves it to the dead-letter queue.
"""

from __future__ import annotations

import json
from typing import Any


def process(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in event["Records"]:
        try:
            order = json.loads(record["body"])
            if order.get("poison"):
                raise ValueError(f"order {order['id']} is poison")
            print(f"processed order {order['id']} ({order.get('item')})")
        except Exception as exc:
            print(f"failed {record['messageId']}: {exc}")
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
