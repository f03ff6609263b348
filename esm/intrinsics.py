"""CloudFormation's template language, as far as esm reads it: YAML with the short tags, intrinsic
functions, conditions, parameters, and what ``Ref`` / ``Fn::GetAtt`` give for the resource types
esm knows. :mod:`esm.templates` turns a template into esm's config with it.

:class:`Resolver` evaluates values lazily, where they are read. A value it cannot evaluate is a
:class:`~esm.errors.Problem` at the template path of the value (``Resources.Fn.Properties.
Description.Fn::GetAtt``) and raises :class:`Unresolved`, so its caller can leave the value out
and go on to find every other problem.

=========================  ======================================================================
``Ref``                    parameters (``Default`` or a given value; ``AllowedValues`` and
                           ``AllowedPattern`` checked; list types split), pseudo parameters
                           (``AWS::Region``, ``AWS::AccountId``, ``AWS::StackName``,
                           ``AWS::StackId``, ``AWS::Partition``, ``AWS::URLSuffix``,
                           ``AWS::NotificationARNs``, ``AWS::NoValue``), resources
``Fn::GetAtt``             ``[Resource, Attribute]`` or ``Resource.Attribute``: see
                           :func:`attributes_of`
``Fn::Sub``                ``${Param}``, ``${Resource}``, ``${Resource.Attribute}``,
                           ``${AWS::Region}``, ``${!Literal}``, and ``[text, {Name: value}]``
``Fn::If``                 with ``Conditions``: ``Fn::Equals``, ``Fn::Not``, ``Fn::And``,
                           ``Fn::Or``, ``Condition``
``Fn::Join``,              as CloudFormation; ``Fn::ToJsonString`` as the
``Fn::Select``,            ``AWS::LanguageExtensions`` transform has it
``Fn::Split``,
``Fn::FindInMap``,
``Fn::Base64``,
``Fn::ToJsonString``
=========================  ======================================================================

``Fn::ImportValue`` gives the value of ``--import-value NAME=VALUE`` (or the overlay's
``ImportValues``); an export esm does not know is skipped, as is a ``Ref`` / ``Fn::GetAtt`` of a
resource type esm does not run and an SSM parameter type: what needs the value is left out with a
warning (an error with ``--strict``). Any other ``Fn::`` (``Fn::GetAZs``, ``Fn::Cidr`` …) is "not
supported by esm".

Physical names are the name property (``QueueName``, ``FunctionName`` …) or else the logical id
(lower-cased for S3), where CloudFormation would generate ``stack-Logical-RANDOM``; a FIFO queue
or topic without a name gets ``.fifo``. ``Ref`` of a queue is its URL, as in CloudFormation;
:meth:`Resolver.arn` refuses a URL where an ARN is needed rather than converting it. A DynamoDB
table's ``StreamArn`` carries :data:`PLACEHOLDER_STREAM_LABEL` unless the real one is given in
``attributes`` (``--embedded`` does).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import yaml

from esm.arns import function_arn
from esm.errors import Problem
from esm.yamlfile import BoundedLoader, read_yaml_file

PLACEHOLDER_STREAM_LABEL = "1970-01-01T00:00:00.000"
NOT_SUPPORTED = "not supported by esm"
# Bounds on evaluation (the document itself is bounded by esm.yamlfile): a string an intrinsic
# builds (CloudFormation's whole template is at most 1 MB), and how deep names and conditions
# may refer to names and conditions (A's name is !Sub "${B.Name}-x", B's refers to C …).
MAX_STRING = 1024 * 1024
MAX_REFERENCE_DEPTH = 40

# -- YAML with CloudFormation's short tags ---------------------------------------------------------


class _CfnLoader(BoundedLoader):
    """SafeLoader reading ``!Ref x`` as ``{"Ref": x}`` and ``!Fn x`` as ``{"Fn::Fn": x}``, within
    :mod:`esm.yamlfile`'s bounds (nesting, values with aliases expanded, unique keys)."""


