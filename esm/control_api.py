"""HTTP routes of the control plane (on the same port as Invoke), Lambda's paths and statuses::

    POST   /2015-03-31/event-source-mappings                       CreateEventSourceMapping  202
    GET    /2015-03-31/event-source-mappings                       ListEventSourceMappings
    GET    /2015-03-31/event-source-mappings/{UUID}                GetEventSourceMapping
    PUT    /2015-03-31/event-source-mappings/{UUID}                UpdateEventSourceMapping  202
    DELETE /2015-03-31/event-source-mappings/{UUID}                DeleteEventSourceMapping  202
    PUT    {EIC}        PutFunctionEventInvokeConfig
    POST   {EIC}        UpdateFunctionEventInvokeConfig
    GET    {EIC}        GetFunctionEventInvokeConfig
    DELETE {EIC}        DeleteFunctionEventInvokeConfig  204
    GET    {EIC}/list   ListFunctionEventInvokeConfigs
      ({EIC} = /2019-09-25/functions/{FunctionName}/event-invoke-config)
    GET    /2015-03-31/functions                                   ListFunctions
    GET    /2015-03-31/functions/{FunctionName}                    GetFunction
    GET    /2015-03-31/functions/{FunctionName}/configuration      GetFunctionConfiguration
    PUT    /2017-10-31/functions/{FunctionName}/concurrency        PutFunctionConcurrency
    GET    /2019-09-30/functions/{FunctionName}/concurrency        GetFunctionConcurrency
    DELETE /2017-10-31/functions/{FunctionName}/concurrency        DeleteFunctionConcurrency 204
    POST   /2017-03-31/tags/{ARN}                                  TagResource               204
    DELETE /2017-03-31/tags/{ARN}?tagKeys=…                        UntagResource             204
    GET    /2017-03-31/tags/{ARN}                                  ListTags
    GET    /metrics                                                Prometheus text

Requests are parsed here; validation, shapes and errors are :mod:`esm.control`'s. A body that
is not a JSON object is 400 ``InvalidRequestContentException`` ("Could not parse request body into
json: …", as Lambda words any REST body it cannot parse; also JSON nested deeper than 1,024
levels); a body over 1 MiB is 413 ``RequestEntityTooLargeException``; a body that stalls is 408
(:func:`esm.api_server.read_body`).

**Destinations through the API are ARNs**, as on AWS: an ``http(s)://`` or ``memory://``
destination (``DestinationConfig.OnSuccess`` / ``OnFailure`` of an event invoke config or of a
mapping) is 400 ``InvalidParameterValueException`` naming the field and the rule, unless
``Settings.ApiAllowUrlDestinations`` is true. esm.yaml may always name them: whoever writes the
config file already decides where events go; whoever reaches the API should not be able to send
every async payload to a URL of their own.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import web

from esm.api_server import read_body
from esm.config import shown
from esm.control import ControlPlane
from esm.errors import (
    InvalidParameterValueException,
    InvalidRequestContentException,
    RequestEntityTooLargeException,
)
from esm.metrics import CONTENT_TYPE, Metrics, prometheus_text

CONTROL: Final = web.AppKey[ControlPlane]("control")
METRICS: Final = web.AppKey[Metrics]("metrics")

ESM = "/2015-03-31/event-source-mappings"
EIC = "/2019-09-25/functions/{FunctionName}/event-invoke-config"
TAGS = "/2017-03-31/tags/{ARN}"
BODY_LIMIT = 1_048_576  # bytes of a control-plane request (aiohttp's default for a request)
URL_SCHEMES = ("http://", "https://", "memory://")  # destinations only esm.yaml may name


def add_routes(app: web.Application, control: ControlPlane, metrics: Metrics) -> None:
    app[CONTROL] = control
    app[METRICS] = metrics
    r = app.router
    for path in (ESM, ESM + "/"):
        r.add_post(path, create_mapping)
        r.add_get(path, list_mappings)
    r.add_get(ESM + "/{UUID}", get_mapping)
    r.add_put(ESM + "/{UUID}", update_mapping)
    r.add_delete(ESM + "/{UUID}", delete_mapping)
    r.add_put(EIC, put_invoke_config)
    r.add_post(EIC, update_invoke_config)
    r.add_get(EIC, get_invoke_config)
    r.add_delete(EIC, delete_invoke_config)
    r.add_get(EIC + "/list", list_invoke_configs)
    for path in ("/2015-03-31/functions", "/2015-03-31/functions/"):
        r.add_get(path, list_functions)
    r.add_get("/2015-03-31/functions/{FunctionName}", get_function)
    r.add_get("/2015-03-31/functions/{FunctionName}/configuration", get_function_configuration)
    r.add_put("/2017-10-31/functions/{FunctionName}/concurrency", put_concurrency)
    r.add_get("/2019-09-30/functions/{FunctionName}/concurrency", get_concurrency)
    r.add_delete("/2017-10-31/functions/{FunctionName}/concurrency", delete_concurrency)
    r.add_post(TAGS, tag_resource)
    r.add_delete(TAGS, untag_resource)
    r.add_get(TAGS, list_tags)
    r.add_get("/metrics", metrics_text)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await read_body(request, BODY_LIMIT, _too_large)
    if not raw.strip():
        return {}
    try:
        doc = orjson.loads(raw)  # refuses nesting deeper than 1,024 levels
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestContentException(
            f"Could not parse request body into json: {exc}"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidRequestContentException(
            "Could not parse request body into json: the body must be a JSON object"
        )
    return doc


def _too_large(size: int) -> RequestEntityTooLargeException:
    return RequestEntityTooLargeException(
        f"Request must be smaller than {BODY_LIMIT} bytes (got {size} bytes)"
    )


def _control(request: web.Request) -> ControlPlane:
    return request.app[CONTROL]


def url_destinations(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) of every destination in a request body that is a URL, not an ARN."""
    dests = body.get("DestinationConfig")
    if not isinstance(dests, dict):
        return []
    found = []
    for kind in ("OnSuccess", "OnFailure"):
        ref = dests.get(kind)
        value = ref.get("Destination") if isinstance(ref, dict) else None
        if isinstance(value, str) and value.strip().lower().startswith(URL_SCHEMES):
            found.append((f"DestinationConfig.{kind}.Destination", value))
    return found


