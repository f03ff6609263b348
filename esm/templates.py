"""``esm run --template``: an AWS SAM / CloudFormation template read as esm's configuration.

The template is translated into the plain dict an esm.yaml holds (AWS names) and validated by
:func:`esm.config.parse_config`, so both paths share every rule; problems are reported at the
template's own paths (``Resources.Orders.Properties.Events.Q.Properties.BatchSize``).

What is read:

=================================  ============================================================
``AWS::Serverless::Function``      ``Functions`` (``Globals.Function`` merged in as SAM merges);
                                   ``Events`` of Type SQS, Kinesis and DynamoDB become
                                   ``EventSourceMappings``; ``EventInvokeConfig`` and
                                   ``DeadLetterQueue`` in SAM's shapes (``Type`` checked against
                                   the ARN, then dropped)
``AWS::Lambda::Function``          ``Functions`` (``Code`` a local folder)
``AWS::Lambda::EventSourceMapping``  ``EventSourceMappings``, properties 1:1 (``KmsKeyArn`` →
                                   ``KMSKeyArn``, ``Tags`` list → map)
``AWS::Lambda::EventInvokeConfig`` the function's ``EventInvokeConfig`` (any ``Qualifier``: esm
                                   has no versions or aliases)
``AWS::SQS::Queue``                ``Resources``, created by ``--embedded`` as esm.yaml's are
streams, tables, topics,           :class:`TemplateResource`; ``--embedded`` creates them (see
subscriptions, buckets, buses      :data:`EMULATED` and :func:`esm.embedded.provision_template`)
=================================  ============================================================

Values (``!Ref``, ``!GetAtt``, ``!Sub`` … in short and long forms, parameters, conditions) are
evaluated by :class:`esm.intrinsics.Resolver`, lazily: only what esm reads is resolved, so an
unresolvable value in an ignored property is no error.

Decisions (where a template means something only CloudFormation can know):

- **Physical names** are the name property (``QueueName``, ``FunctionName``, ``TableName`` …) or
  else the logical id (S3: lower-cased), where CloudFormation would generate
  ``stack-Logical-RANDOM``. A FIFO queue or topic without a name gets ``.fifo`` appended.
- **Region and account** come from esm's ``Settings`` (the overlay's, else the defaults), the stack
  name from ``--stack-name`` (default ``esm``).
- **``Ref`` of a queue is its URL**, as in CloudFormation (``https://sqs.<region>.amazonaws.com/
  <account>/<name>``), until the queue exists where esm talks to AWS: ``esm run`` then translates
  again with the URL that endpoint (or ``--embedded``'s emulator) answers, and a table's real
  ``StreamArn`` (:func:`esm.embedded.live_attributes`). Where an ARN is needed (``Queue``,
  ``Destination``, ``TargetArn``, ``deadLetterTargetArn``) a URL is refused with a hint to use
  ``!GetAtt Queue.Arn``, as Lambda refuses it; esm does not convert silently.
- **``!GetAtt Table.StreamArn``**: the stream label exists only once the table does. With
  ``--embedded`` it is the emulator's real ARN (:meth:`Template.with_attributes`); otherwise the
  label is the placeholder :data:`esm.intrinsics.PLACEHOLDER_STREAM_LABEL` until ``esm run``
  finds the table at its endpoint, unless the overlay's ``Attributes`` gives the real one
  (``OrdersTable.StreamArn: arn:…``).
- **Targets**: a Python function's default target is ``python:<Handler>`` with its ``CodeUri``
  folder (relative to the template) returned in :attr:`Template.code_paths` for the CLI to put
  on ``sys.path``. Other runtimes, images, S3 and .zip code need a target from ``--target
  NAME=…`` or the overlay. Two functions importing the same module name from different folders
  are refused: one process imports a module once.
- **What esm cannot run is skipped, not refused** (``--strict``: refused): an event type other
  than SQS / Kinesis / DynamoDB, a resource type esm has no part in, a property AWS defines but
  esm does not run ("supported by AWS, not by esm", from :data:`esm.aws_properties.
  AWS_PROPERTIES`), a function whose code esm cannot run (with its events), a layer by ARN, a
  value that needs any of these or an unknown ``Fn::ImportValue``, an output that cannot be
  evaluated. Each is one line of :attr:`Template.warnings` naming its path. A property AWS does
  not define is an error ("check the spelling"). Properties and resource types with no effect on
  how events reach functions (IAM, logs, alarms, tags, encryption, VPC …) are listed once. The
  overlay's ``IgnoredResources`` (logical ids, types, ``Function.Events.Name``; shell patterns)
  leaves out what esm should not run, silently.
- **Layers** of the template (``AWS::Serverless::LayerVersion`` ``ContentUri``,
  ``AWS::Lambda::LayerVersion`` ``Content``: local folders) become the function's ``Layers``
  (:mod:`esm.layers`); in process, their Python folders follow the code folders on ``sys.path``.
- ``Outputs`` are evaluated (:attr:`Template.outputs`); ``Metadata`` and ``Rules`` are not.

The overlay file (``--overlay``) holds what a template cannot::

    Settings: {Region: eu-west-1, ApiPort: 0, Store: memory://}
    Functions:                       # by FunctionName or logical id, merged over the template's
      orders: {Target: rie://localhost:9000}
    Parameters: {Stage: dev}         # as --parameter-overrides
    IgnoredResources: [AWS::Serverless::Api, ApiFunction]
    Attributes:                      # what Ref / Fn::GetAtt give, where esm cannot know it
      OrdersTable.StreamArn: arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2024-…
    ImportValues: {shared-bus-arn: arn:aws:events:…}   # what Fn::ImportValue gives, as
                                                       # --import-value NAME=VALUE
    Embedded: {SendMessages: [...]}  # as in esm.yaml
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from esm.arns import Arn, parse_function_name
from esm.aws_properties import SAM_EVENT_TYPES, aws_has
from esm.config import (
    FUNCTION_NAME,
    FUNCTION_NAME_RULE,
    RUNTIME,
    RUNTIME_RULE,
    EsmConfig,
    filter_warnings,
    kind_of,
    parse_config,
    shown,
)
from esm.errors import ConfigError, Problem
from esm.intrinsics import (
    NAME_PROPERTY,
    NO_VALUE,
    NOT_SUPPORTED,
    QUEUE_URL_HINT,
    ProblemCollector,
    Resolver,
    Unresolved,
    as_string,
    is_queue_url,
    read_yaml,
    shortened,
)
from esm.layers import python_paths

DEFAULT_STACK_NAME = "esm"
# CloudFormation's rule for the keys of Resources
LOGICAL_ID = re.compile(r"[A-Za-z0-9]{1,255}")
LOGICAL_ID_RULE = (
    "a logical id is 1 to 255 letters and digits (A-Za-z0-9), as CloudFormation requires"
)

# -- what the translation returns ------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateResource:
    """A resource ``--embedded`` creates: logical id, type, physical name, and its resolved
    properties (only those esm creates, see :mod:`esm.embedded`)."""

    logical_id: str
    type: str
    name: str
    properties: Mapping[str, Any]


@dataclass(frozen=True)
class Overlay:
    """``--overlay``: Settings, per-function overrides, parameters, ignored resources, Embedded."""

    source: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    functions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()
    embedded: Mapping[str, Any] = field(default_factory=dict)
    attributes: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    import_values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TemplateOptions:
    overlay: Overlay = field(default_factory=Overlay)
    targets: Mapping[str, str] = field(default_factory=dict)  # --target NAME=TARGET
    parameters: Mapping[str, str] = field(default_factory=dict)  # --parameter-overrides
    stack_name: str = DEFAULT_STACK_NAME
    import_values: Mapping[str, str] = field(default_factory=dict)  # --import-value NAME=VALUE
    strict: bool = False  # --strict: what esm cannot run is refused, not skipped


@dataclass(frozen=True)
class Template:
    """A template translated: the config, the folders to import handlers from, the resources
    ``--embedded`` creates, and the warnings to show once."""

    path: Path
    config: EsmConfig
    code_paths: tuple[Path, ...]
    resources: tuple[TemplateResource, ...]
    warnings: tuple[str, ...]
    document: Any = field(repr=False)
    options: TemplateOptions = field(repr=False)
    outputs: Mapping[str, Any] = field(default_factory=dict)

    def with_attributes(self, attributes: Mapping[tuple[str, str], Any]) -> Template:
        """Translated again with real attribute values from an emulator, keyed by (logical id,
        attribute); ``"Ref"`` for what ``Ref`` returns. E.g. ``("Table", "StreamArn")``."""
        return translate(self.document, self.path, self.options, attributes)


# -- loading -------------------------------------------------------------------------------------

_OVERLAY_KEYS = (
    "Settings",
    "Functions",
    "Parameters",
    "IgnoredResources",
    "Attributes",
    "Embedded",
    "ImportValues",
)
_PLACEHOLDER_TARGET = "python:placeholder.handler"


def load_overlay(path: str | Path) -> Overlay:
    """Read and check an overlay file; ConfigError names the overlay's own paths."""
    source = str(path)
    data = read_yaml(Path(path)) or {}
    if not isinstance(data, Mapping):
        rule = f"an overlay must hold a mapping ({', '.join(_OVERLAY_KEYS)}), not {kind_of(data)}"
        raise ConfigError([Problem("", rule)], source)
    problems = [
        Problem(str(k), f"unknown key (an overlay holds {', '.join(_OVERLAY_KEYS)})")
        for k in data
        if k not in _OVERLAY_KEYS
    ]
    functions = data.get("Functions") or {}
    ignored = data.get("IgnoredResources") or []
    parameters = data.get("Parameters") or {}
    attributes = data.get("Attributes") or {}
    import_values = data.get("ImportValues") or {}
    if not isinstance(functions, Mapping) or not all(
        isinstance(v, Mapping) for v in functions.values()
    ):
        problems.append(Problem("Functions", "must map function names to their settings"))
        functions = {}
    if not isinstance(ignored, list) or not all(isinstance(v, str) for v in ignored):
        problems.append(Problem("IgnoredResources", "must be a list of names or patterns"))
        ignored = []
    if not isinstance(parameters, Mapping):
        problems.append(Problem("Parameters", "must map parameter names to values"))
        parameters = {}
    if not isinstance(attributes, Mapping) or not all(isinstance(k, str) for k in attributes):
        problems.append(
            Problem("Attributes", "must map Resource.Attribute (or Resource) to values")
        )
        attributes = {}
    if not isinstance(import_values, Mapping) or not all(isinstance(k, str) for k in import_values):
        problems.append(Problem("ImportValues", "must map export names to their values"))
        import_values = {}
    if problems:
        raise ConfigError(problems, source)
    # Settings, Embedded and each function's settings are checked by esm.yaml's own rules
    parse_config(
        {
            "Settings": data.get("Settings") or {},
            "Embedded": data.get("Embedded") or {},
            "Functions": {n: {"Target": _PLACEHOLDER_TARGET, **f} for n, f in functions.items()},
        },
        source,
    )
    return Overlay(
        source=source,
        settings=dict(data.get("Settings") or {}),
        functions={str(n): dict(f) for n, f in functions.items()},
        parameters=dict(parameters),
        ignored=tuple(ignored),
        embedded=dict(data.get("Embedded") or {}),
        attributes={_attribute_key(k): v for k, v in attributes.items()},
        import_values=dict(import_values),
    )


