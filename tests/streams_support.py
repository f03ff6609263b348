"""Helpers for the stream-mapping integration tests: a driver for virtual time over real I/O, a
Redis store per test, and streams, tables, queues, topics and buckets in the emulators.

The engine runs on a :class:`~esm.clock.VirtualClock` while its HTTP calls (moto, kinesalite) and
Redis round trips are real. :func:`drive` lets that I/O finish (a short real sleep, then
:func:`~esm.clock.settle`) and only moves virtual time on when no AWS call and no Redis command
is in flight (:class:`InFlight` counts them), so a retry delay of 30 s passes in a few
milliseconds but never in the middle of a GetRecords or a checkpoint write.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from esm.aws import AwsClients
from esm.clock import RealClock, VirtualClock, settle
from esm.engine import Engine
from esm.store import Store
from tests.environment_support import tracked_functions
from tests.support import ACCOUNT, REGION, engine_config, unique

PYTHON_TARGET = "python:tests.fixtures.recorder.handle_async"
SHARD0 = "shardId-000000000000"

Check = Callable[[], Any]  # returns a truthy value when done; may be a coroutine function


# -- counting I/O in flight -----------------------------------------------------------------------


class InFlight:
    """Calls in flight now, and calls completed by name (``"kinesis.get_records"``)."""

    def __init__(self) -> None:
        self.now = 0
        self.calls: Counter[str] = Counter()

    async def track(self, aw: Awaitable[Any], name: str) -> Any:
        self.now += 1
        try:
            return await aw
        finally:
            self.now -= 1
            self.calls[name] += 1


class CountingAws(AwsClients):
    """:class:`AwsClients` whose clients' API calls are counted in ``in_flight``."""

    def __init__(self, in_flight: InFlight, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.in_flight = in_flight

    @property
    def calls(self) -> Counter[str]:
        return self.in_flight.calls

    async def client(self, service: str, region: str) -> Any:
        return _Counted(await super().client(service, region), self.in_flight, service)


class _Counted:
    """An aiobotocore client whose API calls go through :meth:`InFlight.track`."""

    def __init__(self, client: Any, in_flight: InFlight, service: str) -> None:
        self._client = client
        self._in_flight = in_flight
        self._service = service

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if not inspect.isawaitable(result):
                return result
            return self._in_flight.track(result, f"{self._service}.{name}")

        return call


class CountingRedis(Redis):
    """A redis-py asyncio client whose commands (EVALSHA included) are counted in
    ``in_flight``; set it after ``from_url``."""

    in_flight: InFlight

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await self.in_flight.track(
            super().execute_command(*args, **options), f"redis.{args[0]}"
        )


# -- virtual time over real I/O -------------------------------------------------------------------


async def _holds(check: Check) -> bool:
    value = check()
    if inspect.isawaitable(value):
        value = await value
    return bool(value)


async def drive(
    clock: VirtualClock,
    check: Check,
    *,
    in_flight: InFlight | None = None,
    max_virtual_s: float = 3600.0,
    max_real_s: float = 20.0,
    what: str = "",
) -> None:
    """Run the engine until ``check()`` holds: let real I/O complete (a 10 ms real sleep, then
    :func:`settle`), and when nothing is ready to run and nothing counted by ``in_flight`` is
    out, jump virtual time to the next sleeper's deadline."""
    start_v, deadline = clock.now(), time.monotonic() + max_real_s
    while not await _holds(check):
        await asyncio.sleep(0.01)
        await settle()
        if await _holds(check):
            return
        waited_v = clock.now() - start_v
        if waited_v > max_virtual_s or time.monotonic() > deadline:
            raise AssertionError(
                f"not done after {waited_v:.1f} virtual s / {max_real_s} real s: {what or check}"
            )
        if in_flight is not None and in_flight.now:
            continue
        await clock.advance_to_next()


async def sleep_virtual(
    clock: VirtualClock, seconds: float, in_flight: InFlight | None = None
) -> None:
    """Let ``seconds`` of virtual time pass with the engine running."""
    until = clock.now() + seconds
    await drive(clock, lambda: clock.now() >= until, in_flight=in_flight, max_virtual_s=seconds + 1)


# -- one test's world: a virtual clock, a Redis store with its own prefix, engines ----------------


class StreamWorld:
    """A virtual clock, AWS clients on one emulator, a store on the real Redis under a key
    prefix of its own, and the engines a test starts (closed, and the keys deleted, after)."""

    def __init__(self, endpoint_url: str, redis_url: str, *, start: float | None = None) -> None:
        self.clock = VirtualClock(time.time() if start is None else start)
        self.in_flight = InFlight()
        self.aws = CountingAws(self.in_flight, endpoint_url=endpoint_url)
        self.redis_url = redis_url
        self.prefix = unique("esm-test")
        client = CountingRedis.from_url(redis_url, decode_responses=True)
        client.in_flight = self.in_flight
        self.store = Store(client, clock=self.clock, prefix=self.prefix)
        self.engines: list[Engine] = []

    async def engine(
        self,
        name: str,
        mapping: dict[str, Any],
        *,
        owner: str = "a",
        target: str = PYTHON_TARGET,
        function: dict[str, Any] | None = None,
        **settings: Any,
    ) -> Engine:
        """An engine with one function ``name`` and one mapping (``StartingPosition``
        TRIM_HORIZON unless given), started."""
        return await self.engine_of(
            {name: {"Target": target, "Timeout": 60, **(function or {})}},
            [{"FunctionName": name, "StartingPosition": "TRIM_HORIZON", **mapping}],
            owner=owner,
            **settings,
        )

    async def engine_of(
        self,
        functions: dict[str, dict[str, Any]],
        mappings: list[dict[str, Any]],
        *,
        owner: str = "a",
        **settings: Any,
    ) -> Engine:
        """An engine for these functions and mappings (a 30 s lease and 10 s shard discovery
        unless given), started."""
        config = engine_config(
            functions,
            mappings,
            **{"LeaseSeconds": 30, "ShardDiscoverySeconds": 10, **settings},
        )
        functions = tracked_functions(
            config, clock=self.clock, aws=self.aws, in_flight=self.in_flight
        )
        eng = Engine(
            config,
            clock=self.clock,
            aws=self.aws,
            store=self.store,
            owner=owner,
            functions=functions,
        )
        self.engines.append(eng)
        await eng.start()
        return eng

    async def drive(self, check: Check, **kwargs: Any) -> None:
        await drive(self.clock, check, in_flight=self.in_flight, **kwargs)

    async def sleep(self, seconds: float) -> None:
        await sleep_virtual(self.clock, seconds, self.in_flight)

    async def close_engine(self, engine: Engine) -> None:
        """Stop at once (in-flight batches are not waited for; leases are released). Nobody
        moves virtual time meanwhile: a shutdown that waits on it fails here, not in a hang."""
        try:
            async with asyncio.timeout(10):
                await engine.aclose(deadline_s=0)
        except TimeoutError:
            raise AssertionError(
                "Engine.aclose(deadline_s=0) did not finish in 10 real seconds: something in "
                "the shutdown waits on virtual time, or a cancellation was lost"
            ) from None

    async def aclose(self) -> None:
        try:
            for eng in self.engines:
                await self.close_engine(eng)
        finally:
            await self.store.aclose()
            await self.aws.aclose()
            await delete_keys(self.redis_url, f"{self.prefix}:*")


async def delete_keys(redis_url: str, pattern: str) -> None:
    """Delete the keys matching ``pattern`` on any store URL (on a cluster, SCAN visits every
    primary and DEL is split by slot)."""
    store = Store.from_url(redis_url, clock=RealClock())
    client = store.redis
    try:
        keys = [key async for key in client.scan_iter(match=pattern, count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await store.aclose()


# -- Kinesis --------------------------------------------------------------------------------------


async def create_stream(aws: AwsClients, shards: int = 1) -> str:
    """A new ACTIVE stream; its ARN (moto's account, or kinesalite's 000000000000)."""
    c = await aws.client("kinesis", REGION)
    name = unique("stream")
    await c.create_stream(StreamName=name, ShardCount=shards)
    return await wait_active(aws, name)


async def wait_active(aws: AwsClients, name: str) -> str:
    c = await aws.client("kinesis", REGION)
    for _ in range(400):
        d = (await c.describe_stream_summary(StreamName=name))["StreamDescriptionSummary"]
        if d["StreamStatus"] == "ACTIVE":
            return str(d["StreamARN"])
        await asyncio.sleep(0.025)
    raise AssertionError(f"stream {name} not ACTIVE")


def stream_name(arn: str) -> str:
    return arn.rsplit("/", 1)[1]


async def put(aws: AwsClients, arn: str, items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """PutRecords ``(partition key, value)`` in order, each value as JSON; returns
    ``[{ShardId, SequenceNumber}, …]``."""
    c = await aws.client("kinesis", REGION)
    resp = await c.put_records(
        StreamName=stream_name(arn),
        Records=[{"PartitionKey": pk, "Data": json.dumps(v).encode()} for pk, v in items],
    )
    assert not resp.get("FailedRecordCount"), resp
    return list(resp["Records"])


def value(record: dict[str, Any]) -> Any:
    """The JSON value a Kinesis record of an event carries."""
    return json.loads(base64.b64decode(record["kinesis"]["data"]))


def seq(record: dict[str, Any]) -> str:
    return str(record["kinesis"]["sequenceNumber"])


# -- destinations ---------------------------------------------------------------------------------


async def create_queue(aws: AwsClients, name: str) -> tuple[str, str]:
    """A standard queue; (ARN, URL)."""
    c = await aws.client("sqs", REGION)
    url = (await c.create_queue(QueueName=name))["QueueUrl"]
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}", str(url)


async def receive_all(aws: AwsClients, url: str) -> list[str]:
    """The bodies visible on a queue now (received and deleted)."""
    c = await aws.client("sqs", REGION)
    out: list[str] = []
    while True:
        msgs = (await c.receive_message(QueueUrl=url, MaxNumberOfMessages=10)).get("Messages", [])
        if not msgs:
            return out
        out += [m["Body"] for m in msgs]
        await c.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)
            ],
        )


