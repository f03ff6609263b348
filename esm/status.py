"""What the daemon is doing now, as JSON (``GET /esm/status``) and as a page (``GET /ui``).

``GET /esm/status`` (``?series=1`` adds the sparkline buckets)::

    {"time": 1714567890.1, "owner": "host-123-ab12cd",
     "mappings": [{"uuid", "function", "source", "kind": "sqs" | "kinesis" | "dynamodb",
                   "state": "Enabled", "health": "Enabled" | "Disabled" | "Failing: <why>",
                   "batch_size", "concurrency" (SQS lanes / shards consumed here), "in_flight",
                   "backlog": {"visible", "in_flight"} (SQS, approximate)
                            | {"shards": [{"shard", "millis_behind", "checkpoint", "in_flight"}],
                               "iterator_age_ms"} (streams),
                   "last_result": LastProcessingResult,
                   "last_minute": {"invocations", "records", "errors", "throttles", "sent_on",
                                   "dropped", "delivery_errors"},
                   "recent": [the last invocations, newest first], "series": […]}],
     "functions": [{"function", "in_flight", "reserved_concurrency",
                    "async": {"ready", "claimed", "delayed", "next_due": [{"request_id", "due"}],
                              "oldest_age_s", "in_flight", "destination_failures",
                              "dead_letter_errors"} | {"error": "<why>"},
                    "last_minute", "recent", "series"}]}

Each invocation in ``recent`` is :meth:`esm.invocation_log.LoggedInvocation.to_json` (with the
batch's record ids, and those reported failed). ``GET /esm/invocations/{id}`` finds a recent
invocation by request id or by a record id (message id, sequence number): "where did message X
go". A source or store that does not answer within :data:`SOURCE_TIMEOUT_S` gives an ``error``
in its place, never a hung status.

``GET /ui`` serves ``esm/ui/index.html``: plain HTML and JavaScript from the package, no build
step, no CDN; it polls ``/esm/status?series=1``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from importlib import resources
from typing import Any, Final, Protocol, runtime_checkable

import orjson
from aiohttp import web

from esm.async_queue import AsyncQueue
from esm.async_worker import AsyncWorker
from esm.clock import Clock
from esm.functions import Function
from esm.invocation_log import Bucket, InvocationLog, LoggedInvocation
from esm.mappings import MappingRuntime
from esm.metrics import Metrics
from esm.queue_poller import QueuePoller
from esm.stream_poller import StreamPoller

SOURCE_TIMEOUT_S = 2.0
RECENT_SHOWN = 8
SERIES_S = 300.0


class StatusHost(Protocol):
    """What the status needs of the engine."""

    clock: Clock
    metrics: Metrics
    functions: dict[str, Function]
    async_queue: AsyncQueue
    async_worker: AsyncWorker
    owner: str

    @property
    def mappings(self) -> dict[str, MappingRuntime]: ...


@runtime_checkable
class _HasBacklog(Protocol):
    async def backlog(self) -> tuple[int, int]: ...


async def status(host: StatusHost, *, series: bool = False) -> dict[str, Any]:
    now = host.clock.now()
    runtimes = sorted(host.mappings.items())
    mappings = await asyncio.gather(*(_mapping(host, rt, now, series) for _, rt in runtimes))
    functions = await asyncio.gather(
        *(_function(host, fn, now, series) for _, fn in sorted(host.functions.items()))
    )
    return {"time": now, "owner": host.owner, "mappings": mappings, "functions": functions}


async def _mapping(
    host: StatusHost, rt: MappingRuntime, now: float, series: bool
) -> dict[str, Any]:
    m = rt.config
    poller = rt.poller
    out: dict[str, Any] = {
        "uuid": rt.uuid,
        "function": rt.function_name,
        "source": m.event_source_arn,
        "kind": m.source,
        "state": rt.state,
        "health": rt.health,
        "batch_size": m.batch_size,
        "concurrency": 0,
        "in_flight": 0,
        "backlog": {},
        "last_result": rt.last_processing_result,
    }
    running = rt.task is not None and not rt.task.done()
    if isinstance(poller, QueuePoller):
        out["concurrency"] = poller.concurrency if running else 0
        out["in_flight"] = poller.in_flight
        out["backlog"] = await _queue_backlog(poller)
    elif isinstance(poller, StreamPoller):
        consumers = poller.consumers
        out["concurrency"] = len(consumers)
        out["in_flight"] = sum(c.in_flight for c in consumers.values())
        labels = {"function_name": rt.function_name, "uuid": rt.uuid}
        out["backlog"] = {
            "shards": [
                {
                    "shard": sid,
                    "millis_behind": c.millis_behind,
                    "checkpoint": c.saved,
                    "in_flight": c.in_flight,
                }
                for sid, c in consumers.items()
            ],
            "iterator_age_ms": host.metrics.get("IteratorAge", **labels),
        }
    out.update(_activity(host.metrics.invocations, rt.uuid, now, series))
    return out


async def _queue_backlog(poller: QueuePoller) -> dict[str, Any]:
    connector = poller.connector
    if not isinstance(connector, _HasBacklog):
        return {}
    try:
        visible, hidden = await asyncio.wait_for(connector.backlog(), SOURCE_TIMEOUT_S)
    except Exception as exc:  # the source's trouble is shown, not raised
        return {"error": str(exc) or type(exc).__name__}
    return {"visible": visible, "in_flight": hidden}


async def _function(host: StatusHost, fn: Function, now: float, series: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "function": fn.name,
        "in_flight": fn.in_flight,
        "reserved_concurrency": fn.reserved,
    }
    labels = {"function_name": fn.name}
    queue: dict[str, Any]
    try:
        queue = await asyncio.wait_for(host.async_queue.function_status(fn.name), SOURCE_TIMEOUT_S)
    except Exception as exc:  # the store's trouble is shown, not raised
        queue = {"error": str(exc) or type(exc).__name__}
    else:
        oldest = queue.pop("oldest_received")
        queue["oldest_age_s"] = max(0.0, now - oldest) if oldest is not None else 0.0
        queue["in_flight"] = host.async_worker.in_flight_of(fn.name)
        queue["destination_failures"] = host.metrics.get("DestinationDeliveryFailures", **labels)
        queue["dead_letter_errors"] = host.metrics.get("DeadLetterErrors", **labels)
    out["async"] = queue
    out.update(_activity(host.metrics.invocations, f"async:{fn.name}", now, series))
    return out


def _activity(log: InvocationLog, key: str, now: float, series: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "last_minute": _bucket(log.last_minute(key, now)),
        "recent": [inv.to_json() for inv in reversed(log.recent(key)[-RECENT_SHOWN:])],
    }
    if series:
        out["series"] = [
            [b.start, b.records, b.invocations, b.errors] for b in log.series(key, now, SERIES_S)
        ]
    return out


def _bucket(b: Bucket) -> dict[str, int]:
    return {
        "invocations": b.invocations,
        "records": b.records,
        "errors": b.errors,
        "throttles": b.throttles,
        "sent_on": b.sent_on,
        "dropped": b.dropped,
        "delivery_errors": b.delivery_errors,
    }


def find(log: InvocationLog, ident: str) -> list[LoggedInvocation]:
    """Recent invocations whose request id, or one of whose record ids, is ``ident``."""
    return log.matching(ident)


# -- HTTP ------------------------------------------------------------------------------------------

HOST: Final = web.AppKey[StatusHost]("status_host")
STATUS_PATH = "/esm/status"
UI_PATH = "/ui"


def add_routes(app: web.Application, host: StatusHost) -> None:
    app[HOST] = host
    app.router.add_get(STATUS_PATH, status_json)
    app.router.add_get("/esm/invocations/{id}", invocation_json)
    app.router.add_get(UI_PATH, ui_page)
    app.router.add_get(UI_PATH + "/", ui_page)


def _json(body: Mapping[str, Any], status_code: int = 200) -> web.Response:
    return web.Response(
        status=status_code,
        body=orjson.dumps(body, default=str),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


async def status_json(request: web.Request) -> web.Response:
    series = request.query.get("series", "") in ("1", "true")
    return _json(await status(request.app[HOST], series=series))


async def invocation_json(request: web.Request) -> web.Response:
    ident = request.match_info["id"]
    found = find(request.app[HOST].metrics.invocations, ident)
    if not found:
        return _json({"message": f"no recent invocation has request or record id {ident}"}, 404)
    return _json({"invocations": [inv.to_json() for inv in found]})


async def ui_page(request: web.Request) -> web.Response:
    page = resources.files("esm").joinpath("ui/index.html").read_bytes()
    return web.Response(
        body=page,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP},
    )


# The page loads nothing from elsewhere: its own inline script and style, and /esm/status.
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:"
)
