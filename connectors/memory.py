"""In-process twins of the sources, on the engine's :class:`~esm.clock.Clock`.

:class:`MemoryBroker` holds SQS-like queues that behave as SQS does where the engine can tell:
visibility timeouts, ``ApproximateReceiveCount``, redrive to a dead-letter queue after
``maxReceiveCount``, FIFO message groups (a group with a message in flight gives nothing more),
long polls that return as soon as a message becomes visible. Records come out through the same
:func:`esm.events.sqs_record` as the real connector's, so the events are the same.

The testing harness and the engine's own unit tests run on it; nothing here touches a network.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.base import QueueConnector, Record
from esm.arns import Arn, is_fifo_queue
from esm.clock import Clock
from esm.errors import SourceError
from esm.events import sqs_record

SENDER_ID = "AIDAIENQZJOLO23YVJ4VO"


@dataclass(eq=False)
class MemoryMessage:
    message_id: str
    body: str
    sent_at: float
    seq: int
    group_id: str | None = None
    dedup_id: str | None = None
    message_attributes: dict[str, Any] = field(default_factory=dict)
    receive_count: int = 0
    first_receive_at: float | None = None
    visible_at: float = 0.0
    receipt_handle: str | None = None

    def botocore_shape(self) -> dict[str, Any]:
        """What ReceiveMessage would return for this message."""
        attrs = {
            "ApproximateReceiveCount": str(self.receive_count),
            "SentTimestamp": str(int(self.sent_at * 1000)),
            "SenderId": SENDER_ID,
            "ApproximateFirstReceiveTimestamp": str(int((self.first_receive_at or 0) * 1000)),
        }
        if self.group_id is not None:
            attrs["SequenceNumber"] = str(18849496460467696128 + self.seq)
            attrs["MessageGroupId"] = self.group_id
            attrs["MessageDeduplicationId"] = self.dedup_id or self.message_id
        shape: dict[str, Any] = {
            "MessageId": self.message_id,
            "ReceiptHandle": self.receipt_handle,
            "MD5OfBody": hashlib.md5(self.body.encode()).hexdigest(),
            "Body": self.body,
            "Attributes": attrs,
        }
        if self.message_attributes:
            shape["MessageAttributes"] = self.message_attributes
        return shape


@dataclass
class MemoryQueue:
    arn: str
    visibility_timeout_s: int = 30
    dead_letter_arn: str | None = None
    max_receive_count: int | None = None
    messages: list[MemoryMessage] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def fifo(self) -> bool:
        return is_fifo_queue(self.arn)

    def bodies(self) -> list[str]:
        return [m.body for m in self.messages]


class MemoryBroker:
    """Queues by ARN, on one clock. Also the :class:`~connectors.base.Sources` for them."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.queues: dict[str, MemoryQueue] = {}
        self._seq = itertools.count()

    def create_queue(
        self,
        arn: str,
        *,
        visibility_timeout_s: int = 30,
        dead_letter_arn: str | None = None,
        max_receive_count: int | None = None,
    ) -> MemoryQueue:
        q = MemoryQueue(arn, visibility_timeout_s, dead_letter_arn, max_receive_count)
        self.queues[arn] = q
        if dead_letter_arn and dead_letter_arn not in self.queues:
            self.create_queue(dead_letter_arn)
        return q

    def queue_state(self, arn: str) -> MemoryQueue:
        try:
            return self.queues[arn]
        except KeyError:
            raise SourceError(
                f"queue {arn} does not exist",
                code="AWS.SimpleQueueService.NonExistentQueue",
                retriable=False,
            ) from None

    def send(
        self,
        arn: str,
        body: str,
        *,
        group_id: str | None = None,
        dedup_id: str | None = None,
        message_attributes: dict[str, Any] | None = None,
        delay_s: float = 0.0,
    ) -> str:
        q = self.queue_state(arn)
        if q.fifo and group_id is None:
            raise ValueError("a FIFO queue needs a MessageGroupId")
        now = self.clock.now()
        msg = MemoryMessage(
            message_id=str(uuid.uuid4()),
            body=body,
            sent_at=now,
            seq=next(self._seq),
            group_id=group_id,
            dedup_id=dedup_id,
            message_attributes=dict(message_attributes or {}),
            visible_at=now + delay_s,
        )
        q.messages.append(msg)
        q.changed.set()
        return msg.message_id

    def queue(self, arn: str) -> QueueConnector:
        return MemoryQueueConnector(self, arn)

    # -- the SQS rules ---------------------------------------------------------------------------

    def _take(self, q: MemoryQueue, max_records: int, visibility_s: int) -> list[MemoryMessage]:
        now = self.clock.now()
        busy_groups = {
            m.group_id
            for m in q.messages
            if q.fifo and m.receipt_handle is not None and m.visible_at > now
        }
        out: list[MemoryMessage] = []
        for msg in list(q.messages):
            if len(out) >= max_records:
                break
            if msg.visible_at > now or (q.fifo and msg.group_id in busy_groups):
                continue
            if q.max_receive_count and msg.receive_count >= q.max_receive_count:
                self._redrive(q, msg)
                continue
            msg.receive_count += 1
            msg.first_receive_at = msg.first_receive_at or now
            msg.visible_at = now + visibility_s
            msg.receipt_handle = uuid.uuid4().hex
            out.append(msg)
        return out

    def _redrive(self, q: MemoryQueue, msg: MemoryMessage) -> None:
        q.messages.remove(msg)
        assert q.dead_letter_arn is not None
        dlq = self.queue_state(q.dead_letter_arn)
        msg.visible_at = self.clock.now()
        msg.receipt_handle = None
        dlq.messages.append(msg)
        dlq.changed.set()

    def _next_visible(self, q: MemoryQueue) -> float | None:
        now = self.clock.now()
        later = [m.visible_at for m in q.messages if m.visible_at > now]
        return min(later) if later else None


