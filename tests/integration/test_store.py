"""The store on a real Redis: the whole contract of ``tests/unit/test_store_memory.py`` again,
plus what only a server shows (real concurrency over separate connections, script loading, the
key names on the wire, an unreachable server) — on the shared standalone Redis, on a Redis
Cluster of 3 primaries (where the mapping's scripts run on another primary than the registry's
and the async queue's) and on the primary of a Sentinel set-up.

Each test writes under its own key prefix and deletes those keys afterwards (SCAN + DEL).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from esm.clock import RealClock, VirtualClock
from esm.store import Store, StoreUnavailable
from tests.redis_cluster import on_redis
from tests.unit.test_store_memory import SHARD, TTL, M, MakeStore, StoreContract

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix() -> str:
    return f"esm-test-{uuid.uuid4().hex}"


@pytest.fixture
async def make_store(store_url: str, clock: VirtualClock, prefix: str) -> AsyncIterator[MakeStore]:
    """Stores on the real Redis, each with its own client (one per simulated daemon)."""
    stores: list[Store] = []

    def make() -> Store:
        store = Store.from_url(store_url, clock=clock, prefix=prefix)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.aclose()
    cleaning = Store.from_url(store_url, clock=RealClock())
    cleaner = cleaning.redis  # on a cluster, SCAN visits every primary
    try:
        keys = [key async for key in cleaner.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await cleaner.delete(*keys)
        assert [key async for key in cleaner.scan_iter(match=f"{prefix}:*")] == []
    finally:
        await cleaning.aclose()


@on_redis("redis", "cluster", "sentinel")
class TestRedisStore(StoreContract):
    async def test_keys_on_the_wire(self, store: Store, prefix: str) -> None:
        lease = await store.acquire_lease(M, SHARD, "a", TTL)
        assert lease is not None
        assert await store.save_checkpoint(lease, "1", window={"state": {}})
        await store.heartbeat("group-1", "a", TTL)
        found = sorted([key async for key in store.redis.scan_iter(match=f"{prefix}:*")])
        assert found == [
            f"{prefix}:checkpoints:{{{M}}}",
            f"{prefix}:leases:{{{M}}}",
            f"{prefix}:windows:{{{M}}}",
            f"{prefix}:workers:{{group-1}}",
        ]
        assert await store.redis.hgetall(f"{prefix}:leases:{{{M}}}") == {
            SHARD: f"1:{lease.expires_at!r}:a"
        }

    async def test_scripts_reload_after_a_script_flush(self, store: Store) -> None:
        lease = await store.acquire_lease(M, SHARD, "a", TTL)
        assert lease is not None
        await store.redis.script_flush()  # as after a Redis restart or failover
        assert await store.save_checkpoint(lease, "1")
        assert await store.checkpoint(M, SHARD) == "1"

    async def test_concurrent_acquire_many_shards(self, make_store: MakeStore) -> None:
        """20 daemons race for 5 shards: every shard has exactly one owner, token 1."""
        daemons = [make_store() for _ in range(20)]
        shards = [f"shard-{n}" for n in range(5)]
        results = await asyncio.gather(
            *(
                d.acquire_lease(M, shard, f"owner-{i}", TTL)
                for i, d in enumerate(daemons)
                for shard in shards
            )
        )
        won = [lease for lease in results if lease is not None]
        assert sorted(lease.shard_id for lease in won) == shards
        leases = await daemons[0].leases(M)
        assert {shard: (info.owner, info.token) for shard, info in leases.items()} == {
            lease.shard_id: (lease.owner, 1) for lease in won
        }


async def test_unreachable_redis_is_retriable() -> None:
    store = Store.from_url(
        "redis://127.0.0.1:1/0?socket_connect_timeout=0.5", clock=VirtualClock(), prefix="x"
    )
    try:
        assert await store.ping() is False
        with pytest.raises(StoreUnavailable) as caught:
            await store.checkpoint(M, SHARD)
        assert caught.value.retriable
    finally:
        await store.aclose()