def _arn_destinations_only(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    """``body``, unless it names a URL destination and Settings do not allow that (module doc)."""
    found = url_destinations(body)
    if found and not _control(request).host.config.settings.api_allow_url_destinations:
        field, value = found[0]
        raise InvalidParameterValueException(
            f"{field}: {shown(value)} is not an ARN. Through the API a destination is an ARN "
            "(SQS, SNS, EventBridge, Lambda, S3), as on AWS; http(s):// and memory:// "
            "destinations are set in esm.yaml, or through the API when "
            "Settings.ApiAllowUrlDestinations is true"
        )
    return body


def _fn(request: web.Request) -> str:
    return request.match_info["FunctionName"]


# -- event source mappings -------------------------------------------------------------------------


async def create_mapping(request: web.Request) -> web.Response:
    body = _arn_destinations_only(request, await _body(request))
    return _json(await _control(request).create_mapping(body), 202)


async def list_mappings(request: web.Request) -> web.Response:
    q = request.query
    return _json(
        await _control(request).list_mappings(
            q.get("EventSourceArn"), q.get("FunctionName"), q.get("Marker"), q.get("MaxItems")
        )
    )


async def get_mapping(request: web.Request) -> web.Response:
    return _json(await _control(request).get_mapping(request.match_info["UUID"]))


async def update_mapping(request: web.Request) -> web.Response:
    body = _arn_destinations_only(request, await _body(request))
    return _json(await _control(request).update_mapping(request.match_info["UUID"], body), 202)


async def delete_mapping(request: web.Request) -> web.Response:
    return _json(await _control(request).delete_mapping(request.match_info["UUID"]), 202)


# -- event invoke configs --------------------------------------------------------------------------


async def put_invoke_config(request: web.Request) -> web.Response:
    body = _arn_destinations_only(request, await _body(request))
    q = request.query.get("Qualifier")
    return _json(await _control(request).put_invoke_config(_fn(request), q, body, merge=False))


async def update_invoke_config(request: web.Request) -> web.Response:
    body = _arn_destinations_only(request, await _body(request))
    q = request.query.get("Qualifier")
    return _json(await _control(request).put_invoke_config(_fn(request), q, body, merge=True))


async def get_invoke_config(request: web.Request) -> web.Response:
    q = request.query.get("Qualifier")
    return _json(_control(request).get_invoke_config(_fn(request), q))


async def delete_invoke_config(request: web.Request) -> web.Response:
    await _control(request).delete_invoke_config(_fn(request), request.query.get("Qualifier"))
    return web.Response(status=204)


async def list_invoke_configs(request: web.Request) -> web.Response:
    q = request.query
    return _json(
        _control(request).list_invoke_configs(_fn(request), q.get("Marker"), q.get("MaxItems"))
    )


# -- functions and concurrency ---------------------------------------------------------------------


async def list_functions(request: web.Request) -> web.Response:
    q = request.query
    return _json(await _control(request).list_functions(q.get("Marker"), q.get("MaxItems")))


async def get_function(request: web.Request) -> web.Response:
    q = request.query.get("Qualifier")
    return _json(await _control(request).get_function(_fn(request), q))


async def get_function_configuration(request: web.Request) -> web.Response:
    q = request.query.get("Qualifier")
    return _json(await _control(request).get_function_configuration(_fn(request), q))


async def put_concurrency(request: web.Request) -> web.Response:
    body = await _body(request)
    return _json(await _control(request).put_concurrency(_fn(request), body))


async def get_concurrency(request: web.Request) -> web.Response:
    return _json(_control(request).get_concurrency(_fn(request)))


async def delete_concurrency(request: web.Request) -> web.Response:
    await _control(request).delete_concurrency(_fn(request))
    return web.Response(status=204)


# -- tags ------------------------------------------------------------------------------------------


async def tag_resource(request: web.Request) -> web.Response:
    body = await _body(request)
    await _control(request).tag_resource(request.match_info["ARN"], body)
    return web.Response(status=204)


async def untag_resource(request: web.Request) -> web.Response:
    keys = request.query.getall("tagKeys", [])
    await _control(request).untag_resource(request.match_info["ARN"], keys)
    return web.Response(status=204)


async def list_tags(request: web.Request) -> web.Response:
    return _json(await _control(request).list_tags(request.match_info["ARN"]))


async def metrics_text(request: web.Request) -> web.Response:
    return web.Response(
        body=prometheus_text(request.app[METRICS]), headers={"Content-Type": CONTENT_TYPE}
    )
