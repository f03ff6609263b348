"""What invoking a function gives back: one of four outcomes (docs/semantics.md §9.1: a function
error is an answer, not an exception). ``log`` is the invocation's log (its last 4 KB) where the
target captures it (execution environments), for ``Invoke``'s ``LogType=Tail``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LATEST = "$LATEST"


@dataclass(frozen=True, slots=True)
class Ok:
    payload: bytes
    executed_version: str = LATEST
    log: str | None = None


@dataclass(frozen=True, slots=True)
class FunctionError:
    """The function ran and failed (docs/semantics.md §9.1): counts for retries, bisect and
    destinations."""

    payload: bytes
    kind: Literal["Handled", "Unhandled"] = "Unhandled"
    executed_version: str = LATEST
    log: str | None = None


@dataclass(frozen=True, slots=True)
class Throttled:
    """Not run for lack of concurrency: reserved concurrency full, HTTP 429, Lambda's 429."""

    reason: str


@dataclass(frozen=True, slots=True)
class InvokeFailed:
    """Not run: the target could not be reached or refused the request before running it."""

    reason: str


Outcome = Ok | FunctionError | Throttled | InvokeFailed
