"""``nodejsNN.x`` functions in environments: real ``node`` processes running esm's Runtime API
client (esm/runtimes/nodejs.cjs), checked against what Lambda's Node.js runtime does."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from esm.aws import AwsClients
from esm.clock import RealClock
from esm.config import FunctionConfig
from esm.functions import Function, FunctionError, Ok, build_function
from tests.conftest import ACCOUNT, REGION
from tests.integration.test_environments import alive, payload, pids
from tests.support import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("node") is None, reason="no node on PATH"),
]

INDEX = """
console.log("init of", process.env.AWS_LAMBDA_FUNCTION_NAME);
let inits = (globalThis.inits || 0) + 1;
globalThis.inits = inits;

exports.handler = async (event, context) => {
  console.log("event", JSON.stringify(event));
  if (event.action === "sleep") await new Promise((r) => setTimeout(r, event.ms));
  if (event.action === "raise") throw new TypeError("bad record");
  if (event.action === "string") throw "just words";
  if (event.action === "exit") process.exit(3);
  return {
    pid: process.pid,
    inits,
    cwd: process.cwd(),
    env: process.env,
    context: {
      awsRequestId: context.awsRequestId,
      functionName: context.functionName,
      functionVersion: context.functionVersion,
      invokedFunctionArn: context.invokedFunctionArn,
      memoryLimitInMB: context.memoryLimitInMB,
      logGroupName: context.logGroupName,
      logStreamName: context.logStreamName,
      callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
      remaining: context.getRemainingTimeInMillis(),
    },
  };
};

exports.waits = (event, context, callback) => {
  setTimeout(() => console.log("timer done"), 100);
  callback(null, { waited: true });
};

exports.early = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => console.log("timer done"), 100);
  callback(null, { waited: false });
};

exports.fails = (event, context, callback) => callback(new RangeError("out of range"));

exports.forgets = (event, context) => {};

