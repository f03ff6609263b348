"""When a batch is complete (docs/semantics.md §2.2, §2.3). Pure: takes records and ``now``,
says flush or wait.

A batch is flushed as soon as one of these holds:

1. ``BatchSize`` records are in it;
2. the next record would push the serialised event past 6 MB (the record is carried to the next
   batch; a record that alone exceeds the cap still travels alone, and the function sees it fail
   as Lambda's invoke would);
3. the batching window has elapsed (window 0: flush whatever one read gave).

The window opens when the batch gets its first record. AWS says the next window starts as soon as
the previous invocation completes; on a busy queue that is the same moment, and on an idle queue
it keeps a burst of messages sent together in one batch instead of cutting it at an arbitrary
window boundary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from esm.events import EVENT_OVERHEAD

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # synchronous Invoke payload limit


class Sized(Protocol):
    @property
    def size(self) -> int: ...


R = TypeVar("R", bound=Sized)


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_records: int
    window_s: float = 0.0
    max_bytes: int = MAX_PAYLOAD_BYTES


@dataclass(frozen=True, slots=True)
class Flush:
    reason: Literal["size", "bytes", "window"]


@dataclass(frozen=True, slots=True)
class Wait:
    until: float


@dataclass(frozen=True, slots=True)
class Empty:
    """Nothing gathered yet: wait for records as long as the source allows."""


Decision = Flush | Wait | Empty
EMPTY = Empty()


class BatchBuilder(Generic[R]):
    """Collects records for one batch; :meth:`decide` says whether to flush now."""

    __slots__ = ("_bytes", "_full_by_bytes", "limits", "opened_at", "records")

    def __init__(self, limits: BatchLimits) -> None:
        self.limits = limits
        self.opened_at: float | None = None
        self.records: list[R] = []
        self._bytes = EVENT_OVERHEAD
        self._full_by_bytes = False

    def __len__(self) -> int:
        return len(self.records)

    @property
    def payload_bytes(self) -> int:
        return self._bytes

    @property
    def room(self) -> int:
        """How many more records may still be added by count."""
        if self._full_by_bytes:
            return 0
        return self.limits.max_records - len(self.records)

    def offer(self, record: R, now: float) -> bool:
        """Add ``record`` if it fits by count and size; False means flush first, then retry it."""
        if self.opened_at is None:
            self.opened_at = now
        if self.room <= 0:
            return False
        added = record.size + (1 if self.records else 0)
        if self.records and self._bytes + added > self.limits.max_bytes:
            self._full_by_bytes = True
            return False
        self.records.append(record)
        self._bytes += added
        return True

    def offer_all(self, records: Iterable[R], now: float) -> list[R]:
        """Offer in order; returns the records that did not fit (to carry to the next batch)."""
        items = list(records)
        if items and not self._full_by_bytes:
            # all at once when they all fit (the usual case), as offering each one would
            mine = self.records
            if len(items) <= self.limits.max_records - len(mine):
                added = sum(r.size for r in items) + len(items) - (0 if mine else 1)
                if self._bytes + added <= self.limits.max_bytes:
                    if self.opened_at is None:
                        self.opened_at = now
                    mine.extend(items)
                    self._bytes += added
                    return []
        for i, record in enumerate(items):
            if not self.offer(record, now):
                return items[i:]
        return []

    def decide(self, now: float) -> Decision:
        if self.opened_at is None or not self.records:
            return EMPTY
        if self._full_by_bytes:
            return Flush("bytes")
        if len(self.records) >= self.limits.max_records:
            return Flush("size")
        deadline = self.opened_at + self.limits.window_s
        if now >= deadline:
            return Flush("window")
        return Wait(deadline)