async def create_topic_to_queue(aws: AwsClients, name: str) -> tuple[str, str]:
    """A topic with a queue subscribed to it; (topic ARN, queue URL)."""
    sns = await aws.client("sns", REGION)
    topic = str((await sns.create_topic(Name=name))["TopicArn"])
    queue_arn, url = await create_queue(aws, name + "-sub")
    await sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, url


async def create_bucket(aws: AwsClients, name: str) -> str:
    s3 = await aws.client("s3", REGION)
    await s3.create_bucket(Bucket=name)
    return f"arn:aws:s3:::{name}"


async def s3_objects(aws: AwsClients, bucket: str, prefix: str = "") -> dict[str, bytes]:
    s3 = await aws.client("s3", REGION)
    listed = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    out = {}
    for obj in listed.get("Contents", []):
        got = await s3.get_object(Bucket=bucket, Key=obj["Key"])
        async with got["Body"] as body:
            out[obj["Key"]] = await body.read()
    return out


async def create_table(aws: AwsClients, view: str) -> tuple[str, str]:
    """A table keyed (pk S, sk N) with a stream of ``view``; returns (table name, stream ARN)."""
    c = await aws.client("dynamodb", REGION)
    name = unique("table")
    resp = await c.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
    )
    return name, str(resp["TableDescription"]["LatestStreamArn"])
