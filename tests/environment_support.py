"""Running a behaviour test's function in process or in an execution environment.

The SQS, stream and async behaviour tests take ``runs_on`` ("in-process" or "environment"):
:class:`Functions` gives the function's config for either (the in-process one through
:mod:`tests.fixtures.recorder`, the other a real ``awslambdaric`` process running
``tests/fixtures/environment/behaving.py``) and reads back the events it got.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esm.aws import AwsClients
from esm.clock import Clock
from esm.config import EsmConfig
from esm.functions import Function, build_functions
from tests.fixtures import recorder
from tests.fixtures.environment import behaving

RUNS_ON = ["in-process", "environment"]
CODE = Path(__file__).parent / "fixtures" / "environment"
SYNC_TARGET = "python:tests.fixtures.recorder.handle"
ASYNC_TARGET = "python:tests.fixtures.recorder.handle_async"


class Functions:
    def __init__(self, runs_on: str, records: Path) -> None:
        self.runs_on = runs_on
        self._records = records

    def function(
        self, name: str, behaviour: str, *, asynchronous: bool = False, **props: Any
    ) -> dict[str, Any]:
        """The config of function ``name`` doing ``behaviour`` (a name in behaving.py)."""
        if self.runs_on == "in-process":
            act = behaving.BEHAVIOURS[behaviour]
            table = recorder.ASYNC_BEHAVIOUR if asynchronous else recorder.BEHAVIOUR
            table[name] = lambda event, context: act(event)
            return {"Target": ASYNC_TARGET if asynchronous else SYNC_TARGET, **props}
        variables = {
            "ESM_TEST_RECORDS": str(self._records / f"{name}.jsonl"),
            "ESM_TEST_BEHAVIOUR": behaviour,
        }
        return {
            "Runtime": "python3.11",
            "Handler": "behaving.handle",
            "CodeUri": str(CODE),
            "Environment": {"Variables": variables},
            **props,
        }

    def events(self, name: str) -> list[dict[str, Any]]:
        """The events ``name`` got, in order."""
        if self.runs_on == "in-process":
            return list(recorder.EVENTS[name])
        path = self._records / f"{name}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


def tracked_functions(
    config: EsmConfig, *, clock: Clock, aws: AwsClients, in_flight: Any
) -> Mapping[str, Function]:
    """The config's functions, those in execution environments counted by ``in_flight`` while
    they run, so a test driving a virtual clock waits for a real process rather than jumping
    past its Timeout."""
    functions = build_functions(config, clock=clock, aws=aws)
    for fn in functions.values():
        if fn.config.runtime is not None:
            original = fn.invoke

            async def invoke(payload: bytes, _original: Any = original, **kw: Any) -> Any:
                return await in_flight.track(_original(payload, **kw), "function.invoke")

            fn.invoke = invoke  # type: ignore[method-assign]
    return functions
