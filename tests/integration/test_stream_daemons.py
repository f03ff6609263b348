"""Stream mappings in real ``esm run`` processes sharing one Redis: kill -9 mid-batch and restart,
two daemons sharing four shards and one taking over when the other stops.

Real clock, short leases (``LeaseSeconds: 3``), moto's server over HTTP. The store's key prefix
is not configurable from YAML, so each test uses a mapping UUID and a function name of its own
and deletes that mapping's keys (state and registry entry) afterwards.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from esm.aws import AwsClients
from esm.clock import RealClock
from esm.store import Store
from tests.integration.test_cli import Daemon
from tests.redis_cluster import on_redis
from tests.streams_support import create_stream, put
from tests.support import ACCOUNT, REGION, eventually

pytestmark = pytest.mark.integration

LEASE_S = 3
HEARTBEAT_S = 1  # a tick every min(ShardDiscoverySeconds, LeaseSeconds / 3)

# Appends one line per invocation to invoked.txt, waits while the file "slow" exists, then one
# line per record to processed.txt. Lines carry the daemon's pid and the time, so the files of
# several daemons merge in processing order.
HANDLER = """
import base64, json, os, pathlib, time

DIR = pathlib.Path(__file__).parent


def handle(event, context):
    records = [
        {
            "pid": os.getpid(),
            "shard": r["eventID"].split(":")[0],
            "key": r["kinesis"]["partitionKey"],
            "seq": r["kinesis"]["sequenceNumber"],
            "v": json.loads(base64.b64decode(r["kinesis"]["data"])),
        }
        for r in event["Records"]
    ]
    with (DIR / "invoked.txt").open("a") as f:
        f.write(json.dumps({"pid": os.getpid(), "vs": [r["v"] for r in records]}) + "\\n")
    while (DIR / "slow").exists():
        time.sleep(0.02)
    with (DIR / "processed.txt").open("a") as f:
        for r in records:
            f.write(json.dumps({**r, "t": time.time_ns()}) + "\\n")
"""


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


class Deployment:
    """A handler and an ``esm.yaml`` in a folder, for one stream and one mapping UUID."""

    def __init__(self, folder: Path, moto_url: str, redis_url: str, stream_arn: str) -> None:
        self.folder = folder
        self.moto_url = moto_url
        self.uuid = str(uuid4())
        # A function name of its own too: daemons on one Redis share the mappings registered
        # there, and run those whose function they serve.
        self.function = f"work-{self.uuid[:8]}"
        (folder / "handler.py").write_text(HANDLER)
        (folder / "esm.yaml").write_text(
            f"""
Settings:
  Region: {REGION}
  AccountId: "{ACCOUNT}"
  Store: "{redis_url}"
  LeaseSeconds: {LEASE_S}
  ShardDiscoverySeconds: 1
  ShutdownTimeoutSeconds: 5
  ApiPort: 0
Functions:
  {self.function}: {{Target: "python:handler.handle", Timeout: 30}}
EventSourceMappings:
  - FunctionName: {self.function}
    EventSourceArn: "{stream_arn}"
    UUID: "{self.uuid}"
    StartingPosition: TRIM_HORIZON
    BatchSize: 5
"""
        )
        self.daemons: list[Daemon] = []

    def start(self) -> Daemon:
        d = Daemon(["run", str(self.folder / "esm.yaml")], env={"AWS_ENDPOINT_URL": self.moto_url})
        self.daemons.append(d)
        return d

    @property
    def processed(self) -> list[dict[str, Any]]:
        return sorted(lines(self.folder / "processed.txt"), key=lambda r: r["t"])

    @property
    def invoked(self) -> list[dict[str, Any]]:
        return lines(self.folder / "invoked.txt")

    def values(self) -> list[int]:
        return [r["v"] for r in self.processed]

    async def wait(self, check: Any, what: str, timeout: float = 20) -> None:
        """``eventually``, failing with the output of every daemon of this deployment."""
        try:
            await eventually(check, timeout=timeout, what=what)
        except AssertionError as exc:
            logs = "\n".join(f"--- daemon {d.proc.pid}:\n{d.output}" for d in self.daemons)
            raise AssertionError(f"{exc}\n{logs}") from None


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """The daemons' store (default key prefix), read on the real clock: the shared Redis, or the
    Redis kind the test is parametrized with (``on_redis``)."""
    s = Store.from_url(store_url, clock=RealClock())
    yield s
    await s.aclose()


@pytest.fixture
async def deployments(store: Store) -> AsyncIterator[list[Deployment]]:
    """The test's deployments; afterwards their daemons are killed (their output kept in the
    test's folder) and their mappings' keys deleted."""
    made: list[Deployment] = []
    yield made
    for dep in made:
        for d in dep.daemons:
            d.kill()
            (dep.folder / f"daemon-{d.proc.pid}.log").write_text(d.output)
        await store.forget_mapping(dep.uuid)
        await store.redis.delete(store.keys.workers(f"mapping:{dep.uuid}"))
        async for key in store.redis.scan_iter(match=f"{store.keys.prefix}:registry:*"):
            if await store.redis.type(key) == "hash":  # the mapping as registered by the daemons
                await store.redis.hdel(key, dep.uuid)


def pid_of(owner: str) -> int:
    """The pid in an engine's owner name, ``<host>-<pid>-<random>``."""
    return int(owner.rsplit("-", 2)[1])


