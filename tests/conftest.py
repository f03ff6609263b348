"""Fixtures shared by both tiers: the AWS emulator over HTTP (moto's server) and AWS clients."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from esm.aws import AwsClients

if TYPE_CHECKING:
    from tests.daemon import Daemon
    from tests.redis_cluster import LocalCluster, LocalSentinel

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "the fault-injection suite (tests/chaos)")
    group.addoption(
        "--chaos-scale",
        type=int,
        default=1,
        help="how much each chaos scenario does: kills, restarts, items (1: CI's small run)",
    )
    group.addoption(
        "--chaos-seed",
        type=int,
        default=None,
        help="the seed of the chaos scenarios' random choices (default: a new one, printed)",
    )


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's server on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
async def aws(moto_url: str) -> AsyncIterator[AwsClients]:
    clients = AwsClients(endpoint_url=moto_url)
    yield clients
    await clients.aclose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis the integration tier runs against (``ESM_TEST_REDIS_URL``, default
    127.0.0.1:6379). A Redis that does not answer FAILS the test: CI treats it as a failure."""
    import redis

    url = os.environ.get("ESM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis does not answer at {url}: {exc}", pytrace=False)
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def kinesalite_url() -> Iterator[str]:
    """kinesalite (Kinesis with resharding) on a free loopback port: see tests/kinesalite.py."""
    from tests.kinesalite import serve

    with serve() as url:
        yield url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real Redis Cluster on loopback for the whole session: 3 primaries with one replica each
    (tests/redis_cluster.py). Tests that kill nodes start a cluster of their own."""
    from tests.redis_cluster import LocalCluster

    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSentinel]:
    """A primary, its replica and a sentinel on loopback, for the whole session."""
    from tests.redis_cluster import LocalSentinel

    sentinel = LocalSentinel(tmp_path_factory.mktemp("redis-sentinel"))
    try:
        sentinel.start()
        yield sentinel
    finally:
        sentinel.stop()


@pytest.fixture
def store_url(request: pytest.FixtureRequest) -> str:
    """The ``Settings.Store`` URL a test runs on: the shared standalone Redis (``redis_url``),
    unless the test is parametrized with ``tests.redis_cluster.on_redis("redis", "cluster",
    "sentinel")``."""
    kind = getattr(request, "param", "redis")
    if kind == "redis":
        return str(request.getfixturevalue("redis_url"))
    if kind == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    if kind == "sentinel":
        return str(request.getfixturevalue("redis_sentinel").url)
    raise AssertionError(f"unknown Redis kind {kind!r}")


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """`esm run` processes a test starts (tests.daemon); killed at the end."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()
