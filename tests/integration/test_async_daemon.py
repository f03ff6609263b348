"""Asynchronous invocation through real ``esm run`` processes: Lambda's Invoke API on their HTTP
port (boto3's ``lambda`` client), the queue in the real Redis, destinations and dead-letter
queues in moto's server, handlers as ``python:`` modules in the test's folder.

Real clock, short retry delays (``AsyncRetryDelaysSeconds: [1, 2]``) and a short visibility
timeout (``AsyncVisibilityTimeoutSeconds: 3``). Each test has a ``StorePrefix`` of its own and
deletes its keys afterwards. Every invocation appends JSON lines to ``invocations.jsonl``:
``start`` when the handler is entered and ``end`` when it returns, with the payload, the pid
and the request id, so the log of several daemons tells who ran what, and what was cut short.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from esm.async_queue import AsyncQueue
from esm.async_worker import BLOCK_MS
from esm.aws import AwsClients
from esm.clock import RealClock
from esm.store import Store
from tests.daemon import Daemon, aws_env
from tests.redis_cluster import on_redis
from tests.streams_support import create_queue, delete_keys
from tests.support import ACCOUNT, REGION, eventually, unique

pytestmark = pytest.mark.integration

VISIBILITY_S = 3
RETRY_DELAYS_S = (1, 2)
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
EMPTY = {"ready": 0, "claimed": 0, "delayed": 0}

HANDLER = """
import json, os, pathlib, time

LOG = pathlib.Path(__file__).parent / "invocations.jsonl"


def _log(phase, event, context):
    line = json.dumps(
        {
            "phase": phase,
            "pid": os.getpid(),
            "rid": context.aws_request_id,
            "t": time.time(),
            "event": event,
        }
    )
    with LOG.open("a") as f:  # one short O_APPEND write per line: lines never interleave
        f.write(line + "\\n")


def handle(event, context):
    _log("start", event, context)
    if isinstance(event, dict):
        time.sleep(event.get("sleep", 0))
    _log("end", event, context)
    return {"handled": event}


