"""aiobotocore clients, one per (service, region), shared by connectors, targets, destinations.

Endpoints, region and credentials come from botocore's usual chain (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_SQS``, profiles, ``AWS_ACCESS_KEY_ID`` …); ``endpoint_url`` overrides it for
every service (``--embedded`` points everything at its in-process emulator).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from esm._version import __version__
from esm.awsjson import JsonClient, endpoint_proxy
from esm.http1 import Pool

RAW_TIME_SERVICES = frozenset({"kinesis", "dynamodbstreams"})


def _raw_timestamp(value: Any) -> Any:
    return value


async def _ssl_context(client: Any, url: str) -> ssl.SSLContext | None:
    """For an ``https`` endpoint, the TLS settings of the aiobotocore client's own HTTP session:
    its CA bundle (``AWS_CA_BUNDLE``, the profile's ``ca_bundle``), ``verify=False`` and client
    certificate; the system's defaults where that session does not say (its API is private)."""
    if not url.startswith("https:"):
        return None
    build = getattr(getattr(client._endpoint, "http_session", None), "_build_ssl_contexts", None)
    if build is None:
        return await asyncio.to_thread(ssl.create_default_context)
    # loading a CA bundle reads files: off the event loop, as aiobotocore does
    context, _ = await asyncio.to_thread(build, None)
    return context  # type: ignore[no-any-return]


class AwsClients:
    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        session: AioSession | None = None,
        max_pool_connections: int = 256,
    ) -> None:
        self._session = session or get_session()
        # Stream reads: botocore would turn every record's arrival time into a datetime (through
        # dateutil, ~15 µs a record) only for esm to turn it back into epoch seconds. A session
        # of its own (the setting applies to every client of a session) leaves them numbers.
        self._raw_time_session = get_session()
        self._raw_time_session.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=_raw_timestamp
        )
        self._endpoint_url = endpoint_url
        # A fixed user agent: botocore otherwise rebuilds its feature-tracking one twice per call
        # (~0.2 ms, most of a receive's own CPU besides parsing).
        agent = f"esm/{__version__}"
        self._agent = agent
        self._max_pool_connections = max_pool_connections
        self._config = AioConfig(
            user_agent=agent,
            max_pool_connections=max_pool_connections,
            retries={"total_max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=70,  # above SQS's 20 s long poll
        )
        # Lambda Invoke: the function's Timeout bounds the call, and a throttle must come back
        # as a throttle at once (the engine has its own backoff), not be retried inside it.
        self._service_configs = {
            "lambda": AioConfig(
                user_agent=agent,
                max_pool_connections=max_pool_connections,
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=960,
            )
        }
        self._clients: dict[tuple[str, str], Any] = {}
        self._json: dict[tuple[str, str], JsonClient] = {}
        self._http: list[Pool | aiohttp.ClientSession] = []
        self._lock = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()

    @property
    def endpoint_url(self) -> str | None:
        return self._endpoint_url

    async def client(self, service: str, region: str) -> Any:
        key = (service, region)
        found = self._clients.get(key)
        if found is not None:
            return found
        async with self._lock:
            if key not in self._clients:
                kwargs: dict[str, Any] = {
                    "region_name": region or None,
                    "config": self._service_configs.get(service, self._config),
                }
                if self._endpoint_url:
                    kwargs["endpoint_url"] = self._endpoint_url
                session = self._raw_time_session if service in RAW_TIME_SERVICES else self._session
                cm = session.create_client(service, **kwargs)
                self._clients[key] = await self._stack.enter_async_context(cm)
            return self._clients[key]

    async def json(self, service: str, region: str) -> JsonClient:
        """The lean JSON-protocol path (:mod:`esm.awsjson`) for the hot calls, with the
        endpoint, region and credentials of :meth:`client` for the same service and region."""
        key = (service, region)
        found = self._json.get(key)
        if found is not None:
            return found
        client = await self.client(service, region)
        async with self._lock:
            if key not in self._json:
                # a connection pool per service and region, as botocore keeps one per client:
                # SQS long polls holding every connection must not hold up GetRecords. SQS's has
                # no limit: each poller's long poll holds a connection for up to 20 s, and a
                # poller waiting for a connection would leave its queue unwatched (the pollers
                # themselves are bounded by each mapping's scaling)
                limit = 0 if service == "sqs" else self._max_pool_connections
                url = client.meta.endpoint_url
                http: Pool | aiohttp.ClientSession
                if endpoint_proxy(url):  # esm.http1 speaks no proxy protocol; aiohttp does
                    http = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=limit),
                        # sock_connect, not connect: the latter also bounds the wait for a free
                        # connection of the pool, which long polls may hold for 20 s each
                        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=70),
                        skip_auto_headers=("User-Agent",),
                    )
                else:
                    http = Pool(
                        url,
                        ssl_context=await _ssl_context(client, url),
                        limit=limit,
                        connect_timeout=5,
                        read_timeout=70,  # above SQS's 20 s long poll
                    )
                self._http.append(http)
                session = self._raw_time_session if service in RAW_TIME_SERVICES else self._session
                self._json[key] = JsonClient.from_botocore(
                    client,
                    http=http,
                    credentials=await session.get_credentials(),
                    user_agent=self._agent,
                )
            return self._json[key]

    async def aclose(self) -> None:
        self._clients.clear()
        self._json.clear()
        for http in self._http:
            await http.close()
        self._http.clear()
        await self._stack.aclose()
