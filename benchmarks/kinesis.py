"""P4: Kinesis throughput through esm beside a plain aiobotocore get_records loop, same run.

For each shard count, a fresh stream is filled with ``--records`` records (spread over partition
keys) before anything reads it, so both sides read a full stream (40,000 by default: with a few
thousand, the run is mostly start-up, kinesalite's first GetRecords answers taking ~0.3 s):

- baseline: per shard one task, GetShardIterator(TRIM_HORIZON) then GetRecords(Limit=10000)
  until it has read every record of its shard, all shards at once; nothing but counting;
- esm: an :class:`~esm.engine.Engine` with a no-op ``python:`` handler, the real Redis as its
  store and a fresh mapping UUID, from ``engine.start()`` until every shard's checkpoint in Redis
  reaches the last sequence number put to that shard. The store uses a private key prefix per
  run (the engine's async queue and the worker group stay apart from anything else on this
  Redis); afterwards ``Store.forget_mapping`` runs and whatever it left under the prefix is
  deleted and named in ``esm.keys_left_by_forget_mapping``.

Each (shard count, batch size) measures ``--pairs`` interleaved esm/baseline pairs
(:mod:`benchmarks.pairs`): ``ratio`` is the median of the pairs' ratios with its spread, the load
average before each pair, and each side's CPU seconds per 1,000 records (this process: Redis and
the emulator excluded). Streams hold 20,000 records a shard (at least 40,000) so that start-up
stays under a tenth of the window (``esm_startup_share``: engine start to the first invoke, over
the run). Records are put one PutRecords call
at a time: moto hands out duplicate sequence numbers to concurrent puts and loses records.

The store's Redis client counts what it sends (a connection subclass: round trips and command
names, the connection handshake excluded), and ``Store.save_checkpoint`` is wrapped to attribute
round trips to checkpoint writes: ``redis_commands_per_checkpoint`` is round trips sent while a
checkpoint write was in progress, per checkpoint write.

Prints one JSON object per (shard count, batch size).

    python -m benchmarks.kinesis [--emulator moto|kinesalite] [--records N] [--shards 1 8]
                                 [--batch-sizes 100 1000] [--handler async|sync] [--pairs 5]
                                 [--timeout 600] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import cProfile
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection

from benchmarks.machine import machine
from benchmarks.pairs import Sample, add_pairs_argument, cpu_seconds, interleave
from benchmarks.sqs import start_moto
from esm.aws import AwsClients
from esm.clock import RealClock
from esm.config import parse_config
from esm.engine import Engine
from esm.store import Store

REGION = "us-east-1"
REDIS_URL = "redis://127.0.0.1:6379/0"
HANDLERS = {
    "async": "python:benchmarks.handlers.noop_async",
    "sync": "python:benchmarks.handlers.noop",
}

# -- counting what the store sends to Redis ------------------------------------------------------

_IN_CHECKPOINT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "in_checkpoint", default=False
)


class RedisTally:
    def __init__(self) -> None:
        self.round_trips = 0
        self.commands: Counter[str] = Counter()
        self.checkpoint_round_trips = 0
        self.checkpoint_writes = 0
        self.handshake_round_trips = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "round_trips": self.round_trips,
            "by_command": dict(self.commands.most_common()),
            "checkpoint_writes": self.checkpoint_writes,
            "checkpoint_round_trips": self.checkpoint_round_trips,
            "handshake_round_trips": self.handshake_round_trips,
        }


TALLY = RedisTally()


class CountingConnection(Connection):
    """Counts every write to the socket (one per command, one per pipeline): a round trip."""

    _handshake = False
    _script_names: dict[str, str] = {}

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        self._handshake = True
        try:
            await super().on_connect_check_health(check_health=check_health)
        finally:
            self._handshake = False

    async def send_command(self, *args: Any, **kwargs: Any) -> None:
        if not self._handshake:
            name = str(args[0]).upper()
            if name == "EVALSHA":
                name = f"EVALSHA {self._script_names.get(str(args[1]), str(args[1])[:8])}"
            TALLY.commands[name] += 1
        await super().send_command(*args, **kwargs)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._handshake:
            TALLY.handshake_round_trips += 1
        else:
            TALLY.round_trips += 1
            if _IN_CHECKPOINT.get():
                TALLY.checkpoint_round_trips += 1
        await super().send_packed_command(command, check_health)


def counting_store(clock: RealClock, prefix: str) -> Store:
    pool = ConnectionPool.from_url(
        REDIS_URL,
        connection_class=CountingConnection,
        decode_responses=True,
        socket_connect_timeout=5.0,
    )
    store = Store(Redis(connection_pool=pool), clock=clock, prefix=prefix)
    CountingConnection._script_names = {
        getattr(store, attr).sha: attr.lstrip("_")
        for attr in ("_acquire", "_renew", "_release", "_save_checkpoint", "_heartbeat")
    }
    original = store.save_checkpoint

    async def save_checkpoint(*args: Any, **kwargs: Any) -> bool:
        token = _IN_CHECKPOINT.set(True)
        try:
            TALLY.checkpoint_writes += 1
            return await original(*args, **kwargs)
        finally:
            _IN_CHECKPOINT.reset(token)

    store.save_checkpoint = save_checkpoint  # type: ignore[method-assign]
    return store


# -- emulators -----------------------------------------------------------------------------------


@contextlib.contextmanager
def emulator(name: str) -> Iterator[str]:
    if name == "moto":
        proc, url = start_moto()
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(10)
    else:
        from tests.kinesalite import serve  # starts it on loopback, from tests/node_modules

        with serve() as url:
            yield url


# -- the stream ----------------------------------------------------------------------------------


class Stream:
    def __init__(self, name: str, arn: str, shards: dict[str, tuple[int, int]]) -> None:
        self.name = name
        self.arn = arn
        self.shards = shards  # shard id -> (records, last sequence number)

    @property
    def total(self) -> int:
        return sum(n for n, _ in self.shards.values())


async def fill_stream(client: Any, shard_count: int, records: int, record_bytes: int) -> Stream:
    name = "bench-" + uuid.uuid4().hex[:8]
    await client.create_stream(StreamName=name, ShardCount=shard_count)
    for _ in range(200):
        desc = (await client.describe_stream_summary(StreamName=name))["StreamDescriptionSummary"]
        if desc["StreamStatus"] == "ACTIVE":
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError(f"stream {name} did not become ACTIVE")
    pad = "x" * max(0, record_bytes - 24)
    counts: Counter[str] = Counter()
    last: dict[str, int] = {}

    async def put(start: int, end: int) -> None:
        entries = [
            {"Data": f'{{"i":{i},"p":"{pad}"}}'.encode(), "PartitionKey": f"pk-{i % 997}"}
            for i in range(start, end)
        ]
        resp = await client.put_records(StreamName=name, Records=entries)
        if resp.get("FailedRecordCount"):
            raise RuntimeError(f"put_records: {resp['FailedRecordCount']} failed")
        for r in resp["Records"]:
            sid, seq = r["ShardId"], int(r["SequenceNumber"])
            counts[sid] += 1
            last[sid] = max(last.get(sid, 0), seq)

    # One put at a time: moto's threaded server hands out duplicate sequence numbers to
    # concurrent puts (records overwrite each other), and sequence numbers must grow anyway.
    for s in range(0, records, 500):
        await put(s, min(s + 500, records))
    shards = {sid: (counts[sid], last[sid]) for sid in counts}
    return Stream(name, desc["StreamARN"], shards)


# -- baseline ------------------------------------------------------------------------------------


async def baseline(client: Any, stream: Stream) -> Sample:
    async def one(shard_id: str, expected: int) -> None:
        it = (
            await client.get_shard_iterator(
                StreamName=stream.name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )
        )["ShardIterator"]
        seen = empty = 0
        while seen < expected:
            resp = await client.get_records(ShardIterator=it, Limit=10000)
            seen += len(resp["Records"])
            it = resp["NextShardIterator"]
            empty = 0 if resp["Records"] else empty + 1
            if empty > 20:
                raise RuntimeError(f"baseline: {shard_id} gave {seen} of {expected} records")

    cpu0 = cpu_seconds()
    started = time.perf_counter()
    await asyncio.gather(*(one(sid, n) for sid, (n, _) in stream.shards.items()))
    elapsed = time.perf_counter() - started
    return Sample(units=stream.total, seconds=elapsed, cpu_s=cpu_seconds() - cpu0)


# -- esm -----------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def keys_cleaned(store: Store, mapping_uuid: str, leftover: list[str]) -> AsyncIterator[None]:
    """Delete the mapping's keys (``forget_mapping``), then whatever else the run left under its
    private prefix (the worker group's heartbeats, the engine's async queue), named in
    ``leftover``."""
    try:
        yield
    finally:
        await store.forget_mapping(mapping_uuid)
        leftover += sorted([k async for k in store.redis.scan_iter(f"{store.keys.prefix}:*")])
        if leftover:
            await store.redis.delete(*leftover)


async def through_esm(
    aws: AwsClients,
    stream: Stream,
    *,
    batch_size: int,
    handler: str,
    discovery_s: float,
    profiler: cProfile.Profile | None = None,
) -> dict[str, Any]:
    fn = "bench-" + uuid.uuid4().hex[:8]
    mapping_uuid = str(uuid.uuid4())
    config = parse_config(
        {
            "Settings": {
                "Region": REGION,
                "Store": REDIS_URL,
                "ShardDiscoverySeconds": discovery_s,
            },
            "Functions": {fn: {"Target": HANDLERS[handler]}},
            "EventSourceMappings": [
                {
                    "UUID": mapping_uuid,
                    "FunctionName": fn,
                    "EventSourceArn": stream.arn,
                    "BatchSize": batch_size,
                    "StartingPosition": "TRIM_HORIZON",
                }
            ],
        }
    )
    clock = RealClock()
    # A private key prefix: the engine's async queue (shared by every engine on a prefix) and
    # the worker group of this run stay apart from anything else on this Redis.
    store = counting_store(clock, prefix=f"esmbench-{mapping_uuid[:8]}")
    leftover: list[str] = []
    watcher = Redis.from_url(REDIS_URL, decode_responses=True)  # not counted
    key = store.keys.checkpoints(mapping_uuid)
    last = {sid: seq for sid, (_, seq) in stream.shards.items()}
    engine = Engine(config, clock=clock, aws=aws, store=store)
    try:
        async with keys_cleaned(store, mapping_uuid, leftover):
            try:
                before = TALLY.snapshot()
                if profiler is not None:
                    profiler.enable()
                cpu0 = cpu_seconds()
                started = time.perf_counter()
                await engine.start()
                invoked_at = first_at = None
                while True:
                    await asyncio.sleep(0.005)
                    if first_at is None and engine.metrics.get("InvokedEventCount"):
                        first_at = time.perf_counter()
                    if invoked_at is None:
                        if engine.metrics.get("InvokedEventCount") < stream.total:
                            continue
                        invoked_at = time.perf_counter()
                    done = await watcher.hgetall(key)
                    if all(int(done.get(sid, "0")) >= seq for sid, seq in last.items()):
                        break
                elapsed = time.perf_counter() - started
                cpu_s = cpu_seconds() - cpu0
                after = TALLY.snapshot()
            finally:
                if profiler is not None:
                    profiler.disable()
                await engine.aclose(deadline_s=2)  # before the keys go: it writes on its way out
    finally:
        await store.aclose()
        await watcher.aclose()
    writes = after["checkpoint_writes"] - before["checkpoint_writes"]
    trips = after["checkpoint_round_trips"] - before["checkpoint_round_trips"]
    by_command = Counter(after["by_command"])
    by_command.subtract(before["by_command"])
    return {
        "records_per_s": stream.total / elapsed,
        "seconds": elapsed,
        "cpu_s": cpu_s,
        "seconds_to_first_invoke": (first_at or invoked_at) - started,
        "startup_share": ((first_at or invoked_at) - started) / elapsed,
        "seconds_to_all_invoked": invoked_at - started,
        "invocations": int(engine.metrics.get("Invocations")),
        "checkpoint_writes": writes,
        "redis_commands_per_checkpoint": round(trips / writes, 3) if writes else None,
        "redis_round_trips": after["round_trips"] - before["round_trips"],
        "redis_by_command": {k: v for k, v in by_command.most_common() if v},
        "keys_left_by_forget_mapping": [k.split(":", 1)[1] for k in leftover],
    }


# -- one run -------------------------------------------------------------------------------------


async def one_run(
    aws: AwsClients,
    args: argparse.Namespace,
    shard_count: int,
    batch_sizes: list[int],
    out: list[dict[str, Any]],
) -> None:
    client = await aws.client("kinesis", REGION)
    t0 = time.perf_counter()
    # enough records that start-up (engine start, discovery, leases, kinesalite's first slow
    # reads) stays under a tenth of the window, with more shards too
    records = args.records or max(40_000, 20_000 * shard_count)
    stream = await fill_stream(client, shard_count, records, args.record_bytes)
    put_s = time.perf_counter() - t0
    try:
        for batch_size in batch_sizes:
            runs: list[dict[str, Any]] = []

            async def esm_side(batch_size: int = batch_size, runs: list[Any] = runs) -> Sample:
                got = await through_esm(
                    aws,
                    stream,
                    batch_size=batch_size,
                    handler=args.handler,
                    discovery_s=args.discovery_s,
                    profiler=args.profiler,
                )
                runs.append(got)
                return Sample(
                    units=stream.total,
                    seconds=got["seconds"],
                    cpu_s=got["cpu_s"],
                    extra={"startup_share": round(got["startup_share"], 3)},
                )

            async def base_side() -> Sample:
                return await baseline(client, stream)

            summary = await interleave(esm_side, base_side, pairs=args.pairs, unit="records")
            runs.sort(key=lambda r: float(r["records_per_s"]))
            esm = dict(runs[len(runs) // 2]) if runs else {}  # the median run's details
            esm.pop("records_per_s", None)
            out.append(
                {
                    "benchmark": "P4-kinesis",
                    "emulator": args.emulator,
                    "parameters": {
                        "records": stream.total,
                        "shards": shard_count,
                        "records_per_shard": sorted(n for n, _ in stream.shards.values()),
                        "record_bytes": args.record_bytes,
                        "batch_size": batch_size,
                        "handler": HANDLERS[args.handler],
                        "shard_discovery_s": args.discovery_s,
                        "put_records_per_s": round(stream.total / put_s, 1),
                        "pairs": args.pairs,
                    },
                    **summary,
                    "target_ratio": 0.9,
                    "esm_startup_share": esm.get("startup_share"),
                    "redis_commands_per_checkpoint": esm.pop("redis_commands_per_checkpoint", None),
                    "esm": {k: round(v, 3) if isinstance(v, float) else v for k, v in esm.items()},
                    "machine": machine(),
                }
            )
    finally:
        with contextlib.suppress(Exception):
            await client.delete_stream(StreamName=stream.name, EnforceConsumerDeletion=True)


async def main_async(args: argparse.Namespace) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    batch_sizes = args.batch_sizes
    with emulator(args.emulator) as endpoint:
        for shard_count in args.shards:
            aws = AwsClients(endpoint_url=endpoint)
            results: list[dict[str, Any]] = []
            try:
                await asyncio.wait_for(
                    one_run(aws, args, shard_count, batch_sizes, results), args.timeout
                )
            except Exception as exc:  # a timeout or a failure: report it, go on
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if isinstance(exc, TimeoutError):
                    error = f"timed out after {args.timeout} s"
                results.append(
                    {
                        "benchmark": "P4-kinesis",
                        "emulator": args.emulator,
                        "parameters": {
                            "records": args.records or max(40_000, 20_000 * shard_count),
                            "shards": shard_count,
                            "batch_sizes": batch_sizes[len(results) :],
                        },
                        "error": error,
                        "machine": machine(),
                    }
                )
            finally:
                await aws.aclose()
            for r in results:
                print(json.dumps(r), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--emulator", choices=("moto", "kinesalite"), default="moto")
    p.add_argument(
        "--records",
        type=int,
        help="records per stream (default: 20,000 a shard, at least 40,000; at 5,000 both sides "
        "mostly wait for kinesalite's first reads)",
    )
    p.add_argument("--shards", type=int, nargs="+", default=[1, 8])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--record-bytes", type=int, default=100)
    add_pairs_argument(p)
    p.add_argument("--handler", choices=tuple(HANDLERS), default="async")
    p.add_argument("--discovery-s", type=float, default=1.0, help="ShardDiscoverySeconds")
    p.add_argument(
        "--timeout", type=float, default=600.0, help="seconds per shard count (fill + all runs)"
    )
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="cProfile the esm side only (engine start to the last checkpoint) into FILE",
    )
    args = p.parse_args()
    args.profiler = cProfile.Profile() if args.profile else None
    try:
        asyncio.run(main_async(args))
    finally:
        if args.profiler is not None:
            args.profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
