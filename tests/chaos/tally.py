"""Counting what a chaos scenario lost, duplicated and reordered. Pure: no I/O, no clock.

``sent`` is every item a scenario put in (an SQS message, a Kinesis or DynamoDB record, an event
that Invoke ``Event`` accepted) as ``(key, id)`` in the order it was sent; the key is what orders
it (Kinesis partition key, DynamoDB item key, FIFO message group; any constant where nothing is
ordered). ``delivered`` is every ``(key, id)`` the function received, in the order it received
them, each batch's records in the batch's order.

- **lost**: sent, never delivered, and not *excused* (``excused``: ids a scenario may lose by
  definition, such as events accepted before a Redis without persistence restarted empty).
- **duplicated**: deliveries beyond an id's first (an id delivered three times counts 2).
- **out of order**: first deliveries of an id after an id sent *later* under the same key had
  already been delivered. A replay (a duplicate) going back is not counted: it is a duplicate.
- **unexpected**: deliveries of ids never sent (a garbled record, or another test's).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

Item = tuple[str, str]  # (key, id)


@dataclass(frozen=True)
class Tally:
    scenario: str
    sent: int
    delivered: int
    lost: int
    duplicated: int
    out_of_order: int
    unexpected: int
    excused: int  # sent, not delivered, and allowed to be lost
    lost_ids: tuple[str, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """One line for the report: ``chaos <scenario>: sent=… lost=… …`` and the notes."""
        parts = [
            f"sent={self.sent}",
            f"delivered={self.delivered}",
            f"lost={self.lost}",
            f"duplicated={self.duplicated}",
            f"out_of_order={self.out_of_order}",
        ]
        if self.unexpected:
            parts.append(f"unexpected={self.unexpected}")
        if self.excused:
            parts.append(f"excused={self.excused}")
        parts += [f"{k}={v}" for k, v in self.notes.items()]
        return f"chaos {self.scenario}: " + " ".join(parts)


def count(
    scenario: str,
    sent: Sequence[Item],
    delivered: Sequence[Item],
    *,
    excused: Collection[str] = (),
    **notes: Any,
) -> Tally:
    """The tally of one scenario (see the module's docstring)."""
    rank: dict[str, tuple[str, int]] = {}
    per_key: Counter[str] = Counter()
    for key, item in sent:
        rank[item] = (key, per_key[key])
        per_key[key] += 1
    seen: set[str] = set()
    furthest: dict[str, int] = {}
    duplicated = out_of_order = unexpected = 0
    for _, item in delivered:
        if item not in rank:
            unexpected += 1
            continue
        if item in seen:
            duplicated += 1
            continue
        seen.add(item)
        key, position = rank[item]
        if position < furthest.get(key, -1):
            out_of_order += 1
        furthest[key] = max(position, furthest.get(key, -1))
    missing = [item for _, item in sent if item not in seen]
    excused_set = set(excused)
    lost = [item for item in missing if item not in excused_set]
    return Tally(
        scenario=scenario,
        sent=len(sent),
        delivered=len(delivered),
        lost=len(lost),
        duplicated=duplicated,
        out_of_order=out_of_order,
        unexpected=unexpected,
        excused=len(missing) - len(lost),
        lost_ids=tuple(lost[:20]),
        notes=dict(notes),
    )
