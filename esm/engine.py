"""The engine: one owner for functions, pollers and their lifecycle.

::

    async with Engine(config) as engine:      # builds functions, checks and starts mappings
        outcome = await engine.invoke("orders", b'{"x": 1}')
    # leaving: pollers stop receiving, in-flight batches finish (up to the shutdown deadline)

``aclose()`` is safe to call twice. A poller that crashes is logged, marked with a PROBLEM
``LastProcessingResult`` and restarted after a pause: a bug or an outage in one mapping never
takes the engine down. Signal handling lives in the CLI, not here.

**A store that lost its data.** Redis restarted without persistence, a failover to a replica that
had not caught up, a FLUSHALL: the registry's epoch is gone (or the version counter went back,
see :mod:`esm.registry`). :meth:`Engine.sync` notices before it applies anything — the watch loop
looks every ``RegistryPollSeconds``, and every control-plane change syncs — and rebuilds what
this daemon owns: the config file's mappings go back into the registry under their stable UUIDs
(so they keep running instead of being stopped for want of a definition), the async queue's
consumer groups are created again (from the streams' start, so events accepted since run),
stream shards are leased again as their consumers notice their leases gone, and start from the
mapping's ``StartingPosition`` where their checkpoints were lost. Definitions made through the
API lived only in Redis: they are gone, and one ERROR line says how many.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid as uuidlib
from collections.abc import Callable, Mapping
from typing import Any

from esm.arns import parse_function_name
from esm.async_queue import AsyncQueue, QueuedEvent
from esm.async_worker import AsyncWorker
from esm.aws import AwsClients
from esm.clock import Clock, RealClock
from esm.config import (
    DeadLetterConfig,
    EsmConfig,
    EventInvokeConfig,
    MappingSpec,
)
from esm.connectors.aws import AwsSources
from esm.connectors.base import Sources
from esm.control import UNRESERVED, ControlPlane
from esm.destinations.base import (
    DeadLetterTarget,
    Destination,
)
from esm.destinations.factory import build_dead_letter, build_destination
from esm.destinations.memory import MemoryDestinations
from esm.dispatcher import Dispatcher
from esm.errors import EsmError, LambdaApiError, ResourceNotFoundException, ServiceUnavailable
from esm.functions import Function, Outcome, Throttled, build_function, build_functions
from esm.invocation_log import LoggedInvocation, describe
from esm.mappings import (
    MappingRuntime,
    MappingSet,
    MappingStartError,
    invoke_config_from_params,
    mapping_params,
)
from esm.metrics import Metrics, count_outcome
from esm.registry import InvokeConfigRecord, MappingRecord, Registry
from esm.retry import History
from esm.store import OutageLog, Store, StoreUnavailable

log = logging.getLogger(__name__)

STORE_STALE_S = 15.0
"""/health calls the store unreachable when the registry watch has not heard from it for this
long (a Redis that hangs without refusing connections)."""


class Engine:
    def __init__(
        self,
        config: EsmConfig,
        *,
        clock: Clock | None = None,
        aws: AwsClients | None = None,
        sources: Sources | None = None,
        metrics: Metrics | None = None,
        store: Store | None = None,
        memory: MemoryDestinations | None = None,
        owner: str | None = None,
        functions: Mapping[str, Function] | None = None,
        destination_builder: Callable[[str], Destination | None] | None = None,
        dead_letter_builder: Callable[[str], DeadLetterTarget | None] | None = None,
    ) -> None:
        """The optional arguments replace what the engine would build itself (the testing
        harness uses them): ``functions`` are used instead of building the config's (the engine
        closes them); ``destination_builder`` / ``dead_letter_builder`` are asked first for a
        target and return None to let the engine build it as usual."""
        self.config = config
        self.clock: Clock = clock or RealClock()
        self._own_aws = aws is None
        self.aws = aws or AwsClients()
        self.sources: Sources = sources or AwsSources(self.aws, self.clock)
        self.metrics = metrics or Metrics()
        self._own_store = store is None
        self.store = store or Store.from_url(
            config.settings.store, clock=self.clock, prefix=config.settings.store_prefix
        )
        self.memory = memory or MemoryDestinations()
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{uuidlib.uuid4().hex[:6]}"
        self._destinations: dict[str, Destination] = {}
        self._dead_letters: dict[str, DeadLetterTarget] = {}
        self._prebuilt_functions = dict(functions) if functions is not None else None
        self._destination_builder = destination_builder
        self._dead_letter_builder = dead_letter_builder
        self.functions: dict[str, Function] = {}
        settings = config.settings
        self.async_queue = AsyncQueue(
            self.store.redis,
            clock=self.clock,
            keys=self.store.keys,
            functions=config.functions,
            consumer=self.owner,
            visibility_s=settings.async_visibility_s
            or max([60.0] + [f.timeout_s + 30.0 for f in config.functions.values()]),
        )
        self.async_worker = AsyncWorker(
            queue=self.async_queue,
            host=self,
            dispatcher=Dispatcher(
                destination=self.destination,
                dead_letter=self.dead_letter,
                function_arn=lambda name: self.config.function_arn(name, "$LATEST"),
                clock=self.clock,
                metrics=self.metrics,
            ),
            clock=self.clock,
            metrics=self.metrics,
            concurrency=settings.async_concurrency,
            retry_delays_s=tuple(settings.async_retry_delays_s),
            blocking_reads=not self.store.in_process,
        )
        self._async_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.registry = Registry(self.store.redis, self.store.keys)
        self._registry_version = 0
        self._epoch: str | None = None  # the store's, as of this daemon's last look
        self._sync_lock = asyncio.Lock()
        self._store_outage = OutageLog(log, "store")
        self._store_seen = time.monotonic()  # when the store last answered the registry watch
        self.invoke_config_records: dict[str, InvokeConfigRecord] = {}
        self.mapping_set: MappingSet | None = None  # built at start (needs the functions)
        self._sync_now = asyncio.Event()
        self.control = ControlPlane(self)
        self._started = False
        self._closed = False
        self._retiring: set[asyncio.Task[None]] = set()  # replaced functions, closing

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- start ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the functions, check and register the config's mappings, start everything.
        Whatever fails on the way, what was opened is closed again before the error is raised
        (``StoreUnavailable("cannot reach the store …")`` when Redis does not answer)."""
        if self._started:
            return
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.aclose()
            raise

    async def _start(self) -> None:
        await self.store.check()
        if self._prebuilt_functions is not None:
            self.functions = self._prebuilt_functions
        else:
            self.functions = build_functions(self.config, clock=self.clock, aws=self.aws)
        for name, fn in self.functions.items():
            self.metrics.function(name, in_flight=_in_flight(fn))
        self.mapping_set = MappingSet(self, self.registry)
        self._epoch = await self.registry.mark_epoch(uuidlib.uuid4().hex)
        await self._register_config_mappings()
        await self.sync()
        self._async_task = asyncio.create_task(self.async_worker.run(), name="async-worker")
        self._watch_task = asyncio.create_task(self._watch_registry(), name="registry-watch")
        log.info(
            "engine started: %d function(s), %d mapping(s) (%d enabled)",
            len(self.functions),
            len(self.mappings),
            sum(1 for rt in self.mappings.values() if rt.state == "Enabled"),
        )

    @property
    def mappings(self) -> dict[str, MappingRuntime]:
        return self.mapping_set.runtimes if self.mapping_set is not None else {}

    async def check_mapping(self, mapping: MappingSpec) -> None:
        assert self.mapping_set is not None
        await self.mapping_set.check(mapping)

    async def _register_config_mappings(self) -> None:
        """The config file's mappings: Lambda's checks, then into the registry under their
        stable UUIDs (a restart replaces them, never duplicates them)."""
        assert self.mapping_set is not None
        found = self._config_mappings()
        results = await asyncio.gather(
            *(self.mapping_set.check(m, uuid) for uuid, m in found), return_exceptions=True
        )
        for i, ((uuid, _), res) in enumerate(zip(found, results, strict=True)):
            if isinstance(res, BaseException):
                if isinstance(res, LambdaApiError):
                    raise MappingStartError(i, uuid, res) from res
                raise res
        existing = await self._put_config_mappings()
        # A mapping that came from a config file, for a function this daemon serves, that this
        # config no longer has: it was taken out of the file, so it goes (as DeleteEventSource-
        # Mapping would). Mappings made through the API are never touched here.
        in_file = {uuid for uuid, _ in found}
        for uuid, rec in existing.items():
            fn = parse_function_name(rec.params.get("FunctionName", "")).name
            if rec.origin == "config" and uuid not in in_file and fn in self.functions:
                rec.state = "Deleting"
                rec.last_modified = self.clock.now()
                await self.registry.put_mapping(rec)
                log.info("mapping %s is no longer in the config file: deleting it", uuid)

    def _config_mappings(self) -> list[tuple[str, MappingSpec]]:
        """The config file's mappings with their stable UUIDs."""
        return [
            (m.mapping_uuid(self.config.mapping_function(m)), m.resolve())
            for m in self.config.event_source_mappings
        ]

    async def _put_config_mappings(self) -> dict[str, MappingRecord]:
        """The config file's mappings into the registry, unless there already and unchanged;
        returns what the registry held before."""
        existing = await self.registry.mappings()
        for uuid, m in self._config_mappings():
            params = mapping_params(m)
            old = existing.get(uuid)
            if old is not None and old.params == params and old.origin == "config":
                continue
            await self.registry.put_mapping(
                MappingRecord(
                    uuid=uuid,
                    params=params,
                    state="Creating",
                    last_modified=self.clock.now(),
                    origin="config",
                )
            )
        return existing

    async def sync(self, *, if_changed: bool = False) -> None:
        """Apply the registry: invoke configs, reserved concurrency, mappings (``if_changed``:
        only when its version moved since the last sync). A store that lost its data is rebuilt
        first (see the module docstring)."""
        async with self._sync_lock:
            version, epoch = await self.registry.status()
            if epoch != self._epoch or version < self._registry_version:
                await self._rebuild_store(epoch)
                version, _ = await self.registry.status()
            elif if_changed and version == self._registry_version:
                return
            self._registry_version = version
            await self._apply_registry()

    async def _apply_registry(self) -> None:
        assert self.mapping_set is not None
        records = await self.registry.invoke_configs()
        self.invoke_config_records = {n: r for n, r in records.items() if n in self.functions}
        reserved = await self.registry.concurrency()
        for name, fn in self.functions.items():
            value = reserved.get(name, fn.config.reserved_concurrency)
            fn.reserved = None if value == UNRESERVED else value
        await self.mapping_set.reconcile(self.config.settings.shutdown_timeout_s)

    async def _rebuild_store(self, epoch: str | None) -> None:
        """The store lost its data (module docstring): say so once, loudly, and put back what
        this daemon owns."""
        assert self.mapping_set is not None
        known = self.mapping_set.records
        api_mappings = sorted(u for u, r in known.items() if r.origin == "api")
        api_configs = sorted(self.invoke_config_records)
        self._epoch = await self.registry.mark_epoch(uuidlib.uuid4().hex)
        config_mappings = self._config_mappings()
        log.error(
            "the store %s lost its data (%s: Redis restarted empty, failed over to a replica "
            "that had not caught up, or was flushed). Putting back %d mapping(s) of the config "
            "file and the async queue's consumer groups; streams whose checkpoints were lost "
            "start again from their StartingPosition. Gone with it: %d mapping(s) created "
            "through the API%s, %d invoke config(s) set through the API%s, and any async "
            "event still queued",
            self.store.url,
            "no epoch" if epoch is None else "the registry went back",
            len(config_mappings),
            len(api_mappings),
            f" ({', '.join(api_mappings)})" if api_mappings else "",
            len(api_configs),
            f" ({', '.join(api_configs)})" if api_configs else "",
        )
        await self._put_config_mappings()
        self.async_queue.forget_groups()
        await self.async_queue.setup()

    async def apply_config(self, config: EsmConfig) -> list[str]:
        """A new config file (``esm run --watch``), applied as an API change is: its mappings
        checked and written to the registry, then the same reconcile. A function whose
        definition changed gets a new target, its mappings restart on it, and the old target
        closes once its in-flight calls end. What cannot change without a restart (Settings,
        which functions exist) is kept as it was; the returned list names it. A mapping
        refused by Lambda's checks leaves everything as it was (MappingStartError)."""
        old = self.config
        kept: list[str] = []
        if config.settings != old.settings:
            kept.append("Settings")
            config = config.model_copy(update={"settings": old.settings})
        added = sorted(set(config.functions) - set(old.functions))
        removed = sorted(set(old.functions) - set(config.functions))
        if added or removed:
            kept.append(
                "the list of Functions"
                + (f" (added: {', '.join(added)})" if added else "")
                + (f" (removed: {', '.join(removed)})" if removed else "")
            )
            functions = {n: config.functions.get(n, f) for n, f in old.functions.items()}
            config = config.model_copy(update={"functions": functions})
        changed = [n for n, f in config.functions.items() if f != old.functions[n]]
        self.config = config
        try:
            await self._register_config_mappings()
        except BaseException:
            self.config = old
            raise
        assert self.mapping_set is not None
        deadline = config.settings.shutdown_timeout_s
        for name in changed:
            await self.mapping_set.forget_function(name, deadline)
            retired = self.functions[name]
            fn = build_function(
                name,
                config.functions[name],
                region=config.settings.region,
                account=config.settings.account_id,
                clock=self.clock,
                aws=self.aws,
                settings=config.settings,
            )
            self.functions[name] = fn
            self.metrics.function(name, in_flight=_in_flight(fn))
            task = asyncio.create_task(self._retire(retired), name=f"retire-{name}")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            log.info("function %s: definition changed; new calls use it", name)
        await self.sync()
        return kept

    async def _retire(self, fn: Function) -> None:
        """Close a replaced function's target once its in-flight calls have ended."""
        try:
            while fn.in_flight:  # noqa: ASYNC110 (a Function has no "idle" event to wait on)
                await asyncio.sleep(0.05)
        finally:
            await fn.aclose()

    def request_sync(self) -> None:
        """This daemon's API changed a definition: apply it now (not at the next poll)."""
        self._sync_now.set()

    async def _watch_registry(self) -> None:
        """Another daemon (or this one's API) changed a definition, or the store lost its data:
        apply it. Each look also tells /health whether the store answers."""
        while True:
            with contextlib.suppress(TimeoutError):
                await self.clock.wait_for(
                    self._sync_now.wait(), self.config.settings.registry_poll_s
                )
            self._sync_now.clear()
            try:
                await self.sync(if_changed=True)
            except EsmError as exc:
                self._store_outage.failed(exc)
            else:
                self._store_outage.ok()
                self._store_seen = time.monotonic()

    def destination(self, target: str) -> Destination:
        """The destination for ``target``, built once and closed with the engine. A Lambda ARN of
        a function esm serves is invoked through esm's own async queue."""
        dest = self._destinations.get(target)
        if dest is None:
            if self._destination_builder is not None:
                dest = self._destination_builder(target)
            if dest is None:
                dest = build_destination(
                    target,
                    aws=self.aws,
                    clock=self.clock,
                    memory=self.memory,
                    local_functions=tuple(self.config.functions),
                    local_invoke=self._local_invoke,
                )
            self._destinations[target] = dest
        return dest

    def dead_letter(self, target: str) -> DeadLetterTarget:
        dlq = self._dead_letters.get(target)
        if dlq is None:
            if self._dead_letter_builder is not None:
                dlq = self._dead_letter_builder(target)
            if dlq is None:
                dlq = build_dead_letter(target, aws=self.aws, clock=self.clock, memory=self.memory)
            self._dead_letters[target] = dlq
        return dlq

    async def _local_invoke(self, name: str, payload: bytes) -> None:
        await self.invoke_event(name, payload)

    # -- invoke --------------------------------------------------------------------------------

    def function(self, name: str) -> Function:
        try:
            return self.functions[name]
        except KeyError:
            raise ResourceNotFoundException(
                f"Function not found: {self.config.function_arn(name)}"
            ) from None

    async def invoke(
        self, name: str, payload: bytes, *, invocation_type: str = "RequestResponse"
    ) -> Outcome | str | None:
        """Invoke as Lambda's Invoke does: ``RequestResponse`` returns the :data:`Outcome`,
        ``Event`` queues durably and returns the request id, ``DryRun`` checks and returns None."""
        if invocation_type == "Event":
            return await self.invoke_event(name, payload)
        if invocation_type == "DryRun":
            self.function(name)
            return None
        return await self.invoke_sync(name, payload)

    async def invoke_sync(
        self,
        name: str,
        payload: bytes,
        *,
        client_context: str | None = None,
        request_id: str | None = None,
    ) -> Outcome:
        """A synchronous (RequestResponse) invocation, counted and logged like the pollers'."""
        fn = self.function(name)
        request_id = request_id or str(uuidlib.uuid4())
        started = self.clock.now()
        if fn.reserved == 0:
            outcome: Outcome = Throttled("ReservedFunctionConcurrentInvocationLimitExceeded")
        else:
            outcome = await fn.invoke(payload, request_id=request_id, client_context=client_context)
        took_ms = (self.clock.now() - started) * 1000
        count_outcome(self.metrics, fn.name, outcome, took_ms)
        kind, error = describe(outcome)
        self.metrics.invocations.record(
            LoggedInvocation(
                self.clock.now(), fn.name, "sync", request_id, kind, took_ms, error=error
            )
        )
        return outcome

    async def invoke_event(self, name: str, payload: bytes) -> str:
        """Queue an asynchronous invocation durably (in Redis before this returns); 503
        ``ServiceException`` while the store does not answer (the caller's SDK retries it)."""
        self.function(name)
        request_id = str(uuidlib.uuid4())
        event = QueuedEvent(request_id, name, payload, History(received_at=self.clock.now()))
        try:
            await self.async_queue.setup([name])
            await self.async_queue.enqueue(event)
        except StoreUnavailable as exc:
            log.warning("Invoke(Event) of %s refused: %s", name, exc)
            raise ServiceUnavailable() from None
        self.metrics.incr("AsyncEventsReceived", function_name=name)
        self.async_worker.wake()
        return request_id

    # -- what the async worker asks (AsyncHost) --------------------------------------------------

    def function_for_event(self, name: str) -> Function | None:
        return self.functions.get(name)

    def invoke_config(self, name: str) -> EventInvokeConfig:
        """The function's EventInvokeConfig: set through the API, else from the config file."""
        found = self.invoke_config_records.get(name)
        if found is not None:
            return EventInvokeConfig() if found.deleted else invoke_config_from_params(found.params)
        return self.config.functions[name].event_invoke_config

    def dead_letter_config(self, name: str) -> DeadLetterConfig | None:
        return self.config.functions[name].dead_letter_config

    def reserved_concurrency(self, name: str) -> int | None:
        return self.functions[name].reserved

    # -- what the HTTP API asks (ApiBackend) -----------------------------------------------------

    def resolve_function(self, name: str, qualifier: str | None) -> str:
        if name not in self.functions:
            raise ResourceNotFoundException(
                f"Function not found: {self.config.function_arn(name, qualifier)}"
            )
        if qualifier not in (None, "$LATEST"):
            raise ResourceNotFoundException(
                f"Function not found: {self.config.function_arn(name, qualifier)}"
            )
        return name

    def health(self) -> dict[str, Any]:
        """Readiness, without I/O: ``status`` ``ok`` while the store answers (as of the registry
        watch's last look), the async worker runs and every enabled mapping runs without
        failing; otherwise ``degraded`` with the ``reasons``. ``mappings.states`` has every
        mapping's ``Enabled`` / ``Disabled`` / ``Failing: <why>``."""
        states = {uuid: rt.health for uuid, rt in sorted(self.mappings.items())}
        enabled = [rt for rt in self.mappings.values() if rt.config.enabled]
        running = [rt for rt in enabled if rt.task is not None and not rt.task.done()]
        worker_ok = self._async_task is not None and not self._async_task.done()
        reasons: list[str] = []
        if not self._started or self._closed:
            reasons.append("engine: not running")
        store = self._store_problem()
        if store is not None:
            reasons.append(f"store: {store}")
        if not worker_ok:
            reasons.append("async worker: stopped")
        reasons += [f"mapping {u}: {st}" for u, st in states.items() if st.startswith("Failing")]
        return {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "store": store or "ok",
            "async_worker": "running" if worker_ok else "stopped",
            "mappings": {"enabled": len(enabled), "running": len(running), "states": states},
        }

    def _store_problem(self) -> str | None:
        """Why the store is not usable now, or None."""
        if self._store_outage.problem is not None:
            return self._store_outage.problem
        silent_s = time.monotonic() - self._store_seen
        if self.clock.real and silent_s > STORE_STALE_S:
            return f"no answer for {silent_s:.0f} s"
        return None

    # -- stop ----------------------------------------------------------------------------------

    async def aclose(self, deadline_s: float | None = None) -> None:
        """Stop every mapping (in-flight batches get ``deadline_s``), then close the rest."""
        if self._closed:
            return
        self._closed = True
        deadline = self.config.settings.shutdown_timeout_s if deadline_s is None else deadline_s
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        if self.mapping_set is not None:
            await self.mapping_set.stop_all(deadline)
        await self.async_worker.stop(deadline)
        if self._async_task is not None:
            self._async_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._async_task
        for fn in self.functions.values():
            await fn.aclose()
        for task in self._retiring:
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        closers: list[Destination | DeadLetterTarget] = [
            *self._destinations.values(),
            *self._dead_letters.values(),
        ]
        for closing in closers:
            with contextlib.suppress(Exception):
                await closing.aclose()
        if self._own_store:
            await self.store.aclose()
        if self._own_aws:
            await self.aws.aclose()
        log.info("engine stopped")


def _in_flight(fn: Function) -> Callable[[], float]:
    return lambda: fn.in_flight
