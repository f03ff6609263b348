"""An HTTP(S) endpoint: POST the record as JSON; any 2xx is delivered.

429 and 5xx are retried, other statuses are permanent failures. One aiohttp session per
destination, opened on first send and closed by :meth:`HttpDestination.aclose`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from esm.clock import Clock
from esm.destinations.base import DeliveryError, deliver, encode, translate_errors

CONNECT_TIMEOUT_S = 5.0
TOTAL_TIMEOUT_S = 30.0
_HEADERS = {"Content-Type": "application/json"}


class HttpDestination:
    def __init__(self, url: str, *, clock: Clock) -> None:
        self.target = url
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def send(self, record: Mapping[str, Any], *, s3_key: str | None = None) -> None:
        body = encode(self.target, record)
        await deliver(self.target, self._clock, lambda: self._post(body))

    async def _post(self, body: bytes) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=TOTAL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
            )
        with translate_errors(self.target):
            async with self._session.post(self.target, data=body, headers=_HEADERS) as resp:
                status = resp.status
                text = (await resp.read())[:200].decode("utf-8", errors="replace")
        if not 200 <= status < 300:
            raise DeliveryError(
                self.target,
                f"HTTP {status}: {text}".rstrip(": "),
                retriable=status == 429 or status >= 500,
            )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
