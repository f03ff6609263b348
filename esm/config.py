"""The configuration file: YAML with AWS's names, validated once, at the edge.

Property names are AWS's, verbatim (``BatchSize``, ``FunctionResponseTypes`` …) so users can paste
from SAM, CloudFormation and the Lambda API reference; inside, models use Python names with units
(``batch_size``, ``window_s``). Validation follows docs/semantics.md §10.2: ranges, per-source
parameters, defaults by source, FIFO limits. Every problem names the file, the field path and the
rule, and all problems of a file are reported at once.

::

    Settings:            # optional, esm's own
      Region: us-east-1
      AccountId: "000000000000"
    Functions:
      orders:
        Target: python:app.handlers.orders
        Timeout: 30
    EventSourceMappings:
      - FunctionName: orders
        EventSourceArn: arn:aws:sqs:us-east-1:000000000000:orders
    Resources: {}        # CloudFormation-shaped queues, created by ``--embedded``
    Embedded: {}         # what ``--embedded`` sends once the queues exist
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from esm.arns import Arn, SourceKind, function_arn, is_fifo_queue, parse_function_name, source_kind
from esm.errors import ConfigError, Problem
from esm.store_url import check_store_url
from esm.yamlfile import read_yaml_file

# -- building blocks ---------------------------------------------------------------------------


def _range(lo: int, hi: int) -> AfterValidator:
    def check(v: int) -> int:
        if not lo <= v <= hi:
            raise ValueError(f"must be between {lo} and {hi} (got {v})")
        return v

    return AfterValidator(check)


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=True, strict=False, str_strip_whitespace=True
    )


def _arn_of(*services: str, memory: bool = False, http: bool = False) -> AfterValidator:
    """An ARN of one of ``services``; ``memory://name`` / ``http(s)://`` where local stacks and
    the testing harness may use them."""

    def check(v: str) -> str:
        if memory and v.startswith("memory://") and len(v) > len("memory://"):
            return v
        if http and v.startswith(("http://", "https://")):
            return v
        try:
            arn = Arn.parse(v)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if arn.service not in services:
            raise ValueError(f"must be an ARN of {' / '.join(services)} (got {v!r})")
        return v

    return AfterValidator(check)


# -- names ---------------------------------------------------------------------------------------

# Lambda's own rules (botocore's lambda model): CreateFunction's FunctionName, bare, is 1 to 64 of
# [a-zA-Z0-9-_]; a mapping's UUID is a 36-character UUIDString, the 8-4-4-4-12 hex digits of
# EventSourceMappingArn. These names become Redis keys and S3 object keys (aws/lambda/<UUID>/…).
FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAPPING_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
FUNCTION_NAME_RULE = "a function name is 1 to 64 characters of a-z, A-Z, 0-9, - and _ (Lambda's)"
MAPPING_UUID_RULE = (
    "must be a UUID: 36 characters, hexadecimal digits grouped 8-4-4-4-12 (Lambda's UUIDString)"
)


def _function_name(v: str) -> str:
    if FUNCTION_NAME.fullmatch(v) is None:
        raise ValueError(f"{FUNCTION_NAME_RULE} (got {shown(v)})")
    return v


def _mapping_uuid(v: str) -> str:
    if MAPPING_UUID.fullmatch(v) is None:
        raise ValueError(f"{MAPPING_UUID_RULE} (got {shown(v)})")
    return v


def shown(v: str) -> str:
    """A value for a message: its repr, cut when long."""
    return repr(v) if len(v) <= 80 else f"{v[:60]!r}… ({len(v)} characters)"


FunctionName = Annotated[str, AfterValidator(_function_name)]

# -- functions -----------------------------------------------------------------------------------

TARGET_SCHEMES = ("python:", "http://", "https://", "rie://", "lambda:")


def _target(v: str) -> str:
    if not v.startswith(TARGET_SCHEMES):
        raise ValueError(
            f"must start with python:, http://, https://, rie:// or lambda: (got {v!r})"
        )
    if v.startswith("python:") and (":" in v[7:] or "." not in v[7:]):
        raise ValueError(f"python: targets are python:package.module.handler (got {v!r})")
    if v.startswith("lambda:") and not v[7:].startswith("arn:aws:lambda:"):
        raise ValueError(f"lambda: targets are lambda:arn:aws:lambda:… (got {v!r})")
    return v


class DestinationRef(_Model):
    """``{"Destination": arn}``: where an asynchronous invocation's record goes."""

    destination: (
        Annotated[str, _arn_of("sqs", "sns", "events", "lambda", "s3", memory=True, http=True)]
        | None
    ) = Field(None, alias="Destination")


