"""Execution environments with real ``awslambdaric`` processes: what the handler sees, what
Lambda's failures look like, warm reuse and reaping, logs, and an SQS mapping end to end."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from esm.api import serve
from esm.aws import AwsClients
from esm.clock import Clock, RealClock, VirtualClock
from esm.config import FunctionConfig, Settings
from esm.engine import Engine
from esm.environments import EnvironmentTarget
from esm.functions import Function, FunctionError, Ok, Throttled, build_function
from tests.conftest import ACCOUNT, REGION
from tests.support import Queues, engine_config, eventually, unique

pytestmark = pytest.mark.integration

APP = """
import os, sys, time, json
INITS = int(os.environ.get("ESM_TEST_INITS", "0")) + 1
os.environ["ESM_TEST_INITS"] = str(INITS)
print("init of", __name__)

def handler(event, context):
    print("event", json.dumps(event))
    action = event.get("action") if isinstance(event, dict) else None
    if action == "sleep":
        time.sleep(event["seconds"])
    elif action == "exit":
        sys.exit(3)
    elif action == "segfault":
        os.kill(os.getpid(), 11)
    elif action == "raise":
        raise ValueError("bad record")
    elif action == "big":
        return "x" * (7 * 1024 * 1024)
    return {
        "pid": os.getpid(),
        "inits": INITS,
        "cwd": os.getcwd(),
        "file": __file__,
        "env": dict(os.environ),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
    }
