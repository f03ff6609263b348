"""Failovers under esm: the primary holding esm's keys is killed (``kill -9``) and its replica
takes over, while esm works.

- Redis Cluster: one ``esm run`` daemon on a cluster of its own (3 primaries, one replica each,
  ``cluster-node-timeout`` 1 s) runs a Kinesis mapping (moto's server) and takes async invokes
  through its API, both fed without pause. The primary serving the async queue's slot and the
  mapping's slot (the mapping's UUID is picked so that both are on one primary) is killed. Every
  record and every accepted event must be handled at least once, by the same daemon: no restart.
- Sentinel: a writer checkpointing without pause through a kill of the primary; then the whole
  store contract on the promoted replica.

Replication is asynchronous: a write the old primary acknowledged but had not yet sent to its
replica is lost with it. On loopback the replica is microseconds behind, so these tests see no
loss; what each loss would mean for esm is in the report of each test (``-s`` shows it).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from esm.aws import AwsClients
from esm.clock import RealClock, VirtualClock
from esm.store import Keys, Store, StoreUnavailable, retry_unavailable
from tests.control_support import call, lambda_client
from tests.daemon import Daemon
from tests.redis_cluster import LocalCluster, LocalSentinel, free_port, wait_for
from tests.streams_support import create_stream, put
from tests.support import ACCOUNT, REGION, eventually
from tests.unit.test_store_memory import SHARD, TTL, M, MakeStore, StoreContract

pytestmark = pytest.mark.integration

HANDLER = """
import base64, json, pathlib, time

LOG = pathlib.Path(__file__).parent / "seen.jsonl"


def handle(event, context):
    now = time.time()
    if isinstance(event, dict) and "Records" in event:
        items = [json.loads(base64.b64decode(r["kinesis"]["data"])) for r in event["Records"]]
    else:
        items = [event]
    with LOG.open("a") as f:
        for item in items:
            f.write(json.dumps({"fn": context.function_name, "item": item, "t": now}) + "\\n")
"""

PACE_S = 0.05  # one record and one invoke every 50 ms
BEFORE_S = 2.0  # feeding before the kill
AFTER_S = 5.0  # and after it (the replica is promoted about 2 s after the kill)


class Feed:
    """What was sent, and when: Kinesis values and accepted async invokes."""

    def __init__(self) -> None:
        self.records: dict[int, float] = {}  # value -> when PutRecords returned
        self.events: dict[int, float] = {}  # id -> when Invoke answered 202
        self.answer_s: list[float] = []  # how long each Invoke took to answer
        self.refused: list[float] = []  # when an Invoke was refused (then sent again)


async def feed_records(aws: AwsClients, arn: str, feed: Feed, until: float) -> None:
    n = 0
    while time.time() < until:
        await put(aws, arn, [(f"key-{n % 8}", n)])
        feed.records[n] = time.time()
        n += 1
        await asyncio.sleep(PACE_S)


async def feed_events(api: str, feed: Feed, until: float) -> None:
    """Invoke(Event) without pause; a refused one (the store failing over) is sent again, as an
    SDK's retries would."""
    client = lambda_client(api)
    try:
        n = 0
        while time.time() < until:
            asked = time.time()
            try:
                resp = await call(
                    client,
                    "invoke",
                    FunctionName="notify",
                    InvocationType="Event",
                    Payload=json.dumps({"id": n}).encode(),
                )
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "ServiceException", exc.response
                feed.refused.append(time.time())
                await asyncio.sleep(0.1)
                continue
            assert resp["StatusCode"] == 202
            feed.events[n] = time.time()
            feed.answer_s.append(feed.events[n] - asked)
            n += 1
            await asyncio.sleep(PACE_S)
    finally:
        client.close()


def seen(folder: Path) -> list[dict[str, Any]]:
    path = folder / "seen.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


def latencies(sent: dict[int, float], handled: list[dict[str, Any]]) -> dict[int, float]:
    """Per item: first handled minus sent (s)."""
    first: dict[int, float] = {}
    for e in handled:
        key = e["item"] if isinstance(e["item"], int) else e["item"]["id"]
        first.setdefault(key, e["t"])
    return {k: first[k] - t for k, t in sent.items() if k in first}


