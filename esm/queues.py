"""What an SQS batch's outcome means for its messages (docs/semantics.md §3.3, §3.4, §3.5). Pure.

- Success: delete every message.
- Function error, throttle, could not invoke, malformed partial response: delete nothing; the
  messages come back after their visibility timeout and the queue's redrive policy counts them.
- Valid partial response: delete all but the reported messages (their visibility timeout is left
  as it is, docs/semantics.md §3.4). On a FIFO queue a message group stops at its first failure:
  every later message of that group in the batch is kept too, whatever the function reported, so
  a group's order survives a function that forgets the FIFO rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from esm.partial import AllSucceeded, BatchFailed, BatchResult, ItemsFailed


class QueueItem(Protocol):
    @property
    def item_id(self) -> str: ...

    @property
    def key(self) -> str | None: ...


M = TypeVar("M", bound=QueueItem)

Verdict = Literal["ok", "partial", "failed"]


@dataclass(frozen=True, slots=True)
class Settlement(Generic[M]):
    delete: list[M]
    keep: list[M]
    verdict: Verdict
    reason: str = ""


def settle(result: BatchResult | None, batch: Sequence[M], *, fifo: bool) -> Settlement[M]:
    """``result`` is None when the invocation itself failed (function error, throttle …)."""
    if result is None:
        return Settlement([], list(batch), "failed", "function error")
    if isinstance(result, AllSucceeded):
        return Settlement(list(batch), [], "ok")
    if isinstance(result, BatchFailed):
        return Settlement([], list(batch), "failed", result.reason)
    assert isinstance(result, ItemsFailed)
    failed = set(result.item_ids)
    stopped_groups: set[str | None] = set()
    delete: list[M] = []
    keep: list[M] = []
    for m in batch:
        if m.item_id in failed or (fifo and m.key in stopped_groups):
            keep.append(m)
            if fifo:
                stopped_groups.add(m.key)
        else:
            delete.append(m)
    return Settlement(delete, keep, "partial", f"{len(keep)} item(s) failed")