def fail(event, context):
    _log("start", event, context)
    raise ValueError(f"boom {event['id']}")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Deployment:
    """``handler.py`` and an ``esm.yaml`` in a folder; daemons started on it share its Redis
    prefix (and its config, so with ``ApiPort: 0`` each binds a port of its own)."""

    def __init__(
        self,
        folder: Path,
        *,
        moto_url: str,
        redis_url: str,
        functions: dict[str, dict[str, Any]],
        api_port: int | None = None,
        **settings: Any,
    ) -> None:
        self.folder = folder
        self.redis_url = redis_url
        self.prefix = unique("esm-async-daemon")
        self.api_port = free_port() if api_port is None else api_port
        self.env = aws_env(moto_url, REGION)
        self.functions = functions
        (folder / "daemon_handler.py").write_text(HANDLER)
        config = {
            "Settings": {
                "Region": REGION,
                "AccountId": ACCOUNT,
                "Store": redis_url,
                "StorePrefix": self.prefix,
                "ApiPort": self.api_port,
                "AsyncRetryDelaysSeconds": list(RETRY_DELAYS_S),
                "AsyncVisibilityTimeoutSeconds": VISIBILITY_S,
                "ShutdownTimeoutSeconds": 5,
                **settings,
            },
            "Functions": functions,
        }
        (folder / "esm.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.daemons: list[Daemon] = []

    def spawn(self) -> Daemon:
        d = Daemon(["run", str(self.folder / "esm.yaml")], env=self.env)
        self.daemons.append(d)
        return d

    async def start(self) -> tuple[Daemon, str]:
        """A daemon on this folder, once its API answers: (the daemon, the API's URL)."""
        d = self.spawn()
        return d, await self.api_url(d)

    async def api_url(self, d: Daemon) -> str:
        """The URL ``d`` logs once its API listens; AssertionError if it exits first."""

        def url() -> str | None:
            if d.proc.poll() is not None:
                raise AssertionError(f"esm run exited with {d.proc.returncode}:\n{d.output}")
            found = re.search(r"Lambda API at (http://\S+)", d.output)
            return found.group(1) if found else None

        api: str = await eventually(url, timeout=20, what=f"the Lambda API\n{d.output}")
        if self.api_port:
            assert api == f"http://127.0.0.1:{self.api_port}"
        return api

    def entries(self, phase: str | None = None) -> list[dict[str, Any]]:
        path = self.folder / "invocations.jsonl"
        if not path.exists():
            return []
        found = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
        return [e for e in found if phase is None or e["phase"] == phase]

    def ids(self, phase: str, pid: int | None = None) -> Counter[Any]:
        """How many times each event (by its ``id``) reached ``phase``."""
        return Counter(
            e["event"]["id"] for e in self.entries(phase) if pid is None or e["pid"] == pid
        )

    async def depth(self) -> dict[str, int]:
        """The async queue as a daemon of this deployment sees it."""
        clock = RealClock()
        store = Store.from_url(self.redis_url, clock=clock, prefix=self.prefix)
        try:
            queue = AsyncQueue(
                store.redis,
                clock=clock,
                keys=store.keys,
                functions=self.functions,
                consumer="test",
                visibility_s=VISIBILITY_S,
            )
            return await queue.depth()
        finally:
            await store.aclose()


@pytest.fixture
async def deployments(store_url: str) -> AsyncIterator[list[Deployment]]:
    made: list[Deployment] = []
    yield made
    for dep in made:
        for d in dep.daemons:
            d.kill()
        await delete_keys(store_url, f"{dep.prefix}:*")


@pytest.fixture
def deploy(tmp_path: Path, moto_url: str, store_url: str, deployments: list[Deployment]) -> Any:
    """Deployments on the shared Redis, or on the Redis kind the test is parametrized with
    (``on_redis``)."""

    def make(functions: dict[str, dict[str, Any]], **settings: Any) -> Deployment:
        dep = Deployment(
            tmp_path, moto_url=moto_url, redis_url=store_url, functions=functions, **settings
        )
        deployments.append(dep)
        return dep

    return make


@pytest.fixture
def clients() -> Iterator[list[BaseClient]]:
    made: list[BaseClient] = []
    yield made
    for c in made:
        c.close()


def lambda_client(url: str, *, pool: int = 10) -> BaseClient:
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=pool),
    )


def invoke_now(client: BaseClient, **kwargs: Any) -> dict[str, Any]:
    response: dict[str, Any] = client.invoke(**kwargs)
    response["Payload"] = response["Payload"].read()
    return response


async def invoke(client: BaseClient, **kwargs: Any) -> dict[str, Any]:
    """``client.invoke`` in a thread (boto3 blocks), with the payload read."""
    return await asyncio.to_thread(invoke_now, client, **kwargs)


async def invoke_error(client: BaseClient, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as info:
        await invoke(client, **kwargs)
    return info.value


def event(payload: dict[str, Any]) -> dict[str, Any]:
    return {"InvocationType": "Event", "Payload": json.dumps(payload).encode()}


# -- 1. Event → the handler → the OnSuccess destination ------------------------------------------


async def test_an_event_runs_the_handler_and_its_record_reaches_the_on_success_queue(
    deploy: Any, aws: AwsClients, clients: list[BaseClient]
) -> None:
    dest_arn, dest_url = await create_queue(aws, unique("on-success"))
    dep: Deployment = deploy(
        {
            "ok": {
                "Target": "python:daemon_handler.handle",
                "EventInvokeConfig": {
                    "DestinationConfig": {"OnSuccess": {"Destination": dest_arn}}
                },
            }
        }
    )
    d, url = await dep.start()
    client = lambda_client(url)
    clients.append(client)

    payload = {"id": "order-1", "items": [1, 2]}
    resp = await invoke(client, FunctionName="ok", **event(payload))
    assert resp["StatusCode"] == 202
    assert resp["Payload"] == b""
    request_id = resp["ResponseMetadata"]["RequestId"]
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"] == request_id

    sqs = await aws.client("sqs", REGION)
    got: list[dict[str, Any]] = []

    async def arrived() -> bool:
        msgs = (await sqs.receive_message(QueueUrl=dest_url, MaxNumberOfMessages=10)).get(
            "Messages", []
        )
        got.extend(json.loads(m["Body"]) for m in msgs)
        return bool(got)

    await eventually(arrived, timeout=15, interval=0.2, what=f"the OnSuccess record\n{d.output}")
    (record,) = got
    (ran,) = dep.entries("end")
    assert ran["event"] == payload and ran["pid"] == d.proc.pid and ran["rid"] == request_id
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": f"{FUNCTION_ARN}:ok:$LATEST",
        "condition": "Success",
        "approximateInvokeCount": 1,
    }
    assert record["requestContext"]["functionArn"].endswith(":$LATEST")
    assert record["requestPayload"] == payload
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"handled": payload}
    await eventually(lambda: _is_empty(dep), timeout=5, what="the event to leave the queue")
    assert d.stop(signal.SIGTERM) == 0


