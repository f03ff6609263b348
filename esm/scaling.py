"""How many SQS batches a mapping runs at once (spec §5.1). Pure.

Lambda starts an SQS mapping with 5 concurrent batches, adds up to 300 a minute while messages
keep coming, stops at ``ScalingConfig.MaximumConcurrency`` (1,250 without one), and scales back
to 5 when the queue runs dry. Here: +5 at most once a second when a receive came back full (the
queue has a backlog), -1 for each long poll that came back empty, never below
``min(5, ceiling)``.
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_CONCURRENCY = 5
STEP_UP = 5  # 300 a minute
STEP_UP_INTERVAL_S = 1.0


@dataclass(slots=True)
class SqsScaler:
    ceiling: int
    last_up: float  # when the mapping started, then when concurrency last grew
    target: int = 0

    def __post_init__(self) -> None:
        self.target = self.floor

    @property
    def floor(self) -> int:
        return min(INITIAL_CONCURRENCY, self.ceiling)

    def on_receive(self, got: int, asked: int, now: float) -> int:
        """Record one receive's result; returns the new target concurrency."""
        if got >= asked > 0:
            if self.target < self.ceiling and now - self.last_up >= STEP_UP_INTERVAL_S:
                self.target = min(self.ceiling, self.target + STEP_UP)
                self.last_up = now
        elif got == 0 and self.target > self.floor:
            self.target -= 1
        return self.target
