"""P9: shard-lease balance at scale, simulated on the virtual clock.

    python -m benchmarks.leases [--sizes 10x1000 30x3000 100x10000] [--store twin|fakeredis]
                                [--lease-s 10] [--step-s 0.5] [--smoke]

For each size (daemons x shards), the lease protocol of :class:`esm.stream_poller.StreamPoller`
runs unchanged — its tick (heartbeat, live workers, checkpoints, fair share
``ceil(ready / live workers)``, handing back beyond it, acquiring free or expired leases) and its
renewals every third of a lease — for every daemon, in one process, on one
:class:`~esm.clock.VirtualClock`. What is not under test is stood in for: the stream lists a fixed
set of shards (no records), and a leased shard's consumer idles until it is asked to stop or its
lease is lost (:class:`IdleConsumer`; ``StreamPoller._start`` is overridden to start it).

Scenario: the daemons start (each at a random moment within ``--start-jitter-s``), then 10 % of
them die (no goodbye: their leases and heartbeats just stop being renewed, as after SIGKILL),
then 10 % more join. Each phase runs until the assignment is balanced — every shard consumed by
exactly one live daemon and none holding more than its fair share ``ceil(shards / live)`` — and
then ``--steady-leases`` lease periods more, to measure the steady cost. Reported per phase:
virtual seconds (and lease periods) to balance, the spread of shards per daemon when balanced,
lease steals (a shard taken over from a daemon that never released it: only after its lease
expired) and takeovers (any change of consumer), and store operations (one per Store call = one
Redis round trip) per second per daemon, while rebalancing and steady.

Nothing is owned twice, checked at every instant a consumer starts (an ownership registry the
pollers' shard maps report to) and again over all daemons after every clock step: a violation
makes the benchmark fail.

Stores (``--store``):

- ``fakeredis``: esm's ``memory://`` store, fakeredis running the store's real Lua scripts. Every
  lease call is an EVALSHA through redis-py's asyncio client into fakeredis and its Lua
  interpreter, ~0.4 ms of CPU each here, so 100 x 10,000 takes long this way.
- ``twin`` (default): :class:`LeaseTwin`, a dict-based store implementing the same seven calls with
  the same semantics as the Lua scripts (lease tokens, expiry compared with the clock, renew only
  while held, release keeps the token; heartbeats in a scored set). The pollers, their share
  computation and their call pattern are esm's own; only the store's insides are replaced.
  ``--check-twin`` runs the smallest size on both stores first and reports both: the twin is
  trusted as far as the two agree.

What a rebalance costs in store operations: a daemon below its share reads the mapping's leases
once (``Store.leases``, one HGETALL) and calls ``acquire_lease`` only on the ready shards that read
shows free, expired or its own, until it has its share; a shard leased elsewhere costs nothing.
So a tick costs a few round trips per daemon plus one per shard actually taken (or lost to a
race), and a daemon left below its share by shares that do not divide evenly costs one read per
tick (``ops_per_s_per_daemon`` and ``store_ops_by_call`` show it). The read's size grows with the
shards (an entry per leased shard).

    --smoke: 4 daemons x 40 shards on both stores, seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from benchmarks.machine import machine
from esm.clock import VirtualClock, settle
from esm.connectors.base import Shard
from esm.shard_life import ShardState
from esm.store import Lease, LeaseInfo, Store, StoreUnavailable
from esm.stream_poller import StreamPoller, _Running

TARGET_LEASE_PERIODS = 2.0
MAPPING = "p9-mapping"

# -- the store: esm's (fakeredis + Lua) or the twin ----------------------------------------------


class LeaseTwin:
    """The calls the stream poller makes on :class:`esm.store.Store`, on dicts, with the Lua
    scripts' semantics. One instance is "the Redis"; every daemon calls it."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._leases: dict[str, tuple[int, float, str]] = {}  # shard -> (token, expires, owner)
        self._workers: dict[str, float] = {}  # owner -> expires_at
        self._checkpoints: dict[str, str] = {}

    async def heartbeat(self, group: str, owner: str, ttl_s: float) -> None:
        now = self._clock.now()
        # ZREMRANGEBYSCORE -inf now: gone when expires_at <= now
        self._workers = {o: e for o, e in self._workers.items() if e > now}
        self._workers[owner] = now + ttl_s

    async def live_workers(self, group: str) -> list[str]:
        now = self._clock.now()
        return sorted(o for o, e in self._workers.items() if e > now)

    async def checkpoints(self, mapping_uuid: str) -> dict[str, str]:
        return dict(self._checkpoints)

    async def acquire_lease(
        self, mapping_uuid: str, shard_id: str, owner: str, ttl_s: float
    ) -> Lease | None:
        now = self._clock.now()
        token, expires, holder = self._leases.get(shard_id, (0, 0.0, ""))
        live = expires > now
        if holder != owner:
            if holder != "" and live:
                return None
            token += 1
        elif not live:
            token += 1
        self._leases[shard_id] = (token, now + ttl_s, owner)
        return Lease(mapping_uuid, shard_id, owner, token, now + ttl_s)

    async def renew_leases(self, leases: list[Lease], ttl_s: float) -> list[Lease | None]:
        now = self._clock.now()
        out: list[Lease | None] = []
        for lease in leases:
            token, expires, holder = self._leases.get(lease.shard_id, (0, 0.0, ""))
            if holder == lease.owner and token == lease.token and expires > now:
                self._leases[lease.shard_id] = (token, now + ttl_s, holder)
                out.append(Lease(lease.mapping_uuid, lease.shard_id, holder, token, now + ttl_s))
            else:
                out.append(None)
        return out

    async def release_lease(self, lease: Lease) -> None:
        token, _, holder = self._leases.get(lease.shard_id, (0, 0.0, ""))
        if holder == lease.owner and token == lease.token:
            self._leases[lease.shard_id] = (token, 0.0, "")

    async def leases(self, mapping_uuid: str) -> dict[str, LeaseInfo]:
        # HGETALL; a released lease (no owner) is left out, an expired one is not
        return {
            shard: LeaseInfo(holder, token, expires)
            for shard, (token, expires, holder) in self._leases.items()
            if holder
        }