exports.nested = { deeper: { run: async (event) => ({ nested: event.n }) } };
"""


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
async def make(aws: AwsClients) -> AsyncIterator[Callable[..., Function]]:
    made: list[Function] = []

    def build(name: str, code: Path, handler: str = "index.handler", **props: Any) -> Function:
        doc = {"Runtime": "nodejs20.x", "Handler": handler, "CodeUri": str(code), **props}
        fn = build_function(
            name,
            FunctionConfig.model_validate(doc),
            region=REGION,
            account=ACCOUNT,
            clock=RealClock(),
            aws=aws,
        )
        made.append(fn)
        return fn

    yield build
    for fn in made:
        await fn.aclose()


# Lambda's Node.js text log line: ISO time, request id, level, message, tab-separated
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t(\S+)\t(INFO|WARN|ERROR)\t(.*)$")


def lines(outcome: Any) -> list[tuple[str, str, str]]:
    found = []
    for line in (outcome.log or "").splitlines():
        match = LINE.match(line)
        if match:
            found.append((match[1], match[2], match[3]))
    return found


async def test_handler_sees_variables_and_context_and_stays_warm(
    tmp_path: Path, make: Callable[..., Function], moto_url: str
) -> None:
    code = write(tmp_path / "src", {"index.js": INDEX})
    fn = make(
        "orders",
        code,
        MemorySize=256,
        Timeout=7,
        Environment={"Variables": {"TABLE": "orders-table"}},
    )
    first = await fn.invoke(b"{}")
    out = payload(first)
    env, context = out["env"], out["context"]
    assert env["TABLE"] == "orders-table"
    expected = {
        "_HANDLER": "index.handler",
        "AWS_REGION": REGION,
        "AWS_EXECUTION_ENV": "AWS_Lambda_nodejs20.x",
        "AWS_LAMBDA_FUNCTION_NAME": "orders",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "LAMBDA_TASK_ROOT": str(code.resolve()),
        "AWS_ENDPOINT_URL": moto_url,
    }
    assert {k: env.get(k) for k in expected} == expected
    assert env["NODE_PATH"].split(":")[-1] == str(code.resolve())
    assert out["cwd"] == str(code.resolve())
    assert context["functionName"] == "orders"
    assert context["functionVersion"] == "$LATEST"
    assert context["invokedFunctionArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders"
    assert context["memoryLimitInMB"] == "256"  # a string, as on Lambda
    assert context["logGroupName"] == "/aws/lambda/orders"
    assert context["logStreamName"] == env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert context["callbackWaitsForEmptyEventLoop"] is True
    assert 5000 < context["remaining"] <= 7000
    # the log: init's line has no request id yet ("undefined", as on Lambda), the event's has it
    logged = lines(first)
    assert ("undefined", "INFO", "init of orders") in logged
    assert (context["awsRequestId"], "INFO", "event {}") in logged
    assert "Init Duration:" in (first.log or "")
    second = payload(await fn.invoke(b"{}"))
    assert second["pid"] == out["pid"] and second["inits"] == 1


async def test_callback_handlers_wait_for_the_event_loop_unless_told(
    tmp_path: Path, make: Callable[..., Function]
) -> None:
    code = write(tmp_path / "src", {"index.js": INDEX})
    waits = await make("waits", code, "index.waits").invoke(b"{}")
    assert payload(waits) == {"waited": True}
    text = waits.log or ""
    assert text.index("timer done") < text.index("END RequestId")
    early = await make("early", code, "index.early").invoke(b"{}")
    assert payload(early) == {"waited": False}
    assert "timer done" not in (early.log or "")
    # a sync handler that never calls back answers null once the loop is empty
    forgets = await make("forgets", code, "index.forgets").invoke(b"{}")
    assert isinstance(forgets, Ok) and forgets.payload == b"null"
    nested = await make("nested", code, "index.nested.deeper.run").invoke(b'{"n": 4}')
    assert payload(nested) == {"nested": 4}


async def test_errors_have_lambdas_node_shape(
    tmp_path: Path, make: Callable[..., Function]
) -> None:
    code = write(tmp_path / "src", {"index.js": INDEX})
    fn = make("raises", code)
    warm = payload(await fn.invoke(b"{}"))
    out = await fn.invoke(b'{"action": "raise"}')
    assert isinstance(out, FunctionError) and out.kind == "Unhandled"
    error = json.loads(out.payload)
    assert list(error) == ["errorType", "errorMessage", "trace"]
    assert (error["errorType"], error["errorMessage"]) == ("TypeError", "bad record")
    assert error["trace"][0] == "TypeError: bad record"
    assert "index.js" in error["trace"][1]
    # logged as Lambda's runtime logs it: ERROR, "Invoke Error", a tab, the error as JSON
    (_rid, level, message) = next(entry for entry in lines(out) if entry[1] == "ERROR")
    assert level == "ERROR" and message.startswith("Invoke Error \t{")
    logged = json.loads(message.split("\t", 1)[1])
    assert (logged["errorType"], logged["errorMessage"]) == ("TypeError", "bad record")
    assert logged["stack"][0] == "TypeError: bad record"
    words = json.loads((await fn.invoke(b'{"action": "string"}')).payload)
    assert words == {"errorType": "string", "errorMessage": "just words", "trace": []}
    callback = json.loads((await make("cb", code, "index.fails").invoke(b"{}")).payload)
    assert (callback["errorType"], callback["errorMessage"]) == ("RangeError", "out of range")
    assert payload(await fn.invoke(b"{}"))["pid"] == warm["pid"]  # a handled failure: warm


@pytest.mark.parametrize(
    ("files", "handler", "kind", "message"),
    [
        ({"index.js": INDEX}, "nope.handler", "Runtime.ImportModuleError", "Error: Cannot find "),
        ({"index.js": INDEX}, "index.missing", "Runtime.HandlerNotFound", None),
        ({"index.js": "exports.h = 3;"}, "index.h", "Runtime.HandlerNotFound", None),
        ({"index.js": "exports.h = () => {;"}, "index.h", "Runtime.UserCodeSyntaxError", None),
        ({"index.js": INDEX}, "index", "Runtime.MalformedHandlerName", "Bad handler"),
    ],
)
async def test_init_errors(
    tmp_path: Path,
    make: Callable[..., Function],
    files: dict[str, str],
    handler: str,
    kind: str,
    message: str | None,
) -> None:
    fn = make("broken", write(tmp_path / "src", files), handler)
    out = await fn.invoke(b"{}")
    assert isinstance(out, FunctionError)
    error = json.loads(out.payload)
    assert error["errorType"] == kind
    expected = {
        "Runtime.HandlerNotFound": f"{handler} is "
        + ("not a function" if "= 3" in files["index.js"] else "undefined or not exported"),
    }.get(kind, message)
    if kind == "Runtime.UserCodeSyntaxError":
        assert error["errorMessage"].startswith("SyntaxError: ")
    else:
        assert expected is not None and error["errorMessage"].startswith(expected)
    assert error["trace"][0].startswith(kind)
    assert f"Error Type: {kind}" in (out.log or "")
    assert any(m.startswith("Uncaught Exception \t{") for _, _, m in lines(out))
    assert pids(fn) == []  # dropped: the next call starts afresh


async def test_timeout_kills_and_exit_is_an_exit_error(
    tmp_path: Path, make: Callable[..., Function]
) -> None:
    code = write(tmp_path / "src", {"index.js": INDEX})
    fn = make("slow", code, Timeout=1)
    warm = payload(await fn.invoke(b"{}"))
    out = await fn.invoke(b'{"action": "sleep", "ms": 30000}')
    error = json.loads(out.payload)
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"].endswith("Task timed out after 1.00 seconds")
    await eventually(lambda: not alive(warm["pid"]), what="the timed-out node killed")
    exited = json.loads((await fn.invoke(b'{"action": "exit"}')).payload)
    assert exited["errorType"] == "Runtime.ExitError"
    assert exited["errorMessage"].endswith("Runtime exited with error: exit status 3")
    assert payload(await fn.invoke(b"{}"))["inits"] == 1


@pytest.mark.parametrize(
    ("files", "handler"),
    [
        (
            {"app.mjs": "export const handler = async (e) => ({ kind: 'mjs', n: e.n });"},
            "app.handler",
        ),
        (
            {
                "package.json": '{"type": "module"}',
                "src/handlers/orders.js": "export async function handler(e) {\n"
                "  return { kind: 'module', n: e.n };\n}\n",
            },
            "src/handlers/orders.handler",
        ),
        (
            {"lib/app.cjs": "module.exports.handler = async (e) => ({ kind: 'cjs', n: e.n });"},
            "lib/app.handler",
        ),
    ],
)
async def test_es_modules_and_nested_folders(
    tmp_path: Path, make: Callable[..., Function], files: dict[str, str], handler: str
) -> None:
    fn = make("modules", write(tmp_path / "src", files), handler)
    out = payload(await fn.invoke(b'{"n": 2}'))
    assert out["n"] == 2 and out["kind"] in {"mjs", "module", "cjs"}


async def test_json_log_format_and_level(tmp_path: Path, make: Callable[..., Function]) -> None:
    code = write(
        tmp_path / "src",
        {
            "index.mjs": """
            export const handler = async (event) => {
              console.debug("hidden");
              console.info("shown", 1);
              console.error(new Error("logged"));
              return "ok";
            };
            """
        },
    )
    fn = make(
        "json",
        code,
        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "INFO"},
    )
    out = await fn.invoke(b"{}")
    entries = [json.loads(line) for line in (out.log or "").splitlines() if line.startswith("{")]
    assert [e["level"] for e in entries] == ["INFO", "ERROR"]
    info, error = entries
    assert list(info) == ["timestamp", "level", "requestId", "message"]
    assert info["message"] == "shown 1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", info["timestamp"])
    assert error["message"]["errorType"] == "Error"
    assert error["message"]["errorMessage"] == "logged"
    assert error["message"]["stackTrace"][0] == "Error: logged"


def test_a_node_function_needs_a_handler() -> None:
    with pytest.raises(ValueError, match=r"Handler is required with Runtime nodejs22\.x"):
        FunctionConfig.model_validate({"Runtime": "nodejs22.x", "CodeUri": "."})
