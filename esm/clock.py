"""Time, as the engine sees it.

Every wait in the engine goes through a :class:`Clock`: batching windows, retry delays, record
ages, visibility and lease expiries, function timeouts. Production uses :class:`RealClock`; tests
and the testing harness use :class:`VirtualClock`, whose time only moves when told to, so a
scenario spanning hours runs in milliseconds.

``now()`` is wall-clock epoch seconds (what AWS stamps on records and what ages are measured
against). Deadlines are computed on the same scale.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    real: bool  # False: time moves only when a test moves it (no real-time waits in Redis)

    def now(self) -> float:
        """Epoch seconds."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        """Await ``aw``; cancel it and raise ``TimeoutError`` after ``timeout`` seconds."""
        ...


class RealClock:
    """The machine's clock and asyncio's timers."""

    real = True

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        async with asyncio.timeout(timeout):  # no extra task, unlike asyncio.wait_for
            return await aw


class VirtualClock:
    """A clock whose time moves only through :meth:`advance` (or :meth:`advance_to_next`).

    Sleepers are kept in a heap by deadline; advancing wakes them in deadline order and lets the
    woken tasks run (and schedule new timers) before later deadlines fire, so the order of events
    is the order real time would give.
    """

    real = False

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self._now + seconds, next(self._seq), fut))
        await fut  # a cancelled sleeper stays in the heap as a done future; it is skipped

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        task = asyncio.ensure_future(aw)
        if timeout is None:
            return await task
        timer = asyncio.ensure_future(self.sleep(timeout))
        try:
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Cancelled from outside (or finished): never leave either half running.
            timer.cancel()
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            return task.result()
        # Timed out: the inner task was cancelled above; let it unwind. (asyncio.wait does not
        # raise the inner task's CancelledError, but a cancellation of *this* task still goes
        # through: it is never swallowed.)
        await asyncio.wait({task})
        raise TimeoutError

    # -- driving time -------------------------------------------------------------------------

    def pending(self) -> int:
        """How many sleepers are waiting."""
        return sum(1 for _, _, fut in self._timers if not fut.done())

    def next_deadline(self) -> float | None:
        while self._timers and self._timers[0][2].done():
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper due on the way, in order."""
        target = self._now + seconds
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > target:
                break
            self._now = max(self._now, deadline)
            while self._timers and self._timers[0][0] <= self._now:
                _, _, fut = heapq.heappop(self._timers)
                if not fut.done():
                    fut.set_result(None)
            await _let_run()
        self._now = max(self._now, target)
        await _let_run()

    async def advance_to_next(self) -> bool:
        """Jump to the next deadline and wake its sleepers; False when nobody sleeps."""
        deadline = self.next_deadline()
        if deadline is None:
            return False
        await self.advance(max(0.0, deadline - self._now))
        return True


async def _let_run() -> None:
    await settle()


async def settle(max_rounds: int = 10_000) -> None:
    """Yield until the event loop has nothing ready to run (every task is waiting on a timer,
    an event or I/O). Used with a :class:`VirtualClock` before moving time on, so everything
    due "now" has happened first.

    CPython's loop keeps its ready callbacks in ``_ready``; where that is not available this
    falls back to a fixed number of yields.
    """
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)
    quiet = 0
    for _ in range(max_rounds):
        await asyncio.sleep(0)
        if ready is None:
            quiet += 1
            if quiet >= 50:
                return
        elif not ready:
            quiet += 1
            if quiet >= 2:
                return
        else:
            quiet = 0