class MemoryQueueConnector:
    def __init__(self, broker: MemoryBroker, arn: str) -> None:
        self.source_arn = arn
        self.fifo = is_fifo_queue(arn)
        self._broker = broker
        self._region = Arn.parse(arn).region

    async def visibility_timeout_s(self) -> int:
        return self._broker.queue_state(self.source_arn).visibility_timeout_s

    async def receive(
        self, max_records: int, wait_s: float, visibility_timeout_s: int | None = None
    ) -> list[Record]:
        broker, clock = self._broker, self._broker.clock
        q = broker.queue_state(self.source_arn)
        visibility = (
            q.visibility_timeout_s if visibility_timeout_s is None else visibility_timeout_s
        )
        deadline = clock.now() + wait_s
        while True:
            q.changed.clear()
            taken = broker._take(q, min(10, max_records), visibility)
            now = clock.now()
            if taken or now >= deadline:
                return [self._record(m) for m in taken]
            nxt = broker._next_visible(q)
            timeout = min(deadline, nxt) - now if nxt is not None else deadline - now
            try:
                await clock.wait_for(q.changed.wait(), max(timeout, 0.0))
            except TimeoutError:
                pass

    def _record(self, msg: MemoryMessage) -> Record:
        data = sqs_record(msg.botocore_shape(), self.source_arn, self._region)
        return Record(
            data=data,
            item_id=msg.message_id,
            token=data["receiptHandle"],
            arrival=msg.sent_at,
            key=msg.group_id,
        )

    async def delete(self, records: Sequence[Record]) -> list[Record]:
        q = self._broker.queue_state(self.source_arn)
        handles = {r.token for r in records}
        deleted = {m.receipt_handle for m in q.messages if m.receipt_handle in handles}
        q.messages = [m for m in q.messages if m.receipt_handle not in handles]
        q.changed.set()
        return [r for r in records if r.token not in deleted]

    async def release(self, records: Sequence[Record]) -> None:
        q = self._broker.queue_state(self.source_arn)
        handles = {r.token for r in records}
        now = self._broker.clock.now()
        for m in q.messages:
            if m.receipt_handle in handles:
                m.visible_at = now
        q.changed.set()

    async def close(self) -> None:
        return None
