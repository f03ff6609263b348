"""esm.testing on an application as it is: a SAM template or an esm.yaml loaded directly, whose
Python handlers read their environment and create SDK clients when imported, each function with
its own modules and variables, fresh in each harness."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest

from esm.testing import Harness, SyncHarness

ROOT = Path(__file__).resolve().parents[2]

# Reads its environment and creates a boto3 client at import, as SAM apps do (without AWS_REGION
# the client raises NoRegionError); counts its calls in module state.
APP = """\
import os

import boto3

TABLE = os.environ["TABLE_NAME"]
SQS = boto3.client("sqs")
CALLS = []


def handler(event, context):
    CALLS.append(event)
    return {
        "who": WHO,
        "table": TABLE,
        "stage": os.environ.get("STAGE"),
        "region": SQS.meta.region_name,
        "name": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
        "handler": os.environ["_HANDLER"],
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "memory": os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
        "calls": len(CALLS),
    }
"""

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.11
    Timeout: 5
    Environment:
      Variables:
        STAGE: dev
Resources:
  OrdersQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: orders
  OrdersFunction:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: orders
      CodeUri: orders/
      Handler: app.handler
      MemorySize: 256
      Environment:
        Variables:
          TABLE_NAME: orders-table
      Events:
        Queue:
          Type: SQS
          Properties:
            Queue: !GetAtt OrdersQueue.Arn
  BillingFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: billing/
      Handler: app.handler
      Environment:
        Variables:
          TABLE_NAME: billing-table
          STAGE: prod
"""


@pytest.fixture
def sam_app(tmp_path: Path) -> Path:
    """Two functions whose folders each hold ``app.py``."""
    for folder in ("orders", "billing"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "app.py").write_text(f"WHO = {folder!r}\n" + APP)
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    return tmp_path / "template.yaml"


@pytest.fixture(autouse=True)
def no_region(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a fresh machine: the handlers get their region from their environment only."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")


