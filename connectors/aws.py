"""Connectors for real AWS (or an emulator speaking its protocol), through aiobotocore."""

from __future__ import annotations

from connectors.base import QueueConnector
from connectors.sqs import SqsConnector
from esm.aws import AwsClients
from esm.clock import Clock


class AwsSources:
    """Builds the connector for an event source ARN."""

    def __init__(self, aws: AwsClients, clock: Clock) -> None:
        self._aws = aws
        self._clock = clock

    def queue(self, arn: str) -> QueueConnector:
        return SqsConnector(arn, aws=self._aws, clock=self._clock)
