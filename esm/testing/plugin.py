"""esm's pytest plugin, registered through the ``pytest11`` entry point on install.

Fixtures:

- ``esm_harness``: a factory; ``h = await esm_harness(config, functions=…)`` gives a started
  :class:`~esm.testing.harness.Harness` (``config``: an esm.yaml path, its dict, or an
  ``EsmConfig``; or ``template="template.yaml"``), closed when the test ends. Needs
  pytest-asyncio (or another plugin that runs async tests and fixtures, such as anyio's). No
  setting is needed: in pytest-asyncio's strict mode (its default) the plugin marks ``async``
  tests that use ``esm_harness`` with ``@pytest.mark.asyncio`` itself (its auto mode does the
  same); the fixture and the test share the test's event loop.
- ``esm_sync_harness``: the same for plain ``def`` tests, giving
  :class:`~esm.testing.sync.SyncHarness` objects.
- ``lambda_context``: a Lambda ``context`` (:func:`esm.testing.lambda_context`); a project's
  own ``lambda_context`` fixture takes precedence, as conftest fixtures do.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from esm.targets.python import LambdaContext
from esm.testing.factories import lambda_context as make_context
from esm.testing.harness import Harness
from esm.testing.loading import ConfigSource
from esm.testing.sync import SyncHarness

HarnessFactory = Callable[..., Awaitable[Harness]]

if TYPE_CHECKING:
    from pytest_asyncio import fixture as _async_fixture
else:
    try:
        from pytest_asyncio import fixture as _async_fixture
    except ImportError:  # another plugin (anyio, or an auto mode) runs async fixtures
        _async_fixture = pytest.fixture


@_async_fixture
async def esm_harness() -> AsyncIterator[HarnessFactory]:
    """``h = await esm_harness(config, functions=…, shards=…)``: started, closed at teardown."""
    made: list[Harness] = []

    async def make(config: ConfigSource | None = None, **options: Any) -> Harness:
        harness = Harness(config, **options)
        made.append(harness)
        await harness.start()
        return harness

    yield make
    for harness in reversed(made):
        await harness.aclose()


@pytest.fixture
def esm_sync_harness() -> Iterator[Callable[..., SyncHarness]]:
    """``h = esm_sync_harness(config, …)`` in a plain ``def`` test: started, closed at teardown."""
    made: list[SyncHarness] = []

    def make(config: ConfigSource | None = None, **options: Any) -> SyncHarness:
        harness = SyncHarness(config, **options)
        made.append(harness)
        harness.start()
        return harness

    yield make
    for harness in reversed(made):
        harness.close()


@pytest.fixture
def lambda_context() -> LambdaContext:
    """A Lambda context for calling a handler directly (``function_name`` ``test-function``)."""
    return make_context()


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, Any, None]:
    """``async def`` tests using ``esm_harness`` get ``@pytest.mark.asyncio`` when pytest-asyncio
    is installed, so they run in its strict mode as in its auto mode (inside pytest-asyncio's own
    wrapper, which then sees the mark). A test marked ``anyio`` is left to anyio."""
    outcome = yield
    if _async_fixture is pytest.fixture or not inspect.iscoroutinefunction(obj):
        return
    try:
        made = outcome.get_result()
    except BaseException:
        return
    for item in made if isinstance(made, list) else [made]:
        if (
            isinstance(item, pytest.Function)
            and "esm_harness" in item.fixturenames
            and item.get_closest_marker("asyncio") is None
            and item.get_closest_marker("anyio") is None
        ):
            item.add_marker(pytest.mark.asyncio)