def _construct_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {key: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)
# CloudFormation reads unquoted dates (AWSTemplateFormatVersion) as strings
_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_yaml(path: Path) -> Any:
    """A template (YAML with short tags, or JSON); ConfigError if unreadable, not UTF-8 or
    UTF-16, not YAML, or beyond :mod:`esm.yamlfile`'s bounds."""
    return read_yaml_file(path, _CfnLoader)


# -- what Ref and Fn::GetAtt give -------------------------------------------------------------

NAME_PROPERTY = {
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Kinesis::Stream": "Name",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Serverless::SimpleTable": "TableName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Events::EventBus": "Name",
    "AWS::IAM::Role": "RoleName",
}


def attributes_of(kind: str, name: str, region: str, account: str) -> dict[str | None, str]:
    """What ``Ref`` (key None) and ``Fn::GetAtt`` give for a resource, as CloudFormation does;
    a DynamoDB table's ``StreamArn`` is added by the caller (its label is not known here)."""
    r, a = region, account
    if kind == "AWS::SQS::Queue":
        url = f"https://sqs.{r}.amazonaws.com/{a}/{name}"
        return {None: url, "QueueUrl": url, "QueueName": name, "Arn": f"arn:aws:sqs:{r}:{a}:{name}"}
    if kind == "AWS::SNS::Topic":
        topic = f"arn:aws:sns:{r}:{a}:{name}"
        return {None: topic, "TopicArn": topic, "TopicName": name}
    arns = {
        "AWS::Kinesis::Stream": f"arn:aws:kinesis:{r}:{a}:stream/{name}",
        "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{r}:{a}:table/{name}",
        "AWS::Serverless::SimpleTable": f"arn:aws:dynamodb:{r}:{a}:table/{name}",
        "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
        "AWS::Events::EventBus": f"arn:aws:events:{r}:{a}:event-bus/{name}",
        "AWS::Serverless::Function": function_arn(r, a, name),
        "AWS::Lambda::Function": function_arn(r, a, name),
        "AWS::IAM::Role": f"arn:aws:iam::{a}:role/{name}",
    }
    if kind not in arns:
        return {}
    out: dict[str | None, str] = {None: name, "Arn": arns[kind]}
    if kind == "AWS::Events::EventBus":
        out["Name"] = name
    return out


QUEUE_URL_HINT = (
    "a queue URL (what Ref gives for AWS::SQS::Queue) where an ARN is needed: use "
    "!GetAtt <Queue>.Arn"
)


def is_queue_url(value: str) -> bool:
    return re.match(r"https?://sqs[.-]", value) is not None


# -- evaluation ----------------------------------------------------------------------------------


class Unresolved(Exception):
    """A value could not be resolved; its problem is recorded already."""


NO_VALUE: Any = object()  # Ref AWS::NoValue: the property is left out


