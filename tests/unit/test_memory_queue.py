"""The in-memory SQS twin: SQS's rules where the engine can tell, on a virtual clock."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from esm.clock import VirtualClock
from esm.connectors.memory import MemoryBroker
from esm.events import sqs_record

ARN = "arn:aws:sqs:us-east-1:123456789012:q"
FIFO = "arn:aws:sqs:us-east-1:123456789012:q.fifo"
DLQ = "arn:aws:sqs:us-east-1:123456789012:dlq"


def bodies(records: list) -> list[str]:  # type: ignore[type-arg]
    return [r.data["body"] for r in records]


async def test_oldest_first_and_hidden_until_the_visibility_timeout() -> None:
    clock = VirtualClock()
    broker = MemoryBroker(clock)
    broker.create_queue(ARN, visibility_timeout_s=30)
    for i in range(5):
        broker.send(ARN, f"m{i}")
    conn = broker.queue(ARN)
    first = await conn.receive(3, 0)
    assert bodies(first) == ["m0", "m1", "m2"]
    assert bodies(await conn.receive(10, 0)) == ["m3", "m4"]
    assert await conn.receive(10, 0) == []
    await clock.advance(30)
    # back after the timeout, in arrival order, with a new receive count and handle
    again = await conn.receive(10, 0)
    assert bodies(again) == ["m0", "m1", "m2", "m3", "m4"]
    assert {r.data["attributes"]["ApproximateReceiveCount"] for r in again} == {"2"}
    # the old handle still deletes nothing once the message was received again
    assert await conn.delete(first) == first
    assert await conn.delete(again[:2]) == []
    assert broker.queues[ARN].bodies() == ["m2", "m3", "m4"]
    assert [m.body for m in broker.queues[ARN].deleted] == ["m0", "m1"]


async def test_release_makes_visible_once_not_twice() -> None:
    clock = VirtualClock()
    broker = MemoryBroker(clock)
    broker.create_queue(ARN, visibility_timeout_s=30)
    broker.send(ARN, "a")
    conn = broker.queue(ARN)
    got = await conn.receive(10, 0)
    await conn.release(got)
    got = await conn.receive(10, 0)  # received again at the same instant
    assert bodies(got) == ["a"]
    await clock.advance(30)
    # both the first and the second receive's hidden entries fall due now: one message only
    assert bodies(await conn.receive(10, 0)) == ["a"]
    assert await conn.receive(10, 0) == []


async def test_delay_and_long_poll_wake_up_when_a_message_becomes_visible() -> None:
    clock = VirtualClock()
    broker = MemoryBroker(clock)
    broker.create_queue(ARN)
    broker.send(ARN, "later", delay_s=5)
    broker.send(ARN, "now")
    conn = broker.queue(ARN)
    assert bodies(await conn.receive(10, 0)) == ["now"]
    poll = asyncio.ensure_future(conn.receive(10, 20))
    await clock.advance(4.9)
    assert not poll.done()
    await clock.advance(0.1)
    assert bodies(await poll) == ["later"]


async def test_redrive_after_max_receive_count_keeps_the_count() -> None:
    clock = VirtualClock()
    broker = MemoryBroker(clock)
    broker.create_queue(ARN, visibility_timeout_s=1, dead_letter_arn=DLQ, max_receive_count=2)
    broker.send(ARN, "poison")
    broker.send(ARN, "fine")
    conn = broker.queue(ARN)
    for _ in range(2):
        got = await conn.receive(10, 0)
        await conn.delete([r for r in got if r.data["body"] == "fine"])
        await clock.advance(1)
    assert await conn.receive(10, 0) == []
    assert broker.queues[ARN].bodies() == []
    (dead,) = broker.queues[DLQ].messages
    assert (dead.body, dead.receive_count) == ("poison", 2)
    assert bodies(await broker.queue(DLQ).receive(10, 0)) == ["poison"]


async def test_fifo_group_in_flight_gives_nothing_until_done() -> None:
    clock = VirtualClock()
    broker = MemoryBroker(clock)
    broker.create_queue(FIFO, visibility_timeout_s=30)
    for i in range(3):
        broker.send(FIFO, f"a{i}", group_id="A")
    broker.send(FIFO, "b0", group_id="B")
    conn = broker.queue(FIFO)
    first = await conn.receive(2, 0)
    assert bodies(first) == ["a0", "a1"]
    assert bodies(await conn.receive(10, 0)) == ["b0"]  # group A is busy
    await conn.release(first[1:])  # a1 back, a0 still in flight: A stays busy
    assert await conn.receive(10, 0) == []
    await conn.delete(first[:1])
    assert bodies(await conn.receive(10, 0)) == ["a1", "a2"]  # in order, a1 first again


@pytest.mark.parametrize(
    "send",
    [
        {"body": "plain"},
        {"body": '{"json": true}', "group_id": "g1"},
        {"body": "x", "group_id": "g2", "dedup_id": "d-1"},
        {
            "body": "with attributes",
            "message_attributes": {
                "b": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
                "a": {"DataType": "String", "StringValue": "hello"},
                "n": {"DataType": "Number.int", "StringValue": "7"},
            },
        },
    ],
)
async def test_records_are_sqs_record_of_the_receive_reply(send: dict[str, Any]) -> None:
    arn = FIFO if "group_id" in send else ARN
    clock = VirtualClock()
    broker = MemoryBroker(clock)
    broker.create_queue(arn, visibility_timeout_s=1)
    broker.send(arn, **send)
    conn = broker.queue(arn)
    for _ in range(2):  # first receive and a redelivery
        (got,) = await conn.receive(10, 0)
        (msg,) = broker.queues[arn].messages
        expected = sqs_record(msg.botocore_shape(), arn, "us-east-1")
        # byte for byte: same keys, same order, same values
        assert orjson.dumps(got.data) == orjson.dumps(expected)
        await clock.advance(1)
