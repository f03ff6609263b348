"""esm.testing's harness: scenarios spanning minutes to hours of virtual time, each in
milliseconds, asserting what a user asserts (deleted, left on the queue, DLQ, checkpoints,
on-failure records, invocation records)."""

from __future__ import annotations

import base64
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from esm.errors import ConfigError
from esm.mappings import MappingStartError
from esm.testing import Harness, NotIdleError

A = "arn:aws:sqs:us-east-1:000000000000:"
KINESIS = "arn:aws:kinesis:us-east-1:000000000000:stream/ledger"
DDB = "arn:aws:dynamodb:us-east-1:000000000000:table/users/stream/2024-01-01T00:00:00.000"
PLACEHOLDER = "python:handlers.placeholder"


def sqs_config(**mapping: Any) -> dict[str, Any]:
    return {
        "Functions": {"orders": {"Target": PLACEHOLDER, "Timeout": 10}},
        "EventSourceMappings": [
            {"FunctionName": "orders", "EventSourceArn": A + "orders", **mapping}
        ],
        "Resources": {
            "Orders": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "QueueName": "orders",
                    "VisibilityTimeout": 60,
                    "RedrivePolicy": {
                        "deadLetterTargetArn": A + "orders-dlq",
                        "maxReceiveCount": 3,
                    },
                },
            }
        },
    }