class AsyncDestinationConfig(_Model):
    on_success: DestinationRef | None = Field(None, alias="OnSuccess")
    on_failure: DestinationRef | None = Field(None, alias="OnFailure")


class EventInvokeConfig(_Model):
    """FunctionEventInvokeConfig (docs/semantics.md §8.8)."""

    maximum_retry_attempts: Annotated[int, _range(0, 2)] = Field(2, alias="MaximumRetryAttempts")
    maximum_event_age_s: Annotated[int, _range(60, 21600)] = Field(
        21600, alias="MaximumEventAgeInSeconds"
    )
    destination_config: AsyncDestinationConfig = Field(
        default_factory=AsyncDestinationConfig, alias="DestinationConfig"
    )


class DeadLetterConfig(_Model):
    target_arn: Annotated[str, _arn_of("sqs", "sns", memory=True)] = Field(alias="TargetArn")


# Keys Lambda refuses in Environment.Variables (its "reserved environment variables")
RESERVED_VARIABLES = frozenset(
    "_HANDLER _X_AMZN_TRACE_ID AWS_DEFAULT_REGION AWS_REGION AWS_EXECUTION_ENV "
    "AWS_LAMBDA_FUNCTION_NAME AWS_LAMBDA_FUNCTION_MEMORY_SIZE AWS_LAMBDA_FUNCTION_VERSION "
    "AWS_LAMBDA_INITIALIZATION_TYPE AWS_LAMBDA_LOG_GROUP_NAME AWS_LAMBDA_LOG_STREAM_NAME "
    "AWS_ACCESS_KEY AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN "
    "AWS_LAMBDA_RUNTIME_API LAMBDA_TASK_ROOT LAMBDA_RUNTIME_DIR".split()
)


def _variables(v: dict[str, str]) -> dict[str, str]:
    reserved = sorted(set(v) & RESERVED_VARIABLES)
    if reserved:
        raise ValueError(
            f"{', '.join(reserved)}: reserved by Lambda, which sets them itself (a function "
            "cannot set a reserved environment variable)"
        )
    return v


class Environment(_Model):
    variables: Annotated[dict[str, str], AfterValidator(_variables)] = Field(
        default_factory=dict, alias="Variables"
    )


# Runtimes run in execution environments (esm.environments)
RUNTIME = re.compile(r"python3\.\d+|nodejs\d+\.x|provided(\.al2|\.al2023)?")
RUNTIME_RULE = (
    "esm runs python3.x, nodejsNN.x, provided.al2 and provided.al2023 functions in environments"
)


def _runtime(v: str) -> str:
    if RUNTIME.fullmatch(v) is None:
        raise ValueError(f"{RUNTIME_RULE} (got {shown(v)}); give other functions a Target")
    return v


class LoggingConfig(_Model):
    log_format: Literal["Text", "JSON"] = Field("Text", alias="LogFormat")
    application_log_level: Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"] | None = (
        Field(None, alias="ApplicationLogLevel")
    )
    system_log_level: Literal["DEBUG", "INFO", "WARN"] | None = Field(None, alias="SystemLogLevel")
    log_group: str | None = Field(None, alias="LogGroup")


