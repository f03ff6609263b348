"""Durable state of stream mappings, in Redis: checkpoints, shard leases, worker heartbeats.

Kinesis and DynamoDB Streams mappings remember, per (mapping UUID, shard), the last sequence
number processed (or :data:`SHARD_END` once a closed shard is done) and, for tumbling windows,
the window state. Several daemons share a mapping's shards: each shard is *leased* to one owner,
renewed while it works and taken over by another owner only after it expires. Every lease carries
a fencing *token* that grows whenever ownership changes hands; a checkpoint is written only by the
current holder of the current token, so a paused old owner can never move a checkpoint.

Rules this module keeps:

- Time is the engine's :class:`~esm.clock.Clock`, passed to Lua as an argument (never Redis
  ``TIME``); expiry is a comparison with ``clock.now()``, so a virtual clock expires a lease
  instantly. Redis TTLs are only garbage collection (:data:`GC_TTL_MS`, real time) on lease and
  heartbeat keys; checkpoints and window states persist.
- Every change that reads before it writes, or touches several keys, is one Lua script
  (EVALSHA through ``register_script``). All keys one script touches share a hash tag
  (``{<mapping uuid>}``), so Redis Cluster keeps them in one slot.
- A checkpoint write is one round trip.
- ``memory://`` runs this same code, Lua included, on fakeredis in process.
- Redis errors become :class:`StoreError` / :class:`StoreUnavailable` in
  :func:`translate_redis_errors`, and nowhere else. A write that must not be lost to a short
  outage is tried again with :func:`retry_unavailable`; a loop that keeps meeting an outage
  says so once through :class:`OutageLog`.

Key layout (all names built by :class:`Keys`; ``esm`` is the default prefix)::

    esm:checkpoints:{<uuid>}   hash  shard id -> sequence number | SHARD_END
    esm:windows:{<uuid>}       hash  shard id -> tumbling-window state (JSON)
    esm:leases:{<uuid>}        hash  shard id -> "<token>:<expires_at>:<owner>"
                                     (released: "<token>:0:", the token is kept so it only grows)
    esm:workers:{<group>}      zset  owner -> heartbeat expiry (epoch seconds)

Which Redis (:meth:`Store.from_url`; the syntax in :mod:`esm.store_url`)::

    redis://[user:pass@]host[:port][/db][?options]     one Redis; rediss:// over TLS; unix://
    redis+cluster://[user:pass@]host:port[,host:port…][?options]
                                                       a Redis Cluster (redis-py's RedisCluster)
    redis+sentinel://[user:pass@]host:port[,host:port…]/service[/db][?options]
                                                       the primary Sentinel names (redis-py's
                                                       Sentinel.master_for); rediss+… over TLS
    memory://[name]                                    fakeredis in this process

On a cluster every script, transaction and multi-key command touches keys of one hash tag, so
one slot: a mapping's keys (``{<uuid>}``), the async queue (``{queue}``), the registry
(``{registry}``). Commands follow MOVED/ASK and a failover through redis-py's cluster client;
what fails meanwhile is :class:`StoreUnavailable`, retried by the callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

from redis import exceptions as rex
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from esm.clock import Clock
from esm.errors import EsmError
from esm.shard_life import SHARD_END as SHARD_END  # re-exported
from esm.store_url import (
    CLUSTER_SCHEMES,
    MEMORY_SCHEME,
    SENTINEL_SCHEMES,
    STANDALONE_SCHEMES,
    ClusterUrl,
    SentinelUrl,
    parse_cluster_url,
    parse_sentinel_url,
    scheme_of,
)
from esm.store_url import (
    URL_RULE as URL_RULE,  # re-exported
)

T = TypeVar("T")

MAX_CONNECTIONS = 128  # per daemon; commands wait for a free one (POOL_TIMEOUT_S) past it
POOL_TIMEOUT_S = 20.0

GC_TTL_MS: Final = 7 * 24 * 3600 * 1000
"""Real-time TTL on lease and heartbeat keys, refreshed on every write: garbage collection only."""

RedisClient = Redis | RedisCluster
"""What the store talks through: one Redis (standalone, Sentinel's primary, fakeredis) or a
cluster. Both have the commands esm uses; a cluster routes each by its keys' slot."""


# -- errors ---------------------------------------------------------------------------------------


class StoreError(EsmError):
    """Redis failed or refused a store operation (``retriable`` says whether trying again may
    help)."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        self.retriable = retriable
        super().__init__(message)


class StoreUnavailable(StoreError):
    """Redis could not be reached, timed out, is loading or failing over: try again later."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=True)


_UNAVAILABLE = (
    rex.ConnectionError,  # includes BusyLoadingError
    rex.TimeoutError,
    rex.ReadOnlyError,  # a replica promoted under us; the client reconnects to the new master
    rex.TryAgainError,
    rex.ClusterDownError,
)


def _message(exc: BaseException) -> str:
    """The error's message, one line. redis-py's Sentinel error lists each sentinel's client
    repr (a few hundred characters each): only the last sentinel's error is kept."""
    text = str(exc)
    head, sep, errors = text.partition(" : ")
    if sep and type(exc).__name__ == "MasterNotFoundError":
        text = f"{head} (last sentinel: {errors.rsplit(' - ', 1)[-1]})"
    return text


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {_message(exc)}"


def _cluster_unreachable(exc: Exception) -> bool:
    """redis-py's cluster client's own errors are not ``RedisError``s: no node answered while it
    refreshed the topology (the connection error is the cause), or a slot has no node yet (a
    failover under way) — retriable, unlike its other errors (a cross-slot command …)."""
    if not isinstance(exc, rex.RedisClusterException):
        return False
    cause = exc.__cause__ or exc.__context__
    return isinstance(exc, rex.SlotNotCoveredError) or isinstance(cause, _UNAVAILABLE)


@contextlib.contextmanager
def translate_redis_errors(action: str) -> Iterator[None]:
    """redis-py errors → :class:`StoreUnavailable` (retriable) or :class:`StoreError`.

    Also gives back a cancellation that redis-py lost: with a ``socket_timeout`` (redis-py 8
    sets 5 s by default) it writes commands under ``asyncio.wait_for``, which before Python
    3.12 returns normally when the task is cancelled just as the write completes. A loop that
    went on after such a call would never see its cancellation (a shard consumer's lease
    renewal, a poller under ``aclose``).
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop running
        task = None
    cancels = task.cancelling() if task is not None else 0
    try:
        yield
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"{action}: {_reason(exc)}") from exc
    except (rex.RedisError, rex.RedisClusterException) as exc:
        if _cluster_unreachable(exc):
            raise StoreUnavailable(f"{action}: {_reason(exc)}") from exc
        raise StoreError(f"{action}: {_reason(exc)}") from exc
    if task is not None and task.cancelling() > cancels:
        raise asyncio.CancelledError


def redact_url(url: str) -> str:
    """A store URL fit for logs: a password in it becomes ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


async def retry_unavailable(
    call: Callable[[], Awaitable[T]], *, clock: Clock, until: Callable[[], bool]
) -> T:
    """``await call()``, tried again after :class:`StoreUnavailable` with jittered exponential
    backoff (0.1 s doubling to 2 s, on ``clock``) until ``until()`` says the result is no longer
    wanted; then the last error is raised. Other errors are raised at once. The first try costs
    nothing more than the call (it is on hot paths: every checkpoint)."""
    try:
        return await call()
    except StoreUnavailable:
        if until():
            raise
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(StoreUnavailable),
        wait=wait_exponential_jitter(multiplier=0.1, max=2.0, jitter=0.1),
        stop=lambda _state: until(),
        sleep=clock.sleep,
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity either returns or raises")


class OutageLog:
    """One WARNING when a loop first meets a store outage, one INFO when the store answers again,
    DEBUG in between: a Redis that is down for an hour is two lines, not one a second."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self._what = what
        self.problem: str | None = None

    def failed(self, exc: BaseException) -> None:
        if self.problem is None:
            self._log.warning("%s: %s (trying again until it answers)", self._what, exc)
        else:
            self._log.debug("%s: %s", self._what, exc)
        self.problem = str(exc)

    def ok(self) -> None:
        if self.problem is not None:
            self._log.info("%s: the store answers again", self._what)
            self.problem = None


# -- values ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lease:
    """A shard lease as its holder knows it; ``token`` fences its checkpoints."""

    mapping_uuid: str
    shard_id: str
    owner: str
    token: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A shard lease as Redis holds it (possibly expired: compare ``expires_at`` with now)."""

    owner: str
    token: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key the store writes, built here and nowhere else.

    The part in braces is the Redis Cluster hash tag: all keys of one mapping hash to one slot.
    """

    prefix: str = "esm"

    def __post_init__(self) -> None:
        if not self.prefix or "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"store key prefix {self.prefix!r}: must be non-empty, without braces")

    def checkpoints(self, mapping_uuid: str) -> str:
        return f"{self.prefix}:checkpoints:{_tag(mapping_uuid)}"

    def windows(self, mapping_uuid: str) -> str:
        return f"{self.prefix}:windows:{_tag(mapping_uuid)}"

    def leases(self, mapping_uuid: str) -> str:
        return f"{self.prefix}:leases:{_tag(mapping_uuid)}"

    def workers(self, group: str) -> str:
        return f"{self.prefix}:workers:{_tag(group)}"

    def async_ready(self, function: str) -> str:
        """A function's async events due now, a stream read through one consumer group. One
        stream per function: a daemon only claims events of functions it serves."""
        return f"{self.prefix}:async:{{queue}}:ready:{function}"

    def async_delayed(self, function: str) -> str:
        """A function's async retries, a sorted set scored by due time (ms)."""
        return f"{self.prefix}:async:{{queue}}:delayed:{function}"

    def registry(self, kind: str) -> str:
        """Definitions made through the API, shared by every daemon on this Redis: ``mappings``,
        ``invoke-configs``, ``concurrency``, ``tags`` (hashes), ``version`` (a counter bumped on
        every change, which daemons poll) and ``epoch`` (set once: gone means the data is
        gone)."""
        return f"{self.prefix}:registry:{{registry}}:{kind}"

    def mapping(self, mapping_uuid: str) -> tuple[str, str, str]:
        """All keys holding one mapping's state."""
        return (
            self.checkpoints(mapping_uuid),
            self.windows(mapping_uuid),
            self.leases(mapping_uuid),
        )


def _tag(name: str) -> str:
    if not name or "{" in name or "}" in name:
        raise ValueError(f"store key name {name!r}: must be non-empty, without braces")
    return f"{{{name}}}"


# -- Lua ------------------------------------------------------------------------------------------
# Numbers cross into Lua as strings (repr of a float) and are stored as those strings: Lua's
# tostring() keeps only 14 significant digits, so no float is ever formatted on the Lua side.

_LEASE_LUA = """
local function lease(value)
  if not value then return 0, 0, '' end
  local token, expires, owner = string.match(value, '^(%d+):([^:]*):(.*)$')
  return tonumber(token), tonumber(expires), owner
end
local function held(key, shard, owner, token, now)
  local t, e, o = lease(redis.call('HGET', key, shard))
  return o == owner and t == tonumber(token) and e > tonumber(now), t
end
"""

# KEYS: leases | ARGV: shard, owner, now, expires_at, gc_ms → the token, or 0 if held by another
_ACQUIRE = (
    _LEASE_LUA
    + """
local token, expires, owner = lease(redis.call('HGET', KEYS[1], ARGV[1]))
local live = expires > tonumber(ARGV[3])
if owner ~= ARGV[2] then
  if owner ~= '' and live then return 0 end
  token = token + 1
elseif not live then
  token = token + 1
end
redis.call('HSET', KEYS[1], ARGV[1], token .. ':' .. ARGV[4] .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return token
"""
)

# KEYS: leases | ARGV: owner, now, expires_at, gc_ms, then shard, token pairs
# → per pair 1 renewed, 0 lost
_RENEW = (
    _LEASE_LUA
    + """
local out = {}
for i = 5, #ARGV, 2 do
  if held(KEYS[1], ARGV[i], ARGV[1], ARGV[i + 1], ARGV[2]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. ':' .. ARGV[3] .. ':' .. ARGV[1])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return out
"""
)

# KEYS: leases | ARGV: shard, owner, token → 1 released, 0 not ours (the token stays)
_RELEASE = (
    _LEASE_LUA
    + """
local token, expires, owner = lease(redis.call('HGET', KEYS[1], ARGV[1]))
if owner ~= ARGV[2] or token ~= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. ':0:')
return 1
"""
)

# KEYS: leases, checkpoints, windows
# ARGV: shard, owner, token, now, sequence number, window op ('' | 'set' | 'clear'), window JSON
# → 1 written, 0 fenced off (nothing written)
_SAVE_CHECKPOINT = (
    _LEASE_LUA
    + """
if not held(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
if ARGV[6] == 'set' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[7])
elseif ARGV[6] == 'clear' then
  redis.call('HDEL', KEYS[3], ARGV[1])
end
return 1
"""
)

# KEYS: workers | ARGV: owner, now, expires_at, gc_ms
_HEARTBEAT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


def _num(value: float) -> str:
    """A float as Redis and Lua read it back exactly."""
    return repr(float(value))


def _str(value: object) -> str:
    """A reply as text, whether or not the client decodes responses."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"unexpected Redis reply {value!r}")


def _parse_lease(value: str) -> LeaseInfo:
    token, expires_at, owner = value.split(":", 2)
    return LeaseInfo(owner=owner, token=int(token), expires_at=float(expires_at))


def _check_ttl(ttl_s: float) -> None:
    if not ttl_s > 0:
        raise ValueError(f"ttl_s {ttl_s!r}: must be > 0")


# -- the store ------------------------------------------------------------------------------------


class Store:
    """Checkpoints, leases and heartbeats of stream mappings, on one redis-py asyncio client.

    The store owns its client: :meth:`aclose` closes it. Other modules may reuse it through
    :attr:`redis` (it decodes responses to ``str``) and build their key names in :class:`Keys`.
    """

    def __init__(
        self, client: RedisClient, *, clock: Clock, prefix: str = "esm", url: str = "memory://"
    ) -> None:
        self._redis = client
        self._clock = clock
        self.keys = Keys(prefix)
        self.url = redact_url(url)  # for messages: never the password
        # register_script does no I/O: it computes the SHA. The first call of each script on a
        # server costs EVALSHA → NOSCRIPT → SCRIPT LOAD → EVALSHA; every later call, one EVALSHA.
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._save_checkpoint = client.register_script(_SAVE_CHECKPOINT)
        self._heartbeat = client.register_script(_HEARTBEAT)

    @classmethod
    def from_url(cls, url: str, *, clock: Clock, prefix: str = "esm") -> Store:
        """``redis://``, ``rediss://``, ``unix://`` (redis-py's URL syntax, query options
        included), ``redis+cluster://`` / ``redis+sentinel://`` (and ``rediss+…``, see
        :mod:`esm.store_url`), or ``memory://`` (a private fakeredis server in this process) /
        ``memory://<name>`` (one fakeredis server shared by every store opened with that name in
        this process). No I/O: the client connects on first use."""
        scheme = scheme_of(url)
        client: RedisClient
        if scheme == MEMORY_SCHEME:
            client = _memory_client(url)
        elif scheme in CLUSTER_SCHEMES:
            client = _cluster_client(parse_cluster_url(url))
        elif scheme in SENTINEL_SCHEMES:
            client = _sentinel_client(parse_sentinel_url(url))
        elif scheme in STANDALONE_SCHEMES:
            # A blocking pool: past max_connections a command waits for a connection instead
            # of failing (redis-py's default pool raises at 100).
            pool = BlockingConnectionPool.from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=5.0,
                max_connections=MAX_CONNECTIONS,
                timeout=POOL_TIMEOUT_S,
            )
            client = Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
        else:
            # The URL itself is not echoed: it may carry a password.
            raise ValueError(f"store URL with scheme {scheme!r}: {URL_RULE}")
        return cls(client, clock=clock, prefix=prefix, url=url)

    @property
    def redis(self) -> RedisClient:
        """The client, for other modules (the async queue reuses it)."""
        return self._redis

    @property
    def in_process(self) -> bool:
        """memory:// (fakeredis): only this process writes it, and blocking reads do not block."""
        return type(self._redis).__module__.startswith("fakeredis")

    async def ping(self) -> bool:
        """True when Redis answers, False when it cannot be reached."""
        try:
            with translate_redis_errors("ping"):
                return await self._ping()
        except StoreUnavailable:
            return False

    async def _ping(self) -> bool:
        if isinstance(self._redis, RedisCluster):
            # every primary, so every slot, answers (redis-py pings replicas too by default:
            # a replica down does not stop esm)
            return bool(await self._redis.ping(target_nodes=RedisCluster.PRIMARIES))
        return bool(await self._redis.ping())

    async def check(self) -> None:
        """Raise :class:`StoreUnavailable` ``cannot reach the store <url>: <why>`` unless Redis
        answers a PING."""
        try:
            with translate_redis_errors("ping"):
                await self._ping()
        except StoreUnavailable as exc:
            why = _message(exc.__cause__) if exc.__cause__ is not None else exc
            raise StoreUnavailable(f"cannot reach the store {self.url}: {why}") from None

    async def aclose(self) -> None:
        """Close the client; safe twice."""
        await self._redis.aclose()

    # -- checkpoints ------------------------------------------------------------------------------

    async def checkpoint(self, mapping_uuid: str, shard_id: str) -> str | None:
        """The last processed sequence number of a shard, :data:`SHARD_END`, or None."""
        with translate_redis_errors("read checkpoint"):
            value = await self._redis.hget(self.keys.checkpoints(mapping_uuid), shard_id)
        return None if value is None else _str(value)

    async def checkpoints(self, mapping_uuid: str) -> dict[str, str]:
        """Every shard's checkpoint of a mapping."""
        with translate_redis_errors("read checkpoints"):
            values = await self._redis.hgetall(self.keys.checkpoints(mapping_uuid))
        return {_str(shard): _str(value) for shard, value in values.items()}

    async def save_checkpoint(
        self,
        lease: Lease,
        sequence_number: str,
        *,
        window: dict[str, Any] | None = None,
        clear_window: bool = False,
    ) -> bool:
        """Write the checkpoint (and set or clear the shard's window state) in one round trip,
        only if ``lease`` is still the shard's current, unexpired lease. False: fenced off,
        nothing written."""
        if window is not None and clear_window:
            raise ValueError("save_checkpoint: give window or clear_window, not both")
        op, state = "", ""
        if window is not None:
            op, state = "set", json.dumps(window, separators=(",", ":"))
        elif clear_window:
            op = "clear"
        keys = self.keys
        with translate_redis_errors("save checkpoint"):
            written = await self._save_checkpoint(
                keys=[
                    keys.leases(lease.mapping_uuid),
                    keys.checkpoints(lease.mapping_uuid),
                    keys.windows(lease.mapping_uuid),
                ],
                args=[
                    lease.shard_id,
                    lease.owner,
                    lease.token,
                    _num(self._clock.now()),
                    sequence_number,
                    op,
                    state,
                ],
            )
        return bool(written)

    async def window_state(self, mapping_uuid: str, shard_id: str) -> dict[str, Any] | None:
        """The tumbling-window state saved with the shard's last checkpoint, or None."""
        with translate_redis_errors("read window state"):
            value = await self._redis.hget(self.keys.windows(mapping_uuid), shard_id)
        if value is None:
            return None
        state: dict[str, Any] = json.loads(value)
        return state

    async def forget_mapping(self, mapping_uuid: str) -> None:
        """Delete a mapping's checkpoints, window states and leases (one DEL, one slot)."""
        with translate_redis_errors("forget mapping"):
            await self._redis.delete(*self.keys.mapping(mapping_uuid))

    # -- leases -----------------------------------------------------------------------------------

    async def acquire_lease(
        self, mapping_uuid: str, shard_id: str, owner: str, ttl_s: float
    ) -> Lease | None:
        """Take the shard if it is free, expired or already ours; None if another owner holds
        an unexpired lease. The token grows whenever ownership changes hands (a new owner, or
        re-taking after expiry or release); re-acquiring a live lease of ours keeps it."""
        _check_ttl(ttl_s)
        if not owner:
            raise ValueError("acquire_lease: owner must be non-empty")
        now = self._clock.now()
        expires_at = now + ttl_s
        with translate_redis_errors("acquire lease"):
            token = await self._acquire(
                keys=[self.keys.leases(mapping_uuid)],
                args=[shard_id, owner, _num(now), _num(expires_at), GC_TTL_MS],
            )
        if not token:
            return None
        return Lease(mapping_uuid, shard_id, owner, int(token), expires_at)

    async def renew_lease(self, lease: Lease, ttl_s: float) -> Lease | None:
        """Extend a lease we still hold (same owner and token, unexpired); None if lost."""
        (renewed,) = await self.renew_leases([lease], ttl_s)
        return renewed

    async def renew_leases(self, leases: Sequence[Lease], ttl_s: float) -> list[Lease | None]:
        """:meth:`renew_lease` for many leases, one round trip per mapping and owner among them
        (a daemon renews every shard of a mapping at once); in the order given."""
        _check_ttl(ttl_s)
        now = self._clock.now()
        expires_at = now + ttl_s
        groups: dict[tuple[str, str], list[int]] = {}
        for i, lease in enumerate(leases):
            groups.setdefault((lease.mapping_uuid, lease.owner), []).append(i)
        out: list[Lease | None] = [None] * len(leases)
        for (mapping_uuid, owner), indexes in groups.items():
            args: list[Any] = [owner, _num(now), _num(expires_at), GC_TTL_MS]
            for i in indexes:
                args += [leases[i].shard_id, leases[i].token]
            with translate_redis_errors("renew leases"):
                held = await self._renew(keys=[self.keys.leases(mapping_uuid)], args=args)
            for i, ok in zip(indexes, held, strict=True):
                if ok:
                    out[i] = dataclasses.replace(leases[i], expires_at=expires_at)
        return out

    async def release_lease(self, lease: Lease) -> None:
        """Free the shard if the lease is still ours (same owner and token); else do nothing."""
        with translate_redis_errors("release lease"):
            await self._release(
                keys=[self.keys.leases(lease.mapping_uuid)],
                args=[lease.shard_id, lease.owner, lease.token],
            )

    async def leases(self, mapping_uuid: str) -> dict[str, LeaseInfo]:
        """Held leases by shard id, expired ones included (released ones are not)."""
        with translate_redis_errors("read leases"):
            values = await self._redis.hgetall(self.keys.leases(mapping_uuid))
        infos = {_str(shard): _parse_lease(_str(value)) for shard, value in values.items()}
        return {shard: info for shard, info in infos.items() if info.owner}

    # -- workers ----------------------------------------------------------------------------------

    async def heartbeat(self, group: str, owner: str, ttl_s: float) -> None:
        """Say ``owner`` is alive in ``group`` for ``ttl_s`` more seconds (and drop the expired)."""
        _check_ttl(ttl_s)
        now = self._clock.now()
        with translate_redis_errors("heartbeat"):
            await self._heartbeat(
                keys=[self.keys.workers(group)],
                args=[owner, _num(now), _num(now + ttl_s), GC_TTL_MS],
            )

    async def live_workers(self, group: str) -> list[str]:
        """Owners of ``group`` whose heartbeat has not expired, sorted."""
        now = f"({_num(self._clock.now())}"  # exclusive: expired means expires_at <= now
        with translate_redis_errors("read live workers"):
            owners = await self._redis.zrange(self.keys.workers(group), now, "+inf", byscore=True)
        return sorted(_str(owner) for owner in owners)