async def held(store: Store, uuid: str) -> Counter[int]:
    """Live leases per daemon pid."""
    now = time.time()
    leases = await store.leases(uuid)
    return Counter(pid_of(info.owner) for info in leases.values() if info.expires_at > now)


# -- kill -9 mid-batch ---------------------------------------------------------------------------


async def test_kill_9_mid_batch_then_restart_repeats_only_the_batch_in_flight(
    tmp_path: Path,
    moto_url: str,
    redis_url: str,
    aws: AwsClients,
    store: Store,
    deployments: list[Deployment],
) -> None:
    arn = await create_stream(aws, 1)
    await put(aws, arn, [("k", i) for i in range(10)])
    dep = Deployment(tmp_path, moto_url, redis_url, arn)
    deployments.append(dep)
    first = dep.start()
    await dep.wait(lambda: dep.values() == list(range(10)), "0..9 processed")

    (tmp_path / "slow").touch()  # the next batch stays in flight
    await put(aws, arn, [("k", i) for i in range(10, 15)])
    await dep.wait(lambda: len(dep.invoked) > 2, "a third batch in flight")
    first.kill()  # SIGKILL: no shutdown, no checkpoint, the lease left to expire
    in_flight = dep.invoked[-1]["vs"]
    assert in_flight and in_flight == list(range(10, 10 + len(in_flight)))
    (old_lease,) = (await store.leases(dep.uuid)).values()
    assert old_lease.owner and pid_of(old_lease.owner) == first.proc.pid

    (tmp_path / "slow").unlink()
    await put(aws, arn, [("k", i) for i in range(15, 20)])
    second = dep.start()
    await dep.wait(lambda: len(dep.values()) >= 20, "20 records processed")
    assert dep.values() == list(range(20))  # nothing lost, each processed once
    # the new daemon took the shard only once the killed one's lease had expired
    restarted = [r for r in dep.processed if r["pid"] == second.proc.pid]
    assert min(r["t"] for r in restarted) / 1e9 >= old_lease.expires_at
    (new_lease,) = (await store.leases(dep.uuid)).values()
    assert pid_of(new_lease.owner) == second.proc.pid and new_lease.token > old_lease.token
    invocations = Counter(v for line in dep.invoked for v in line["vs"])
    assert {v for v, n in invocations.items() if n > 1} == set(in_flight)  # only those again
    assert all(invocations[v] == 2 for v in in_flight)
    pids = {line["pid"] for line in dep.invoked}
    assert pids == {first.proc.pid, second.proc.pid}
    assert await store.checkpoint(dep.uuid, "shardId-000000000000") is not None
    assert second.stop(signal.SIGTERM) == 0


# -- two daemons, four shards --------------------------------------------------------------------


@on_redis("redis", "cluster")
async def test_two_daemons_share_four_shards_and_one_takes_all_when_the_other_stops(
    tmp_path: Path,
    moto_url: str,
    store_url: str,
    aws: AwsClients,
    store: Store,
    deployments: list[Deployment],
) -> None:
    arn = await create_stream(aws, 4)
    dep = Deployment(tmp_path, moto_url, store_url, arn)
    deployments.append(dep)
    a = dep.start()
    await dep.wait(lambda: _holds(store, dep.uuid, {a.proc.pid: 4}), "a holding 4 shards")
    b = dep.start()
    await dep.wait(
        lambda: _holds(store, dep.uuid, {a.proc.pid: 2, b.proc.pid: 2}), "two shards each"
    )

    keys = [f"key-{k}" for k in range(20)]
    await put(aws, arn, [(keys[i % 20], i) for i in range(200)])
    await dep.wait(lambda: len(dep.processed) >= 200, "200 records")
    records = dep.processed
    assert sorted(r["v"] for r in records) == list(range(200))  # each once
    assert {r["pid"] for r in records} == {a.proc.pid, b.proc.pid}  # both worked
    for key in keys:  # per partition key, in order
        mine = [r["v"] for r in records if r["key"] == key]
        assert mine == sorted(mine)
    await dep.wait(lambda: _checkpointed(store, dep, 4), "every shard checkpointed")

    assert b.stop(signal.SIGTERM) == 0
    stopped = time.monotonic()
    await dep.wait(lambda: _holds(store, dep.uuid, {a.proc.pid: 4}), "a taking all 4 shards")
    took = time.monotonic() - stopped
    assert took <= LEASE_S + HEARTBEAT_S + 2.5, took  # b's heartbeat expires, a takes its share

    await put(aws, arn, [(keys[i % 20], i) for i in range(200, 240)])
    await dep.wait(lambda: len(dep.processed) >= 240, "40 more records")
    records = dep.processed
    assert sorted(r["v"] for r in records) == list(range(240))
    assert {r["pid"] for r in records[200:]} == {a.proc.pid}
    for key in keys:
        mine = [r["v"] for r in records if r["key"] == key]
        assert mine == sorted(mine)
    assert a.stop(signal.SIGTERM) == 0


async def _checkpointed(store: Store, dep: Deployment, shards: int) -> bool:
    """Every shard's checkpoint in the store is the last record processed of that shard."""
    last: dict[str, str] = {}
    for r in dep.processed:
        last[r["shard"]] = r["seq"]
    return len(last) == shards and await store.checkpoints(dep.uuid) == last


async def _holds(store: Store, uuid: str, expected: dict[int, int]) -> bool:
    return await held(store, uuid) == Counter(expected)