class CountingStore:
    """One daemon's view of the store: counts its calls (one round trip each); once the daemon
    is dead every call fails, so nothing it left behind is released or renewed."""

    OPS = (
        "heartbeat",
        "live_workers",
        "checkpoints",
        "acquire_lease",
        "renew_leases",
        "release_lease",
        "leases",
    )

    def __init__(self, inner: Any, counts: collections.Counter[str]) -> None:
        self._inner = inner
        self.counts = counts  # shared per phase: op -> calls
        self.calls = 0
        self.dead = False

    def __getattr__(self, name: str) -> Any:
        if name not in self.OPS:
            raise AttributeError(name)
        method = getattr(self._inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise StoreUnavailable("this daemon is dead")
            self.calls += 1
            self.counts[name] += 1
            return await method(*args, **kwargs)

        return call


# -- ownership, at every instant -------------------------------------------------------------------


@dataclass
class Registry:
    """Which daemon consumes each shard now; every change is checked as it happens."""

    owner: dict[str, str] = field(default_factory=dict)
    orphaned: set[str] = field(default_factory=set)  # consumed by a daemon that died
    violations: list[str] = field(default_factory=list)
    steals: int = 0
    takeovers: int = 0
    last: dict[str, str] = field(default_factory=dict)

    def started(self, shard: str, daemon: str) -> None:
        holder = self.owner.get(shard)
        if holder is not None and holder != daemon:
            self.violations.append(f"{shard}: started by {daemon} while {holder} consumes it")
        self.owner[shard] = daemon
        if shard in self.orphaned:
            self.orphaned.discard(shard)
            self.steals += 1
        if self.last.get(shard, daemon) != daemon:
            self.takeovers += 1
        self.last[shard] = daemon

    def stopped(self, shard: str, daemon: str) -> None:
        if self.owner.get(shard) == daemon:
            del self.owner[shard]

    def died(self, daemon: str) -> None:
        for shard in [s for s, d in self.owner.items() if d == daemon]:
            del self.owner[shard]
            self.orphaned.add(shard)


class OwnershipMap(dict[str, _Running]):
    """A poller's map of running consumers that tells the registry of every change."""

    def __init__(self, daemon: str, registry: Registry) -> None:
        super().__init__()
        self._daemon = daemon
        self._registry = registry

    def __setitem__(self, shard: str, run: _Running) -> None:
        self._registry.started(shard, self._daemon)
        super().__setitem__(shard, run)

    def __delitem__(self, shard: str) -> None:
        self._registry.stopped(shard, self._daemon)
        super().__delitem__(shard)

    def pop(self, shard: str, *default: Any) -> Any:
        if shard in self:
            self._registry.stopped(shard, self._daemon)
        return super().pop(shard, *default)

    def clear(self) -> None:
        for shard in self:
            self._registry.stopped(shard, self._daemon)
        super().clear()


# -- the daemons ----------------------------------------------------------------------------------


class IdleConsumer:
    """Stands in for a ShardConsumer: holds its lease until asked to stop or told it is lost."""

    def __init__(self, shard_id: str, lease: Lease) -> None:
        self.shard_id = shard_id
        self.lease = lease
        self.saved: str | None = None
        self.state = ShardState.PROCESSING
        self._stop = asyncio.Event()

    async def run(self) -> None:
        await self._stop.wait()

    def request_stop(self) -> None:
        self.state = ShardState.STOPPING
        self._stop.set()

    def lease_lost(self) -> None:
        self.state = ShardState.LEASE_LOST
        self._stop.set()


class SimPoller(StreamPoller):
    """esm's StreamPoller; only the consumer it starts for a leased shard is an IdleConsumer."""

    def __init__(self, ctx: Any, *, owner: str, discovery_s: float, registry: Registry) -> None:
        super().__init__(ctx, owner=owner, discovery_s=discovery_s)
        self._running = OwnershipMap(owner, registry)

    def _start(self, shard: Shard, lease: Lease, *, has_known_parent: bool) -> None:
        consumer: Any = IdleConsumer(shard.shard_id, lease)
        task = asyncio.create_task(self._consume(consumer), name=f"shard-{shard.shard_id}")
        self._running[shard.shard_id] = _Running(consumer, task)


class FixedShards:
    def __init__(self, count: int) -> None:
        width = len(str(count))
        self._shards = [Shard(f"shardId-{i:0{width}d}") for i in range(count)]

    async def list_shards(self) -> list[Shard]:
        return list(self._shards)


@dataclass
class Daemon:
    name: str
    store: CountingStore
    poller: SimPoller
    task: asyncio.Task[None] | None = None


# -- the simulation -------------------------------------------------------------------------------


class Simulation:
    def __init__(self, daemons: int, shards: int, args: argparse.Namespace, store: str) -> None:
        self.clock = VirtualClock()
        self.n_shards = shards
        self.args = args
        self.registry = Registry()
        self.connector = FixedShards(shards)
        self.counts: collections.Counter[str] = collections.Counter()
        self.rng = random.Random(args.seed)
        self.daemons: dict[str, Daemon] = {}
        self.dead: set[str] = set()
        self._made = 0
        self._store_kind = store
        self._real_store: Store | None = None
        if store == "fakeredis":
            # one in-process server, one client per daemon as separate processes would have
            self._server_url = f"memory://p9-{id(self)}"
            self._twin = None
        else:
            self._twin = LeaseTwin(self.clock)

    def _store_for(self) -> Any:
        if self._twin is not None:
            return self._twin
        return Store.from_url(self._server_url, clock=self.clock, prefix="p9")

    def add_daemon(self, delay_s: float) -> Daemon:
        self._made += 1
        name = f"daemon-{self._made:03d}"
        store = CountingStore(self._store_for(), self.counts)
        ctx = SimpleNamespace(
            uuid=MAPPING,
            store=store,
            clock=self.clock,
            connector=self.connector,
            lease_ttl_s=self.args.lease_s,
            status={},
        )
        poller = SimPoller(ctx, owner=name, discovery_s=self.args.lease_s, registry=self.registry)
        d = Daemon(name, store, poller)

        async def run() -> None:
            await self.clock.sleep(delay_s)
            await poller.run()

        d.task = asyncio.create_task(run(), name=name)
        self.daemons[name] = d
        return d

    async def kill(self, d: Daemon) -> None:
        d.store.dead = True
        self.registry.died(d.name)
        self.dead.add(d.name)
        assert d.task is not None
        d.task.cancel()
        await asyncio.gather(d.task, return_exceptions=True)

    def live(self) -> list[Daemon]:
        return [d for n, d in self.daemons.items() if n not in self.dead]

    def check(self) -> None:
        """Over all live daemons: no shard in two of them (and the registry agrees)."""
        seen: dict[str, str] = {}
        for d in self.live():
            for sid in d.poller._running:
                if sid in seen:
                    self.registry.violations.append(
                        f"t={self.clock.now():.1f}: {sid} consumed by {seen[sid]} and {d.name}"
                    )
                seen[sid] = d.name

    def balance(self) -> tuple[bool, int, int]:
        live = self.live()
        counts = [len(d.poller._running) for d in live]
        share = math.ceil(self.n_shards / len(live))
        owned = len(self.registry.owner)
        ok = owned == self.n_shards and max(counts) <= share
        return ok, min(counts), max(counts)

    async def step(self) -> None:
        await self.clock.advance(self.args.step_s)
        await settle(max_rounds=10_000_000)
        self.check()

    async def phase(self, name: str, started_at: float) -> dict[str, Any]:
        """Step until balanced (or the limit), then a steady window; figures of the phase."""
        lease = self.args.lease_s
        self.counts.clear()
        steals0, takeovers0 = self.registry.steals, self.registry.takeovers
        wall0 = time.perf_counter()
        limit = started_at + self.args.max_leases * lease
        balanced_at = None
        spread: tuple[int, int] = (0, 0)
        while self.clock.now() < limit:
            await self.step()
            ok, lo, hi = self.balance()
            if ok:
                balanced_at, spread = self.clock.now(), (lo, hi)
                break
        n_live = len(self.live())
        rebalance_s = (balanced_at or self.clock.now()) - started_at
        ops_rebalance = sum(self.counts.values())
        by_op = dict(self.counts)
        steals = self.registry.steals - steals0
        takeovers = self.registry.takeovers - takeovers0
        # steady: the same daemons, nothing happening
        self.counts.clear()
        steady0 = self.clock.now()
        while self.clock.now() < steady0 + self.args.steady_leases * lease:
            await self.step()
        steady_s = self.clock.now() - steady0
        still, lo, hi = self.balance()
        return {
            "phase": name,
            "live_daemons": n_live,
            "balanced": balanced_at is not None,
            "seconds_to_balance": round(rebalance_s, 2) if balanced_at else None,
            "lease_periods_to_balance": round(rebalance_s / lease, 2) if balanced_at else None,
            "shards_per_daemon_when_balanced": {"min": spread[0], "max": spread[1]},
            "fair_share": math.ceil(self.n_shards / n_live),
            "steals": steals,
            "takeovers": takeovers,
            "steals_per_s_per_daemon": round(steals / max(rebalance_s, 1e-9) / n_live, 3),
            "store_ops_rebalancing": ops_rebalance,
            "store_ops_per_s_per_daemon_rebalancing": round(
                ops_rebalance / max(rebalance_s, 1e-9) / n_live, 2
            ),
            "store_ops_by_call_rebalancing": by_op,
            "store_ops_per_s_per_daemon_steady": round(
                sum(self.counts.values()) / steady_s / n_live, 3
            ),
            "still_balanced_after_steady": still,
            "wall_seconds": round(time.perf_counter() - wall0, 2),
        }

    async def run(self, daemons: int) -> list[dict[str, Any]]:
        jitter = self.args.start_jitter_s
        t0 = self.clock.now()
        for _ in range(daemons):
            self.add_daemon(self.rng.uniform(0, jitter))
        phases = [await self.phase("start", t0)]
        victims = self.rng.sample(self.live(), max(1, daemons // 10))
        t1 = self.clock.now()
        for d in victims:
            await self.kill(d)
        phases.append(await self.phase("10% died", t1))
        t2 = self.clock.now()
        for _ in range(max(1, daemons // 10)):
            self.add_daemon(0.0)
        phases.append(await self.phase("10% joined", t2))
        return phases

    async def aclose(self) -> None:
        for d in self.live():
            d.store.dead = True
            assert d.task is not None
            d.task.cancel()
        await asyncio.gather(
            *(d.task for d in self.daemons.values() if d.task), return_exceptions=True
        )
        if self._twin is None:
            closed: set[int] = set()
            for d in self.daemons.values():
                inner = d.store._inner
                if id(inner) not in closed:
                    closed.add(id(inner))
                    await inner.aclose()


async def simulate(
    daemons: int, shards: int, args: argparse.Namespace, store: str
) -> dict[str, Any]:
    sim = Simulation(daemons, shards, args, store)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        phases = await sim.run(daemons)
    finally:
        await sim.aclose()
    violations = sim.registry.violations
    worst = max((p["lease_periods_to_balance"] or float("inf")) for p in phases)
    return {
        "benchmark": "P9-leases",
        "parameters": {
            "daemons": daemons,
            "shards": shards,
            "store": store,
            "lease_s": args.lease_s,
            "step_s": args.step_s,
            "start_jitter_s": args.start_jitter_s,
            "steady_leases": args.steady_leases,
            "seed": args.seed,
        },
        "phases": phases,
        "never_owned_twice": not violations,
        "violations": violations[:10],
        "worst_lease_periods_to_balance": None if worst == float("inf") else worst,
        "target_lease_periods": TARGET_LEASE_PERIODS,
        "meets_target": not violations and worst <= TARGET_LEASE_PERIODS,
        "wall_seconds": round(time.perf_counter() - wall0, 2),
        "cpu_seconds": round(time.process_time() - cpu0, 2),
        "machine": machine(),
    }


def _size(text: str) -> tuple[int, int]:
    try:
        d, s = text.lower().split("x")
        daemons, shards = int(d), int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size {text!r}: must be DAEMONSxSHARDS, e.g. 10x1000"
        ) from None
    if daemons < 2 or shards < 1:
        raise argparse.ArgumentTypeError(f"size {text!r}: at least 2 daemons and 1 shard")
    return daemons, shards


async def main_async(args: argparse.Namespace) -> int:
    failed = False
    runs: list[tuple[tuple[int, int], str]] = []
    if args.check_twin:
        runs.append((args.sizes[0], "fakeredis"))
    runs += [(size, args.store) for size in args.sizes]
    for (daemons, shards), store in runs:
        out = await simulate(daemons, shards, args, store)
        failed = failed or not out["never_owned_twice"]
        print(json.dumps(out), flush=True)
    return 1 if failed else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--sizes", nargs="+", type=_size, default=[(10, 1000), (30, 3000), (100, 10_000)]
    )
    p.add_argument("--store", choices=("twin", "fakeredis"), default="twin")
    p.add_argument(
        "--check-twin",
        action="store_true",
        default=True,
        help="first run the smallest size on fakeredis too (default)",
    )
    p.add_argument("--no-check-twin", dest="check_twin", action="store_false")
    p.add_argument("--lease-s", type=float, default=10.0, help="LeaseSeconds (esm's default)")
    p.add_argument("--step-s", type=float, default=0.5, help="virtual seconds per checked step")
    p.add_argument("--start-jitter-s", type=float, default=2.0)
    p.add_argument("--steady-leases", type=float, default=2.0)
    p.add_argument("--max-leases", type=float, default=30.0, help="give up balancing after")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--smoke", action="store_true", help="4 daemons x 40 shards, both stores")
    args = p.parse_args()
    if args.smoke:
        args.sizes, args.check_twin = [(4, 40)], True
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
