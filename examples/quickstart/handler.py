"""The quickstart's function: an SQS batch handler that reports partial batch failures.

A poison order fails; only its message is reported in ``batchItemFailures``, so esm deletes the
others, and the poison one comes back after the queue's visibility timeout until the queue's
redrive policy moves it to ``orders-dlq`` (``maxReceiveCount: 2``).
"""

from __future__ import annotations

import json
from typing import Any


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in event["Records"]:
        receives = record["attributes"]["ApproximateReceiveCount"]
        try:
            order = json.loads(record["body"])
            if order.get("poison"):
                raise ValueError(f"order {order['id']} is poison")
            print(f"[{context.aws_request_id[:8]}] processed order {order['id']} ({order['item']})")
        except Exception as exc:
            print(
                f"[{context.aws_request_id[:8]}] failed {record['messageId']} "
                f"(receive {receives}): {exc}"
            )
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
