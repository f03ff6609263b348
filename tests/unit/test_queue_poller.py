"""The SQS poller on the in-memory queue and a virtual clock: hours of queue time in milliseconds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from esm.clock import VirtualClock, settle
from esm.config import parse_config
from esm.connectors.memory import MemoryBroker
from esm.engine import Engine
from tests.fixtures import recorder
from tests.support import unique

ARN = "arn:aws:sqs:us-east-1:000000000000:"
ASYNC_TARGET = "python:tests.fixtures.recorder.handle_async"


async def run_until(clock: VirtualClock, cond: Callable[[], bool], *, max_s: float = 86400) -> None:
    """Let the engine run, jumping virtual time to the next timer whenever it is idle."""
    start = clock.now()
    while not cond():
        await settle()
        if cond():
            return
        assert clock.now() - start <= max_s, f"not done after {max_s} virtual seconds"
        if not await clock.advance_to_next():
            await asyncio.sleep(0)


class engine:  # used as ``async with engine(...) as eng``
    """An engine on the virtual clock; leaving stops it without waiting for virtual time."""

    def __init__(
        self,
        clock: VirtualClock,
        broker: MemoryBroker,
        name: str,
        mapping: dict[str, Any],
        **function: Any,
    ) -> None:
        config = parse_config(
            {
                "Functions": {name: {"Target": ASYNC_TARGET, **function}},
                "EventSourceMappings": [{"FunctionName": name, **mapping}],
            }
        )
        self.engine = Engine(config, clock=clock, sources=broker)

    async def __aenter__(self) -> Engine:
        await self.engine.start()
        return self.engine

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.aclose(deadline_s=0)


async def test_fifo_group_stops_at_its_first_failure_and_keeps_order() -> None:
    clock = VirtualClock()
    broker = MemoryBroker(clock)
    name = unique("fifo")
    arn = ARN + name + ".fifo"
    broker.create_queue(arn, visibility_timeout_s=30)
    for n in range(6):
        for g in ("a", "b"):
            broker.send(arn, json.dumps({"g": g, "n": n}), group_id=g)
    processed: list[tuple[str, int]] = []
    failed = set()

    def behave(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for r in event["Records"]:
            msg = json.loads(r["body"])
            if (msg["g"], msg["n"]) == ("a", 2) and "a2" not in failed:
                failed.add("a2")
                failures.append({"itemIdentifier": r["messageId"]})  # reports only a2
                continue
            processed.append((msg["g"], msg["n"]))
        return {"batchItemFailures": failures}

    recorder.ASYNC_BEHAVIOUR[name] = behave
    async with engine(
        clock,
        broker,
        name,
        {
            "EventSourceArn": arn,
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    ):
        await run_until(clock, lambda: not broker.queues[arn].messages)
    assert [n for g, n in processed if g == "b"] == list(range(6))
    # The handler went on past a2 in the first batch (a3, a4), but the engine kept every later
    # message of group a, so they come back after a2, in order: the queue's order holds.
    assert [n for g, n in processed if g == "a"][-4:] == [2, 3, 4, 5]
    redelivered = [json.loads(r["body"]) for e in recorder.EVENTS[name][1:] for r in e["Records"]]
    assert [m["n"] for m in redelivered if m["g"] == "a"] == [2, 3, 4, 5]
    assert clock.now() - 1_700_000_000 >= 30  # a2 waited out its visibility timeout


async def test_poison_message_reaches_the_dlq_after_max_receive_count() -> None:
    clock = VirtualClock()
    broker = MemoryBroker(clock)
    name = unique("dlq")
    arn, dlq = ARN + name, ARN + name + "-dlq"
    broker.create_queue(arn, visibility_timeout_s=300, dead_letter_arn=dlq, max_receive_count=5)
    for body in ("ok-1", "poison", "ok-2"):
        broker.send(arn, body)
    recorder.ASYNC_BEHAVIOUR[name] = lambda event, context: {
        "batchItemFailures": [
            {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "poison"
        ]
    }
    async with engine(
        clock,
        broker,
        name,
        {"EventSourceArn": arn, "FunctionResponseTypes": ["ReportBatchItemFailures"]},
    ) as eng:
        await run_until(clock, lambda: bool(broker.queues[dlq].messages))
        assert not broker.queues[arn].messages
    assert broker.queues[dlq].bodies() == ["poison"]
    poison = [r for e in recorder.EVENTS[name] for r in e["Records"] if r["body"] == "poison"]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in poison] == ["1", "2", "3", "4", "5"]
    assert eng.metrics.get("DeletedEventCount") == 2
    assert clock.now() - 1_700_000_000 >= 5 * 300 - 300  # four visibility timeouts, virtually


async def test_concurrency_grows_to_maximum_under_backlog_then_shrinks_to_five() -> None:
    clock = VirtualClock()
    broker = MemoryBroker(clock)
    name = unique("scale")
    arn = ARN + name
    broker.create_queue(arn, visibility_timeout_s=60)
    for i in range(3000):
        broker.send(arn, str(i))
    running = {"now": 0, "max": 0}

    async def behave(event: dict[str, Any], context: Any) -> None:
        running["now"] += 1
        running["max"] = max(running["max"], running["now"])
        await clock.sleep(1.0)
        running["now"] -= 1

    recorder.ASYNC_BEHAVIOUR[name] = behave
    async with engine(
        clock,
        broker,
        name,
        {"EventSourceArn": arn, "ScalingConfig": {"MaximumConcurrency": 20}},
        Timeout=10,
    ) as eng:
        (rt,) = eng.mappings.values()
        assert rt.poller is not None
        await run_until(clock, lambda: running["max"] >= 5)
        assert running["max"] == 5  # starts at five
        await run_until(clock, lambda: not broker.queues[arn].messages, max_s=3600)
        assert running["max"] == 20  # grew to MaximumConcurrency, never past it
        await run_until(clock, lambda: rt.poller is not None and rt.poller.concurrency == 5)
    assert len({r["body"] for e in recorder.EVENTS[name] for r in e["Records"]}) == 3000


async def test_throttles_are_retried_without_losing_or_failing_messages() -> None:
    clock = VirtualClock()
    broker = MemoryBroker(clock)
    name = unique("throttle")
    arn = ARN + name
    broker.create_queue(arn, visibility_timeout_s=120)
    for i in range(40):
        broker.send(arn, str(i))

    async def behave(event: dict[str, Any], context: Any) -> None:
        await clock.sleep(2.0)

    recorder.ASYNC_BEHAVIOUR[name] = behave
    async with engine(
        clock,
        broker,
        name,
        {"EventSourceArn": arn, "BatchSize": 2},
        ReservedConcurrentExecutions=1,
        Timeout=10,
    ) as eng:
        await run_until(clock, lambda: not broker.queues[arn].messages)
    assert eng.metrics.get("Throttles") > 0
    assert eng.metrics.get("Errors") == 0
    assert sorted(int(r["body"]) for e in recorder.EVENTS[name] for r in e["Records"]) == list(
        range(40)
    )
    assert eng.metrics.get("DeletedEventCount") == 40
