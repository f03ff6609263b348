"""Kinesis and DynamoDB Streams connectors over HTTP: moto for reads and events, kinesalite for
resharding (moto never closes a split parent) and iterator errors."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from esm.aws import AwsClients
from esm.clock import RealClock
from esm.connectors.aws import AwsSources
from esm.connectors.base import Position, Record, Shard
from esm.connectors.dynamodb_streams import DynamoDBStreamsConnector
from esm.connectors.kinesis import KinesisConnector
from esm.errors import SourceError
from esm.events import dynamodb_item_key
from tests.kinesalite import aged_iterator
from tests.streams_support import create_table
from tests.support import REGION, eventually, unique

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/lambda-role"
TRIM = Position("TRIM_HORIZON")
LATEST = Position("LATEST")


# -- helpers --------------------------------------------------------------------------------------


async def create_stream(aws: AwsClients, shards: int) -> str:
    """A new ACTIVE stream; returns its ARN."""
    c = await aws.client("kinesis", REGION)
    name = unique("stream")
    await c.create_stream(StreamName=name, ShardCount=shards)
    return str(await wait_active(aws, name))


async def wait_active(aws: AwsClients, name: str) -> str:
    c = await aws.client("kinesis", REGION)

    async def active() -> str | None:
        d = (await c.describe_stream_summary(StreamName=name))["StreamDescriptionSummary"]
        return str(d["StreamARN"]) if d["StreamStatus"] == "ACTIVE" else None

    return str(await eventually(active, what=f"stream {name} ACTIVE"))


async def put(aws: AwsClients, arn: str, items: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """PutRecords (partition key, data) in order; returns [{ShardId, SequenceNumber}, …]."""
    c = await aws.client("kinesis", REGION)
    resp = await c.put_records(
        StreamName=arn.rsplit("/", 1)[1],
        Records=[{"PartitionKey": pk, "Data": data} for pk, data in items],
    )
    assert not resp.get("FailedRecordCount"), resp
    return list(resp["Records"])


async def drain(
    conn: Any, shard_id: str, position: Position = TRIM, limit: int = 100
) -> tuple[list[Record], str | None]:
    """Read until a read comes back empty (or the shard ends); returns records, last iterator."""
    it: str | None = await conn.open(shard_id, position)
    out: list[Record] = []
    while it is not None:
        result = await conn.read(shard_id, it, limit)
        out += result.records
        it = result.next_iterator
        if not result.records:
            break
    return out, it


def kinesis(aws: AwsClients, arn: str) -> KinesisConnector:
    return KinesisConnector(arn, aws=aws, clock=RealClock(), invoke_identity_arn=ROLE)


def seqs(records: list[Record]) -> list[int]:
    return [int(r.item_id) for r in records]


# -- Kinesis on moto ------------------------------------------------------------------------------


async def test_kinesis_lists_shards(aws: AwsClients) -> None:
    arn = await create_stream(aws, 2)
    shards = await kinesis(aws, arn).list_shards()
    assert [s.shard_id for s in shards] == ["shardId-000000000000", "shardId-000000000001"]
    for s in shards:
        assert s.parent_ids == ()
        assert s.starting_sequence_number is not None
        assert s.ending_sequence_number is None  # open


async def test_kinesis_trim_horizon_reads_every_record_as_lambdas_event(aws: AwsClients) -> None:
    arn = await create_stream(aws, 2)
    items = [(f"pk-{i}", f"payload-{i}".encode() + b"\x00\xff") for i in range(12)]
    before = time.time()
    put_result = await put(aws, arn, items)
    after = time.time()
    conn = kinesis(aws, arn)
    by_seq: dict[tuple[str, str], tuple[str, bytes]] = {
        (r["ShardId"], r["SequenceNumber"]): item for r, item in zip(put_result, items, strict=True)
    }
    seen = 0
    for shard in await conn.list_shards():
        records, _ = await drain(conn, shard.shard_id, limit=5)
        assert seqs(records) == sorted(seqs(records))  # in order within the shard
        for rec in records:
            pk, data = by_seq[(shard.shard_id, rec.item_id)]
            event = rec.data
            assert list(event) == [
                "kinesis",
                "eventSource",
                "eventVersion",
                "eventID",
                "eventName",
                "invokeIdentityArn",
                "awsRegion",
                "eventSourceARN",
            ]
            assert event["kinesis"]["kinesisSchemaVersion"] == "1.0"
            assert event["kinesis"]["partitionKey"] == pk
            assert event["kinesis"]["sequenceNumber"] == rec.item_id == rec.token
            assert base64.b64decode(event["kinesis"]["data"]) == data
            assert event["eventID"] == f"{shard.shard_id}:{rec.item_id}"
            assert event["eventSource"] == "aws:kinesis"
            assert event["eventName"] == "aws:kinesis:record"
            assert event["invokeIdentityArn"] == ROLE
            assert event["awsRegion"] == REGION
            assert event["eventSourceARN"] == arn
            arrival = event["kinesis"]["approximateArrivalTimestamp"]
            assert isinstance(arrival, float)
            assert arrival == rec.arrival
            assert before - 1 <= arrival <= after + 1
            assert rec.key == pk
            assert rec.raw and rec.size == len(rec.raw)
        seen += len(records)
    assert seen == len(items)


async def test_kinesis_read_honours_limit_and_reports_lag(aws: AwsClients) -> None:
    arn = await create_stream(aws, 1)
    await put(aws, arn, [("k", b"%d" % i) for i in range(5)])
    conn = kinesis(aws, arn)
    it = await conn.open("shardId-000000000000", TRIM)
    first = await conn.read("shardId-000000000000", it, 2)
    assert len(first.records) == 2 and first.next_iterator is not None
    assert isinstance(first.millis_behind, int)
    rest = await conn.read("shardId-000000000000", first.next_iterator, 10_000_000)
    assert [r.data["kinesis"]["data"] for r in rest.records] == [
        base64.b64encode(b"%d" % i).decode() for i in range(2, 5)
    ]


async def test_kinesis_latest_reads_only_what_comes_after(aws: AwsClients) -> None:
    arn = await create_stream(aws, 1)
    await put(aws, arn, [("k", b"old")])
    conn = kinesis(aws, arn)
    it = await conn.open("shardId-000000000000", LATEST)
    empty = await conn.read("shardId-000000000000", it, 100)
    assert empty.records == [] and empty.next_iterator is not None
    await put(aws, arn, [("k", b"new-1"), ("k", b"new-2")])
    result = await conn.read("shardId-000000000000", empty.next_iterator, 100)
    assert [base64.b64decode(r.data["kinesis"]["data"]) for r in result.records] == [
        b"new-1",
        b"new-2",
    ]


async def test_kinesis_at_timestamp(aws: AwsClients) -> None:
    arn = await create_stream(aws, 1)
    await put(aws, arn, [("k", b"before-1"), ("k", b"before-2")])
    await asyncio.sleep(0.2)
    cut = time.time()
    await asyncio.sleep(0.2)
    await put(aws, arn, [("k", b"after-1"), ("k", b"after-2")])
    conn = kinesis(aws, arn)
    records, _ = await drain(conn, "shardId-000000000000", Position("AT_TIMESTAMP", timestamp=cut))
    assert [base64.b64decode(r.data["kinesis"]["data"]) for r in records] == [
        b"after-1",
        b"after-2",
    ]
    assert all(r.arrival >= cut for r in records)


async def test_kinesis_at_and_after_sequence_number(aws: AwsClients) -> None:
    arn = await create_stream(aws, 1)
    put_result = await put(aws, arn, [("k", b"%d" % i) for i in range(5)])
    seq = [r["SequenceNumber"] for r in put_result]
    conn = kinesis(aws, arn)
    after, _ = await drain(
        conn, "shardId-000000000000", Position("AFTER_SEQUENCE_NUMBER", sequence_number=seq[1])
    )
    assert [r.item_id for r in after] == seq[2:]
    at, _ = await drain(
        conn, "shardId-000000000000", Position("AT_SEQUENCE_NUMBER", sequence_number=seq[1])
    )
    assert [r.item_id for r in at] == seq[1:]


async def test_kinesis_missing_stream_is_resource_not_found(aws: AwsClients) -> None:
    arn = f"arn:aws:kinesis:{REGION}:123456789012:stream/{unique('missing')}"
    with pytest.raises(SourceError) as err:
        await kinesis(aws, arn).list_shards()
    assert err.value.code == "ResourceNotFoundException"
    assert not err.value.retriable


async def test_kinesis_consumer_arn_reads_its_stream_by_polling(aws: AwsClients) -> None:
    arn = await create_stream(aws, 1)
    consumer = f"{arn}/consumer/my-consumer:1700000000"
    await put(aws, arn, [("k", b"x")])
    conn = AwsSources(aws, RealClock()).stream(consumer, invoke_identity_arn=ROLE)
    assert isinstance(conn, KinesisConnector)
    assert conn.source_arn == consumer
    records, _ = await drain(conn, "shardId-000000000000")
    assert [r.data["eventSourceARN"] for r in records] == [arn]


async def test_moto_malformed_iterator_is_a_retriable_500(aws: AwsClients) -> None:
    """moto differs from AWS (InvalidArgumentException): HTTP 500, retried by botocore."""
    arn = await create_stream(aws, 1)
    with pytest.raises(SourceError) as err:
        await kinesis(aws, arn).read("shardId-000000000000", "bm90LWFuLWl0ZXJhdG9y", 10)
    assert err.value.code == "500"
    assert err.value.retriable


def test_sources_choose_the_connector_by_arn() -> None:
    sources = AwsSources(AwsClients(), RealClock())
    k = sources.stream(f"arn:aws:kinesis:{REGION}:123456789012:stream/s", invoke_identity_arn="r")
    d = sources.stream(
        f"arn:aws:dynamodb:{REGION}:123456789012:table/t/stream/2024-01-01T00:00:00.000",
        invoke_identity_arn="r",
    )
    assert isinstance(k, KinesisConnector) and isinstance(d, DynamoDBStreamsConnector)
    with pytest.raises(ValueError):
        sources.stream(f"arn:aws:sqs:{REGION}:123456789012:q", invoke_identity_arn="r")


# -- DynamoDB Streams on moto ---------------------------------------------------------------------


KEY = {"pk": {"S": "user#1"}, "sk": {"N": "7"}}


async def insert_modify_remove(aws: AwsClients, table: str) -> None:
    c = await aws.client("dynamodb", REGION)
    await c.put_item(TableName=table, Item={**KEY, "v": {"S": "one"}, "bin": {"B": b"\x00\x01"}})
    await c.update_item(
        TableName=table,
        Key=KEY,
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"S": "two"}},
    )
    await c.delete_item(TableName=table, Key=KEY)


def ddb(aws: AwsClients, arn: str) -> DynamoDBStreamsConnector:
    return DynamoDBStreamsConnector(arn, aws=aws, clock=RealClock())


BIN = {"B": base64.b64encode(b"\x00\x01").decode()}
ONE = {**KEY, "v": {"S": "one"}, "bin": BIN}
TWO = {**KEY, "v": {"S": "two"}, "bin": BIN}


@pytest.mark.parametrize(
    ("view", "images"),
    [
        ("KEYS_ONLY", [{}, {}, {}]),
        ("NEW_IMAGE", [{"NewImage": ONE}, {"NewImage": TWO}, {}]),
        ("OLD_IMAGE", [{}, {"OldImage": ONE}, {"OldImage": TWO}]),
        (
            "NEW_AND_OLD_IMAGES",
            [{"NewImage": ONE}, {"NewImage": TWO, "OldImage": ONE}, {"OldImage": TWO}],
        ),
    ],
)
async def test_dynamodb_records_per_view_type(
    aws: AwsClients, view: str, images: list[dict[str, Any]]
) -> None:
    table, arn = await create_table(aws, view)
    await insert_modify_remove(aws, table)
    conn = ddb(aws, arn)
    shards = await conn.list_shards()
    assert len(shards) == 1 and shards[0].parent_ids == ()
    records, _ = await drain(conn, shards[0].shard_id)
    assert [r.data["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    assert seqs(records) == sorted(seqs(records))
    for rec, expected in zip(records, images, strict=True):
        event = rec.data
        assert list(event) == [
            "eventID",
            "eventName",
            "eventVersion",
            "eventSource",
            "awsRegion",
            "dynamodb",
            "eventSourceARN",
        ]
        assert event["eventSource"] == "aws:dynamodb"
        assert event["eventSourceARN"] == arn
        assert event["awsRegion"] == REGION
        d = event["dynamodb"]
        assert d["Keys"] == KEY
        assert d["StreamViewType"] == view
        assert {k: d[k] for k in ("NewImage", "OldImage") if k in d} == expected
        assert isinstance(d["ApproximateCreationDateTime"], float)
        assert abs(d["ApproximateCreationDateTime"] - time.time()) < 60
        assert rec.arrival == d["ApproximateCreationDateTime"]
        assert rec.item_id == rec.token == d["SequenceNumber"]
        assert rec.key == dynamodb_item_key(KEY)


async def test_dynamodb_latest_and_after_sequence_number(aws: AwsClients) -> None:
    table, arn = await create_table(aws, "NEW_IMAGE")
    c = await aws.client("dynamodb", REGION)
    conn = ddb(aws, arn)
    (shard,) = await conn.list_shards()
    for i in range(3):
        await c.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"N": str(i)}})
    everything, _ = await drain(conn, shard.shard_id)
    assert len(everything) == 3
    after, _ = await drain(
        conn,
        shard.shard_id,
        Position("AFTER_SEQUENCE_NUMBER", sequence_number=everything[0].item_id),
    )
    assert [r.item_id for r in after] == [r.item_id for r in everything[1:]]
    at, _ = await drain(
        conn, shard.shard_id, Position("AT_SEQUENCE_NUMBER", sequence_number=everything[1].item_id)
    )
    assert [r.item_id for r in at] == [r.item_id for r in everything[1:]]

    it = await conn.open(shard.shard_id, LATEST)
    empty = await conn.read(shard.shard_id, it, 100)
    assert empty.records == [] and empty.next_iterator is not None
    await c.put_item(TableName=table, Item={"pk": {"S": "b"}, "sk": {"N": "9"}})
    latest = await conn.read(shard.shard_id, empty.next_iterator, 100)
    assert [r.data["dynamodb"]["Keys"]["pk"] for r in latest.records] == [{"S": "b"}]


async def test_dynamodb_has_no_at_timestamp(aws: AwsClients) -> None:
    _, arn = await create_table(aws, "KEYS_ONLY")
    conn = ddb(aws, arn)
    (shard,) = await conn.list_shards()
    with pytest.raises(SourceError) as err:
        await conn.open(shard.shard_id, Position("AT_TIMESTAMP", timestamp=time.time()))
    assert not err.value.retriable


async def test_dynamodb_missing_stream_is_resource_not_found(aws: AwsClients) -> None:
    arn = f"arn:aws:dynamodb:{REGION}:123456789012:table/{unique('nope')}/stream/2024-01-01T00:00:00.000"
    with pytest.raises(SourceError) as err:
        await ddb(aws, arn).list_shards()
    assert err.value.code == "ResourceNotFoundException"


# -- Kinesis on kinesalite: resharding and iterator errors ----------------------------------------


@pytest.fixture
async def kl_aws(kinesalite_url: str) -> AsyncIterator[AwsClients]:
    clients = AwsClients(endpoint_url=kinesalite_url)
    yield clients
    await clients.aclose()


def by_id(shards: list[Shard]) -> dict[str, Shard]:
    return {s.shard_id: s for s in shards}


async def test_split_closes_the_parent_and_children_name_it(kl_aws: AwsClients) -> None:
    arn = await create_stream(kl_aws, 1)
    name = arn.rsplit("/", 1)[1]
    parent = "shardId-000000000000"
    before = await put(kl_aws, arn, [(f"k{i}", b"old-%d" % i) for i in range(3)])
    c = await kl_aws.client("kinesis", REGION)
    await c.split_shard(StreamName=name, ShardToSplit=parent, NewStartingHashKey=str(2**127))
    await wait_active(kl_aws, name)
    conn = kinesis(kl_aws, arn)

    shards = by_id(await conn.list_shards())
    assert set(shards) == {parent, "shardId-000000000001", "shardId-000000000002"}
    end = shards[parent].ending_sequence_number
    assert end is not None  # closed
    assert len(end) == 56  # AWS's form; compared as integers below, never as strings
    for child in ("shardId-000000000001", "shardId-000000000002"):
        assert shards[child].parent_ids == (parent,)
        assert shards[child].ending_sequence_number is None
        assert int(shards[child].starting_sequence_number or 0) > int(end)

    # The parent, read to its end: its records, then no next iterator.
    records, last = await drain(conn, parent)
    assert [r.item_id for r in records] == [r["SequenceNumber"] for r in before]
    assert all(int(r.item_id) <= int(end) for r in records)
    assert last is None

    # New records go to the children.
    after = await put(kl_aws, arn, [(f"k{i}", b"new-%d" % i) for i in range(6)])
    assert {r["ShardId"] for r in after} <= {"shardId-000000000001", "shardId-000000000002"}
    got = []
    for child in ("shardId-000000000001", "shardId-000000000002"):
        child_records, child_last = await drain(conn, child)
        assert child_last is not None  # still open
        got += [r.item_id for r in child_records]
    assert sorted(got, key=int) == sorted((r["SequenceNumber"] for r in after), key=int)


async def test_merge_gives_a_child_with_two_parents(kl_aws: AwsClients) -> None:
    arn = await create_stream(kl_aws, 2)
    name = arn.rsplit("/", 1)[1]
    c = await kl_aws.client("kinesis", REGION)
    await c.merge_shards(
        StreamName=name,
        ShardToMerge="shardId-000000000000",
        AdjacentShardToMerge="shardId-000000000001",
    )
    await wait_active(kl_aws, name)
    shards = by_id(await kinesis(kl_aws, arn).list_shards())
    assert shards["shardId-000000000002"].parent_ids == (
        "shardId-000000000000",
        "shardId-000000000001",
    )
    assert shards["shardId-000000000000"].ending_sequence_number is not None
    assert shards["shardId-000000000001"].ending_sequence_number is not None


async def test_expired_iterator_surfaces_with_its_code(kl_aws: AwsClients) -> None:
    arn = await create_stream(kl_aws, 1)
    conn = kinesis(kl_aws, arn)
    it = await conn.open("shardId-000000000000", TRIM)
    assert (await conn.read("shardId-000000000000", it, 10)).next_iterator is not None
    with pytest.raises(SourceError) as err:
        await conn.read("shardId-000000000000", aged_iterator(it, 301), 10)
    assert err.value.code == "ExpiredIteratorException"


async def test_malformed_iterator_is_invalid_argument(kl_aws: AwsClients) -> None:
    arn = await create_stream(kl_aws, 1)
    with pytest.raises(SourceError) as err:
        await kinesis(kl_aws, arn).read("shardId-000000000000", "bm90LWFuLWl0ZXJhdG9y", 10)
    assert err.value.code == "InvalidArgumentException"
    assert not err.value.retriable


async def test_kinesalite_at_timestamp_and_sequence_positions(kl_aws: AwsClients) -> None:
    """AWS's 56-digit sequence numbers. (kinesalite never answers an AT_TIMESTAMP
    GetShardIterator when no record is at or after the timestamp: AWS gives an iterator at the
    tip. Here a record after the cut is put first.)"""
    arn = await create_stream(kl_aws, 1)
    first = await put(kl_aws, arn, [("k", b"a"), ("k", b"b")])
    await asyncio.sleep(0.2)
    cut = time.time()
    await asyncio.sleep(0.2)
    await put(kl_aws, arn, [("k", b"c")])
    conn = kinesis(kl_aws, arn)
    shard = "shardId-000000000000"
    at_ts, _ = await drain(conn, shard, Position("AT_TIMESTAMP", timestamp=cut))
    assert [base64.b64decode(r.data["kinesis"]["data"]) for r in at_ts] == [b"c"]
    after, _ = await drain(
        conn, shard, Position("AFTER_SEQUENCE_NUMBER", sequence_number=first[0]["SequenceNumber"])
    )
    assert [base64.b64decode(r.data["kinesis"]["data"]) for r in after] == [b"b", b"c"]
