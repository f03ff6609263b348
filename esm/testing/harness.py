"""The testing harness: the daemon's engine, in process, on a virtual clock.

::

    async with Harness("esm.yaml", functions={"orders": handler}) as h:
        h.put_sqs_messages("orders", ["a", "poison", "b"])
        await h.run_until_idle()          # hours of visibility timeouts and retries, virtually
        assert h.queue("orders").deleted_bodies() == ["a", "b"]
        assert h.queue("orders-dlq").bodies() == ["poison"]

What runs is :class:`~esm.engine.Engine`, built from the same config models as ``esm run``, on its
in-process twins: :class:`~esm.connectors.memory.MemoryBroker` queues and streams, ``memory://``
Redis, in-memory destinations (:mod:`esm.testing.destinations`) and a :class:`HarnessClock`.

Time. The clock moves only in :meth:`Harness.run_until_idle`, :meth:`~Harness.run_until` and
:meth:`~Harness.advance`: whenever nothing is left to do "now", it jumps to the next deadline
(a visibility timeout, a retry delay, a batching or tumbling window, a poll interval). Handler
code runs in real time: while a handler runs (a sync one in its thread, an async one awaiting real
I/O, an ``http://`` target) the clock waits for it, up to the function's ``Timeout`` in real
seconds, after which the call times out as on Lambda. An async handler that awaits
``h.clock.sleep(s)`` takes ``s`` virtual seconds.

Idle. Nothing runs, no call is in flight, every queue a running mapping reads is empty (nothing
visible, nothing in flight), every shard a running mapping reads is checkpointed at its last
record (``SHARD_END`` once closed) with no open tumbling window, and the asynchronous queue is
empty.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from esm.arns import Arn
from esm.aws import AwsClients
from esm.clock import settle
from esm.connectors.memory import MemoryBroker, MemoryMessage, MemoryStream
from esm.destinations.memory import DeadLetter, MemoryDestinations
from esm.engine import Engine
from esm.functions import Function, build_functions
from esm.mappings import MappingRuntime
from esm.metrics import Metrics
from esm.outcomes import FunctionError, Ok, Outcome
from esm.store import Store
from esm.targets.python import Handler
from esm.testing import factories, idle, loading
from esm.testing.destinations import DestinationBuilder
from esm.testing.handlers import HarnessClock
from esm.testing.loading import ConfigSource
from esm.testing.views import Invocation, QueueView, dead_letter

START = 1_704_067_200.0  # 2024-01-01T00:00:00Z: windows of any size start on it
MAX_VIRTUAL_S = 86_400.0
REAL_POLL_S = 0.0005  # how often a running handler is looked at, in real seconds
STALL_S = 5.0  # real seconds without any deadline or running call before giving up

Predicate = Callable[[], bool | Awaitable[bool]]


class NotIdleError(AssertionError):
    """The scenario did not settle: the message says what was still going on."""


@dataclass(slots=True)
class _Call:
    function: str
    real_start: float
    timeout_s: float


# -- the harness ---------------------------------------------------------------------------------


class Harness:
    """An engine on in-memory sources, destinations and Redis, and a virtual clock.

    ``config`` is an :class:`~esm.config.EsmConfig`, the dict of an esm.yaml, or its path
    (``python:`` targets import with its folder first on ``sys.path``, as ``esm run`` does); or
    ``template`` is an AWS SAM / CloudFormation template's path (with ``overlay`` and
    ``parameters`` as ``esm run --template`` takes them). Python functions run in this process
    with their own environment variables and modules (:mod:`esm.testing.inprocess`).
    ``functions`` sets handlers by function name: a callable (a closure or lambda will do) or a
    target string; a name the config does not have is added. Before :meth:`start` (or ``async
    with``) the queues and streams the config names exist and can be changed or filled.
    """

    def __init__(
        self,
        config: ConfigSource | None = None,
        *,
        template: str | os.PathLike[str] | None = None,
        overlay: str | os.PathLike[str] | None = None,
        parameters: Mapping[str, str] | None = None,
        functions: Mapping[str, Handler | str] | None = None,
        shards: int = 1,
        view_type: str = "NEW_AND_OLD_IMAGES",
        start: float = START,
    ) -> None:
        self._loaded = loading.load(
            config,
            functions or {},
            template=template,
            overlay=overlay,
            parameters=parameters,
            start=start,
        )
        self.config = self._loaded.config
        self.clock = HarnessClock(start)
        self.broker = MemoryBroker(self.clock)
        self.memory = MemoryDestinations()
        self._t0 = start
        self._view_type = view_type
        self._queue_delays: dict[str, float] = {}
        self._tables: dict[str, dict[str, dict[str, Any]]] = {}
        self._table_keys: dict[str, tuple[str, ...]] = {}
        self._horizons: dict[tuple[str, str], int] = {}
        self._invocations: list[Invocation] = []
        self._open: list[_Call] = []
        self._engine: Engine | None = None
        self._store: Store | None = None
        self._aws: AwsClients | None = None
        self._closed = False
        for arn, props in loading.queues(self.config).items():
            redrive = props.redrive_policy
            self.create_queue(
                arn,
                visibility_timeout_s=props.visibility_timeout_s or 30,
                dead_letter_arn=redrive.dead_letter_target_arn if redrive else None,
                max_receive_count=redrive.max_receive_count if redrive else None,
                delay_s=props.delay_s or 0,
            )
        for arn in loading.streams(self.config):
            self.create_stream(arn, shards=shards)

    # -- sources -------------------------------------------------------------------------------

    def create_queue(
        self,
        arn: str,
        *,
        visibility_timeout_s: int = 30,
        dead_letter_arn: str | None = None,
        max_receive_count: int | None = None,
        delay_s: float = 0.0,
    ) -> QueueView:
        """A queue (replacing an empty one of that ARN), with its redrive policy; its
        dead-letter queue is created too when missing."""
        existing = self.broker.queues.get(arn)
        if existing is not None and (existing.messages or existing.deleted):
            raise ValueError(f"{arn} already holds messages")
        q = self.broker.create_queue(
            arn,
            visibility_timeout_s=visibility_timeout_s,
            dead_letter_arn=dead_letter_arn,
            max_receive_count=max_receive_count,
        )
        self._queue_delays[arn] = delay_s
        return QueueView(q, self.broker)

    def create_stream(self, arn: str, *, shards: int = 1) -> MemoryStream:
        """A Kinesis or DynamoDB stream with ``shards`` open shards."""
        return self.broker.create_stream(arn, shards=shards)

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Harness:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Build and start the engine (Lambda's start-up checks included)."""
        if self._engine is not None:
            return
        config, clock = self.config, self.clock
        self._aws = AwsClients()  # never connects: every source and target is in memory
        self._store = idle.WatchedStore.from_url(
            "memory://", clock=clock, prefix=config.settings.store_prefix
        )
        functions = build_functions(config, clock=clock, aws=self._aws)
        for fn in functions.values():
            self._record(fn)
        destinations = DestinationBuilder(
            broker=self.broker,
            memory=self.memory,
            clock=clock,
            aws=self._aws,
            local_functions=tuple(config.functions),
        )
        self._engine = Engine(
            config,
            clock=clock,
            aws=self._aws,
            sources=self.broker,
            store=self._store,
            memory=self.memory,
            owner="esm-testing",
            functions=functions,
            destination_builder=destinations.destination,
            dead_letter_builder=destinations.dead_letter,
        )
        self._note_horizons()
        try:
            await self._engine.start()
        except BaseException:
            await self.aclose()
            raise
        await settle()  # pollers open their iterators (LATEST starts here)

    def _note_horizons(self) -> None:
        """Records already in a shard that a LATEST mapping will never read."""
        for m in self.config.event_source_mappings:
            if m.source == "sqs" or m.starting_position != "LATEST":
                continue
            uuid = m.mapping_uuid(self.config.mapping_function(m))
            for shard in self.broker.streams[m.event_source_arn].shards.values():
                self._horizons[(uuid, shard.shard_id)] = len(shard.records)

    async def aclose(self) -> None:
        """Stop the engine at once (in-flight work is abandoned) and forget the handlers."""
        if self._closed:
            return
        self._closed = True
        if self._engine is not None:
            await self._engine.aclose(deadline_s=0)
        if self._store is not None:
            await self._store.aclose()
        if self._aws is not None:
            await self._aws.aclose()
        self._loaded.release()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the harness is not started: use `async with Harness(...)`")
        return self._engine

    @property
    def store(self) -> Store:
        return self.engine.store

    @property
    def metrics(self) -> Metrics:
        """Lambda's counters as the engine counted them: ``h.metrics.get("DeletedEventCount")``."""
        return self.engine.metrics

    def now(self) -> float:
        """Virtual epoch seconds."""
        return self.clock.now()

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the harness's start time."""
        return self.clock.now() - self._t0

    # -- recording calls -----------------------------------------------------------------------

    def _record(self, fn: Function) -> None:
        original = fn.invoke
        calls, clock = self._open, self.clock

        async def invoke(
            payload: bytes,
            *,
            request_id: str | None = None,
            invocation_type: str = "RequestResponse",
            client_context: str | None = None,
        ) -> Outcome:
            call = _Call(fn.name, time.monotonic(), float(fn.config.timeout_s))
            calls.append(call)
            started = clock.now()
            try:
                outcome = await original(
                    payload,
                    request_id=request_id,
                    invocation_type=invocation_type,
                    client_context=client_context,
                )
            finally:
                calls.remove(call)
            if isinstance(outcome, Ok | FunctionError):
                self._invocations.append(
                    Invocation(fn.name, invocation_type, payload, outcome, started, clock.now())
                )
            return outcome

        fn.invoke = invoke  # type: ignore[method-assign]

    def invocations(self, function: str | None = None) -> list[Invocation]:
        """Calls that reached a function (throttled ones did not), oldest first."""
        return [i for i in self._invocations if function is None or i.function == function]

    def _running(self) -> bool:
        """A call is running in real time (a thread, real I/O) and has time left."""
        if not self._open:
            return False
        now = time.monotonic()
        within = sum(1 for c in self._open if now - c.real_start < c.timeout_s)
        return within > self.clock.handler_sleeps

    # -- driving time --------------------------------------------------------------------------

    async def run_until_idle(self, *, max_virtual_s: float = MAX_VIRTUAL_S) -> None:
        """Run, jumping the clock, until nothing is left to do (see the module docstring);
        :class:`NotIdleError` names what still goes on after ``max_virtual_s``."""
        await self._run(self._idle, max_virtual_s, "idle")

    async def run_until(
        self, predicate: Predicate, *, max_virtual_s: float = MAX_VIRTUAL_S
    ) -> None:
        """Run, jumping the clock, until ``predicate()`` (sync or async) is true."""
        await self._run(predicate, max_virtual_s, getattr(predicate, "__name__", "predicate"))

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, with everything due in them."""
        target = self.clock.now() + seconds
        while True:
            await self._wait_for_running()
            deadline = self.clock.next_deadline()
            if deadline is None or deadline > target:
                await self.clock.advance(max(0.0, target - self.clock.now()))
                await self._wait_for_running()
                return
            await self.clock.advance_to_next()

    async def _wait_for_running(self) -> None:
        await settle()
        while self._running():
            await asyncio.sleep(REAL_POLL_S)
            await settle()

    async def _run(self, predicate: Predicate, max_virtual_s: float, what: str) -> None:
        start = self.clock.now()
        stalled: float | None = None
        while True:
            await self._wait_for_running()
            if await _holds(predicate):
                return
            deadline = self.clock.next_deadline()
            if deadline is None:  # only real work (a call past its Timeout) can change things
                stalled = stalled or time.monotonic()
                if time.monotonic() - stalled > STALL_S:
                    raise NotIdleError(await self._not_reached(what, "nothing is scheduled"))
                await asyncio.sleep(REAL_POLL_S)
                continue
            stalled = None
            if deadline - start > max_virtual_s:
                raise NotIdleError(
                    await self._not_reached(what, f"after {max_virtual_s:g} virtual seconds")
                )
            await self.clock.advance_to_next()

    async def _not_reached(self, what: str, why: str) -> str:
        busy = await self.busy()
        detail = "; ".join(busy) if busy else "the harness is idle"
        return f"not {what} {why}: {detail}"

    async def _idle(self) -> bool:
        return not self._open and not await idle.busy(
            self.engine, self.broker, self._horizons, first=True
        )

    async def busy(self) -> list[str]:
        """What keeps the harness from being idle, in words (empty when idle)."""
        calls = [f"a call to {c.function} is in flight" for c in self._open]
        return calls + await idle.busy(self.engine, self.broker, self._horizons)

    # -- feeding -------------------------------------------------------------------------------

    def put_sqs_messages(
        self,
        queue: str,
        bodies: Iterable[Any],
        *,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        message_attributes: Mapping[str, Any] | None = None,
        delay_s: float | None = None,
    ) -> list[str]:
        """Send messages (non-string bodies as JSON); returns their message ids. ``queue`` is an
        ARN, a queue name, or a function whose mapping reads one queue."""
        arn = self._queue_arn(queue)
        if self.broker.queues[arn].fifo and group_id is None:
            raise ValueError(f"{arn} is a FIFO queue: give group_id (MessageGroupId)")
        delay = self._queue_delays.get(arn, 0.0) if delay_s is None else delay_s
        shaped = factories.shape_message_attributes(message_attributes)
        return [
            self.broker.send(
                arn,
                factories._text(body),
                group_id=group_id,
                dedup_id=deduplication_id,
                message_attributes=shaped,
                delay_s=delay,
            )
            for body in bodies
        ]

    def put_sqs_message(self, queue: str, body: Any, **options: Any) -> str:
        """One message; see :meth:`put_sqs_messages`."""
        return self.put_sqs_messages(queue, [body], **options)[0]

    def put_kinesis_records(
        self,
        stream: str,
        items: Iterable[Any],
        *,
        partition_key: str | Callable[[Any], str] = "1",
    ) -> list[str]:
        """PutRecord each item (bytes as they are, strings UTF-8, the rest as JSON); returns the
        sequence numbers. ``partition_key`` may be a function of the item."""
        s = self.stream(stream)
        out = []
        for item in items:
            key = partition_key(item) if callable(partition_key) else partition_key
            out.append(s.put_record(factories._bytes(item), key)[1])
        return out

    def put_kinesis_record(
        self, stream: str, data: Any, *, partition_key: str = "1", shard_id: str | None = None
    ) -> str:
        """One record (to ``shard_id``, else where its partition key hashes)."""
        return self.stream(stream).put_record(
            factories._bytes(data), partition_key, shard_id=shard_id
        )[1]

    def write_dynamodb_items(
        self, stream: str, items: Iterable[Mapping[str, Any]], *, key: str | Sequence[str] = ()
    ) -> list[str]:
        """PutItem each item (plain Python values) into the stream's table: an INSERT, or a
        MODIFY with the old image when the key was written before. ``key`` names the key
        attributes (default: as before for this stream, else the item's first attribute).
        Returns the sequence numbers."""
        arn = self._stream_arn(stream)
        table = self._tables.setdefault(arn, {})
        out = []
        for item in items:
            names = self._key_names(arn, key, item)
            keys = {n: item[n] for n in names}
            ident = json.dumps(factories.dynamodb_json(keys), sort_keys=True)
            old = table.get(ident)
            table[ident] = dict(item)
            out.append(self.write_dynamodb_record(arn, keys=keys, new_image=item, old_image=old))
        return out

    def remove_dynamodb_items(self, stream: str, keys: Iterable[Mapping[str, Any]]) -> list[str]:
        """DeleteItem each key: a REMOVE with the item's last image as the old image."""
        arn = self._stream_arn(stream)
        table = self._tables.setdefault(arn, {})
        out = []
        for k in keys:
            ident = json.dumps(factories.dynamodb_json(k), sort_keys=True)
            old = table.pop(ident, dict(k))
            out.append(self.write_dynamodb_record(arn, keys=k, old_image=old))
        return out

    def write_dynamodb_record(
        self,
        stream: str,
        event_name: str | None = None,
        *,
        keys: Mapping[str, Any],
        new_image: Mapping[str, Any] | None = None,
        old_image: Mapping[str, Any] | None = None,
    ) -> str:
        """One stream record as given (plain values); images kept by the stream's view type."""
        s = self.stream(stream)
        raw = factories.dynamodb_stream_record(
            event_name or factories.dynamodb_event_name(new_image, old_image),
            factories.dynamodb_json(keys),
            new_image=None if new_image is None else factories.dynamodb_json(new_image),
            old_image=None if old_image is None else factories.dynamodb_json(old_image),
            view_type=self._view_type,
        )
        ddb = raw["dynamodb"]
        return s.write(
            raw["eventName"],
            ddb["Keys"],
            new_image=ddb.get("NewImage"),
            old_image=ddb.get("OldImage"),
            view_type=self._view_type,
            size_bytes=ddb["SizeBytes"],
        )[1]

    def _key_names(
        self, arn: str, key: str | Sequence[str], item: Mapping[str, Any]
    ) -> tuple[str, ...]:
        names = (key,) if isinstance(key, str) else tuple(key)
        if not names:
            names = self._table_keys.get(arn) or (next(iter(item)),)
        self._table_keys[arn] = names
        return names

    async def invoke_async(self, function: str, payload: Any = None) -> str:
        """``Invoke`` with ``InvocationType=Event``: queued durably; returns the request id."""
        return await self.engine.invoke_event(function, _payload(payload))

    async def invoke(self, function: str, payload: Any = None) -> Invocation:
        """``Invoke`` with ``RequestResponse``: the call's result (throttles included)."""
        started = self.clock.now()
        data = _payload(payload)
        outcome = await self.engine.invoke_sync(function, data)
        return Invocation(function, "RequestResponse", data, outcome, started, self.clock.now())

    # -- reading -------------------------------------------------------------------------------

    def queue(self, ref: str) -> QueueView:
        """A queue by ARN, by name, or the one a function's mapping reads."""
        return QueueView(self.broker.queues[self._queue_arn(ref)], self.broker)

    def stream(self, ref: str) -> MemoryStream:
        """A stream (to split or merge shards …) by ARN, name, or a function's mapping."""
        return self.broker.streams[self._stream_arn(ref)]

    def mapping(self, ref: str) -> MappingRuntime:
        """A running mapping by UUID, function name, or source (ARN or name), tried in that
        order."""
        runtimes = list(self.engine.mappings.values())
        for matches in (
            lambda rt: ref == rt.uuid,
            lambda rt: ref == rt.function_name,
            lambda rt: ref == rt.config.event_source_arn,
            lambda rt: ref == _name(rt.config.event_source_arn),
        ):
            found = [rt for rt in runtimes if matches(rt)]
            if len(found) == 1:
                return found[0]
            if found:
                break
        known = ", ".join(f"{rt.function_name} <- {rt.config.event_source_arn}" for rt in runtimes)
        raise LookupError(f"no single mapping for {ref!r} (mappings: {known or 'none'})")

    async def checkpoints(self, ref: str) -> dict[str, str]:
        """Shard id → the last processed sequence number (or ``SHARD_END``) of a stream
        mapping (by UUID, function name or source)."""
        return await self.engine.store.checkpoints(self.mapping(ref).uuid)

    async def window_state(self, ref: str, shard_id: str | None = None) -> dict[str, Any] | None:
        """The open tumbling window saved with a shard's checkpoint (None when none is open)."""
        stream = self.broker.streams[self.mapping(ref).config.event_source_arn]
        sid = shard_id or next(iter(stream.shards))
        return await self.engine.store.window_state(self.mapping(ref).uuid, sid)

    def records(self, target: str) -> list[dict[str, Any]]:
        """Records delivered to a destination: an SQS ARN's queue (on it or deleted from it),
        any other target as kept by the harness."""
        if target in self.broker.queues:
            q = self.broker.queues[target]
            return [json.loads(m.body) for m in sorted(q.deleted + q.messages, key=_seq)]
        return self.memory.records(_memory_name(target))

    def on_failure_records(self, ref: str | None = None) -> list[dict[str, Any]]:
        """Stream on-failure records (docs/semantics.md §6.7) at a destination, or at the on-failure
        destination of a mapping (by UUID, function, source), or of the only stream mapping
        that has one."""
        if ref is None:
            targets = sorted(
                {m.on_failure_arn for m in self.config.event_source_mappings if m.on_failure_arn}
            )
            if len(targets) != 1:
                raise LookupError(f"give the target: the on-failure destinations are {targets}")
            return self.records(targets[0])
        if _is_target(ref):
            return self.records(ref)
        target = self.mapping(ref).config.on_failure_arn
        if target is None:
            raise LookupError(f"the mapping of {ref!r} has no on-failure destination")
        return self.records(target)

    def async_records(self, ref: str, *, on_success: bool = False) -> list[dict[str, Any]]:
        """Invocation records (docs/semantics.md §8.7) at a destination, or at a function's
        ``OnFailure`` (``on_success=True``: ``OnSuccess``) destination."""
        if ref not in self.config.functions:
            return self.records(ref)
        dests = self.config.functions[ref].event_invoke_config.destination_config
        dest = dests.on_success if on_success else dests.on_failure
        if dest is None or not dest.destination:
            which = "OnSuccess" if on_success else "OnFailure"
            raise LookupError(f"function {ref!r} has no {which} destination")
        return self.records(dest.destination)

    def dead_letters(self, ref: str) -> list[DeadLetter]:
        """Events sent to a dead-letter queue or topic, or to a function's ``DeadLetterConfig``,
        with their ``RequestID`` / ``ErrorCode`` / ``ErrorMessage``."""
        target = ref
        if ref in self.config.functions:
            dlc = self.config.functions[ref].dead_letter_config
            if dlc is None:
                raise LookupError(f"function {ref!r} has no DeadLetterConfig")
            target = dlc.target_arn
        if target in self.broker.queues:
            q = self.broker.queues[target]
            return [dead_letter(m) for m in sorted(q.deleted + q.messages, key=_seq)]
        return self.memory.dead_letters(_memory_name(target))

    # -- lookups -------------------------------------------------------------------------------

    def _queue_arn(self, ref: str) -> str:
        return self._resolve(ref, self.broker.queues, "queue")

    def _stream_arn(self, ref: str) -> str:
        return self._resolve(ref, self.broker.streams, "stream")

    def _resolve(self, ref: str, known: Mapping[str, Any], what: str) -> str:
        if ref in known:
            return ref
        named = [arn for arn in known if _name(arn) == ref]
        if len(named) == 1:
            return named[0]
        sources = [
            m.event_source_arn
            for m in self.config.event_source_mappings
            if m.event_source_arn in known and self.config.mapping_function(m) == ref
        ]
        if len(named) + len(sources) == 1:
            return (named + sources)[0]
        raise LookupError(f"no single {what} {ref!r} (known: {', '.join(known) or 'none'})")


# -- helpers ---------------------------------------------------------------------------------------


def _payload(payload: Any) -> bytes:
    if payload is None:
        return b"{}"
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return orjson.dumps(payload)


def _name(arn: str) -> str | None:
    try:
        return Arn.parse(arn).name
    except (ValueError, IndexError):
        return None


def _is_target(ref: str) -> bool:
    return ref.startswith(("arn:", "memory://", "http://", "https://"))


def _memory_name(target: str) -> str:
    return target.removeprefix("memory://")


def _seq(m: MemoryMessage) -> int:
    return m.seq


async def _holds(predicate: Predicate) -> bool:
    result = predicate()
    if inspect.isawaitable(result):
        result = await result
    return bool(result)
