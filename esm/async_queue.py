"""The durable queue behind ``Invoke(InvocationType=Event)``, in Redis.

Each function has its own ready stream and retry set, so a daemon claims only events of the
functions it serves (daemons with different configs may share one Redis).

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
- A consumer group that vanished (Redis restarted empty, or was flushed: ``NOGROUP``) is created
  again, from the stream's start, so events enqueued since run; the claim answers nothing that
  once, and the next one reads on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from redis.exceptions import ResponseError

from esm.clock import Clock
from esm.retry import History
from esm.store import Keys, RedisClient, StoreError, translate_redis_errors

log = logging.getLogger(__name__)

GROUP = "workers"

# KEYS: ready stream, delayed zset. ARGV: group, entry id, due ms, member.
_RETRY = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""

# KEYS: ready stream 1, delayed zset 1, ready stream 2, … ARGV: now ms, limit. Moves due
# members of each delayed set into its stream; returns {moved, earliest due ms left or -1}.
_MOVE_DUE = """
local moved = 0
local earliest = -1
for i = 1, #KEYS, 2 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[i + 1], '-inf', ARGV[1], 'LIMIT', 0,
                         tonumber(ARGV[2]))
  for _, member in ipairs(due) do
    redis.call('XADD', KEYS[i], '*', 'e', member)
    redis.call('ZREM', KEYS[i + 1], member)
  end
  moved = moved + #due
  local head = redis.call('ZRANGE', KEYS[i + 1], 0, 0, 'WITHSCORES')
  if head[2] and (earliest == -1 or tonumber(head[2]) < earliest) then
    earliest = tonumber(head[2])
  end
