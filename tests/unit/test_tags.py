"""esm.tags: which resource a taggable ARN names, and the rules tags keep, in AWS's words
(docs/semantics.md §10.7); esm.lambda_model: every Lambda operation by method and path."""

from __future__ import annotations

import pytest

from esm.errors import InvalidParameterValueException, LambdaApiError, ValidationException
from esm.lambda_model import operation_for, taggable_resource_pattern
from esm.tags import (
    QUALIFIED,
    Resource,
    check_keys,
    check_tags,
    merged,
    parse_resource,
)

PREFIX = "arn:aws:lambda:us-east-1:123456789012"
UUID = "0F0E0D0C-0B0A-4908-8706-050403020100"


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        (f"{PREFIX}:function:orders", ("function", "orders", "Function")),
        (
            f"{PREFIX}:event-source-mapping:{UUID}",
            ("event-source-mapping", UUID.lower(), "Event source mapping"),
        ),
        (f"{PREFIX}:capacity-provider:cp-1", ("other", "cp-1", "Capacity provider")),
        (
            f"{PREFIX}:code-signing-config:csc-0123456789abcdefg",
            ("other", "csc-0123456789abcdefg", "Code signing config"),
        ),
        (
            "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f",
            ("function", "f", "Function"),
        ),
    ],
)
def test_taggable_arns(arn: str, expected: tuple[str, str, str]) -> None:
    assert parse_resource(arn) == Resource(arn, *expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:something",
        f"{PREFIX}:foobar:orders",
        f"{PREFIX}:event-source-mapping:{UUID}:alias",
        f"{PREFIX}:event-source-mapping:not-a-uuid",
        "orders",
        "arn:aws:lambda:us-east-1:1234:function:orders",
        "",
    ],
)
def test_arns_outside_the_models_pattern_are_a_validation_exception(arn: str) -> None:
    with pytest.raises(ValidationException) as info:
        parse_resource(arn)
    assert info.value.message == (
        f"1 validation error detected: Value '{arn}' at 'resource' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: " + taggable_resource_pattern()
    )


@pytest.mark.parametrize("qualifier", ["$LATEST", "1", "live"])
def test_qualified_function_arns_are_refused_in_aws_words(qualifier: str) -> None:
    with pytest.raises(InvalidParameterValueException) as info:
        parse_resource(f"{PREFIX}:function:orders:{qualifier}")
    assert info.value.message == QUALIFIED


@pytest.mark.parametrize(
    ("tags", "kind", "fragment"),
    [
        ({"": "v"}, ValidationException, "Map keys must satisfy constraint"),
        ({"k" * 129: "v"}, ValidationException, "less than or equal to 128"),
        ({"a*b": "v"}, ValidationException, "regular expression pattern"),
        ({"k": "v" * 257}, ValidationException, "Map value must satisfy constraint"),
        ({"k": "tab\there"}, ValidationException, "Map value must satisfy constraint"),
        ({"aws:x": "v"}, InvalidParameterValueException, "'aws:' is reserved"),
        ({"AwS:x": "v"}, InvalidParameterValueException, "'aws:' is reserved"),
        ({"k": 1}, InvalidParameterValueException, "map of strings"),
        (["k"], InvalidParameterValueException, "map of strings"),
    ],
)
def test_tags_outside_the_rules(tags: object, kind: type[LambdaApiError], fragment: str) -> None:
    with pytest.raises(kind) as info:
        check_tags(tags)
    assert fragment in info.value.message


def test_tags_within_the_rules() -> None:
    ok = {"k" * 128: "v" * 256, "été 1": "", "a_b.c:d/e=f+g-h@i": "ünï 9"}
    assert check_tags(ok) == ok
    assert check_tags(None) == {}
    assert check_keys(["a", "b"]) == ["a", "b"]


def test_untag_keys() -> None:
    with pytest.raises(ValidationException) as info:
        check_keys([])
    assert info.value.message == (
        "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: "
        "Member must not be null"
    )
    with pytest.raises(ValidationException):
        check_keys(["k" * 129])
    with pytest.raises(InvalidParameterValueException):
        check_keys(["aws:cloudformation:stack-name"])


def test_merged_counts_after_merging() -> None:
    fifty = {f"{i}": "v" for i in range(50)}
    assert merged(fifty, {"0": "w"}) == {**fifty, "0": "w"}
    with pytest.raises(InvalidParameterValueException) as info:
        merged(fifty, {"new": "v"})
    assert info.value.message == "Number of tags exceeds resource tag limit."
    with pytest.raises(InvalidParameterValueException) as info:
        merged({}, {})
    assert info.value.message == "An error occurred and the request cannot be processed."


@pytest.mark.parametrize(
    ("method", "path", "query", "operation"),
    [
        ("POST", "/2015-03-31/functions", {}, "CreateFunction"),
        ("DELETE", "/2015-03-31/functions/orders", {}, "DeleteFunction"),
        ("POST", "/2015-03-31/functions/orders/aliases", {}, "CreateAlias"),
        ("PUT", "/2015-03-31/functions/orders/aliases/live", {}, "UpdateAlias"),
        ("POST", "/2015-03-31/functions/orders/versions", {}, "PublishVersion"),
        ("GET", "/2015-03-31/functions/orders/policy", {}, "GetPolicy"),
        ("POST", "/2015-03-31/functions/orders/policy", {}, "AddPermission"),
        ("GET", "/2018-10-31/layers", {}, "ListLayers"),
        ("GET", "/2018-10-31/layers", {"find": "LayerVersion"}, "GetLayerVersionByArn"),
        ("POST", "/2014-11-13/functions/orders/invoke-async/", {}, "InvokeAsync"),
        ("GET", f"/2017-03-31/tags/{PREFIX}:function:orders", {}, "ListTags"),
        ("POST", "/2015-03-31/functions/orders/invocations", {}, "Invoke"),
        ("GET", "/2015-03-31/functions/orders/invocations", {}, None),
        ("GET", "/2015-03-31/functions/orders/nope", {}, None),
        ("GET", "/", {}, None),
    ],
)
def test_lambda_operations_by_route(
    method: str, path: str, query: dict[str, str], operation: str | None
) -> None:
    assert operation_for(method, path, query) == operation
