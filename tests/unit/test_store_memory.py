"""The store on ``memory://`` (fakeredis, running the same Lua), and the contract both tiers run.

:class:`StoreContract` holds the behaviours; this module runs it on fakeredis, and
``tests/integration/test_store.py`` runs it again on a real Redis. Each side only provides
``make_store``: a factory of stores sharing one backend, one key prefix and the test's
:class:`VirtualClock` (each store stands for one daemon).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from redis.crc import key_slot

from esm.clock import VirtualClock
from esm.store import (
    GC_TTL_MS,
    SHARD_END,
    Keys,
    LeaseInfo,
    Store,
    StoreError,
    StoreUnavailable,
)

MakeStore = Callable[[], Store]

M = "5f0e2f0a-1c4b-4a43-9a57-0d6a1f1b7a11"  # a mapping UUID
OTHER = "0b7c1d52-8a3e-4a7b-a1f7-3c2d9e4f5a66"
SHARD = "shardId-000000000000"
TTL = 10.0
KINESIS_SEQ = "49590338271490256608559692538361571095921575989136588898"


class StoreContract:
    """Store behaviours every backend must show. Subclasses provide the ``make_store`` fixture."""

    @pytest.fixture
    def clock(self) -> VirtualClock:
        return VirtualClock()

    @pytest.fixture
    def store(self, make_store: MakeStore) -> Store:
        return make_store()

    # -- checkpoints ------------------------------------------------------------------------------

    async def test_checkpoint_round_trip(self, store: Store) -> None:
        assert await store.checkpoint(M, SHARD) is None
        assert await store.checkpoints(M) == {}
        lease = await store.acquire_lease(M, SHARD, "a", TTL)
        assert lease is not None

        assert await store.save_checkpoint(lease, KINESIS_SEQ)
        assert await store.checkpoint(M, SHARD) == KINESIS_SEQ
        assert await store.save_checkpoint(lease, SHARD_END)
        assert await store.checkpoint(M, SHARD) == SHARD_END
        assert await store.checkpoints(M) == {SHARD: SHARD_END}
        assert await store.checkpoints(OTHER) == {}

    async def test_checkpoints_per_shard(self, store: Store) -> None:
        for shard, seq in [("s-1", "10"), ("s-2", "20")]:
            lease = await store.acquire_lease(M, shard, "a", TTL)
            assert lease is not None
            assert await store.save_checkpoint(lease, seq)
        assert await store.checkpoints(M) == {"s-1": "10", "s-2": "20"}
        assert await store.checkpoint(M, "s-2") == "20"

    async def test_save_checkpoint_is_one_round_trip(self, store: Store) -> None:
        lease = await store.acquire_lease(M, SHARD, "a", TTL)
        assert lease is not None
        assert await store.save_checkpoint(lease, "1")  # loads the script on first use
        commands: list[Any] = []
        client = store.redis
        execute: Any = client.execute_command

        async def counting(*args: Any, **options: Any) -> Any:
            commands.append(args[0])
            return await execute(*args, **options)

        client.execute_command = counting  # type: ignore[method-assign]
        try:
            assert await store.save_checkpoint(lease, "2", window={"state": {"n": 1}})
        finally:
            del client.execute_command
        assert commands == ["EVALSHA"]

    # -- fencing ----------------------------------------------------------------------------------

    async def test_stale_owner_is_fenced_after_expiry(
        self, make_store: MakeStore, clock: VirtualClock
    ) -> None:
        daemon_a, daemon_b = make_store(), make_store()
        lease_a = await daemon_a.acquire_lease(M, SHARD, "a", TTL)
        assert lease_a is not None and lease_a.token == 1
        assert await daemon_a.save_checkpoint(lease_a, "100")

        await clock.advance(TTL)  # expires_at <= now: expired
        assert not await daemon_a.save_checkpoint(lease_a, "150")  # expired, even untaken
        lease_b = await daemon_b.acquire_lease(M, SHARD, "b", TTL)
        assert lease_b is not None and lease_b.token == 2

        assert not await daemon_a.save_checkpoint(lease_a, "200")  # forward
        assert not await daemon_a.save_checkpoint(lease_a, "50")  # back
        assert await daemon_b.checkpoint(M, SHARD) == "100"
        assert await daemon_b.save_checkpoint(lease_b, "300")
        assert await daemon_a.checkpoint(M, SHARD) == "300"

        assert await daemon_a.renew_lease(lease_a, TTL) is None
        assert await daemon_a.acquire_lease(M, SHARD, "a", TTL) is None
        assert await daemon_a.leases(M) == {SHARD: LeaseInfo("b", 2, lease_b.expires_at)}

    async def test_expiry_is_inclusive(self, store: Store, clock: VirtualClock) -> None:
        lease = await store.acquire_lease(M, SHARD, "a", TTL)
        assert lease is not None and lease.expires_at == clock.now() + TTL
        await clock.advance(TTL - 0.001)
        assert await store.acquire_lease(M, SHARD, "b", TTL) is None
        assert await store.save_checkpoint(lease, "1")
        await clock.advance(0.001)
        assert not await store.save_checkpoint(lease, "2")
        taken = await store.acquire_lease(M, SHARD, "b", TTL)
        assert taken is not None and taken.token == 2

    async def test_unexpired_lease_cannot_be_taken(self, store: Store) -> None:
        lease_a = await store.acquire_lease(M, SHARD, "a", TTL)
        assert lease_a is not None
        assert await store.acquire_lease(M, SHARD, "b", TTL) is None
        assert await store.leases(M) == {SHARD: LeaseInfo("a", 1, lease_a.expires_at)}
        assert await store.save_checkpoint(lease_a, "1")

    async def test_reacquire_by_same_owner(self, store: Store, clock: VirtualClock) -> None:
        first = await store.acquire_lease(M, SHARD, "a", TTL)
        assert first is not None
        await clock.advance(TTL / 2)
        again = await store.acquire_lease(M, SHARD, "a", TTL)
        assert again is not None
        assert again.token == first.token == 1  # still ours: same token, later expiry
        assert again.expires_at == first.expires_at + TTL / 2
        await clock.advance(TTL * 0.75)  # past the first expiry, before the second
        assert await store.save_checkpoint(first, "1")

        await clock.advance(TTL)  # now expired: re-taking it is a change of hands
        retaken = await store.acquire_lease(M, SHARD, "a", TTL)
        assert retaken is not None and retaken.token == 2
        assert not await store.save_checkpoint(first, "2")
        assert await store.save_checkpoint(retaken, "3")
        assert await store.checkpoint(M, SHARD) == "3"

    async def test_renew(self, store: Store, clock: VirtualClock) -> None:
        lease = await store.acquire_lease(M, SHARD, "a", TTL)
        assert lease is not None
        await clock.advance(TTL - 1)
        renewed = await store.renew_lease(lease, TTL)
        assert renewed is not None
        assert (renewed.token, renewed.expires_at) == (1, clock.now() + TTL)
        await clock.advance(5)  # past the first expiry
        assert await store.save_checkpoint(lease, "1")  # the token is what fences, not the copy
        assert await store.acquire_lease(M, SHARD, "b", TTL) is None

        await clock.advance(TTL)
        assert await store.renew_lease(renewed, TTL) is None  # expired: lost, even untaken
        assert await store.acquire_lease(M, SHARD, "b", TTL) is not None
        assert await store.renew_lease(renewed, TTL) is None

    async def test_renew_many_at_once(self, store: Store, clock: VirtualClock) -> None:
        other = M + "-other"
        held = [await store.acquire_lease(M, f"shard-{i}", "a", TTL) for i in range(3)]
        held.append(await store.acquire_lease(other, SHARD, "a", TTL))
        leases = [lease for lease in held if lease is not None]
        assert len(leases) == 4
        await clock.advance(TTL)  # all expired; shard-1 taken by b meanwhile
        taken = await store.acquire_lease(M, "shard-1", "b", TTL)
        assert taken is not None
        renewed = await store.renew_leases(leases, TTL)
        assert [r is not None for r in renewed] == [False, False, False, False]

        fresh = [await store.acquire_lease(M, f"shard-{i}", "a", TTL) for i in (0, 2)]
        fresh.append(await store.acquire_lease(other, SHARD, "a", TTL))
        mine = [lease for lease in fresh if lease is not None]
        await clock.advance(TTL - 1)
        renewed = await store.renew_leases([mine[0], taken, mine[1], mine[2]], TTL)
        assert [r.shard_id if r else None for r in renewed] == [
            "shard-0",
            "shard-1",
            "shard-2",
            SHARD,
        ]
        assert {r.expires_at for r in renewed if r} == {clock.now() + TTL}
        await clock.advance(2)  # past the first expiry: still held, renewed
        assert await store.acquire_lease(M, "shard-0", "b", TTL) is None
        assert await store.save_checkpoint(mine[2], "7")
        # a stale token among good ones loses only itself
        renewed = await store.renew_leases([leases[0], mine[0]], TTL)
        assert [r is not None for r in renewed] == [False, True]
        assert await store.renew_leases([], TTL) == []

    async def test_release(self, store: Store, clock: VirtualClock) -> None:
        lease_a = await store.acquire_lease(M, SHARD, "a", TTL)
        assert lease_a is not None
        await clock.advance(TTL)
        lease_b = await store.acquire_lease(M, SHARD, "b", TTL)
        assert lease_b is not None and lease_b.token == 2

        await store.release_lease(lease_a)  # stale token: nothing happens
        assert await store.leases(M) == {SHARD: LeaseInfo("b", 2, lease_b.expires_at)}
        assert await store.save_checkpoint(lease_b, "1")

        await store.release_lease(lease_b)
        assert await store.leases(M) == {}
        assert not await store.save_checkpoint(lease_b, "2")
        assert await store.renew_lease(lease_b, TTL) is None
        lease_c = await store.acquire_lease(M, SHARD, "c", TTL)  # free at once, no expiry wait
        assert lease_c is not None and lease_c.token == 3  # tokens survive a release
        again_b = await store.acquire_lease(M, SHARD, "b", TTL)
        assert again_b is None

    async def test_leases_lists_expired_ones(self, store: Store, clock: VirtualClock) -> None:
        a = await store.acquire_lease(M, "s-1", "a", TTL)
        b = await store.acquire_lease(M, "s-2", "b", 3 * TTL)
        assert a is not None and b is not None
        await clock.advance(2 * TTL)
        assert await store.leases(M) == {
            "s-1": LeaseInfo("a", 1, a.expires_at),
            "s-2": LeaseInfo("b", 1, b.expires_at),
        }
        assert await store.leases(OTHER) == {}

    async def test_concurrent_acquire_has_one_winner(self, make_store: MakeStore) -> None:
        daemons = [make_store() for _ in range(20)]
        results = await asyncio.gather(
            *(d.acquire_lease(M, SHARD, f"owner-{i}", TTL) for i, d in enumerate(daemons))
        )
        winners = [lease for lease in results if lease is not None]
        assert len(winners) == 1
        assert winners[0].token == 1
        assert await daemons[0].leases(M) == {
            SHARD: LeaseInfo(winners[0].owner, 1, winners[0].expires_at)
        }

    # -- window state -----------------------------------------------------------------------------

    async def test_window_state_moves_with_the_checkpoint(
        self, store: Store, clock: VirtualClock
    ) -> None:
        window = {"state": {"total": 3, "keys": ["a", "é"]}, "start": 1_700_000_000.5}
        lease = await store.acquire_lease(M, SHARD, "a", TTL)
        assert lease is not None
        assert await store.window_state(M, SHARD) is None

        assert await store.save_checkpoint(lease, "1", window=window)
        assert await store.window_state(M, SHARD) == window
        assert await store.save_checkpoint(lease, "2")  # no window given: kept
        assert await store.window_state(M, SHARD) == window
        assert await store.save_checkpoint(lease, "3", clear_window=True)
        assert await store.window_state(M, SHARD) is None
        assert await store.checkpoint(M, SHARD) == "3"

        assert await store.save_checkpoint(lease, "4", window={"state": {}})
        await clock.advance(TTL)
        assert not await store.save_checkpoint(lease, "5", window={"state": {"x": 1}})
        assert not await store.save_checkpoint(lease, "5", clear_window=True)
        assert await store.window_state(M, SHARD) == {"state": {}}
        assert await store.checkpoint(M, SHARD) == "4"

        with pytest.raises(ValueError, match="not both"):
            await store.save_checkpoint(lease, "6", window={}, clear_window=True)

    # -- forget -----------------------------------------------------------------------------------

    async def test_forget_mapping(self, store: Store) -> None:
        for mapping in (M, OTHER):
            lease = await store.acquire_lease(mapping, SHARD, "a", TTL)
            assert lease is not None
            assert await store.save_checkpoint(lease, "7", window={"state": {}})

        await store.forget_mapping(M)
        assert await store.checkpoints(M) == {}
        assert await store.leases(M) == {}
        assert await store.window_state(M, SHARD) is None
        assert await store.checkpoints(OTHER) == {SHARD: "7"}
        assert await store.window_state(OTHER, SHARD) == {"state": {}}
        fresh = await store.acquire_lease(M, SHARD, "b", TTL)
        assert fresh is not None and fresh.token == 1
        await store.forget_mapping(M)  # twice is fine

    # -- workers ----------------------------------------------------------------------------------

    async def test_heartbeats_expire(self, store: Store, clock: VirtualClock) -> None:
        assert await store.live_workers(M) == []
        await store.heartbeat(M, "worker-b", 30)
        await store.heartbeat(M, "worker-a", TTL)
        await store.heartbeat(OTHER, "worker-c", TTL)
        assert await store.live_workers(M) == ["worker-a", "worker-b"]

        await clock.advance(TTL)  # worker-a's expires_at <= now
        assert await store.live_workers(M) == ["worker-b"]
        await store.heartbeat(M, "worker-a", TTL)
        assert await store.live_workers(M) == ["worker-a", "worker-b"]
        await clock.advance(30)
        assert await store.live_workers(M) == []
        assert await store.live_workers(OTHER) == []

    # -- keys -------------------------------------------------------------------------------------

    async def test_gc_ttl_on_leases_and_heartbeats_only(self, store: Store) -> None:
        lease = await store.acquire_lease(M, SHARD, "a", TTL)
        assert lease is not None
        assert await store.save_checkpoint(lease, "1", window={"state": {}})
        await store.heartbeat(M, "a", TTL)
        client, keys = store.redis, store.keys
        assert 0 < await client.pttl(keys.leases(M)) <= GC_TTL_MS
        assert 0 < await client.pttl(keys.workers(M)) <= GC_TTL_MS
        assert await client.pttl(keys.checkpoints(M)) == -1
        assert await client.pttl(keys.windows(M)) == -1

    async def test_ping(self, store: Store) -> None:
        assert await store.ping() is True

    async def test_bad_arguments(self, store: Store) -> None:
        with pytest.raises(ValueError, match="ttl_s"):
            await store.acquire_lease(M, SHARD, "a", 0)
        with pytest.raises(ValueError, match="owner"):
            await store.acquire_lease(M, SHARD, "", TTL)
        with pytest.raises(ValueError, match="braces"):
            await store.checkpoints("{evil}")


# -- memory:// ------------------------------------------------------------------------------------


@pytest.fixture
async def make_store(clock: VirtualClock) -> AsyncIterator[MakeStore]:
    """Stores on one private fakeredis server, as ``memory://`` builds them."""
    server = FakeServer()
    stores: list[Store] = []

    def make() -> Store:
        store = Store(FakeRedis(server=server, decode_responses=True), clock=clock, prefix="t")
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.aclose()