end
return {moved, earliest}
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
        redis: RedisClient,
        *,
        clock: Clock,
        keys: Keys,
        functions: Iterable[str],
        consumer: str,
        visibility_s: float,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._keys = keys
        self._functions = sorted(set(functions))
        self.consumer = consumer
        self.visibility_ms = int(visibility_s * 1000)
        self._retry = redis.register_script(_RETRY)
        self._move_due = redis.register_script(_MOVE_DUE)
        self._groups: set[str] = set()

    @property
    def functions(self) -> list[str]:
        """The functions whose events this queue claims."""
        return self._functions

    def _ready(self, function: str) -> str:
        return self._keys.async_ready(function)

    def _delayed(self, function: str) -> str:
        return self._keys.async_delayed(function)

    def forget_groups(self) -> None:
        """The store lost its data: create the consumer groups again at the next :meth:`setup`."""
        self._groups.clear()

    @contextlib.asynccontextmanager
    async def _group_lost(self) -> AsyncIterator[None]:
        """Around a command that needs the consumer group: ``NOGROUP`` means it is gone with the
        store's data; it is created again and the command's answer is nothing."""
        try:
            yield
        except StoreError as exc:
            if not (isinstance(exc.__cause__, ResponseError) and "NOGROUP" in str(exc.__cause__)):
                raise
        else:
            return
        log.warning(
            "async queue: consumer group %r is gone (the store lost its data?): creating it again",
            GROUP,
        )
        self.forget_groups()
        await self.setup()

    async def setup(self, functions: Iterable[str] | None = None) -> None:
        """Create the streams and consumer groups that do not exist yet."""
        for fn in functions if functions is not None else self._functions:
            if fn in self._groups:
                continue
            with translate_redis_errors("create the async queue"):
                try:
                    await self._redis.xgroup_create(self._ready(fn), GROUP, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
            self._groups.add(fn)

    # -- producer ----------------------------------------------------------------------------------

    async def enqueue(self, event: QueuedEvent) -> None:
        """One XADD: once this returns the event is in Redis."""
        with translate_redis_errors("enqueue an event"):
            await self._redis.xadd(self._ready(event.function), {"e": event.encode()})

    # -- consumer ----------------------------------------------------------------------------------

    async def claim(self, max_n: int, *, block_ms: int | None = None) -> list[QueuedEvent]:
        """Up to about ``max_n`` new events for this consumer, from every function it serves;
        ``block_ms`` waits for them (real Redis only: the wait is Redis's, in real time)."""
        if max_n <= 0 or not self._functions:
            return []
        per_stream = max(1, max_n // len(self._functions))
        streams: dict[Any, Any] = {self._ready(fn): ">" for fn in self._functions}
        got: Any = None
        async with self._group_lost():
            with translate_redis_errors("claim events"):
                got = await self._redis.xreadgroup(
                    GROUP, self.consumer, streams, count=per_stream, block=block_ms
                )
        return [self._decode(eid, fields) for _, entries in got or () for eid, fields in entries]

    async def reclaim(self, max_n: int) -> list[QueuedEvent]:
        """Events another consumer (a dead daemon) has held past the visibility timeout."""
        out: list[QueuedEvent] = []
        for fn in self._functions:
            if len(out) >= max_n:
                break
            resp: Any = None
            async with self._group_lost():
                with translate_redis_errors("reclaim events"):
                    resp = await self._redis.xautoclaim(
                        self._ready(fn),
                        GROUP,
                        self.consumer,
                        self.visibility_ms,
                        "0-0",
                        count=max_n - len(out),
                    )
            entries = resp[1] if resp else []
            out += [self._decode(eid, fields) for eid, fields in entries if fields]
        if out:
            log.info("reclaimed %d event(s) held past the visibility timeout", len(out))
        return out

    async def touch(self, events: Iterable[QueuedEvent]) -> None:
        """Still working on these: reset their idle time (XCLAIM … JUSTID) so no daemon, this one
        included, reclaims an event whose invocation is still running."""
        by_function: dict[str, list[Any]] = {}
        for ev in events:
            by_function.setdefault(ev.function, []).append(ev.entry_id)
        if not by_function:
            return
        async with self._group_lost():
            with translate_redis_errors("extend claims"):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for fn, ids in by_function.items():
                        pipe.xclaim(self._ready(fn), GROUP, self.consumer, 0, ids, justid=True)
                    await pipe.execute()

    @staticmethod
    def _decode(entry_id: Any, fields: Any) -> QueuedEvent:
        return QueuedEvent.decode(str(fields["e"]), str(entry_id))

    async def complete_many(self, events: Iterable[QueuedEvent]) -> None:
        """The events' outcomes are dispatched: they leave the queue, in one round trip (XACK
        and XDEL each, pipelined)."""
        with translate_redis_errors("complete events"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for ev in events:
                    pipe.xack(self._ready(ev.function), GROUP, ev.entry_id)
                    pipe.xdel(self._ready(ev.function), ev.entry_id)
                await pipe.execute()

    async def retry(self, event: QueuedEvent, delay_s: float) -> None:
        """Back to the queue, due in ``delay_s`` (one atomic step)."""
        due_ms = int((self._clock.now() + delay_s) * 1000)
        member = replace(event, entry_id="").encode()
        keys = [self._ready(event.function), self._delayed(event.function)]
        with translate_redis_errors("schedule a retry"):
            await self._retry(keys=keys, args=[GROUP, event.entry_id, due_ms, member])

    async def move_due(self, limit: int = 1000) -> float | None:
        """Retries whose time has come → the ready streams (one round trip). Returns when the
        earliest retry left is due (epoch seconds), or None."""
        if not self._functions:
            return None
        now_ms = int(self._clock.now() * 1000)
        keys = [k for fn in self._functions for k in (self._ready(fn), self._delayed(fn))]
        with translate_redis_errors("move due retries"):
            _, earliest = await self._move_due(keys=keys, args=[now_ms, limit])
        return None if int(earliest) < 0 else int(earliest) / 1000

    async def function_status(self, function: str, *, due_shown: int = 5) -> dict[str, Any]:
        """One function's queue, for esm status: events ``ready`` and ``claimed`` (being
        invoked), ``delayed`` (waiting for a retry) with the ``next_due`` few (request id and
        due time), and ``oldest_received`` (epoch seconds) of the events it holds."""
        ready_key, delayed_key = self._ready(function), self._delayed(function)
        with translate_redis_errors("read the queue's state"):
            length = int(await self._redis.xlen(ready_key))
            try:
                pending = int((await self._redis.xpending(ready_key, GROUP))["pending"])
            except ResponseError:
                pending = 0
            delayed = int(await self._redis.zcard(delayed_key))
            head = await self._redis.xrange(ready_key, count=1)
            due: Any = await self._redis.zrange(delayed_key, 0, due_shown - 1, withscores=True)
        events = [self._decode(eid, fields) for eid, fields in head or ()]
        retries = [(QueuedEvent.decode(_text(m)), float(score) / 1000) for m, score in due]
        received = [e.history.received_at for e in events] + [
            e.history.received_at for e, _ in retries
        ]
        return {
            "ready": length - pending,
            "claimed": pending,
            "delayed": delayed,
            "next_due": [{"request_id": e.request_id, "due": t} for e, t in retries],
            "oldest_received": min(received) if received else None,
        }

    async def depth(self) -> dict[str, int]:
        """Events ready, claimed (pending) and waiting for a retry, over every function."""
        total = {"ready": 0, "claimed": 0, "delayed": 0}
        for fn in self._functions:
            with translate_redis_errors("read the queue depth"):
                ready = await self._redis.xlen(self._ready(fn))
                delayed = await self._redis.zcard(self._delayed(fn))
                try:
                    pending = (await self._redis.xpending(self._ready(fn), GROUP))["pending"]
                except ResponseError:
                    pending = 0
            total["ready"] += int(ready) - int(pending)
            total["claimed"] += int(pending)
            total["delayed"] += int(delayed)
        return total


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