async def _is_empty(dep: Deployment) -> bool:
    return await dep.depth() == EMPTY


# -- 2. the synchronous paths and Invoke's errors -------------------------------------------------


async def test_request_response_dry_run_and_invokes_errors_through_the_daemon(
    deploy: Any, clients: list[BaseClient]
) -> None:
    dep: Deployment = deploy(
        {
            "ok": {"Target": "python:daemon_handler.handle"},
            "broken": {"Target": "python:daemon_handler.fail"},
            "off": {"Target": "python:daemon_handler.handle", "ReservedConcurrentExecutions": 0},
        }
    )
    d, url = await dep.start()
    client = lambda_client(url)
    clients.append(client)

    resp = await invoke(client, FunctionName="ok", Payload=b'{"id": "sync-1"}')
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp
    assert json.loads(resp["Payload"]) == {"handled": {"id": "sync-1"}}
    assert resp["ExecutedVersion"] == "$LATEST"

    resp = await invoke(client, FunctionName="broken", Payload=b'{"id": "sync-2"}')
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    error = json.loads(resp["Payload"])
    assert error["errorMessage"] == "boom sync-2"
    assert error["errorType"] == "ValueError"
    assert isinstance(error["stackTrace"], list)

    resp = await invoke(client, FunctionName="ok", InvocationType="DryRun", Payload=b"{}")
    assert resp["StatusCode"] == 204

    cases: list[tuple[dict[str, Any], int, str, str]] = [
        (
            {"FunctionName": "nope"},
            404,
            "ResourceNotFoundException",
            f"Function not found: {FUNCTION_ARN}:nope",
        ),
        (
            {"FunctionName": "ok", "Payload": b"not json"},
            400,
            "InvalidRequestContentException",
            "Could not parse request body into json",
        ),
        (
            {"FunctionName": "ok", "InvocationType": "Event", "Payload": _json_of(2 * 1024**2)},
            413,
            "RequestTooLargeException",
            "2097152 byte payload is too large for the Event invocation type",
        ),
        (
            {"FunctionName": "off", "Payload": b'{"id": "sync-3"}'},
            429,
            "TooManyRequestsException",
            "Rate Exceeded.",
        ),
    ]
    for kwargs, status, code, message in cases:
        err = await invoke_error(client, **kwargs)
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == status, kwargs
        assert err.response["Error"]["Code"] == code
        assert err.response["Error"]["Message"].startswith(message), err.response

    async with aiohttp.ClientSession() as session, session.get(f"{url}/health") as health:
        assert health.status == 200
        assert (await health.json())["status"] == "ok"

    # only the two good calls ran a handler; DryRun, the refused and the throttled ones did not
    assert [e["event"] for e in dep.entries("start")] == [{"id": "sync-1"}, {"id": "sync-2"}]
    assert d.stop(signal.SIGTERM) == 0


