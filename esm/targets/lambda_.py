"""``lambda:arn:aws:lambda:…``: a real Lambda function, through Lambda's Invoke."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from esm.arns import Arn
from esm.aws import AwsClients
from esm.outcomes import LATEST, FunctionError, InvokeFailed, Ok, Outcome, Throttled
from esm.targets.base import Call


class LambdaTarget:
    """``lambda:arn:aws:lambda:region:account:function:name[:qualifier]``: Lambda's Invoke with
    ``RequestResponse`` (esm runs the async side itself), through the shared aiobotocore client.

    ``TooManyRequestsException`` is ``Throttled`` (its ``Reason`` kept); every other API error
    (``ResourceNotFoundException``, ``AccessDeniedException``, ``ServiceException`` …) and every
    connection error is ``InvokeFailed``: the function did not run.

    The shared client retries first (AwsClients: standard mode, 3 attempts, throttles included,
    with up to ~3 s of backoff), inside this function's ``Timeout``: with a Timeout of 1 or 2 s a
    throttled Invoke can surface as a timeout. Its read timeout (70 s) also caps a Lambda call.
    """

    gate: asyncio.Lock | None = None

    def __init__(self, arn: str, aws: AwsClients) -> None:
        self._arn = arn
        self._region = Arn.parse(arn).region
        self._aws = aws

    async def call(self, call: Call) -> Outcome:
        kwargs: dict[str, Any] = {
            "FunctionName": self._arn,
            "InvocationType": "RequestResponse",
            "Payload": call.payload,
        }
        if call.client_context:
            kwargs["ClientContext"] = call.client_context
        try:
            client = await self._aws.client("lambda", self._region)
            resp = await client.invoke(**kwargs)
            async with resp["Payload"] as stream:
                body: bytes = await stream.read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", ""), error.get("Message", "")
            if code == "TooManyRequestsException":
                return Throttled(str(exc.response.get("Reason") or message or code))
            return InvokeFailed(f"{code}: {message}")
        except (BotoCoreError, aiohttp.ClientError) as exc:
            return InvokeFailed(f"{type(exc).__name__}: {exc}")
        version = str(resp.get("ExecutedVersion") or LATEST)
        kind = resp.get("FunctionError")
        if kind is not None:
            return FunctionError(body, "Handled" if kind == "Handled" else "Unhandled", version)
        return Ok(body, version)

    async def aclose(self) -> None:
        """The aiobotocore client belongs to AwsClients."""
