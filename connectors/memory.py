"""In-process twins of the sources, on the engine's :class:`~esm.clock.Clock`.

Streams (:class:`MemoryStream`) model what the stream worker depends on: shards with lineage
(split and merge close the parent, whose iterator then ends), iterators by position, records in
Kinesis's or DynamoDB Streams' shape through the same :mod:`esm.events` functions as the real
connectors, and iterators that can be made to expire.

:class:`MemoryBroker` holds SQS-like queues that behave as SQS does where the engine can tell:
visibility timeouts, ``ApproximateReceiveCount``, redrive to a dead-letter queue after
``maxReceiveCount``, FIFO message groups (a group with a message in flight gives nothing more),
long polls that return as soon as a message becomes visible. Records come out exactly as
:func:`esm.events.sqs_record` makes them from a ReceiveMessage reply, as the real connector's do
(``MemoryMessage.lambda_record`` builds them directly; a test holds the two equal).

The testing harness and the engine's own unit tests run on it; nothing here touches a network.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import heapq
import itertools
import os
import struct
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from esm.arns import Arn, is_fifo_queue
from esm.clock import Clock
from esm.connectors.base import Position, QueueConnector, ReadResult, Record, Shard, StreamConnector
from esm.errors import SourceError
from esm.events import (
    dynamodb_item_key,
    dynamodb_record,
    kinesis_record,
    sqs_message_attribute,
)

SENDER_ID = "AIDAIENQZJOLO23YVJ4VO"
HASH_SPACE = 2**32  # partition keys hash (crc32) into this space, split among shards


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
    md5_of_body: str = ""
    pos: int = 0  # order of arrival in the queue that holds it
    gen: int = 0  # bumped on every visibility change; older heap entries are stale
    _attributes_md5: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.md5_of_body:
            self.md5_of_body = hashlib.md5(self.body.encode()).hexdigest()

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
            "MD5OfBody": self.md5_of_body,
            "Body": self.body,
            "Attributes": attrs,
        }
        if self.message_attributes:
            shape["MessageAttributes"] = self.message_attributes
            shape["MD5OfMessageAttributes"] = self.md5_of_message_attributes()
        return shape

    def md5_of_message_attributes(self) -> str:
        if self._attributes_md5 is None:
            self._attributes_md5 = message_attributes_md5(self.message_attributes)
        return self._attributes_md5

    def lambda_record(self, queue_arn: str, region: str) -> dict[str, Any]:
        """Lambda's record for this message as last received: exactly
        ``sqs_record(self.botocore_shape(), queue_arn, region)``, key order included (a test
        holds them equal), built without the botocore-shaped dict in between."""
        group = self.group_id
        attrs = {
            "ApproximateReceiveCount": str(self.receive_count),
            "SentTimestamp": str(int(self.sent_at * 1000)),
        }
        if group is not None:
            attrs["SequenceNumber"] = str(18849496460467696128 + self.seq)
            attrs["MessageGroupId"] = group
        attrs["SenderId"] = SENDER_ID
        if group is not None:
            attrs["MessageDeduplicationId"] = self.dedup_id or self.message_id
        attrs["ApproximateFirstReceiveTimestamp"] = str(int((self.first_receive_at or 0) * 1000))
        record: dict[str, Any] = {
            "messageId": self.message_id,
            "receiptHandle": self.receipt_handle,
            "body": self.body,
            "attributes": attrs,
            "messageAttributes": {},
            "md5OfMessageAttributes": None,  # as on AWS, when the message has none
        }
        if self.message_attributes:
            record["messageAttributes"] = {
                name: sqs_message_attribute(v) for name, v in self.message_attributes.items()
            }
            record["md5OfMessageAttributes"] = self.md5_of_message_attributes()
        record["md5OfBody"] = self.md5_of_body
        record["eventSource"] = "aws:sqs"
        record["eventSourceARN"] = queue_arn
        record["awsRegion"] = region
        return record


def message_attributes_md5(attributes: dict[str, Any]) -> str:
    """SQS's ``MD5OfMessageAttributes`` of botocore-shaped message attributes: per attribute,
    sorted by name, the length-prefixed name, data type, a transport byte (1 string, 2 binary)
    and length-prefixed value."""

    def part(value: bytes) -> bytes:
        return struct.pack(">I", len(value)) + value

    digest = hashlib.md5()
    for name in sorted(attributes):
        value = attributes[name]
        digest.update(part(name.encode()) + part(str(value["DataType"]).encode()))
        if "BinaryValue" in value:
            binary = value["BinaryValue"]
            digest.update(b"\x02" + part(binary if isinstance(binary, bytes) else binary.encode()))
        else:
            digest.update(b"\x01" + part(str(value.get("StringValue", "")).encode()))
    return digest.hexdigest()


def _queue_order(msg: MemoryMessage) -> int:
    return msg.pos


class MemoryQueue:
    """One queue's messages, indexed so that receive, delete and release cost O(log n), not a
    scan: a heap of visible messages by arrival, a heap of hidden ones (in flight or delayed) by
    the time they become visible, and the in-flight ones by receipt handle. Heap entries carry
    the message's generation; an entry whose generation is old is skipped when it surfaces."""

    def __init__(
        self,
        arn: str,
        visibility_timeout_s: int = 30,
        dead_letter_arn: str | None = None,
        max_receive_count: int | None = None,
    ) -> None:
        self.arn = arn
        self.visibility_timeout_s = visibility_timeout_s
        self.dead_letter_arn = dead_letter_arn
        self.max_receive_count = max_receive_count
        self.fifo = is_fifo_queue(arn)
        self.deleted: list[MemoryMessage] = []  # by DeleteMessage, oldest first
        self.changed = asyncio.Event()
        self._held: dict[int, MemoryMessage] = {}  # by pos, in arrival order
        # visible: never received yet, in arrival order (most of them), and back again (a heap)
        self._fresh: collections.deque[tuple[int, int, MemoryMessage]] = collections.deque()
        self._visible: list[tuple[int, int, MemoryMessage]] = []  # (pos, gen, msg)
        self._hidden: list[tuple[float, int, int, MemoryMessage]] = []  # (at, pos, gen, msg)
        self._by_handle: dict[str, MemoryMessage] = {}
        self._pos = itertools.count()
        self._handle_prefix = os.urandom(8).hex()
        self._handles = itertools.count()

    @property
    def messages(self) -> list[MemoryMessage]:
        """Every message the queue holds (visible, in flight or delayed), oldest first."""
        return list(self._held.values())

    def __len__(self) -> int:
        return len(self._held)

    def bodies(self) -> list[str]:
        return [m.body for m in self._held.values()]

    def add(self, msg: MemoryMessage, now: float) -> None:
        msg.pos = next(self._pos)
        self._held[msg.pos] = msg
        if msg.visible_at <= now:
            msg.gen += 1
            msg.visible_at = now
            self._fresh.append((msg.pos, msg.gen, msg))
        else:
            self._show_at(msg, msg.visible_at, now)
        self.changed.set()

    def _show_at(self, msg: MemoryMessage, at: float, now: float) -> None:
        msg.gen += 1
        msg.visible_at = at
        if at <= now:
            heapq.heappush(self._visible, (msg.pos, msg.gen, msg))
        else:
            heapq.heappush(self._hidden, (at, msg.pos, msg.gen, msg))

    def _surface(self, now: float) -> None:
        """Move hidden messages whose time has come to the visible heap."""
        hidden = self._hidden
        while hidden and hidden[0][0] <= now:
            _, pos, gen, msg = heapq.heappop(hidden)
            if gen == msg.gen and self._held.get(pos) is msg:
                heapq.heappush(self._visible, (pos, gen, msg))

    def next_visible(self, now: float) -> float | None:
        """When the earliest hidden message becomes visible (None: nothing is hidden)."""
        hidden = self._hidden
        while hidden and (hidden[0][2] != hidden[0][3].gen or hidden[0][1] not in self._held):
            heapq.heappop(hidden)
        return hidden[0][0] if hidden else None

    def take(
        self, max_records: int, visibility_s: float, now: float
    ) -> tuple[list[MemoryMessage], list[MemoryMessage]]:
        """Receive up to ``max_records`` visible messages, oldest first. Returns them and the
        messages removed for the dead-letter queue instead (received ``maxReceiveCount`` times
        already). On FIFO, a group with a message in flight gives nothing."""
        self._surface(now)
        busy = (
            {m.group_id for m in self._by_handle.values() if m.visible_at > now}
            if self.fifo
            else set()
        )
        out: list[MemoryMessage] = []
        redriven: list[MemoryMessage] = []
        skipped: list[tuple[int, int, MemoryMessage]] = []
        fresh, back, held = self._fresh, self._visible, self._held
        by_handle, hidden, handles = self._by_handle, self._hidden, self._handles
        prefix, max_count = self._handle_prefix, self.max_receive_count
        until = now + visibility_s
        while (fresh or back) and len(out) < max_records:
            # the oldest of both: SQS gives no order, but tests read better in arrival order
            if back and (not fresh or back[0][0] < fresh[0][0]):
                entry = heapq.heappop(back)
            else:
                entry = fresh.popleft()
            pos, gen, msg = entry
            if gen != msg.gen or held.get(pos) is not msg:
                continue  # stale: deleted, or made visible again by a newer entry
            if busy and msg.group_id in busy:
                skipped.append(entry)
                continue
            if max_count and msg.receive_count >= max_count:
                redriven.append(self._remove(msg))
                continue
            msg.receive_count += 1
            if msg.first_receive_at is None:
                msg.first_receive_at = now
            if msg.receipt_handle is not None:
                by_handle.pop(msg.receipt_handle, None)
            handle = msg.receipt_handle = f"{prefix}{next(handles):08x}"
            by_handle[handle] = msg
            # hidden until the visibility timeout (as _show_at, inlined: this is the hot path)
            msg.gen = gen = msg.gen + 1
            msg.visible_at = until
            heapq.heappush(hidden, (until, pos, gen, msg))
            out.append(msg)
        for entry in skipped:
            heapq.heappush(back, entry)
        return out, redriven

    def _remove(self, msg: MemoryMessage) -> MemoryMessage:
        del self._held[msg.pos]
        if msg.receipt_handle is not None:
            self._by_handle.pop(msg.receipt_handle, None)
        return msg

    def delete(self, handles: Sequence[str]) -> set[str]:
        """DeleteMessage for each handle; returns the handles that matched a message."""
        gone = [m for m in map(self._by_handle.get, handles) if m is not None]
        gone.sort(key=_queue_order)
        for msg in gone:
            self.deleted.append(self._remove(msg))
        self.changed.set()
        return {m.receipt_handle for m in gone if m.receipt_handle is not None}

    def release(self, handles: Sequence[str], now: float) -> None:
        """ChangeMessageVisibility(0) for each handle."""
        for handle in handles:
            msg = self._by_handle.get(handle)
            if msg is not None:
                self._show_at(msg, now, now)
        self.changed.set()


