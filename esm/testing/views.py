"""What a test reads from the harness: messages and queues, and the invocations it recorded."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from esm.connectors.memory import MemoryBroker, MemoryMessage, MemoryQueue
from esm.destinations.memory import DeadLetter
from esm.functions import FunctionError, Ok, Outcome


@dataclass(frozen=True, slots=True)
class Message:
    """A message on (or deleted from) a queue."""

    message_id: str
    body: str
    receive_count: int
    sent_at: float
    group_id: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)  # botocore-shaped

    def json(self) -> Any:
        return json.loads(self.body)

    @classmethod
    def of(cls, m: MemoryMessage) -> Message:
        return cls(
            m.message_id, m.body, m.receive_count, m.sent_at, m.group_id, m.message_attributes
        )


class QueueView:
    """A queue of the harness, read live: what is on it, what the engine deleted from it."""

    def __init__(self, queue: MemoryQueue, broker: MemoryBroker) -> None:
        self._q = queue
        self._broker = broker

    def __repr__(self) -> str:
        return f"QueueView({self.arn!r}, messages={len(self)}, deleted={len(self._q.deleted)})"

    @property
    def arn(self) -> str:
        return self._q.arn

    @property
    def messages(self) -> list[Message]:
        """On the queue now (visible or in flight), oldest first."""
        return [Message.of(m) for m in self._q.messages]

    @property
    def deleted(self) -> list[Message]:
        """Deleted by the engine (processed, or filtered out), in the order of deletion."""
        return [Message.of(m) for m in self._q.deleted]

    def bodies(self) -> list[str]:
        return [m.body for m in self._q.messages]

    def deleted_bodies(self) -> list[str]:
        return [m.body for m in self._q.deleted]

    def json(self) -> list[Any]:
        """The bodies on the queue, parsed (invocation and on-failure records are JSON)."""
        return [json.loads(m.body) for m in self._q.messages]

    @property
    def visible(self) -> int:
        now = self._broker.clock.now()
        return sum(1 for m in self._q.messages if m.visible_at <= now)

    @property
    def in_flight(self) -> int:
        return len(self._q.messages) - self.visible

    @property
    def dead_letter_queue(self) -> QueueView:
        """The queue its redrive policy moves messages to."""
        if not self._q.dead_letter_arn:
            raise LookupError(f"{self.arn} has no redrive policy")
        return QueueView(self._broker.queue_state(self._q.dead_letter_arn), self._broker)

    def __len__(self) -> int:
        return len(self._q.messages)


@dataclass(frozen=True, slots=True)
class Invocation:
    """One call that reached a function: the event it got and what came back."""

    function: str
    invocation_type: str  # RequestResponse (mappings, invoke), Event (asynchronous)
    payload: bytes
    outcome: Outcome
    started_at: float  # virtual epoch seconds
    finished_at: float

    @property
    def event(self) -> Any:
        return orjson.loads(self.payload) if self.payload else {}

    @property
    def records(self) -> list[dict[str, Any]]:
        event = self.event
        return list(event.get("Records", [])) if isinstance(event, dict) else []

    @property
    def ok(self) -> bool:
        return isinstance(self.outcome, Ok)

    @property
    def response(self) -> Any:
        """The function's answer, parsed (JSON when it is), None after a function error."""
        if not isinstance(self.outcome, Ok):
            return None
        payload = self.outcome.payload
        try:
            return orjson.loads(payload) if payload else None
        except orjson.JSONDecodeError:
            return payload.decode("utf-8", "replace")

    @property
    def error(self) -> dict[str, Any] | None:
        """Lambda's error object (``errorType``, ``errorMessage`` …) after a function error."""
        if not isinstance(self.outcome, FunctionError):
            return None
        try:
            doc = orjson.loads(self.outcome.payload)
        except orjson.JSONDecodeError:
            return {"errorMessage": self.outcome.payload.decode("utf-8", "replace")}
        return doc if isinstance(doc, dict) else {"errorMessage": str(doc)}

    @property
    def batch_item_failures(self) -> list[str]:
        """The ``itemIdentifier`` values the response reported."""
        response = self.response
        if not isinstance(response, dict):
            return []
        failures = response.get("batchItemFailures") or []
        return [str(f.get("itemIdentifier")) for f in failures if isinstance(f, dict)]

    def bodies(self) -> list[str]:
        """SQS bodies of the batch."""
        return [r["body"] for r in self.records]

    def data(self) -> list[bytes]:
        """Decoded Kinesis payloads of the batch."""
        return [base64.b64decode(r["kinesis"]["data"]) for r in self.records]


def dead_letter(m: MemoryMessage) -> DeadLetter:
    """A dead-letter queue's message as the dead letter it carries (the attributes of
    docs/semantics.md §8.5)."""
    attrs = m.message_attributes

    def value(name: str) -> str:
        return str(attrs.get(name, {}).get("StringValue", ""))

    code = value("ErrorCode")
    return DeadLetter(m.body.encode(), value("RequestID"), int(code or 0), value("ErrorMessage"))
