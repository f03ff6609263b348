"""Real Redis Cluster and Sentinel deployments on loopback, for tests: ``redis-server`` processes
on free ports in a temporary folder, started, formed and stopped by the test session.

- :class:`LocalCluster`: primaries (3 by default), each with ``replicas`` replicas, made one
  cluster by ``redis-cli --cluster create … --cluster-yes`` with a short
  ``cluster-node-timeout``, so a killed primary's replica is promoted within about a second.
- :class:`LocalSentinel`: one primary, one replica and one sentinel (quorum 1).

Nothing is persisted (``--save '' --appendonly no``). A missing ``redis-server`` or
``redis-cli`` FAILS the test (CI must have them), never skips it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

HOST = "127.0.0.1"
KINDS = ("redis", "cluster", "sentinel")


def on_redis(*kinds: str) -> pytest.MarkDecorator:
    """Run a test (or every test of a class) once per Redis kind, through the ``store_url``
    fixture (tests/conftest.py): ``redis`` the shared standalone one, ``cluster`` the session's
    Redis Cluster, ``sentinel`` the session's Sentinel set-up."""
    assert kinds and set(kinds) <= set(KINDS), kinds
    return pytest.mark.parametrize("store_url", kinds, indirect=True)


NODE_TIMEOUT_MS = 1000


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (apt-get install redis-server)", pytrace=False)
    return found


def free_port(*, bus: bool = False) -> int:
    """A free loopback port (with ``bus``: one whose cluster bus port, +10000, is free too)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if not bus:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind((HOST, port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair for a cluster node")


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy (Redis errors, and LookupError from
    :meth:`LocalCluster.shard_of`, count as not yet)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except (redis.RedisError, LookupError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        time.sleep(0.05)


class Node:
    """One ``redis-server`` process (a data node or a sentinel) on a fixed loopback port."""

    def __init__(self, folder: Path, argv: list[str], port: int, name: str) -> None:
        self.folder = folder
        self.argv = argv
        self.port = port
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(self.argv, cwd=self.folder, stdout=log, stderr=log)
        log.close()
        wait_for(self._answers, f"{self.name} on port {self.port}", timeout_s=10)

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"{self.name} on port {self.port} exited: {self.proc.returncode}")
        with self.client(socket_timeout=0.5) as c:
            return bool(c.ping())

    def client(self, **kwargs: Any) -> redis.Redis:
        options: dict[str, Any] = {"decode_responses": True, "socket_timeout": 2, **kwargs}
        return redis.Redis(host=HOST, port=self.port, socket_connect_timeout=0.5, **options)

    def kill(self) -> None:
        """``kill -9``: clients see their connections reset, nothing is handed over."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def data_node(folder: Path, port: int, name: str, *extra: str) -> Node:
    argv = [
        binary("redis-server"),
        "--bind",
        HOST,
        "--port",
        str(port),
        "--dir",
        str(folder),
        "--save",
        "",
        "--appendonly",
        "no",
        "--repl-diskless-sync-delay",  # a replica syncs at once (the default waits 5 s)
        "0",
        *extra,
    ]
    return Node(folder, argv, port, name)


# -- Redis Cluster ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """One primary, its replicas and the slot ranges it serves, as the cluster reports them."""

    primary: Node
    replicas: tuple[Node, ...]
    slots: tuple[tuple[int, int], ...]

    def serves(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slots)


