"""``esm run`` while its Redis fails: restarted empty (as compose's and the README's old
``--save ''`` Redis did), restarted with its append-only file, down for a while, and not there at
all at start. Each test runs its own ``redis-server`` (tests/redis_server.py) and a daemon as a
subprocess against moto's server; the function is a ``python:`` handler that appends what it gets
to a file, so what ran survives whatever happens to the daemon or to Redis.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from esm.aws import AwsClients
from tests.control_support import call, lambda_client
from tests.daemon import Daemon, aws_env
from tests.redis_server import RedisServer, free_port
from tests.streams_support import create_queue, create_stream, put
from tests.support import ACCOUNT, REGION, eventually, unique

pytestmark = pytest.mark.integration

HANDLER = """
import json, pathlib

LOG = pathlib.Path(__file__).parent / "seen.jsonl"


def handle(event, context):
    if isinstance(event, dict) and "Records" in event:
        items = [r.get("body") or r["kinesis"]["data"] for r in event["Records"]]
    else:
        items = [json.dumps(event)]
    with LOG.open("a") as f:
        for item in items:
            f.write(json.dumps({"fn": context.function_name, "item": item}) + "\\n")
"""


class Stack:
    """A folder with the handler and an esm.yaml, a Redis of its own, and the daemon."""

    def __init__(self, folder: Path, redis: RedisServer, moto_url: str) -> None:
        self.folder = folder
        self.redis = redis
        self.moto_url = moto_url
        self.api_port = free_port()
        self.daemon: Daemon | None = None
        (folder / "outage_handler.py").write_text(HANDLER)

    def write_config(self, mappings: list[dict[str, Any]], **settings: Any) -> None:
        target = {"Target": "python:outage_handler.handle", "Timeout": 5}
        config = {
            "Settings": {
                "Region": REGION,
                "AccountId": ACCOUNT,
                "Store": self.redis.url,
                "ApiPort": self.api_port,
                "RegistryPollSeconds": 0.2,
                "ShutdownTimeoutSeconds": 2,
                "ShardDiscoverySeconds": 1,
                "AsyncRetryDelaysSeconds": [1, 1],
                **settings,
            },
            "Functions": {"orders": target, "ledger": target, "notify": target},
            "EventSourceMappings": mappings,
        }
        (self.folder / "esm.yaml").write_text(json.dumps(config))

    async def start(self) -> Daemon:
        self.daemon = Daemon(
            ["run", str(self.folder / "esm.yaml")],
            env=aws_env(self.moto_url, REGION),
        )
        d = self.daemon
        await eventually(
            lambda: d.has("Lambda API at") or d.proc.poll() is not None,
            timeout=30,
            what=f"the daemon's API\n{d.output}",
        )
        assert d.proc.poll() is None, d.output
        return d

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def seen(self, fn: str) -> Counter[str]:
        path = self.folder / "seen.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return Counter(e["item"] for e in map(json.loads, lines) if e["fn"] == fn)

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"{self.api}/health", timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def stacks(tmp_path: Path, moto_url: str) -> Iterator[list[Stack]]:
    made: list[Stack] = []
    yield made
    for stack in made:
        if stack.daemon is not None:
            stack.daemon.kill()
        stack.redis.kill()


@pytest.fixture
def stack(tmp_path: Path, moto_url: str, stacks: list[Stack]) -> Any:
    def make(*, aof: bool) -> Stack:
        redis = RedisServer(tmp_path / "redis", aof=aof)
        redis.start()
        made = Stack(tmp_path, redis, moto_url)
        stacks.append(made)
        return made

    return make


@pytest.fixture
async def sources(aws: AwsClients) -> AsyncIterator[dict[str, str]]:
    orders, orders_url = await create_queue(aws, unique("orders"))
    returns, returns_url = await create_queue(aws, unique("returns"))
    yield {
        "orders": orders,
        "orders_url": orders_url,
        "returns": returns,
        "returns_url": returns_url,
        "ledger": await create_stream(aws),
    }


async def send(aws: AwsClients, url: str, *bodies: str) -> None:
    sqs = await aws.client("sqs", REGION)
    for body in bodies:
        await sqs.send_message(QueueUrl=url, MessageBody=body)


def kinesis_items(*values: str) -> list[str]:
    """What the handler records for these Kinesis values: the base64 of their JSON."""
    return [base64.b64encode(json.dumps(v).encode()).decode() for v in values]


async def test_redis_restarted_empty_the_daemon_rebuilds_and_carries_on(
    stack: Any, sources: dict[str, str], aws: AwsClients
) -> None:
    s: Stack = stack(aof=False)
    s.write_config(
        [
            {"FunctionName": "orders", "EventSourceArn": sources["orders"]},
            {
                "FunctionName": "ledger",
                "EventSourceArn": sources["ledger"],
                "StartingPosition": "TRIM_HORIZON",
            },
        ],
        LeaseSeconds=3,
    )
    d = await s.start()
    client = lambda_client(s.api)
    api_mapping = await call(
        client,
        "create_event_source_mapping",
        FunctionName="orders",
        EventSourceArn=sources["returns"],
    )
    await send(aws, sources["orders_url"], "o1")
    await put(aws, sources["ledger"], [("k", "l1")])
    await call(client, "invoke", FunctionName="notify", InvocationType="Event", Payload=b'"n1"')
    await eventually(
        lambda: s.seen("orders")["o1"] and s.seen("ledger") and s.seen("notify")['"n1"'],
        timeout=30,
        what="the first round",
    )

    s.redis.kill()
    s.redis.start()  # empty: no save, no AOF

    await eventually(lambda: d.has("lost its data"), timeout=20, what=f"the ERROR\n{d.output}")
    (line,) = [ln for ln in d.lines if "lost its data" in ln]
    assert " ERROR " in line
    assert f"1 mapping(s) created through the API ({api_mapping['UUID']})" in line
    assert "Putting back 2 mapping(s) of the config file" in line

    # Work after the loss: all of it runs, on the same daemon.
    await send(aws, sources["orders_url"], "o2")
    await put(aws, sources["ledger"], [("k", "l2")])
    await call(client, "invoke", FunctionName="notify", InvocationType="Event", Payload=b'"n2"')
    l1, l2 = kinesis_items("l1", "l2")
    await eventually(
        lambda: s.seen("orders")["o2"] and s.seen("ledger")[l2] and s.seen("notify")['"n2"'],
        timeout=30,
        what=f"the work after the loss\n{d.output}",
    )
    assert s.seen("ledger")[l1] == 2  # TRIM_HORIZON: the stream is read again from its start
    assert s.seen("notify") == Counter({'"n1"': 1, '"n2"': 1})

    listed = await call(client, "list_event_source_mappings")
    assert sorted(m["EventSourceArn"] for m in listed["EventSourceMappings"]) == sorted(
        [sources["orders"], sources["ledger"]]
    )
    status, health = s.health()
    assert status == 200, health
    assert set(health["mappings"]["states"].values()) == {"Enabled"}
    assert "Traceback" not in d.output
    assert d.output.count("NOGROUP") <= 1
    assert d.proc.poll() is None


async def test_a_redis_outage_with_aof_loses_and_replays_nothing(
    stack: Any, sources: dict[str, str], aws: AwsClients
) -> None:
    s: Stack = stack(aof=True)
    s.write_config(
        [
            {
                "FunctionName": "ledger",
                "EventSourceArn": sources["ledger"],
                "StartingPosition": "TRIM_HORIZON",
            }
        ],
        LeaseSeconds=30,  # longer than the outage: the consumers keep their shards
    )
    d = await s.start()
    await put(aws, sources["ledger"], [("k", f"a{i}") for i in range(5)])
    await eventually(lambda: len(s.seen("ledger")) == 5, timeout=30, what="the first records")
    status, health = s.health()
    assert status == 200, health

    s.redis.kill()
    await put(aws, sources["ledger"], [("k", f"b{i}") for i in range(5)])
    # Read and invoked while Redis is down; their checkpoint waits for it.
    await eventually(lambda: len(s.seen("ledger")) == 10, timeout=30, what="records in the outage")
    status, health = await eventually(
        lambda: (h := s.health())[0] == 503 and h, timeout=20, what="/health 503"
    )
    assert health["status"] == "degraded"
    assert health["store"].startswith("cannot reach") or "Connection" in health["store"], health
    assert any(r.startswith("store: ") for r in health["reasons"]), health
    live = await asyncio.to_thread(urllib.request.urlopen, f"{s.api}/health/live", timeout=5)
    assert live.status == 200  # alive all the same: restarting esm would not bring Redis back
    live.close()

    client = lambda_client(s.api)
    with pytest.raises(ClientError) as refused:
        await call(client, "invoke", FunctionName="notify", InvocationType="Event", Payload=b"1")
    assert refused.value.response["Error"]["Code"] == "ServiceException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    with pytest.raises(ClientError) as control:
        await call(client, "list_event_source_mappings")
    assert control.value.response["Error"]["Code"] == "ServiceException"
    assert control.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503

    s.redis.start()  # with its append-only file
    await eventually(lambda: s.health()[0] == 200, timeout=20, what=f"/health 200\n{d.output}")
    await put(aws, sources["ledger"], [("k", "c0")])
    await eventually(lambda: len(s.seen("ledger")) == 11, timeout=30, what="records after")
    await asyncio.sleep(2)  # a few registry looks and lease turns: a late replay would show

    assert set(s.seen("ledger").values()) == {1}, s.seen("ledger")  # nothing read twice
    out = d.output
    assert "Traceback" not in out and "crashed" not in out, out
    refusals = [ln for ln in d.lines if "Invoke(Event) of notify refused" in ln]
    assert len(refusals) == 1 and " WARNING " in refusals[0]
    assert len([ln for ln in d.lines if "event-source-mappings refused" in ln]) == 1
    assert "the store answers again" in out


def test_redis_unreachable_at_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    config = {
        "Settings": {"Store": f"redis://:secret@127.0.0.1:{port}/0", "ApiPort": free_port()},
        "Functions": {"orders": {"Target": "python:outage_handler.handle"}},
    }
    (tmp_path / "esm.yaml").write_text(json.dumps(config))
    d = Daemon(["run", str(tmp_path / "esm.yaml")])
    rc = d.proc.wait(30)
    d.kill()
    assert rc == 1, d.output
    errors = [ln for ln in d.lines if " ERROR " in ln]
    assert len(errors) == 1, d.output
    assert re.search(
        rf"esm: cannot reach the store redis://:\*\*\*@127\.0\.0\.1:{port}/0: Error 111 connecting",
        errors[0],
    ), errors[0]
    assert "secret" not in d.output
    assert "Traceback" not in d.output and "Unclosed" not in d.output, d.output