def report_poison(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "batchItemFailures": [
            {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "poison"
        ]
    }


def data(record: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(record["kinesis"]["data"]))


# -- SQS ---------------------------------------------------------------------------------------------


async def test_partial_failure_deletes_the_rest_and_redrives_the_poison_message() -> None:
    config = sqs_config(FunctionResponseTypes=["ReportBatchItemFailures"])
    started = time.perf_counter()
    async with Harness(config, functions={"orders": report_poison}) as h:
        h.put_sqs_messages("orders", ["a", "poison", "b"])
        await h.run_until_idle()
        orders = h.queue("orders")
        assert orders.deleted_bodies() == ["a", "b"]
        assert orders.bodies() == []
        assert orders.dead_letter_queue.bodies() == ["poison"]
        assert h.queue(A + "orders-dlq").messages[0].receive_count == 3
        batches = [i.bodies() for i in h.invocations("orders")]
        assert batches == [["a", "poison", "b"], ["poison"], ["poison"]]
        receives = [i.records[0]["attributes"]["ApproximateReceiveCount"] for i in h.invocations()]
        assert receives == ["1", "2", "3"]
        assert all(i.batch_item_failures for i in h.invocations())
        assert h.metrics.get("DeletedEventCount") == 2
        assert h.elapsed >= 3 * 60  # three visibility timeouts, virtually
    assert time.perf_counter() - started < 5


async def test_function_error_keeps_the_whole_batch() -> None:
    def fail(event: dict[str, Any], context: Any) -> None:
        raise ValueError("boom")

    async with Harness(sqs_config(), functions={"orders": fail}) as h:
        h.put_sqs_messages("orders", ["a", "b"])
        await h.run_until_idle()
        assert h.queue("orders").deleted == []
        assert sorted(h.queue("orders-dlq").bodies()) == ["a", "b"]
        (first, *_) = h.invocations("orders")
        assert first.error is not None and first.error["errorType"] == "ValueError"
        assert first.response is None and not first.ok
        assert h.metrics.get("Errors") == 3


async def test_filtered_out_messages_are_deleted_without_an_invocation() -> None:
    pattern = json.dumps({"body": {"kind": ["order"]}})
    config = sqs_config(FilterCriteria={"Filters": [{"Pattern": pattern}]})
    async with Harness(config, functions={"orders": lambda e, c: None}) as h:
        h.put_sqs_messages("orders", [{"kind": "order", "n": 1}, {"kind": "spam"}])
        await h.run_until_idle()
        assert [json.loads(b) for b in h.queue("orders").deleted_bodies()] == [
            {"kind": "spam"},
            {"kind": "order", "n": 1},
        ]
        assert [json.loads(b) for i in h.invocations() for b in i.bodies()] == [
            {"kind": "order", "n": 1}
        ]
        assert h.metrics.get("FilteredOutEventCount") == 1


async def test_fifo_group_order_and_message_attributes() -> None:
    arn = A + "jobs.fifo"
    config = {
        "Functions": {"jobs": {"Target": PLACEHOLDER}},
        "EventSourceMappings": [{"FunctionName": "jobs", "EventSourceArn": arn, "BatchSize": 2}],
    }
    async with Harness(config, functions={"jobs": lambda e, c: None}) as h:
        with pytest.raises(ValueError, match="group_id"):
            h.put_sqs_message("jobs", "x")
        h.put_sqs_messages("jobs", ["1", "2", "3"], group_id="g", message_attributes={"n": 7})
        await h.run_until_idle()
        records = [r for i in h.invocations() for r in i.records]
        assert [r["body"] for r in records] == ["1", "2", "3"]
        assert {r["attributes"]["MessageGroupId"] for r in records} == {"g"}
        assert records[0]["messageAttributes"]["n"]["stringValue"] == "7"
        assert "md5OfMessageAttributes" in records[0]


async def test_start_up_checks_are_the_daemons() -> None:
    config = sqs_config()
    config["Functions"]["orders"]["Timeout"] = 120  # more than the queue's 60 s visibility
    with pytest.raises(MappingStartError, match="visibility timeout"):
        async with Harness(config, functions={"orders": lambda e, c: None}):
            pass
    with pytest.raises(ConfigError, match="BatchSize"):
        Harness(sqs_config(BatchSize=0))


async def test_not_idle_names_what_goes_on() -> None:
    config = sqs_config()
    del config["Resources"]  # no redrive policy: a poison message stays forever

    def fail(event: dict[str, Any], context: Any) -> None:
        raise ValueError("boom")

    async with Harness(config, functions={"orders": fail}) as h:
        h.put_sqs_message("orders", "poison")
        with pytest.raises(NotIdleError, match=r"orders holds 1 message\(s\)"):
            await h.run_until_idle(max_virtual_s=600)
        assert 10 <= len(h.invocations()) <= 22  # every 30 s visibility timeout


# -- time ----------------------------------------------------------------------------------------------


async def test_run_until_and_advance() -> None:
    config = sqs_config(MaximumBatchingWindowInSeconds=30, BatchSize=100)
    async with Harness(config, functions={"orders": lambda e, c: None}) as h:
        h.put_sqs_messages("orders", [str(i) for i in range(3)])
        await h.advance(10)
        assert h.invocations() == [] and h.elapsed == 10
        await h.run_until(lambda: bool(h.invocations()))
        assert 29 <= h.elapsed <= 31  # the batching window, virtually
        assert h.invocations()[0].bodies() == ["0", "1", "2"]

        async def deleted() -> bool:
            return len(h.queue("orders").deleted) == 3

        await h.run_until(deleted)


async def test_sync_handlers_run_in_real_time_and_time_out_past_their_timeout() -> None:
    def slow(event: dict[str, Any], context: Any) -> str:
        time.sleep(float(event["Records"][0]["body"]))
        return "done"

    config = sqs_config(BatchSize=1)
    config["Functions"]["orders"]["Timeout"] = 1
    async with Harness(config, functions={"orders": slow}) as h:
        h.put_sqs_message("orders", "0.05")
        await h.run_until_idle()
        (call,) = h.invocations()
        assert call.ok and call.response == "done"  # the clock waited for the thread
        h.put_sqs_message("orders", "1.3")
        await h.run_until(lambda: len(h.invocations()) == 2)
        assert h.invocations()[1].error["errorType"] == "Sandbox.Timedout"  # type: ignore[index]


async def test_async_handlers_may_take_virtual_time() -> None:
    async def slow(event: dict[str, Any], context: Any) -> None:
        await clock.sleep(float(event["Records"][0]["body"]))

    config = sqs_config(BatchSize=1)
    async with Harness(config, functions={"orders": slow}) as h:
        clock = h.clock
        h.put_sqs_message("orders", "8")
        await h.run_until_idle()
        assert h.invocations()[0].ok and h.elapsed >= 8
        h.put_sqs_message("orders", "30")  # Timeout is 10
        await h.run_until(lambda: len(h.invocations()) == 2)
        assert h.invocations()[1].error["errorType"] == "Sandbox.Timedout"  # type: ignore[index]


# -- streams -------------------------------------------------------------------------------------------


def stream_config(**mapping: Any) -> dict[str, Any]:
    return {
        "Functions": {"ledger": {"Target": PLACEHOLDER}},
        "EventSourceMappings": [
            {
                "FunctionName": "ledger",
                "EventSourceArn": KINESIS,
                "StartingPosition": "TRIM_HORIZON",
                **mapping,
            }
        ],
    }


async def test_bisect_isolates_the_poison_record_into_the_on_failure_record() -> None:
    def ledger(event: dict[str, Any], context: Any) -> None:
        if any(data(r)["n"] == 5 for r in event["Records"]):
            raise ValueError("poison")

    config = stream_config(
        BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": A + "ledger-failures"}},
    )
    async with Harness(config, functions={"ledger": ledger}) as h:
        seqs = h.put_kinesis_records("ledger", [{"n": i} for i in range(8)])
        await h.run_until_idle()
        (rec,) = h.on_failure_records()
        assert rec == h.queue("ledger-failures").json()[0] == h.on_failure_records("ledger")[0]
        info = rec["KinesisBatchInfo"]
        assert info["startSequenceNumber"] == info["endSequenceNumber"] == seqs[5]
        assert info["batchSize"] == 1
        assert rec["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert await h.checkpoints("ledger") == {"shardId-000000000000": seqs[-1]}
        good = [data(r)["n"] for i in h.invocations() if i.ok for r in i.records]
        assert good == [0, 1, 2, 3, 4, 6, 7]


async def test_s3_on_failure_records_carry_the_payload() -> None:
    def fail(event: dict[str, Any], context: Any) -> None:
        raise ValueError("no")

    bucket = "arn:aws:s3:::failures"
    config = stream_config(
        MaximumRetryAttempts=0, DestinationConfig={"OnFailure": {"Destination": bucket}}
    )
    async with Harness(config, functions={"ledger": fail}) as h:
        h.put_kinesis_record("ledger", "x", partition_key="k")
        await h.run_until_idle()
        (rec,) = h.records(bucket)
        assert json.loads(rec["payload"])["Records"][0]["kinesis"]["partitionKey"] == "k"


async def test_tumbling_window_state_and_final_invocation() -> None:
    def total(event: dict[str, Any], context: Any) -> dict[str, Any]:
        state = event["state"].get("sum", 0) + sum(data(r) for r in event["Records"])
        return {"state": {"sum": state}}

    config = stream_config(TumblingWindowInSeconds=60, BatchSize=2)
    async with Harness(config, functions={"ledger": total}) as h:
        h.put_kinesis_records("ledger", [1, 2, 3])
        await h.advance(61)
        h.put_kinesis_records("ledger", [10])
        await h.run_until_idle()
        finals = [i.event for i in h.invocations() if i.event["isFinalInvokeForWindow"]]
        assert [(f["state"], f["window"]["start"]) for f in finals] == [
            ({"sum": 6}, "2024-01-01T00:00:00Z"),
            ({"sum": 10}, "2024-01-01T00:01:00Z"),
        ]
        assert await h.window_state("ledger") is None  # no window left open


async def test_latest_skips_what_was_there_and_shards_split() -> None:
    config = stream_config(StartingPosition="LATEST")
    seen: list[int] = []
    h = Harness(
        config, functions={"ledger": lambda e, c: seen.extend(data(r) for r in e["Records"])}
    )
    h.put_kinesis_records("ledger", [1, 2])  # before the mapping starts: LATEST never sees them
    async with h:
        h.put_kinesis_records("ledger", [3])
        await h.run_until_idle()
        parent = "shardId-000000000000"
        h.stream("ledger").split(parent)
        h.put_kinesis_records("ledger", [4, 5], partition_key=lambda n: f"k{n}")
        await h.run_until_idle()
        checkpoints = await h.checkpoints("ledger")
        assert checkpoints.pop(parent) == "SHARD_END"
        assert checkpoints  # the child the new records went to
    assert seen[0] == 3 and sorted(seen) == [3, 4, 5]


async def test_dynamodb_items_become_insert_modify_remove_records() -> None:
    config = {
        "Functions": {"users": {"Target": PLACEHOLDER}},
        "EventSourceMappings": [
            {"FunctionName": "users", "EventSourceArn": DDB, "StartingPosition": "TRIM_HORIZON"}
        ],
    }
    async with Harness(config, functions={"users": lambda e, c: None}) as h:
        h.write_dynamodb_items("users", [{"Id": 1, "name": "Ann"}, {"Id": 2, "name": "Bo"}])
        h.write_dynamodb_items("users", [{"Id": 1, "name": "Ann", "score": 1.5}])
        h.remove_dynamodb_items("users", [{"Id": 2}])
        await h.run_until_idle()
        records = [r for i in h.invocations() for r in i.records]
        assert [r["eventName"] for r in records] == ["INSERT", "INSERT", "MODIFY", "REMOVE"]
        modify, remove = records[2]["dynamodb"], records[3]["dynamodb"]
        assert modify["OldImage"] == {"Id": {"N": "1"}, "name": {"S": "Ann"}}
        assert modify["NewImage"]["score"] == {"N": "1.5"}
        assert remove["OldImage"] == {"Id": {"N": "2"}, "name": {"S": "Bo"}}
        assert "NewImage" not in remove
        # Keys "Id"+1 (2+2), NewImage +"name"+"Ann" (4+3) +"score"+1.5 (5+2), OldImage 4+7
        assert modify["SizeBytes"] == 4 + (4 + 7 + 7) + (4 + 7)

    async with Harness(config, functions={"users": lambda e, c: None}, view_type="KEYS_ONLY") as h:
        h.write_dynamodb_items("users", [{"Id": 1, "name": "Ann"}])
        await h.run_until_idle()
        (rec,) = h.invocations()[0].records
        assert set(rec["dynamodb"]) >= {"Keys"} and "NewImage" not in rec["dynamodb"]


# -- asynchronous invocation ---------------------------------------------------------------------------


async def test_async_failure_goes_to_on_failure_and_the_dead_letter_queue() -> None:
    calls: list[float] = []

    def notify(event: dict[str, Any], context: Any) -> None:
        raise RuntimeError("smtp down")

    async def audit(event: dict[str, Any], context: Any) -> str:
        calls.append(0)
        return "audited"

    config = {
        "Functions": {
            "notify": {
                "Target": PLACEHOLDER,
                "EventInvokeConfig": {
                    "DestinationConfig": {"OnFailure": {"Destination": A + "notify-failed"}}
                },
                "DeadLetterConfig": {"TargetArn": "arn:aws:sns:us-east-1:000000000000:dlq"},
            },
            "greet": {
                "Target": PLACEHOLDER,
                "EventInvokeConfig": {
                    "DestinationConfig": {
                        "OnSuccess": {
                            "Destination": "arn:aws:lambda:us-east-1:000000000000:function:audit"
                        }
                    }
                },
            },
        }
    }
    async with Harness(
        config, functions={"notify": notify, "greet": lambda e, c: "hi", "audit": audit}
    ) as h:
        request_id = await h.invoke_async("notify", {"to": "ann"})
        await h.invoke_async("greet", {})
        await h.run_until_idle()
        (rec,) = h.async_records("notify")
        assert rec["requestContext"]["requestId"] == request_id
        assert rec["requestContext"]["condition"] == "RetriesExhausted"
        assert rec["requestContext"]["approximateInvokeCount"] == 3
        assert rec["requestPayload"] == {"to": "ann"}
        assert h.queue("notify-failed").json() == [rec]
        starts = [round(i.started_at - h.now() + h.elapsed) for i in h.invocations("notify")]
        assert starts[0] == 0 and 54 <= starts[1] <= 66 and 162 <= starts[2] <= 198
        (dead,) = h.dead_letters("notify")
        assert (dead.payload, dead.request_id, dead.error_message) == (
            b'{"to":"ann"}',
            request_id,
            "smtp down",
        )
        (audited,) = h.invocations("audit")  # a Lambda destination: an async invoke
        assert audited.invocation_type == "Event"
        assert audited.event["responsePayload"] == "hi" and calls == [0]
        sync = await h.invoke("greet", {"x": 1})
        assert sync.response == "hi" and sync.invocation_type == "RequestResponse"


# -- configs -------------------------------------------------------------------------------------------


async def test_an_esm_yaml_with_a_handler_module_next_to_it(tmp_path: Path) -> None:
    (tmp_path / "shop_handlers.py").write_text(
        "def orders(event, context):\n    return {'batchItemFailures': []}\n"
    )
    (tmp_path / "esm.yaml").write_text(
        "Functions:\n"
        "  orders: {Target: python:shop_handlers.orders}\n"
        "EventSourceMappings:\n"
        "  - FunctionName: orders\n"
        "    EventSourceArn: arn:aws:sqs:us-east-1:000000000000:orders\n"
    )
    import sys

    async with Harness(tmp_path / "esm.yaml") as h:
        assert str(tmp_path) in sys.path
        h.put_sqs_message("orders", "x")
        await h.run_until_idle()
        assert h.queue("orders").deleted_bodies() == ["x"]
        assert h.invocations()[0].response == {"batchItemFailures": []}
    assert str(tmp_path) not in sys.path


async def test_idle_shards_poll_at_times_of_their_own_and_never_rarer_than_the_idle_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Shards that went quiet together (here: all, from the start) must not all poll in the same
    instant every StreamIdlePollSeconds (a daemon with hundreds of shards would send its
    GetRecords in bursts); and no shard waits longer than that between polls."""
    from esm.connectors.memory import MemoryStreamConnector

    reads: dict[str, list[float]] = {}
    read = MemoryStreamConnector.read

    async def logged(self: MemoryStreamConnector, shard_id: str, iterator: str, limit: int) -> Any:
        reads.setdefault(shard_id, []).append(h.clock.now())
        return await read(self, shard_id, iterator, limit)

    monkeypatch.setattr(MemoryStreamConnector, "read", logged)
    async with Harness(stream_config(), shards=8) as h:
        await h.advance(120)
    assert len(reads) == 8
    quiet_from = h.now() - 60
    for times in reads.values():
        late = [t for t in times if t >= quiet_from]
        gaps = [b - a for a, b in itertools.pairwise(late)]
        assert 10 <= len(late) and max(gaps) <= 5.0 + 1e-6  # StreamIdlePollSeconds, 5 by default
    # the instants each shard polls at in the last 5 s: one each, at times of their own
    last = {min(t for t in times if t >= h.now() - 5) for times in reads.values()}
    assert len(last) >= 6


async def test_a_backlog_is_read_in_growing_calls_and_a_caught_up_shard_from_small_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GetRecords' Limit starts at 1,000 (the first batch goes out while the rest is read),
    doubles while records are waiting, up to Kinesis' 10,000; caught up, it starts over."""
    from esm.connectors.memory import MemoryStreamConnector

    limits: list[int] = []
    read = MemoryStreamConnector.read

    async def logged(self: MemoryStreamConnector, shard_id: str, iterator: str, limit: int) -> Any:
        limits.append(limit)
        return await read(self, shard_id, iterator, limit)

    monkeypatch.setattr(MemoryStreamConnector, "read", logged)
    config = stream_config(BatchSize=1000)
    async with Harness(config, functions={"ledger": lambda event, context: None}) as h:
        await h.advance(1)  # one empty read: caught up
        h.put_kinesis_records("ledger", list(range(26_000)))
        await h.run_until_idle()
        grown = limits.index(2000) - 1
        assert limits[grown : grown + 4] == [1000, 2000, 4000, 8000]
        assert set(limits[:grown]) == {1000}
        assert max(limits) <= 10_000  # and no more than esm's buffer has room for
        caught_up = len(limits)
        h.put_kinesis_records("ledger", list(range(1500)))
        await h.run_until_idle()
        assert limits[caught_up:][-2:] == [1000, 2000]  # 1,000 of 1,500, then the other 500
        assert sum(len(i.event["Records"]) for i in h.invocations()) == 27_500


async def test_a_dynamodb_backlog_is_read_page_after_page_without_pausing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DynamoDB Streams returns at most 1,000 records a read: a full page means more are
    waiting, so the next read follows at once; the 4-a-second pace is for a caught-up shard."""
    from esm.connectors.memory import MemoryStreamConnector

    reads: list[tuple[float, int, int]] = []  # (virtual time, limit asked, records got)
    read = MemoryStreamConnector.read

    async def logged(self: MemoryStreamConnector, shard_id: str, iterator: str, limit: int) -> Any:
        result = await read(self, shard_id, iterator, limit)
        reads.append((h.clock.now(), limit, len(result.records)))
        return result

    monkeypatch.setattr(MemoryStreamConnector, "read", logged)
    config = {
        "Functions": {"users": {"Target": PLACEHOLDER}},
        "EventSourceMappings": [
            {
                "FunctionName": "users",
                "EventSourceArn": DDB,
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 1000,
            }
        ],
    }
    async with Harness(config, functions={"users": lambda e, c: None}) as h:
        await h.advance(1)
        h.write_dynamodb_items("users", [{"Id": i} for i in range(3500)])
        await h.run_until_idle()
    full = [r for r in reads if r[2] == 1000]
    assert len(full) == 3 and {limit for _, limit, _ in reads} == {1000}
    first = reads.index(full[0])
    assert reads[first + 3][2] == 500  # the rest, in the next read
    assert reads[first + 3][0] - reads[first][0] < 0.25  # no pause between the pages