async def test_a_sam_template_runs_as_written(
    esm_harness: Any, sam_app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # boto3's default session made earlier in the process (it keeps os.environ as it found it)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    boto3.setup_default_session()
    h = await esm_harness(template=sam_app)
    orders = (await h.invoke("orders", {"n": 1})).response
    billing = (await h.invoke("BillingFunction", {"n": 1})).response

    assert orders == {
        "who": "orders",
        "table": "orders-table",
        "stage": "dev",  # Globals
        "region": "us-east-1",
        "name": "orders",
        "handler": "app.handler",
        "task_root": str(sam_app.parent / "orders"),
        "memory": "256",
        "calls": 1,
    }
    assert billing["who"] == "billing" and billing["table"] == "billing-table"
    assert billing["stage"] == "prod" and billing["name"] == "BillingFunction"
    assert billing["memory"] == "128"

    h.put_sqs_messages("orders", ["a", "b"])
    await h.run_until_idle()
    assert h.queue("orders").deleted_bodies() == ["a", "b"]
    assert h.invocations("orders")[-1].response["calls"] == 2


async def test_the_variables_are_the_functions_own_and_only_while_they_run(
    sam_app: Path,
) -> None:
    async with Harness(template=sam_app) as h:
        assert "TABLE_NAME" not in os.environ and os.environ.get("STAGE") is None
        assert (await h.invoke("orders")).response["table"] == "orders-table"
        assert "TABLE_NAME" not in os.environ
        assert "app" not in sys.modules  # each function's app.py is its own
    assert type(os.environ) is os._Environ


async def test_each_harness_imports_the_handlers_afresh(esm_harness: Any, sam_app: Path) -> None:
    first = await esm_harness(template=sam_app)
    assert [(await first.invoke("orders")).response["calls"] for _ in range(2)] == [1, 2]
    second = await esm_harness(template=sam_app)
    assert (await second.invoke("orders")).response["calls"] == 1
    assert (await first.invoke("orders")).response["calls"] == 3


async def test_an_esm_yaml_by_keyword_with_runtime_and_python_targets(
    esm_harness: Any, tmp_path: Path
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("WHO = 'src'\n" + APP)
    (tmp_path / "handlers.py").write_text(
        "import os\nFLAG = os.environ['FLAG']\n"
        "def handler(event, context):\n"
        "    return [FLAG, os.environ['AWS_LAMBDA_FUNCTION_NAME'], os.environ['AWS_REGION']]\n"
    )
    (tmp_path / "esm.yaml").write_text(
        textwrap.dedent(
            """\
            Settings: {Region: eu-west-1}
            Functions:
              orders:
                Runtime: python3.11
                Handler: app.handler
                CodeUri: src
                Environment: {Variables: {TABLE_NAME: t}}
              plain:
                Target: python:handlers.handler
                Environment: {Variables: {FLAG: "on"}}
            """
        )
    )
    h = await esm_harness(config=tmp_path / "esm.yaml")
    orders = (await h.invoke("orders")).response
    assert orders["who"] == "src" and orders["region"] == "eu-west-1"
    assert orders["task_root"] == str(tmp_path / "src")
    assert (await h.invoke("plain")).response == ["on", "plain", "eu-west-1"]


async def test_functions_running_at_once_each_see_their_own_variables() -> None:
    """Sync handlers in threads and async ones on the loop, all in flight together."""
    both = threading.Barrier(2, timeout=5)

    def sync_handler(event: Any, context: Any) -> list[str]:
        before = os.environ["COLOUR"]
        if event.get("together"):
            both.wait()  # the other function is running now
        os.environ["SEEN"] = before  # a handler's write stays its function's
        return [before, os.environ["COLOUR"], os.environ["AWS_LAMBDA_FUNCTION_NAME"]]

    async def async_handler(event: Any, context: Any) -> list[str]:
        before = os.environ["COLOUR"]
        await asyncio.sleep(0.01)
        return [before, os.environ["COLOUR"], os.environ.get("SEEN", "-")]

    config = {
        "Functions": {
            name: {"Target": "python:x.y", "Environment": {"Variables": {"COLOUR": name}}}
            for name in ("red", "blue", "green")
        }
    }
    handlers = {"red": sync_handler, "blue": sync_handler, "green": async_handler}
    async with Harness(config, functions=handlers) as h:
        calls = await asyncio.gather(
            h.invoke("red", {"together": True}),
            h.invoke("blue", {"together": True}),
            h.invoke("green"),
            h.invoke("green"),
        )
        assert [c.response for c in calls] == [
            ["red", "red", "red"],
            ["blue", "blue", "blue"],
            ["green", "green", "-"],
            ["green", "green", "-"],
        ]
        assert "SEEN" not in os.environ and "COLOUR" not in os.environ
        again = await h.invoke("red")
        assert again.ok and again.response == ["red", "red", "red"]


def test_the_sync_harness_loads_a_template_and_shows_its_methods(sam_app: Path) -> None:
    with SyncHarness(template=sam_app) as h:
        assert h.invoke("orders").response["table"] == "orders-table"
        names = dir(h)
        for name in ("invoke", "run_until_idle", "queue", "put_sqs_messages", "invocations"):
            assert name in names
        assert "aclose" not in names  # the harness's coroutine; close() is the sync one


def test_config_and_template_are_one_or_the_other(sam_app: Path) -> None:
    with pytest.raises(TypeError, match="config or template"):
        Harness({"Functions": {}}, template=sam_app)
    with pytest.raises(TypeError, match="go with template"):
        Harness({"Functions": {}}, parameters={"Stage": "dev"})


def test_the_async_fixture_needs_no_asyncio_mark_in_strict_mode(tmp_path: Path) -> None:
    """pytest-asyncio's default (strict) mode runs only marked async tests; the plugin marks
    those that use esm_harness."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = strict\n")
    (tmp_path / "test_app.py").write_text(
        textwrap.dedent(
            """\
            async def test_it(esm_harness):
                h = await esm_harness({"Functions": {"f": {"Target": "python:m.h"}}},
                                      functions={"f": lambda e, c: e})
                assert (await h.invoke("f", {"a": 1})).response == {"a": 1}
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "1 passed" in run.stdout, run.stdout + run.stderr


async def test_errors_read_as_lambdas(esm_harness: Any, tmp_path: Path) -> None:
    """A handler's stack trace holds its own frames only; a module that cannot be imported is
    Runtime.ImportModuleError on each call, as on Lambda."""
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "app.py").write_text(
        "def handler(event, context):\n    raise ValueError('bad order')\n"
    )
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "app.py").write_text("import not_installed_anywhere\n")
    (tmp_path / "template.yaml").write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n"
        + "".join(
            f"  {name.title()}:\n    Type: AWS::Serverless::Function\n    Properties:\n"
            f"      FunctionName: {name}\n      CodeUri: {name}/\n      Handler: app.handler\n"
            "      Runtime: python3.11\n"
            for name in ("ok", "broken")
        )
    )
    h = await esm_harness(template=tmp_path / "template.yaml")

    failed = (await h.invoke("ok")).error
    assert failed is not None and failed["errorType"] == "ValueError"
    assert len(failed["stackTrace"]) == 1 and "app.py" in failed["stackTrace"][0]
    for _ in range(2):
        broken = (await h.invoke("broken")).error
        assert broken is not None and broken["errorType"] == "Runtime.ImportModuleError"
        assert "not_installed_anywhere" in broken["errorMessage"]
