"""The in-process twin of every destination: ``memory://name`` keeps records and dead letters in
a :class:`MemoryDestinations` registry, for the testing harness and tests.

What is kept is what a real target would hold: records pass through JSON (so a record that could
not be serialised fails here too) and a dead letter's error message is cut to 1 KB like an SQS or
SNS attribute.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from esm.destinations.base import encode, truncate_utf8


@dataclass(frozen=True, slots=True)
class DeadLetter:
    payload: bytes
    request_id: str
    error_code: int
    error_message: str


class MemoryDestinations:
    """Named in-memory destinations. Safe to read from any thread while the loop writes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self._dead_letters: defaultdict[str, list[DeadLetter]] = defaultdict(list)

    def records(self, name: str) -> list[dict[str, Any]]:
        """Records sent to ``memory://name``, oldest first (a copy)."""
        with self._lock:
            return [orjson.loads(orjson.dumps(r)) for r in self._records.get(name, ())]

    def dead_letters(self, name: str) -> list[DeadLetter]:
        """Dead letters sent to ``memory://name``, oldest first (a copy)."""
        with self._lock:
            return list(self._dead_letters.get(name, ()))

    def names(self) -> list[str]:
        with self._lock:
            return sorted(set(self._records) | set(self._dead_letters))

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._dead_letters.clear()

    def add_record(self, name: str, record: dict[str, Any]) -> None:
        with self._lock:
            self._records[name].append(record)

    def add_dead_letter(self, name: str, letter: DeadLetter) -> None:
        with self._lock:
            self._dead_letters[name].append(letter)


class MemoryDestination:
    """``memory://name``: a destination and a dead-letter target; never fails."""

    def __init__(self, name: str, registry: MemoryDestinations) -> None:
        self.target = f"memory://{name}"
        self.name = name
        self._registry = registry

    async def send(self, record: Mapping[str, Any], *, s3_key: str | None = None) -> None:
        self._registry.add_record(self.name, orjson.loads(encode(self.target, record)))

    async def send_dead_letter(
        self, payload: bytes, *, request_id: str, error_code: int, error_message: str
    ) -> None:
        letter = DeadLetter(bytes(payload), request_id, error_code, truncate_utf8(error_message))
        self._registry.add_dead_letter(self.name, letter)

    async def aclose(self) -> None:
        """Nothing to release: the registry outlives its destinations."""
