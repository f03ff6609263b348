"""``esm run --watch``: a function's code change recycles its environments (in-flight calls end
on the old code); an esm.yaml change is applied through the registry and reconcile; a broken
one is reported and the running config kept."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from esm.aws import AwsClients
from esm.config import load_config
from esm.engine import Engine
from esm.functions import Ok
from esm.watch import watch
from tests.conftest import ACCOUNT, REGION
from tests.integration.test_environments import payload, pids
from tests.support import Queues, eventually, unique

pytestmark = pytest.mark.integration

APP = """
import os, time
VERSION = {version!r}
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    if "Records" in event:
        return {{"version": VERSION, "bodies": [r["body"] for r in event["Records"]]}}
    return {{"version": VERSION, "pid": os.getpid(), "greeting": os.environ.get("GREETING")}}
"""


def write_app(code: Path, version: str) -> None:
    code.mkdir(parents=True, exist_ok=True)
    (code / "app.py").write_text(textwrap.dedent(APP.format(version=version)))


def write_config(path: Path, code: Path, greeting: str, mappings: list[Any] | None = None) -> None:
    doc = {
        "Settings": {"Region": REGION, "AccountId": ACCOUNT, "Store": "memory://"},
        "Functions": {
            "greeter": {
                "Runtime": "python3.11",
                "Handler": "app.handler",
                "CodeUri": str(code),
                "Timeout": 10,
                "Environment": {"Variables": {"GREETING": greeting}},
            }
        },
        "EventSourceMappings": mappings or [],
    }
    path.write_text(json.dumps(doc))  # JSON is YAML


@pytest.fixture
async def watched(tmp_path: Path, aws: AwsClients) -> AsyncIterator[tuple[Engine, Path, Path]]:
    code, config = tmp_path / "code", tmp_path / "esm.yaml"
    write_app(code, "v1")
    write_config(config, code, "hello")
    engine = Engine(load_config(config), aws=aws)
    await engine.start()
    stop = asyncio.Event()
    task = asyncio.create_task(watch(engine, [config], lambda: load_config(config), stop))
    await asyncio.sleep(0.3)  # the watcher is set up
    yield engine, code, config
    stop.set()
    await asyncio.wait_for(task, 10)
    await engine.aclose()


async def call(engine: Engine, event: dict[str, Any] | None = None) -> Any:
    out = await engine.function("greeter").invoke(json.dumps(event or {}).encode())
    assert isinstance(out, Ok), out
    return payload(out)


async def test_code_change_recycles_idle_environments_in_flight_ones_finish(
    watched: tuple[Engine, Path, Path],
) -> None:
    engine, code, _ = watched
    first = await call(engine)
    slow = asyncio.create_task(call(engine, {"sleep": 2}))  # busy on the first environment
    await eventually(lambda: engine.function("greeter").in_flight == 1, what="the slow call")
    idle = await call(engine)  # a second environment, idle after this
    assert idle["version"] == "v1" and idle["pid"] != first["pid"]
    # A new size: a .pyc is checked against its source's mtime in whole seconds and its size,
    # so a same-size rewrite within the second would import the old bytecode.
    write_app(code, "v2-new")
    await eventually(
        lambda: idle["pid"] not in pids(engine.function("greeter")), what="the idle one stopped"
    )
    new = await call(engine)
    assert new["version"] == "v2-new" and new["pid"] not in (first["pid"], idle["pid"])
    old = await slow
    assert old["version"] == "v1" and old["pid"] == first["pid"]  # finished on the old code
    assert old["pid"] not in pids(engine.function("greeter"))  # and its environment went


async def test_config_change_is_applied_and_a_broken_one_kept_out(
    watched: tuple[Engine, Path, Path], aws: AwsClients, caplog: pytest.LogCaptureFixture
) -> None:
    engine, code, config = watched
    assert (await call(engine))["greeting"] == "hello"
    write_config(config, code, "bonjour")

    async def greeting() -> bool:
        return bool((await call(engine))["greeting"] == "bonjour")

    await eventually(greeting, what="the new Environment.Variables")
    # broken: reported, and the daemon runs on as before
    config.write_text("Functions: {greeter: {Runtime: python3.11, Timeout: 5000}}\n")
    await eventually(lambda: "is not valid; running on as before" in caplog.text, what="error")
    assert "Timeout" in caplog.text
    assert (await call(engine))["greeting"] == "bonjour"
    # a mapping added to the file runs, through the registry and reconcile
    queues = Queues(aws)
    arn, url = await queues.create(unique("watch-in"))
    write_config(config, code, "bonjour", [{"FunctionName": "greeter", "EventSourceArn": arn}])
    await eventually(lambda: len(engine.mappings) == 1, what="the mapping started")
    await queues.send(url, ["added by the file"])
    await eventually(lambda: _empty(queues, url), what="the message consumed")
    # and taken out again
    write_config(config, code, "bonjour")
    await eventually(lambda: len(engine.mappings) == 0, what="the mapping deleted")


async def _empty(queues: Queues, url: str) -> bool:
    return await queues.depth(url) == (0, 0)
