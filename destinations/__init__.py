"""Destinations for on-failure / on-success records and dead-letter queues."""

from esm.destinations.base import (
    DeadLetterTarget,
    DeliveryError,
    Destination,
    LocalInvoke,
)
from esm.destinations.factory import build_dead_letter, build_destination
from esm.destinations.memory import DeadLetter, MemoryDestinations

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
