"""Lambda's tags: which resource an ARN names, and the rules tags keep (docs/semantics.md §10.7).
Pure checks; the control plane reads and writes them through the registry.

In the order AWS checks them (as recorded on AWS, LocalStack's validated snapshots):

======================================  ==========================================================
request                                 answer
======================================  ==========================================================
Resource not of the model's pattern     400 ValidationException "1 validation error detected:
                                        Value '<arn>' at 'resource' failed to satisfy constraint:
                                        Member must satisfy regular expression pattern: …"
a tag key or value out of the model's   400 ValidationException in AWS's validation words for
length / characters                     a map member ("Map keys must satisfy constraint: […]";
                                        not recorded for tags)
UntagResource without tagKeys           400 ValidationException "… Value null at 'tagKeys' …"
a function ARN with a qualifier         400 InvalidParameterValueException "Tags on function
(``:$LATEST`` too)                      aliases and versions are not supported. Please specify
                                        a function ARN."
a key starting with ``aws:``            400 InvalidParameterValueException (esm's words)
no such function / mapping              404 ResourceNotFoundException "Function not found: <arn>"
                                        / "Event source mapping not found: <arn>"
TagResource with no tags                400 InvalidParameterValueException "An error occurred and
                                        the request cannot be processed."
more than 50 tags once merged           400 InvalidParameterValueException "Number of tags
                                        exceeds resource tag limit."
======================================  ==========================================================
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from esm.errors import InvalidParameterValueException, ValidationException
from esm.lambda_model import taggable_resource_pattern

MAX_TAGS = 50
KEY_MAX = 128
VALUE_MAX = 256
RESERVED_PREFIX = "aws:"
TAG_CHARS_PATTERN = r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"  # the model's, for messages
_TAG_PUNCTUATION = frozenset("_.:/=+-@")
QUALIFIED = (
    "Tags on function aliases and versions are not supported. Please specify a function ARN."
)
NO_TAGS = "An error occurred and the request cannot be processed."
TOO_MANY = "Number of tags exceeds resource tag limit."

Kind = Literal["function", "event-source-mapping", "other"]


@dataclass(frozen=True, slots=True)
class Resource:
    """What a taggable ARN names: a function (``name``), a mapping (``name`` is its UUID), or
    another kind esm has none of (``label`` is how AWS names it: "Capacity provider" …)."""

    arn: str
    kind: Kind
    name: str
    label: str


_LABELS = {
    "function": "Function",
    "event-source-mapping": "Event source mapping",
    "code-signing-config": "Code signing config",
    "capacity-provider": "Capacity provider",
    "network-connector": "Network connector",
}


def _validation(value: str, member: str, constraint: str) -> ValidationException:
    return ValidationException(
        f"1 validation error detected: Value {value} at '{member}' failed to satisfy "
        f"constraint: {constraint}"
    )


def check_resource(arn: str) -> None:
    """ValidationException when ``arn`` is not of the model's pattern (checked, as AWS checks
    the model's constraints, before anything else)."""
    pattern = taggable_resource_pattern()
    if not 1 <= len(arn) <= 10000 or re.fullmatch(pattern, arn) is None:
        raise _validation(
            f"'{arn}'", "resource", f"Member must satisfy regular expression pattern: {pattern}"
        )


def parse_resource(arn: str) -> Resource:
    """The resource ``arn`` names; ValidationException when it is not of the model's pattern,
    InvalidParameterValueException for a qualified function ARN."""
    check_resource(arn)
    kind, rest = arn.split(":", 6)[5:]
    if kind == "function":
        if ":" in rest:
            raise InvalidParameterValueException(QUALIFIED)
        return Resource(arn, "function", rest, _LABELS[kind])
    if kind == "event-source-mapping":
        return Resource(arn, "event-source-mapping", rest.lower(), _LABELS[kind])
    return Resource(arn, "other", rest, _LABELS.get(kind, kind))


def _tag_chars(text: str) -> bool:
    """The model's ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*``: letters, separators (spaces), numbers and
    ``_.:/=+-@``."""
    return all(ch in _TAG_PUNCTUATION or unicodedata.category(ch)[0] in "LZN" for ch in text)


def _map_text(tags: Mapping[str, Any]) -> str:
    """A map as AWS's validation messages show it: ``'{k=v, k2=v2}'``."""
    return "'{" + ", ".join(f"{k}={v}" for k, v in tags.items()) + "}'"


def _key_rules() -> str:
    return (
        f"[Member must have length less than or equal to {KEY_MAX}, Member must have length "
        "greater than or equal to 1, Member must satisfy regular expression pattern: "
        f"{TAG_CHARS_PATTERN}]"
    )


def check_tags(tags: Any, member: str = "tags") -> dict[str, str]:
    """Tags as given to TagResource or CreateEventSourceMapping: a map of strings within the
    model's lengths and characters, no ``aws:`` key. Empty is left to the caller."""
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise InvalidParameterValueException(
            f"{member.capitalize()}: must be a map of strings to strings"
        )
    for key in tags:
        if not 1 <= len(key) <= KEY_MAX or not _tag_chars(key):
            raise _validation(
                _map_text(tags), member, f"Map keys must satisfy constraint: {_key_rules()}"
            )
    for value in tags.values():
        if len(value) > VALUE_MAX or not _tag_chars(value):
            raise _validation(
                _map_text(tags),
                member,
                "Map value must satisfy constraint: [Member must have length less than or "
                f"equal to {VALUE_MAX}, Member must have length greater than or equal to 0, "
                f"Member must satisfy regular expression pattern: {TAG_CHARS_PATTERN}]",
            )
    _no_reserved(tags)
    return dict(tags)


def check_keys(keys: Iterable[str] | None) -> list[str]:
    """UntagResource's ``tagKeys``: at least one, each a valid key, none ``aws:``."""
    found = list(keys or [])
    if not found:
        # AWS's words, without a final period
        raise _validation("null", "tagKeys", "Member must not be null")
    for key in found:
        if not 1 <= len(key) <= KEY_MAX or not _tag_chars(key):
            shown = "[" + ", ".join(found) + "]"
            raise _validation(
                f"'{shown}'", "tagKeys", f"Member must satisfy constraint: {_key_rules()}"
            )
    _no_reserved(found)
    return found


def _no_reserved(keys: Iterable[str]) -> None:
    for key in keys:
        if key.lower().startswith(RESERVED_PREFIX):
            raise InvalidParameterValueException(
                f"Tag key {key!r}: the prefix 'aws:' is reserved for AWS use; tags with it can "
                "be neither set nor removed"
            )


def merged(current: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """TagResource's result: ``new`` over ``current``, at most :data:`MAX_TAGS`."""
    if not new:
        raise InvalidParameterValueException(NO_TAGS)
    out = {**current, **new}
    if len(out) > MAX_TAGS:
        raise InvalidParameterValueException(TOO_MANY)
    return out
