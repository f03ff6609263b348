"""esm's Redis code on a real Redis Cluster (3 primaries, one replica each, started by the
session: tests/redis_cluster.py) and on Sentinel's primary, beside the shared standalone Redis.

- Where the keys live: a mapping's keys, the async queue's and the registry's each hash to one
  slot, and the three slots are served by three different primaries (asked of the cluster:
  ``CLUSTER KEYSLOT``, ``CLUSTER SHARDS``), so the tests below run each family's scripts on a
  node of its own.
- Every Lua script esm registers runs on the cluster, and every one touches keys of one slot.
  This is shown by running them, not by reading them: a script whose keys span slots is refused
  (by redis-py, or by the node with CROSSSLOT), and the test checks each call's keys with the
  cluster's own ``CLUSTER KEYSLOT``.
- The registry's and the async queue's behaviour, as the daemons use it, on every kind.

The store contract (leases, fencing, checkpoints, heartbeats) runs on every kind in
``test_store.py``; daemons on the cluster in ``test_stream_daemons.py``,
``test_async_daemon.py`` and ``control_plane/``; failovers in ``test_redis_failover.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import RedisCluster

from esm.async_queue import AsyncQueue, QueuedEvent
from esm.clock import RealClock, VirtualClock
from esm.registry import (
    InvokeConfigRecord,
    MappingRecord,
    Registry,
    function_tags_field,
    mapping_tags_field,
)
from esm.retry import History
from esm.store import Keys, Store
from tests.redis_cluster import LocalCluster, on_redis
from tests.streams_support import delete_keys
from tests.unit.test_store_memory import M

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix() -> str:
    return f"esm-test-{uuid.uuid4().hex}"


@pytest.fixture
async def stores(store_url: str, prefix: str) -> AsyncIterator[Callable[[], Store]]:
    """Stores on the test's Redis kind under the test's prefix (one per simulated daemon); the
    keys are deleted afterwards."""
    made: list[Store] = []
    clock = VirtualClock()

    def make() -> Store:
        store = Store.from_url(store_url, clock=clock, prefix=prefix)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()
    await delete_keys(store_url, f"{prefix}:*")


# -- where the keys live --------------------------------------------------------------------------


def test_a_mapping_the_async_queue_and_the_registry_live_on_three_primaries(
    redis_cluster: LocalCluster,
) -> None:
    keys = Keys("esm")
    families = {
        "mapping": [*keys.mapping(M)],
        "async queue": [
            keys.async_ready(fn) for fn in ("orders", "notify")
        ]  # one XREADGROUP reads both
        + [keys.async_delayed(fn) for fn in ("orders", "notify")],
        "registry": [
            keys.registry(kind)
            for kind in ("mappings", "invoke-configs", "concurrency", "version", "epoch")
        ],
    }
    slots = {name: {redis_cluster.keyslot(k) for k in family} for name, family in families.items()}
    assert all(len(s) == 1 for s in slots.values()), slots  # one slot per family
    primaries = {
        name: redis_cluster.primary_of(family[0]).port for name, family in families.items()
    }
    assert len(set(primaries.values())) == 3, primaries  # on three different primaries


# -- every script on one slot, run on the cluster -------------------------------------------------


class Recorder:
    """Wraps one cluster client: every script registered on it, every command sent through
    it."""

    def __init__(self, client: RedisCluster) -> None:
        self.client = client
        self.scripts: dict[str, str] = {}  # sha -> source
        self.commands: list[tuple[Any, ...]] = []
        register, execute = client.register_script, client.execute_command

        def registering(script: Any) -> Any:
            registered = register(script)
            self.scripts[registered.sha] = str(script)
            return registered

        async def executing(*args: Any, **options: Any) -> Any:
            self.commands.append(args)
            return await execute(*args, **options)

        client.register_script = registering  # type: ignore[method-assign]
        client.execute_command = executing  # type: ignore[method-assign]

    def evalsha_keys(self) -> dict[str, list[list[str]]]:
        """The keys of every EVALSHA call, by script."""
        out: dict[str, list[list[str]]] = {}
        for args in self.commands:
            if args[0] == "EVALSHA":
                numkeys = int(args[2])
                out.setdefault(args[1], []).append([str(k) for k in args[3 : 3 + numkeys]])
        return out

    def multi_key_commands(self) -> list[list[str]]:
        """The keys of every other command that names several (DEL, MGET, XREADGROUP)."""
        out = []
        for args in self.commands:
            if args[0] in ("DEL", "MGET"):
                out.append([str(k) for k in args[1:]])
            elif args[0] == "XREADGROUP":
                words = [a.decode() if isinstance(a, bytes) else a for a in args]
                rest = words[words.index("STREAMS") + 1 :]
                out.append([str(k) for k in rest[: len(rest) // 2]])
        return [keys for keys in out if len(keys) > 1]


async def test_every_lua_script_runs_on_the_cluster_on_keys_of_one_slot(
    redis_cluster: LocalCluster, prefix: str
) -> None:
    clock = VirtualClock()
    plain = Store.from_url(redis_cluster.url, clock=clock, prefix=prefix)
    assert isinstance(plain.redis, RedisCluster)
    rec = Recorder(plain.redis)
    # built on the recording client: every script they register is seen
    store = Store(rec.client, clock=clock, prefix=prefix)
    registry = Registry(rec.client, store.keys)
    queue = AsyncQueue(
        rec.client,
        clock=clock,
        keys=store.keys,
        functions=["orders", "notify"],
        consumer="a",
        visibility_s=60,
    )
    try:
        # the store: leases, checkpoints with window state, heartbeats, forgetting a mapping
        lease = await store.acquire_lease(M, "s-1", "a", 10)
        assert lease is not None
        assert await store.save_checkpoint(lease, "1", window={"state": {"n": 1}})
        assert await store.save_checkpoint(lease, "2", clear_window=True)
        assert (await store.renew_leases([lease], 10))[0] is not None
        await store.release_lease(lease)
        await store.heartbeat("mapping:m", "a", 10)
        assert await store.checkpoints(M) == {"s-1": "2"}
        await store.forget_mapping(M)
        # the registry: every write path
        assert await registry.mark_epoch("e-1") == "e-1"
        await registry.put_mapping(MappingRecord("u-1", {"BatchSize": 1}, last_modified=1.0))
        assert await registry.set_state("u-1", 1.0, "Enabled")
        await registry.put_invoke_config("orders", InvokeConfigRecord({"MaximumRetryAttempts": 0}))
        await registry.put_concurrency("orders", 3)
        assert await registry.put_tags(mapping_tags_field("u-1"), {"a": "1"}, mapping="u-1")
        assert await registry.put_tags(function_tags_field("orders"), {"b": "2"})
        await registry.delete_mapping("u-1")  # and its tags
        assert await registry.tags(mapping_tags_field("u-1"), function_tags_field("orders")) == [
            None,
            {"b": "2"},
        ]
        assert not await registry.put_tags(mapping_tags_field("u-1"), {"a": "1"}, mapping="u-1")
        assert await registry.status() == (5, "e-1")
        # the async queue: both functions' streams read at once, retried, completed
        await queue.setup()
        for fn in ("orders", "notify"):
            await queue.enqueue(QueuedEvent(f"r-{fn}", fn, b"{}", History(clock.now())))
        claimed = await queue.claim(10)
        assert sorted(e.function for e in claimed) == ["notify", "orders"]
        await queue.touch(claimed)
        await queue.retry(claimed[0], 0)
        assert await queue.move_due() is None
        again = await queue.claim(10)
        await queue.complete_many([again[0], *claimed[1:]])
        assert await queue.reclaim(10) == []
        assert await queue.depth() == {"ready": 0, "claimed": 0, "delayed": 0}
    finally:
        await plain.aclose()
        await delete_keys(redis_cluster.url, f"{prefix}:*")

    calls = rec.evalsha_keys()
    assert set(calls) == set(rec.scripts), "every script esm registers ran on the cluster"
    assert len(rec.scripts) == 12  # store 5, registry 5, async queue 2
    for sha, key_lists in calls.items():
        for keys in key_lists:
            slots = {redis_cluster.keyslot(k) for k in keys}
            assert len(slots) == 1, (rec.scripts[sha], keys, slots)
    multi = rec.multi_key_commands()
    assert multi, "DEL of a mapping's keys, MGET of the registry, XREADGROUP over two streams"
    for keys in multi:
        assert len({redis_cluster.keyslot(k) for k in keys}) == 1, keys


# -- the registry, as daemons share it ------------------------------------------------------------


@on_redis("redis", "cluster", "sentinel")
async def test_registry_writes_bump_the_version_and_set_state_is_compare_and_set(
    stores: Callable[[], Store],
) -> None:
    a, b = stores(), stores()
    reg_a, reg_b = Registry(a.redis, a.keys), Registry(b.redis, b.keys)
    assert await reg_a.status() == (0, None)
    assert await reg_a.mark_epoch("first") == "first"
    assert await reg_b.mark_epoch("second") == "first"  # set once

    record = MappingRecord("u-1", {"BatchSize": 10}, last_modified=100.5)
    await reg_a.put_mapping(record)
    assert await reg_b.mapping("u-1") == record
    assert await reg_b.status() == (1, "first")

    # two daemons move the same mapping at once: one wins, the other is told
    won = await asyncio.gather(
        reg_a.set_state("u-1", 100.5, "Enabled"), reg_b.set_state("u-1", 100.5, "Disabled")
    )
    assert sorted(won) == [False, True]
    state = (await reg_a.mappings())["u-1"].state
    assert state == ("Enabled" if won[0] else "Disabled")
    assert not await reg_a.set_state("u-1", 99.0, "Enabled")  # changed since
    assert not await reg_a.set_state("missing", 100.5, "Enabled")
    assert (await reg_a.status())[0] == 2  # only the one write that happened

    await reg_b.put_invoke_config("orders", InvokeConfigRecord({"MaximumRetryAttempts": 1}, 5.0))
    await reg_b.put_concurrency("orders", 7)
    assert await reg_a.invoke_configs() == {
        "orders": InvokeConfigRecord({"MaximumRetryAttempts": 1}, 5.0)
    }
    assert await reg_a.concurrency() == {"orders": 7}
    await reg_a.put_concurrency("orders", None)
    await reg_a.put_invoke_config("orders", None)
    await reg_a.delete_mapping("u-1")
    assert (await reg_b.mappings(), await reg_b.invoke_configs(), await reg_b.concurrency()) == (
        {},
        {},
        {},
    )
    assert await reg_b.status() == (7, "first")


# -- the async queue, as daemons share it ---------------------------------------------------------


def _queue(store: Store, consumer: str, clock: VirtualClock, visibility_s: float) -> AsyncQueue:
    return AsyncQueue(
        store.redis,
        clock=clock,
        keys=store.keys,
        functions=["orders", "notify"],
        consumer=consumer,
        visibility_s=visibility_s,
    )


@on_redis("redis", "cluster")
async def test_async_queue_claims_retries_completes_and_reclaims(
    stores: Callable[[], Store],
) -> None:
    clock = VirtualClock()
    a = _queue(stores(), "a", clock, visibility_s=0.2)
    b = _queue(stores(), "b", clock, visibility_s=0.2)
    await a.setup()
    await b.setup()
    sent = [(fn, f"{fn}-{i}") for fn in ("orders", "notify") for i in range(3)]
    for fn, rid in sent:
        await a.enqueue(QueuedEvent(rid, fn, b'{"id": "%s"}' % rid.encode(), History(clock.now())))

    claimed = await a.claim(10, block_ms=100)  # one XREADGROUP over both functions' streams
    assert sorted(e.request_id for e in claimed) == sorted(rid for _, rid in sent)
    assert await b.claim(10, block_ms=10) == []  # each event to one consumer
    assert await a.depth() == {"ready": 0, "claimed": 6, "delayed": 0}

    # a retry waits in the delayed set until due (virtual time), then is claimed again
    first = claimed[0]
    await a.retry(first, 30)
    assert await a.move_due() == clock.now() + 30
    await clock.advance(30)
    assert await a.move_due() is None
    again = await b.claim(10, block_ms=100)
    assert [(e.request_id, e.payload) for e in again] == [(first.request_id, first.payload)]
    await b.complete_many(again[:1])

    # a touches what it still runs; what it stopped touching is reclaimed by b (Redis's clock)
    kept, dropped = claimed[1:3], claimed[3:]
    await asyncio.sleep(0.3)
    await a.touch(kept)
    reclaimed = await b.reclaim(10)
    assert sorted(e.request_id for e in reclaimed) == sorted(e.request_id for e in dropped)
    await b.complete_many(reclaimed)
    await a.complete_many(kept)
    assert await a.depth() == {"ready": 0, "claimed": 0, "delayed": 0}


async def test_a_cluster_client_on_one_startup_node_finds_the_others(
    redis_cluster: LocalCluster, prefix: str
) -> None:
    """Any one node is enough to start: the client learns the rest from the cluster."""
    replica = redis_cluster.shards()[0].replicas[0]
    store = Store.from_url(f"redis+cluster://{replica.address}", clock=RealClock(), prefix=prefix)
    try:
        assert await store.ping()
        lease = await store.acquire_lease(M, "s-1", "a", 10)
        assert lease is not None and await store.save_checkpoint(lease, "7")
        assert await store.checkpoint(M, "s-1") == "7"
    finally:
        await store.aclose()
        await delete_keys(redis_cluster.url, f"{prefix}:*")