def _json_of(size: int) -> bytes:
    """A JSON document of exactly ``size`` bytes."""
    return b'"' + b"x" * (size - 2) + b'"'


# -- 3. kill -9 with events in flight: another daemon finishes them -------------------------------


async def test_kill_9_with_events_in_flight_loses_none_a_second_daemon_runs_them(
    deploy: Any, clients: list[BaseClient]
) -> None:
    dep: Deployment = deploy(
        {"slow": {"Target": "python:daemon_handler.handle"}},  # Timeout 3 s: not past visibility
        AsyncConcurrency=5,
    )
    first, url = await dep.start()
    client = lambda_client(url)
    clients.append(client)
    ids = [f"k-{i}" for i in range(20)]
    for i in ids:
        resp = await invoke(client, FunctionName="slow", **event({"id": i, "sleep": 2}))
        assert resp["StatusCode"] == 202

    def in_flight() -> set[str]:
        pid = first.proc.pid
        return set(dep.ids("start", pid)) - set(dep.ids("end", pid))

    await eventually(in_flight, timeout=10, what=f"events in flight\n{first.output}")
    first.kill()  # SIGKILL: no drain, its claims stay pending in Redis
    cut_short = in_flight()
    assert cut_short, "the log shows handlers started and not finished by the killed daemon"
    assert len(dep.ids("start", first.proc.pid)) <= 5  # AsyncConcurrency
    started_by_first = set(dep.ids("start", first.proc.pid))

    restarted = time.monotonic()
    second, _ = await dep.start()
    await eventually(
        lambda: set(dep.ids("end")) == set(ids),
        timeout=20,
        what=f"every event handled\n{second.output}",
    )
    took = time.monotonic() - restarted
    assert took < 20, took
    ended = dep.ids("end")
    assert set(ended) == set(ids)  # none lost
    assert cut_short <= set(dep.ids("end", second.proc.pid))  # the cut-short ones ran again
    # only what the dead daemon had claimed may have run twice
    assert {i for i, n in dep.ids("start").items() if n > 1} <= started_by_first
    assert {e["pid"] for e in dep.entries()} == {first.proc.pid, second.proc.pid}
    await eventually(lambda: _is_empty(dep), timeout=5, what="an empty queue")
    assert second.stop(signal.SIGTERM) == 0


# -- 4. two daemons on one Redis share 2,000 events ----------------------------------------------

EVENTS = 2000


@on_redis("redis", "cluster")
async def test_two_daemons_share_2000_events_each_invoked_exactly_once(
    deploy: Any, clients: list[BaseClient]
) -> None:
    dep: Deployment = deploy({"fast": {"Target": "python:daemon_handler.handle"}}, api_port=0)
    (a, url_a), (b, url_b) = await asyncio.gather(dep.start(), dep.start())
    assert url_a != url_b
    threads = 16
    pair = [lambda_client(url_a, pool=threads), lambda_client(url_b, pool=threads)]
    clients.extend(pair)

    def send(n: int) -> int:
        resp = invoke_now(pair[n % 2], FunctionName="fast", **event({"id": n}))
        return int(resp["StatusCode"])

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        statuses = await asyncio.to_thread(lambda: list(pool.map(send, range(EVENTS))))
    assert statuses == [202] * EVENTS
    await eventually(
        lambda: len(dep.ids("end")) == EVENTS,
        timeout=30,
        interval=0.2,
        what=f"{EVENTS} events handled\n{a.output[-3000:]}\n{b.output[-3000:]}",
    )
    took = time.monotonic() - started
    await eventually(lambda: _is_empty(dep), timeout=5, what="an empty queue")

    invoked = dep.ids("start")
    assert set(invoked) == set(range(EVENTS))
    assert {i: n for i, n in invoked.items() if n != 1} == {}  # each exactly once
    by_pid = Counter(e["pid"] for e in dep.entries("start"))
    assert set(by_pid) == {a.proc.pid, b.proc.pid}, by_pid  # both did some of the work
    assert a.proc.poll() is None and b.proc.poll() is None  # neither crashed
    assert "Traceback" not in a.output + b.output
    assert a.stop(signal.SIGTERM) == 0
    assert b.stop(signal.SIGTERM) == 0
    assert took < 40, took


