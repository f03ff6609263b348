"""Shard leases among several daemons of one mapping, counted in store round trips: a daemon left
below its fair share by shares that do not divide evenly costs a few calls per tick, not one per
shard, and still takes its share once a daemon dies (docs/semantics.md §6.10)."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from typing import Any

import pytest

from esm.clock import VirtualClock
from esm.config import parse_config
from esm.connectors.memory import MemoryBroker
from esm.engine import Engine
from esm.shard_life import ShardState
from esm.store import Store, StoreUnavailable
from esm.stream_poller import StreamPoller
from tests.support import unique
from tests.unit.test_queue_poller import run_until

KINESIS = "arn:aws:kinesis:us-east-1:000000000000:stream/"
TARGET = "python:tests.fixtures.recorder.handle_async"
LEASE_S = 9.0
TICK_S = LEASE_S / 3  # heartbeats and lease hand-overs: every third of a lease
SHARDS = 20  # over 3 daemons: shares of 7, 7 and 6


class CountingStore(Store):
    """One daemon's connection to the shared memory:// server: counts the calls its stream
    poller makes (one round trip each); once ``dead``, they fail, as for a daemon killed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: collections.Counter[str] = collections.Counter()
        self.dead = False

    def _count(self, name: str) -> None:
        if self.dead:
            raise StoreUnavailable("this daemon is dead")
        self.calls[name] += 1

    async def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        self._count("heartbeat")
        await super().heartbeat(*args, **kwargs)

    async def live_workers(self, *args: Any, **kwargs: Any) -> Any:
        self._count("live_workers")
        return await super().live_workers(*args, **kwargs)

    async def checkpoints(self, *args: Any, **kwargs: Any) -> Any:
        self._count("checkpoints")
        return await super().checkpoints(*args, **kwargs)

    async def leases(self, *args: Any, **kwargs: Any) -> Any:
        self._count("leases")
        return await super().leases(*args, **kwargs)

    async def acquire_lease(self, *args: Any, **kwargs: Any) -> Any:
        self._count("acquire_lease")
        return await super().acquire_lease(*args, **kwargs)

    async def renew_leases(self, *args: Any, **kwargs: Any) -> Any:
        self._count("renew_leases")
        return await super().renew_leases(*args, **kwargs)

    async def release_lease(self, *args: Any, **kwargs: Any) -> None:
        self._count("release_lease")
        await super().release_lease(*args, **kwargs)

    async def save_checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        self._count("save_checkpoint")
        return await super().save_checkpoint(*args, **kwargs)


class Fleet:
    def __init__(self) -> None:
        self.clock = VirtualClock(1_700_000_000.0)
        self.broker = MemoryBroker(self.clock)
        self.server = f"memory://{unique('leases')}"
        self.arn = KINESIS + unique("s")
        self.broker.create_stream(self.arn, shards=SHARDS)
        self.name = unique("fleet")
        self.engines: dict[str, Engine] = {}
        self.stores: dict[str, CountingStore] = {}

    async def start(self, owner: str) -> None:
        config = parse_config(
            {
                "Settings": {"LeaseSeconds": LEASE_S, "ShardDiscoverySeconds": 60},
                "Functions": {self.name: {"Target": TARGET, "Timeout": 60}},
                "EventSourceMappings": [
                    {
                        "FunctionName": self.name,
                        "EventSourceArn": self.arn,
                        "StartingPosition": "TRIM_HORIZON",
                    }
                ],
            }
        )
        store = CountingStore.from_url(self.server, clock=self.clock)
        assert isinstance(store, CountingStore)
        eng = Engine(config, clock=self.clock, sources=self.broker, store=store, owner=owner)
        await eng.start()
        self.engines[owner], self.stores[owner] = eng, store

    def poller(self, owner: str) -> StreamPoller:
        (rt,) = self.engines[owner].mappings.values()
        assert isinstance(rt.poller, StreamPoller)
        return rt.poller

    def held(self, owner: str) -> list[str]:
        return self.poller(owner).shards

    def states(self, owner: str) -> dict[str, ShardState]:
        return self.poller(owner).shard_states

    def balanced(self, owners: list[str]) -> bool:
        share = -(-SHARDS // len(owners))
        held = [self.held(o) for o in owners]
        every = [s for h in held for s in h]
        return len(every) == len(set(every)) == SHARDS and all(len(h) <= share for h in held)

    async def run(self, seconds: float) -> None:
        end = self.clock.now() + seconds
        await run_until(self.clock, lambda: self.clock.now() >= end, max_s=seconds + 1)


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    f = Fleet()
    yield f
    for owner, eng in f.engines.items():
        f.stores[owner].dead = False
        await eng.aclose(deadline_s=0)
    for store in f.stores.values():
        await store.aclose()


async def test_a_daemon_below_its_share_with_nothing_free_makes_a_few_calls_a_tick(
    fleet: Fleet,
) -> None:
    owners = ["a", "b", "c"]
    for owner in owners:
        await fleet.start(owner)
        await fleet.run(1)
    await run_until(fleet.clock, lambda: fleet.balanced(owners), max_s=4 * LEASE_S)
    await fleet.run(LEASE_S)  # settled
    assert sorted(len(fleet.held(o)) for o in owners) == [6, 7, 7]
    (low,) = [o for o in owners if len(fleet.held(o)) == 6]
    before = fleet.stores[low].calls.copy()

    ticks = 30
    await fleet.run(ticks * TICK_S)

    made = fleet.stores[low].calls - before
    # no acquire_lease on the 14 shards the others hold (one each per tick before: 420 calls);
    # per tick a heartbeat, the live workers, the checkpoints and the leases, and a renewal
    assert made["acquire_lease"] == 0
    assert ticks - 1 <= made["leases"] <= ticks + 1
    assert sum(made.values()) <= 5 * (ticks + 1)
    # and the poller's shard states still say where the others' shards are
    states = fleet.states(low)
    elsewhere = [s for s, st in states.items() if st is ShardState.LEASED_ELSEWHERE]
    assert len(elsewhere) == SHARDS - 6
    assert set(elsewhere).isdisjoint(fleet.held(low))

    # a daemon dies without handing anything back: the two left take its shards once its
    # leases expired, 10 each
    (dying,) = [o for o in owners if o != low][:1]
    fleet.stores[dying].dead = True
    died_at = fleet.clock.now()
    left = [o for o in owners if o != dying]
    await run_until(fleet.clock, lambda: fleet.balanced(left), max_s=4 * LEASE_S)
    assert sorted(len(fleet.held(o)) for o in left) == [10, 10]
    assert fleet.clock.now() - died_at >= LEASE_S - TICK_S  # not before its leases expired
    assert fleet.clock.now() - died_at <= 2 * LEASE_S
