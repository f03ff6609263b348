"""Functions: invoke a function and get one :data:`~esm.outcomes.Outcome` back.

::

    Function.invoke(payload)
     ├── ReservedConcurrentExecutions full ─────────────────────> Throttled
     └── its target (esm.targets), under clock.wait_for(Timeout) ── too slow ──> FunctionError
                                                                                (Sandbox.Timedout)

Where the function runs and how each target's answer becomes an outcome is :mod:`esm.targets`
(one module per kind); the outcomes are :mod:`esm.outcomes`. ``Function`` holds what every kind
shares: the timeout, the reserved concurrency, the gate, and one WARNING line per failed
invocation.
"""

from __future__ import annotations

import logging
import uuid

import orjson

from esm.arns import function_arn
from esm.aws import AwsClients
from esm.clock import Clock
from esm.config import EsmConfig, FunctionConfig, Settings
from esm.outcomes import LATEST as LATEST
from esm.outcomes import FunctionError as FunctionError
from esm.outcomes import InvokeFailed as InvokeFailed
from esm.outcomes import Ok as Ok
from esm.outcomes import Outcome as Outcome
from esm.outcomes import Throttled as Throttled
from esm.targets.base import Call, Target, timeout_payload
from esm.targets.factory import build_target

log = logging.getLogger(__name__)

RESERVED_LIMIT_REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"


class Function:
    """One function of the config: its target, its timeout and its reserved concurrency.

    ``invoke`` returns without waiting when ``ReservedConcurrentExecutions`` calls are already in
    flight (``Throttled``), otherwise runs the target under ``Timeout`` on the clock. A timed-out
    call is a ``Sandbox.Timedout`` function error and leaves the in-flight count at once, even when
    the target cannot be stopped (a sync python handler's thread runs on to its end).
    """

    def __init__(
        self, name: str, arn: str, config: FunctionConfig, target: Target, clock: Clock
    ) -> None:
        self.name = name
        self.arn = arn
        self.config = config
        self._target = target
        self._clock = clock
        self._timeout_s = float(config.timeout_s)
        self._reserved = config.reserved_concurrency
        self._in_flight = 0
        self._closed = False
        # environments time the invocation themselves (a cold start's init is not in Timeout)
        self._times_itself = bool(getattr(target, "times_itself", False))

    def __repr__(self) -> str:
        return f"Function({self.name!r}, target={self.config.kind!r})"

    @property
    def reserved(self) -> int | None:
        """ReservedConcurrentExecutions now (PutFunctionConcurrency changes it at runtime)."""
        return self._reserved

    @reserved.setter
    def reserved(self, value: int | None) -> None:
        self._reserved = value

    @property
    def in_flight(self) -> int:
        """Calls started and not yet finished (queued behind an rie target's one slot included)."""
        return self._in_flight

    async def invoke(
        self,
        payload: bytes,
        *,
        request_id: str | None = None,
        invocation_type: str = "RequestResponse",
        client_context: str | None = None,
    ) -> Outcome:
        """Run the function once on ``payload`` (the event JSON); see the module's table."""
        reserved = self._reserved
        if reserved is not None and self._in_flight >= reserved:
            return Throttled(RESERVED_LIMIT_REASON)
        if self._closed:
            return InvokeFailed(f"function {self.name} is closed")
        rid = request_id or str(uuid.uuid4())
        self._in_flight += 1
        try:
            gate = self._target.gate
            if gate is None:
                return await self._call(payload, rid, invocation_type, client_context)
            async with gate:
                return await self._call(payload, rid, invocation_type, client_context)
        finally:
            self._in_flight -= 1

    async def _call(
        self, payload: bytes, rid: str, invocation_type: str, client_context: str | None
    ) -> Outcome:
        clock = self._clock
        timeout = self._timeout_s
        call = Call(payload, rid, invocation_type, client_context, clock.now() + timeout)
        try:
            if self._times_itself:
                outcome = await self._target.call(call)
            else:
                outcome = await clock.wait_for(self._target.call(call), timeout)
        except TimeoutError:
            outcome = FunctionError(timeout_payload(clock.now(), rid, timeout))
        except Exception as exc:  # a bug or an unforeseen library error: never an engine crash
            log.exception("function %s: invoking %s failed", self.name, self.config.kind)
            return InvokeFailed(f"{type(exc).__name__}: {exc}")
        if isinstance(outcome, FunctionError):
            _log_failure(self.name, rid, outcome.payload)
        return outcome

    async def aclose(self) -> None:
        """Release sessions and threads; safe to call twice. Later invokes are InvokeFailed."""
        if self._closed:
            return
        self._closed = True
        await self._target.aclose()


def build_functions(config: EsmConfig, *, clock: Clock, aws: AwsClients) -> dict[str, Function]:
    """One :class:`Function` per key of ``Functions``."""
    settings = config.settings
    return {
        name: build_function(
            name,
            fn,
            region=settings.region,
            account=settings.account_id,
            clock=clock,
            aws=aws,
            settings=settings,
        )
        for name, fn in config.functions.items()
    }


def build_function(
    name: str,
    fn: FunctionConfig,
    *,
    region: str,
    account: str,
    clock: Clock,
    aws: AwsClients,
    settings: Settings | None = None,
) -> Function:
    """A function named ``name`` (ARN from region and account) running at ``fn.target``, or in
    execution environments (:mod:`esm.environments`) when it has a ``Runtime``
    (:func:`esm.targets.build_target`)."""
    arn = function_arn(region, account, name)
    target = build_target(
        name, arn, fn, region=region, clock=clock, aws=aws, settings=settings or Settings()
    )
    return Function(name, arn, fn, target, clock)


def _log_failure(name: str, request_id: str, payload: bytes) -> None:
    """A failed invocation, once, at WARNING: its type, message and stack (what Lambda's log
    shows), whatever the target."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        log.warning("function %s: request %s failed: %.500r", name, request_id, payload)
        return
    trace = data.get("stackTrace")
    stack = "".join(str(f) for f in trace) if isinstance(trace, list) else ""
    log.warning(
        "function %s: request %s failed: %s: %s%s",
        name,
        request_id,
        data.get("errorType", "?"),
        data.get("errorMessage", ""),
        f"\n{stack.rstrip()}" if stack else "",
    )
