"""Stream mappings on in-memory streams, a memory:// store and a virtual clock.

The same engine code as against Kinesis / DynamoDB Streams; hours of retries in milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from esm.clock import VirtualClock
from esm.config import parse_config
from esm.connectors.memory import MemoryBroker, MemoryStream
from esm.engine import Engine
from esm.shard_life import ShardState
from esm.store import SHARD_END, Store
from tests.fixtures import recorder
from tests.support import unique
from tests.unit.test_queue_poller import run_until

KINESIS = "arn:aws:kinesis:us-east-1:000000000000:stream/"
DDB = "arn:aws:dynamodb:us-east-1:000000000000:table/orders/stream/2024-01-01T00:00:00.000"
TARGET = "python:tests.fixtures.recorder.handle_async"
T0 = 1_700_000_000.0


def data(record: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(record["kinesis"]["data"]))


class World:
    """A broker, a store and a clock shared by the engines of one test."""

    def __init__(self) -> None:
        self.clock = VirtualClock(T0)
        self.broker = MemoryBroker(self.clock)
        self.store = Store.from_url(f"memory://{unique('w')}", clock=self.clock)
        self.engines: list[Engine] = []

    def stream(self, shards: int = 1) -> tuple[str, MemoryStream]:
        arn = KINESIS + unique("s")
        return arn, self.broker.create_stream(arn, shards=shards)

    async def engine(
        self, name: str, mapping: dict[str, Any], *, owner: str = "a", **settings: Any
    ) -> Engine:
        config = parse_config(
            {
                "Settings": {"LeaseSeconds": 10, "ShardDiscoverySeconds": 10, **settings},
                "Functions": {name: {"Target": TARGET, "Timeout": 60}},
                "EventSourceMappings": [
                    {"FunctionName": name, "StartingPosition": "TRIM_HORIZON", **mapping}
                ],
            }
        )
        eng = Engine(config, clock=self.clock, sources=self.broker, store=self.store, owner=owner)
        await eng.start()
        self.engines.append(eng)
        return eng

    async def until(self, cond: Any, max_s: float = 86400) -> None:
        await run_until(self.clock, cond, max_s=max_s)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()
    yield w
    for eng in w.engines:
        await eng.aclose(deadline_s=0)
    await w.store.aclose()


def processed(name: str) -> list[Any]:
    return [data(r) for e in recorder.EVENTS[name] for r in e["Records"]]


async def test_poison_record_is_isolated_by_bisect_into_the_on_failure_record(world: World) -> None:
    name = unique("bisect")
    arn, stream = world.stream()
    seqs = [stream.put_record(json.dumps({"n": i}), f"k{i}")[1] for i in range(8)]
    good: list[int] = []

    def behave(event: dict[str, Any], context: Any) -> None:
        items = [data(r)["n"] for r in event["Records"]]
        if 5 in items:
            raise ValueError("poison")
        good.extend(items)

    recorder.ASYNC_BEHAVIOUR[name] = behave
    eng = await world.engine(
        name,
        {
            "EventSourceArn": arn,
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 2,
            "DestinationConfig": {"OnFailure": {"Destination": "memory://failed"}},
        },
    )
    await world.until(lambda: bool(eng.memory.records("failed")) and len(good) == 7)
    assert good == [0, 1, 2, 3, 4, 6, 7]  # each good record once, in order
    (rec,) = eng.memory.records("failed")
    info = rec["KinesisBatchInfo"]
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == seqs[5]
    assert info["batchSize"] == 1 and info["shardId"] == "shardId-000000000000"
    assert rec["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert rec["requestContext"]["approximateInvokeCount"] == 3  # once, then two retries
    assert rec["responseContext"]["functionError"] == "Unhandled"
    (uuid,) = eng.mappings
    await world.until(lambda: eng.metrics.get("OnFailureDestinationDeliveredEventCount") == 1)
    assert await world.store.checkpoint(uuid, "shardId-000000000000") == seqs[-1]


async def test_retry_limit_without_bisect_discards_the_whole_batch(world: World) -> None:
    name = unique("retries")
    arn, stream = world.stream()
    for i in range(3):
        stream.put_record(str(i), "k")
    recorder.ASYNC_BEHAVIOUR[name] = lambda e, c: (_ for _ in ()).throw(RuntimeError("no"))
    eng = await world.engine(
        name,
        {
            "EventSourceArn": arn,
            "MaximumRetryAttempts": 1,
            "DestinationConfig": {"OnFailure": {"Destination": "memory://failed"}},
        },
    )
    await world.until(lambda: bool(eng.memory.records("failed")))
    (rec,) = eng.memory.records("failed")
    assert rec["KinesisBatchInfo"]["batchSize"] == 3
    assert rec["requestContext"]["approximateInvokeCount"] == 2
    assert len(recorder.EVENTS[name]) == 2
    assert eng.metrics.get("FailedInvokeEventCount") == 6
    assert eng.metrics.get("OnFailureDestinationDeliveredEventCount") == 3


async def test_record_age_discards_with_record_age_exceeded(world: World) -> None:
    name = unique("age")
    arn, stream = world.stream()
    stream.put_record("old", "k")
    recorder.ASYNC_BEHAVIOUR[name] = lambda e, c: (_ for _ in ()).throw(RuntimeError("no"))
    eng = await world.engine(
        name,
        {
            "EventSourceArn": arn,
            "MaximumRecordAgeInSeconds": 60,
            "DestinationConfig": {"OnFailure": {"Destination": "memory://failed"}},
        },
    )
    await world.until(lambda: bool(eng.memory.records("failed")))
    (rec,) = eng.memory.records("failed")
    assert rec["requestContext"]["condition"] == "RecordAgeExceeded"
    # invoked (and failed) before aging out, yet no responseContext: as recorded on AWS
    assert rec["requestContext"]["approximateInvokeCount"] >= 1
    assert "responseContext" not in rec
    assert world.clock.now() - T0 >= 60


async def test_no_destination_counts_dropped_records_and_moves_on(world: World) -> None:
    name = unique("drop")
    arn, stream = world.stream()
    stream.put_record("bad", "k")
    stream.put_record("later", "k")
    recorder.ASYNC_BEHAVIOUR[name] = lambda e, c: (
        (_ for _ in ()).throw(RuntimeError("no"))
        if base64.b64decode(e["Records"][0]["kinesis"]["data"]) == b"bad"
        else None
    )
    eng = await world.engine(
        name, {"EventSourceArn": arn, "MaximumRetryAttempts": 0, "BatchSize": 1}
    )
    await world.until(
        lambda: eng.metrics.get("DroppedEventCount") == 1 and len(recorder.EVENTS[name]) == 2
    )
    assert base64.b64decode(recorder.EVENTS[name][-1]["Records"][0]["kinesis"]["data"]) == b"later"


async def test_partial_response_checkpoints_at_the_lowest_failure(world: World) -> None:
    name = unique("partial")
    arn, stream = world.stream()
    seqs = [stream.put_record(str(i), "k")[1] for i in range(5)]
    calls: list[list[str]] = []

    def behave(event: dict[str, Any], context: Any) -> dict[str, Any]:
        got = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        calls.append(got)
        if len(calls) == 1:
            return {"batchItemFailures": [{"itemIdentifier": seqs[4]}, {"itemIdentifier": seqs[2]}]}
        return {"batchItemFailures": []}

    recorder.ASYNC_BEHAVIOUR[name] = behave
    eng = await world.engine(
        name, {"EventSourceArn": arn, "FunctionResponseTypes": ["ReportBatchItemFailures"]}
    )
    (uuid,) = eng.mappings
    await world.until(lambda: len(calls) == 2)
    assert calls[1] == seqs[2:]  # from the lowest failure on, later successes included
    await world.until(lambda: eng.metrics.get("InvokedEventCount") == 8)
    assert await world.store.checkpoint(uuid, "shardId-000000000000") == seqs[4]


async def test_parallelization_keeps_per_key_order_and_runs_batches_at_once(world: World) -> None:
    name = unique("parallel")
    arn, stream = world.stream()
    for i in range(200):
        stream.put_record(json.dumps({"k": i % 20, "i": i}), f"key-{i % 20}")
    running = {"now": 0, "max": 0}
    seen: list[tuple[int, int]] = []

    async def behave(event: dict[str, Any], context: Any) -> None:
        running["now"] += 1
        running["max"] = max(running["max"], running["now"])
        await world.clock.sleep(1.0)
        seen.extend((data(r)["k"], data(r)["i"]) for r in event["Records"])
        running["now"] -= 1

    recorder.ASYNC_BEHAVIOUR[name] = behave
    await world.engine(name, {"EventSourceArn": arn, "ParallelizationFactor": 4, "BatchSize": 10})
    await world.until(lambda: len(seen) == 200)
    assert running["max"] == 4
    for k in range(20):
        mine = [i for kk, i in seen if kk == k]
        assert mine == sorted(mine) and len(mine) == 10


async def test_tumbling_window_passes_state_and_makes_a_final_invocation(world: World) -> None:
    name = unique("window")
    arn, stream = world.stream()
    finals: list[dict[str, Any]] = []

    def behave(event: dict[str, Any], context: Any) -> dict[str, Any]:
        total = event["state"].get("sum", 0) + sum(int(data(r)) for r in event["Records"])
        if event["isFinalInvokeForWindow"]:
            finals.append({"window": event["window"], "sum": total, "records": event["Records"]})
        return {"state": {"sum": total}}

    recorder.ASYNC_BEHAVIOUR[name] = behave
    await world.engine(name, {"EventSourceArn": arn, "TumblingWindowInSeconds": 60, "BatchSize": 2})
    for i in range(1, 6):  # 1..5 in the first window, in several batches
        stream.put_record(str(i), "k")
    await world.until(lambda: len(recorder.EVENTS[name]) >= 3)
    await world.clock.advance(61)  # the window's end passes
    stream.put_record("100", "k")  # the next window
    await world.until(lambda: len(finals) == 1)
    first = finals[0]
    assert first["sum"] == 15 and first["records"] == []
    assert first["window"]["start"].endswith("Z")
    events = recorder.EVENTS[name]
    assert events[0]["state"] == {}  # a window starts with {}
    assert all(
        e["shardId"] == "shardId-000000000000" and e["eventSourceARN"] == arn for e in events
    )
    assert [e["isWindowTerminatedEarly"] for e in events] == [False] * len(events)
    await world.clock.advance(120)
    await world.until(lambda: len(finals) == 2)
    assert finals[1]["sum"] == 100  # the new window started with fresh state


async def test_a_window_response_without_state_is_a_failure(world: World) -> None:
    name = unique("nostate")
    arn, stream = world.stream()
    stream.put_record("1", "k")
    recorder.ASYNC_BEHAVIOUR[name] = lambda e, c: {"batchItemFailures": []}
    eng = await world.engine(
        name,
        {
            "EventSourceArn": arn,
            "TumblingWindowInSeconds": 30,
            "MaximumRetryAttempts": 0,
            "DestinationConfig": {"OnFailure": {"Destination": "memory://failed"}},
        },
    )
    await world.until(lambda: bool(eng.memory.records("failed")))


async def test_split_and_merge_keep_parents_before_children_and_lose_nothing(world: World) -> None:
    name = unique("reshard")
    arn, stream = world.stream(shards=2)
    order: list[tuple[str, int]] = []
    recorder.ASYNC_BEHAVIOUR[name] = lambda e, c: order.extend(
        (r["eventID"].split(":")[0], data(r)["i"]) for r in e["Records"]
    )
    await world.engine(name, {"EventSourceArn": arn})
    n = 0

    def put(count: int) -> None:
        nonlocal n
        for _ in range(count):
            stream.put_record(json.dumps({"i": n}), f"key-{n % 7}")
            n += 1

    put(30)
    await world.until(lambda: len(order) == 30)
    put(10)
    a, b = stream.split("shardId-000000000000")
    put(20)
    merged = stream.merge(a, b)
    put(20)
    await world.until(lambda: len(order) == 80)
    assert sorted(i for _, i in order) == list(range(80))  # nothing lost, nothing twice
    for k in range(7):  # per partition key, in order
        mine = [i for _, i in order if i % 7 == k]
        assert mine == sorted(mine)
    first_child = min(order.index(x) for x in order if x[0] in (a, b))
    last_parent = max(i for i, x in enumerate(order) if x[0] == "shardId-000000000000")
    assert last_parent < first_child  # the parent was read to its end before its children
    (uuid,) = world.engines[0].mappings
    cps = await world.store.checkpoints(uuid)
    assert cps["shardId-000000000000"] == SHARD_END
    assert merged not in cps or cps[merged] != SHARD_END


async def test_restart_resumes_from_the_checkpoint_and_a_new_uuid_starts_fresh(
    world: World,
) -> None:
    name = unique("restart")
    arn, stream = world.stream()
    for i in range(5):
        stream.put_record(str(i), "k")
    eng = await world.engine(name, {"EventSourceArn": arn, "StartingPosition": "LATEST"})
    await world.clock.advance(2)  # the shard is leased and its LATEST iterator opened
    for i in range(5, 8):
        stream.put_record(str(i), "k")
    await world.until(lambda: len(processed(name)) == 3)
    await eng.aclose(deadline_s=0)
    for i in range(8, 10):
        stream.put_record(str(i), "k")
    # Restart: StartingPosition LATEST, but the checkpoint wins.
    await world.engine(name, {"EventSourceArn": arn, "StartingPosition": "LATEST"}, owner="b")
    await world.until(lambda: len(processed(name)) == 5)
    assert processed(name) == [5, 6, 7, 8, 9]
    # Another UUID for the same stream: no checkpoint, so TRIM_HORIZON reads everything.
    other = unique("fresh")
    await world.engine(
        other, {"EventSourceArn": arn, "StartingPosition": "TRIM_HORIZON"}, owner="c"
    )
    await world.until(lambda: len(processed(other)) == 10)


async def test_two_daemons_share_four_shards_and_one_takes_over_when_the_other_stops(
    world: World,
) -> None:
    name = unique("share")
    arn, stream = world.stream(shards=4)
    first = await world.engine(name, {"EventSourceArn": arn}, owner="a")
    await world.until(lambda: True, max_s=1)
    await world.clock.advance(1)
    second = await world.engine(name, {"EventSourceArn": arn}, owner="b")
    (rt_a,) = first.mappings.values()
    (rt_b,) = second.mappings.values()

    def held(rt: Any) -> list[str]:
        return list(rt.poller.shards)

    await world.until(lambda: len(held(rt_a)) == 2 and len(held(rt_b)) == 2, max_s=120)
    assert set(held(rt_a)).isdisjoint(held(rt_b))
    started = world.clock.now()
    await second.aclose(deadline_s=0)
    await world.until(lambda: len(held(rt_a)) == 4, max_s=120)
    assert world.clock.now() - started <= 10 + 10  # the lease time (plus one heartbeat period)
    for i in range(40):
        stream.put_record(json.dumps({"k": i % 4, "i": i}), f"key-{i % 4}")
    await world.until(lambda: len(processed(name)) == 40)


async def test_dynamodb_records_for_each_event_and_view_type(world: World) -> None:
    name = unique("ddb")
    arn = DDB + unique("x")
    stream = world.broker.create_stream(arn)
    key = {"Id": {"N": "101"}}
    stream.write("INSERT", key, new_image={"Id": {"N": "101"}, "Msg": {"S": "new"}})
    stream.write(
        "MODIFY",
        key,
        new_image={"Msg": {"S": "b"}},
        old_image={"Msg": {"S": "a"}},
        view_type="OLD_IMAGE",
    )
    stream.write("REMOVE", key, old_image={"Msg": {"S": "b"}}, view_type="KEYS_ONLY")
    recorder.ASYNC_BEHAVIOUR[name] = lambda e, c: None
    await world.engine(name, {"EventSourceArn": arn})
    await world.until(lambda: sum(len(e["Records"]) for e in recorder.EVENTS[name]) == 3)
    recs = [r for e in recorder.EVENTS[name] for r in e["Records"]]
    assert [r["eventName"] for r in recs] == ["INSERT", "MODIFY", "REMOVE"]
    assert (
        recs[0]["dynamodb"]["NewImage"]["Msg"] == {"S": "new"}
        and "OldImage" not in recs[0]["dynamodb"]
    )
    assert (
        recs[1]["dynamodb"]["OldImage"] == {"Msg": {"S": "a"}}
        and "NewImage" not in recs[1]["dynamodb"]
    )
    assert "NewImage" not in recs[2]["dynamodb"] and "OldImage" not in recs[2]["dynamodb"]
    assert all(isinstance(r["dynamodb"]["ApproximateCreationDateTime"], float) for r in recs)
    assert all(r["eventSourceARN"] == arn and r["eventSource"] == "aws:dynamodb" for r in recs)


async def test_expired_iterator_reopens_after_the_last_record_not_from_the_start(
    world: World,
) -> None:
    name = unique("expired")
    arn, stream = world.stream()
    for i in range(3):
        stream.put_record(str(i), "k")
    recorder.ASYNC_BEHAVIOUR[name] = lambda e, c: None
    await world.engine(name, {"EventSourceArn": arn})
    await world.until(lambda: len(processed(name)) == 3)
    stream.expire_iterators()
    for i in range(3, 5):
        stream.put_record(str(i), "k")
    await world.until(lambda: len(processed(name)) == 5, max_s=600)
    assert processed(name) == [0, 1, 2, 3, 4]


async def test_shard_states_show_children_waiting_on_their_parent_then_processing(
    world: World,
) -> None:
    name = unique("life")
    arn, stream = world.stream()
    stuck = True

    def behave(event: Any, context: Any) -> None:
        if stuck:
            raise RuntimeError("not yet")

    recorder.ASYNC_BEHAVIOUR[name] = behave
    eng = await world.engine(name, {"EventSourceArn": arn})
    (rt,) = eng.mappings.values()
    parent = "shardId-000000000000"
    stream.put_record("0", "k")
    a, b = stream.split(parent)
    await world.until(lambda: a in rt.poller.shard_states, max_s=60)  # the next discovery
    assert rt.poller.shard_states == {
        parent: ShardState.DRAINING,  # closed and read to its end; its record is retried
        a: ShardState.WAITING_ON_PARENTS,
        b: ShardState.WAITING_ON_PARENTS,
    }
    stuck = False
    await world.until(lambda: rt.poller.shards == sorted([a, b]), max_s=120)
    assert rt.poller.shard_states == {
        parent: ShardState.SHARD_ENDED,
        a: ShardState.PROCESSING,
        b: ShardState.PROCESSING,
    }
    assert (await world.store.checkpoints(rt.uuid))[parent] == SHARD_END


async def test_a_lease_lost_just_before_shard_end_is_a_lost_lease_not_a_crash(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique("lost-end")
    arn, stream = world.stream()
    eng = await world.engine(name, {"EventSourceArn": arn})
    (rt,) = eng.mappings.values()
    parent = "shardId-000000000000"
    save = world.store.save_checkpoint

    async def fenced_at_shard_end(lease: Any, seq: str, **kw: Any) -> bool:
        # Another daemon takes the shard after the last batch's checkpoint: the fencing
        # token refuses the SHARD_END write.
        return False if seq == SHARD_END else await save(lease, seq, **kw)

    monkeypatch.setattr(world.store, "save_checkpoint", fenced_at_shard_end)
    stream.put_record("0", "k")
    stream.split(parent)
    await world.until(lambda: rt.poller.shard_states.get(parent) == ShardState.LEASE_LOST)
    assert processed(name) == [0]
    assert (await world.store.checkpoints(rt.uuid))[parent] != SHARD_END
    assert "crashed" not in caplog.text
    assert "lease lost before SHARD_END was saved" in caplog.text


async def test_a_transient_failure_of_the_start_up_check_is_asked_again_not_a_refusal(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from esm.connectors.memory import MemoryStreamConnector
    from esm.errors import SourceError

    name = unique("flaky-start")
    arn, stream = world.stream()
    stream.put_record("0", "k")
    real = MemoryStreamConnector.list_shards
    failures = iter([True, True])

    async def flaky(self: MemoryStreamConnector) -> Any:
        if next(failures, False):
            raise SourceError("We encountered an internal error", code="InternalFailure")
        return await real(self)

    monkeypatch.setattr(MemoryStreamConnector, "list_shards", flaky)
    # a 500 twice, then the stream answers: the engine starts after two pauses on the clock
    start = asyncio.create_task(world.engine(name, {"EventSourceArn": arn}))
    await world.until(start.done, max_s=60)
    await start
    assert world.clock.now() - T0 >= 0.5 + 1.0
    await world.until(lambda: processed(name) == [0])


async def test_a_missing_stream_is_still_refused_at_once(world: World) -> None:
    from esm.engine import MappingStartError

    with pytest.raises(MappingStartError, match="Stream not found"):
        await world.engine(unique("missing"), {"EventSourceArn": KINESIS + unique("nope")})
    assert world.clock.now() == T0  # no pause: a missing stream is an answer
