"""The engine: one owner for functions, pollers and their lifecycle.

::

    async with Engine(config) as engine:      # builds functions, checks and starts mappings
        outcome = await engine.invoke("orders", b'{"x": 1}')
    # leaving: pollers stop receiving, in-flight batches finish (up to the shutdown deadline)

``aclose()`` is safe to call twice. A poller that crashes is logged, marked with a PROBLEM
``LastProcessingResult`` and restarted after a pause: a bug or an outage in one mapping never
takes the engine down. Signal handling lives in the CLI, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any, Literal

from connectors.aws import AwsSources
from connectors.base import Sources
from destinations.base import DeadLetterTarget, Destination, build_dead_letter, build_destination
from destinations.memory import MemoryDestinations
from esm.async_queue import AsyncQueue, QueuedEvent
from esm.async_worker import AsyncWorker
from esm.aws import AwsClients
from esm.clock import Clock, RealClock
from esm.config import DeadLetterConfig, EsmConfig, EventInvokeConfig, MappingConfig
from esm.dispatcher import Dispatcher
from esm.errors import LambdaApiError, ResourceNotFoundException
from esm.filtering import compile_filter_criteria
from esm.functions import Function, Outcome, Throttled, build_functions
from esm.metrics import Metrics, count_outcome
from esm.queue_poller import NO_RECORDS, QueuePoller
from esm.retry import History
from esm.shard_consumer import StreamContext
from esm.store import Store
from esm.stream_poller import StreamPoller, on_failure_handler
from esm.streams import StreamPolicy

log = logging.getLogger(__name__)

RESTART_DELAY_S = 5.0

State = Literal["Creating", "Enabling", "Enabled", "Disabling", "Disabled", "Updating", "Deleting"]


@dataclass(eq=False)
class MappingRuntime:
    """A mapping as the engine runs it."""

    config: MappingConfig
    uuid: str
    function_name: str
    state: State = "Creating"
    poller: QueuePoller | StreamPoller | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def last_processing_result(self) -> str:
        return self.poller.last_processing_result if self.poller else NO_RECORDS


class MappingStartError(LambdaApiError):
    """A mapping failed Lambda's start-up checks; wraps the AWS error with the mapping's index."""

    def __init__(self, index: int, uuid: str, error: LambdaApiError) -> None:
        self.error = error
        self.status = error.status
        super().__init__(f"EventSourceMappings[{index}] ({uuid}): {error.name}: {error.message}")


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
    ) -> None:
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
        self.functions: dict[str, Function] = {}
        self.mappings: dict[str, MappingRuntime] = {}
        # runtime overrides of the config (PutFunctionEventInvokeConfig, PutFunctionConcurrency)
        self.invoke_configs: dict[str, EventInvokeConfig] = {}
        self.reserved: dict[str, int | None] = {}
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
        )
        self._async_task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- start ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.functions = build_functions(self.config, clock=self.clock, aws=self.aws)
        runtimes = [self._runtime(m) for m in self.config.event_source_mappings]
        results = await asyncio.gather(
            *(self._check(rt) for rt in runtimes), return_exceptions=True
        )
        for i, (rt, res) in enumerate(zip(runtimes, results, strict=True)):
            if isinstance(res, LambdaApiError):
                await self.aclose()
                raise MappingStartError(i, rt.uuid, res) from res
            if isinstance(res, BaseException):
                await self.aclose()
                raise res
        for rt in runtimes:
            self.mappings[rt.uuid] = rt
            if rt.config.enabled:
                self._launch(rt)
            else:
                rt.state = "Disabled"
        self._async_task = asyncio.create_task(self.async_worker.run(), name="async-worker")
        log.info(
            "engine started: %d function(s), %d mapping(s) (%d enabled)",
            len(self.functions),
            len(self.mappings),
            sum(1 for rt in self.mappings.values() if rt.state == "Enabled"),
        )

    def _runtime(self, mapping: MappingConfig) -> MappingRuntime:
        name = self.config.mapping_function(mapping)
        uuid = mapping.mapping_uuid(name)
        rt = MappingRuntime(config=mapping, uuid=uuid, function_name=name)
        if mapping.source == "sqs":
            rt.poller = QueuePoller(
                mapping,
                uuid=uuid,
                function=self.functions[name],
                connector=self.sources.queue(mapping.event_source_arn),
                clock=self.clock,
                metrics=self.metrics,
            )
        else:
            rt.poller = self._stream_poller(mapping, uuid, self.functions[name])
        return rt

    def _stream_poller(self, mapping: MappingConfig, uuid: str, fn: Function) -> StreamPoller:
        settings = self.config.settings
        role = fn.config.role or f"arn:aws:iam::{settings.account_id}:role/esm-{fn.name}"
        destination = None
        if mapping.on_failure_arn:
            destination = self.destination(mapping.on_failure_arn)
        ctx = StreamContext(
            mapping=mapping,
            uuid=uuid,
            function=fn,
            connector=self.sources.stream(mapping.event_source_arn, invoke_identity_arn=role),
            store=self.store,
            clock=self.clock,
            metrics=self.metrics,
            policy=StreamPolicy(
                maximum_retry_attempts=mapping.maximum_retry_attempts
                if mapping.maximum_retry_attempts is not None
                else -1,
                maximum_record_age_s=mapping.maximum_record_age_s
                if mapping.maximum_record_age_s is not None
                else -1,
                bisect_on_error=bool(mapping.bisect_on_error),
                report_item_failures=mapping.report_item_failures,
            ),
            record_filter=compile_filter_criteria(mapping.filter_patterns, mapping.source),
            on_failure=on_failure_handler(
                mapping=mapping,
                uuid=uuid,
                function=fn,
                destination=destination,
                clock=self.clock,
                metrics=self.metrics,
            ),
            lease_ttl_s=settings.lease_s,
            poll_interval_s=1.0 if mapping.source == "kinesis" else 0.25,
            status={},
        )
        return StreamPoller(ctx, owner=self.owner, discovery_s=settings.shard_discovery_s)

    def destination(self, target: str) -> Destination:
        """The destination for ``target``, built once and closed with the engine. A Lambda ARN of
        a function esm serves is invoked through esm's own async queue."""
        dest = self._destinations.get(target)
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
            dlq = build_dead_letter(target, aws=self.aws, clock=self.clock, memory=self.memory)
            self._dead_letters[target] = dlq
        return dlq

    async def _local_invoke(self, name: str, payload: bytes) -> None:
        await self.invoke_event(name, payload)

    async def _check(self, rt: MappingRuntime) -> None:
        if rt.config.enabled and rt.poller is not None:
            await rt.poller.check()

    def _launch(self, rt: MappingRuntime) -> None:
        if rt.poller is None:
            log.warning(
                "mapping %s: %s sources are not supported yet; not polled",
                rt.uuid,
                rt.config.source,
            )
            rt.state = "Disabled"
            return
        rt.state = "Enabled"
        rt.task = asyncio.create_task(self._supervise(rt), name=f"mapping-{rt.uuid}")

    async def _supervise(self, rt: MappingRuntime) -> None:
        assert rt.poller is not None
        while True:
            try:
                await rt.poller.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("mapping %s crashed; restarting in %.0fs", rt.uuid, RESTART_DELAY_S)
                rt.poller.last_processing_result = "PROBLEM: internal error, restarting"
                await self.clock.sleep(RESTART_DELAY_S)

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
        self, name: str, payload: bytes, *, client_context: str | None = None
    ) -> Outcome:
        """A synchronous (RequestResponse) invocation, counted like the pollers' ones."""
        fn = self.function(name)
        if self.reserved.get(name, fn.config.reserved_concurrency) == 0:
            outcome: Outcome = Throttled("ReservedFunctionConcurrentInvocationLimitExceeded")
        else:
            outcome = await fn.invoke(payload, client_context=client_context)
        count_outcome(self.metrics, fn.name, outcome)
        return outcome

    async def invoke_event(self, name: str, payload: bytes) -> str:
        """Queue an asynchronous invocation durably (in Redis before this returns)."""
        self.function(name)
        request_id = str(uuidlib.uuid4())
        event = QueuedEvent(request_id, name, payload, History(received_at=self.clock.now()))
        await self.async_queue.setup([name])
        await self.async_queue.enqueue(event)
        self.metrics.incr("AsyncEventsReceived", function_name=name)
        self.async_worker.wake()
        return request_id

    # -- what the async worker asks (AsyncHost) --------------------------------------------------

    def function_for_event(self, name: str) -> Function | None:
        return self.functions.get(name)

    def invoke_config(self, name: str) -> EventInvokeConfig:
        found = self.invoke_configs.get(name)
        if found is not None:
            return found
        return self.config.functions[name].event_invoke_config

    def dead_letter_config(self, name: str) -> DeadLetterConfig | None:
        return self.config.functions[name].dead_letter_config

    def reserved_concurrency(self, name: str) -> int | None:
        if name in self.reserved:
            return self.reserved[name]
        return self.config.functions[name].reserved_concurrency

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
        enabled = [rt for rt in self.mappings.values() if rt.config.enabled]
        running = [rt for rt in enabled if rt.task is not None and not rt.task.done()]
        worker_ok = self._async_task is not None and not self._async_task.done()
        ok = self._started and not self._closed and len(running) == len(enabled) and worker_ok
        return {
            "status": "ok" if ok else "degraded",
            "mappings": {"enabled": len(enabled), "running": len(running)},
            "async_worker": "running" if worker_ok else "stopped",
        }

    async def ready(self) -> bool:
        """Readiness: Redis answers and every enabled mapping is running."""
        return self.health()["status"] == "ok" and await self.store.ping()

    # -- stop ----------------------------------------------------------------------------------

    async def aclose(self, deadline_s: float | None = None) -> None:
        """Stop every mapping (in-flight batches get ``deadline_s``), then close the rest."""
        if self._closed:
            return
        self._closed = True
        deadline = self.config.settings.shutdown_timeout_s if deadline_s is None else deadline_s
        running = [rt for rt in self.mappings.values() if rt.task is not None]
        await asyncio.gather(
            *(rt.poller.stop(deadline) for rt in running if rt.poller), return_exceptions=True
        )
        for rt in running:
            assert rt.task is not None
            rt.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rt.task
            rt.state = "Disabled"
        await self.async_worker.stop(deadline)
        if self._async_task is not None:
            self._async_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._async_task
        for fn in self.functions.values():
            await fn.aclose()
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