class MemoryBroker:
    """Queues by ARN, on one clock. Also the :class:`~esm.connectors.base.Sources` for them."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.queues: dict[str, MemoryQueue] = {}
        self.streams: dict[str, MemoryStream] = {}
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
        q.add(msg, now)
        return msg.message_id

    def queue(self, arn: str) -> QueueConnector:
        return MemoryQueueConnector(self, arn)

    # -- streams -------------------------------------------------------------------------------

    def create_stream(self, arn: str, *, shards: int = 1) -> MemoryStream:
        """A Kinesis stream or DynamoDB stream (by ARN) with ``shards`` open shards."""
        stream = MemoryStream(arn, self.clock)
        step = HASH_SPACE // shards
        for i in range(shards):
            stream.add_shard((), i * step, HASH_SPACE if i == shards - 1 else (i + 1) * step)
        self.streams[arn] = stream
        return stream

    def stream_state(self, arn: str) -> MemoryStream:
        try:
            return self.streams[arn]
        except KeyError:
            raise SourceError(
                f"stream {arn} does not exist", code="ResourceNotFoundException", retriable=False
            ) from None

    def stream(self, arn: str, *, invoke_identity_arn: str) -> StreamConnector:
        return MemoryStreamConnector(self, arn, invoke_identity_arn)

    # -- the SQS rules ---------------------------------------------------------------------------

    def _take(self, q: MemoryQueue, max_records: int, visibility_s: int) -> list[MemoryMessage]:
        now = self.clock.now()
        taken, redriven = q.take(max_records, visibility_s, now)
        if redriven:
            assert q.dead_letter_arn is not None
            dlq = self.queue_state(q.dead_letter_arn)
            for msg in redriven:
                msg.visible_at = now
                msg.receipt_handle = None
                dlq.add(msg, now)
        return taken


class MemoryQueueConnector:
    def __init__(self, broker: MemoryBroker, arn: str) -> None:
        self.source_arn = arn
        self.fifo = is_fifo_queue(arn)
        self._broker = broker
        self._region = Arn.parse(arn).region

    async def visibility_timeout_s(self) -> int:
        return self._broker.queue_state(self.source_arn).visibility_timeout_s

    async def backlog(self) -> tuple[int, int]:
        """(visible, not visible) messages, as SQS's approximate counts (esm status)."""
        q = self._broker.queue_state(self.source_arn)
        now = self._broker.clock.now()
        visible = sum(1 for m in q.messages if m.visible_at <= now)
        return visible, len(q) - visible

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
            nxt = q.next_visible(now)
            timeout = min(deadline, nxt) - now if nxt is not None else deadline - now
            try:
                await clock.wait_for(q.changed.wait(), max(timeout, 0.0))
            except TimeoutError:
                pass

    def _record(self, msg: MemoryMessage) -> Record:
        data = msg.lambda_record(self.source_arn, self._region)
        return Record(
            data=data,
            item_id=msg.message_id,
            token=data["receiptHandle"],
            arrival=msg.sent_at,
            key=msg.group_id,
        )

    async def delete(self, records: Sequence[Record]) -> list[Record]:
        q = self._broker.queue_state(self.source_arn)
        deleted = q.delete([r.token for r in records])
        return [r for r in records if r.token not in deleted]

    async def release(self, records: Sequence[Record]) -> None:
        q = self._broker.queue_state(self.source_arn)
        q.release([r.token for r in records], self._broker.clock.now())

    async def close(self) -> None:
        return None