class FunctionConfig(_Model):
    """A function: a ``Target`` (where it runs already), or ``Runtime`` + ``Handler`` +
    ``CodeUri`` (SAM's names: esm runs the code in execution environments). A ``python:``
    Target may declare the ``Runtime`` it is written for (a template's, kept when it runs in
    process): GetFunction shows it; the handler runs in esm's own Python."""

    target: Annotated[str, AfterValidator(_target)] | None = Field(None, alias="Target")
    runtime: Annotated[str, AfterValidator(_runtime)] | None = Field(None, alias="Runtime")
    handler: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        None, alias="Handler"
    )
    code_uri: Annotated[str, Field(min_length=1)] | None = Field(None, alias="CodeUri")
    # local layer folders, laid out as Lambda's /opt (esm/layers.py)
    layers: Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=5)] = Field(
        default_factory=list, alias="Layers"
    )
    logging_config: LoggingConfig | None = Field(None, alias="LoggingConfig")
    timeout_s: Annotated[int, _range(1, 900)] = Field(3, alias="Timeout")
    memory_mb: Annotated[int, _range(128, 10240)] = Field(128, alias="MemorySize")
    reserved_concurrency: Annotated[int, _range(0, 100000)] | None = Field(
        None, alias="ReservedConcurrentExecutions"
    )
    description: str = Field("", alias="Description")
    role: str | None = Field(None, alias="Role")  # shown to Kinesis handlers as invokeIdentityArn
    environment: Environment = Field(default_factory=Environment, alias="Environment")
    event_invoke_config: EventInvokeConfig = Field(
        default_factory=EventInvokeConfig, alias="EventInvokeConfig"
    )
    dead_letter_config: DeadLetterConfig | None = Field(None, alias="DeadLetterConfig")

    @model_validator(mode="after")
    def _target_or_runtime(self) -> FunctionConfig:
        if self.target is None and self.runtime is None:
            raise ValueError(
                "give a Target (python:, http(s)://, rie://, lambda:) or a Runtime with its "
                "Handler and CodeUri"
            )
        if self.target is not None and self.runtime is not None:
            if not (self.target.startswith("python:") and self.runtime.startswith("python")):
                raise ValueError(
                    "Target and Runtime exclude each other: a Target runs elsewhere (a python: "
                    "Target may declare its pythonX.Y Runtime, which the API shows)"
                )
        elif (
            self.runtime is not None
            and self.runtime.startswith(("python", "nodejs"))
            and not self.handler
        ):
            raise ValueError(f"Handler is required with Runtime {self.runtime}")
        return self

    @property
    def kind(self) -> str:
        """What the function is, for messages: its Target, or its Runtime and Handler."""
        return self.target or f"{self.runtime} {self.handler or ''}".strip()


# -- event source mappings ---------------------------------------------------------------------


class Filter(_Model):
    pattern: Annotated[str, Field(max_length=4096)] = Field(alias="Pattern")


class FilterCriteria(_Model):
    filters: Annotated[list[Filter], Field(max_length=5)] = Field(
        default_factory=list, alias="Filters"
    )


class ScalingConfig(_Model):
    maximum_concurrency: Annotated[int, _range(2, 1000)] | None = Field(
        None, alias="MaximumConcurrency"
    )


class OnFailureRef(_Model):
    """A stream mapping's ``{"Destination": arn}`` for records that failed."""

    destination: Annotated[str, _arn_of("sqs", "sns", "s3", memory=True)] | None = Field(
        None, alias="Destination"
    )


class MappingDestinationConfig(_Model):
    on_failure: OnFailureRef | None = Field(None, alias="OnFailure")
    on_success: dict[str, Any] | None = Field(None, alias="OnSuccess")


class MetricsConfig(_Model):
    metrics: list[Literal["EventCount"]] = Field(default_factory=list, alias="Metrics")


StartingPosition = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]

SQS_DEFAULT_MAX_CONCURRENCY = 1250
STREAM_ONLY = {
    "starting_position": "StartingPosition",
    "starting_position_timestamp": "StartingPositionTimestamp",
    "parallelization_factor": "ParallelizationFactor",
    "bisect_on_error": "BisectBatchOnFunctionError",
    "maximum_retry_attempts": "MaximumRetryAttempts",
    "maximum_record_age_s": "MaximumRecordAgeInSeconds",
    "destination_config": "DestinationConfig",
    "tumbling_window_s": "TumblingWindowInSeconds",
}
SQS_ONLY = {"scaling_config": "ScalingConfig"}