def _attribute_key(text: str) -> tuple[str, str]:
    logical, _, attr = text.partition(".")
    return logical, attr or "Ref"


def parse_assignments(items: list[str] | None, option: str) -> dict[str, str]:
    """``["A=1", "B=x"]`` → ``{"A": "1", "B": "x"}``; ConfigError names the option."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError([Problem(option, f"expected NAME=VALUE (got {item!r})")])
        out[key.strip()] = value.strip()
    return out


# esm.yaml's own top-level keys: a file with Resources and none of these is a template
_CONFIG_KEYS = frozenset({"Settings", "Functions", "EventSourceMappings", "Embedded"})


def is_template(path: str | Path) -> bool:
    """Whether a file given where esm.yaml goes is a SAM / CloudFormation template: it has
    ``AWSTemplateFormatVersion`` or ``Transform``, or ``Resources`` without esm.yaml's own keys.
    A file that cannot be read is no template (esm.yaml's loader then says why)."""
    try:
        data = read_yaml(Path(path))
    except (ConfigError, OSError):
        return False
    if not isinstance(data, Mapping):
        return False
    keys = set(data)
    return bool(
        keys & {"AWSTemplateFormatVersion", "Transform"}
        or ("Resources" in keys and not keys & _CONFIG_KEYS)
    )


def load_template(path: str | Path, options: TemplateOptions | None = None) -> Template:
    """Read a SAM / CloudFormation template and translate it (see the module's docstring)."""
    options = options or TemplateOptions()
    if options.targets:  # check each --target on its own, as esm.yaml would
        parse_config(
            {"Functions": {n: {"Target": t} for n, t in options.targets.items()}}, "--target"
        )
    p = Path(path)
    return translate(read_yaml(p), p, options, {})


# -- the translation -----------------------------------------------------------------------------


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_SECTIONS = _names(
    "AWSTemplateFormatVersion Transform Description Metadata Parameters Mappings Conditions Rules "
    "Resources Outputs Globals"
)
_TRANSFORMS = _names("AWS::Serverless-2016-10-31 AWS::LanguageExtensions")
_RESOURCE_ATTRIBUTES = _names(
    "Type Properties DependsOn Condition DeletionPolicy UpdateReplacePolicy Metadata UpdatePolicy "
    "CreationPolicy IgnoreGlobals"
)
# resource types that do nothing to how events reach functions: listed once in a warning
IGNORED_TYPES = tuple(
    """
    AWS::IAM::* AWS::Logs::* AWS::CloudWatch::* AWS::KMS::* AWS::SSM::* AWS::SecretsManager::*
    AWS::EC2::* AWS::XRay::* AWS::CodeDeploy::* AWS::ApplicationInsights::* AWS::ResourceGroups::*
    AWS::CloudFormation::* AWS::Lambda::Permission AWS::Lambda::Version AWS::Lambda::Alias
    AWS::Lambda::LayerVersionPermission AWS::Lambda::CodeSigningConfig
    AWS::Lambda::Url AWS::Serverless::Connector AWS::SQS::QueuePolicy
    AWS::SQS::QueueInlinePolicy AWS::SNS::TopicPolicy AWS::SNS::TopicInlinePolicy
    AWS::S3::BucketPolicy AWS::Events::EventBusPolicy
    """.split()
)
_FUNCTION_INERT = _names(
    "Architectures CodeSigningConfigArn EphemeralStorage FileSystemConfigs ImageConfig KmsKeyArn "
    "RecursiveLoop RuntimeManagementConfig Tags VpcConfig"
)
# properties with no effect outside AWS, per type: accepted and listed in a warning
INERT_PROPERTIES: dict[str, frozenset[str]] = {
    "AWS::Serverless::Function": _FUNCTION_INERT
    | _names(
        "AssumeRolePolicyDocument AutoPublishAlias AutoPublishAliasAllProperties "
        "AutoPublishCodeSha256 DeploymentPreference FunctionUrlConfig PermissionsBoundary Policies "
        "PropagateTags ProvisionedConcurrencyConfig RolePath SnapStartConfig SourceKMSKeyArn "
        "Tracing VersionDescription"
    ),
    "AWS::Lambda::Function": _FUNCTION_INERT | _names("SnapStart TracingConfig"),
    "AWS::SQS::Queue": _names(
        "KmsMasterKeyId KmsDataKeyReusePeriodSeconds SqsManagedSseEnabled Tags MaximumMessageSize "
        "RedriveAllowPolicy DeduplicationScope FifoThroughputLimit"
    ),
    "AWS::Kinesis::Stream": _names("RetentionPeriodHours StreamEncryption Tags"),
    "AWS::DynamoDB::Table": _names(
        "SSESpecification Tags PointInTimeRecoverySpecification DeletionProtectionEnabled "
        "ContributorInsightsSpecification TableClass ResourcePolicy OnDemandThroughput "
        "WarmThroughput"
    ),
    "AWS::Serverless::SimpleTable": _names(
        "SSESpecification Tags PointInTimeRecoverySpecification"
    ),
    "AWS::SNS::Topic": _names(
        "DisplayName KmsMasterKeyId Tags TracingConfig DataProtectionPolicy ArchivePolicy "
        "SignatureVersion DeliveryStatusLogging FifoThroughputScope"
    ),
    "AWS::SNS::Subscription": _names("DeliveryPolicy Region ReplayPolicy SubscriptionRoleArn"),
    "AWS::S3::Bucket": _names(
        "AccelerateConfiguration AccessControl AnalyticsConfigurations BucketEncryption "
        "CorsConfiguration IntelligentTieringConfigurations InventoryConfigurations "
        "LifecycleConfiguration LoggingConfiguration MetricsConfigurations ObjectLockConfiguration "
        "ObjectLockEnabled OwnershipControls PublicAccessBlockConfiguration "
        "ReplicationConfiguration Tags VersioningConfiguration WebsiteConfiguration"
    ),
    "AWS::Events::EventBus": _names(
        "DeadLetterConfig Description KmsKeyIdentifier LogConfig Policy Tags"
    ),
}
_FUNCTION_COPIED = (
    "Timeout",
    "MemorySize",
    "ReservedConcurrentExecutions",
    "Environment",
    "Role",
    "Description",
    "LoggingConfig",
)
_SAM_FUNCTION = _names(
    "FunctionName Handler CodeUri Runtime PackageType ImageUri InlineCode EventInvokeConfig "
    "DeadLetterQueue Events Layers"
) | set(_FUNCTION_COPIED)
_CFN_FUNCTION = _names(
    "FunctionName Handler Code Runtime PackageType DeadLetterConfig Layers"
) | set(_FUNCTION_COPIED)
LAYER_TYPES = {
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Lambda::LayerVersion": "Content",
}
# CreateEventSourceMapping's parameters esm reads: the CloudFormation / SAM name is esm.yaml's,
# except KmsKeyArn (KMSKeyArn in the API and esm.yaml)
_MAPPING = {
    name: name
    for name in (
        "BatchSize BisectBatchOnFunctionError DestinationConfig Enabled FilterCriteria "
        "FunctionResponseTypes MaximumBatchingWindowInSeconds MaximumRecordAgeInSeconds "
        "MaximumRetryAttempts MetricsConfig ParallelizationFactor ScalingConfig StartingPosition "
        "StartingPositionTimestamp Tags TumblingWindowInSeconds"
    ).split()
} | {"KmsKeyArn": "KMSKeyArn"}
_SAM_EVENT_SOURCE = {"SQS": "Queue", "Kinesis": "Stream", "DynamoDB": "Stream"}
_SAM_DESTINATION_TYPES = {
    "SQS": "sqs",
    "SNS": "sns",
    "Lambda": "lambda",
    "EventBridge": "events",
    "S3": "s3",
}
AWS_LAYER_INERT = {
    "AWS::Serverless::LayerVersion": _names(
        "CompatibleArchitectures CompatibleRuntimes Description LayerName LicenseInfo "
        "PublishLambdaVersion RetentionPolicy"
    ),
    "AWS::Lambda::LayerVersion": _names(
        "CompatibleArchitectures CompatibleRuntimes Description LayerName LicenseInfo"
    ),
}
_QUEUE_PROPERTIES = _names(
    "QueueName FifoQueue ContentBasedDeduplication VisibilityTimeout DelaySeconds "
    "MessageRetentionPeriod ReceiveMessageWaitTimeSeconds RedrivePolicy"
)
# what --embedded creates, per type (see esm.embedded.provision_template)
EMULATED: dict[str, frozenset[str]] = {
    "AWS::Kinesis::Stream": _names("Name ShardCount StreamModeDetails DesiredShardLevelMetrics"),
    "AWS::DynamoDB::Table": _names(
        "TableName KeySchema AttributeDefinitions BillingMode ProvisionedThroughput "
        "StreamSpecification GlobalSecondaryIndexes LocalSecondaryIndexes TimeToLiveSpecification"
    ),
    "AWS::Serverless::SimpleTable": _names("TableName PrimaryKey ProvisionedThroughput"),
    "AWS::SNS::Topic": _names("TopicName FifoTopic ContentBasedDeduplication Subscription"),
    "AWS::SNS::Subscription": _names(
        "TopicArn Protocol Endpoint RawMessageDelivery FilterPolicy FilterPolicyScope RedrivePolicy"
    ),
    "AWS::S3::Bucket": _names("BucketName"),
    "AWS::Events::EventBus": _names("Name"),
}
_REQUIRED = {
    "AWS::DynamoDB::Table": ("KeySchema", "AttributeDefinitions"),
    "AWS::SNS::Subscription": ("TopicArn", "Protocol", "Endpoint"),
    "AWS::Events::EventBus": ("Name",),
}


def translate(
    document: Any,
    path: Path,
    options: TemplateOptions,
    attributes: Mapping[tuple[str, str], Any],
) -> Template:
    """Translate a loaded template; ConfigError lists every problem at the template's paths."""
    given = {**options.overlay.attributes, **attributes}
    return _Translator(document, path, options, given).run()


class _Translator(ProblemCollector):
    def __init__(
        self,
        document: Any,
        path: Path,
        options: TemplateOptions,
        attributes: Mapping[tuple[str, str], Any],
    ) -> None:
        self.document = document
        self.path = path
        self.folder = path.resolve().parent
        self.options = options
        self.overlay = options.overlay
        self.attributes = attributes
        settings = parse_config({"Settings": dict(self.overlay.settings)}).settings
        self.in_process = settings.template_python == "InProcess"
        self.strict = options.strict
        self.skipped: list[str] = []
        self.skipped_functions: set[str] = set()  # esm names and logical ids
        self.layers: dict[str, Path | None] = {}  # layer logical id → its folder
        self.function_skips: dict[tuple[str, str], list[str]] = {}  # (path, why) → functions
        self.current = ""  # the function being read
        self.problems: list[Problem] = []
        self.values = Resolver(
            document if isinstance(document, Mapping) else {},
            region=settings.region,
            account=settings.account_id,
            stack_name=options.stack_name,
            parameters={**self.overlay.parameters, **options.parameters},
            attributes=attributes,
            problems=self.problems,
            left_out=self.ignored,
            strict=options.strict,
            skipped=self.skipped,
            imports={**self.overlay.import_values, **options.import_values},
        )
        self.origin: dict[str, str] = {}
        self.functions: dict[str, dict[str, Any]] = {}  # esm name → FunctionConfig dict
        self.function_of: dict[str, str] = {}  # logical id → esm name
        self.mappings: list[dict[str, Any]] = []
        self.queues: dict[str, dict[str, Any]] = {}
        self.emulated: list[TemplateResource] = []
        self.code_paths: list[Path] = []
        self.modules: dict[str, tuple[Path, str]] = {}  # top-level module → (folder, function)
        self.ignored_types: Counter[str] = Counter()
        self.ignored_props: dict[str, set[str]] = defaultdict(set)
        self.ignored_by_overlay: list[str] = []
        self.notes: list[str] = []

    # -- problems ------------------------------------------------------------------------------

    def unsupported(self, path: str, hint: str = "") -> None:
        self.problem(path, NOT_SUPPORTED + (f" ({hint})" if hint else ""))

    def check_keys(
        self,
        value: Any,
        path: str,
        known: AbstractSet[str],
        inert: AbstractSet[str] = frozenset(),
        kind: str = "",
    ) -> dict[str, Any]:
        """``value`` as a mapping; keys outside ``known`` and ``inert`` are problems, inert ones
        are noted for the warning (under ``kind``)."""
        if not isinstance(value, Mapping):
            self.problem(path, "must be a mapping")
            return {}
        for key in value:
            if key in inert:
                self.ignored_props[kind].add(str(key))
            elif key not in known:
                self.unknown_property(f"{path}.{key}", str(key), kind)
        return {str(k): v for k, v in value.items() if k in known}

    def unknown_property(self, path: str, key: str, kind: str) -> None:
        """A property esm does not read: skipped if AWS has it, a spelling error if not."""
        if not kind:
            self.unsupported(path)
        elif aws_has(kind, key):
            self.skip(path, "supported by AWS, not by esm")
        else:
            self.problem(path, f"not a property of {kind} (check the spelling)")

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> Template:
        doc = self.document
        if doc is None:
            rule = "the file is empty (or only comments): a template holds at least Resources"
            raise ConfigError([Problem("", rule)], str(self.path))
        if not isinstance(doc, Mapping):
            rule = f"a template must hold a mapping (Resources …), not {kind_of(doc)}"
            raise ConfigError([Problem("", rule)], str(self.path))
        for key in doc:
            if key not in _SECTIONS:
                self.unsupported(str(key), "not a template section")
        self.check_transform(doc.get("Transform"))
        if not self.values.resources:
            self.problem("Resources", "required: a template declares at least one resource")
        self.check_parameter_values()
        self.translate_resources()
        outputs = self.outputs()
        if self.problems:
            raise ConfigError(self.problems, str(self.path))
        self.check_overrides()
        data = {
            "Settings": dict(self.overlay.settings),
            "Functions": self.functions,
            "EventSourceMappings": self.mappings,
            "Resources": self.queues,
            "Embedded": dict(self.overlay.embedded),
        }
        try:
            config = parse_config(data, str(self.path))
        except ConfigError as exc:
            raise ConfigError([self.locate(p) for p in exc.problems], str(self.path)) from None
        for p in filter_warnings(config):
            located = self.locate(p)
            self.notes.append(f"{located.path}: {located.rule}")
        return Template(
            path=self.path,
            config=config,
            code_paths=tuple(self.code_paths),
            resources=tuple(self.emulated),
            warnings=tuple(self.warnings()),
            document=self.document,
            options=self.options,
            outputs=outputs,
        )

    def outputs(self) -> dict[str, Any]:
        """``Outputs`` evaluated as CloudFormation would show them; one that cannot be (it refers
        to what esm skipped, or to a resource SAM would generate) is skipped."""
        out: dict[str, Any] = {}
        for name, spec in self.mapping_of(self.document.get("Outputs"), "Outputs").items():
            path = f"Outputs.{name}"
            if not isinstance(spec, Mapping) or "Value" not in spec:
                self.problem(path, "an output holds a Value")
                continue
            mine, self.values.problems = self.values.problems, []
            try:
                cond = spec.get("Condition")
                if cond is None or self.values.condition(str(cond), f"{path}.Condition"):
                    out[name] = self.values.resolve(spec["Value"], f"{path}.Value")
            except Unresolved:
                pass
            finally:
                theirs, self.values.problems = self.values.problems, mine
            for p in theirs:
                self.skip(p.path, p.rule)
        return out

    def check_transform(self, value: Any) -> None:
        names = value if isinstance(value, list) else [] if value is None else [value]
        for i, name in enumerate(names):
            if not isinstance(name, str) or name not in _TRANSFORMS:
                where = f"Transform[{i}]" if isinstance(value, list) else "Transform"
                self.unsupported(where, f"esm reads {' and '.join(sorted(_TRANSFORMS))}")

    def check_parameter_values(self) -> None:
        given = {**self.overlay.parameters, **self.options.parameters}
        for name in given:
            if name not in self.values.parameters:
                self.problem(
                    f"Parameters.{name}", "a value is given for it, but the template declares none"
                )

    def ignored(self, *names: str) -> bool:
        return any(fnmatch.fnmatchcase(n, pat) for n in names for pat in self.overlay.ignored)

    def translate_resources(self) -> None:
        handlers: dict[str, Callable[[str, Mapping[str, Any], str], None]] = {
            "AWS::Serverless::Function": self.serverless_function,
            "AWS::Lambda::Function": self.lambda_function,
            "AWS::SQS::Queue": self.queue,
            "AWS::Serverless::LayerVersion": self.layer_resource,
            "AWS::Lambda::LayerVersion": self.layer_resource,
        }
        later: dict[str, Callable[[str, Mapping[str, Any], str], None]] = {
            "AWS::Lambda::EventSourceMapping": self.event_source_mapping,
            "AWS::Lambda::EventInvokeConfig": self.event_invoke_config,
        }
        for phase in (handlers, later):
            for logical, res in self.values.resources.items():
                path = f"Resources.{logical}"
                if not isinstance(res, Mapping) or not isinstance(res.get("Type"), str):
                    if phase is handlers:
                        self.problem(f"{path}.Type", "required: every resource has a Type")
                    continue
                kind = res["Type"]
                if phase is handlers and not self.resource_checks(logical, res, path):
                    continue
                if not self.values.exists(logical):
                    continue
                if kind in phase:
                    phase[kind](logical, res, path)
                elif phase is handlers and kind in EMULATED:
                    self.emulated_resource(logical, res, path)
                elif phase is handlers and kind not in later:
                    if any(fnmatch.fnmatchcase(kind, pat) for pat in IGNORED_TYPES):
                        self.ignored_types[kind] += 1
                    else:
                        self.skip(path, f"{kind}: esm does not run it")

    def resource_checks(self, logical: str, res: Mapping[str, Any], path: str) -> bool:
        if LOGICAL_ID.fullmatch(logical) is None:
            self.problem(f"Resources[{shown(logical)}]", LOGICAL_ID_RULE)
            return False
        for key in res:
            if key == "Description":  # seen beside Type in templates; no effect on AWS either
                self.skip(f"{path}.{key}", "a description, of no effect on how esm runs")
            elif key not in _RESOURCE_ATTRIBUTES:
                self.unsupported(f"{path}.{key}", "not a resource attribute")
        if self.ignored(logical, res["Type"]):
            self.ignored_by_overlay.append(logical)
            return False
        return True

    # -- functions -----------------------------------------------------------------------------

    def serverless_function(self, logical: str, res: Mapping[str, Any], path: str) -> None:
        merged, origins = self.with_globals(res, path)
        kind = "AWS::Serverless::Function"
        props: dict[str, Any] = {}
        for key, value in merged.items():
            if key in INERT_PROPERTIES[kind]:
                self.ignored_props[kind].add(key)
            elif key in _SAM_FUNCTION:
                props[key] = value
            else:
                self.unknown_property(origins[key], key, kind)
        name = self.add_function(logical, props, origins, path)
        if name is None:
            return
        fn = self.functions[name]
        if "EventInvokeConfig" in props:
            where = origins["EventInvokeConfig"]
            fn["EventInvokeConfig"] = self.sam_invoke_config(props["EventInvokeConfig"], where)
            self.origin[f"Functions.{name}.EventInvokeConfig"] = where
        if "DeadLetterQueue" in props:
            where = origins["DeadLetterQueue"]
            dlq = self.check_keys(props["DeadLetterQueue"], where, {"Type", "TargetArn"})
            self.sam_type(dlq, where, ("SQS", "SNS"), required=True)
            if "TargetArn" not in dlq:
                self.problem(f"{where}.TargetArn", "required")
            else:
                with self.attempt():
                    arn = self.values.arn(dlq["TargetArn"], f"{where}.TargetArn")
                    self.check_type_matches(dlq, arn, where)
                    fn["DeadLetterConfig"] = {"TargetArn": arn}
                    self.origin[f"Functions.{name}.DeadLetterConfig"] = where
        events = self.mapping_of(props.get("Events"), f"{path}.Properties.Events")
        for ev_name, event in events.items():
            self.sam_event(name, logical, ev_name, event, f"{path}.Properties.Events.{ev_name}")

    def lambda_function(self, logical: str, res: Mapping[str, Any], path: str) -> None:
        kind = "AWS::Lambda::Function"
        base = f"{path}.Properties"
        props = self.check_keys(
            res.get("Properties") or {}, base, _CFN_FUNCTION, INERT_PROPERTIES[kind], kind
        )
        origins = {k: f"{base}.{k}" for k in props}
        name = self.add_function(logical, props, origins, path)
        if name is not None and "DeadLetterConfig" in props:
            where = origins["DeadLetterConfig"]
            dlc = self.check_keys(props["DeadLetterConfig"], where, {"TargetArn"})
            with self.attempt():
                arn = self.values.arn(dlc.get("TargetArn"), f"{where}.TargetArn")
                self.functions[name]["DeadLetterConfig"] = {"TargetArn": arn}
                self.origin[f"Functions.{name}.DeadLetterConfig"] = where

    def with_globals(
        self, res: Mapping[str, Any], path: str
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The function's properties with ``Globals.Function`` merged in as SAM merges: the
        resource's scalars win, maps merge, lists concatenate; ``IgnoreGlobals`` is honoured."""
        props = res.get("Properties") or {}
        if not isinstance(props, Mapping):
            self.problem(f"{path}.Properties", "must be a mapping")
            props = {}
        glob = self.mapping_of(
            self.mapping_of(self.document.get("Globals"), "Globals").get("Function"),
            "Globals.Function",
        )
        skip = res.get("IgnoreGlobals")
        if skip == "*":
            glob = {}
        elif isinstance(skip, list):
            glob = {k: v for k, v in glob.items() if k not in skip}
        merged: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for key in {**glob, **props}:
            if key in props and key in glob:
                merged[key] = _merge_globals(glob[key], props[key])
            else:
                merged[key] = props[key] if key in props else glob[key]
            origins[key] = f"{path}.Properties.{key}" if key in props else f"Globals.Function.{key}"
        return merged, origins

    def add_function(
        self, logical: str, props: dict[str, Any], origins: dict[str, str], path: str
    ) -> str | None:
        try:
            name = self.values.physical_name(logical)
        except Unresolved:
            return None
        if FUNCTION_NAME.fullmatch(name) is None:
            where = origins.get("FunctionName")
            rule = f"{FUNCTION_NAME_RULE} (got {shown(name)})"
            self.problem(where or path, rule if where else f"{rule}, from the logical id")
            return None
        self.function_of[logical] = name
        esm_path = f"Functions.{name}"
        self.origin[esm_path] = f"{path}.Properties"
        fn: dict[str, Any] = {}
        for key in _FUNCTION_COPIED:
            if key in props:
                with self.attempt():
                    if key == "Environment":
                        value = self.environment(props[key], origins[key])
                    else:
                        value = self.values.resolve(props[key], origins[key])
                    if value is not NO_VALUE:
                        fn[key] = value
                        self.origin[f"{esm_path}.{key}"] = origins[key]
        target = self.options.targets.get(name) or self.options.targets.get(logical)
        entry = self.overlay.functions.get(name) or self.overlay.functions.get(logical) or {}
        target = target or entry.get("Target")
        if target is None:
            self.current = name
            try:
                code = self.code_properties(name, props, origins, path)
            except _FunctionSkipped:  # esm cannot run its code: skipped, not refused
                self.skipped_functions.update((name, logical))
                del self.function_of[logical]
                return None
            except Unresolved:
                code = {}
            for key, value in code.items():
                fn[key] = value
                self.origin[f"{esm_path}.{key}"] = origins.get(key, f"{path}.Properties")
            if "Layers" in props:
                self.add_layers(fn, props["Layers"], origins["Layers"])
        else:
            fn["Target"] = target
            self.origin[f"{esm_path}.Target"] = origins.get("Handler", f"{path}.Properties")
        fn.update({k: v for k, v in entry.items() if k != "Target"})
        self.functions[name] = fn
        return name

    def environment(self, value: Any, path: str) -> Any:
        """``Environment``, each variable resolved on its own (one that refers to what esm skips
        is left out, with a warning); CloudFormation turns numbers and booleans into strings."""
        if not (isinstance(value, Mapping) and isinstance(value.get("Variables"), Mapping)):
            return self.values.resolve(value, path)
        variables: dict[str, str] = {}
        for key, raw in value["Variables"].items():
            where = f"{path}.Variables.{key}"
            with self.attempt():
                resolved = self.values.resolve(raw, where)
                if resolved is NO_VALUE:
                    continue
                try:
                    variables[str(key)] = as_string(resolved)
                except TypeError as exc:
                    self.fail(where, str(exc))
        rest = {
            k: self.values.resolve(v, f"{path}.{k}") for k, v in value.items() if k != "Variables"
        }
        return {**rest, "Variables": variables}

    def code_properties(
        self, name: str, props: Mapping[str, Any], origins: Mapping[str, str], path: str
    ) -> dict[str, Any]:
        """How a function whose code is a local folder runs: ``Runtime``, ``Handler`` and
        ``CodeUri`` (the folder, absolute) for execution environments; with Settings
        ``TemplatePythonFunctions: InProcess``, a ``python:<Handler>`` Target instead."""
        if self.in_process:
            in_process = {"Target": self.python_target(name, props, origins, path)}
            declared = self.values.resolve(props.get("Runtime"), origins.get("Runtime", path))
            if isinstance(declared, str) and RUNTIME.fullmatch(declared):
                in_process["Runtime"] = declared  # GetFunction shows it; esm's Python runs it
            return in_process
        base = f"{path}.Properties"
        need = f"give it a Target with --target {name}=… or in an overlay (e.g. rie://host:port)"
        self.check_zip(props, origins, base, need)
        runtime = str(self.values.resolve(props.get("Runtime"), origins.get("Runtime", base)))
        if "Runtime" not in props:
            self.fail(f"{base}.Runtime", f"required (esm runs the code in its runtime); or {need}")
        if RUNTIME.fullmatch(runtime) is None:
            self.skip_function(origins["Runtime"], f"{RUNTIME_RULE} (got {shown(runtime)})", need)
        out: dict[str, Any] = {"Runtime": runtime}
        if "Handler" in props:
            out["Handler"] = str(self.values.resolve(props["Handler"], origins["Handler"]))
        elif runtime.startswith("python"):
            self.fail(f"{base}.Handler", "required")
        out["CodeUri"] = str(self.code_folder(props, origins, base, need))
        return out

    def check_zip(
        self, props: Mapping[str, Any], origins: Mapping[str, str], base: str, need: str
    ) -> None:
        where = origins.get("PackageType", base)
        package = self.values.resolve(props.get("PackageType", "Zip"), where)
        if package == "Image" or "ImageUri" in props:
            self.skip_function(
                origins.get("PackageType", origins.get("ImageUri", base)),
                "a container image function",
                need,
            )

    def skip_function(self, path: str, why: str, need: str) -> NoReturn:
        """The function's code is something esm does not run: it is skipped with its events,
        one warning for every function skipped for the same reason at the same path (a
        ``Globals`` property); refused with --strict."""
        if self.strict:
            self.fail(path, f"{why}: {need} (--strict)")
        self.function_skips.setdefault((path, why), []).append(self.current)
        raise _FunctionSkipped

    def python_target(
        self, name: str, props: Mapping[str, Any], origins: Mapping[str, str], path: str
    ) -> str:
        """``python:<Handler>`` for a Python function whose code is a local folder."""
        base = f"{path}.Properties"
        need = "give it a Target with --target {0}=… or in an overlay (e.g. rie://host:port)"
        need = need.format(name)
        self.check_zip(props, origins, base, need)
        runtime = self.values.resolve(props.get("Runtime", "python"), origins.get("Runtime", base))
        if not str(runtime).startswith("python"):
            self.skip_function(
                origins["Runtime"],
                f"{runtime} is not run in process (esm imports Python handlers)",
                need,
            )
        if "Handler" not in props:
            self.fail(f"{base}.Handler", "required")
        handler = str(self.values.resolve(props["Handler"], origins["Handler"])).replace("/", ".")
        module, _, func = handler.rpartition(".")
        if not module or not func:
            self.fail(origins["Handler"], f"must be module.function (got {handler!r})")
        folder = self.code_folder(props, origins, base, need)
        top = module.split(".")[0]
        seen = self.modules.setdefault(top, (folder, name))
        if seen[0] != folder:
            self.fail(
                origins["Handler"],
                f"module {top!r} is also imported by {seen[1]} from {seen[0]}; one process imports "
                f"a module once: {need}",
            )
        if folder not in self.code_paths:
            self.code_paths.append(folder)
        return f"python:{handler}"

    def code_folder(
        self, props: Mapping[str, Any], origins: Mapping[str, str], base: str, need: str
    ) -> Path:
        if "InlineCode" in props:
            return self.inline_folder(props, origins, "InlineCode", props["InlineCode"], need)
        key = "CodeUri" if "CodeUri" in props else "Code" if "Code" in props else None
        if key is None:
            return self.folder  # SAM builds from the template's folder when CodeUri is left out
        code = self.values.resolve(props[key], origins[key])
        if isinstance(code, Mapping) and "ZipFile" in code:
            return self.inline_folder(props, origins, key, code["ZipFile"], need)
        if not isinstance(code, str) or code.startswith("s3://"):
            self.skip_function(origins[key], "code in S3: esm runs code from a local folder", need)
        folder = (self.folder / code).resolve()
        if code.endswith(".zip") and not folder.is_dir():
            self.skip_function(
                origins[key], "code in a .zip file: esm runs code from a local folder", need
            )
        if not folder.is_dir():
            self.fail(origins[key], f"no such folder: {folder}")
        return folder

    def inline_folder(
        self,
        props: Mapping[str, Any],
        origins: Mapping[str, str],
        key: str,
        text: Any,
        need: str,
    ) -> Path:
        """Inline code (SAM ``InlineCode``, CloudFormation ``Code.ZipFile``) written where Lambda
        puts it: ``index.py`` (Python) or ``index.js`` (Node.js), in a folder of its own under
        the system's temporary folder, named by the code's hash (the same code, the same
        folder)."""
        where = origins[key] if key == "InlineCode" else f"{origins[key]}.ZipFile"
        code = self.values.resolve(text, where)
        runtime = str(self.values.resolve_quietly(props.get("Runtime"), origins.get("Runtime", "")))
        names = {"python": "index.py", "nodejs": "index.js"}
        name = next((f for r, f in names.items() if runtime.startswith(r)), None)
        if not isinstance(code, str) or name is None:
            self.skip_function(where, f"inline code for {runtime or 'no Runtime'}", need)
        digest = hashlib.sha256(f"{name}\n{code}".encode()).hexdigest()[:16]
        folder = Path(tempfile.gettempdir()) / "esm-inline" / digest
        target = folder / name
        if not target.is_file() or target.read_text(encoding="utf-8") != code:
            folder.mkdir(parents=True, exist_ok=True)
            target.write_text(code, encoding="utf-8")
        return folder

    # -- layers ----------------------------------------------------------------------------------

    def layer_resource(self, logical: str, res: Mapping[str, Any], path: str) -> None:
        self.layer_folder(logical)

    def layer_folder(self, logical: str) -> Path | None:
        """The local folder of a layer of the template (``ContentUri`` / ``Content``), checked
        once; None when it is not local (skipped with a warning) or wrong (a problem)."""
        if logical in self.layers:
            return self.layers[logical]
        self.layers[logical] = None
        res = self.values.resources[logical]
        kind = str(res["Type"])
        path = f"Resources.{logical}"
        base = f"{path}.Properties"
        key = LAYER_TYPES[kind]
        props = self.check_keys(
            res.get("Properties") or {}, base, {key}, AWS_LAYER_INERT[kind], kind
        )
        if key not in props:
            self.problem(f"{base}.{key}", "required")
            return None
        try:
            content = self.values.resolve(props[key], f"{base}.{key}")
        except Unresolved:
            return None
        if not isinstance(content, str) or content.startswith("s3://"):
            self.skip(f"{base}.{key}", "a layer in S3: esm mounts layers from a local folder")
            return None
        folder = (self.folder / content).resolve()
        if not folder.is_dir():
            self.problem(f"{base}.{key}", f"no such folder: {folder}")
            return None
        self.layers[logical] = folder
        return folder

    def add_layers(self, fn: dict[str, Any], value: Any, path: str) -> None:
        """A function's local layers: ``Layers`` for an environment; on ``sys.path`` after the
        code folders for an in-process function."""
        layers = self.function_layers(value, path)
        if not layers:
            return
        fn["Layers"] = [str(f) for f in layers]
        if self.in_process:
            for folder in layers:
                for lib in python_paths(folder):
                    if lib not in self.code_paths:
                        self.code_paths.append(lib)

    def function_layers(self, value: Any, path: str) -> list[Path]:
        """The folders of a function's ``Layers``: layers of the template by ``Ref``; a layer
        given by ARN is skipped (esm cannot download it)."""
        if not isinstance(value, list):
            self.problem(path, "must be a list of layers")
            return []
        out: list[Path] = []
        for i, entry in enumerate(value):
            where = f"{path}[{i}]"
            ref = entry.get("Ref") if isinstance(entry, Mapping) and len(entry) == 1 else None
            res = self.values.resources.get(ref) if isinstance(ref, str) else None
            if isinstance(res, Mapping) and res.get("Type") in LAYER_TYPES:
                if self.values.exists(str(ref)):
                    folder = self.layer_folder(str(ref))
                    if folder is not None:
                        out.append(folder)
                continue
            resolved = self.values.resolve_quietly(entry, where)
            if resolved is not None:
                self.skip(where, f"layer {shortened(resolved)}: esm mounts layers of the template")
        return out

    def sam_invoke_config(self, value: Any, path: str) -> dict[str, Any]:
        keys = {"MaximumEventAgeInSeconds", "MaximumRetryAttempts", "DestinationConfig"}
        cfg = self.check_keys(value, path, keys)
        out: dict[str, Any] = {}
        for key in ("MaximumEventAgeInSeconds", "MaximumRetryAttempts"):
            if key in cfg:
                with self.attempt():
                    out[key] = self.values.resolve(cfg[key], f"{path}.{key}")
        if "DestinationConfig" in cfg:
            where = f"{path}.DestinationConfig"
            dests = self.check_keys(cfg["DestinationConfig"], where, {"OnSuccess", "OnFailure"})
            out["DestinationConfig"] = {}
            for when, dest in dests.items():
                with self.attempt():
                    out["DestinationConfig"][when] = self.sam_destination(
                        dest, f"{where}.{when}", tuple(_SAM_DESTINATION_TYPES)
                    )
        return out

    def sam_destination(self, value: Any, path: str, types: tuple[str, ...]) -> dict[str, Any]:
        """SAM's ``{Type, Destination}``: Type checked against the ARN, then dropped."""
        dest = self.check_keys(value, path, {"Type", "Destination"})
        self.sam_type(dest, path, types)
        if "Destination" not in dest:
            self.fail(
                f"{path}.Destination",
                "required by esm: SAM creates a queue or topic when Destination is left out, "
                "esm does not; declare one in the template and reference it",
            )
        arn = self.values.arn(dest["Destination"], f"{path}.Destination")
        self.check_type_matches(dest, arn, path)
        return {"Destination": arn}

    def sam_type(
        self, value: Mapping[str, Any], path: str, types: tuple[str, ...], required: bool = False
    ) -> None:
        if "Type" not in value:
            if required:
                self.problem(f"{path}.Type", f"required: one of {', '.join(types)}")
            return
        if value["Type"] not in types:
            self.problem(
                f"{path}.Type", f"must be one of {', '.join(types)} (got {value['Type']!r})"
            )

    def check_type_matches(self, value: Mapping[str, Any], arn: str, path: str) -> None:
        service = _SAM_DESTINATION_TYPES.get(str(value.get("Type")))
        if service and arn.startswith("arn:") and Arn.parse(arn).service != service:
            self.problem(f"{path}.Type", f"is {value['Type']} but the ARN is {arn!r}")

    # -- event source mappings -----------------------------------------------------------------

    def sam_event(self, function: str, logical: str, name: str, event: Any, path: str) -> None:
        if self.ignored(f"{logical}.Events.{name}"):
            self.ignored_by_overlay.append(f"{logical}.Events.{name}")
            return
        ev = self.check_keys(event, path, {"Type", "Properties"})
        kind = ev.get("Type")
        if not isinstance(kind, str) or kind not in _SAM_EVENT_SOURCE:
            if not isinstance(kind, str):
                self.problem(f"{path}.Type", f"required: an event type (got {shortened(kind)})")
                return
            if kind not in SAM_EVENT_TYPES:
                self.problem(
                    f"{path}.Type", f"{kind!r} is not a SAM event type (check the spelling)"
                )
                return
            self.skip(
                path,
                f"event type {kind}: esm runs SQS, Kinesis and DynamoDB event source mappings",
            )
            return
        if function in self.skipped_functions:
            return
        base = f"{path}.Properties"
        source_key = _SAM_EVENT_SOURCE[kind]
        known = set(_MAPPING) - {"Tags"} | {source_key}
        props = self.check_keys(ev.get("Properties") or {}, base, known, kind=kind)
        if source_key not in props:
            self.problem(f"{base}.{source_key}", "required")
            return
        if "DestinationConfig" in props:
            where = f"{base}.DestinationConfig"
            dc = self.check_keys(props.pop("DestinationConfig"), where, {"OnFailure"})
            if "OnFailure" in dc:
                with self.attempt():
                    on_failure = self.sam_destination(
                        dc["OnFailure"], f"{where}.OnFailure", ("SQS", "SNS")
                    )
                    props["DestinationConfig"] = {"OnFailure": on_failure}
        self.add_mapping(function, source_key, props, base)

    def event_source_mapping(self, logical: str, res: Mapping[str, Any], path: str) -> None:
        base = f"{path}.Properties"
        known = set(_MAPPING) | {"FunctionName", "EventSourceArn"}
        kind = "AWS::Lambda::EventSourceMapping"
        props = self.check_keys(res.get("Properties") or {}, base, known, kind=kind)
        for key in ("FunctionName", "EventSourceArn"):
            if key not in props:
                self.problem(f"{base}.{key}", "required")
        if "FunctionName" not in props or "EventSourceArn" not in props:
            return
        with self.attempt():
            function = str(self.values.resolve(props.pop("FunctionName"), f"{base}.FunctionName"))
            function = parse_function_name(function).name if ":" in function else function
            if function in self.skipped_functions:
                self.skip(path, f"a mapping for function {function}, which esm skips")
                return
            self.add_mapping(function, "EventSourceArn", props, base, f"{base}.FunctionName")

    def add_mapping(
        self,
        function: str,
        source_key: str,
        props: dict[str, Any],
        base: str,
        function_origin: str = "",
    ) -> None:
        esm_path = f"EventSourceMappings[{len(self.mappings)}]"
        mapping: dict[str, Any] = {"FunctionName": function}
        source = self.through_consumer(props[source_key], f"{base}.{source_key}")
        try:
            mapping["EventSourceArn"] = self.values.arn(source, f"{base}.{source_key}")
        except Unresolved:
            return
        self.origin[esm_path] = base
        if function_origin:
            self.origin[f"{esm_path}.FunctionName"] = function_origin
        self.origin[f"{esm_path}.EventSourceArn"] = f"{base}.{source_key}"
        for key, value in props.items():
            if key == source_key:
                continue
            with self.attempt():
                resolved = self.values.resolve(value, f"{base}.{key}")
                if resolved is NO_VALUE:
                    continue
                if key == "Tags" and isinstance(resolved, list):
                    resolved = {
                        t.get("Key"): t.get("Value") for t in resolved if isinstance(t, Mapping)
                    }
                mapping[_MAPPING[key]] = resolved
                self.origin[f"{esm_path}.{_MAPPING[key]}"] = f"{base}.{key}"
        self.mappings.append(mapping)

    def through_consumer(self, value: Any, path: str) -> Any:
        """A Kinesis mapping through an enhanced fan-out consumer of the template (``!GetAtt
        Consumer.ConsumerARN``) reads the consumer's stream instead, with a warning: esm reads
        shards with GetRecords (shared throughput), not SubscribeToShard."""
        ref = value.get("Fn::GetAtt") if isinstance(value, Mapping) and len(value) == 1 else None
        if isinstance(ref, str):
            ref = ref.split(".", 1)
        if not (isinstance(ref, list) and len(ref) == 2 and ref[1] == "ConsumerARN"):
            return value
        res = self.values.resources.get(str(ref[0]))
        props = res.get("Properties") if isinstance(res, Mapping) else None
        if (
            not isinstance(res, Mapping)
            or res.get("Type") != "AWS::Kinesis::StreamConsumer"
            or not isinstance(props, Mapping)
            or "StreamARN" not in props
        ):
            return value
        self.skip(
            path,
            f"enhanced fan-out through {ref[0]}: esm reads its stream with GetRecords (shared "
            "throughput) instead; the consumer is",
        )
        return props["StreamARN"]

    def event_invoke_config(self, logical: str, res: Mapping[str, Any], path: str) -> None:
        base = f"{path}.Properties"
        keys = {
            "FunctionName",
            "Qualifier",
            "MaximumRetryAttempts",
            "MaximumEventAgeInSeconds",
            "DestinationConfig",
        }
        kind = "AWS::Lambda::EventInvokeConfig"
        props = self.check_keys(res.get("Properties") or {}, base, keys, kind=kind)
        if "FunctionName" not in props:
            self.problem(f"{base}.FunctionName", "required")
            return
        try:
            ref = str(self.values.resolve(props["FunctionName"], f"{base}.FunctionName"))
            name = parse_function_name(ref).name
        except Unresolved:
            return
        except ValueError as exc:
            self.problem(f"{base}.FunctionName", str(exc))
            return
        if name in self.skipped_functions:
            self.skip(path, f"a config for function {name}, which esm skips")
            return
        if name not in self.functions:
            self.problem(f"{base}.FunctionName", f"{name!r} is not a function of this template")
            return
        fn = self.functions[name]
        if "EventInvokeConfig" in fn:
            where = self.origin[f"Functions.{name}.EventInvokeConfig"]
            self.problem(base, f"the function has an EventInvokeConfig already ({where})")
            return
        qualifier = self.values.resolve_quietly(props.get("Qualifier"), f"{base}.Qualifier")
        if qualifier not in (None, "$LATEST"):
            self.notes.append(
                f"{base}.Qualifier {qualifier}: esm has no versions or aliases; the config "
                f"applies to {name}"
            )
        out: dict[str, Any] = {}
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if key in props:
                with self.attempt():
                    out[key] = self.values.resolve(props[key], f"{base}.{key}")
        if "DestinationConfig" in props:
            where = f"{base}.DestinationConfig"
            dests = self.check_keys(props["DestinationConfig"], where, {"OnSuccess", "OnFailure"})
            out["DestinationConfig"] = {}
            for when, dest in dests.items():
                d = self.check_keys(dest, f"{where}.{when}", {"Destination"})
                with self.attempt():
                    arn = self.values.arn(d.get("Destination"), f"{where}.{when}.Destination")
                    out["DestinationConfig"][when] = {"Destination": arn}
        fn["EventInvokeConfig"] = out
        self.origin[f"Functions.{name}.EventInvokeConfig"] = base

    # -- other resources ---------------------------------------------------------------------

    def queue(self, logical: str, res: Mapping[str, Any], path: str) -> None:
        kind = "AWS::SQS::Queue"
        base = f"{path}.Properties"
        props = self.check_keys(
            res.get("Properties") or {}, base, _QUEUE_PROPERTIES, INERT_PROPERTIES[kind], kind
        )
        out: dict[str, Any] = {}
        with self.attempt():
            out["QueueName"] = self.values.physical_name(logical)
        for key, value in props.items():
            if key == "QueueName":
                continue
            with self.attempt():
                resolved = self.values.resolve(value, f"{base}.{key}")
                if key == "RedrivePolicy":
                    resolved = self.redrive_policy(resolved, f"{base}.{key}")
                if resolved is not NO_VALUE:
                    out[key] = resolved
        self.queues[logical] = {"Type": kind, "Properties": out}

    def redrive_policy(self, value: Any, path: str) -> Any:
        if isinstance(value, str):  # CloudFormation takes the JSON text as well
            try:
                value = json.loads(value)
            except ValueError:
                self.fail(path, "must be a mapping or its JSON text")
        policy = self.check_keys(value, path, {"deadLetterTargetArn", "maxReceiveCount"})
        if "deadLetterTargetArn" in policy:
            arn = str(policy["deadLetterTargetArn"])
            if is_queue_url(arn):
                self.fail(f"{path}.deadLetterTargetArn", QUEUE_URL_HINT)
        return policy

    def emulated_resource(self, logical: str, res: Mapping[str, Any], path: str) -> None:
        kind = str(res["Type"])
        base = f"{path}.Properties"
        props = self.check_keys(
            res.get("Properties") or {},
            base,
            EMULATED[kind],
            INERT_PROPERTIES.get(kind, set()),
            kind,
        )
        for key in _REQUIRED.get(kind, ()):
            if key not in props:
                self.problem(f"{base}.{key}", "required")
        out: dict[str, Any] = {}
        for key, value in props.items():
            with self.attempt():
                resolved = self.values.resolve(value, f"{base}.{key}")
                if resolved is not NO_VALUE:
                    out[key] = resolved
        for i, sub in enumerate(out.get("Subscription") or []):
            if not isinstance(sub, Mapping) or sub.get("Protocol") != "sqs":
                self.unsupported(
                    f"{base}.Subscription[{i}].Protocol",
                    "esm creates sqs subscriptions only",
                )
        if kind == "AWS::SNS::Subscription" and out.get("Protocol") != "sqs":
            self.unsupported(f"{base}.Protocol", "esm creates sqs subscriptions only")
        name = ""
        if kind in NAME_PROPERTY:
            try:
                name = self.values.physical_name(logical)
            except Unresolved:
                return
        self.emulated.append(TemplateResource(logical, kind, name, out))

    # -- names, references and attributes -------------------------------------------------------

    def attempt(self) -> _Attempt:
        return _Attempt()

    # -- after the resources ---------------------------------------------------------------------

    def check_overrides(self) -> None:
        """Functions named by ``--target`` or the overlay must be the template's (by FunctionName
        or logical id); problems are the overlay's or the command line's, not the template's."""
        known = set(self.functions) | set(self.function_of)
        rule = "not a function of the template (FunctionName or logical id)"
        for source, names in (
            ("--target", self.options.targets),
            (self.overlay.source, self.overlay.functions),
        ):
            unknown = [Problem(f"Functions.{n}", rule) for n in names if n not in known]
            if unknown:
                raise ConfigError(unknown, source)

    def locate(self, problem: Problem) -> Problem:
        """A problem of the translated config at the template path its value came from."""
        path = problem.path
        cut = len(path)
        while cut > 0:
            head = path[:cut]
            if head in self.origin:
                return Problem(self.origin[head] + path[cut:], problem.rule)
            cut = max(path.rfind(".", 0, cut), path.rfind("[", 0, cut))
        return problem

    def warnings(self) -> Iterator[str]:
        if self.ignored_types:
            kinds = ", ".join(
                f"{k} ({n})" if n > 1 else k for k, n in sorted(self.ignored_types.items())
            )
            yield f"ignored resource types (esm does not need them): {kinds}"
        if self.ignored_props:
            props = "; ".join(
                f"{kind}: {', '.join(sorted(names))}"
                for kind, names in sorted(self.ignored_props.items())
            )
            yield f"ignored properties (no effect outside AWS): {props}"
        if self.ignored_by_overlay:
            yield f"left out by IgnoredResources: {', '.join(self.ignored_by_overlay)}"
        yield from self.skipped
        for (path, why), names in self.function_skips.items():
            yield (
                f"{path}: {why}: {'function' if len(names) == 1 else 'functions'} "
                f"{', '.join(names)} skipped with {'its' if len(names) == 1 else 'their'} events "
                "(give a Target with --target NAME=… or in an overlay, e.g. rie://host:port)"
            )
        glob = self.document.get("Globals")
        if isinstance(glob, Mapping) and set(glob) - {"Function"}:
            yield f"ignored Globals: {', '.join(sorted(str(k) for k in set(glob) - {'Function'}))}"
        yield from self.notes


class _FunctionSkipped(Unresolved):
    """A function esm does not run (its runtime, an image, inline or remote code): left out with
    its events, and one warning (:meth:`_Translator.skip_function`)."""


class _Attempt:
    """``with self.attempt():`` — a value that does not resolve is left out (its problem is
    recorded), and the translation goes on to find every other problem."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is Unresolved


def _merge_globals(glob: Any, own: Any) -> Any:
    if _is_intrinsic(glob) or _is_intrinsic(own):
        return own
    if isinstance(glob, Mapping) and isinstance(own, Mapping):
        keys = {**glob, **own}
        return {
            k: _merge_globals(glob[k], own[k])
            if k in glob and k in own
            else own.get(k, glob.get(k))
            for k in keys
        }
    if isinstance(glob, list) and isinstance(own, list):
        return glob + own
    return own


def _is_intrinsic(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) == 1
        and any(k == "Ref" or str(k).startswith("Fn::") for k in value)
    )
