"""One chaos scenario's world: a private ``redis-server`` (tests/redis_server.py), the recording
function (tests/chaos/recorder.py), the sources in moto's server, ``esm run`` as a subprocess
(tests/daemon.py) that can be killed with ``kill -9`` and started again, and producers that keep
putting numbered items in while faults happen.

Every item is ``{"key": …, "id": …}``. Sources, and the function of the same name each maps to:

- ``sqs``: a standard queue (unordered: each item is its own key);
- ``fifo``: a FIFO queue, four message groups (ordered per group);
- ``kinesis``: a two-shard stream, eight partition keys (ordered per key);
- ``ddb``: a DynamoDB table's stream, four item keys (ordered per key);
- ``events``: Invoke ``Event`` through the daemon's API (unordered); an event counts as sent
  once the API answered 202 for it.

Short timeouts so faults heal in seconds: queues' VisibilityTimeout 2 s, LeaseSeconds 2, the
async queue's visibility timeout 2 s. Mappings run at most two SQS batches at once
(``ScalingConfig.MaximumConcurrency``), ``BatchSize`` 10 everywhere; ``AsyncConcurrency`` 8.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import aiohttp

from esm.aws import AwsClients
from tests.chaos.recorder import Recorder
from tests.daemon import Daemon, aws_env
from tests.redis_server import RedisServer, free_port
from tests.streams_support import create_stream, create_table, stream_name
from tests.support import ACCOUNT, REGION, eventually, serve_app, unique

BATCH = 10
SQS_CONCURRENCY = 2
ASYNC_CONCURRENCY = 8
VISIBILITY_S = 2
LEASE_S = 2
KINESIS_SHARDS = 2
SOURCES = ("sqs", "fifo", "kinesis", "ddb", "events")


class Sent:
    """What producers put in: ``(key, id)`` per source in the order sent, and for ``events``
    when the API accepted each one (monotonic time)."""

    def __init__(self) -> None:
        self.items: dict[str, list[tuple[str, str]]] = {s: [] for s in SOURCES}
        self.accepted_at: dict[str, float] = {}
        self.ambiguous = 0  # invokes whose answer was lost (the daemon died): sent again


class Stack:
    def __init__(
        self,
        folder: Path,
        moto_url: str,
        aws: AwsClients,
        *,
        aof: bool = False,
        endpoint_url: str | None = None,
        delay_s: float = 0.02,
    ) -> None:
        self.folder = folder
        self.moto_url = moto_url
        self.endpoint_url = endpoint_url or moto_url  # where the daemon's AWS calls go
        self.aws = aws  # the test's own clients: straight to moto
        self.redis = RedisServer(folder / "redis", aof=aof)
        self.recorder = Recorder(delay_s=delay_s)
        self.api_port = free_port()
        self.daemon: Daemon | None = None
        self.daemons: list[Daemon] = []
        self.sent = Sent()
        self.arns: dict[str, str] = {}
        self.urls: dict[str, str] = {}
        self.table = ""

    # -- set-up ------------------------------------------------------------------------------

    async def create_sources(self, sources: tuple[str, ...]) -> None:
        sqs = await self.aws.client("sqs", REGION)
        for source in sources:
            if source in ("sqs", "fifo"):
                name = unique(f"chaos-{source}") + (".fifo" if source == "fifo" else "")
                attrs = {"VisibilityTimeout": str(VISIBILITY_S)}
                if source == "fifo":
                    attrs["FifoQueue"] = "true"
                self.urls[source] = (await sqs.create_queue(QueueName=name, Attributes=attrs))[
                    "QueueUrl"
                ]
                self.arns[source] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
            elif source == "kinesis":
                self.arns[source] = await create_stream(self.aws, KINESIS_SHARDS)
            elif source == "ddb":
                self.table, self.arns[source] = await create_table(self.aws, "NEW_IMAGE")

    def write_config(self, recorder_port: int, sources: tuple[str, ...]) -> None:
        functions = {
            s: {"Target": f"http://127.0.0.1:{recorder_port}/{s}", "Timeout": VISIBILITY_S}
            for s in SOURCES
        }
        mappings: list[dict[str, Any]] = []
        for source in sources:
            if source == "events":
                continue
            mapping: dict[str, Any] = {
                "FunctionName": source,
                "EventSourceArn": self.arns[source],
                "BatchSize": BATCH,
            }
            if source in ("sqs", "fifo"):
                mapping["ScalingConfig"] = {"MaximumConcurrency": SQS_CONCURRENCY}
            else:
                mapping["StartingPosition"] = "TRIM_HORIZON"
            mappings.append(mapping)
        config = {
            "Settings": {
                "Region": REGION,
                "AccountId": ACCOUNT,
                "Store": self.redis.url,
                "ApiPort": self.api_port,
                "LeaseSeconds": LEASE_S,
                "ShardDiscoverySeconds": 1,
                "StreamIdlePollSeconds": 1,
                "RegistryPollSeconds": 0.5,
                "ShutdownTimeoutSeconds": 2,
                "AsyncConcurrency": ASYNC_CONCURRENCY,
                "AsyncVisibilityTimeoutSeconds": VISIBILITY_S,
                "AsyncRetryDelaysSeconds": [1, 1],
            },
            "Functions": functions,
            "EventSourceMappings": mappings,
        }
        (self.folder / "esm.yaml").write_text(json.dumps(config))

    # -- the daemon --------------------------------------------------------------------------

    def spawn(self) -> Daemon:
        """``esm run`` started (not waited for)."""
        self.daemon = Daemon(
            ["run", str(self.folder / "esm.yaml")],
            env=aws_env(self.endpoint_url, REGION),
        )
        self.daemons.append(self.daemon)
        return self.daemon

    async def ready(self, timeout: float = 30) -> Daemon:
        d = self.daemon
        assert d is not None
        await eventually(
            lambda: d.has("Lambda API at") or d.proc.poll() is not None,
            timeout=timeout,
            what=f"the daemon's API\n{d.output}",
        )
        assert d.proc.poll() is None, f"the daemon exited: {d.proc.returncode}\n{d.output}"
        return d

    async def kill_daemon(self) -> None:
        """``kill -9``."""
        if self.daemon is not None:
            await asyncio.to_thread(self.daemon.kill)

    def close(self) -> None:
        for d in self.daemons:
            d.kill()
        self.redis.kill()

    # -- producers ---------------------------------------------------------------------------

    async def produce(self, source: str, n: int, seconds: float) -> None:
        """Put ``n`` items into ``source``, ten at a time, spread over ``seconds``."""
        pause = seconds / max(1, n // BATCH)
        for start in range(0, n, BATCH):
            chunk = [_item(source, i) for i in range(start, min(n, start + BATCH))]
            if source == "events":
                await asyncio.gather(*(self._invoke(item) for item in chunk))
            else:
                await self._put(source, chunk)
            await asyncio.sleep(pause)

    async def _put(self, source: str, chunk: list[dict[str, str]]) -> None:
        if source in ("sqs", "fifo"):
            sqs = await self.aws.client("sqs", REGION)
            entries: list[dict[str, Any]] = []
            for i, item in enumerate(chunk):
                entry: dict[str, Any] = {"Id": str(i), "MessageBody": json.dumps(item)}
                if source == "fifo":
                    entry |= {"MessageGroupId": item["key"], "MessageDeduplicationId": item["id"]}
                entries.append(entry)
            resp = await sqs.send_message_batch(QueueUrl=self.urls[source], Entries=entries)
            assert not resp.get("Failed"), resp
        elif source == "kinesis":
            kinesis = await self.aws.client("kinesis", REGION)
            resp = await kinesis.put_records(
                StreamName=stream_name(self.arns[source]),
                Records=[
                    {"PartitionKey": item["key"], "Data": json.dumps(item).encode()}
                    for item in chunk
                ],
            )
            assert not resp.get("FailedRecordCount"), resp
        elif source == "ddb":
            ddb = await self.aws.client("dynamodb", REGION)
            for item in chunk:
                await ddb.put_item(
                    TableName=self.table,
                    Item={
                        "pk": {"S": item["key"]},
                        "sk": {"N": item["id"].rsplit("-", 1)[1]},
                        "id": {"S": item["id"]},
                    },
                )
        self.sent.items[source] += [(item["key"], item["id"]) for item in chunk]

    async def _invoke(self, item: dict[str, str]) -> None:
        """Invoke ``Event`` until the API answers 202 (refused while the daemon is down or its
        Redis is; an answer lost with the daemon is sent again, and may run twice)."""
        url = f"http://127.0.0.1:{self.api_port}/2015-03-31/functions/events/invocations"
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.post(
                        url,
                        data=json.dumps(item),
                        headers={"X-Amz-Invocation-Type": "Event"},
                        timeout=aiohttp.ClientTimeout(total=10),
                    ) as resp:
                        await resp.read()
                        if resp.status == 202:
                            break
                        assert resp.status in (500, 502, 503), (resp.status, await resp.text())
                except aiohttp.ClientConnectorError:
                    pass  # nothing listens: it never arrived
                except (aiohttp.ClientError, TimeoutError):
                    self.sent.ambiguous += 1  # it may have been queued
                await asyncio.sleep(0.1)
        self.sent.accepted_at[item["id"]] = time.monotonic()
        self.sent.items["events"].append((item["key"], item["id"]))

    # -- the end -----------------------------------------------------------------------------

    def missing(self, source: str, excused: set[str] | None = None) -> set[str]:
        sent = {item for _, item in self.sent.items[source]}
        return sent - self.recorder.ids(source) - (excused or set())

    async def all_delivered(
        self, sources: tuple[str, ...], timeout: float, excused: set[str] | None = None
    ) -> None:
        def done() -> bool:
            return not any(self.missing(s, excused if s == "events" else None) for s in sources)

        await eventually(
            done,
            timeout=timeout,
            interval=0.2,
            what="every item delivered: still missing "
            + str({s: sorted(self.missing(s))[:10] for s in sources})
            + (f"\n{self.daemon.output[-5000:]}" if self.daemon else ""),
        )

    async def queues_empty(self) -> None:
        sqs = await self.aws.client("sqs", REGION)

        async def empty() -> bool:
            for url in self.urls.values():
                attrs = (
                    await sqs.get_queue_attributes(
                        QueueUrl=url,
                        AttributeNames=[
                            "ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesNotVisible",
                        ],
                    )
                )["Attributes"]
                if any(int(v) for v in attrs.values()):
                    return False
            return True

        await eventually(empty, timeout=20, interval=0.2, what="every message deleted")


def _item(source: str, i: int) -> dict[str, str]:
    key = {
        "sqs": f"m{i}",  # each its own key: a standard queue orders nothing
        "fifo": f"g{i % 4}",
        "kinesis": f"k{i % 8}",
        "ddb": f"p{i % 4}",
        "events": f"e{i}",
    }[source]
    return {"key": key, "id": f"{source}-{i:06d}"}


@contextlib.asynccontextmanager
async def stack(
    folder: Path,
    moto_url: str,
    aws: AwsClients,
    sources: tuple[str, ...],
    *,
    aof: bool = False,
    endpoint_url: str | None = None,
) -> AsyncIterator[Stack]:
    """Redis started, sources created, the recorder served and the config written (the daemon
    not started); everything stopped after."""
    s = Stack(folder, moto_url, aws, aof=aof, endpoint_url=endpoint_url)
    try:
        await asyncio.to_thread(s.redis.start)
        await s.create_sources(sources)
        async with serve_app(s.recorder.app()) as port:
            s.write_config(port, sources)
            yield s
    finally:
        await asyncio.to_thread(s.close)


async def run_all(*jobs: Awaitable[Any]) -> list[Any]:
    """Run jobs together; the first failure cancels the others."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(_wrap(j)) for j in jobs]
    return [t.result() for t in tasks]


async def _wrap(job: Awaitable[Any]) -> Any:
    return await job


def seeded(seed: int, name: str) -> random.Random:
    return random.Random(f"{seed}:{name}")
