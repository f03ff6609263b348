"""Amazon SQS: a destination (the record is the message body) and a dead-letter queue (the
event as-is, with ``RequestID`` / ``ErrorCode`` / ``ErrorMessage`` attributes,
docs/semantics.md §8.5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from esm.arns import Arn
from esm.aws import AwsClients
from esm.clock import Clock
from esm.destinations.base import dead_letter_attributes, deliver, encode, translate_errors


class SqsDestination:
    """A standard queue, by ARN. Its URL is resolved once (GetQueueUrl with the owner's account),
    on first use; a failed lookup is tried again on the next send."""

    def __init__(self, arn: Arn, *, aws: AwsClients, clock: Clock) -> None:
        self.target = str(arn)
        self._arn = arn
        self._aws = aws
        self._clock = clock
        self._url: str | None = None

    async def send(self, record: Mapping[str, Any], *, s3_key: str | None = None) -> None:
        body = encode(self.target, record).decode()
        await deliver(self.target, self._clock, lambda: self._send(body, {}))

    async def send_dead_letter(
        self, payload: bytes, *, request_id: str, error_code: int, error_message: str
    ) -> None:
        body = payload.decode("utf-8", errors="replace")
        attrs = dead_letter_attributes(request_id, error_code, error_message)
        await deliver(self.target, self._clock, lambda: self._send(body, attrs), what="dead letter")

    async def _send(self, body: str, attributes: dict[str, dict[str, str]]) -> None:
        with translate_errors(self.target):
            client = await self._aws.client("sqs", self._arn.region)
            if self._url is None:
                resp = await client.get_queue_url(
                    QueueName=self._arn.resource, QueueOwnerAWSAccountId=self._arn.account
                )
                self._url = str(resp["QueueUrl"])
            kwargs: dict[str, Any] = {"QueueUrl": self._url, "MessageBody": body}
            if attributes:
                kwargs["MessageAttributes"] = attributes
            await client.send_message(**kwargs)

    async def aclose(self) -> None:
        """The aiobotocore client belongs to AwsClients."""
