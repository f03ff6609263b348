"""Store URLs: cluster and Sentinel syntax, what the clients are built with, and one clear line
(never the password) for every bad URL, at config load as at ``Store.from_url``."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, RedisCluster
from redis.asyncio.connection import SSLConnection

from esm.clock import VirtualClock
from esm.config import parse_config
from esm.errors import ConfigError
from esm.store import MAX_CONNECTIONS, POOL_TIMEOUT_S, Store
from esm.store_url import ClusterUrl, SentinelUrl, parse_cluster_url, parse_sentinel_url


def test_cluster_url() -> None:
    assert parse_cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7001") == ClusterUrl(
        nodes=(("10.0.0.1", 7000), ("10.0.0.2", 7001))
    )
    parsed = parse_cluster_url(
        "rediss+cluster://app:p%40ss@node-a,[::1]:7001/?socket_timeout=2.5&max_connections=50"
        "&ssl_cert_reqs=none"
    )
    assert parsed == ClusterUrl(
        nodes=(("node-a", 6379), ("::1", 7001)),
        tls=True,
        username="app",
        password="p@ss",
        options={"socket_timeout": 2.5, "max_connections": 50, "ssl_cert_reqs": "none"},
    )
    assert "p@ss" not in repr(parsed)


def test_sentinel_url() -> None:
    assert parse_sentinel_url("redis+sentinel://s1,s2:26380/mymaster") == SentinelUrl(
        sentinels=(("s1", 26379), ("s2", 26380)), service="mymaster"
    )
    parsed = parse_sentinel_url(
        "rediss+sentinel://:secret@s1:5000/main/3?sentinel_password=s%26p&socket_connect_timeout=1"
    )
    assert parsed == SentinelUrl(
        sentinels=(("s1", 5000),),
        service="main",
        db=3,
        tls=True,
        username=None,
        password="secret",
        sentinel_password="s&p",
        options={"socket_connect_timeout": 1.0},
    )


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("redis+cluster://h:1/2", "redis+cluster URL: a Redis Cluster has only database 0"),
        ("redis+cluster://h:x", "redis+cluster URL: port of 'h' must be 1-65535 (got 'x')"),
        ("redis+cluster://h:1,:2", "redis+cluster URL: every node must be host:port (got ':2')"),
        ("redis+cluster://h:1?db=2", "redis+cluster URL: unknown option 'db' (options: max_"),
        ("redis+cluster://h:1?socket_timeout=0", "option socket_timeout: must be > 0"),
        ("redis+cluster://h:1?max_connections=x", "option max_connections: must be a number"),
        ("redis+cluster://h?ssl_cert_reqs=none", "redis+cluster URL: ssl_cert_reqs need TLS"),
        ("rediss+cluster://h?ssl_cert_reqs=off", "ssl_cert_reqs: must be none, optional or"),
        ("redis+sentinel://h:1", "redis+sentinel URL: the path must name the service"),
        ("redis+sentinel://h:1/a/b/c", "redis+sentinel URL: the path must name the service"),
        ("redis+sentinel://h:1/main/x", "redis+sentinel URL: the database must be a number"),
        ("redis+sentinel://h:1/main?nope=1", "redis+sentinel URL: unknown option 'nope'"),
        ("valkey+cluster://h:1", "store URL with scheme 'valkey+cluster': a store URL is"),
    ],
)
def test_bad_urls_name_the_rule_and_never_the_password(url: str, rule: str) -> None:
    url = url.replace("://", "://user:s3cret@", 1)
    with pytest.raises(ValueError) as caught:
        Store.from_url(url, clock=VirtualClock())
    assert rule in str(caught.value)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ConfigError) as bad_config:
        parse_config({"Settings": {"Store": url}}, "esm.yaml")
    assert str(bad_config.value) == f"esm.yaml: Settings.Store: {caught.value}"


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://a:7000,b:7001",
        "rediss+cluster://a:7000?ssl_ca_certs=/ca.pem",
        "redis+sentinel://a:26379,b/main/0",
        "rediss+sentinel://a/main",
    ],
)
def test_config_accepts_cluster_and_sentinel_urls(url: str) -> None:
    assert parse_config({"Settings": {"Store": url}}).settings.store == url


async def test_cluster_client_is_redis_py_s_on_every_startup_node() -> None:
    store = Store.from_url(
        "rediss+cluster://app:pw@a:7000,b:7001?socket_timeout=2&ssl_cert_reqs=none",
        clock=VirtualClock(),
    )
    try:
        client = store.redis
        assert isinstance(client, RedisCluster)
        nodes = client.nodes_manager.startup_nodes
        assert sorted(nodes) == ["a:7000", "b:7001"]
        assert nodes["a:7000"].connection_class is SSLConnection
        assert nodes["a:7000"].max_connections == MAX_CONNECTIONS  # per node
        kwargs: Any = nodes["a:7000"].connection_kwargs
        assert (kwargs["username"], kwargs["password"]) == ("app", "pw")
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.0, 5.0)
        assert kwargs["ssl_cert_reqs"] == "none"
        assert kwargs["decode_responses"] is True
        assert (
            store.url
            == "rediss+cluster://app:***@a:7000,b:7001?socket_timeout=2&ssl_cert_reqs=none"
        )
        assert not store.in_process
    finally:
        await store.aclose()


async def test_sentinel_client_asks_the_sentinels_for_the_primary() -> None:
    store = Store.from_url(
        "rediss+sentinel://app:pw@s1:5000,s2/main/2?sentinel_password=sp&ssl_cert_reqs=none",
        clock=VirtualClock(),
    )
    try:
        pool: Any = store.redis.connection_pool
        assert (pool.service_name, pool.is_master) == ("main", True)
        # past max_connections a command waits for a connection, as on one Redis
        assert isinstance(pool, BlockingConnectionPool)
        assert (pool.max_connections, pool.timeout) == (MAX_CONNECTIONS, POOL_TIMEOUT_S)
        kwargs = pool.connection_kwargs
        assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (2, "app", "pw")
        assert kwargs["ssl_cert_reqs"] == "none"
        assert type(pool.make_connection()).__name__ == "SentinelManagedSSLConnection"
        sentinels = pool.sentinel_manager.sentinels
        addresses = [
            (
                s.connection_pool.connection_kwargs["host"],
                s.connection_pool.connection_kwargs["port"],
            )
            for s in sentinels
        ]
        assert addresses == [("s1", 5000), ("s2", 26379)]
        sentinel_kwargs = sentinels[0].connection_pool.connection_kwargs
        assert sentinel_kwargs["password"] == "sp"
        assert sentinel_kwargs["ssl_cert_reqs"] == "none"
    finally:
        await store.aclose()
        await store.aclose()  # safe twice
