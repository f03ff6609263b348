"""Handlers the benchmarks invoke through ``python:`` targets."""

from __future__ import annotations

import asyncio
import time
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


# -- P3 (benchmarks.async_queue) -----------------------------------------------------------------

STARTS: list[tuple[float, float]] = []
"""(enqueued at, handler started at), epoch seconds, one per event run by ``record_start``."""


async def record_start(event: dict[str, Any], context: Any) -> None:
    """Notes when it started beside the enqueue time its payload carries (``{"t": …}``)."""
    STARTS.append((event["t"], time.time()))


async def arq_noop(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> None:
    """arq's twin of ``noop_async`` (an arq job function takes the worker's context first)."""
    return None


# -- P1 (benchmarks.sqs) and P6 (benchmarks.latency) ---------------------------------------------

FIRST_START: dict[str, float] = {}
"""Function name -> ``time.perf_counter()`` when ``sleep_async_first`` first started for it."""


async def sleep_async_first(event: dict[str, Any], context: Any) -> None:
    """``sleep_async`` that also notes when its function was first called (time to first batch)."""
    FIRST_START.setdefault(context.function_name, time.perf_counter())
    await asyncio.sleep(SLEEP_S)


SQS_STARTS: list[tuple[float, float]] = []
"""(sent at, handler started at), epoch seconds, one per SQS record run by ``record_sqs_start``."""


async def record_sqs_start(event: dict[str, Any], context: Any) -> None:
    """Notes when it started beside the send time each record's body carries (``repr(time())``)."""
    now = time.time()
    SQS_STARTS.extend((float(r["body"]), now) for r in event["Records"])


# -- P7 (benchmarks.environments): the in-process twins of its environment handlers ----------------


def sleep_sync(event: dict[str, Any], context: Any) -> None:
    """``SLEEP_S`` seconds holding a thread of the function's pool (a blocking handler)."""
    time.sleep(SLEEP_S)


SPIN_S = 0.02


def spin(event: dict[str, Any], context: Any) -> None:
    """``SPIN_S`` seconds of this thread's CPU (a CPU-bound handler)."""
    end = time.thread_time() + SPIN_S
    while time.thread_time() < end:
        pass


# -- P8 (benchmarks.scaleout): which ids each daemon ran ---------------------------------------

_NOTES: Any = None


def _notes() -> Any:
    global _NOTES
    if _NOTES is None:
        import os

        folder = os.environ["ESM_BENCH_NOTES"]
        _NOTES = open(os.path.join(folder, f"{os.getpid()}.ids"), "a")
    return _NOTES


async def note_ids(event: Any, context: Any) -> None:
    """Appends the id of each record it gets (an async event's ``id``, an SQS body, a Kinesis
    record's data; fixed width) to a file of this process's own, flushed each call, so that the
    benchmark counts every id run across daemons."""
    import base64

    records = event.get("Records") if isinstance(event, dict) else None
    if records is None:
        ids = [str(event["id"])]
    elif records and "body" in records[0]:
        ids = [r["body"] for r in records]
    else:
        ids = [base64.b64decode(r["kinesis"]["data"]).decode() for r in records]
    notes = _notes()
    notes.write("".join(i + "\n" for i in ids))
    notes.flush()
