"""Store URLs: which Redis deployment esm talks to, checked and parsed without connecting.

::

    redis://[user:pass@]host[:port][/db][?options]      one Redis (redis-py's URL syntax)
    rediss://…                                           the same over TLS
    unix://[user:pass@]/path/to/socket[?db=…]            one Redis on a Unix socket
    redis+cluster://[user:pass@]host:port[,host:port…][?options]
    rediss+cluster://…                                   a Redis Cluster (over TLS)
    redis+sentinel://[user:pass@]host:port[,host:port…]/service[/db][?options]
    rediss+sentinel://…                                  the primary Sentinel names (over TLS)
    memory://[name]                                      fakeredis in this process

A cluster URL lists startup nodes: any reachable one is enough, the client learns the others
from the cluster (more than one helps when one is down at start). A Sentinel URL lists
sentinels and the name they monitor the primary under; esm writes to that primary only and
follows Sentinel to the new one after a failover. ``user:pass`` authenticate to the Redis nodes;
sentinels that require a password of their own take ``sentinel_username`` /
``sentinel_password`` options. Port defaults: 6379 for cluster nodes, 26379 for sentinels.

Options of cluster and Sentinel URLs (query string; durations in seconds):
``socket_timeout``, ``socket_connect_timeout``, ``max_connections`` (per node), and for TLS
``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``
(``none`` | ``optional`` | ``required``), ``ssl_check_hostname`` (``true`` | ``false``).

Pure: nothing here imports redis or does I/O; :mod:`esm.store` builds the clients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

URL_RULE: Final = (
    "a store URL is redis://…, rediss://…, unix://…, "
    "redis+cluster://host:port[,host:port…], "
    "redis+sentinel://host:port[,host:port…]/service[/db] (rediss+… over TLS) "
    "or memory://[name]"
)

STANDALONE_SCHEMES: Final = ("redis", "rediss", "unix")
CLUSTER_SCHEMES: Final = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES: Final = ("redis+sentinel", "rediss+sentinel")
MEMORY_SCHEME: Final = "memory"

CLUSTER_PORT: Final = 6379
SENTINEL_PORT: Final = 26379


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be > 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be ≥ 1")
    return value


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise ValueError("must be true or false")


def _cert_reqs(text: str) -> str:
    if text not in ("none", "optional", "required"):
        raise ValueError("must be none, optional or required")
    return text


_OPTIONS: Final[Mapping[str, Callable[[str], Any]]] = {
    "socket_timeout": _positive_float,
    "socket_connect_timeout": _positive_float,
    "max_connections": _positive_int,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": _cert_reqs,
    "ssl_check_hostname": _bool,
}
_SENTINEL_OPTIONS: Final = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """A ``redis+cluster://`` URL: startup nodes and how to connect to every node."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """A ``redis+sentinel://`` URL: the sentinels, the monitored service, the database."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


def check_store_url(url: str) -> None:
    """ValueError naming the rule unless ``url`` is a store URL esm can use. The message never
    holds the URL (it may carry a password)."""
    scheme = scheme_of(url)
    if scheme in CLUSTER_SCHEMES:
        parse_cluster_url(url)
    elif scheme in SENTINEL_SCHEMES:
        parse_sentinel_url(url)
    elif scheme not in (*STANDALONE_SCHEMES, MEMORY_SCHEME) or "://" not in url:
        raise ValueError(f"store URL with scheme {scheme!r}: {URL_RULE}")


def parse_cluster_url(url: str) -> ClusterUrl:
    """``redis+cluster://[user:pass@]host:port[,host:port…][/][?options]``."""
    scheme, (username, password), nodes, path, options = _split(url, CLUSTER_PORT)
    if path.strip("/") not in ("", "0"):
        raise ValueError(f"{scheme} URL: a Redis Cluster has only database 0 (path {path!r})")
    return ClusterUrl(
        nodes=nodes,
        tls=scheme.startswith("rediss"),
        username=username,
        password=password,
        options=_options(scheme, options, ()),
    )


def parse_sentinel_url(url: str) -> SentinelUrl:
    """``redis+sentinel://[user:pass@]host:port[,host:port…]/service[/db][?options]``."""
    scheme, (username, password), sentinels, path, query = _split(url, SENTINEL_PORT)
    parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
    if not 1 <= len(parts) <= 2 or not parts[0]:
        raise ValueError(
            f"{scheme} URL: the path must name the service Sentinel monitors, "
            "/service or /service/db (e.g. /mymaster/0)"
        )
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"{scheme} URL: the database must be a number (got {parts[1]!r})")
        db = int(parts[1])
    options = _options(scheme, query, _SENTINEL_OPTIONS)
    return SentinelUrl(
        sentinels=sentinels,
        service=parts[0],
        db=db,
        tls=scheme.startswith("rediss"),
        username=username,
        password=password,
        sentinel_username=options.pop("sentinel_username", None),
        sentinel_password=options.pop("sentinel_password", None),
        options=options,
    )


def _split(
    url: str, default_port: int
) -> tuple[str, tuple[str | None, str | None], tuple[tuple[str, int], ...], str, str]:
    """(scheme, (user, password), [(host, port)…], path, query) of a multi-host URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if parts.fragment:
        raise ValueError(f"{scheme} URL: no #fragment allowed")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, sep, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    hosts = tuple(_host_port(scheme, item, default_port) for item in hostlist.split(","))
    return scheme, (username, password), hosts, parts.path, parts.query


def _host_port(scheme: str, item: str, default_port: int) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
        if rest and not rest.startswith(":"):
            host = ""
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"{scheme} URL: every node must be host:port (got {item!r})")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{scheme} URL: port of {host!r} must be 1-65535 (got {port_text!r})")
    return host, int(port_text)


def _options(scheme: str, query: str, extra: tuple[str, ...]) -> dict[str, Any]:
    out = _parse_options(scheme, query, extra)
    tls_only = sorted(name for name in out if name.startswith("ssl_"))
    if tls_only and not scheme.startswith("rediss"):
        raise ValueError(f"{scheme} URL: {', '.join(tls_only)} need TLS (rediss+…)")
    return out


def _parse_options(scheme: str, query: str, extra: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, text in parse_qsl(query, keep_blank_values=True):
        if name in extra:
            out[name] = text
            continue
        parser = _OPTIONS.get(name)
        if parser is None:
            known = ", ".join(sorted((*_OPTIONS, *extra)))
            raise ValueError(f"{scheme} URL: unknown option {name!r} (options: {known})")
        try:
            out[name] = parser(text)
        except ValueError as exc:
            reason = str(exc) if str(exc).startswith("must") else "must be a number"
            raise ValueError(f"{scheme} URL: option {name}: {reason}") from None
    return out