def health(api: str) -> int:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of this test's own: it loses a node."""
    cluster = LocalCluster(tmp_path / "cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def uuid_beside(cluster: LocalCluster, key: str) -> str:
    """A mapping UUID whose keys are served by the primary that serves ``key``."""
    target = cluster.primary_of(key).port
    keys = Keys("esm")
    for _ in range(200):
        candidate = str(uuid.uuid4())
        if cluster.primary_of(keys.leases(candidate)).port == target:
            return candidate
    raise AssertionError("no UUID found on that primary")


async def test_cluster_failover_under_a_stream_mapping_and_async_work(
    tmp_path: Path, own_cluster: LocalCluster, moto_url: str, aws: AwsClients
) -> None:
    keys = Keys("esm")
    queue_key = keys.async_ready("notify")
    mapping_uuid = uuid_beside(own_cluster, queue_key)
    victim = own_cluster.shard_of(queue_key)
    assert victim.primary == own_cluster.primary_of(keys.leases(mapping_uuid))
    assert victim.primary != own_cluster.primary_of(keys.registry("version"))

    arn = await create_stream(aws, 2)
    api_port = free_port()
    (tmp_path / "failover_handler.py").write_text(HANDLER)
    target = {"Target": "python:failover_handler.handle", "Timeout": 3}
    config = {
        "Settings": {
            "Region": REGION,
            "AccountId": ACCOUNT,
            "Store": own_cluster.url,
            "ApiPort": api_port,
            "LeaseSeconds": 5,
            "ShardDiscoverySeconds": 1,
            "RegistryPollSeconds": 0.5,
            "AsyncVisibilityTimeoutSeconds": 5,
            "ShutdownTimeoutSeconds": 2,
        },
        "Functions": {"ledger": target, "notify": target},
        "EventSourceMappings": [
            {
                "FunctionName": "ledger",
                "EventSourceArn": arn,
                "UUID": mapping_uuid,
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 10,
            }
        ],
    }
    (tmp_path / "esm.yaml").write_text(json.dumps(config))
    api = f"http://127.0.0.1:{api_port}"
    d = Daemon(
        ["run", str(tmp_path / "esm.yaml")],
        env={"AWS_ENDPOINT_URL": moto_url},
    )
    try:
        await eventually(lambda: health(api) == 200, timeout=30, what=f"the daemon\n{d.output}")
        pid = d.proc.pid

        feed = Feed()
        until = time.time() + BEFORE_S + AFTER_S
        feeding = asyncio.gather(feed_records(aws, arn, feed, until), feed_events(api, feed, until))
        await asyncio.sleep(BEFORE_S)
        killed_at = time.time()
        victim.primary.kill()
        promoted = await asyncio.to_thread(
            wait_for,
            lambda: own_cluster.primary_of(queue_key).port in {r.port for r in victim.replicas},
            "the replica promoted",
        )
        promoted_at = time.time()
        assert promoted
        await feeding

        def all_handled() -> bool:
            handled = seen(tmp_path)
            records = {e["item"] for e in handled if e["fn"] == "ledger"}
            events = {e["item"]["id"] for e in handled if e["fn"] == "notify"}
            return set(feed.records) <= records and set(feed.events) <= events

        await eventually(all_handled, timeout=60, interval=0.2, what=f"all handled\n{d.output}")
        handled = seen(tmp_path)
        await eventually(lambda: health(api) == 200, timeout=20, what=f"/health 200\n{d.output}")
        assert d.proc.poll() is None and d.proc.pid == pid  # carried on by itself

        record_latency = latencies(feed.records, [e for e in handled if e["fn"] == "ledger"])
        event_latency = latencies(feed.events, [e for e in handled if e["fn"] == "notify"])
        before = [v for k, v in record_latency.items() if feed.records[k] < killed_at]
        repeated = Counter((e["fn"], json.dumps(e["item"])) for e in handled).most_common()
        report = {
            "promotion_s": round(promoted_at - killed_at, 2),
            "records": len(feed.records),
            "record_latency_before_kill_median_s": round(statistics.median(before), 2),
            "record_latency_max_s": round(max(record_latency.values()), 2),
            "events": len(feed.events),
            "event_latency_max_s": round(max(event_latency.values()), 2),
            "invoke_answer_median_s": round(statistics.median(feed.answer_s), 3),
            "invoke_answer_max_s": round(max(feed.answer_s), 2),
            "invokes_refused": len(feed.refused),
            "invokes_refused_for_s": round(max(feed.refused) - min(feed.refused), 2)
            if feed.refused
            else 0.0,
            "handled_twice": sum(1 for _, n in repeated if n > 1),
        }
        print(f"\ncluster failover: {json.dumps(report)}")
        # esm's stall: seconds, not minutes (generous bounds: a loaded machine is slow)
        assert report["record_latency_max_s"] < 30, report
        assert report["event_latency_max_s"] < 30, report
        assert report["invoke_answer_max_s"] < 30, report
        assert "Traceback" not in d.output, d.output
    finally:
        d.kill()
        (tmp_path / "daemon.log").write_text(d.output)


# -- Sentinel -------------------------------------------------------------------------------------


@pytest.fixture
def own_sentinel(tmp_path: Path) -> Iterator[LocalSentinel]:
    sentinel = LocalSentinel(tmp_path / "sentinel")
    try:
        sentinel.start()
        yield sentinel
    finally:
        sentinel.stop()


async def test_sentinel_failover_under_a_checkpointing_shard_consumer(
    own_sentinel: LocalSentinel,
) -> None:
    """Checkpoints every 10 ms, each tried again while the store is unavailable (as a shard
    consumer does): the primary is killed, Sentinel promotes the replica, the writer carries on
    with its lease and token, and a second owner is still fenced off."""
    clock = VirtualClock(time.time())
    real = RealClock()
    writer = Store.from_url(own_sentinel.url, clock=clock, prefix="fo")
    other = Store.from_url(own_sentinel.url, clock=clock, prefix="fo")
    old_primary = own_sentinel.primary()
    try:
        lease = await writer.acquire_lease(M, SHARD, "a", TTL)
        assert lease is not None
        written: list[tuple[int, float]] = []  # (checkpoint, when acknowledged)
        unavailable: list[float] = []
        n = 0
        killed_at = 0.0
        started = time.time()
        # 1 s of checkpoints, the kill, then on until 1 s of checkpoints after the first one
        # acknowledged by the new primary
        while not (killed_at and unavailable and written[-1][1] > max(unavailable) + 1):
            if not killed_at and time.time() - started > 1:
                old_primary.kill()
                killed_at = time.time()
            assert time.time() - started < 60, "the writer never got through"

            async def save(lease: Any = lease, seq: str = str(n)) -> bool:
                try:
                    return await writer.save_checkpoint(lease, seq)
                except StoreUnavailable:
                    unavailable.append(time.time())
                    raise

            assert await retry_unavailable(save, clock=real, until=lambda: False)
            written.append((n, time.time()))
            n += 1
            await asyncio.sleep(0.01)

        assert own_sentinel.primary() != old_primary
        gaps = [b - a for (_, a), (_, b) in itertools.pairwise(written)]
        report = {
            "checkpoints": n,
            "stall_s": round(max(gaps), 2),
            "unavailable_for_s": round(max(unavailable) - min(unavailable), 2)
            if unavailable
            else 0.0,
        }
        print(f"\nsentinel failover: {json.dumps(report)}")
        assert await other.checkpoint(M, SHARD) == str(n - 1)  # the last acknowledged one
        assert report["stall_s"] < 30, report
        # the lease and its token came through: still fenced against another owner
        assert await other.acquire_lease(M, SHARD, "b", TTL) is None
        await clock.advance(TTL)
        taken = await other.acquire_lease(M, SHARD, "b", TTL)
        assert taken is not None and taken.token == lease.token + 1
        assert not await writer.save_checkpoint(lease, "late")
        assert await other.checkpoint(M, SHARD) == str(n - 1)
    finally:
        await writer.aclose()
        await other.aclose()


@pytest.fixture(scope="module")
def failed_over_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSentinel]:
    """A Sentinel set-up after ``SENTINEL FAILOVER``: the first replica is the primary now."""
    sentinel = LocalSentinel(tmp_path_factory.mktemp("failed-over-sentinel"))
    try:
        sentinel.start()
        first = sentinel.primary()
        with sentinel.sentinel.client() as c:
            assert c.execute_command("SENTINEL", "FAILOVER", sentinel.service)
        wait_for(lambda: sentinel.primary() != first, "the failover")
        with sentinel.primary().client() as c:
            wait_for(lambda: c.info("replication")["role"] == "master", "the new primary")
        yield sentinel
    finally:
        sentinel.stop()


@pytest.fixture
async def make_store(
    failed_over_sentinel: LocalSentinel, clock: VirtualClock
) -> AsyncIterator[MakeStore]:
    prefix = f"esm-test-{uuid.uuid4().hex}"
    stores: list[Store] = []

    def make() -> Store:
        store = Store.from_url(failed_over_sentinel.url, clock=clock, prefix=prefix)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.aclose()


class TestStoreAfterSentinelFailover(StoreContract):
    """The whole store contract on the replica Sentinel promoted."""