# -- memory:// ------------------------------------------------------------------------------------

_MEMORY_SERVERS: dict[str, Any] = {}


def _memory_client(url: str) -> Redis:
    """A fakeredis client (Lua through its ``lua`` extra): a private server for ``memory://``,
    a named one shared in this process for ``memory://<name>``."""
    from fakeredis import FakeServer
    from fakeredis.aioredis import FakeRedis

    parts = urlsplit(url)
    name = parts.netloc + parts.path.rstrip("/")
    if not name:
        server = FakeServer()
    else:
        server = _MEMORY_SERVERS.setdefault(name, FakeServer())
    client: Redis = FakeRedis(server=server, decode_responses=True)
    return client


# -- redis+cluster:// and redis+sentinel:// --------------------------------------------------------


def _connection_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The URL's options as redis-py's keyword arguments, with esm's defaults."""
    return {"socket_connect_timeout": 5.0, "max_connections": MAX_CONNECTIONS, **options}


def _cluster_client(address: ClusterUrl) -> RedisCluster:
    """redis-py's cluster client on the URL's startup nodes. Past ``max_connections`` to one
    node a command fails (retriable) instead of waiting: redis-py's cluster has no blocking
    pool."""
    (host, port), *others = address.nodes
    return RedisCluster(
        host=host,
        port=port,
        startup_nodes=[ClusterNode(h, p) for h, p in others],
        username=address.username,
        password=address.password,
        decode_responses=True,
        ssl=address.tls,
        **_connection_options(address.options),
    )


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (connections go to the primary Sentinel names now) that waits for a free
    connection past ``max_connections``, as the standalone store's pool does."""


