"""Handlers the testing harness registered, importable as ``python:esm.testing.handlers.<name>``.

A test's handler may be any callable (a closure, a lambda, a bound method): the harness registers
it here under a generated name and configures the function with that ``python:`` target, so the
engine loads and calls it exactly as it loads a handler from a module. Async handlers are wrapped
so that the harness knows when one waits on its virtual clock (:func:`in_handler`).
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from esm.clock import VirtualClock
from esm.targets.python import RUNTIME_FILES

MODULE = __name__
_handlers: dict[str, Callable[..., Any]] = {}
_names = itertools.count(1)
RUNTIME_FILES.add(__file__)  # its async wrapper is no frame of the handler's
_in_handler: ContextVar[bool] = ContextVar("esm_testing_in_handler", default=False)


def in_handler() -> bool:
    """True inside an async handler the harness registered (and the tasks it starts)."""
    return _in_handler.get()


def is_async(handler: Callable[..., Any]) -> bool:
    """As the engine decides it: coroutine functions and objects with an async ``__call__``."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - an instance with an async __call__
    )


def register(handler: Callable[..., Any], hint: str = "handler") -> str:
    """Register ``handler``; returns its ``python:`` target."""
    name = f"{''.join(c if c.isalnum() else '_' for c in hint)}_{next(_names)}"
    if is_async(handler):
        original = handler

        @functools.wraps(original)
        async def marked(event: Any, context: Any) -> Any:
            token = _in_handler.set(True)
            try:
                return await original(event, context)
            finally:
                _in_handler.reset(token)

        handler = marked
    _handlers[name] = handler
    return f"python:{MODULE}.{name}"


def unregister(target: str) -> None:
    _handlers.pop(target.rpartition(".")[2], None)


def __getattr__(name: str) -> Callable[..., Any]:
    try:
        return _handlers[name]
    except KeyError:
        raise AttributeError(f"module {MODULE!r} has no handler {name!r}") from None


class HarnessClock(VirtualClock):
    """A :class:`~esm.clock.VirtualClock` that knows how many registered async handlers are
    sleeping on it (so the harness moves time for them instead of waiting in real time)."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.handler_sleeps = 0

    async def sleep(self, seconds: float) -> None:
        if not in_handler():
            await super().sleep(seconds)
            return
        self.handler_sleeps += 1
        try:
            await super().sleep(seconds)
        finally:
            self.handler_sleeps -= 1
