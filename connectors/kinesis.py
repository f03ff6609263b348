"""Amazon Kinesis Data Streams: ListShards and GetShardIterator through aiobotocore, GetRecords
on the lean path of :mod:`esm.awsjson`.

Shared-throughput polling only. A stream *consumer* ARN
(``arn:aws:kinesis:…:stream/NAME/consumer/CONSUMER:123``) is accepted as a source, but its stream
is read by polling like any other: enhanced fan-out (SubscribeToShard over HTTP/2) is not
implemented, so the consumer's dedicated throughput is not used. Records carry the stream's ARN
as ``eventSourceARN``.

Calls name the stream by both ``StreamName`` and ``StreamARN`` (Kinesis accepts either or both;
kinesalite knows only the name, and checks nothing else). A ListShards page after the first
carries only ``NextToken``, as Kinesis requires.

Errors come out as :class:`~esm.errors.SourceError` with the AWS error code:
``ExpiredIteratorException`` (re-open the shard from the checkpoint),
``ResourceNotFoundException``, ``InvalidArgumentException`` (a malformed iterator on AWS and
kinesalite), ``ProvisionedThroughputExceededException`` (retriable; botocore has already retried
it). moto answers a malformed iterator with HTTP 500 and an HTML body, which botocore retries and
which surfaces with code ``"500"``, retriable: a reader that keeps failing on one iterator should
re-open the shard, whatever the code.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from esm.arns import Arn
from esm.aws import AwsClients
from esm.clock import Clock
from esm.connectors.base import Position, ReadResult, Record, Shard, translate_aws_errors
from esm.errors import SourceError
from esm.events import KinesisRecordJson, epoch_seconds

log = logging.getLogger(__name__)

MAX_GET_RECORDS = 10_000  # Kinesis GetRecords Limit ceiling


def stream_arn_of(arn: str) -> str:
    """The stream's ARN for a stream ARN or a consumer ARN (``…/consumer/NAME:TIMESTAMP``)."""
    parsed = Arn.parse(arn)
    head = "/".join(parsed.resource.split("/")[:2])  # "stream/NAME"
    return str(Arn(parsed.partition, parsed.service, parsed.region, parsed.account, head))


def shard_from(desc: dict[str, Any]) -> Shard:
    """A ListShards / DescribeStream ``Shards[i]`` entry (both services share the shape)."""
    parents = tuple(
        desc[k] for k in ("ParentShardId", "AdjacentParentShardId") if desc.get(k) is not None
    )
    seq_range = desc.get("SequenceNumberRange", {})
    return Shard(
        shard_id=desc["ShardId"],
        parent_ids=parents,
        starting_sequence_number=seq_range.get("StartingSequenceNumber"),
        ending_sequence_number=seq_range.get("EndingSequenceNumber"),
    )


class KinesisConnector:
    """One Kinesis stream (or a consumer of it, read by polling), named by its ARN."""

    def __init__(
        self, stream_arn: str, *, aws: AwsClients, clock: Clock, invoke_identity_arn: str
    ) -> None:
        self.source_arn = stream_arn
        self.stream_arn = stream_arn_of(stream_arn)
        self._arn = Arn.parse(self.stream_arn)
        self._name = self._arn.name  # for messages; computed once
        self._aws = aws
        self._clock = clock
        self._invoke_identity_arn = invoke_identity_arn
        self._json_builders: dict[str, KinesisRecordJson] = {}
        self.max_read = MAX_GET_RECORDS
        if self.stream_arn != stream_arn:
            log.info(
                "%s is a stream consumer: reading stream %s by polling (no enhanced fan-out)",
                stream_arn,
                self._name,
            )

    async def _client(self) -> Any:
        return await self._aws.client("kinesis", self._arn.region)

    def _stream(self) -> dict[str, str]:
        return {"StreamName": self._name, "StreamARN": self.stream_arn}

    async def list_shards(self) -> list[Shard]:
        """Every shard the stream still has, open and closed, in Kinesis's order."""
        client = await self._client()
        shards: list[Shard] = []
        kwargs: dict[str, Any] = self._stream()
        while True:
            with translate_aws_errors(f"ListShards {self._name}"):
                resp = await client.list_shards(**kwargs)
            shards += [shard_from(s) for s in resp.get("Shards", ())]
            token = resp.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}

    async def open(self, shard_id: str, position: Position) -> str:
        client = await self._client()
        kwargs: dict[str, Any] = {
            **self._stream(),
            "ShardId": shard_id,
            "ShardIteratorType": position.type,
        }
        if position.type in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            if position.sequence_number is None:
                raise SourceError(
                    f"{position.type} needs a sequence number",
                    code="InvalidArgument",
                    retriable=False,
                )
            kwargs["StartingSequenceNumber"] = position.sequence_number
        elif position.type == "AT_TIMESTAMP":
            if position.timestamp is None:
                raise SourceError(
                    "AT_TIMESTAMP needs a timestamp", code="InvalidArgument", retriable=False
                )
            kwargs["Timestamp"] = datetime.fromtimestamp(position.timestamp, UTC)
        with translate_aws_errors(f"GetShardIterator {self._name}/{shard_id}"):
            resp = await client.get_shard_iterator(**kwargs)
        return str(resp["ShardIterator"])

    async def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult:
        api = await self._aws.json("kinesis", self._arn.region)
        with translate_aws_errors(f"GetRecords {self._name}/{shard_id}"):
            resp = await api.call(
                "GetRecords",
                {
                    "ShardIterator": iterator,
                    "Limit": max(1, min(MAX_GET_RECORDS, limit)),
                    "StreamARN": self.stream_arn,
                },
            )
        build = self._json_builders.get(shard_id)
        if build is None:
            build = self._json_builders[shard_id] = KinesisRecordJson(
                shard_id=shard_id,
                stream_arn=self.stream_arn,
                region=self._arn.region,
                invoke_identity_arn=self._invoke_identity_arn,
            )
        records = []
        for entry in resp.get("Records", ()):
            seq = str(entry["SequenceNumber"])
            arrival = round(epoch_seconds(entry["ApproximateArrivalTimestamp"]), 3)
            records.append(
                Record(
                    item_id=seq,
                    token=seq,
                    arrival=arrival,
                    key=entry["PartitionKey"],
                    raw=build(entry, seq, arrival),
                )
            )
        millis = resp.get("MillisBehindLatest")
        return ReadResult(
            records=records,
            next_iterator=resp.get("NextShardIterator") or None,
            millis_behind=int(millis) if millis is not None else None,
        )

    async def close(self) -> None:
        return None
