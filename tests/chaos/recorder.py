"""A recording function: an aiohttp app that ``esm run``'s mappings and async invocations target
through ``http://127.0.0.1:<port>/<source>``, and that writes down every item it receives.

Items are JSON objects ``{"key": …, "id": …}``: an SQS message's body, a Kinesis record's data,
an async event's payload; a DynamoDB record's ``NewImage`` holds them as attributes ``pk`` and
``id``. A delivery is recorded when its request arrives (the function *got* it, whatever happens
to the daemon next), with the monotonic time and the invocation's number; the answer (200, an
empty object: the whole batch succeeded) comes ``delay_s`` later, so kills land while batches
are in flight.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Delivery:
    source: str
    key: str
    id: str
    at: float  # time.monotonic() when the request arrived
    invocation: int


def items_of(event: Any) -> list[tuple[str, str]]:
    """``(key, id)`` of each item an event carries, in the event's order."""
    if not (isinstance(event, dict) and "Records" in event):
        return [(str(event["key"]), str(event["id"]))]
    out = []
    for record in event["Records"]:
        source = record.get("eventSource")
        if source == "aws:sqs":
            item = json.loads(record["body"])
        elif source == "aws:kinesis":
            item = json.loads(base64.b64decode(record["kinesis"]["data"]))
        elif source == "aws:dynamodb":
            image = record["dynamodb"]["NewImage"]
            item = {"key": image["pk"]["S"], "id": image["id"]["S"]}
        else:
            raise ValueError(f"a record of an unknown source: {record}")
        out.append((str(item["key"]), str(item["id"])))
    return out


class Recorder:
    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.deliveries: list[Delivery] = []
        self.invocations = 0
        self.errors: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{source}", self._invoke)
        return app

    async def _invoke(self, request: web.Request) -> web.Response:
        source = request.match_info["source"]
        body = await request.read()
        now = time.monotonic()
        self.invocations += 1
        try:
            items = items_of(json.loads(body))
        except (ValueError, KeyError, TypeError) as exc:
            self.errors.append(f"{source}: {exc!r}: {body[:200]!r}")
            return web.json_response({"errorMessage": str(exc)}, status=500)
        self.deliveries += [
            Delivery(source, key, item, now, self.invocations) for key, item in items
        ]
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.json_response({})

    def delivered(self, source: str) -> list[tuple[str, str]]:
        """``(key, id)`` received for ``source``, in the order they arrived."""
        return [(d.key, d.id) for d in self.deliveries if d.source == source]

    def ids(self, source: str) -> set[str]:
        return {d.id for d in self.deliveries if d.source == source}
