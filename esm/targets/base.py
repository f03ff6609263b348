"""What every function target shares: the call it gets, the protocol it follows, and the error
payloads in Lambda's shape.

A target maps everything it does to an :data:`~esm.outcomes.Outcome` (docs/semantics.md §9.1);
:class:`esm.functions.Function` holds the timeout, the reserved concurrency and the gate.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import orjson

from esm.outcomes import Outcome


@dataclass(frozen=True, slots=True)
class Call:
    payload: bytes
    request_id: str
    invocation_type: str
    client_context: str | None
    deadline: float  # epoch seconds, on the function's clock


class Target(Protocol):
    """Where a function runs. ``call`` maps everything the target does to an Outcome and never
    raises ``TimeoutError`` itself (that would read as the function's timeout)."""

    @property
    def gate(self) -> asyncio.Lock | asyncio.Semaphore | None:
        """Held around each call, outside the timeout (rie: one request at a time;
        environments: as many as the pool holds)."""
        ...

    async def call(self, call: Call) -> Outcome: ...

    async def aclose(self) -> None: ...


def fault(error_type: str, message: str, request_id: str, trace: list[str] | None = None) -> bytes:
    return orjson.dumps(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": trace or [],
        }
    )


def timeout_payload(now: float, request_id: str, timeout_s: float) -> bytes:
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    stamp = stamp.replace("+00:00", "Z")
    return orjson.dumps(
        {
            "errorMessage": f"{stamp} {request_id} Task timed out after {timeout_s:.2f} seconds",
            "errorType": "Sandbox.Timedout",
        }
    )
