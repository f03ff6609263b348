"""What the control plane defines, kept in Redis so every daemon sharing it runs the same
mappings, invoke configs and reserved concurrency, and so they survive restarts.

Three hashes (mapping UUID → definition, function → invoke config, function → reserved
concurrency) and a version counter; every write bumps the counter in the same Lua script, and
daemons poll the counter to know when to reconcile. A fourth hash holds the tags of functions
and mappings (``function:<name>`` / ``event-source-mapping:<uuid>`` → JSON map): tags change no
behaviour, so writing them bumps nothing; a mapping's tags go in the same script that deletes the
mapping, and are written only while the mapping exists. All keys share the ``{registry}`` hash tag,
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


# KEYS: mappings, tags, version | ARGV: uuid, its tags field → the new version
_DELETE_MAPPING = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[2])
return redis.call('INCR', KEYS[3])
"""

# KEYS: tags, mappings | ARGV: field, tags (JSON), the mapping's uuid or '' → 1 written, 0 the
# mapping is gone (nothing written)
_PUT_TAGS = """
if ARGV[3] ~= '' and redis.call('HEXISTS', KEYS[2], ARGV[3]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def mapping_tags_field(uuid: str) -> str:
    return f"event-source-mapping:{uuid}"


def function_tags_field(name: str) -> str:
    return f"function:{name}"


class Registry:
    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self._redis = redis
        self._mappings = keys.registry("mappings")
        self._invoke_configs = keys.registry("invoke-configs")
        self._concurrency = keys.registry("concurrency")
        self._version = keys.registry("version")
        self._epoch = keys.registry("epoch")
        self._tags = keys.registry("tags")
        self._mark_epoch = redis.register_script(_MARK_EPOCH)
        self._write_script = redis.register_script(_WRITE)
        self._replace = redis.register_script(_REPLACE)
        self._delete_mapping = redis.register_script(_DELETE_MAPPING)
        self._put_tags = redis.register_script(_PUT_TAGS)

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
        """The mapping and its tags, at once."""
        with translate_redis_errors("write the registry"):
            await self._delete_mapping(
                keys=[self._mappings, self._tags, self._version],
                args=[uuid, mapping_tags_field(uuid)],
            )

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

    # -- tags --------------------------------------------------------------------------------------

    async def tags(self, *fields: str) -> list[dict[str, str] | None]:
        """Resources' tags as last written (each field :func:`function_tags_field` or
        :func:`mapping_tags_field`), None for one never written; in one round trip."""
        if not fields:
            return []
        with translate_redis_errors("read tags"):
            raw = await self._redis.hmget(self._tags, list(fields))
        return [None if r is None else dict(orjson.loads(r)) for r in raw]

    async def put_tags(self, field_: str, tags: dict[str, str], *, mapping: str = "") -> bool:
        """Write a resource's tags (``{}`` too: none, rather than the config file's). With
        ``mapping`` (its UUID), only while that mapping exists: False when it is gone and
        nothing was written."""
        value = orjson.dumps(tags)
        with translate_redis_errors("write tags"):
            written = await self._put_tags(
                keys=[self._tags, self._mappings], args=[field_, value, mapping]
            )
        return bool(written)
