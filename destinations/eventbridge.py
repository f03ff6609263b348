"""Amazon EventBridge: the record becomes the ``detail`` of one event on a bus
(docs/semantics.md §8.6).

The event: ``source`` ``lambda``; ``detail-type`` ``Lambda Function Invocation Result - Success``
for a ``Success`` record, ``… - Failure`` otherwise; ``resources`` the bus ARN, then the
function ARN of the record (``…:$LATEST``), in that order as recorded on AWS. A
``FailedEntryCount`` above 0 is a failed delivery (retried when the entry's error code is a
throttle or an internal failure).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from esm.arns import Arn
from esm.aws import AwsClients
from esm.clock import Clock
from esm.destinations.base import DeliveryError, deliver, encode, translate_errors

SOURCE = "lambda"
SUCCESS = "Lambda Function Invocation Result - Success"
FAILURE = "Lambda Function Invocation Result - Failure"
_RETRIABLE_ENTRY_CODES = frozenset({"ThrottlingException", "InternalFailure", "InternalException"})


def detail_type(record: Mapping[str, Any]) -> str:
    context = record.get("requestContext")
    condition = context.get("condition") if isinstance(context, Mapping) else None
    return SUCCESS if condition == "Success" else FAILURE


class EventBridgeDestination:
    """An event bus, by ARN (``arn:aws:events:region:account:event-bus/name``)."""

    def __init__(self, arn: Arn, *, aws: AwsClients, clock: Clock) -> None:
        self.target = str(arn)
        self._region = arn.region
        self._aws = aws
        self._clock = clock

    async def send(self, record: Mapping[str, Any], *, s3_key: str | None = None) -> None:
        context = record.get("requestContext")
        function_arn = context.get("functionArn") if isinstance(context, Mapping) else None
        entry = {
            "Source": SOURCE,
            "DetailType": detail_type(record),
            "Detail": encode(self.target, record).decode(),
            "EventBusName": self.target,
            # the bus, then the function (as recorded on AWS)
            "Resources": [r for r in (self.target, function_arn) if isinstance(r, str) and r],
        }
        await deliver(self.target, self._clock, lambda: self._put(entry))

    async def _put(self, entry: dict[str, Any]) -> None:
        with translate_errors(self.target):
            client = await self._aws.client("events", self._region)
            resp = await client.put_events(Entries=[entry])
        if resp.get("FailedEntryCount", 0):
            failed = (resp.get("Entries") or [{}])[0]
            code = str(failed.get("ErrorCode", ""))
            raise DeliveryError(
                self.target,
                f"PutEvents entry failed: {code}: {failed.get('ErrorMessage', '')}",
                retriable=code in _RETRIABLE_ENTRY_CODES,
            )

    async def aclose(self) -> None:
        """The aiobotocore client belongs to AwsClients."""
