"""Amazon DynamoDB Streams: DescribeStream and GetShardIterator through aiobotocore, GetRecords
on the lean path of :mod:`esm.awsjson`.

A shard has at most one parent (``ParentShardId``); DynamoDB closes shards and opens children on
its own, about every four hours. There is no ``AT_TIMESTAMP`` iterator and no
``MillisBehindLatest``.

Errors come out as :class:`~esm.errors.SourceError` with the AWS error code:
``ExpiredIteratorException`` (iterators live 15 minutes: re-open the shard from the checkpoint),
``TrimmedDataAccessException`` (the position is past the 24-hour retention: re-open at
``TRIM_HORIZON``), ``ResourceNotFoundException``, ``LimitExceededException`` (retriable). moto
answers an unknown iterator with HTTP 500, which botocore retries and which surfaces with code
``"500"``, retriable.
"""

from __future__ import annotations

from typing import Any

from esm.arns import Arn
from esm.aws import AwsClients
from esm.clock import Clock
from esm.connectors.base import Position, ReadResult, Record, Shard, translate_aws_errors
from esm.connectors.kinesis import shard_from
from esm.errors import SourceError
from esm.events import dynamodb_item_key, dynamodb_record

MAX_GET_RECORDS = 1000  # DynamoDB Streams GetRecords Limit ceiling
DESCRIBE_PAGE = 100  # DescribeStream Limit ceiling


class DynamoDBStreamsConnector:
    """One DynamoDB stream, named by its ARN (``arn:aws:dynamodb:…:table/T/stream/LABEL``).

    ``invoke_identity_arn`` is accepted for symmetry with Kinesis; DynamoDB records carry none.
    """

    def __init__(
        self, stream_arn: str, *, aws: AwsClients, clock: Clock, invoke_identity_arn: str = ""
    ) -> None:
        self.source_arn = stream_arn
        self._arn = Arn.parse(stream_arn)
        self.max_read = MAX_GET_RECORDS
        self._name = self._arn.name  # for messages; computed once
        self._aws = aws
        self._clock = clock
        self._invoke_identity_arn = invoke_identity_arn

    async def _client(self) -> Any:
        return await self._aws.client("dynamodbstreams", self._arn.region)

    async def list_shards(self) -> list[Shard]:
        """Every shard DescribeStream lists, open and closed, page by page."""
        client = await self._client()
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamArn": self.source_arn, "Limit": DESCRIBE_PAGE}
        while True:
            with translate_aws_errors(f"DescribeStream {self._name}"):
                resp = await client.describe_stream(**kwargs)
            desc = resp["StreamDescription"]
            shards += [shard_from(s) for s in desc.get("Shards", ())]
            last = desc.get("LastEvaluatedShardId")
            if not last:
                return shards
            kwargs["ExclusiveStartShardId"] = last

    async def open(self, shard_id: str, position: Position) -> str:
        client = await self._client()
        kwargs: dict[str, Any] = {
            "StreamArn": self.source_arn,
            "ShardId": shard_id,
            "ShardIteratorType": position.type,
        }
        if position.type == "AT_TIMESTAMP":
            raise SourceError(
                "DynamoDB Streams has no AT_TIMESTAMP iterator",
                code="InvalidArgument",
                retriable=False,
            )
        if position.type in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            if position.sequence_number is None:
                raise SourceError(
                    f"{position.type} needs a sequence number",
                    code="InvalidArgument",
                    retriable=False,
                )
            kwargs["SequenceNumber"] = position.sequence_number
        with translate_aws_errors(f"GetShardIterator {self._name}/{shard_id}"):
            resp = await client.get_shard_iterator(**kwargs)
        return str(resp["ShardIterator"])

    async def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult:
        api = await self._aws.json("dynamodbstreams", self._arn.region)
        with translate_aws_errors(f"GetRecords {self._name}/{shard_id}"):
            resp = await api.call(
                "GetRecords",
                {"ShardIterator": iterator, "Limit": max(1, min(MAX_GET_RECORDS, limit))},
            )
        records = []
        for raw in resp.get("Records", ()):
            data = dynamodb_record(raw, stream_arn=self.source_arn, region=self._arn.region)
            ddb = data["dynamodb"]
            seq = str(ddb["SequenceNumber"])
            records.append(
                Record(
                    data=data,
                    item_id=seq,
                    token=seq,
                    arrival=float(ddb.get("ApproximateCreationDateTime", 0.0)),
                    key=dynamodb_item_key(ddb.get("Keys", {})),
                )
            )
        return ReadResult(records=records, next_iterator=resp.get("NextShardIterator") or None)

    async def close(self) -> None:
        return None
