"""ARNs and Lambda function names: parsing only, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

SourceKind = Literal["sqs", "kinesis", "dynamodb"]


@dataclass(frozen=True, slots=True)
class Arn:
    partition: str
    service: str
    region: str
    account: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> Arn:
        parts = text.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn" or not parts[2] or not parts[5]:
            raise ValueError(f"not an ARN: {text!r}")
        return cls(parts[1], parts[2], parts[3], parts[4], parts[5])

    def __str__(self) -> str:
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{self.resource}"

    @property
    def name(self) -> str:
        """The resource's own name: queue, stream, table, topic, bucket, bus or function."""
        if self.service in ("kinesis", "dynamodb", "lambda", "events"):
            return re.split("[/:]", self.resource)[1]
        return self.resource


def source_kind(arn: str) -> SourceKind:
    """Which poller reads ``arn``; ValueError names what is accepted."""
    parsed = Arn.parse(arn)
    if parsed.service == "sqs" and parsed.resource:
        return "sqs"
    if parsed.service == "kinesis" and parsed.resource.startswith("stream/"):
        return "kinesis"
    if parsed.service == "dynamodb" and re.fullmatch(r"table/[^/]+/stream/.+", parsed.resource):
        return "dynamodb"
    raise ValueError(
        "unsupported event source: esm reads SQS queues (arn:aws:sqs:…), Kinesis streams "
        "(arn:aws:kinesis:…:stream/…) and DynamoDB streams (arn:aws:dynamodb:…:table/…/stream/…)"
    )


def is_fifo_queue(arn: str) -> bool:
    return arn.endswith(".fifo")


_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,64}")
_QUALIFIER = re.compile(r"\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9_-]{1,128}")
_FUNCTION_ARN = re.compile(
    r"(?:arn:(?P<partition>[\w-]+):lambda:)?"
    r"(?:(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d{1}):)?"
    r"(?:(?P<account>\d{12}):)?"
    r"(?:function:)?"
    r"(?P<name>[a-zA-Z0-9_.-]+)"
    r"(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9_-]+))?"
)


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """A function named in any of Lambda's forms (docs/semantics.md §10.4), split into name and
    qualifier."""

    name: str
    qualifier: str | None = None
    region: str | None = None
    account: str | None = None


def parse_function_name(text: str) -> FunctionRef:
    """Parse ``my-fn``, ``my-fn:alias``, ``123456789012:function:my-fn``, a full ARN…"""
    if not 1 <= len(text) <= 256:
        raise ValueError("FunctionName must be 1 to 256 characters")
    m = _FUNCTION_ARN.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a function name, partial ARN or function ARN")
    has_function_part = "function:" in text
    if (m["account"] or m["region"]) and not has_function_part:
        raise ValueError(f"{text!r} is not a function name, partial ARN or function ARN")
    if text.startswith("arn:") and not (m["region"] and m["account"]):
        raise ValueError(f"{text!r}: a function ARN needs a region and an account id")
    if not _NAME.fullmatch(m["name"]):
        raise ValueError(f"function name {m['name']!r} must be 1 to 64 of [a-zA-Z0-9-_.]")
    return FunctionRef(m["name"], m["qualifier"], m["region"], m["account"])


def valid_qualifier(text: str) -> bool:
    return _QUALIFIER.fullmatch(text) is not None


def function_arn(region: str, account: str, name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base
