"""How many SQS batches a mapping runs at once (docs/semantics.md §3.7). Pure.

Lambda starts an SQS mapping with 5 concurrent batches, adds up to 300 a minute while messages
keep coming, stops at ``ScalingConfig.MaximumConcurrency`` (1,250 without one), and scales back
to 5 when the queue runs dry, or as low as 2 when no ``MaximumConcurrency`` is set. Here: +5 at
most once a second when a receive came back full (the queue has a backlog), -1 for each long
poll that came back empty, never below ``min(5, ceiling)``, or 2 without a
``MaximumConcurrency``; once messages appear again, straight back to 5.
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_CONCURRENCY = 5
IDLE_CONCURRENCY = 2  # an idle queue's pollers when MaximumConcurrency is not set
STEP_UP = 5  # 300 a minute
STEP_UP_INTERVAL_S = 1.0


@dataclass(slots=True)
class SqsScaler:
    ceiling: int
    last_up: float  # when the mapping started, then when concurrency last grew
    capped: bool = True  # ScalingConfig.MaximumConcurrency is set (the ceiling)
    target: int = 0

    def __post_init__(self) -> None:
        self.target = self.floor

    @property
    def floor(self) -> int:
        """The least concurrency while messages come."""
        return min(INITIAL_CONCURRENCY, self.ceiling)

    @property
    def idle_floor(self) -> int:
        """The least concurrency while the queue is empty."""
        return self.floor if self.capped else min(IDLE_CONCURRENCY, self.floor)

    def on_receive(self, got: int, asked: int, now: float) -> int:
        """Record one receive's result; returns the new target concurrency."""
        if got and self.target < self.floor:
            self.target = self.floor  # messages appeared: five batches at once
        if got >= asked > 0:
            if self.target < self.ceiling and now - self.last_up >= STEP_UP_INTERVAL_S:
                self.target = min(self.ceiling, self.target + STEP_UP)
                self.last_up = now
        elif got == 0 and self.target > self.idle_floor:
            self.target -= 1
        return self.target
