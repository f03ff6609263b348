"""The seam between the engine and event sources.

A connector turns a source's API into :class:`Record` values that already carry the exact record
JSON Lambda would put in ``event["Records"]``, and carries acknowledgements back. Two shapes:

- :class:`QueueConnector` (SQS): ``receive`` / ``delete`` / ``release``; the queue itself keeps
  unacknowledged messages and redelivers them after their visibility timeout.
- :class:`StreamConnector` (Kinesis, DynamoDB Streams): shards with lineage, iterators, reads;
  the engine keeps the checkpoint.

Every connector has an in-process twin in :mod:`esm.connectors.memory`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from esm.errors import SourceError


class Record:
    """One source record, ready to batch.

    ``raw`` is the Lambda record's JSON bytes (serialised once, reused to build the event and to
    measure the 6 MB cap); ``data`` the same record as a dict, parsed from ``raw`` on first use
    when the connector built only the bytes (only filters look at it). ``item_id`` is what a
    partial batch response names (SQS ``messageId``, stream sequence number); ``key`` orders
    records (FIFO message group, Kinesis partition key, DynamoDB item key); ``token``
    acknowledges it (receipt handle, sequence number); ``arrival`` is epoch seconds.
    """

    __slots__ = ("_data", "arrival", "item_id", "key", "raw", "size", "token")

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        item_id: str,
        token: str,
        arrival: float,
        key: str | None = None,
        raw: bytes = b"",
    ) -> None:
        if not raw:
            if data is None:
                raise ValueError("a Record needs its data or its raw JSON")
            raw = orjson.dumps(data)
        self._data = data
        self.item_id = item_id
        self.token = token
        self.arrival = arrival
        self.key = key
        self.raw = raw
        self.size = len(raw)

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = orjson.loads(self.raw)
        return self._data

    def __repr__(self) -> str:
        return f"Record(item_id={self.item_id!r}, key={self.key!r}, size={self.size})"


class QueueConnector(Protocol):
    """A queue whose unacknowledged messages come back by themselves (SQS)."""

    source_arn: str
    fifo: bool

    async def receive(
        self, max_records: int, wait_s: float, visibility_timeout_s: int | None = None
    ) -> list[Record]:
        """Up to ``max_records`` (≤ 10) messages, long-polling up to ``wait_s`` seconds."""
        ...

    async def delete(self, records: Sequence[Record]) -> list[Record]:
        """Delete; retries per-entry failures, returns the records still not deleted."""
        ...

    async def release(self, records: Sequence[Record]) -> None:
        """Make received but unprocessed messages visible again now."""
        ...

    async def visibility_timeout_s(self) -> int:
        """The queue's VisibilityTimeout attribute (also proves the queue exists)."""
        ...

    async def close(self) -> None: ...


PositionType = Literal[
    "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"
]


@dataclass(frozen=True, slots=True)
class Position:
    type: PositionType
    sequence_number: str | None = None
    timestamp: float | None = None


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    parent_ids: tuple[str, ...] = ()
    starting_sequence_number: str | None = None
    ending_sequence_number: str | None = None  # set once the shard is closed


@dataclass(frozen=True, slots=True)
class ReadResult:
    records: list[Record]
    next_iterator: str | None  # None: the shard is closed and read to its end
    millis_behind: int | None = None


class StreamConnector(Protocol):
    """A stream of shards read through iterators (Kinesis, DynamoDB Streams)."""

    source_arn: str
    max_read: int  # the most records one read returns: GetRecords' Limit ceiling

    async def list_shards(self) -> list[Shard]: ...

    async def open(self, shard_id: str, position: Position) -> str: ...

    async def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult: ...

    async def close(self) -> None: ...


class Sources(Protocol):
    """Builds connectors by event source ARN (AWS, or the in-memory twin)."""

    def queue(self, arn: str) -> QueueConnector: ...

    def stream(self, arn: str, *, invoke_identity_arn: str) -> StreamConnector: ...


class translate_aws_errors:  # used as a function: with translate_aws_errors(...)
    """botocore and connection errors → :class:`SourceError` (its message starting with
    ``action``), in one place. A class, not a generator: it runs around every poll."""

    __slots__ = ("_action",)

    def __init__(self, action: str) -> None:
        self._action = action

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> Literal[False]:
        if exc is None:
            return False
        from botocore.exceptions import BotoCoreError, ClientError

        action = self._action
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            raise SourceError(
                f"{action}: {code}: {err.get('Message', '')}",
                code=code,
                retriable=status >= 500 or code in _RETRIABLE_CODES,
            ) from exc
        if isinstance(exc, BotoCoreError | OSError | TimeoutError):
            message = f"{action}: {exc}"
            # botocore's connection errors keep the reason (refused, TLS verification …) aside
            reason = getattr(exc, "kwargs", {}).get("error")
            if reason is not None:
                message += f" ({reason})"
            raise SourceError(message, code=type(exc).__name__) from exc
        return False


_RETRIABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "RequestThrottled",
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KMSThrottlingException",
        "ResponseParserError",  # a garbled reply (esm.awsjson)
    }
)
