"""The event source mappings one daemon runs, kept in step with their definitions.

Definitions come from the config file and from the control plane, and all of them live in the
:class:`~esm.registry.Registry` (Redis), so daemons sharing a Redis run the same set. A daemon
runs a mapping when it serves the mapping's function. :meth:`MappingSet.reconcile` compares the
definitions with what runs and acts: new → started, changed → restarted with its new settings
(same UUID, so a stream keeps its checkpoints), disabled → stopped, ``Deleting`` → stopped and
forgotten. States move as docs/semantics.md §10.3 says: ``Creating`` / ``Updating`` / ``Enabling`` /
``Disabling`` → ``Enabled`` or ``Disabled``; ``Deleting`` → gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from esm.clock import Clock
from esm.config import (
    EsmConfig,
    EventInvokeConfig,
    MappingConfig,
    MappingSpec,
    _pydantic_problems,
)
from esm.connectors.base import Sources
from esm.destinations.base import Destination
from esm.errors import InvalidParameterValueException, LambdaApiError, SourceError
from esm.filtering import compile_filter_criteria
from esm.functions import Function
from esm.metrics import Metrics
from esm.queue_poller import NO_RECORDS, QueuePoller
from esm.registry import MappingRecord, Registry
from esm.shard_consumer import StreamContext
from esm.store import Store
from esm.stream_poller import StreamPoller, on_failure_handler
from esm.streams import StreamPolicy

log = logging.getLogger(__name__)

RESTART_DELAY_S = 5.0
# a transient failure of the start-up check is asked again after these pauses before refusing
CHECK_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)

State = Literal["Creating", "Enabling", "Enabled", "Disabling", "Disabled", "Updating", "Deleting"]


@dataclass(eq=False)
class MappingRuntime:
    """A mapping as this daemon runs it."""

    config: MappingSpec
    uuid: str
    function_name: str
    state: State = "Creating"
    poller: QueuePoller | StreamPoller | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def last_processing_result(self) -> str:
        return self.poller.last_processing_result if self.poller else NO_RECORDS

    @property
    def health(self) -> str:
        """``Enabled``, ``Disabled``, or ``Failing: <why>`` (an enabled mapping that is not
        running, or whose source or store keeps failing)."""
        if not self.config.enabled:
            return "Disabled"
        if self.task is None or self.task.done():
            return "Failing: not running"
        problem = self.poller.failing if self.poller else None
        return f"Failing: {problem}" if problem else "Enabled"


class MappingStartError(LambdaApiError):
    """A mapping failed Lambda's start-up checks; wraps the AWS error with the mapping's index."""

    def __init__(self, index: int, uuid: str, error: LambdaApiError) -> None:
        self.error = error
        self.status = error.status
        super().__init__(f"EventSourceMappings[{index}] ({uuid}): {error.name}: {error.message}")


def mapping_from_params(params: dict[str, Any]) -> MappingSpec:
    """CreateEventSourceMapping's parameters → a validated mapping with its source's defaults;
    InvalidParameterValueException names the field and the rule."""
    try:
        mapping = MappingConfig.model_validate(params)
    except ValidationError as exc:
        problem = _pydantic_problems(exc)[0]
        raise InvalidParameterValueException(str(problem)) from None
    problems = mapping.problems()
    if problems:
        raise InvalidParameterValueException(str(problems[0]))
    return mapping.resolve()


def invoke_config_from_params(params: dict[str, Any]) -> EventInvokeConfig:
    """PutFunctionEventInvokeConfig's parameters → the validated config (defaults filled);
    InvalidParameterValueException names the field and the rule."""
    try:
        return EventInvokeConfig.model_validate(params)
    except ValidationError as exc:
        problem = _pydantic_problems(exc)[0]
        raise InvalidParameterValueException(str(problem)) from None


def mapping_params(mapping: MappingConfig) -> dict[str, Any]:
    """A mapping as CreateEventSourceMapping's parameters (AWS names, set values only)."""
    return mapping.model_dump(
        by_alias=True, exclude_none=True, exclude_unset=True, exclude={"uuid"}
    )


class PollerHost(Protocol):
    """What building pollers needs from the engine."""

    config: EsmConfig
    clock: Clock
    metrics: Metrics
    store: Store
    sources: Sources
    owner: str
    functions: dict[str, Function]

    def destination(self, target: str) -> Destination: ...


