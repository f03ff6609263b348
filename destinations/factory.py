"""Which destination a target names: the factory over :mod:`esm.destinations`' implementations.

Apart from :mod:`esm.destinations.base` (the protocols and the delivery helpers every
implementation imports), so ``base`` imports none of them and the package has no import circle.
Each implementation is imported when a target first needs it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from esm.arns import Arn, parse_function_name
from esm.aws import AwsClients
from esm.clock import Clock
from esm.destinations.base import DeadLetterTarget, Destination, LocalInvoke

if TYPE_CHECKING:
    from esm.destinations.memory import MemoryDestinations


_DESTINATION_RULE = (
    "a destination is an SQS queue, SNS topic, EventBridge event bus, Lambda function or S3 "
    "bucket ARN, an http(s):// URL or memory://name"
)
_DEAD_LETTER_RULE = "a dead-letter queue is a standard SQS queue or SNS topic ARN, or memory://name"


def build_destination(
    target: str,
    *,
    aws: AwsClients,
    clock: Clock,
    local_functions: Collection[str] = (),
    local_invoke: LocalInvoke | None = None,
    memory: MemoryDestinations | None = None,
) -> Destination:
    """The destination for ``target``; ValueError naming the rule when it cannot be one.

    A Lambda ARN whose function name is in ``local_functions`` is invoked through
    ``local_invoke`` (esm's own async queue); any other goes to Lambda's Invoke API.
    """
    if target.startswith(("http://", "https://")):
        from esm.destinations.http import HttpDestination

        return HttpDestination(target, clock=clock)
    if target.startswith("memory://"):
        from esm.destinations.memory import MemoryDestination

        return MemoryDestination(_memory_name(target), _need_memory(target, memory))
    arn = _parse_arn(target, _DESTINATION_RULE)
    match arn.service:
        case "sqs":
            from esm.destinations.sqs import SqsDestination

            return SqsDestination(_standard_queue(arn, target), aws=aws, clock=clock)
        case "sns":
            from esm.destinations.sns import SnsDestination

            return SnsDestination(_standard_topic(arn, target), aws=aws, clock=clock)
        case "events":
            from esm.destinations.eventbridge import EventBridgeDestination

            if not arn.resource.startswith("event-bus/") or arn.resource == "event-bus/":
                raise ValueError(f"{target!r}: an EventBridge destination is an event-bus ARN")
            return EventBridgeDestination(arn, aws=aws, clock=clock)
        case "lambda":
            from esm.destinations.lambda_ import LambdaDestination

            if not arn.resource.startswith("function:"):
                raise ValueError(f"{target!r}: a Lambda destination is a function ARN")
            name = parse_function_name(target).name  # ValueError names the rule
            local = local_invoke if name in local_functions else None
            return LambdaDestination(arn, name, aws=aws, clock=clock, local_invoke=local)
        case "s3":
            from esm.destinations.s3 import S3Destination

            if not arn.resource or "/" in arn.resource:
                raise ValueError(f"{target!r}: an S3 destination is a bucket ARN (arn:aws:s3:::b)")
            return S3Destination(arn, aws=aws, clock=clock)
    raise ValueError(f"{target!r}: {_DESTINATION_RULE}")


def build_dead_letter(
    target: str,
    *,
    aws: AwsClients,
    clock: Clock,
    memory: MemoryDestinations | None = None,
) -> DeadLetterTarget:
    """The dead-letter queue for ``target``; ValueError naming the rule when it cannot be one."""
    if target.startswith("memory://"):
        from esm.destinations.memory import MemoryDestination

        return MemoryDestination(_memory_name(target), _need_memory(target, memory))
    arn = _parse_arn(target, _DEAD_LETTER_RULE)
    if arn.service == "sqs":
        from esm.destinations.sqs import SqsDestination

        return SqsDestination(_standard_queue(arn, target), aws=aws, clock=clock)
    if arn.service == "sns":
        from esm.destinations.sns import SnsDestination

        return SnsDestination(_standard_topic(arn, target), aws=aws, clock=clock)
    raise ValueError(f"{target!r}: {_DEAD_LETTER_RULE}")


def _parse_arn(target: str, rule: str) -> Arn:
    try:
        return Arn.parse(target)
    except ValueError:
        raise ValueError(f"{target!r}: {rule}") from None


def _standard_queue(arn: Arn, target: str) -> Arn:
    if not arn.resource or "/" in arn.resource:
        raise ValueError(f"{target!r} is not an SQS queue ARN")
    if arn.resource.endswith(".fifo"):
        raise ValueError(
            f"{target!r}: FIFO queues cannot be destinations or DLQs, use a standard one"
        )
    return arn


def _standard_topic(arn: Arn, target: str) -> Arn:
    if not arn.resource or "/" in arn.resource or ":" in arn.resource:
        raise ValueError(f"{target!r} is not an SNS topic ARN")
    if arn.resource.endswith(".fifo"):
        raise ValueError(
            f"{target!r}: FIFO topics cannot be destinations or DLQs, use a standard one"
        )
    return arn


def _memory_name(target: str) -> str:
    name = target.removeprefix("memory://")
    if not name:
        raise ValueError(f"{target!r}: memory destinations are named, memory://<name>")
    return name


def _need_memory(target: str, memory: MemoryDestinations | None) -> MemoryDestinations:
    if memory is None:
        raise ValueError(f"{target!r}: memory:// destinations need a MemoryDestinations registry")
    return memory