"""


def write_code(folder: Path, source: str = APP, module: str = "app") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    name = module if module.endswith(".sh") else f"{module}.py"
    (folder / name).write_text(textwrap.dedent(source))
    return folder


@pytest.fixture
async def make(aws: AwsClients) -> AsyncIterator[Callable[..., Function]]:
    made: list[Function] = []

    def build(
        name: str,
        code: Path,
        *,
        clock: Clock | None = None,
        settings: Settings | None = None,
        **props: Any,
    ) -> Function:
        doc = {"Runtime": "python3.11", "Handler": "app.handler", "CodeUri": str(code), **props}
        fn = build_function(
            name,
            FunctionConfig.model_validate(doc),
            region=REGION,
            account=ACCOUNT,
            clock=clock or RealClock(),
            aws=aws,
            settings=settings,
        )
        made.append(fn)
        return fn

    yield build
    for fn in made:
        await fn.aclose()


def payload(outcome: Any) -> Any:
    assert isinstance(outcome, Ok | FunctionError), outcome
    return json.loads(outcome.payload)


def pids(fn: Function) -> list[int | None]:
    target = fn._target
    assert isinstance(target, EnvironmentTarget)
    return [env.pid for env in target.environments]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    state = (
        Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() else "X"
    )
    return state != "Z"


def holds_runtime_client(folder: str) -> bool:
    return (Path(folder) / "awslambdaric").is_dir()


# -- what the handler sees -------------------------------------------------------------------------


async def test_handler_sees_its_variables_and_lambdas(
    tmp_path: Path, make: Callable[..., Function], moto_url: str
) -> None:
    code = write_code(tmp_path / "src")
    fn = make(
        "orders",
        code,
        MemorySize=256,
        Timeout=7,
        Environment={"Variables": {"STREAM_NAME": "orders-stream", "TZ": "ignored"}},
    )
    out = payload(await fn.invoke(b"{}"))
    env = out["env"]
    assert env["STREAM_NAME"] == "orders-stream"
    expected = {
        "_HANDLER": "app.handler",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_LAMBDA_FUNCTION_NAME": "orders",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/orders",
        "LAMBDA_TASK_ROOT": str(code.resolve()),
        "TZ": "ignored",  # TZ is not reserved: the function's value wins
        "AWS_ENDPOINT_URL": moto_url,  # esm's own endpoint: the handler's SDK reaches moto
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
    }
    assert {k: env.get(k) for k in expected} == expected
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"].endswith("]" + env["AWS_LAMBDA_LOG_STREAM_NAME"][-32:])
    assert "[$LATEST]" in env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert holds_runtime_client(env["LAMBDA_RUNTIME_DIR"])
    assert out["cwd"] == str(code.resolve())
    assert out["arn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders"
    assert 5000 < out["remaining_ms"] <= 7000
    # nothing else of esm's own environment leaks in
    assert "PYTEST_CURRENT_TEST" not in env


def test_reserved_variables_are_refused() -> None:
    with pytest.raises(ValueError, match="AWS_REGION: reserved by Lambda"):
        FunctionConfig.model_validate(
            {
                "Runtime": "python3.12",
                "Handler": "app.handler",
                "Environment": {"Variables": {"AWS_REGION": "eu-west-1"}},
            }
        )


async def test_module_level_client_reaches_moto(
    tmp_path: Path, make: Callable[..., Function], aws: AwsClients
) -> None:
    queues = Queues(aws)
    _, url = await queues.create(unique("env-out"))
    code = write_code(
        tmp_path / "src",
        """
        import os, boto3
        sqs = boto3.client("sqs")  # at import: region and endpoint from the environment
        def handler(event, context):
            sqs.send_message(QueueUrl=os.environ["OUT"], MessageBody=event["body"])
            return "sent"
        """,
    )
    fn = make("sender", code, Environment={"Variables": {"OUT": url}})
    assert payload(await fn.invoke(b'{"body": "from the handler"}')) == "sent"
    bodies = [m["Body"] for m in await queues.drain(url)]
    assert bodies == ["from the handler"]


async def test_two_functions_each_with_app_py(
    tmp_path: Path, make: Callable[..., Function]
) -> None:
    one = make("one", write_code(tmp_path / "one", "def handler(e, c):\n    return 'one'\n"))
    two = make("two", write_code(tmp_path / "two", "def handler(e, c):\n    return 'two'\n"))
    assert payload(await one.invoke(b"{}")) == "one"
    assert payload(await two.invoke(b"{}")) == "two"
    assert payload(await one.invoke(b"{}")) == "one"


# -- lifecycle -------------------------------------------------------------------------------------


async def test_warm_reuse_then_cold_start_after_idle(
    tmp_path: Path, make: Callable[..., Function]
) -> None:
    clock = VirtualClock()
    fn = make(
        "warm",
        write_code(tmp_path / "src"),
        clock=clock,
        settings=Settings(EnvironmentIdleSeconds=60),
    )
    first = await fn.invoke(b"{}")
    second = await fn.invoke(b"{}")
    a, b = payload(first), payload(second)
    assert a["pid"] == b["pid"] and b["inits"] == 1  # warm: the same process, init once
    assert isinstance(first, Ok) and isinstance(second, Ok)
    assert "Init Duration:" in (first.log or "") and "init of app" in (first.log or "")
    assert "Init Duration:" not in (second.log or "")
    await clock.advance(59)
    assert pids(fn) == [a["pid"]]
    await clock.advance(1)
    await eventually(lambda: pids(fn) == [] and not alive(a["pid"]), what="reaped")
    third = await fn.invoke(b"{}")
    c = payload(third)
    assert c["pid"] != a["pid"] and c["inits"] == 1
    assert isinstance(third, Ok) and "Init Duration:" in (third.log or "")


async def test_concurrent_calls_get_their_own_environments(
    tmp_path: Path, make: Callable[..., Function]
) -> None:
    fn = make("pool", write_code(tmp_path / "src"), ReservedConcurrentExecutions=2)
    event = json.dumps({"action": "sleep", "seconds": 0.3}).encode()
    results = await asyncio.gather(*(fn.invoke(event) for _ in range(2)))
    assert all(isinstance(r, Ok) for r in results)
    assert len(pids(fn)) == 2


async def test_timeout_kills_and_next_call_gets_a_fresh_environment(
    tmp_path: Path, make: Callable[..., Function]
) -> None:
    fn = make("slow", write_code(tmp_path / "src"), Timeout=1)
    warm = payload(await fn.invoke(b"{}"))
    out = await fn.invoke(json.dumps({"action": "sleep", "seconds": 30}).encode())
    assert isinstance(out, FunctionError)
    error = json.loads(out.payload)
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"].endswith("Task timed out after 1.00 seconds")
    assert "Status: timeout" in (out.log or "")
    await eventually(lambda: not alive(warm["pid"]), what="the timed-out process killed")
    fresh = payload(await fn.invoke(b"{}"))
    assert fresh["pid"] != warm["pid"] and fresh["inits"] == 1


@pytest.mark.parametrize(
    ("action", "described"),
    [("exit", "exit status 3"), ("segfault", "signal: segmentation fault")],
)
async def test_a_dying_runtime_is_an_exit_error(
    tmp_path: Path, make: Callable[..., Function], action: str, described: str
) -> None:
    fn = make("dies", write_code(tmp_path / "src"))
    out = await fn.invoke(json.dumps({"action": action}).encode())
    assert isinstance(out, FunctionError)
    error = json.loads(out.payload)
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith(f"Error: Runtime exited with error: {described}")
    assert payload(await fn.invoke(b"{}"))["inits"] == 1  # esm carries on, fresh environment


async def test_handler_exception_is_the_runtimes_error(
    tmp_path: Path, make: Callable[..., Function]
) -> None:
    fn = make("raises", write_code(tmp_path / "src"))
    first = payload(await fn.invoke(b"{}"))
    out = await fn.invoke(b'{"action": "raise"}')
    assert isinstance(out, FunctionError) and out.kind == "Unhandled"
    error = json.loads(out.payload)
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "bad record")
    assert any("raise ValueError" in line for line in error["stackTrace"])
    assert "[ERROR] ValueError: bad record" in (out.log or "")
    assert payload(await fn.invoke(b"{}"))["pid"] == first["pid"]  # a handled failure: warm


async def test_response_too_large(tmp_path: Path, make: Callable[..., Function]) -> None:
    fn = make("big", write_code(tmp_path / "src"))
    out = await fn.invoke(b'{"action": "big"}')
    assert isinstance(out, FunctionError)
    assert json.loads(out.payload)["errorType"] == "Function.ResponseSizeTooLarge"


async def test_import_error_then_fixed(tmp_path: Path, make: Callable[..., Function]) -> None:
    code = write_code(tmp_path / "src", "import not_a_module\ndef handler(e, c):\n    return 1\n")
    fn = make("broken", code)
    out = await fn.invoke(b"{}")
    assert isinstance(out, FunctionError)
    error = json.loads(out.payload)
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'app'" in error["errorMessage"]
    assert pids(fn) == []  # dropped: the next call starts afresh
    write_code(code, "def handler(e, c):\n    return 'fixed'\n")
    assert payload(await fn.invoke(b"{}")) == "fixed"


# -- logs ------------------------------------------------------------------------------------------


async def test_logs_are_tagged_and_invoke_tail_has_them(
    tmp_path: Path, aws: AwsClients, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="esm.function")
    code = write_code(tmp_path / "src")
    config = engine_config(
        {"tail": {"Runtime": "python3.11", "Handler": "app.handler", "CodeUri": str(code)}}, []
    )
    engine = Engine(config, aws=aws)
    await engine.start()
    api = await serve(engine, port=0)
    try:
        client = boto3.client(
            "lambda",
            endpoint_url=api.url,
            region_name=REGION,
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        resp = await asyncio.to_thread(
            client.invoke, FunctionName="tail", Payload=b'{"k": "v"}', LogType="Tail"
        )
        body = json.loads(resp["Payload"].read())
    finally:
        await api.aclose()
        await engine.aclose()
    log = base64.b64decode(resp["LogResult"]).decode()
    rid = body["request_id"]
    lines = log.splitlines()
    assert lines[0] == "init of app"
    assert lines[1] == f"START RequestId: {rid} Version: $LATEST"
    assert lines[2] == 'event {"k": "v"}'
    assert lines[3] == f"END RequestId: {rid}"
    assert lines[4].startswith(f"REPORT RequestId: {rid}\tDuration: ")
    for field in (
        "Billed Duration: ",
        "Memory Size: 128 MB",
        "Max Memory Used: ",
        "Init Duration: ",
    ):
        assert field in lines[4]
    tagged = [r.getMessage() for r in caplog.records if r.name == "esm.function.tail"]
    assert f'{rid} event {{"k": "v"}}' in tagged


# -- an event source mapping -------------------------------------------------------------------------


async def test_sqs_mapping_runs_the_function_in_environments(
    tmp_path: Path, aws: AwsClients
) -> None:
    queues = Queues(aws)
    arn, url = await queues.create(unique("env-in"))
    _, out_url = await queues.create(unique("env-out"))
    code = write_code(
        tmp_path / "src",
        """
        import os, boto3
        sqs = boto3.client("sqs")
        def handler(event, context):
            failures = []
            for record in event["Records"]:
                if record["body"] == "poison":
                    failures.append({"itemIdentifier": record["messageId"]})
                else:
                    sqs.send_message(QueueUrl=os.environ["OUT"], MessageBody=record["body"])
            return {"batchItemFailures": failures}
        """,
    )
    config = engine_config(
        {
            "worker": {
                "Runtime": "python3.11",
                "Handler": "app.handler",
                "CodeUri": str(code),
                "Environment": {"Variables": {"OUT": out_url}},
            }
        },
        [
            {
                "FunctionName": "worker",
                "EventSourceArn": arn,
                "BatchSize": 5,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }
        ],
    )
    await queues.send(url, ["a", "b", "poison", "c"])
    engine = Engine(config, aws=aws)
    await engine.start()
    try:
        got: list[str] = []

        async def delivered() -> bool:
            got.extend(m["Body"] for m in await queues.drain(out_url))
            return len(got) >= 3

        await eventually(delivered, timeout=20, what="records through the function")
    finally:
        await engine.aclose()
    assert sorted(got) == ["a", "b", "c"]
    # the poison message stays on the queue (partial batch response), the others are deleted
    assert await queues.total(url) == 1


# -- provided.al2023: the function's own bootstrap ---------------------------------------------------

BOOTSTRAP = """#!/bin/bash
# AWS's custom runtime tutorial, in shape: source the handler, then loop on /next
set -euo pipefail
source "$LAMBDA_TASK_ROOT/$(echo "$_HANDLER" | cut -d. -f1).sh"
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT_DATA=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  if RESPONSE=$($(echo "$_HANDLER" | cut -d. -f2) "$EVENT_DATA"); then
    curl -sS "$API/invocation/$REQUEST_ID/response" -d "$RESPONSE" > /dev/null
  else
    curl -sS "$API/invocation/$REQUEST_ID/error" -H "Lambda-Runtime-Function-Error-Type: Shell.Failed" \\
      -d '{"errorMessage": "the handler failed", "errorType": "Shell.Failed"}' > /dev/null
  fi
