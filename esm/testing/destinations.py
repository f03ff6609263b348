"""Where the testing harness delivers records and dead letters: in process, nothing on a network.

- An SQS queue ARN (a destination or a dead-letter queue) is the harness's
  :class:`~esm.connectors.memory.MemoryBroker` queue of that ARN: a test reads it as it reads any
  queue, and a mapping may even poll it. Dead letters carry ``RequestID`` / ``ErrorCode`` /
  ``ErrorMessage`` message attributes as SQS's would.
- Any other ARN (SNS, EventBridge, S3, a Lambda function esm does not serve) is kept in the
  harness's :class:`~esm.destinations.memory.MemoryDestinations` under the ARN itself.
- ``memory://``, ``http(s)://`` and Lambda ARNs of the config's own functions (an asynchronous
  invoke through esm's queue) are left to the engine.

Targets are checked first as the daemon checks them (a FIFO queue is refused, an unknown service
is refused), so a config that fails there fails here too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from esm.arns import Arn, parse_function_name
from esm.aws import AwsClients
from esm.clock import Clock
from esm.connectors.memory import MemoryBroker
from esm.destinations.base import (
    DeadLetterTarget,
    DeliveryError,
    Destination,
    dead_letter_attributes,
    encode,
)
from esm.destinations.factory import build_dead_letter, build_destination
from esm.destinations.memory import MemoryDestination, MemoryDestinations
from esm.errors import SourceError


class QueueDestination:
    """An SQS ARN whose messages land in the broker's queue of that ARN."""

    def __init__(self, arn: str, broker: MemoryBroker) -> None:
        self.target = arn
        self._broker = broker

    async def send(self, record: Mapping[str, Any], *, s3_key: str | None = None) -> None:
        self._put(encode(self.target, record).decode(), {})

    async def send_dead_letter(
        self, payload: bytes, *, request_id: str, error_code: int, error_message: str
    ) -> None:
        attributes = dead_letter_attributes(request_id, error_code, error_message)
        self._put(payload.decode("utf-8", errors="replace"), attributes)

    def _put(self, body: str, attributes: dict[str, dict[str, str]]) -> None:
        try:
            self._broker.send(self.target, body, message_attributes=attributes)
        except SourceError as exc:
            raise DeliveryError(self.target, f"{exc.code}: {exc}") from exc

    async def aclose(self) -> None:
        """Nothing to release."""


class KeptDestination(MemoryDestination):
    """Any other ARN: records and dead letters kept in MemoryDestinations under the ARN."""

    def __init__(self, arn: str, registry: MemoryDestinations) -> None:
        super().__init__(arn, registry)
        self.target = arn  # as configured: S3 on-failure records carry the payload by it


class DestinationBuilder:
    """The engine's ``destination_builder`` / ``dead_letter_builder`` for the harness."""

    def __init__(
        self,
        *,
        broker: MemoryBroker,
        memory: MemoryDestinations,
        clock: Clock,
        aws: AwsClients,
        local_functions: Collection[str],
    ) -> None:
        self._broker = broker
        self._memory = memory
        self._clock = clock
        self._aws = aws  # only to check targets as the daemon does: never connects
        self._local = frozenset(local_functions)

    def destination(self, target: str) -> Destination | None:
        build_destination(target, aws=self._aws, clock=self._clock, memory=self._memory)
        return self._twin(target)

    def dead_letter(self, target: str) -> DeadLetterTarget | None:
        build_dead_letter(target, aws=self._aws, clock=self._clock, memory=self._memory)
        twin = self._twin(target)
        assert twin is None or isinstance(twin, QueueDestination | KeptDestination)
        return twin

    def _twin(self, target: str) -> QueueDestination | KeptDestination | None:
        if not target.startswith("arn:"):
            return None  # memory://, http(s)://: as usual
        arn = Arn.parse(target)
        if arn.service == "sqs":
            return QueueDestination(target, self._broker)
        if arn.service == "lambda" and parse_function_name(target).name in self._local:
            return None  # esm's own function: an async invoke through its queue
        return KeptDestination(target, self._memory)
