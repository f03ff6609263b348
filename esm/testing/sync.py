"""The harness for code without an event loop (plain ``def`` tests, scripts, notebooks).

::

    with SyncHarness("esm.yaml") as h:
        h.put_sqs_messages("orders", ["a", "poison"])
        h.run_until_idle()
        assert h.queue("orders-dlq").bodies() == ["poison"]

It owns an :class:`asyncio.Runner`; the engine runs only inside the calls that drive it
(``run_until_idle``, ``run_until``, ``advance``, ``invoke`` …), which is all a scenario on a
virtual clock needs. Everything else is the :class:`~esm.testing.harness.Harness`'s own.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from esm.destinations.memory import DeadLetter
from esm.testing.harness import Harness, Predicate
from esm.testing.loading import ConfigSource
from esm.testing.views import Invocation


class SyncHarness:
    def __init__(self, config: ConfigSource | None = None, **options: Any) -> None:
        self.harness = Harness(config, **options)
        self._runner = asyncio.Runner()

    def __enter__(self) -> SyncHarness:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._runner.run(self.harness.start())

    def close(self) -> None:
        try:
            self._runner.run(self.harness.aclose())
        finally:
            self._runner.close()

    def run_until_idle(self, **options: Any) -> None:
        self._runner.run(self.harness.run_until_idle(**options))

    def run_until(self, predicate: Predicate, **options: Any) -> None:
        self._runner.run(self.harness.run_until(predicate, **options))

    def advance(self, seconds: float) -> None:
        self._runner.run(self.harness.advance(seconds))

    def invoke(self, function: str, payload: Any = None) -> Invocation:
        return self._runner.run(self.harness.invoke(function, payload))

    def invoke_async(self, function: str, payload: Any = None) -> str:
        return self._runner.run(self.harness.invoke_async(function, payload))

    def checkpoints(self, ref: str) -> dict[str, str]:
        return self._runner.run(self.harness.checkpoints(ref))

    def window_state(self, ref: str, shard_id: str | None = None) -> dict[str, Any] | None:
        return self._runner.run(self.harness.window_state(ref, shard_id))

    def busy(self) -> list[str]:
        return self._runner.run(self.harness.busy())

    def dead_letters(self, ref: str) -> list[DeadLetter]:
        return self.harness.dead_letters(ref)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.harness, name)

    def __dir__(self) -> list[str]:
        """Its own methods and the harness's it passes through (``queue``, ``invocations`` …),
        for ``dir()`` and completion; coroutine methods of the harness it does not wrap
        (``aclose``: use ``close``) are left out."""
        own = set(super().__dir__())
        passed = {
            n
            for n in dir(self.harness)
            if n[0] != "_" and not inspect.iscoroutinefunction(getattr(Harness, n, None))
        }
        return sorted(own | passed)
