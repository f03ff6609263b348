"""Mappings from the config file, and daemons sharing one registry."""

from __future__ import annotations

import pytest

from tests.control_support import (
    AFTER_STOP_S,
    FN_ARN,
    SHORT_VISIBILITY_S,
    UUID_RE,
    ControlWorld,
    bodies,
    call,
    code,
    create_sqs_mapping,
    error,
    fn,
    get_mapping,
    wait_state,
)
from tests.redis_cluster import on_redis
from tests.support import Queues, eventually, unique

pytestmark = pytest.mark.integration


# -- mappings from the config file, and daemons sharing the registry ----------------------------


async def test_config_file_mappings_are_listed_under_stable_uuids(
    world: ControlWorld, queues: Queues
) -> None:
    name = unique("cp-config")
    arn, url = await queues.create(name, visibility_s=SHORT_VISIBILITY_S)
    functions = {name: fn(Timeout=1)}
    mappings = [{"FunctionName": name, "EventSourceArn": arn, "BatchSize": 4}]
    node = await world.start(functions, mappings)
    listed = (await call(node.client, "list_event_source_mappings"))["EventSourceMappings"]
    assert len(listed) == 1
    first = listed[0]
    uuid = first["UUID"]
    assert UUID_RE.fullmatch(uuid)
    assert (first["EventSourceArn"], first["BatchSize"], first["FunctionArn"]) == (
        arn,
        4,
        f"{FN_ARN}:{name}",
    )
    assert first["State"] == "Enabled"
    await queues.send(url, ["c1"])
    await eventually(lambda: set(bodies(name)) == {"c1"}, what="the config mapping runs")
    await world.stop(node)

    again = await world.start(functions, mappings)
    listed = (await call(again.client, "list_event_source_mappings"))["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uuid]
    assert listed[0]["LastModified"] == first["LastModified"]  # not rewritten
    await wait_state(again, uuid, "Enabled")
    await queues.send(url, ["c2"])
    await eventually(
        lambda: set(bodies(name)) == {"c1", "c2"},
        timeout=AFTER_STOP_S,
        what="it runs after the restart",
    )

    # the config file's mapping is a mapping like any other through the API
    api_arn, _ = await queues.create(unique("cp-config-api"))
    api_uuid = await create_sqs_mapping(again, name, api_arn, wait=False)
    exc = await error(
        again.client, "create_event_source_mapping", FunctionName=name, EventSourceArn=arn
    )
    assert code(exc)[:2] == (409, "ResourceConflictException")
    assert uuid in code(exc)[2]

    # taken out of the file: gone at the next start; the API's mapping stays
    await world.stop(again)
    third = await world.start(functions, [])

    async def only_the_api_mapping() -> bool:
        listed = await call(third.client, "list_event_source_mappings")
        return [m["UUID"] for m in listed["EventSourceMappings"]] == [api_uuid]

    await eventually(only_the_api_mapping, what="the config file's mapping deleted")


@on_redis("redis", "cluster")
async def test_a_mapping_created_on_one_daemon_runs_on_another_and_survives_restarts(
    world: ControlWorld, queues: Queues
) -> None:
    name = unique("cp-shared")
    arn, url = await queues.create(name, visibility_s=SHORT_VISIBILITY_S)
    functions = {name: fn(Timeout=1)}
    a = await world.start(functions)
    b = await world.start(functions)
    uuid = await create_sqs_mapping(a, name, arn, BatchSize=3)
    # b sees the definition within RegistryPollSeconds and runs it
    await eventually(
        lambda: uuid in b.engine.mappings and b.engine.mappings[uuid].state == "Enabled",
        what="b runs the mapping",
    )
    assert (await get_mapping(b, uuid))["BatchSize"] == 3
    await world.stop(a)  # from here on only b can process
    await queues.send(url, ["s1", "s2"])
    await eventually(
        lambda: set(bodies(name)) == {"s1", "s2"}, timeout=AFTER_STOP_S, what="b processes"
    )

    # an update through b reaches a new daemon c; b stops, c carries on
    await call(b.client, "update_event_source_mapping", UUID=uuid, BatchSize=1)
    await wait_state(b, uuid, "Enabled")
    await world.stop(b)
    c = await world.start(functions)
    got = await get_mapping(c, uuid)
    assert (got["State"], got["BatchSize"], got["EventSourceArn"]) == ("Enabled", 1, arn)
    assert c.engine.mappings[uuid].state == "Enabled"
    await queues.send(url, ["s3"])
    await eventually(
        lambda: set(bodies(name)) == {"s1", "s2", "s3"}, timeout=AFTER_STOP_S, what="c processes"
    )
    await eventually(lambda: queues.is_empty(url), timeout=AFTER_STOP_S, what="the queue emptied")


async def test_a_daemon_that_does_not_serve_the_function(
    world: ControlWorld, queues: Queues
) -> None:
    """Daemons sharing a registry may serve different functions: each shows every mapping, runs
    only its own functions' ones, and refuses to change a mapping to what it cannot check."""
    f, g = unique("cp-only-a"), unique("cp-only-b")
    a = await world.start({f: fn()})
    b = await world.start({g: fn()})
    arn, _ = await queues.create(f)
    uuid = await create_sqs_mapping(a, f, arn)
    got = await get_mapping(b, uuid)
    assert (got["FunctionArn"], got["State"]) == (f"{FN_ARN}:{f}", "Enabled")
    assert uuid not in b.engine.mappings
    exc = await error(b.client, "update_event_source_mapping", UUID=uuid, BatchSize=3)
    assert code(exc) == (404, "ResourceNotFoundException", f"Function not found: {FN_ARN}:{f}")
    exc = await error(b.client, "create_event_source_mapping", FunctionName=f, EventSourceArn=arn)
    assert code(exc) == (400, "InvalidParameterValueException", "Function does not exist")
    # deleting through b: a, which runs it, stops it and removes it
    deleted = await call(b.client, "delete_event_source_mapping", UUID=uuid)
    assert deleted["State"] == "Deleting"

    async def gone() -> bool:
        return not (await call(b.client, "list_event_source_mappings"))["EventSourceMappings"]

    await eventually(gone, what="the mapping deleted by a")
    assert uuid not in a.engine.mappings