done
"""

FUNCTION_SH = """
function handler () {
  EVENT_DATA=$1
  echo "got $EVENT_DATA" 1>&2
  if [[ "$EVENT_DATA" == *fail* ]]; then return 1; fi
  echo "{\\"echo\\": $EVENT_DATA, \\"function\\": \\"$AWS_LAMBDA_FUNCTION_NAME\\"}"
}
"""


async def test_provided_runtime_runs_a_shell_bootstrap(
    tmp_path: Path, make: Callable[..., Function]
) -> None:
    code = write_code(tmp_path / "src", FUNCTION_SH, module="function.sh")
    bootstrap = code / "bootstrap"
    bootstrap.write_text(BOOTSTRAP)
    bootstrap.chmod(0o755)
    fn = make("shell", code, Runtime="provided.al2023", Handler="function.handler")
    out = await fn.invoke(b'{"n": 1}')
    assert payload(out) == {"echo": {"n": 1}, "function": "shell"}
    assert isinstance(out, Ok) and 'got {"n": 1}' in (out.log or "")
    failed = await fn.invoke(b'{"fail": true}')
    assert isinstance(failed, FunctionError)
    assert json.loads(failed.payload)["errorType"] == "Shell.Failed"
    assert payload(await fn.invoke(b'{"n": 2}'))["echo"] == {"n": 2}


async def test_a_busy_pool_at_reserved_concurrency_throttles_sync_calls(
    tmp_path: Path, make: Callable[..., Function]
) -> None:
    fn = make("busy", write_code(tmp_path / "src"), ReservedConcurrentExecutions=1)
    slow = asyncio.create_task(fn.invoke(json.dumps({"action": "sleep", "seconds": 1}).encode()))
    await eventually(lambda: fn.in_flight == 1, what="the first call in flight")
    out = await fn.invoke(b"{}")
    assert isinstance(out, Throttled)
    assert out.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert isinstance(await slow, Ok)
    assert len(pids(fn)) == 1  # no second environment was started
