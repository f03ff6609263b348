"""Amazon S3 (on-failure only): the record as a JSON object at the key the caller computed with
:func:`esm.records.stream_s3_key` or :func:`esm.records.async_s3_key`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from esm.arns import Arn
from esm.aws import AwsClients
from esm.clock import Clock
from esm.destinations.base import DeliveryError, deliver, encode, translate_errors


class S3Destination:
    """A bucket, by ARN (``arn:aws:s3:::bucket``); the client's region comes from botocore's
    chain, since bucket ARNs carry none."""

    def __init__(self, arn: Arn, *, aws: AwsClients, clock: Clock) -> None:
        self.target = str(arn)
        self.bucket = arn.resource
        self._aws = aws
        self._clock = clock

    async def send(self, record: Mapping[str, Any], *, s3_key: str | None = None) -> None:
        body = encode(self.target, record)
        await deliver(self.target, self._clock, lambda: self._put(s3_key, body))

    async def _put(self, key: str | None, body: bytes) -> None:
        if not key:
            raise DeliveryError(self.target, "an S3 destination needs the object key (s3_key)")
        with translate_errors(self.target):
            client = await self._aws.client("s3", "")
            await client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"
            )

    async def aclose(self) -> None:
        """The aiobotocore client belongs to AwsClients."""
