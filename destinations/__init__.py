"""Destinations for on-failure / on-success records and dead-letter queues."""

from destinations.base import (
    DeadLetterTarget,
    DeliveryError,
    Destination,
    LocalInvoke,
    build_dead_letter,
    build_destination,
)
from destinations.memory import DeadLetter, MemoryDestinations

__all__ = [
    "DeadLetter",
    "DeadLetterTarget",
    "DeliveryError",
    "Destination",
    "LocalInvoke",
    "MemoryDestinations",
    "build_dead_letter",
    "build_destination",
]
