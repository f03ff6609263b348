"""Amazon SNS: a destination (the record is the ``Message``) and a dead-letter topic (the event
as-is, with ``RequestID`` / ``ErrorCode`` / ``ErrorMessage`` attributes, docs/semantics.md §8.5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from esm.arns import Arn
from esm.aws import AwsClients
from esm.clock import Clock
from esm.destinations.base import dead_letter_attributes, deliver, encode, translate_errors


class SnsDestination:
    """A standard topic, by ARN."""

    def __init__(self, arn: Arn, *, aws: AwsClients, clock: Clock) -> None:
        self.target = str(arn)
        self._region = arn.region
        self._aws = aws
        self._clock = clock

    async def send(self, record: Mapping[str, Any], *, s3_key: str | None = None) -> None:
        message = encode(self.target, record).decode()
        await deliver(self.target, self._clock, lambda: self._publish(message, {}))

    async def send_dead_letter(
        self, payload: bytes, *, request_id: str, error_code: int, error_message: str
    ) -> None:
        message = payload.decode("utf-8", errors="replace")
        attrs = dead_letter_attributes(request_id, error_code, error_message)
        await deliver(
            self.target, self._clock, lambda: self._publish(message, attrs), what="dead letter"
        )

    async def _publish(self, message: str, attributes: dict[str, dict[str, str]]) -> None:
        with translate_errors(self.target):
            client = await self._aws.client("sns", self._region)
            kwargs: dict[str, Any] = {"TopicArn": self.target, "Message": message}
            if attributes:
                kwargs["MessageAttributes"] = attributes
            await client.publish(**kwargs)

    async def aclose(self) -> None:
        """The aiobotocore client belongs to AwsClients."""