class LocalCluster:
    """A Redis Cluster of ``primaries`` primaries with ``replicas`` replicas each."""

    def __init__(
        self,
        folder: Path,
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = NODE_TIMEOUT_MS,
    ) -> None:
        self.folder = folder
        self.replicas_per_primary = replicas
        self.nodes: list[Node] = []
        for i in range((1 + replicas) * primaries):
            port = free_port(bus=True)
            self.nodes.append(
                data_node(
                    folder / f"node-{port}",
                    port,
                    f"cluster node {i}",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    # a replica that lost its primary a while ago may still be promoted
                    "--cluster-replica-validity-factor",
                    "0",
                )
            )

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a startup node."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                binary("redis-cli"),
                "--cluster",
                "create",
                *(n.address for n in self.nodes),
                "--cluster-replicas",
                str(self.replicas_per_primary),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_healthy()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def node_at(self, port: int) -> Node:
        for node in self.nodes:
            if node.port == port:
                return node
        raise AssertionError(f"no node of this cluster on port {port}")  # not StopIteration

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.alive]

    def shards(self) -> list[Shard]:
        """``CLUSTER SHARDS`` from a live node: who serves which slots now."""
        with self.live()[0].client() as c:
            reply: Any = c.execute_command("CLUSTER", "SHARDS")
        out: list[Shard] = []
        for shard in reply:  # redis-py parses each shard into a dict
            slots = shard["slots"]
            ranges = tuple((int(slots[i]), int(slots[i + 1])) for i in range(0, len(slots), 2))
            nodes = [n for n in shard["nodes"] if n["health"] != "fail"]
            primary = [self.node_at(int(n["port"])) for n in nodes if n["role"] == "master"]
            replicas = tuple(self.node_at(int(n["port"])) for n in nodes if n["role"] != "master")
            if ranges and primary:
                out.append(Shard(primary[0], replicas, ranges))
        return out

    def keyslot(self, key: str) -> int:
        """``CLUSTER KEYSLOT``: the cluster's own answer, not a local CRC."""
        with self.live()[0].client() as c:
            return int(c.execute_command("CLUSTER", "KEYSLOT", key))

    def shard_of(self, key: str) -> Shard:
        """The shard serving ``key`` now; LookupError while its slot has no live primary (a
        failover under way)."""
        slot = self.keyslot(key)
        for shard in self.shards():
            if shard.serves(slot):
                return shard
        raise LookupError(f"slot {slot} has no live primary")

    def primary_of(self, key: str) -> Node:
        return self.shard_of(key).primary

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Every live node says ``cluster_state:ok``, every slot has a primary, and every
        replica is linked to its primary and caught up."""

        def healthy() -> bool:
            for node in self.live():
                with node.client() as c:
                    if "cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                        return False
                    info = c.info("replication")
                    if info["role"] == "slave" and info["master_link_status"] != "up":
                        return False
            covered = sum(hi - lo + 1 for s in self.shards() for lo, hi in s.slots)
            return covered == 16384

        wait_for(healthy, "the cluster to be healthy", timeout_s)

    def restart(self, node: Node) -> None:
        """Start a killed node again: it rejoins (as a replica of whoever took its slots)."""
        node.start()
        self.wait_healthy()


# -- Sentinel --------------------------------------------------------------------------------------

SERVICE = "esm"


class LocalSentinel:
    """A primary, one replica and one sentinel watching them (quorum 1)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.service = SERVICE
        first, second = free_port(), free_port()
        self.servers = [
            data_node(folder / f"server-{first}", first, "sentinel's first primary"),
            data_node(
                folder / f"server-{second}",
                second,
                "sentinel's first replica",
                "--replicaof",
                HOST,
                str(first),
            ),
        ]
        port = free_port()
        conf = folder / f"sentinel-{port}" / "sentinel.conf"
        conf.parent.mkdir(parents=True)
        conf.write_text(
            f"port {port}\n"
            f"bind {HOST}\n"
            f"dir {conf.parent}\n"
            f"sentinel monitor {SERVICE} {HOST} {first} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} {NODE_TIMEOUT_MS}\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        self.sentinel = Node(
            conf.parent, [binary("redis-server"), str(conf), "--sentinel"], port, "sentinel"
        )

    @property
    def url(self) -> str:
        return f"redis+sentinel://{self.sentinel.address}/{self.service}"

    def start(self) -> None:
        for node in (*self.servers, self.sentinel):
            node.start()
        self.wait_healthy()

    def stop(self) -> None:
        for node in (self.sentinel, *self.servers):
            node.kill()

    def primary(self) -> Node:
        """The primary the sentinel names now."""
        with self.sentinel.client() as c:
            _host, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return next(n for n in self.servers if n.port == int(port))

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """The sentinel's primary says it is a primary with one replica linked and caught up,
        and the sentinel knows that replica (it could fail over to it)."""

        def healthy() -> bool:
            primary = self.primary()
            with primary.client() as c:
                info = c.info("replication")
            with self.sentinel.client() as c:
                replicas = c.execute_command("SENTINEL", "REPLICAS", self.service)
            known = list(replicas)  # redis-py parses each into a dict
            return bool(
                info["role"] == "master"
                and info["connected_slaves"] == 1
                and info["slave0"]["state"] == "online"
                and info["slave0"]["offset"] == info["master_repl_offset"]
                and [r["flags"] for r in known] == ["slave"]
                and known[0]["master-link-status"] == "ok"
            )

        wait_for(healthy, "the sentinel's primary and replica", timeout_s)