class MappingConfig(_Model):
    """CreateEventSourceMapping's parameters (docs/semantics.md §10.2) that apply to SQS,
    Kinesis, DynamoDB.

    Fields left out are ``None`` here; :meth:`resolve` fills the per-source defaults.
    """

    function_name: str = Field(alias="FunctionName")
    event_source_arn: str = Field(alias="EventSourceArn")
    uuid: Annotated[str, AfterValidator(_mapping_uuid)] | None = Field(None, alias="UUID")
    enabled: bool = Field(True, alias="Enabled")
    batch_size: Annotated[int, _range(1, 10000)] | None = Field(None, alias="BatchSize")
    window_s: Annotated[int, _range(0, 300)] | None = Field(
        None, alias="MaximumBatchingWindowInSeconds"
    )
    filter_criteria: FilterCriteria | None = Field(None, alias="FilterCriteria")
    function_response_types: Annotated[
        list[Literal["ReportBatchItemFailures"]], Field(max_length=1)
    ] = Field(default_factory=list, alias="FunctionResponseTypes")
    scaling_config: ScalingConfig | None = Field(None, alias="ScalingConfig")
    metrics_config: MetricsConfig | None = Field(None, alias="MetricsConfig")
    kms_key_arn: str | None = Field(None, alias="KMSKeyArn")
    tags: dict[str, str] | None = Field(None, alias="Tags")
    # streams only
    starting_position: StartingPosition | None = Field(None, alias="StartingPosition")
    starting_position_timestamp: float | None = Field(None, alias="StartingPositionTimestamp")
    parallelization_factor: Annotated[int, _range(1, 10)] | None = Field(
        None, alias="ParallelizationFactor"
    )
    bisect_on_error: bool | None = Field(None, alias="BisectBatchOnFunctionError")
    maximum_retry_attempts: Annotated[int, _range(-1, 10000)] | None = Field(
        None, alias="MaximumRetryAttempts"
    )
    maximum_record_age_s: Annotated[int, _range(-1, 604800)] | None = Field(
        None, alias="MaximumRecordAgeInSeconds"
    )
    destination_config: MappingDestinationConfig | None = Field(None, alias="DestinationConfig")
    tumbling_window_s: Annotated[int, _range(0, 900)] | None = Field(
        None, alias="TumblingWindowInSeconds"
    )

    # -- derived ---------------------------------------------------------------------------------

    @property
    def source(self) -> SourceKind:
        return source_kind(self.event_source_arn)

    @property
    def fifo(self) -> bool:
        return self.source == "sqs" and is_fifo_queue(self.event_source_arn)

    @property
    def report_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types

    @property
    def filter_patterns(self) -> list[str]:
        return [f.pattern for f in self.filter_criteria.filters] if self.filter_criteria else []

    @property
    def maximum_concurrency(self) -> int:
        if self.scaling_config and self.scaling_config.maximum_concurrency:
            return self.scaling_config.maximum_concurrency
        return SQS_DEFAULT_MAX_CONCURRENCY

    @property
    def on_failure_arn(self) -> str | None:
        dc = self.destination_config
        return dc.on_failure.destination if dc and dc.on_failure else None

    def mapping_uuid(self, function_name: str) -> str:
        """The mapping's UUID: given, or stable for (function, source) across restarts."""
        if self.uuid:
            return self.uuid
        return str(uuid.uuid5(_UUID_NAMESPACE, f"{function_name}\n{self.event_source_arn}"))

    # -- validation ------------------------------------------------------------------------------

    def problems(self) -> list[Problem]:
        """Per-source rules of docs/semantics.md §10.2 (paths relative to this mapping)."""
        try:
            kind = self.source
        except ValueError as exc:
            return [Problem("EventSourceArn", str(exc))]
        out: list[Problem] = []
        set_fields = self.model_fields_set
        if kind == "sqs":
            out += [
                Problem(alias, "not supported for SQS event sources (streams only)")
                for name, alias in STREAM_ONLY.items()
                if name in set_fields and getattr(self, name) is not None
            ]
            out += self._sqs_problems()
        else:
            out += [
                Problem(alias, f"only supported for SQS event sources, not {_KIND_NAMES[kind]}")
                for name, alias in SQS_ONLY.items()
                if name in set_fields and getattr(self, name) is not None
            ]
            out += self._stream_problems(kind)
        out += self._filter_problems(kind)
        return out

    def _sqs_problems(self) -> list[Problem]:
        out: list[Problem] = []
        batch = self.batch_size if self.batch_size is not None else 10
        window = self.window_s or 0
        if self.fifo:
            if batch > 10:
                out.append(
                    Problem("BatchSize", f"must be at most 10 for FIFO queues (got {batch})")
                )
            if window > 0:
                out.append(
                    Problem("MaximumBatchingWindowInSeconds", "not supported for FIFO queues")
                )
        elif batch > 10 and window < 1:
            out.append(
                Problem(
                    "MaximumBatchingWindowInSeconds",
                    f"must be at least 1 when BatchSize is greater than 10 (BatchSize is {batch})",
                )
            )
        return out

    def _stream_problems(self, kind: SourceKind) -> list[Problem]:
        out: list[Problem] = []
        if self.starting_position is None:
            out.append(Problem("StartingPosition", f"required for {_KIND_NAMES[kind]}"))
        if kind == "dynamodb" and self.starting_position == "AT_TIMESTAMP":
            out.append(
                Problem("StartingPosition", "AT_TIMESTAMP is not supported for DynamoDB Streams")
            )
        if self.starting_position == "AT_TIMESTAMP" and self.starting_position_timestamp is None:
            out.append(
                Problem(
                    "StartingPositionTimestamp", "required when StartingPosition is AT_TIMESTAMP"
                )
            )
        if (
            self.starting_position != "AT_TIMESTAMP"
            and self.starting_position_timestamp is not None
        ):
            out.append(
                Problem(
                    "StartingPositionTimestamp",
                    "only allowed when StartingPosition is AT_TIMESTAMP",
                )
            )
        age = self.maximum_record_age_s
        if age is not None and 0 <= age < 60:
            out.append(
                Problem(
                    "MaximumRecordAgeInSeconds", f"must be -1 or between 60 and 604800 (got {age})"
                )
            )
        if self.destination_config and self.destination_config.on_success is not None:
            out.append(
                Problem(
                    "DestinationConfig.OnSuccess",
                    "not supported for event source mappings (OnFailure only)",
                )
            )
        return out

    def _filter_problems(self, kind: SourceKind) -> list[Problem]:
        from esm.filtering import FilterPatternError, compile_filter_criteria

        try:
            compile_filter_criteria(self.filter_patterns, kind)
        except FilterPatternError as exc:
            return [Problem(f"FilterCriteria.Filters[{exc.index}].Pattern", exc.rule)]
        return []

    def resolve(self) -> MappingSpec:
        """The mapping with every default of its source filled in (docs/semantics.md §10.2): the
        one place a mapping's defaults live. What was set stays set (``model_fields_set``)."""
        stream = self.source != "sqs"
        defaults: dict[str, Any] = {
            "batch_size": 100 if stream else 10,
            "window_s": 0,
            "parallelization_factor": 1,
            "bisect_on_error": False,
            "maximum_retry_attempts": -1,
            "maximum_record_age_s": -1,
            "tumbling_window_s": 0,
        }
        values = dict(self) | {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return MappingSpec.model_construct(_fields_set=set(self.model_fields_set), **values)


class MappingSpec(MappingConfig):
    """A mapping as esm runs it: :meth:`MappingConfig.resolve`'s result, whose numbers and flags
    are never ``None``. Pollers, shard consumers and the control plane's JSON read these fields
    and default nothing themselves. Stream-only fields hold their neutral values on SQS mappings
    (a factor of 1, no bisect, no limits, no window), where nothing reads them."""

    batch_size: int = Field(alias="BatchSize")
    window_s: int = Field(alias="MaximumBatchingWindowInSeconds")
    parallelization_factor: int = Field(alias="ParallelizationFactor")
    bisect_on_error: bool = Field(alias="BisectBatchOnFunctionError")
    maximum_retry_attempts: int = Field(alias="MaximumRetryAttempts")
    maximum_record_age_s: int = Field(alias="MaximumRecordAgeInSeconds")
    tumbling_window_s: int = Field(alias="TumblingWindowInSeconds")

    def resolve(self) -> MappingSpec:
        return self


_UUID_NAMESPACE = uuid.UUID("5d0b4e4c-6a44-4f7e-9a5e-0e5e3c3a7e11")
_KIND_NAMES: dict[str, str] = {
    "sqs": "SQS",
    "kinesis": "Kinesis streams",
    "dynamodb": "DynamoDB Streams",
}


# -- embedded emulator resources -----------------------------------------------------------------


class RedrivePolicy(_Model):
    dead_letter_target_arn: Annotated[str, _arn_of("sqs")] = Field(alias="deadLetterTargetArn")
    max_receive_count: Annotated[int, _range(1, 1000)] = Field(alias="maxReceiveCount")


class QueueProperties(_Model):
    """``AWS::SQS::Queue`` properties, as in CloudFormation."""

    queue_name: str | None = Field(None, alias="QueueName")
    fifo_queue: bool = Field(False, alias="FifoQueue")
    content_based_deduplication: bool | None = Field(None, alias="ContentBasedDeduplication")
    visibility_timeout_s: Annotated[int, _range(0, 43200)] | None = Field(
        None, alias="VisibilityTimeout"
    )
    delay_s: Annotated[int, _range(0, 900)] | None = Field(None, alias="DelaySeconds")
    message_retention_s: Annotated[int, _range(60, 1209600)] | None = Field(
        None, alias="MessageRetentionPeriod"
    )
    receive_wait_s: Annotated[int, _range(0, 20)] | None = Field(
        None, alias="ReceiveMessageWaitTimeSeconds"
    )
    redrive_policy: RedrivePolicy | None = Field(None, alias="RedrivePolicy")


class QueueResource(_Model):
    type: Literal["AWS::SQS::Queue"] = Field(alias="Type")
    properties: QueueProperties = Field(default_factory=QueueProperties, alias="Properties")


class SendMessages(_Model):
    queue_arn: Annotated[str, _arn_of("sqs")] = Field(alias="QueueArn")
    bodies: list[str] = Field(alias="Bodies")
    message_group_id: str | None = Field(None, alias="MessageGroupId")


class Embedded(_Model):
    """What ``esm run --embedded`` does besides creating queues."""

    port: Annotated[int, _range(0, 65535)] = Field(0, alias="Port")
    send_messages: list[SendMessages] = Field(default_factory=list, alias="SendMessages")


# -- who may call the API -----------------------------------------------------------------------

ACCESS_KEY_ID = r"^[A-Za-z0-9_.@+-]{1,128}$"
MIN_SECRET_CHARS = 16


class ApiKey(_Model):
    """One access key the API accepts: its id, and its secret given inline (``SecretAccessKey``)
    or, better, by the name of an environment variable that holds it (``SecretAccessKeyEnv``,
    read when the file is loaded). The secret never appears in a message or a log line."""

    access_key_id: Annotated[str, Field(pattern=ACCESS_KEY_ID)] = Field(alias="AccessKeyId")
    secret_access_key: SecretStr = Field(alias="SecretAccessKey")
    secret_access_key_env: str | None = Field(None, alias="SecretAccessKeyEnv")

    @model_validator(mode="before")
    @classmethod
    def _secret_from_env(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        env = data.get("SecretAccessKeyEnv", data.get("secret_access_key_env"))
        inline = data.get("SecretAccessKey", data.get("secret_access_key"))
        if env is None:
            if inline is None:
                raise ValueError("give SecretAccessKey or SecretAccessKeyEnv (the secret's name)")
            return data
        if inline is not None:
            raise ValueError("give SecretAccessKey or SecretAccessKeyEnv, not both")
        if not isinstance(env, str) or not env:
            raise ValueError("SecretAccessKeyEnv: the name of an environment variable")
        value = os.environ.get(env, "")
        if not value:
            raise ValueError(f"SecretAccessKeyEnv: the environment variable {env} is not set")
        return {**data, "SecretAccessKey": value}

    @model_validator(mode="after")
    def _long_enough(self) -> ApiKey:
        if len(self.secret_access_key.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(
                f"the secret access key of {self.access_key_id!r} is shorter than "
                f"{MIN_SECRET_CHARS} characters (AWS's are 40)"
            )
        return self


class ApiAuth(_Model):
    """``Settings.ApiAuth``: ``Mode: none`` (the default: anyone who reaches the port may call
    the API) or ``Mode: sigv4`` (every request but ``/health``, ``/health/live`` and ``/metrics``
    signed with one of ``Keys``, checked as AWS checks it: :mod:`esm.sigv4`)."""

    mode: Literal["none", "sigv4"] = Field("none", alias="Mode")
    keys: list[ApiKey] = Field(default_factory=list, alias="Keys")

    @model_validator(mode="after")
    def _keys_match_mode(self) -> ApiAuth:
        if self.mode == "sigv4" and not self.keys:
            raise ValueError("Mode sigv4 needs at least one of Keys")
        if self.mode == "none" and self.keys:
            raise ValueError("Keys are given but Mode is none: set Mode: sigv4 to check them")
        ids = [k.access_key_id for k in self.keys]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"AccessKeyId {twice[0]!r} is given twice")
        return self

    def secrets(self) -> dict[str, str]:
        """Access key id → secret access key (for :class:`esm.sigv4.Verifier`)."""
        return {k.access_key_id: k.secret_access_key.get_secret_value() for k in self.keys}


def _store_url(v: str) -> str:
    check_store_url(v)  # its messages never echo the URL: it may carry a password
    return v


class Settings(_Model):
    region: str = Field(
        default_factory=lambda: (
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        ),
        alias="Region",
    )
    account_id: Annotated[str, Field(pattern=r"^\d{12}$")] = Field(
        "000000000000", alias="AccountId"
    )
    shutdown_timeout_s: Annotated[float, Field(ge=0, le=900)] = Field(
        30.0, alias="ShutdownTimeoutSeconds"
    )
    store: Annotated[str, AfterValidator(_store_url)] = Field(
        default_factory=lambda: os.environ.get("ESM_STORE", "memory://"), alias="Store"
    )
    store_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]+$")] = Field(
        "esm", alias="StorePrefix"
    )
    lease_s: Annotated[float, Field(ge=1, le=600)] = Field(10.0, alias="LeaseSeconds")
    registry_poll_s: Annotated[float, Field(ge=0.05, le=60)] = Field(
        1.0, alias="RegistryPollSeconds"
    )
    api_host: str = Field("127.0.0.1", alias="ApiHost")
    api_port: Annotated[int, _range(0, 65535)] = Field(3001, alias="ApiPort")
    api_max_connections: Annotated[int, _range(1, 100_000)] = Field(1024, alias="ApiMaxConnections")
    api_read_timeout_s: Annotated[float, Field(ge=1, le=3600)] = Field(
        60.0, alias="ApiReadTimeoutSeconds"
    )
    api_auth: ApiAuth = Field(default_factory=ApiAuth, alias="ApiAuth")
    # http(s):// and memory:// destinations through the API (esm.yaml may always name them)
    api_allow_url_destinations: bool = Field(False, alias="ApiAllowUrlDestinations")
    async_concurrency: Annotated[int, _range(1, 10000)] = Field(64, alias="AsyncConcurrency")
    async_retry_delays_s: Annotated[list[float], Field(min_length=1, max_length=2)] = Field(
        default_factory=lambda: [60.0, 120.0], alias="AsyncRetryDelaysSeconds"
    )
    async_visibility_s: Annotated[float, Field(ge=0, le=43200)] = Field(
        0.0, alias="AsyncVisibilityTimeoutSeconds"
    )
    shard_discovery_s: Annotated[float, Field(ge=1, le=3600)] = Field(
        10.0, alias="ShardDiscoverySeconds"
    )
    stream_idle_poll_s: Annotated[float, Field(ge=0.25, le=60)] = Field(
        5.0, alias="StreamIdlePollSeconds"
    )
    max_environments: Annotated[int, _range(1, 1000)] = Field(
        10, alias="MaxEnvironmentsPerFunction"
    )
    environment_idle_s: Annotated[float, Field(ge=1, le=86400)] = Field(
        300.0, alias="EnvironmentIdleSeconds"
    )
    # how a template's Python functions run: in execution environments (as on Lambda), or as
    # python: targets inside esm's process (faster, shared os.environ and sys.modules)
    template_python: Literal["Environments", "InProcess"] = Field(
        "Environments", alias="TemplatePythonFunctions"
    )
    log_format: Literal["text", "json"] = Field("text", alias="LogFormat")


