"""ListEventSourceMappings: filters and pages."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.control_support import (
    FN_ARN,
    ControlWorld,
    call,
    code,
    create_sqs_mapping,
    error,
    fn,
    status,
)
from tests.support import ACCOUNT, REGION, Queues, unique

pytestmark = pytest.mark.integration


# -- ListEventSourceMappings -------------------------------------------------------------------------


async def test_list_filters_and_pages(world: ControlWorld, queues: Queues) -> None:
    f, g = unique("cp-list-f"), unique("cp-list-g")
    node = await world.start({f: fn(), g: fn()})
    (q1, _), (q2, _) = await queues.create(unique("cp-q1")), await queues.create(unique("cp-q2"))
    f_q1 = await create_sqs_mapping(node, f, q1, wait=False)
    f_q2 = await create_sqs_mapping(node, f, q2, wait=False)
    g_q1 = await create_sqs_mapping(node, g, q1, wait=False)

    async def uuids(**kwargs: Any) -> set[str]:
        resp = await call(node.client, "list_event_source_mappings", **kwargs)
        assert status(resp) == 200
        assert "NextMarker" not in resp
        return {m["UUID"] for m in resp["EventSourceMappings"]}

    assert await uuids() == {f_q1, f_q2, g_q1}
    assert await uuids(EventSourceArn=q1) == {f_q1, g_q1}
    assert await uuids(EventSourceArn=q2) == {f_q2}
    for form in (
        f,
        f"{FN_ARN}:{f}",
        f"{ACCOUNT}:function:{f}",
        f"{REGION}:{ACCOUNT}:function:{f}",
    ):
        assert await uuids(FunctionName=form) == {f_q1, f_q2}, form
    assert await uuids(FunctionName=g, EventSourceArn=q1) == {g_q1}
    assert await uuids(FunctionName=g, EventSourceArn=q2) == set()
    assert await uuids(EventSourceArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:cp-none") == set()

    # paging: one at a time, in a stable order, every mapping once
    seen: list[str] = []
    marker: str | None = None
    for _ in range(5):
        kwargs: dict[str, Any] = {"MaxItems": 1}
        if marker:
            kwargs["Marker"] = marker
        page = await call(node.client, "list_event_source_mappings", **kwargs)
        assert len(page["EventSourceMappings"]) == 1
        seen.append(page["EventSourceMappings"][0]["UUID"])
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == sorted([f_q1, f_q2, g_q1])
    # boto3's paginator follows NextMarker the same way
    paginator = node.client.get_paginator("list_event_source_mappings")
    pages = await asyncio.to_thread(
        lambda: list(paginator.paginate(FunctionName=f, PaginationConfig={"PageSize": 1}))
    )
    assert [m["UUID"] for p in pages for m in p["EventSourceMappings"]] == sorted([f_q1, f_q2])

    for max_items in (0, 10001):
        exc = await error(node.raw, "list_event_source_mappings", MaxItems=max_items)
        assert code(exc) == (
            400,
            "InvalidParameterValueException",
            f"MaxItems must be between 1 and 10000: {max_items}",
        )
    for marker in ("%%%", "not-a-marker"):
        exc = await error(node.client, "list_event_source_mappings", Marker=marker)
        assert code(exc) == (400, "InvalidParameterValueException", f"Invalid Marker: {marker}")
    exc = await error(node.client, "list_event_source_mappings", FunctionName="not a name!")
    assert code(exc) == (
        400,
        "InvalidParameterValueException",
        "'not a name!' is not a function name, partial ARN or function ARN",
    )