# -- 5. retries exhausted: the dead-letter queue --------------------------------------------------


async def test_a_failing_event_is_retried_once_then_reaches_the_dead_letter_queue(
    deploy: Any, aws: AwsClients, clients: list[BaseClient]
) -> None:
    dlq_arn, dlq_url = await create_queue(aws, unique("dlq"))
    dep: Deployment = deploy(
        {
            "broken": {
                "Target": "python:daemon_handler.fail",
                "EventInvokeConfig": {"MaximumRetryAttempts": 1},
                "DeadLetterConfig": {"TargetArn": dlq_arn},
            }
        }
    )
    d, url = await dep.start()
    client = lambda_client(url)
    clients.append(client)
    body = b'{"id": "poison",  "n": 1}'  # as sent, spacing included
    resp = await invoke(client, FunctionName="broken", InvocationType="Event", Payload=body)
    assert resp["StatusCode"] == 202
    request_id = resp["ResponseMetadata"]["RequestId"]

    sqs = await aws.client("sqs", REGION)
    got: list[dict[str, Any]] = []

    async def arrived() -> bool:
        resp = await sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        got.extend(resp.get("Messages", []))
        return bool(got)

    await eventually(arrived, timeout=15, interval=0.2, what=f"the DLQ message\n{d.output}")
    (msg,) = got
    assert msg["Body"] == body.decode()  # the event as-is
    attrs = {k: (v["DataType"], v["StringValue"]) for k, v in msg["MessageAttributes"].items()}
    assert attrs == {
        "RequestID": ("String", request_id),
        "ErrorCode": ("Number", "200"),
        "ErrorMessage": ("String", "boom poison"),
    }
    runs = dep.entries("start")
    assert [r["rid"] for r in runs] == [request_id, request_id]  # the first try and one retry
    # the delay is jittered by ±10 %; the worker notices a due retry only between two blocking
    # claims, so it may run up to one claim's block (BLOCK_MS) late
    gap = runs[1]["t"] - runs[0]["t"]
    delay = RETRY_DELAYS_S[0]
    assert delay * 0.9 - 0.05 <= gap <= delay * 1.1 + BLOCK_MS / 1000 + 0.4, gap
    await eventually(lambda: _is_empty(dep), timeout=5, what="an empty queue")
    await asyncio.sleep(RETRY_DELAYS_S[1] + 0.5)  # no third attempt
    assert len(dep.entries("start")) == 2
    assert d.stop(signal.SIGTERM) == 0


# -- an invocation that outlasts the visibility timeout ----------------------------------------


async def test_an_invocation_longer_than_the_visibility_timeout_is_not_run_twice(
    deploy: Any, clients: list[BaseClient]
) -> None:
    """One live daemon, one event whose handler runs 6 s (Timeout 10, visibility 3): the event
    runs once. (The worker keeps its claims on events it is still invoking fresh, so neither it
    nor another daemon reclaims them.)"""
    dep: Deployment = deploy({"long": {"Target": "python:daemon_handler.handle", "Timeout": 10}})
    d = dep.spawn()
    try:
        url = await dep.api_url(d)
    except AssertionError:
        if d.proc.poll() is None:
            raise
        # refused: the message names the setting and the function
        assert d.proc.returncode == 1
        assert "AsyncVisibilityTimeoutSeconds" in d.output and "long" in d.output, d.output
        return
    client = lambda_client(url)
    clients.append(client)
    resp = await invoke(client, FunctionName="long", **event({"id": "long", "sleep": 6}))
    assert resp["StatusCode"] == 202
    await eventually(lambda: dep.ids("end"), timeout=15, what=d.output)
    await asyncio.sleep(0.5)
    assert dep.ids("start") == Counter({"long": 1}), d.output
