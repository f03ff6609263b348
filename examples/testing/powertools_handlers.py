"""Lambda handlers written with Powertools for AWS Lambda, tested with esm.testing.

- ``orders``: an SQS batch handler on Powertools' ``BatchProcessor``; a poison order fails and
  is reported in ``batchItemFailures``, so only it comes back to the queue.
- ``ledger``: a Kinesis handler that fails the whole batch on a bad entry (all or nothing, as
  code that writes a batch in one transaction does); ``BisectBatchOnFunctionError`` isolates the
  bad record.
- ``notify``: invoked asynchronously; fails while its mail server is down.
- ``sales_totals``: a tumbling-window aggregate of sales per store.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent, event_source
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

processor = BatchProcessor(event_type=EventType.SQS)
PROCESSED: list[dict[str, Any]] = []  # what the handlers did, for the tests to look at


class PoisonOrder(ValueError):
    pass


def record_handler(record: SQSRecord) -> None:
    order = json.loads(record.body)
    if order.get("poison"):
        raise PoisonOrder(f"order {order['id']} cannot be processed")
    PROCESSED.append(order)


def orders(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )


@event_source(data_class=KinesisStreamEvent)
def ledger(event: KinesisStreamEvent, context: LambdaContext) -> None:
    entries = [record.kinesis.data_as_json() for record in event.records]
    for entry in entries:
        if entry["amount"] < 0:
            raise ValueError(f"entry {entry['id']}: negative amount")
    PROCESSED.extend(entries)  # the whole batch, or nothing


def notify(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    raise ConnectionError(f"mail server down, cannot notify {event['to']}")


@event_source(data_class=KinesisStreamEvent)
def sales_totals(event: KinesisStreamEvent, context: LambdaContext) -> dict[str, Any]:
    """Sums sales per store over each tumbling window; the final invocation publishes them."""
    totals: dict[str, int] = dict(event.raw_event.get("state") or {})
    for record in event.records:
        sale = record.kinesis.data_as_json()
        totals[sale["store"]] = totals.get(sale["store"], 0) + sale["amount"]
    if event.raw_event.get("isFinalInvokeForWindow"):
        PROCESSED.append({"window": event.raw_event["window"], "totals": totals})
    return {"state": totals}