# -- streams ---------------------------------------------------------------------------------------


@dataclass(eq=False)
class MemoryShard:
    shard_id: str
    parent_ids: tuple[str, ...]
    lo: int  # the shard's hash key range [lo, hi), as Kinesis routes partition keys
    hi: int
    records: list[dict[str, Any]] = field(default_factory=list)  # botocore-shaped
    closed: bool = False

    def info(self) -> Shard:
        start = _sequence(self.records[0]) if self.records else None
        end = (_sequence(self.records[-1]) if self.records else "0") if self.closed else None
        return Shard(self.shard_id, self.parent_ids, start, end)


class MemoryStream:
    """One Kinesis or DynamoDB stream. Sequence numbers increase across the whole stream."""

    def __init__(self, arn: str, clock: Clock) -> None:
        self.arn = arn
        self.kind = "dynamodb" if Arn.parse(arn).service == "dynamodb" else "kinesis"
        self.clock = clock
        self.shards: dict[str, MemoryShard] = {}
        self._seq = itertools.count(1)
        self._iterators: dict[str, tuple[str, int]] = {}
        self._expired: set[str] = set()
        self.changed = asyncio.Event()

    def add_shard(self, parents: tuple[str, ...], lo: int, hi: int) -> MemoryShard:
        sid = f"shardId-{len(self.shards):012d}"
        shard = MemoryShard(sid, parents, lo, hi)
        self.shards[sid] = shard
        return shard

    def open_shards(self) -> list[MemoryShard]:
        return [s for s in self.shards.values() if not s.closed]

    def _next_seq(self) -> str:
        return f"{next(self._seq):021d}"

    def _route(self, key: str) -> MemoryShard:
        h = zlib.crc32(key.encode())
        return next(s for s in self.open_shards() if s.lo <= h < s.hi)

    def put_record(
        self, data: bytes | str, partition_key: str, *, shard_id: str | None = None
    ) -> tuple[str, str]:
        """A Kinesis PutRecord; returns (shard id, sequence number)."""
        shard = self.shards[shard_id] if shard_id else self._route(partition_key)
        seq = self._next_seq()
        shard.records.append(
            {
                "SequenceNumber": seq,
                "ApproximateArrivalTimestamp": datetime.fromtimestamp(self.clock.now(), UTC),
                "Data": data.encode() if isinstance(data, str) else data,
                "PartitionKey": partition_key,
            }
        )
        self.changed.set()
        return shard.shard_id, seq

    def write(
        self,
        event_name: str,
        keys: dict[str, Any],
        *,
        new_image: dict[str, Any] | None = None,
        old_image: dict[str, Any] | None = None,
        view_type: str = "NEW_AND_OLD_IMAGES",
        size_bytes: int = 26,
    ) -> tuple[str, str]:
        """A DynamoDB stream record (images in DynamoDB JSON); returns (shard id, sequence)."""
        shard = self._route(dynamodb_item_key(keys))
        seq = self._next_seq()
        ddb: dict[str, Any] = {
            "ApproximateCreationDateTime": datetime.fromtimestamp(int(self.clock.now()), UTC),
            "Keys": keys,
        }
        if new_image is not None and view_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
            ddb["NewImage"] = new_image
        if old_image is not None and view_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
            ddb["OldImage"] = old_image
        ddb |= {"SequenceNumber": seq, "SizeBytes": size_bytes, "StreamViewType": view_type}
        shard.records.append(
            {
                "eventID": uuid.uuid4().hex,
                "eventName": event_name,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": Arn.parse(self.arn).region,
                "dynamodb": ddb,
            }
        )
        self.changed.set()
        return shard.shard_id, seq

    def split(self, shard_id: str) -> tuple[str, str]:
        """Close ``shard_id``; two children split its hash key range and take its new records."""
        parent = self.shards[shard_id]
        parent.closed = True
        mid = (parent.lo + parent.hi) // 2
        a = self.add_shard((shard_id,), parent.lo, mid)
        b = self.add_shard((shard_id,), mid, parent.hi)
        return a.shard_id, b.shard_id

    def merge(self, shard_id: str, adjacent_id: str) -> str:
        """Close two adjacent shards; one child with both as parents takes their range."""
        x, y = self.shards[shard_id], self.shards[adjacent_id]
        if not (x.hi == y.lo or y.hi == x.lo):
            raise ValueError("MergeShards needs adjacent hash key ranges")
        x.closed = y.closed = True
        return self.add_shard((shard_id, adjacent_id), min(x.lo, y.lo), max(x.hi, y.hi)).shard_id

    def expire_iterators(self) -> None:
        """Every iterator handed out so far expires (ExpiredIteratorException)."""
        self._expired |= set(self._iterators)

    # -- what the connector calls --------------------------------------------------------------

    def iterator(self, shard_id: str, position: Position) -> str:
        shard = self.shards[shard_id]
        seqs = [
            int(r.get("SequenceNumber") or r["dynamodb"]["SequenceNumber"]) for r in shard.records
        ]
        if position.type == "TRIM_HORIZON":
            index = 0
        elif position.type == "LATEST":
            index = len(seqs)
        elif position.type == "AT_TIMESTAMP":
            ts = position.timestamp or 0.0
            index = next((i for i, r in enumerate(shard.records) if _arrival(r) >= ts), len(seqs))
        else:
            target = int(position.sequence_number or 0)
            after = position.type == "AFTER_SEQUENCE_NUMBER"
            index = next(
                (i for i, s in enumerate(seqs) if (s > target if after else s >= target)),
                len(seqs),
            )
        token = uuid.uuid4().hex
        self._iterators[token] = (shard_id, index)
        return token

    def read(self, token: str, limit: int) -> tuple[list[dict[str, Any]], str | None, str]:
        if token in self._expired or token not in self._iterators:
            raise SourceError("Iterator expired", code="ExpiredIteratorException", retriable=True)
        shard_id, index = self._iterators.pop(token)
        shard = self.shards[shard_id]
        out = shard.records[index : index + limit]
        index += len(out)
        if shard.closed and index >= len(shard.records):
            return out, None, shard_id
        nxt = uuid.uuid4().hex
        self._iterators[nxt] = (shard_id, index)
        return out, nxt, shard_id


