"""Where an asynchronous event's outcome goes (docs/semantics.md §8.5, §8.6).

- Success: the invocation record to ``DestinationConfig.OnSuccess``.
- Given up (``RetriesExhausted``, ``EventAgeExceeded``, ``ZeroReservedConcurrency``): the
  invocation record to ``DestinationConfig.OnFailure`` and the original event to the
  ``DeadLetterConfig`` queue or topic, with ``RequestID`` / ``ErrorCode`` / ``ErrorMessage``.

Destinations retry transient failures themselves; what still fails is counted
(``DestinationDeliveryFailures``, ``DeadLetterErrors``) and logged with the request id, and the
event is done with, as on AWS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from esm.async_queue import QueuedEvent
from esm.clock import Clock
from esm.config import DeadLetterConfig, EventInvokeConfig
from esm.destinations.base import DeadLetterTarget, DeliveryError, Destination
from esm.metrics import Metrics
from esm.records import ResponseContext, async_s3_key, invocation_record
from esm.retry import Condition

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Dispatched:
    """Where an event's outcome went: the destination's ARN, the dead-letter queue's, and why a
    delivery failed (each None when it does not apply)."""

    destination: str | None = None
    dead_letter: str | None = None
    delivery_error: str | None = None


class Dispatcher:
    def __init__(
        self,
        *,
        destination: Callable[[str], Destination],
        dead_letter: Callable[[str], DeadLetterTarget],
        function_arn: Callable[[str], str],
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self._destination = destination
        self._dead_letter = dead_letter
        self._function_arn = function_arn
        self._clock = clock
        self._metrics = metrics

    async def dispatch(
        self,
        event: QueuedEvent,
        condition: Condition,
        invoke_config: EventInvokeConfig,
        dead_letter: DeadLetterConfig | None,
    ) -> Dispatched:
        dests = invoke_config.destination_config
        errors: list[str] = []
        dlq = None
        if condition == "Success":
            target = dests.on_success.destination if dests.on_success else None
        else:
            self._metrics.incr("AsyncEventsDropped", function_name=event.function)
            target = dests.on_failure.destination if dests.on_failure else None
            if dead_letter is not None:
                dlq = dead_letter.target_arn
                error = await self._send_dead_letter(event, condition, dlq)
                errors += [error] if error else []
        if target:
            error = await self._send_record(event, condition, target)
            errors += [error] if error else []
        return Dispatched(target, dlq, "; ".join(errors) or None)

    def record(self, event: QueuedEvent, condition: Condition) -> dict[str, object]:
        last = event.last
        invoked = event.history.invokes > 0 and last is not None and not last.reason
        response = None
        if invoked and last is not None:
            response = ResponseContext(last.status, last.version, last.function_error)
        return invocation_record(
            request_id=event.request_id,
            function_arn=self._function_arn(event.function),
            condition=condition,
            approximate_invoke_count=event.history.invokes,
            request_payload=event.payload,
            response=response,
            response_payload=last.payload if invoked and last is not None else None,
            now=self._clock.now(),
        )

    async def _send_record(
        self, event: QueuedEvent, condition: Condition, target: str
    ) -> str | None:
        record = self.record(event, condition)
        key = None
        if target.startswith("arn:aws:s3:"):
            key = async_s3_key(event.function, self._clock.now())
        try:
            await self._destination(target).send(record, s3_key=key)
        except (DeliveryError, ValueError) as exc:
            self._metrics.incr("DestinationDeliveryFailures", function_name=event.function)
            log.error(
                "async event %s for %s: %s record not delivered to %s: %s",
                event.request_id,
                event.function,
                condition,
                target,
                exc,
            )
            return f"{target}: {exc}"
        return None

    async def _send_dead_letter(
        self, event: QueuedEvent, condition: Condition, target: str
    ) -> str | None:
        last = event.last
        code = last.status if last is not None else 429  # never invoked: no concurrency
        try:
            await self._dead_letter(target).send_dead_letter(
                event.payload,
                request_id=event.request_id,
                error_code=code,
                error_message=_error_message(event) or condition,
            )
        except (DeliveryError, ValueError) as exc:
            self._metrics.incr("DeadLetterErrors", function_name=event.function)
            log.error(
                "async event %s for %s: not delivered to the dead-letter queue %s: %s",
                event.request_id,
                event.function,
                target,
                exc,
            )
            return f"{target}: {exc}"
        return None


def _error_message(event: QueuedEvent) -> str:
    last = event.last
    if last is None:
        return ""
    if last.reason:
        return last.reason
    if last.payload:
        try:
            doc = orjson.loads(last.payload)
        except orjson.JSONDecodeError:
            return last.payload.decode("utf-8", "replace")
        if isinstance(doc, dict) and isinstance(doc.get("errorMessage"), str):
            return str(doc["errorMessage"])
        return last.payload.decode("utf-8", "replace")
    return ""
