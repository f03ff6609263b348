"""Connectors for real AWS (or an emulator speaking its protocol), through aiobotocore."""

from __future__ import annotations

from esm.arns import source_kind
from esm.aws import AwsClients
from esm.clock import Clock
from esm.connectors.base import QueueConnector, StreamConnector
from esm.connectors.dynamodb_streams import DynamoDBStreamsConnector
from esm.connectors.kinesis import KinesisConnector
from esm.connectors.sqs import SqsConnector


class AwsSources:
    """Builds the connector for an event source ARN."""

    def __init__(self, aws: AwsClients, clock: Clock) -> None:
        self._aws = aws
        self._clock = clock

    def queue(self, arn: str) -> QueueConnector:
        return SqsConnector(arn, aws=self._aws, clock=self._clock)

    def stream(self, arn: str, *, invoke_identity_arn: str) -> StreamConnector:
        """A Kinesis stream (or consumer) ARN or a DynamoDB stream ARN; ValueError otherwise."""
        kind = source_kind(arn)
        if kind == "kinesis":
            return KinesisConnector(
                arn, aws=self._aws, clock=self._clock, invoke_identity_arn=invoke_identity_arn
            )
        if kind == "dynamodb":
            return DynamoDBStreamsConnector(
                arn, aws=self._aws, clock=self._clock, invoke_identity_arn=invoke_identity_arn
            )
        raise ValueError(f"{arn} is not a stream: Kinesis or DynamoDB Streams ARNs only")