def _sequence(raw: dict[str, Any]) -> str:
    return str(raw.get("SequenceNumber") or raw["dynamodb"]["SequenceNumber"])


def _arrival(raw: dict[str, Any]) -> float:
    ts = raw.get("ApproximateArrivalTimestamp") or raw["dynamodb"]["ApproximateCreationDateTime"]
    return float(ts.timestamp())


class MemoryStreamConnector:
    def __init__(self, broker: MemoryBroker, arn: str, invoke_identity_arn: str) -> None:
        self.source_arn = arn
        self._broker = broker
        self._identity = invoke_identity_arn
        self._region = Arn.parse(arn).region
        self.max_read = 1000 if Arn.parse(arn).service == "dynamodb" else 10_000  # as on AWS

    async def list_shards(self) -> list[Shard]:
        return [s.info() for s in self._broker.stream_state(self.source_arn).shards.values()]

    async def open(self, shard_id: str, position: Position) -> str:
        return self._broker.stream_state(self.source_arn).iterator(shard_id, position)

    async def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult:
        stream = self._broker.stream_state(self.source_arn)
        raws, nxt, sid = stream.read(iterator, limit)
        records = [self._record(stream, raw, sid) for raw in raws]
        shard = stream.shards[sid]
        behind = 0 if nxt is None else len(shard.records) - stream._iterators[nxt][1]
        return ReadResult(records, nxt, millis_behind=1000 if behind else 0)

    def _record(self, stream: MemoryStream, raw: dict[str, Any], shard_id: str) -> Record:
        if stream.kind == "kinesis":
            data = kinesis_record(
                raw,
                shard_id=shard_id,
                stream_arn=self.source_arn,
                region=self._region,
                invoke_identity_arn=self._identity,
            )
            seq = raw["SequenceNumber"]
            return Record(
                data=data, item_id=seq, token=seq, arrival=_arrival(raw), key=raw["PartitionKey"]
            )
        data = dynamodb_record(raw, stream_arn=self.source_arn, region=self._region)
        seq = raw["dynamodb"]["SequenceNumber"]
        return Record(
            data=data,
            item_id=seq,
            token=seq,
            arrival=_arrival(raw),
            key=dynamodb_item_key(raw["dynamodb"]["Keys"]),
        )

    async def close(self) -> None:
        return None
