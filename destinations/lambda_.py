"""A Lambda function as destination: an asynchronous invoke with the record as payload.

A function esm serves itself (its name is in the engine's ``local_functions``) goes through the
engine's own async queue (``local_invoke``); any other goes to Lambda's Invoke API with
``InvocationType=Event`` (endpoint, region and credentials from :class:`~esm.aws.AwsClients`).
A local function is matched by name only: its ARN's qualifier, region and account are not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from esm.arns import Arn
from esm.aws import AwsClients
from esm.clock import Clock
from esm.destinations.base import DeliveryError, LocalInvoke, deliver, encode, translate_errors
from esm.errors import EsmError, LambdaApiError


class LambdaDestination:
    def __init__(
        self,
        arn: Arn,
        name: str,
        *,
        aws: AwsClients,
        clock: Clock,
        local_invoke: LocalInvoke | None = None,
    ) -> None:
        self.target = str(arn)
        self.name = name
        self._region = arn.region
        self._aws = aws
        self._clock = clock
        self._local_invoke = local_invoke

    @property
    def local(self) -> bool:
        return self._local_invoke is not None

    async def send(self, record: Mapping[str, Any], *, s3_key: str | None = None) -> None:
        payload = encode(self.target, record)
        attempt = self._invoke_local if self._local_invoke is not None else self._invoke_remote
        await deliver(self.target, self._clock, lambda: attempt(payload))

    async def _invoke_local(self, payload: bytes) -> None:
        assert self._local_invoke is not None
        try:
            await self._local_invoke(self.name, payload)
        except LambdaApiError as exc:
            raise DeliveryError(
                self.target, f"{exc.name}: {exc.message}", retriable=exc.retriable
            ) from exc
        except EsmError as exc:
            raise DeliveryError(self.target, f"{type(exc).__name__}: {exc}") from exc

    async def _invoke_remote(self, payload: bytes) -> None:
        with translate_errors(self.target):
            client = await self._aws.client("lambda", self._region)
            resp = await client.invoke(
                FunctionName=self.target, InvocationType="Event", Payload=payload
            )
            async with resp["Payload"] as stream:  # empty for Event; read to free the connection
                await stream.read()

    async def aclose(self) -> None:
        """The aiobotocore client belongs to AwsClients."""