# -- the file ------------------------------------------------------------------------------------


class EsmConfig(_Model):
    settings: Settings = Field(default_factory=Settings, alias="Settings")
    functions: dict[FunctionName, FunctionConfig] = Field(default_factory=dict, alias="Functions")
    event_source_mappings: list[MappingConfig] = Field(
        default_factory=list, alias="EventSourceMappings"
    )
    resources: dict[str, QueueResource] = Field(default_factory=dict, alias="Resources")
    embedded: Embedded = Field(default_factory=Embedded, alias="Embedded")

    def function_arn(self, name: str, qualifier: str | None = None) -> str:
        return function_arn(self.settings.region, self.settings.account_id, name, qualifier)

    def mapping_function(self, mapping: MappingConfig) -> str:
        """The key under ``Functions`` that a mapping's FunctionName refers to."""
        return parse_function_name(mapping.function_name).name

    def queue_resources(self) -> dict[str, QueueProperties]:
        """Queue name → properties, for every queue the config names (mappings, DLQs, resources)."""
        queues: dict[str, QueueProperties] = {}
        for logical, res in self.resources.items():
            props = res.properties
            name = props.queue_name or logical
            if props.fifo_queue and not name.endswith(".fifo"):
                name += ".fifo"
            queues[name] = props
        for m in self.event_source_mappings:
            if m.source == "sqs":
                name = Arn.parse(m.event_source_arn).name
                queues.setdefault(name, QueueProperties(fifo_queue=name.endswith(".fifo")))
        for props in list(queues.values()):
            if props.redrive_policy:
                dlq = Arn.parse(props.redrive_policy.dead_letter_target_arn).name
                queues.setdefault(dlq, QueueProperties(fifo_queue=dlq.endswith(".fifo")))
        return queues


