"""A store that loses its data (Redis restarted without persistence, a failover to a replica that
had not caught up, FLUSHALL): the daemon notices and rebuilds what it owns, says so once, and the
work goes on. Here on the in-memory store and a virtual clock (FLUSHALL is the data loss); the
same on a real Redis killed and restarted empty is in tests/integration/test_store_outages.py."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from esm.testing import Harness

A = "arn:aws:sqs:us-east-1:000000000000:"
KINESIS = "arn:aws:kinesis:us-east-1:000000000000:stream/ledger"
OK = "python:handlers.placeholder"


def config() -> dict[str, Any]:
    return {
        "Functions": {
            "orders": {"Target": OK, "Timeout": 10},
            "notify": {"Target": OK},
            "ledger": {"Target": OK},
        },
        "EventSourceMappings": [
            {"FunctionName": "orders", "EventSourceArn": A + "orders"},
            {
                "FunctionName": "ledger",
                "EventSourceArn": KINESIS,
                "StartingPosition": "TRIM_HORIZON",
            },
        ],
        "Resources": {
            "Orders": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "orders"}},
            "Returns": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "returns"}},
        },
    }


def ok(event: Any, context: Any) -> None:
    return None


FUNCTIONS = {"orders": ok, "notify": ok, "ledger": ok}


def lost_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "lost its data" in r.getMessage()]


async def test_config_mappings_come_back_and_keep_running(caplog: pytest.LogCaptureFixture) -> None:
    async with Harness(config(), functions=FUNCTIONS) as h:
        api = await h.engine.control.create_mapping(
            {"FunctionName": "orders", "EventSourceArn": A + "returns"}
        )
        await h.advance(2)
        before = {uuid: rt.task for uuid, rt in h.engine.mappings.items()}
        assert len(before) == 3
        config_uuids = {h.mapping(A + "orders").uuid, h.mapping("ledger").uuid}

        await h.store.redis.flushall()
        await h.advance(2)  # the registry watch looks every RegistryPollSeconds (1 s)

        (line,) = lost_lines(caplog)
        assert line.levelno == logging.ERROR
        message = line.getMessage()
        assert "Putting back 2 mapping(s) of the config file" in message
        assert f"1 mapping(s) created through the API ({api['UUID']})" in message
        records = await h.engine.registry.mappings()
        assert set(records) == config_uuids
        assert {r.origin for r in records.values()} == {"config"}
        assert {r.state for r in records.values()} == {"Enabled"}
        # the config mappings were never stopped; the API one is gone with its definition
        assert {u: rt.task for u, rt in h.engine.mappings.items()} == {
            u: before[u] for u in config_uuids
        }
        health = h.engine.health()
        assert health["status"] == "ok", health
        assert health["mappings"]["states"] == {u: "Enabled" for u in sorted(config_uuids)}

        h.put_sqs_messages("orders", ["after"])
        await h.run_until_idle()
        assert h.queue("orders").deleted_bodies() == ["after"]
        await h.advance(5)
        assert len(lost_lines(caplog)) == 1  # said once, not at every look


@pytest.mark.parametrize("noticed_first", [True, False], ids=["noticed", "not-yet-noticed"])
async def test_async_events_accepted_after_the_loss_run(noticed_first: bool) -> None:
    """The consumer group is gone with the data: whether the daemon noticed the loss first or
    the worker meets NOGROUP first, the group is created again from the stream's start and an
    event accepted after the loss runs once."""
    async with Harness(config(), functions=FUNCTIONS) as h:
        await h.invoke_async("notify", {"n": 1})
        await h.run_until_idle()
        await h.store.redis.flushall()
        if noticed_first:
            await h.advance(2)
        await h.invoke_async("notify", {"n": 2})
        await h.run_until_idle()
        assert [i.event for i in h.invocations("notify")] == [{"n": 1}, {"n": 2}]


async def test_a_stream_whose_checkpoint_was_lost_starts_again_from_its_starting_position(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Harness(config(), functions=FUNCTIONS) as h:
        seqs = h.put_kinesis_records("ledger", [{"n": i} for i in range(3)])
        await h.run_until_idle()
        assert await h.checkpoints("ledger") == {"shardId-000000000000": seqs[-1]}

        await h.store.redis.flushall()
        # the consumer learns that its lease is gone when it renews it (a third of the lease)
        await h.advance(h.config.settings.lease_s)

        assert await h.checkpoints("ledger") == {"shardId-000000000000": seqs[-1]}
        seen = [
            json.loads(base64.b64decode(r["kinesis"]["data"]))["n"]
            for i in h.invocations("ledger")
            for r in i.records
        ]
        assert seen == [0, 1, 2, 0, 1, 2]  # TRIM_HORIZON: read again from the start
        (warning,) = [r.getMessage() for r in caplog.records if "checkpoint (" in r.getMessage()]
        assert f"shard shardId-000000000000: its checkpoint ({seqs[-1]}) is gone" in warning
        assert warning.endswith("again from TRIM_HORIZON")
