"""TagResource, UntagResource and ListTags on functions and event source mappings, as recorded on
AWS (docs/semantics.md §10.7): the answers, the errors by name and words, and tags that live in
the registry (they survive a restart, and go with their mapping)."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from esm.lambda_model import taggable_resource_pattern
from tests.control_support import (
    ESM_ARN,
    FN_ARN,
    ControlWorld,
    Node,
    body,
    call,
    code,
    create_sqs_mapping,
    error,
    fn,
    status,
    wait_state,
)
from tests.support import Queues, eventually, unique

pytestmark = pytest.mark.integration

QUALIFIED = (
    "Tags on function aliases and versions are not supported. Please specify a function ARN."
)


async def tags_of(node: Node, arn: str) -> dict[str, str]:
    got = await call(node.client, "list_tags", Resource=arn)
    assert status(got) == 200
    assert set(body(got)) == {"Tags"}
    tags: dict[str, str] = got["Tags"]
    return tags


async def tag(node: Node, arn: str, tags: dict[str, str]) -> None:
    assert status(await call(node.client, "tag_resource", Resource=arn, Tags=tags)) == 204


async def untag(node: Node, arn: str, keys: list[str]) -> None:
    assert status(await call(node.client, "untag_resource", Resource=arn, TagKeys=keys)) == 204


async def resource_arn(node: Node, kind: str, name: str, queues: Queues) -> str:
    if kind == "function":
        return f"{FN_ARN}:{name}"
    arn, _ = await queues.create(unique("cp-tags"))
    uuid = await create_sqs_mapping(node, name, arn)
    return f"{ESM_ARN}:{uuid}"


@pytest.mark.parametrize("kind", ["function", "event-source-mapping"])
async def test_tag_lifecycle_as_recorded_on_aws(
    world: ControlWorld, queues: Queues, kind: str
) -> None:
    name = unique("cp-tags")
    node = await world.start({name: fn()})
    arn = await resource_arn(node, kind, name, queues)

    assert await tags_of(node, arn) == {}
    await tag(node, arn, {"A": "tag-a"})
    assert await tags_of(node, arn) == {"A": "tag-a"}
    await tag(node, arn, {"B": "tag-b", "C": "tag-c"})
    assert await tags_of(node, arn) == {"A": "tag-a", "B": "tag-b", "C": "tag-c"}
    await tag(node, arn, {"C": "tag-c-newsuffix", "D": "tag-d"})  # overlapping: replaced
    assert await tags_of(node, arn) == {
        "A": "tag-a",
        "B": "tag-b",
        "C": "tag-c-newsuffix",
        "D": "tag-d",
    }
    await untag(node, arn, ["A"])
    assert await tags_of(node, arn) == {"B": "tag-b", "C": "tag-c-newsuffix", "D": "tag-d"}
    await untag(node, arn, ["B", "C"])
    assert await tags_of(node, arn) == {"D": "tag-d"}
    await untag(node, arn, ["F"])  # a key that is not there: no error
    assert await tags_of(node, arn) == {"D": "tag-d"}
    await untag(node, arn, ["D", "F"])
    assert await tags_of(node, arn) == {}


async def test_tag_errors_in_aws_words(world: ControlWorld, queues: Queues) -> None:
    name = unique("cp-tags")
    node = await world.start({name: fn()})
    fn_arn = f"{FN_ARN}:{name}"
    pattern = taggable_resource_pattern()

    for bad in ("arn:aws:something", f"{FN_ARN.replace(':function', ':foobar')}:{name}"):
        for operation, kwargs in (
            ("tag_resource", {"Tags": {"A": "B"}}),
            ("untag_resource", {"TagKeys": ["A"]}),
            ("list_tags", {}),
        ):
            exc = await error(node.client, operation, Resource=bad, **kwargs)
            assert code(exc) == (
                400,
                "ValidationException",
                f"1 validation error detected: Value '{bad}' at 'resource' failed to satisfy "
                f"constraint: Member must satisfy regular expression pattern: {pattern}",
            )

    for qualified in (f"{fn_arn}:v1", f"{fn_arn}:$LATEST", f"{FN_ARN}:cp-nope:alias"):
        exc = await error(node.client, "tag_resource", Resource=qualified, Tags={"A": "B"})
        assert code(exc) == (400, "InvalidParameterValueException", QUALIFIED)
        exc = await error(node.client, "list_tags", Resource=qualified)
        assert code(exc) == (400, "InvalidParameterValueException", QUALIFIED)

    missing_uuid = "0f0e0d0c-0b0a-4908-8706-050403020100"
    for arn, message in (
        (f"{FN_ARN}:cp-nope", f"Function not found: {FN_ARN}:cp-nope"),
        (f"{ESM_ARN}:{missing_uuid}", f"Event source mapping not found: {ESM_ARN}:{missing_uuid}"),
        (
            f"{FN_ARN.replace(':function', ':capacity-provider')}:cp",
            f"Capacity provider not found: {FN_ARN.replace(':function', ':capacity-provider')}:cp",
        ),
    ):
        for operation, kwargs in (
            ("tag_resource", {"Tags": {"A": "B"}}),
            ("untag_resource", {"TagKeys": ["A"]}),
            ("list_tags", {}),
        ):
            exc = await error(node.client, operation, Resource=arn, **kwargs)
            assert code(exc) == (404, "ResourceNotFoundException", message), (operation, arn)
            assert exc.response["Message"] == message  # the modelled member, capitalised

    exc = await error(node.client, "tag_resource", Resource=fn_arn, Tags={})
    assert code(exc) == (
        400,
        "InvalidParameterValueException",
        "An error occurred and the request cannot be processed.",
    )
    exc = await error(node.client, "untag_resource", Resource=fn_arn, TagKeys=[])
    assert code(exc) == (
        400,
        "ValidationException",
        "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: "
        "Member must not be null",
    )

    # 50 tags at most, counted once merged
    too_many = {f"{k}_key": f"{k}_value" for k in range(51)}
    exc = await error(node.client, "tag_resource", Resource=fn_arn, Tags=too_many)
    limit = (400, "InvalidParameterValueException", "Number of tags exceeds resource tag limit.")
    assert code(exc) == limit
    fifty = {f"{k}_key": f"{k}_value" for k in range(50)}
    await tag(node, fn_arn, fifty)
    exc = await error(node.client, "tag_resource", Resource=fn_arn, Tags={"a_key": "a_value"})
    assert code(exc) == limit
    await tag(node, fn_arn, {"0_key": "replaced"})  # replacing a key adds none
    assert (await tags_of(node, fn_arn)) == {**fifty, "0_key": "replaced"}
    arn, _ = await queues.create(unique("cp-tags"))
    exc = await error(
        node.client,
        "create_event_source_mapping",
        FunctionName=name,
        EventSourceArn=arn,
        Tags=too_many,
    )
    assert code(exc) == limit

    # the model's lengths and characters; the aws: prefix is AWS's
    exc = await error(node.client, "tag_resource", Resource=fn_arn, Tags={"k" * 129: "v"})
    status_, name_, message = code(exc)
    assert (status_, name_) == (400, "ValidationException")
    assert message.startswith(f"1 validation error detected: Value '{{{'k' * 129}=v}}' at 'tags'")
    assert "Member must have length less than or equal to 128" in message
    exc = await error(node.client, "tag_resource", Resource=fn_arn, Tags={"k": "v" * 257})
    assert code(exc)[:2] == (400, "ValidationException")
    assert "Map value must satisfy constraint" in code(exc)[2]
    exc = await error(node.client, "tag_resource", Resource=fn_arn, Tags={"a*b": "v"})
    assert code(exc)[:2] == (400, "ValidationException")
    unicode = {"été 1": "ünï cødé @ / = + - _ . :"}  # letters, spaces, numbers and these
    await untag(node, fn_arn, list(fifty))
    await tag(node, fn_arn, unicode)
    assert await tags_of(node, fn_arn) == unicode
    for operation, kwargs in (
        ("tag_resource", {"Tags": {"AWS:cloudformation:stack": "x"}}),
        ("untag_resource", {"TagKeys": ["aws:cloudformation:stack"]}),
    ):
        exc = await error(node.client, operation, Resource=fn_arn, **kwargs)
        status_, name_, message = code(exc)
        assert (status_, name_) == (400, "InvalidParameterValueException")
        assert "the prefix 'aws:' is reserved for AWS use" in message


async def test_tags_are_kept_at_create_survive_a_restart_and_go_with_their_mapping(
    world: ControlWorld, queues: Queues
) -> None:
    name = unique("cp-tags")
    node = await world.start({name: fn()})
    arn, _ = await queues.create(unique("cp-tags"))
    created = await call(
        node.client,
        "create_event_source_mapping",
        FunctionName=name,
        EventSourceArn=arn,
        Tags={"team": "orders", "env": "dev"},
    )
    uuid = created["UUID"]
    esm_arn = created["EventSourceMappingArn"]
    assert esm_arn == f"{ESM_ARN}:{uuid}"
    assert "Tags" not in created  # not a member of EventSourceMappingConfiguration
    await wait_state(node, uuid, "Enabled")
    assert await tags_of(node, esm_arn) == {"team": "orders", "env": "dev"}
    # an uppercase UUID names the same mapping
    assert await tags_of(node, f"{ESM_ARN}:{uuid.upper()}") == {"team": "orders", "env": "dev"}

    fn_arn = f"{FN_ARN}:{name}"
    before = await call(node.client, "get_function", FunctionName=name)
    assert "Tags" not in before  # as recorded on AWS: no Tags member without tags
    await tag(node, fn_arn, {"owner": "me"})
    after = await call(node.client, "get_function", FunctionName=name)
    assert after["Tags"] == {"owner": "me"}
    revision = after["Configuration"]["RevisionId"]
    assert revision != before["Configuration"]["RevisionId"]  # tags change it, as on AWS

    # another daemon on the same registry, after this one stopped, sees the same
    await world.stop(node)
    again = await world.start({name: fn()})
    assert await tags_of(again, esm_arn) == {"team": "orders", "env": "dev"}
    assert await tags_of(again, fn_arn) == {"owner": "me"}
    config = await call(again.client, "get_function_configuration", FunctionName=name)
    assert config["RevisionId"] == revision

    # an update does not touch them; a delete takes them away
    await call(again.client, "update_event_source_mapping", UUID=uuid, BatchSize=5)
    await wait_state(again, uuid, "Enabled")
    assert await tags_of(again, esm_arn) == {"team": "orders", "env": "dev"}
    await call(again.client, "delete_event_source_mapping", UUID=uuid)

    async def gone() -> bool:
        try:
            await call(again.client, "get_event_source_mapping", UUID=uuid)
        except Exception:
            return True
        return False

    await eventually(gone, interval=0.1, what="the mapping deleted")
    exc = await error(again.client, "list_tags", Resource=esm_arn)
    assert code(exc) == (
        404,
        "ResourceNotFoundException",
        f"Event source mapping not found: {esm_arn}",
    )
    redis: Any = aioredis.Redis.from_url(world.redis_url)
    try:
        fields = await redis.hkeys(f"{world.prefix}:registry:{{registry}}:tags")
    finally:
        await redis.aclose()
    assert fields == [f"function:{name}".encode()]  # the mapping's are gone, the function's kept


async def test_a_config_file_mappings_tags(world: ControlWorld, queues: Queues) -> None:
    """A mapping from esm.yaml shows the file's Tags until the API changes them; what the API
    set then stays, across restarts with the same file (docs/semantics.md §10.7)."""
    name = unique("cp-tags-cfg")
    arn, _ = await queues.create(unique("cp-tags-cfg"))
    functions = {name: fn()}
    mappings = [{"FunctionName": name, "EventSourceArn": arn, "Tags": {"from": "file"}}]
    node = await world.start(functions, mappings)
    (listed,) = (await call(node.client, "list_event_source_mappings"))["EventSourceMappings"]
    esm_arn = listed["EventSourceMappingArn"]
    assert await tags_of(node, esm_arn) == {"from": "file"}
    await tag(node, esm_arn, {"by": "api"})
    await untag(node, esm_arn, ["from"])
    assert await tags_of(node, esm_arn) == {"by": "api"}
    await world.stop(node)
    again = await world.start(functions, mappings)
    assert await tags_of(again, esm_arn) == {"by": "api"}
    await untag(again, esm_arn, ["by"])
    assert await tags_of(again, esm_arn) == {}  # none, not the file's again
