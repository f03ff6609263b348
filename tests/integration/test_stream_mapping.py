"""Kinesis and DynamoDB Streams mappings end to end: moto's server (kinesalite for resharding)
over HTTP through aiobotocore, checkpoints and leases on the real Redis, the engine on a virtual
clock (see :func:`tests.streams_support.drive`).

The same scenarios as ``tests/unit/test_stream_mapping.py``, with what only real services show:
sequence numbers as the emulators give them, on-failure records on real queues, topics and
buckets, checkpoints read back from Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from esm.engine import Engine
from esm.store import SHARD_END, Store
from esm.streams import lane_of
from tests.environment_support import RUNS_ON, Functions
from tests.fixtures import recorder
from tests.fixtures.environment.behaving import kinesis_values
from tests.streams_support import (
    SHARD0,
    StreamWorld,
    create_bucket,
    create_queue,
    create_stream,
    create_table,
    create_topic_to_queue,
    put,
    receive_all,
    s3_objects,
    seq,
    stream_name,
    value,
    wait_active,
)
from tests.support import ACCOUNT, REGION, unique

pytestmark = pytest.mark.integration


@pytest.fixture
async def world(moto_url: str, redis_url: str) -> AsyncIterator[StreamWorld]:
    w = StreamWorld(moto_url, redis_url)
    yield w
    await w.aclose()


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def only_uuid(engine: Engine) -> str:
    (uuid,) = engine.mappings
    return uuid


async def checkpoint_is(world: StreamWorld, uuid: str, expected: str, shard: str = SHARD0) -> bool:
    return await world.store.checkpoint(uuid, shard) == expected


# -- bisect isolates a poison record ---------------------------------------------------------------


@pytest.mark.parametrize("runs_on", RUNS_ON)
async def test_bisect_isolates_the_poison_record_and_its_on_failure_record_reaches_sqs(
    world: StreamWorld, runs_on: str, tmp_path: Path
) -> None:
    name = unique("bisect")
    arn = await create_stream(world.aws)
    failed_arn, failed_url = await create_queue(world.aws, name + "-failed")
    seqs = [
        r["SequenceNumber"] for r in await put(world.aws, arn, [(f"k{i}", i) for i in range(8)])
    ]
    functions = Functions(runs_on, tmp_path)

    def good() -> list[int]:
        """Values of the batches that succeeded, in order."""
        batches = [kinesis_values(e) for e in functions.events(name)]
        return [v for batch in batches if 5 not in batch for v in batch]

    eng = await world.engine_of(
        {name: functions.function(name, "fail_on_five", asynchronous=True, Timeout=60)},
        [
            {
                "FunctionName": name,
                "StartingPosition": "TRIM_HORIZON",
                "EventSourceArn": arn,
                "BatchSize": 8,
                "BisectBatchOnFunctionError": True,
                "MaximumRetryAttempts": 2,
                "DestinationConfig": {"OnFailure": {"Destination": failed_arn}},
            }
        ],
    )
    uuid = only_uuid(eng)
    await world.drive(
        lambda: (
            eng.metrics.get("OnFailureDestinationDeliveredEventCount") == 1 and len(good()) == 7
        ),
        what="the poison discarded and the rest processed",
    )
    await world.drive(lambda: checkpoint_is(world, uuid, seqs[-1]), what="the last checkpoint")
    assert good() == [0, 1, 2, 3, 4, 6, 7]  # each good record once, in order
    (body,) = await receive_all(world.aws, failed_url)
    rec = json.loads(body)
    info = rec["KinesisBatchInfo"]
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == seqs[5]
    assert info["batchSize"] == 1 and info["shardId"] == SHARD0 and info["streamArn"] == arn
    assert rec["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert rec["requestContext"]["approximateInvokeCount"] == 3  # once, then two retries
    assert rec["requestContext"]["functionArn"] == function_arn(name)
    assert rec["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert "payload" not in rec
    assert eng.metrics.get("DroppedEventCount") == 0


# -- on-failure records on SQS, SNS and S3 ---------------------------------------------------------

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def parse_iso_ms(text: str) -> float:
    assert ISO_MS.match(text), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


class FailureDestination:
    """An on-failure destination of one kind in moto, and the records that reached it."""

    def __init__(self, world: StreamWorld, kind: str, name: str) -> None:
        self.world, self.kind, self.name = world, kind, name
        self.arn = ""
        self._url = ""

    async def create(self) -> str:
        aws = self.world.aws
        if self.kind == "sqs":
            self.arn, self._url = await create_queue(aws, self.name)
        elif self.kind == "sns":
            self.arn, self._url = await create_topic_to_queue(aws, self.name)
        else:
            self.arn = await create_bucket(aws, self.name)
        return self.arn

    async def records(self, prefix: str = "") -> list[tuple[str | None, dict[str, Any]]]:
        """(S3 key or None, record) for every record delivered so far."""
        aws = self.world.aws
        if self.kind == "s3":
            objects = await s3_objects(aws, self.name, prefix)
            return [(key, json.loads(body)) for key, body in sorted(objects.items())]
        bodies = await receive_all(aws, self._url)
        if self.kind == "sns":
            envelopes = [json.loads(b) for b in bodies]
            assert all(e["Type"] == "Notification" and e["TopicArn"] == self.arn for e in envelopes)
            bodies = [e["Message"] for e in envelopes]
        return [(None, json.loads(b)) for b in bodies]


async def failing_mapping(
    world: StreamWorld,
    name: str,
    destination: str,
    *,
    functions: Functions | None = None,
    **mapping: Any,
) -> tuple[Engine, str, list[str]]:
    """A stream with three records and a function that always fails (in process unless
    ``functions`` says otherwise); (engine, stream, seqs)."""
    arn = await create_stream(world.aws)
    seqs = [r["SequenceNumber"] for r in await put(world.aws, arn, [("k", i) for i in range(3)])]
    functions = functions or Functions("in-process", Path())
    eng = await world.engine_of(
        {name: functions.function(name, "boom", asynchronous=True, Timeout=60)},
        [
            {
                "FunctionName": name,
                "StartingPosition": "TRIM_HORIZON",
                "EventSourceArn": arn,
                "DestinationConfig": {"OnFailure": {"Destination": destination}},
                **mapping,
            }
        ],
    )
    return eng, arn, seqs


def check_failure_record(
    rec: dict[str, Any],
    *,
    name: str,
    stream: str,
    seqs: list[str],
    events: list[dict[str, Any]],
    condition: str,
    invokes: int,
    now: float,
    started: float,
) -> None:
    """Every field of docs/semantics.md §6.7 for a Kinesis batch that ``events`` invoked."""
    aged_out = condition == "RecordAgeExceeded"
    head = ["requestContext", "version", "timestamp", "KinesisBatchInfo"]
    if not aged_out:
        head.insert(1, "responseContext")
    assert list(rec)[: len(head)] == head
    ctx = rec["requestContext"]
    assert set(ctx) == {"requestId", "functionArn", "condition", "approximateInvokeCount"}
    assert re.fullmatch(UUID4, ctx["requestId"])
    assert ctx["functionArn"] == function_arn(name)
    assert ctx["condition"] == condition
    assert ctx["approximateInvokeCount"] == invokes == len(events)
    if aged_out:  # invoked and failed, then too old: no responseContext (as recorded on AWS)
        assert "responseContext" not in rec
    else:  # retries exhausted: the last answer, with the function error
        assert rec["responseContext"] == {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        }
    assert rec["version"] == "1.0"
    assert started <= parse_iso_ms(rec["timestamp"]) <= now + 0.001  # the engine's (virtual) time
    info = rec["KinesisBatchInfo"]
    assert list(info) == [
        "shardId",
        "startSequenceNumber",
        "endSequenceNumber",
        "approximateArrivalOfFirstRecord",
        "approximateArrivalOfLastRecord",
        "batchSize",
        "streamArn",
    ]
    records = events[-1]["Records"]
    assert info["shardId"] == SHARD0
    assert info["startSequenceNumber"] == seqs[0] == seq(records[0])
    assert info["endSequenceNumber"] == seqs[-1] == seq(records[-1])
    first = records[0]["kinesis"]["approximateArrivalTimestamp"]
    last = records[-1]["kinesis"]["approximateArrivalTimestamp"]
    assert abs(parse_iso_ms(info["approximateArrivalOfFirstRecord"]) - first) < 0.0011
    assert abs(parse_iso_ms(info["approximateArrivalOfLastRecord"]) - last) < 0.0011
    assert info["batchSize"] == len(seqs)
    assert info["streamArn"] == stream


@pytest.mark.parametrize(
    ("kind", "condition", "runs_on"),
    [
        (kind, condition, "in-process")
        for condition in ("RetryAttemptsExhausted", "RecordAgeExceeded")
        for kind in ("sqs", "sns", "s3")
    ]
    + [
        ("s3", "RetryAttemptsExhausted", "environment"),
        ("sqs", "RecordAgeExceeded", "environment"),
    ],
)
async def test_a_discarded_batch_leaves_a_complete_on_failure_record(
    world: StreamWorld, kind: str, condition: str, runs_on: str, tmp_path: Path
) -> None:
    name = unique(f"{kind}-{condition[:6].lower()}")
    dest = FailureDestination(world, kind, name)
    limits = (
        {"MaximumRetryAttempts": 1}
        if condition == "RetryAttemptsExhausted"
        else {"MaximumRecordAgeInSeconds": 60}
    )
    started = world.clock.now()
    functions = Functions(runs_on, tmp_path)
    eng, stream, seqs = await failing_mapping(
        world, name, await dest.create(), functions=functions, **limits
    )
    uuid = only_uuid(eng)
    await world.drive(
        lambda: eng.metrics.get("OnFailureDestinationDeliveredEventCount") == 3,
        what="the on-failure record delivered",
    )
    events = functions.events(name)
    if condition == "RetryAttemptsExhausted":
        invokes = 2  # the first invocation and one retry
    else:
        invokes = len(events)  # retried (1, 2, 4 … s apart) until the records were 60 s old
        assert invokes >= 4
        arrival = events[0]["Records"][0]["kinesis"]["approximateArrivalTimestamp"]
        assert world.clock.now() - arrival > 60
    ((key, rec),) = await dest.records()
    check_failure_record(
        rec,
        name=name,
        stream=stream,
        seqs=seqs,
        events=events,
        condition=condition,
        invokes=invokes,
        now=world.clock.now(),
        started=started,
    )
    if kind == "s3":
        assert key is not None
        at = datetime.fromtimestamp(parse_iso_ms(rec["timestamp"]), UTC)
        assert re.fullmatch(
            rf"aws/lambda/{uuid}/{SHARD0}/{at:%Y/%m/%d}/{at:%Y-%m-%dT%H.%M.%S}-{UUID4}", key
        ), key
        assert isinstance(rec["payload"], str)
        assert json.loads(rec["payload"]) == events[-1]  # the whole invocation event
    else:
        assert "payload" not in rec
    assert eng.metrics.get("DroppedEventCount") == 0
    assert eng.metrics.get("DestinationDeliveryFailures") == 0
    await world.drive(lambda: checkpoint_is(world, uuid, seqs[-1]), what="the shard moved on")


async def test_records_too_old_before_any_invocation_leave_no_response_context(
    world: StreamWorld,
) -> None:
    name = unique("neverinvoked")
    queue_arn, url = await create_queue(world.aws, name)
    arn = await create_stream(world.aws)
    seqs = [r["SequenceNumber"] for r in await put(world.aws, arn, [("k", i) for i in range(2)])]
    await world.clock.advance(120)  # older than MaximumRecordAgeInSeconds before they are read
    eng = await world.engine(
        name,
        {
            "EventSourceArn": arn,
            "MaximumRecordAgeInSeconds": 60,
            "DestinationConfig": {"OnFailure": {"Destination": queue_arn}},
        },
    )
    await world.drive(lambda: eng.metrics.get("OnFailureDestinationDeliveredEventCount") == 2)
    (body,) = await receive_all(world.aws, url)
    rec = json.loads(body)
    assert "responseContext" not in rec  # never invoked (docs/semantics.md §6.7)
    assert rec["requestContext"]["condition"] == "RecordAgeExceeded"
    assert rec["requestContext"]["approximateInvokeCount"] == 0
    info = rec["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (seqs[0], seqs[1])
    assert recorder.EVENTS[name] == []


async def test_a_failing_destination_counts_the_loss_and_the_shard_moves_on(
    world: StreamWorld,
) -> None:
    name = unique("lostdest")
    arn = await create_stream(world.aws)
    missing = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{unique('no-such-queue')}"
    seqs = [
        r["SequenceNumber"]
        for r in await put(world.aws, arn, [("k", "bad"), ("k", "bad"), ("k", "good")])
    ]

    def behave(event: dict[str, Any], context: Any) -> None:
        if "bad" in [value(r) for r in event["Records"]]:
            raise RuntimeError("bad record")

    recorder.ASYNC_BEHAVIOUR[name] = behave
    eng = await world.engine(
        name,
        {
            "EventSourceArn": arn,
            "BatchSize": 2,
            "MaximumRetryAttempts": 0,
            "DestinationConfig": {"OnFailure": {"Destination": missing}},
        },
    )
    uuid = only_uuid(eng)
    await world.drive(lambda: checkpoint_is(world, uuid, seqs[-1]), what="the shard moved on")
    assert eng.metrics.get("DestinationDeliveryFailures") == 1
    assert eng.metrics.get("DroppedEventCount") == 2
    assert eng.metrics.get("OnFailureDestinationDeliveredEventCount") == 0
    assert [[value(r) for r in e["Records"]] for e in recorder.EVENTS[name]] == [
        ["bad", "bad"],
        ["good"],
    ]


# -- partial batch responses -----------------------------------------------------------------------


async def test_partial_response_checkpoints_before_the_lowest_failure_and_retries_from_it(
    world: StreamWorld,
) -> None:
    name = unique("partial")
    arn = await create_stream(world.aws)
    seqs = [r["SequenceNumber"] for r in await put(world.aws, arn, [("k", i) for i in range(5)])]
    calls: list[list[str]] = []
    checkpoints: list[str | None] = []
    uuid = ""

    async def behave(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append([seq(r) for r in event["Records"]])
        checkpoints.append(await world.store.checkpoint(uuid, SHARD0))
        if len(calls) == 1:  # two failures reported, the higher one first
            return {"batchItemFailures": [{"itemIdentifier": seqs[4]}, {"itemIdentifier": seqs[2]}]}
        return {"batchItemFailures": []}

    recorder.ASYNC_BEHAVIOUR[name] = behave
    eng = await world.engine(
        name,
        {"EventSourceArn": arn, "FunctionResponseTypes": ["ReportBatchItemFailures"]},
    )
    uuid = only_uuid(eng)
    await world.drive(lambda: checkpoint_is(world, uuid, seqs[-1]), what="the last checkpoint")
    assert calls == [seqs, seqs[2:]]  # from the lowest failure on, later successes included
    # seen from inside the retry: the checkpoint stood at the record before the lowest failure
    assert checkpoints == [None, seqs[1]]
    assert eng.metrics.get("InvokedEventCount") == 8
    # a non-empty batchItemFailures is a failed invocation (docs/semantics.md §11)
    assert eng.metrics.get("FailedInvokeEventCount") == 5


# -- resharding (kinesalite: moto never closes a split parent) -------------------------------------


@pytest.fixture
async def kl_world(kinesalite_url: str, redis_url: str) -> AsyncIterator[StreamWorld]:
    w = StreamWorld(kinesalite_url, redis_url)
    yield w
    await w.aclose()


async def test_split_and_merge_while_records_flow_lose_nothing_and_keep_lineage_order(
    kl_world: StreamWorld,
) -> None:
    w = kl_world
    name = unique("reshard")
    arn = await create_stream(w.aws, 1)
    stream = stream_name(arn)
    kinesis = await w.aws.client("kinesis", REGION)
    order: list[tuple[str, int]] = []  # (shard, record number), as processed
    recorder.ASYNC_BEHAVIOUR[name] = lambda e, c: order.extend(
        (r["eventID"].split(":")[0], value(r)["i"]) for r in e["Records"]
    )
    eng = await w.engine(name, {"EventSourceArn": arn, "BatchSize": 10}, ShardDiscoverySeconds=1)
    uuid = only_uuid(eng)
    sent = 0
    producing = True

    async def produce() -> None:  # real time, beside the engine's virtual time
        nonlocal sent
        while producing:
            items = [(f"key-{i % 7}", {"i": i}) for i in range(sent, sent + 3)]
            await put(w.aws, arn, items)
            sent += len(items)
            await asyncio.sleep(0.02)

    def from_shards(*shards: str) -> int:
        return sum(1 for s, _ in order if s in shards)

    parent, (left, right), merged = SHARD0, ("shardId-000000000001", "shardId-000000000002"), ""
    producer = asyncio.create_task(produce())
    try:
        await w.drive(lambda: from_shards(parent) >= 30, what="records from the first shard")
        await kinesis.split_shard(
            StreamName=stream, ShardToSplit=parent, NewStartingHashKey=str(2**127)
        )
        await wait_active(w.aws, stream)
        await w.drive(lambda: from_shards(left) and from_shards(right), what="both children")
        await kinesis.merge_shards(StreamName=stream, ShardToMerge=left, AdjacentShardToMerge=right)
        await wait_active(w.aws, stream)
        merged = "shardId-000000000003"
        await w.drive(lambda: from_shards(merged) >= 20, what="records from the merged shard")
    finally:
        producing = False
        await producer
    await w.drive(lambda: len(order) >= sent, what=f"all {sent} records")
    await w.sleep(5)  # nothing more comes

    numbers = [i for _, i in order]
    assert sorted(numbers) == list(range(sent))  # nothing lost, nothing twice
    for k in range(7):  # per partition key, in order
        mine = [i for i in numbers if i % 7 == k]
        assert mine == sorted(mine)

    def first(shard: str) -> int:
        return min(n for n, (s, _) in enumerate(order) if s == shard)

    def last(shard: str) -> int:
        return max(n for n, (s, _) in enumerate(order) if s == shard)

    assert last(parent) < min(first(left), first(right))  # a parent ends before its children
    assert max(last(left), last(right)) < first(merged)
    checkpoints = await w.store.checkpoints(uuid)
    assert checkpoints[parent] == checkpoints[left] == checkpoints[right] == SHARD_END
    assert checkpoints[merged] == max((seq_of(e) for e in recorder.EVENTS[name]), key=int)


def seq_of(event: dict[str, Any]) -> str:
    return seq(event["Records"][-1])


# -- ParallelizationFactor -------------------------------------------------------------------------


def balanced_keys(lanes: int, per_lane: int) -> list[str]:
    """Partition keys that esm's key → lane hash spreads evenly over ``lanes``, so the ideal
    speed-up of ParallelizationFactor ``lanes`` is exactly ``lanes``."""
    by_lane: dict[int, list[str]] = {i: [] for i in range(lanes)}
    n = 0
    while any(len(keys) < per_lane for keys in by_lane.values()):
        key = f"key-{n}"
        if len(by_lane[lane_of(key, lanes)]) < per_lane:
            by_lane[lane_of(key, lanes)].append(key)
        n += 1
    return [k for keys in by_lane.values() for k in keys]


async def test_parallelization_keeps_per_key_order_and_drains_four_times_faster(
    world: StreamWorld,
) -> None:
    arn = await create_stream(world.aws)
    keys = balanced_keys(4, 10)  # 40 keys
    await put(world.aws, arn, [(keys[i % 40], {"k": keys[i % 40], "i": i}) for i in range(200)])

    async def drain(factor: int) -> tuple[float, int]:
        """(virtual seconds from the first invocation to the last one's end, max concurrency)"""
        name = unique(f"parallel{factor}")
        running = {"now": 0, "max": 0}
        seen: list[tuple[str, int]] = []
        spans: list[tuple[float, float]] = []

        async def behave(event: dict[str, Any], context: Any) -> None:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
            start = world.clock.now()
            await world.clock.sleep(1.0)  # the function's work, on the engine's clock
            seen.extend((value(r)["k"], value(r)["i"]) for r in event["Records"])
            spans.append((start, world.clock.now()))
            running["now"] -= 1

        recorder.ASYNC_BEHAVIOUR[name] = behave
        eng = await world.engine(
            name, {"EventSourceArn": arn, "ParallelizationFactor": factor, "BatchSize": 10}
        )
        await world.drive(lambda: len(seen) == 200, what=f"200 records with factor {factor}")
        await world.close_engine(eng)
        assert sorted(i for _, i in seen) == list(range(200))  # each record once
        for key in keys:  # per partition key, in order
            mine = [i for k, i in seen if k == key]
            assert mine == sorted(mine) and len(mine) == 5
        return max(end for _, end in spans) - min(start for start, _ in spans), running["max"]

    serial, serial_concurrency = await drain(1)
    parallel, parallel_concurrency = await drain(4)
    assert (serial_concurrency, parallel_concurrency) == (1, 4)
    assert serial == pytest.approx(20, abs=1)  # 20 batches of 10, one after the other
    assert parallel == pytest.approx(5, abs=1)  # 4 lanes of 5 batches each
    assert serial / parallel >= 3.5


# -- tumbling windows ------------------------------------------------------------------------------


@pytest.fixture
def moto_kinesis_on_virtual_time(world: StreamWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto (in this process) stamps Kinesis records with the test's virtual time, so tumbling
    windows (built from arrival times) and the engine's clock agree."""
    import moto.kinesis.models

    def utcnow() -> datetime:
        return datetime.fromtimestamp(world.clock.now(), UTC).replace(tzinfo=None)

    monkeypatch.setattr(moto.kinesis.models, "utcnow", utcnow)


@pytest.mark.usefixtures("moto_kinesis_on_virtual_time")
async def test_tumbling_window_state_survives_a_restart_and_ends_with_a_final_invocation(
    world: StreamWorld,
) -> None:
    name = unique("window")
    arn = await create_stream(world.aws)
    size = 60
    start = (int(world.clock.now()) // size + 1) * size
    await world.clock.advance(start + 1 - world.clock.now())  # 1 s into a window
    finals: list[dict[str, Any]] = []

    def behave(event: dict[str, Any], context: Any) -> dict[str, Any]:
        total = event["state"].get("sum", 0) + sum(value(r) for r in event["Records"])
        if event["isFinalInvokeForWindow"]:
            finals.append(event)
        return {"state": {"sum": total}}

    recorder.ASYNC_BEHAVIOUR[name] = behave
    mapping = {"EventSourceArn": arn, "TumblingWindowInSeconds": size, "BatchSize": 2}
    put_1_5 = await put(world.aws, arn, [("k", i) for i in range(1, 6)])
    first = await world.engine(name, mapping, owner="a")
    uuid = only_uuid(first)
    await world.drive(
        lambda: checkpoint_is(world, uuid, put_1_5[-1]["SequenceNumber"]), what="1..5 processed"
    )
    events = recorder.EVENTS[name]
    assert [[value(r) for r in e["Records"]] for e in events] == [[1, 2], [3, 4], [5]]
    assert [e["state"] for e in events] == [{}, {"sum": 3}, {"sum": 10}]  # a window starts at {}
    assert world.clock.now() < start + size and not finals

    await world.close_engine(first)  # mid-window: the state is in Redis with the checkpoint
    saved = await world.store.window_state(uuid, SHARD0)
    assert saved is not None and saved["state"] == {"sum": 15}
    await put(world.aws, arn, [("k", 10), ("k", 20)])
    await world.engine(name, mapping, owner="b")
    await world.drive(lambda: len(finals) == 1, what="the final invocation of the first window")
    assert events[3]["state"] == {"sum": 15}  # the restarted engine went on from the saved state
    (final,) = finals
    assert final["Records"] == [] and final["state"] == {"sum": 45}  # 1..5 before the restart
    assert final["window"] == {"start": iso(start), "end": iso(start + size)}
    assert world.clock.now() >= start + size

    await put(world.aws, arn, [("k", 100)])  # the next window
    await world.drive(lambda: len(finals) == 2, what="the final invocation of the second window")
    after = events[events.index(final) + 1]
    assert [value(r) for r in after["Records"]] == [100] and after["state"] == {}
    assert finals[1]["state"] == {"sum": 100} and finals[1]["Records"] == []
    assert finals[1]["window"] == {"start": iso(start + size), "end": iso(start + 2 * size)}
    for e in events:
        assert e["shardId"] == SHARD0 and e["eventSourceARN"] == arn
        assert e["isWindowTerminatedEarly"] is False
        assert e["isFinalInvokeForWindow"] is (e in finals)
    await world.drive(lambda: window_cleared(world, uuid), what="the window state dropped")


async def window_cleared(world: StreamWorld, uuid: str) -> bool:
    return await world.store.window_state(uuid, SHARD0) is None


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- DynamoDB Streams ------------------------------------------------------------------------------

KEY = {"pk": {"S": "user#1"}, "sk": {"N": "7"}}
ONE = {**KEY, "v": {"S": "one"}}
TWO = {**KEY, "v": {"S": "two"}}
IMAGES = {  # per view type: the images of the INSERT, MODIFY and REMOVE records
    "KEYS_ONLY": [{}, {}, {}],
    "NEW_IMAGE": [{"NewImage": ONE}, {"NewImage": TWO}, {}],
    "OLD_IMAGE": [{}, {"OldImage": ONE}, {"OldImage": TWO}],
    "NEW_AND_OLD_IMAGES": [
        {"NewImage": ONE},
        {"NewImage": TWO, "OldImage": ONE},
        {"OldImage": TWO},
    ],
}


@pytest.mark.parametrize("runs_on", RUNS_ON)
async def test_dynamodb_insert_modify_remove_through_the_engine_for_each_view_type(
    world: StreamWorld, runs_on: str, tmp_path: Path
) -> None:
    functions = Functions(runs_on, tmp_path)
    tables = {view: await create_table(world.aws, view) for view in IMAGES}
    names = {view: unique(f"ddb-{view.lower()}") for view in IMAGES}
    c = await world.aws.client("dynamodb", REGION)
    before = time.time()
    for table, _ in tables.values():
        await c.put_item(TableName=table, Item=ONE)
        await c.update_item(
            TableName=table,
            Key=KEY,
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"S": "two"}},
        )
        await c.delete_item(TableName=table, Key=KEY)
    after = time.time()
    eng = await world.engine_of(
        {names[v]: functions.function(names[v], "echo", asynchronous=True) for v in IMAGES},
        [
            {
                "FunctionName": names[v],
                "EventSourceArn": tables[v][1],
                "StartingPosition": "TRIM_HORIZON",
            }
            for v in IMAGES
        ],
    )

    def records(view: str) -> list[dict[str, Any]]:
        return [r for e in functions.events(names[view]) for r in e["Records"]]

    await world.drive(lambda: all(len(records(v)) == 3 for v in IMAGES), what="3 records each")
    for view, images in IMAGES.items():
        got = records(view)
        assert [r["eventName"] for r in got] == ["INSERT", "MODIFY", "REMOVE"]
        for rec, expected in zip(got, images, strict=True):
            assert rec["eventSource"] == "aws:dynamodb"
            assert rec["eventSourceARN"] == tables[view][1]
            assert rec["awsRegion"] == REGION
            d = rec["dynamodb"]
            assert d["Keys"] == KEY and d["StreamViewType"] == view
            assert {k: d[k] for k in ("NewImage", "OldImage") if k in d} == expected
            created = d["ApproximateCreationDateTime"]
            assert isinstance(created, int | float) and not isinstance(created, bool)
            assert int(before) - 1 <= created <= after + 1
            assert isinstance(d["SequenceNumber"], str) and d["SizeBytes"] >= 1
        assert [int(r["dynamodb"]["SequenceNumber"]) for r in got] == sorted(
            int(r["dynamodb"]["SequenceNumber"]) for r in got
        )
    assert eng.metrics.get("InvokedEventCount") == 12


# -- restarts, disable / enable, a new UUID --------------------------------------------------------


async def test_restart_and_re_enable_resume_after_the_checkpoint_and_a_new_uuid_starts_fresh(
    world: StreamWorld,
) -> None:
    arn = await create_stream(world.aws)
    seqs: list[str] = []

    async def put_values(*values: int) -> None:
        seqs.extend(
            r["SequenceNumber"] for r in await put(world.aws, arn, [("k", v) for v in values])
        )

    def processed(name: str) -> list[int]:
        return [value(r) for e in recorder.EVENTS[name] for r in e["Records"]]

    async def iterator_opened(before: int) -> None:
        await world.drive(
            lambda: world.aws.calls["kinesis.get_shard_iterator"] > before, what="an iterator"
        )

    await put_values(0, 1, 2, 3, 4)
    name, uuid = unique("restart"), str(uuid4())
    mapping = {"EventSourceArn": arn, "UUID": uuid}

    # LATEST: only what comes after the shard iterator was opened.
    opened = world.aws.calls["kinesis.get_shard_iterator"]
    first = await world.engine(name, {**mapping, "StartingPosition": "LATEST"}, owner="a")
    assert only_uuid(first) == uuid
    await iterator_opened(opened)
    await put_values(5, 6, 7)
    await world.drive(lambda: checkpoint_is(world, uuid, seqs[7]), what="5..7 checkpointed")
    await world.close_engine(first)

    # Restart, still LATEST: the checkpoint wins, 8 and 9 (put while stopped) are not skipped.
    await put_values(8, 9)
    second = await world.engine(name, {**mapping, "StartingPosition": "LATEST"}, owner="b")
    await world.drive(lambda: checkpoint_is(world, uuid, seqs[9]), what="8, 9 checkpointed")
    await world.close_engine(second)
    assert processed(name) == [5, 6, 7, 8, 9]

    # Disabled: nothing is read; enabled again (TRIM_HORIZON now): on from the checkpoint.
    disabled = await world.engine(name, {**mapping, "Enabled": False}, owner="c")
    assert disabled.mappings[uuid].state == "Disabled"
    await put_values(10, 11)
    await world.sleep(30)
    assert processed(name) == [5, 6, 7, 8, 9]
    assert await world.store.checkpoint(uuid, SHARD0) == seqs[9]
    await world.close_engine(disabled)
    enabled = await world.engine(name, {**mapping, "Enabled": True}, owner="d")
    assert enabled.mappings[uuid].state == "Enabled"
    await world.drive(lambda: checkpoint_is(world, uuid, seqs[11]), what="10, 11 checkpointed")
    assert processed(name) == [5, 6, 7, 8, 9, 10, 11]

    # New UUIDs on the same stream start per their own StartingPosition.
    trim, latest = unique("trim"), unique("latest")
    await world.engine(trim, {"EventSourceArn": arn, "UUID": str(uuid4())}, owner="e")
    await world.drive(lambda: len(processed(trim)) == 12, what="everything again")
    assert processed(trim) == list(range(12))
    opened = world.aws.calls["kinesis.get_shard_iterator"]
    await world.engine(
        latest, {"EventSourceArn": arn, "UUID": str(uuid4()), "StartingPosition": "LATEST"}
    )
    await iterator_opened(opened)
    await put_values(12)
    await world.drive(
        lambda: processed(latest) == [12] and processed(trim)[-1:] == [12] == processed(name)[-1:],
        what="12 everywhere",
    )
    assert processed(name) == list(range(5, 13))


# -- stopping --------------------------------------------------------------------------------------


async def test_a_store_call_cancelled_as_it_completes_still_raises_cancelled_error(
    world: StreamWorld,
) -> None:
    """redis-py 8 writes commands under ``asyncio.wait_for`` (its default socket timeout is
    5 s), which before Python 3.12 returns normally when the task is cancelled just as the write
    completes. The store gives such a cancellation back: without that, a poller whose
    ``_tick`` was cancelled went on to wait for its next tick, and ``aclose`` on a virtual clock
    hung (1 run in 5 of the split-and-merge test)."""
    store = Store.from_url(world.redis_url, clock=world.clock, prefix=world.prefix)
    swallowed = 0
    try:
        for i in range(300):
            task = asyncio.create_task(store.checkpoints("some-mapping"))
            for _ in range(i % 7):  # cancel at every point of the round trip
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
                swallowed += task.cancelling() > 0  # returned although cancelled
    finally:
        await store.aclose()
    assert swallowed == 0