def _cross_checks(cfg: EsmConfig) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[tuple[str, str], int] = {}
    for i, m in enumerate(cfg.event_source_mappings):
        where = f"EventSourceMappings[{i}]"
        problems += [Problem(f"{where}.{p.path}", p.rule) for p in m.problems()]
        try:
            ref = parse_function_name(m.function_name)
        except ValueError as exc:
            problems.append(Problem(f"{where}.FunctionName", str(exc)))
            continue
        if ref.name not in cfg.functions:
            problems.append(
                Problem(
                    f"{where}.FunctionName",
                    f"function {ref.name!r} is not defined under Functions",
                )
            )
        pair = (ref.name, m.event_source_arn)
        if pair in seen:
            problems.append(
                Problem(
                    f"{where}",
                    f"duplicates EventSourceMappings[{seen[pair]}]: one mapping per function "
                    "and event source (ResourceConflictException)",
                )
            )
        seen.setdefault(pair, i)
    return problems


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after[check(), int]", "function-after[check(), str]", "[key]"):
            continue
        elif _PLAIN_KEY.fullmatch(part) is None:  # a key that would not read as one
            out += f"[{shown(part)}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_:-]+")


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and "[" in p and "(" in p)]
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif err["type"] == "extra_forbidden":
            msg = "unknown property (not a setting esm knows; check the spelling and case)"
        elif err["type"] == "missing":
            msg = "required"
        out.append(Problem(_loc(loc), msg))
    return out


