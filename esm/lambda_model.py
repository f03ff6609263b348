"""Lambda's operations as botocore's service model defines them: which operation a request is
(its method and path), and the model's constraints esm checks by the model's own words.

Every Lambda operation is recognised by route, served or not: a request for one esm does not
serve is answered "esm does not support <OperationName>" (:func:`esm.api.http_error`), while a
path that is no Lambda operation at all stays an unknown operation. The table follows the
installed botocore, so operations AWS adds are recognised when botocore knows them. No I/O but
reading botocore's model file once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import botocore.session


@dataclass(frozen=True, slots=True)
class Route:
    """One operation's ``METHOD /path`` (``{Label}`` one path segment, ``{Label+}`` the rest),
    and the query parameters its requestUri fixes (``?find=LayerVersion``)."""

    operation: str
    method: str
    pattern: re.Pattern[str]
    query: tuple[tuple[str, str], ...]


@cache
def _model() -> Any:
    return botocore.session.get_session().get_service_model("lambda")


def _route(operation: str, method: str, request_uri: str) -> Route:
    path, _, fixed = request_uri.partition("?")
    regex = ""
    for part in re.split(r"(\{[^}]+\})", path.rstrip("/")):
        if part.startswith("{"):
            regex += "(.+)" if part.endswith("+}") else "([^/]+)"
        else:
            regex += re.escape(part)
    query = tuple((k, v) for k, _, v in (item.partition("=") for item in fixed.split("&") if item))
    return Route(operation, method, re.compile(regex + "/?"), query)


@cache
def routes() -> tuple[Route, ...]:
    """Every operation's route; those with fixed query parameters first (they are the more
    specific of two operations on one path)."""
    model = _model()
    found = [
        _route(name, op.http["method"], op.http["requestUri"])
        for name in model.operation_names
        for op in (model.operation_model(name),)
    ]
    return tuple(sorted(found, key=lambda r: (not r.query, r.operation)))


def operation_for(method: str, path: str, query: dict[str, str] | Any) -> str | None:
    """The Lambda operation ``method path?query`` is, or None when it is none."""
    for route in routes():
        if route.method != method or route.pattern.fullmatch(path) is None:
            continue
        if all(query.get(k) == v for k, v in route.query):
            return route.operation
    return None


@cache
def taggable_resource_pattern() -> str:
    """The model's pattern for ``Resource`` of TagResource / UntagResource / ListTags."""
    pattern: str = _model().shape_for("TaggableResource").metadata["pattern"]
    return pattern