class _SentinelRedis(Redis):
    """The primary's client; closing it closes the clients of the sentinels too."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            for client in self.sentinel_manager.sentinels:
                await client.aclose()


def _sentinel_client(address: SentinelUrl) -> Redis:
    """``Sentinel(...).master_for(service)``: every command goes to the primary the sentinels
    name; after a failover redis-py asks them again and reconnects."""
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": address.options.get("socket_connect_timeout", 5.0),
        "socket_timeout": address.options.get("socket_timeout", 5.0),
        "username": address.sentinel_username,
        "password": address.sentinel_password,
        "decode_responses": True,
    }
    if address.tls:
        ssl = {k: v for k, v in address.options.items() if k.startswith("ssl_")}
        sentinel_kwargs.update(ssl=True, **ssl)
    sentinel = Sentinel(list(address.sentinels), sentinel_kwargs=sentinel_kwargs)
    client = sentinel.master_for(
        address.service,
        redis_class=_SentinelRedis,
        connection_pool_class=_BlockingSentinelPool,
        db=address.db,
        username=address.username,
        password=address.password,
        decode_responses=True,
        ssl=address.tls,
        timeout=POOL_TIMEOUT_S,
        **_connection_options(address.options),
    )
    assert isinstance(client, _SentinelRedis)
    client.sentinel_manager = sentinel
    return client