def parse_config(data: Any, source: str = "") -> EsmConfig:
    """Validate a loaded YAML/JSON document; ConfigError lists every problem."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        rule = (
            f"the file must hold a mapping (Functions, EventSourceMappings …), not {kind_of(data)}"
        )
        raise ConfigError([Problem("", rule)], source)
    try:
        cfg = EsmConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_pydantic_problems(exc), source) from None
    problems = _cross_checks(cfg)
    if problems:
        raise ConfigError(problems, source)
    resolved = [m.resolve() for m in cfg.event_source_mappings]
    return cfg.model_copy(update={"event_source_mappings": resolved})


def filter_warnings(cfg: EsmConfig) -> list[Problem]:
    """Filter patterns using operators Lambda does not document (``cidr``), each with what esm
    does with them (docs/semantics.md §7.4): warnings, shown when the config is loaded."""
    from esm.filtering import undocumented_operators

    out: list[Problem] = []
    for i, m in enumerate(cfg.event_source_mappings):
        for j, f in enumerate(m.filter_criteria.filters if m.filter_criteria else []):
            for op in sorted(undocumented_operators(f.pattern)):
                out.append(
                    Problem(
                        f"EventSourceMappings[{i}].FilterCriteria.Filters[{j}].Pattern",
                        f"{op!r} is not among the operators Lambda documents for event filtering "
                        "(AWS may refuse or ignore it); esm matches it as EventBridge does: a "
                        "string holding an IP address inside the block",
                    )
                )
    return out


def kind_of(value: Any) -> str:
    """What a YAML value is, for messages: ``a list``, ``a string`` …"""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def load_config(path: str | os.PathLike[str]) -> EsmConfig:
    """Read and validate an esm.yaml (see :mod:`esm.yamlfile` for what the file may be)."""
    p = Path(path)
    data = read_yaml_file(p)
    if data is None:
        raise ConfigError([Problem("", EMPTY_FILE)], str(p))
    return with_code_root(parse_config(data, str(p)), p.resolve().parent)


def with_code_root(cfg: EsmConfig, root: Path) -> EsmConfig:
    """Functions' ``CodeUri`` and ``Layers`` made absolute from ``root`` (the config file's
    folder; a Runtime function without CodeUri runs the code in that folder, as SAM builds from
    the template's)."""
    functions = {}
    for name, fn in cfg.functions.items():
        if fn.runtime is not None and fn.target is None:  # run in execution environments
            code = Path(fn.code_uri) if fn.code_uri else root
            fn = fn.model_copy(
                update={"code_uri": str(code if code.is_absolute() else root / code)}
            )
        if fn.layers:
            fn = fn.model_copy(update={"layers": [str(root / layer) for layer in fn.layers]})
        functions[name] = fn
    return cfg.model_copy(update={"functions": functions})


EMPTY_FILE = "the file is empty (or only comments): an esm.yaml holds at least Functions"