class TestMemoryStore(StoreContract):
    async def test_unavailable_is_retriable(self, store: Store) -> None:
        server: Any = store.redis.connection_pool.connection_kwargs["server"]
        server.connected = False
        assert await store.ping() is False
        with pytest.raises(StoreUnavailable) as caught:
            await store.checkpoint(M, SHARD)
        assert caught.value.retriable
        assert isinstance(caught.value, StoreError)


async def test_memory_url_is_private_unless_named() -> None:
    clock = VirtualClock()
    one, two = Store.from_url("memory://", clock=clock), Store.from_url("memory://", clock=clock)
    named = [Store.from_url("memory://unit-test-shared", clock=clock) for _ in range(2)]
    try:
        for writer, reader, shared in [(one, two, False), (named[0], named[1], True)]:
            lease = await writer.acquire_lease(M, SHARD, "a", TTL)
            assert lease is not None
            assert await writer.save_checkpoint(lease, "9")
            assert await reader.checkpoint(M, SHARD) == ("9" if shared else None)
    finally:
        for store in (one, two, *named):
            await store.aclose()


@pytest.mark.parametrize(
    "url", ["http://localhost:6379", "localhost:6379", "", "redis+valkey://h:1", "valkey://x"]
)
def test_bad_url_scheme(url: str) -> None:
    with pytest.raises(ValueError, match=r"redis://…, rediss://…, unix://…, redis\+cluster://"):
        Store.from_url(url, clock=VirtualClock())


def test_bad_url_does_not_echo_a_password() -> None:
    with pytest.raises(ValueError) as caught:
        Store.from_url("http://user:s3cret@host", clock=VirtualClock())
    assert "s3cret" not in str(caught.value)


def test_keys_layout_and_cluster_slots() -> None:
    keys = Keys("esm")
    assert keys.mapping(M) == (
        f"esm:checkpoints:{{{M}}}",
        f"esm:windows:{{{M}}}",
        f"esm:leases:{{{M}}}",
    )
    assert keys.workers("g") == "esm:workers:{g}"
    assert len({key_slot(k.encode()) for k in (*keys.mapping(M), keys.workers(M))}) == 1
    with pytest.raises(ValueError, match="prefix"):
        Keys("a{b}")
