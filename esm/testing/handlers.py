"""Handlers the testing harness registered, importable as ``python:esm.testing.handlers.<name>``.

A test's handler may be any callable (a closure, a lambda, a bound method): the harness registers
it here under a generated name and configures the function with that ``python:`` target, so the
engine loads and calls it exactly as it loads a handler from a module. Async handlers are wrapped
so that the harness knows when one waits on its virtual clock (:func:`in_handler`).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from esm.clock import VirtualClock
from esm.targets.python import RUNTIME_FILES, is_async

MODULE = __name__
_handlers: dict[str, Callable[..., Any]] = {}
T = TypeVar("T")
_names = itertools.count(1)
RUNTIME_FILES.add(__file__)  # its async wrapper is no frame of the handler's
_in_handler: ContextVar[bool] = ContextVar("esm_testing_in_handler", default=False)


def in_handler() -> bool:
    """True inside an async handler the harness registered (and the tasks it starts)."""
    return _in_handler.get()


def with_var(handler: Callable[..., Any], var: ContextVar[T], value: T) -> Callable[..., Any]:
    """``handler`` with ``var`` set to ``value`` while it runs, sync or async as it is."""
    if is_async(handler):

        @functools.wraps(handler)
        async def run_async(event: Any, context: Any) -> Any:
            token = var.set(value)
            try:
                return await handler(event, context)
            finally:
                var.reset(token)

        return run_async

    @functools.wraps(handler)
    def run(event: Any, context: Any) -> Any:
        token = var.set(value)
        try:
            return handler(event, context)
        finally:
            var.reset(token)

    return run


def register(handler: Callable[..., Any], hint: str = "handler") -> str:
    """Register ``handler``; returns its ``python:`` target."""
    name = f"{''.join(c if c.isalnum() else '_' for c in hint)}_{next(_names)}"
    if is_async(handler):
        handler = with_var(handler, _in_handler, True)
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
