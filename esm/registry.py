"""What the control plane defines, kept in Redis so every daemon sharing it runs the same
mappings, invoke configs and reserved concurrency, and so they survive restarts.

Three hashes (mapping UUID → definition, function → invoke config, function → reserved
concurrency) and a version counter; every write bumps the counter in the same Lua script, and
daemons poll the counter to know when to reconcile. All keys share the ``{registry}`` hash tag,
so on Redis Cluster every script touches one slot.

An *epoch* key holds a random value set by the first daemon to start on this Redis. It is never
changed or deleted, so a daemon that finds it gone or different (or the version counter gone
back) knows the store lost its data — Redis restarted empty, failed over to a replica that had
not caught up, or was flushed — and rebuilds what it owns (see ``Engine.sync``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson

from esm.store import Keys, RedisClient, translate_redis_errors

Origin = Literal["config", "api"]


@dataclass(slots=True)
class MappingRecord:
    """One event source mapping as defined: CreateEventSourceMapping's parameters (AWS names,
    FunctionName reduced to the function's name plus ``Qualifier`` kept apart), and its state."""

    uuid: str
    params: dict[str, Any]
    state: str = "Creating"
    reason: str = "USER_INITIATED"
    last_modified: float = 0.0
    origin: Origin = "api"
    qualifier: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: str | bytes) -> MappingRecord:
        return cls(**orjson.loads(raw))


@dataclass(slots=True)
class InvokeConfigRecord:
    """PutFunctionEventInvokeConfig's parameters for one function, as set."""

    params: dict[str, Any] = field(default_factory=dict)
    last_modified: float = 0.0
    deleted: bool = False  # DeleteFunctionEventInvokeConfig (also of a config-file one)

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: str | bytes) -> InvokeConfigRecord:
        return cls(**orjson.loads(raw))


# KEYS: epoch | ARGV: a new epoch → the epoch in force (the new one unless one was already set)
_MARK_EPOCH = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""


# KEYS: hash, version | ARGV: 'set' | 'del', field, value → the new version
_WRITE = """
if ARGV[1] == 'del' then
  redis.call('HDEL', KEYS[1], ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
end
return redis.call('INCR', KEYS[2])
"""

# KEYS: hash, version | ARGV: field, the value expected, the new value → 1 written, 0 the field
# is no longer the value expected (nothing written)
_REPLACE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('INCR', KEYS[2])
return 1
"""


class Registry:
    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self._redis = redis
        self._mappings = keys.registry("mappings")
        self._invoke_configs = keys.registry("invoke-configs")
        self._concurrency = keys.registry("concurrency")
        self._version = keys.registry("version")
        self._epoch = keys.registry("epoch")
        self._mark_epoch = redis.register_script(_MARK_EPOCH)
        self._write_script = redis.register_script(_WRITE)
        self._replace = redis.register_script(_REPLACE)

    async def status(self) -> tuple[int, str | None]:
        """The version counter and the epoch (None when the store has none), in one round
        trip."""
        with translate_redis_errors("read the registry version"):
            version, epoch = await self._redis.mget(self._version, self._epoch)
        return int(version or 0), None if epoch is None else str(epoch)

    async def mark_epoch(self, new: str) -> str:
        """Set the epoch to ``new`` unless the store has one; the epoch in force."""
        with translate_redis_errors("mark the store's epoch"):
            return str(await self._mark_epoch(keys=[self._epoch], args=[new]))

    async def _write(self, key: str, field_: str, value: bytes | None) -> None:
        args: list[str | bytes] = ["del", field_] if value is None else ["set", field_, value]
        with translate_redis_errors("write the registry"):
            await self._write_script(keys=[key, self._version], args=args)

    # -- mappings ----------------------------------------------------------------------------------

    async def mappings(self) -> dict[str, MappingRecord]:
        with translate_redis_errors("read mappings"):
            raw = await self._redis.hgetall(self._mappings)
        return {str(k): MappingRecord.decode(v) for k, v in raw.items()}

    async def mapping(self, uuid: str) -> MappingRecord | None:
        with translate_redis_errors("read a mapping"):
            raw = await self._redis.hget(self._mappings, uuid)
        return None if raw is None else MappingRecord.decode(raw)

    async def put_mapping(self, record: MappingRecord) -> None:
        await self._write(self._mappings, record.uuid, record.encode())

    async def delete_mapping(self, uuid: str) -> None:
        await self._write(self._mappings, uuid, None)

    async def set_state(self, uuid: str, last_modified: float, state: str) -> bool:
        """Move a mapping to ``state`` unless its definition changed since ``last_modified``
        (another writer got there first: then nothing is written and False is returned)."""
        with translate_redis_errors("update a mapping's state"):
            raw = await self._redis.hget(self._mappings, uuid)
            if raw is None:
                return False
            record = MappingRecord.decode(raw)
            if record.last_modified != last_modified:
                return False
            record.state = state
            # written only if the definition is still the one just read (compare and set)
            written = await self._replace(
                keys=[self._mappings, self._version], args=[uuid, raw, record.encode()]
            )
        return bool(written)

    # -- invoke configs ----------------------------------------------------------------------------

    async def invoke_configs(self) -> dict[str, InvokeConfigRecord]:
        with translate_redis_errors("read invoke configs"):
            raw = await self._redis.hgetall(self._invoke_configs)
        return {str(k): InvokeConfigRecord.decode(v) for k, v in raw.items()}

    async def put_invoke_config(self, function: str, record: InvokeConfigRecord | None) -> None:
        await self._write(
            self._invoke_configs, function, None if record is None else record.encode()
        )

    # -- reserved concurrency ----------------------------------------------------------------------

    async def concurrency(self) -> dict[str, int]:
        with translate_redis_errors("read reserved concurrency"):
            raw = await self._redis.hgetall(self._concurrency)
        return {str(k): int(v) for k, v in raw.items()}

    async def put_concurrency(self, function: str, value: int | None) -> None:
        encoded = None if value is None else str(value).encode()
        await self._write(self._concurrency, function, encoded)
