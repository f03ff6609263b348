"""AuditFunction: prints each change of the orders table from its DynamoDB stream."""

from __future__ import annotations

from typing import Any


def handle(event: dict[str, Any], context: Any) -> None:
    for record in event["Records"]:
        # {"id": {"S": "42"}} → {"id": "42"}
        keys = {k: next(iter(v.values())) for k, v in record["dynamodb"]["Keys"].items()}
        print(f"audit {record['eventName']} {keys}")
