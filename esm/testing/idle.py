"""When the harness is idle: what still goes on in an engine on in-memory sources.

Idle means: every queue a running mapping reads is empty (nothing visible, nothing in flight);
every shard a running mapping reads is checkpointed at its last record (``SHARD_END`` once
closed; records before a ``LATEST`` mapping started do not count) with no open tumbling window;
no asynchronous event is queued, waiting for a retry or being invoked. (Calls in flight are the
harness's own to count.) Cheap checks come first, and with ``first=True`` the first busy thing
ends the look: it runs at every step of the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from esm.connectors.memory import MemoryBroker
from esm.engine import Engine
from esm.mappings import MappingRuntime
from esm.store import SHARD_END, Lease, Store

Horizons = Mapping[tuple[str, str], int]  # (mapping uuid, shard id) -> records it will not read


class WatchedStore(Store):
    """The store, keeping what it wrote last per shard in memory as well: the checkpoint and
    whether a tumbling window is open. Looking at them costs no Redis round trip."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written: dict[tuple[str, str], tuple[str, bool]] = {}

    async def save_checkpoint(
        self,
        lease: Lease,
        sequence_number: str,
        *,
        window: dict[str, Any] | None = None,
        clear_window: bool = False,
    ) -> bool:
        ok = await super().save_checkpoint(
            lease, sequence_number, window=window, clear_window=clear_window
        )
        if ok:
            key = (lease.mapping_uuid, lease.shard_id)
            _, was_open = self.written.get(key, ("", False))
            is_open = window is not None or (was_open and not clear_window)
            self.written[key] = (sequence_number, is_open)
        return ok

    async def forget_mapping(self, mapping_uuid: str) -> None:
        await super().forget_mapping(mapping_uuid)
        self.written = {k: v for k, v in self.written.items() if k[0] != mapping_uuid}


async def busy(
    engine: Engine, broker: MemoryBroker, horizons: Horizons, *, first: bool = False
) -> list[str]:
    """What keeps the engine from being idle, in words; empty when idle."""
    out: list[str] = []
    running = [rt for rt in engine.mappings.values() if rt.config.enabled and rt.task is not None]
    for rt in running:
        if rt.config.source == "sqs":
            out += _queue(broker, rt.config.event_source_arn)
            if out and first:
                return out
    worker = engine.async_worker
    if worker.in_flight:
        out.append(f"{worker.in_flight} asynchronous event(s) being invoked")
        if first:
            return out
    for rt in running:
        if rt.config.source != "sqs":
            out += _stream(engine.store, broker, horizons, rt)
            if out and first:
                return out
    if engine.metrics.get("AsyncEventsReceived"):
        depth = await engine.async_queue.depth()
        if any(depth.values()):
            out.append(
                "asynchronous queue: " + ", ".join(f"{n} {k}" for k, n in depth.items() if n)
            )
    return out


def _queue(broker: MemoryBroker, arn: str) -> list[str]:
    q = broker.queues.get(arn)
    if q is None or not q.messages:
        return []
    counts = ", ".join(str(m.receive_count) for m in q.messages[:5])
    return [f"{arn} holds {len(q.messages)} message(s) (receive counts {counts})"]


def _stream(
    store: Store, broker: MemoryBroker, horizons: Horizons, rt: MappingRuntime
) -> list[str]:
    stream = broker.streams.get(rt.config.event_source_arn)
    if stream is None:
        return []
    assert isinstance(store, WatchedStore), "the harness's engine runs on a WatchedStore"
    out = []
    for shard in stream.shards.values():
        sid = shard.shard_id
        at, window_open = store.written.get((rt.uuid, sid), (None, False))
        if shard.closed:
            if at != SHARD_END:
                out.append(f"{sid} of {stream.arn} is closed but not finished")
            continue
        expected = shard.records[horizons.get((rt.uuid, sid), 0) :]
        last = _sequence(expected[-1]) if expected else None
        if last is not None and (at is None or int(at) < int(last)):
            out.append(f"{sid} of {stream.arn}: checkpoint {at}, last record {last}")
        elif window_open:
            out.append(f"{sid} of {stream.arn} has an open tumbling window")
    return out


def _sequence(raw: Mapping[str, Any]) -> str:
    return str(raw.get("SequenceNumber") or raw["dynamodb"]["SequenceNumber"])