class ProblemCollector:
    """Problems found while reading a template, each once, in the order found; shared by the
    :class:`Resolver` and the template's translator (one list between them). What esm cannot
    run is *skipped*: a warning line in ``skipped`` (once), or a problem when ``strict``."""

    problems: list[Problem]
    skipped: list[str]
    strict: bool

    def problem(self, path: str, rule: str) -> None:
        if Problem(path, rule) not in self.problems:
            self.problems.append(Problem(path, rule))

    def skip(self, path: str, what: str) -> None:
        """``what`` at ``path`` is something esm does not run: left out with a warning, or a
        problem with ``--strict``."""
        if self.strict:
            self.problem(path, f"{what} (--strict)")
            return
        line = f"{path}: {what}: skipped"
        if line not in self.skipped:
            self.skipped.append(line)

    def skip_value(self, path: str, what: str) -> NoReturn:
        """:meth:`skip`, then :class:`Unresolved`: whatever needs the value is left out too."""
        self.skip(path, what)
        raise Unresolved

    def fail(self, path: str, rule: str) -> NoReturn:
        self.problem(path, rule)
        raise Unresolved

    def mapping_of(self, value: Any, path: str) -> dict[str, Any]:
        """A section (or property) as a mapping; anything else is a problem and reads as {}."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problem(path, "must be a mapping")
            return {}
        return {str(k): v for k, v in value.items()}


class Resolver(ProblemCollector):
    """Evaluates a template's values for a region, account and stack, recording problems in
    ``problems`` (shared with the caller). ``attributes`` overrides what ``Ref`` (attribute
    ``"Ref"``) or ``Fn::GetAtt`` gives, by (logical id, attribute); ``left_out(logical, type)``
    says which resources an overlay leaves out."""

    def __init__(
        self,
        document: Mapping[str, Any],
        *,
        region: str,
        account: str,
        stack_name: str,
        parameters: Mapping[str, Any],
        attributes: Mapping[tuple[str, str], Any],
        problems: list[Problem],
        left_out: Callable[[str, str], bool] = lambda logical, kind: False,
        strict: bool = False,
        skipped: list[str] | None = None,
        imports: Mapping[str, Any] | None = None,
    ) -> None:
        self.document = document
        self.region = region
        self.account = account
        self.stack_name = stack_name
        self.given = parameters
        self.attributes = attributes
        self.problems = problems
        self.left_out = left_out
        self.strict = strict
        self.skipped = [] if skipped is None else skipped
        self.imports = imports or {}
        self.resources = self.mapping_of(document.get("Resources"), "Resources")
        self.parameters = self.mapping_of(document.get("Parameters"), "Parameters")
        self.conditions: dict[str, bool] = {}
        self.resolving: set[str] = set()
        self.names: dict[str, str] = {}  # logical id → physical name, once resolved
        self.depth = 0  # names and conditions being resolved, one inside another

    # -- resources ---------------------------------------------------------------------------------

    def exists(self, logical: str) -> bool:
        """The resource is in the template, not left out by the overlay nor by its Condition."""
        res = self.resources.get(logical)
        if not isinstance(res, Mapping) or self.left_out(logical, str(res.get("Type"))):
            return False
        cond = res.get("Condition")
        if cond is None:
            return True
        try:
            return self.condition(str(cond), f"Resources.{logical}.Condition")
        except Unresolved:
            return False

    def physical_name(self, logical: str) -> str:
        if logical not in self.names:
            with self.referring(f"Resources.{logical}"):
                self.names[logical] = self._physical_name(logical)
        return self.names[logical]

    def _physical_name(self, logical: str) -> str:
        res = self.resources[logical]
        kind = str(res.get("Type"))
        props = res.get("Properties") or {}
        key = NAME_PROPERTY.get(kind)
        if logical in self.resolving:
            self.fail(f"Resources.{logical}", "circular reference through its own name")
        name: Any = NO_VALUE
        if key and isinstance(props, Mapping) and key in props:
            self.resolving.add(logical)
            try:
                name = self.resolve(props[key], f"Resources.{logical}.Properties.{key}")
            finally:
                self.resolving.discard(logical)
        if name is NO_VALUE:
            name = logical.lower() if kind == "AWS::S3::Bucket" else logical
            fifo = {"AWS::SQS::Queue": "FifoQueue", "AWS::SNS::Topic": "FifoTopic"}.get(kind)
            if fifo and isinstance(props, Mapping) and str(props.get(fifo)).lower() == "true":
                name += ".fifo"
        return str(name)

    def ref(self, name: str, path: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account}:stack/"
            f"{self.stack_name}/00000000-0000-0000-0000-000000000000",
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameter(name)
        if name in self.resources:
            return self.attribute(name, None, path)
        self.fail(path, f"Ref {name!r}: no parameter or resource of that name in the template")

    def parameter(self, name: str) -> Any:
        spec = self.parameters[name]
        path = f"Parameters.{name}"
        if not isinstance(spec, Mapping):
            self.fail(path, "must be a mapping")
        kind = str(spec.get("Type", "String"))
        given = self.given
        if name in given:
            value = given[name]
        elif kind.startswith("AWS::SSM::Parameter::Value"):
            self.skip_value(
                path,
                f"{kind} is not read from SSM by esm (give a value with "
                f"--parameter-overrides {name}=…)",
            )
        elif "Default" in spec:
            value = spec["Default"]
        elif self.strict:
            self.fail(path, f"no Default: give a value with --parameter-overrides {name}=…")
        else:
            allowed = spec.get("AllowedValues")
            value = allowed[0] if isinstance(allowed, list) and allowed else name
            line = (
                f"{path}: no Default and no value given: esm uses {shortened(value)} (give one "
                f"with --parameter-overrides {name}=…)"
            )
            if line not in self.skipped:
                self.skipped.append(line)
        allowed = spec.get("AllowedValues")
        if isinstance(allowed, list) and str(value) not in [str(v) for v in allowed]:
            self.fail(path, f"{shortened(value)} is not one of AllowedValues {shortened(allowed)}")
        pattern = spec.get("AllowedPattern")
        if isinstance(pattern, str) and not self.matches(pattern, str(value), path):
            self.fail(
                path, f"{shortened(value)} does not match AllowedPattern {shortened(pattern)}"
            )
        if kind == "CommaDelimitedList" or kind.startswith("List<"):
            return value if isinstance(value, list) else [s.strip() for s in str(value).split(",")]
        return str(value).lower() if isinstance(value, bool) else str(value)

    def matches(self, pattern: str, value: str, path: str) -> bool:
        try:
            return re.fullmatch(pattern, value) is not None
        except re.error as exc:
            self.fail(path, f"AllowedPattern is not a regular expression: {shortened(exc)}")

    def attribute(self, logical: str, attr: str | None, path: str) -> Any:
        """What ``Ref`` (``attr`` None) or ``Fn::GetAtt`` gives for a resource of the template."""
        if logical not in self.resources:
            self.fail(path, f"Fn::GetAtt: no resource {logical!r} in the template")
        if not self.exists(logical):
            self.fail(path, f"{logical} is left out (its Condition, or IgnoredResources)")
        override = self.attributes.get((logical, attr or "Ref"))
        if override is not None:
            return override
        kind = str(self.resources[logical].get("Type"))
        values = attributes_of(kind, self.physical_name(logical), self.region, self.account)
        if kind == "AWS::DynamoDB::Table" and attr == "StreamArn":
            return self.stream_arn(logical, values["Arn"], path)
        if attr not in values:
            what = f"Fn::GetAtt {logical}.{attr}" if attr else f"Ref {logical}"
            if values or kind in NAME_PROPERTY:
                self.fail(path, f"{what} ({kind}) is not resolved by esm")
            self.skip_value(path, f"{what}: esm does not run {kind}")
        return values[attr]

    def stream_arn(self, logical: str, table_arn: str, path: str) -> str:
        props = self.resources[logical].get("Properties") or {}
        if not isinstance(props, Mapping) or "StreamSpecification" not in props:
            self.fail(path, f"{logical} has no StreamSpecification, so no StreamArn")
        return f"{table_arn}/stream/{PLACEHOLDER_STREAM_LABEL}"

    def arn(self, value: Any, path: str) -> str:
        """A value that must be an ARN; a queue URL (what ``Ref`` gives) is refused with a hint."""
        resolved = self.resolve(value, path)
        if resolved is NO_VALUE or resolved is None:
            self.fail(path, "required")
        if not isinstance(resolved, str):
            self.fail(path, f"must be an ARN (got {shortened(resolved)})")
        if is_queue_url(resolved):
            self.fail(path, QUEUE_URL_HINT)
        return resolved

    # -- intrinsic functions -------------------------------------------------------------------

    # -- intrinsic functions ---------------------------------------------------------------------

    def resolve_quietly(self, value: Any, path: str) -> Any:
        try:
            return None if value is None else self.resolve(value, path)
        except Unresolved:
            return None

    def resolve(self, value: Any, path: str) -> Any:
        """``value`` with every intrinsic function evaluated; ``Unresolved`` on a problem."""
        if isinstance(value, Mapping):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref" or (isinstance(key, str) and key.startswith("Fn::")):
                    return self.intrinsic(str(key), arg, f"{path}.{key}")
            out: dict[str, Any] = {}
            for k, v in value.items():
                r = self.resolve(v, f"{path}.{k}")
                if r is not NO_VALUE:
                    out[str(k)] = r
            return out
        if isinstance(value, list):
            items = [self.resolve(v, f"{path}[{i}]") for i, v in enumerate(value)]
            return [v for v in items if v is not NO_VALUE]
        return value

    def intrinsic(self, fn: str, arg: Any, path: str) -> Any:
        if fn == "Ref":
            return self.ref(str(self.resolve(arg, path)), path)
        if fn == "Fn::GetAtt":
            parts = self.resolve(arg, path)
            if isinstance(parts, str):
                parts = parts.split(".", 1)
            if not isinstance(parts, list) or len(parts) != 2:
                self.fail(path, "must be [resource, attribute] or resource.attribute")
            return self.attribute(str(parts[0]), str(parts[1]), path)
        if fn == "Fn::Sub":
            return self.sub(arg, path)
        if fn == "Fn::ImportValue":
            return self.import_value(self.resolve(arg, path), path)
        if fn == "Fn::If":
            if not isinstance(arg, list) or len(arg) != 3:
                self.fail(path, "must be [condition, value if true, value if false]")
            chosen = arg[1] if self.condition(str(arg[0]), path) else arg[2]
            return self.resolve(chosen, path)
        args = self.resolve(arg, path)
        simple: dict[str, Callable[[Any], Any]] = {
            "Fn::Join": lambda a: _join(str(a[0]), _strings(a[1])),
            "Fn::Select": lambda a: a[1][int(a[0])],
            "Fn::Split": lambda a: str(a[1]).split(str(a[0])),
            "Fn::FindInMap": self.find_in_map,
            "Fn::Base64": lambda a: _bounded(base64.b64encode(str(a).encode()).decode()),
            "Fn::ToJsonString": lambda a: _bounded(json.dumps(a, separators=(",", ":"))),
            "Fn::Equals": lambda a: str(a[0]) == str(a[1]),
        }
        if fn not in simple:
            self.fail(path, f"{fn} is {NOT_SUPPORTED}")
        try:
            return simple[fn](args)
        except Unresolved:
            raise
        except TooLong as exc:
            self.fail(path, str(exc))
        except (IndexError, KeyError, TypeError, ValueError) as exc:
            self.fail(path, f"{fn}: invalid arguments {shortened(args)} ({shortened(exc)})")

    def import_value(self, name: Any, path: str) -> Any:
        """Another stack's export: from ``--import-value`` / the overlay's ``ImportValues``."""
        if isinstance(name, str) and name in self.imports:
            return self.imports[name]
        self.skip_value(
            path,
            f"Fn::ImportValue {shortened(name)}: no such export known to esm (give its value "
            f"with --import-value {name}=… or the overlay's ImportValues)",
        )

    def sub(self, arg: Any, path: str) -> str:
        if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], Mapping):
            text, names = (
                arg[0],
                {str(k): self.resolve(v, f"{path}.{k}") for k, v in arg[1].items()},
            )
        else:
            text, names = arg, {}
        if not isinstance(text, str):
            self.fail(path, "must be a string, or [string, {name: value}]")

        size = len(text)

        def replace(m: re.Match[str]) -> str:
            nonlocal size
            value = _replacement(m)
            size += len(value) - len(m.group(0))
            if size > MAX_STRING:
                raise TooLong(TOO_LONG)
            return value

        def _replacement(m: re.Match[str]) -> str:
            inner = m.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            inner = inner.strip()
            if inner in names:
                return as_string(names[inner])
            if "." in inner and not inner.startswith("AWS::"):
                res, attr = inner.split(".", 1)
                return as_string(self.attribute(res, attr, path))
            return as_string(self.ref(inner, path))

        try:
            return re.sub(r"\$\{([^}]*)\}", replace, text)
        except TooLong as exc:
            self.fail(path, str(exc))
        except TypeError as exc:
            self.fail(path, f"Fn::Sub: {shortened(exc)}")

    def find_in_map(self, args: Any) -> Any:
        mappings = self.mapping_of(self.document.get("Mappings"), "Mappings")
        name, top, second = args[0], args[1], args[2]
        return mappings[name][top][second]

    def condition(self, name: str, path: str) -> bool:
        if name in self.conditions:
            return self.conditions[name]
        conditions = self.mapping_of(self.document.get("Conditions"), "Conditions")
        if name not in conditions:
            self.fail(path, f"no condition {name!r} under Conditions")
        self.conditions[name] = False  # a cycle reads as false rather than recursing
        with self.referring(f"Conditions.{name}"):
            self.conditions[name] = self.truth(conditions[name], f"Conditions.{name}")
        return self.conditions[name]

    @contextmanager
    def referring(self, path: str) -> Iterator[None]:
        """One more name or condition being resolved inside the others: at most
        :data:`MAX_REFERENCE_DEPTH` (each costs a few Python frames)."""
        if self.depth >= MAX_REFERENCE_DEPTH:
            self.fail(
                path,
                f"refers through more than {MAX_REFERENCE_DEPTH} names or conditions, one "
                "inside another (esm's limit)",
            )
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def truth(self, value: Any, path: str) -> bool:
        if isinstance(value, Mapping) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Condition":
                return self.condition(str(arg), path)
            if key in ("Fn::Not", "Fn::And", "Fn::Or"):
                items = arg if isinstance(arg, list) else [arg]
                truths = [self.truth(v, f"{path}.{key}[{i}]") for i, v in enumerate(items)]
                return {
                    "Fn::Not": lambda: not truths[0],
                    "Fn::And": lambda: all(truths),
                    "Fn::Or": lambda: any(truths),
                }[str(key)]()
        result = self.resolve(value, path)
        if isinstance(result, bool):
            return result
        if str(result).lower() in ("true", "false"):
            return str(result).lower() == "true"
        self.fail(path, f"a condition must be true or false (got {shortened(result)})")


class TooLong(ValueError):
    """An intrinsic would build a string longer than :data:`MAX_STRING`."""


TOO_LONG = f"the result would be longer than {MAX_STRING:,} characters (esm's limit)"


def _bounded(text: str) -> str:
    if len(text) > MAX_STRING:
        raise TooLong(TOO_LONG)
    return text


def _join(separator: str, parts: list[str]) -> str:
    if sum(map(len, parts)) + len(separator) * max(len(parts) - 1, 0) > MAX_STRING:
        raise TooLong(TOO_LONG)
    return separator.join(parts)


def shortened(value: object, limit: int = 200) -> str:
    """``repr`` (or ``str`` of an exception) cut to ``limit`` characters, for messages."""
    text = str(value) if isinstance(value, BaseException) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def as_string(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        raise TypeError(f"a list or mapping cannot be put in a string: {shortened(value)}")
    return str(value)


def _strings(values: Any) -> list[str]:
    if not isinstance(values, list):
        raise TypeError("Fn::Join joins a list")
    return [as_string(v) for v in values]
