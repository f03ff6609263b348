"""Handlers the benchmarks invoke through ``python:`` targets."""

from __future__ import annotations

import asyncio
from typing import Any

SLEEP_S = 0.02
COUNT: dict[str, int] = {}


async def sleep_async(event: dict[str, Any], context: Any) -> None:
    """A handler that takes ``SLEEP_S`` seconds without holding a thread."""
    await asyncio.sleep(SLEEP_S)


def noop(event: dict[str, Any], context: Any) -> None:
    return None


async def noop_async(event: dict[str, Any], context: Any) -> None:
    """A no-op run on the event loop (no thread-pool hop)."""
    return None