class MappingSet:
    def __init__(self, host: PollerHost, registry: Registry) -> None:
        self._host = host
        self._registry = registry
        self.runtimes: dict[str, MappingRuntime] = {}
        self.records: dict[str, MappingRecord] = {}  # the definitions as of the last reconcile
        self._lock = asyncio.Lock()

    # -- building ----------------------------------------------------------------------------------

    def build(self, mapping: MappingSpec, uuid: str) -> MappingRuntime:
        host = self._host
        name = host.config.mapping_function(mapping)
        rt = MappingRuntime(config=mapping, uuid=uuid, function_name=name)
        fn = host.functions[name]
        if mapping.source == "sqs":
            rt.poller = QueuePoller(
                mapping,
                uuid=uuid,
                function=fn,
                connector=host.sources.queue(mapping.event_source_arn),
                clock=host.clock,
                metrics=host.metrics,
            )
        else:
            rt.poller = self._stream_poller(mapping, uuid, fn)
        return rt

    def _stream_poller(self, mapping: MappingSpec, uuid: str, fn: Function) -> StreamPoller:
        host = self._host
        settings = host.config.settings
        role = fn.config.role or f"arn:aws:iam::{settings.account_id}:role/esm-{fn.name}"
        destination = host.destination(mapping.on_failure_arn) if mapping.on_failure_arn else None
        ctx = StreamContext(
            mapping=mapping,
            uuid=uuid,
            function=fn,
            connector=host.sources.stream(mapping.event_source_arn, invoke_identity_arn=role),
            store=host.store,
            clock=host.clock,
            metrics=host.metrics,
            policy=StreamPolicy(
                maximum_retry_attempts=mapping.maximum_retry_attempts,
                maximum_record_age_s=mapping.maximum_record_age_s,
                bisect_on_error=mapping.bisect_on_error,
                report_item_failures=mapping.report_item_failures,
            ),
            record_filter=compile_filter_criteria(mapping.filter_patterns, mapping.source),
            on_failure=on_failure_handler(
                mapping=mapping,
                uuid=uuid,
                function=fn,
                destination=destination,
                clock=host.clock,
                metrics=host.metrics,
            ),
            lease_ttl_s=settings.lease_s,
            poll_interval_s=1.0 if mapping.source == "kinesis" else 0.25,
            idle_poll_s=settings.stream_idle_poll_s,
            status={},
        )
        return StreamPoller(ctx, owner=host.owner, discovery_s=settings.shard_discovery_s)

    async def check(self, mapping: MappingSpec, uuid: str = "check") -> None:
        """Lambda's checks against the source (queue exists, visibility ≥ timeout …)."""
        if not mapping.enabled:
            return
        rt = self.build(mapping, uuid)
        assert rt.poller is not None
        for delay in (*CHECK_RETRY_DELAYS_S, None):
            try:
                await rt.poller.check()
                return
            except InvalidParameterValueException as exc:
                cause = exc.__cause__
                # A missing queue or stream is an answer; a 5xx or a throttle is not (the SDK's
                # own retries already ran): ask again before refusing the mapping.
                if delay is None or not (isinstance(cause, SourceError) and cause.retriable):
                    raise
                log.warning("mapping %s: start-up check failed, trying again: %s", uuid, cause)
                await self._host.clock.sleep(delay)

    # -- running -----------------------------------------------------------------------------------

    def _launch(self, rt: MappingRuntime) -> None:
        assert rt.poller is not None
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
            except Exception as exc:
                log.exception("mapping %s crashed; restarting in %.0fs", rt.uuid, RESTART_DELAY_S)
                rt.poller.last_processing_result = "PROBLEM: internal error, restarting"
                rt.poller.failing = f"crashed ({type(exc).__name__}: {exc}); restarting"
                await self._host.clock.sleep(RESTART_DELAY_S)
                rt.poller.failing = None

    async def _halt(self, rt: MappingRuntime, deadline_s: float) -> None:
        if rt.task is None:
            return
        if rt.poller is not None:
            await rt.poller.stop(deadline_s)
        rt.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rt.task
        rt.task = None

    async def forget_function(self, name: str, deadline_s: float) -> None:
        """Stop the mappings of a function whose definition changed (their in-flight batches
        get ``deadline_s``); the next reconcile builds them again on its new target."""
        async with self._lock:
            for uuid in [u for u, rt in self.runtimes.items() if rt.function_name == name]:
                await self._halt(self.runtimes.pop(uuid), deadline_s)

    async def stop_all(self, deadline_s: float) -> None:
        running = [rt for rt in self.runtimes.values() if rt.task is not None]
        await asyncio.gather(*(self._halt(rt, deadline_s) for rt in running))
        for rt in running:
            rt.state = "Disabled"

    # -- reconciling -------------------------------------------------------------------------------

    async def reconcile(self, deadline_s: float) -> None:
        """Make what runs match the registry's definitions (see the module docstring)."""
        async with self._lock:
            records = self.records = await self._registry.mappings()
            for uuid, rec in records.items():
                await self._one(uuid, rec, deadline_s)
            for uuid in [u for u in self.runtimes if u not in records]:
                await self._halt(self.runtimes.pop(uuid), deadline_s)
            self._host.metrics.keep_mappings(
                (rt.function_name, uuid) for uuid, rt in self.runtimes.items()
            )

    async def _one(self, uuid: str, rec: MappingRecord, deadline_s: float) -> None:
        host = self._host
        rt = self.runtimes.get(uuid)
        try:
            mapping = mapping_from_params(rec.params)
        except LambdaApiError as exc:
            log.error("mapping %s: definition refused: %s", uuid, exc)
            return
        if host.config.mapping_function(mapping) not in host.functions:
            if rt is not None:  # its function is not served here (any more)
                await self._halt(self.runtimes.pop(uuid), deadline_s)
            return
        if rec.state == "Deleting":
            if rt is not None:
                await self._halt(self.runtimes.pop(uuid), deadline_s)
            await self._registry.delete_mapping(uuid)
            if mapping.source != "sqs":
                await host.store.forget_mapping(uuid)
            log.info("mapping %s deleted", uuid)
            return
        if rt is not None and rt.config != mapping:
            await self._halt(self.runtimes.pop(uuid), deadline_s)
            rt = None
        if rt is None:
            rt = self.build(mapping, uuid)
            self.runtimes[uuid] = rt
        if mapping.enabled and rt.task is None:
            self._launch(rt)
        elif not mapping.enabled:
            if rt.task is not None:
                await self._halt(rt, deadline_s)
            rt.state = "Disabled"
        final: State = "Enabled" if mapping.enabled else "Disabled"
        rt.state = final
        if rec.state != final:
            await self._registry.set_state(uuid, rec.last_modified, final)
