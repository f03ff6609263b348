"""The durable queue behind ``Invoke(InvocationType=Event)``, in Redis.

::

    enqueue ──XADD──> ready (stream) ──XREADGROUP (group "workers")──> a worker's claim
                        ^                                                  │
                        │ move_due (Lua: due members → XADD)               ├─ complete: XACK + XDEL
    delayed (zset, score = due ms) <── retry (Lua: XACK + XDEL + ZADD) ────┘
                        ^
                        └── a claim held longer than the visibility timeout (its daemon died)
                            is taken over by XAUTOCLAIM

- Durable, at-least-once: an event is in Redis (one XADD) before ``Invoke`` answers 202; it
  leaves the stream only once its outcome is dispatched. A daemon killed at any point leaves its
  claims pending; another daemon (or itself, restarted) reclaims them after the visibility
  timeout.
- Each stream entry carries the whole event (payload and history), so a claim is one round trip
  and a retry moves one member; daemon memory is bounded by what is claimed, never the backlog.
- Keys share the hash tag ``{queue}``: the Lua scripts touch one Redis Cluster slot.
- Due times are the engine clock's (ARGV to Lua), so a virtual clock drives retries in tests;
  only XAUTOCLAIM's idle time is Redis's own clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from esm.clock import Clock
from esm.retry import History
from esm.store import Keys, translate_redis_errors

log = logging.getLogger(__name__)

GROUP = "workers"

# KEYS: ready stream, delayed zset. ARGV: group, entry id, due ms, member.
_RETRY = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""

# KEYS: ready stream, delayed zset. ARGV: now ms, limit. Moves due members into the stream.
_MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[1], '*', 'e', member)
  redis.call('ZREM', KEYS[2], member)
end
return #due
"""

# KEYS: ready stream. ARGV: group, entry id.
_COMPLETE = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
"""


@dataclass(frozen=True, slots=True)
class LastResponse:
    """The last invocation's answer, for the invocation record and the DLQ attributes."""

    status: int = 200
    version: str = "$LATEST"
    function_error: str | None = None  # "Unhandled" / "Handled"
    payload: bytes | None = None  # the function's response or error payload
    reason: str = ""  # why it was not invoked (throttle, unreachable)


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    request_id: str
    function: str
    payload: bytes
    history: History
    last: LastResponse | None = None
    entry_id: str = ""  # the stream entry while claimed

    def encode(self) -> str:
        h = self.history
        doc: dict[str, Any] = {
            "id": self.request_id,
            "fn": self.function,
            "p": self.payload.decode(),
            "r": h.received_at,
            "rt": h.retries,
            "n": h.invokes,
            "t": h.throttles,
        }
        if self.last is not None:
            last = self.last
            doc["last"] = [
                last.status,
                last.version,
                last.function_error,
                None if last.payload is None else last.payload.decode("utf-8", "replace"),
                last.reason,
            ]
        return orjson.dumps(doc).decode()

    @classmethod
    def decode(cls, text: str, entry_id: str = "") -> QueuedEvent:
        doc = orjson.loads(text)
        last = None
        if "last" in doc:
            status, version, ferr, payload, reason = doc["last"]
            last = LastResponse(
                status, version, ferr, None if payload is None else payload.encode(), reason
            )
        return cls(
            request_id=doc["id"],
            function=doc["fn"],
            payload=doc["p"].encode(),
            history=History(doc["r"], doc["rt"], doc["n"], doc["t"]),
            last=last,
            entry_id=entry_id,
        )


class AsyncQueue:
    def __init__(
        self,
        redis: Redis,
        *,
        clock: Clock,
        keys: Keys,
        consumer: str,
        visibility_s: float,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._ready = keys.async_ready()
        self._delayed = keys.async_delayed()
        self.consumer = consumer
        self.visibility_ms = int(visibility_s * 1000)
        self._retry = redis.register_script(_RETRY)
        self._move_due = redis.register_script(_MOVE_DUE)
        self._complete = redis.register_script(_COMPLETE)
        self._ready_group = False

    async def setup(self) -> None:
        """Create the stream and the consumer group if they do not exist."""
        if self._ready_group:
            return
        with translate_redis_errors("create the async queue"):
            try:
                await self._redis.xgroup_create(self._ready, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._ready_group = True

    # -- producer ----------------------------------------------------------------------------------

    async def enqueue(self, event: QueuedEvent) -> None:
        """One XADD: once this returns the event is in Redis."""
        with translate_redis_errors("enqueue an event"):
            await self._redis.xadd(self._ready, {"e": event.encode()})

    # -- consumer ----------------------------------------------------------------------------------

    async def claim(self, max_n: int, *, block_ms: int | None = None) -> list[QueuedEvent]:
        """Up to ``max_n`` new events for this consumer; ``block_ms`` waits for them (real
        Redis only: the wait is Redis's, in real time)."""
        if max_n <= 0:
            return []
        with translate_redis_errors("claim events"):
            got: Any = await self._redis.xreadgroup(
                GROUP, self.consumer, {self._ready: ">"}, count=max_n, block=block_ms
            )
        return [self._decode(eid, fields) for _, entries in got or () for eid, fields in entries]

    async def reclaim(self, max_n: int) -> list[QueuedEvent]:
        """Events another consumer (a dead daemon) has held past the visibility timeout."""
        with translate_redis_errors("reclaim events"):
            resp = await self._redis.xautoclaim(
                self._ready, GROUP, self.consumer, self.visibility_ms, "0-0", count=max_n
            )
        entries = resp[1] if resp else []
        out = [self._decode(eid, fields) for eid, fields in entries if fields]
        if out:
            log.info("reclaimed %d event(s) held past the visibility timeout", len(out))
        return out

    @staticmethod
    def _decode(entry_id: Any, fields: Any) -> QueuedEvent:
        return QueuedEvent.decode(str(fields["e"]), str(entry_id))

    async def complete(self, event: QueuedEvent) -> None:
        """The event's outcome is dispatched: it leaves the queue."""
        with translate_redis_errors("complete an event"):
            await self._complete(keys=[self._ready], args=[GROUP, event.entry_id])

    async def retry(self, event: QueuedEvent, delay_s: float) -> None:
        """Back to the queue, due in ``delay_s`` (one atomic step)."""
        due_ms = int((self._clock.now() + delay_s) * 1000)
        member = replace(event, entry_id="").encode()
        with translate_redis_errors("schedule a retry"):
            await self._retry(
                keys=[self._ready, self._delayed], args=[GROUP, event.entry_id, due_ms, member]
            )

    async def move_due(self, limit: int = 1000) -> int:
        """Retries whose time has come → the ready stream."""
        now_ms = int(self._clock.now() * 1000)
        with translate_redis_errors("move due retries"):
            return int(
                await self._move_due(keys=[self._ready, self._delayed], args=[now_ms, limit])
            )

    async def next_due(self) -> float | None:
        """When the earliest retry is due (epoch seconds), or None."""
        with translate_redis_errors("read the retry schedule"):
            head = await self._redis.zrange(self._delayed, 0, 0, withscores=True)
        return float(head[0][1]) / 1000 if head else None

    async def depth(self) -> dict[str, int]:
        """Events ready, claimed (pending) and waiting for a retry."""
        with translate_redis_errors("read the queue depth"):
            ready = await self._redis.xlen(self._ready)
            delayed = await self._redis.zcard(self._delayed)
            try:
                pending = (await self._redis.xpending(self._ready, GROUP))["pending"]
            except ResponseError:
                pending = 0
        return {
            "ready": int(ready) - int(pending),
            "claimed": int(pending),
            "delayed": int(delayed),
        }
