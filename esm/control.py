"""The control plane: the Lambda operations esm owns, with Lambda's validation, shapes and errors
(docs/semantics.md §10, §8.8). HTTP lives in :mod:`esm.control_api`; this module takes
parsed requests and returns the JSON bodies Lambda returns.

Definitions go to the :class:`~esm.registry.Registry` (Redis), so every daemon sharing it runs
them and they survive restarts; this daemon then reconciles at once (others within
``Settings.RegistryPollSeconds``). Mapping states follow docs/semantics.md §10.3.
"""

from __future__ import annotations

import base64
import sys
import uuid as uuidlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from pydantic import BaseModel

from esm.arns import parse_function_name
from esm.errors import (
    InvalidParameterValueException,
    ResourceConflictException,
    ResourceInUseException,
    ResourceNotFoundException,
    ValidationException,
)
from esm.mapping_rules import NO_SUCH_FUNCTION, check_mapping_request
from esm.mappings import invoke_config_from_params, mapping_from_params
from esm.registry import (
    InvokeConfigRecord,
    MappingRecord,
    function_tags_field,
    mapping_tags_field,
)
from esm.tags import (
    MAX_TAGS,
    TOO_MANY,
    Resource,
    check_keys,
    check_resource,
    check_tags,
    merged,
    parse_resource,
)

if TYPE_CHECKING:
    from esm.clock import Clock
    from esm.config import EsmConfig, MappingSpec
    from esm.functions import Function
    from esm.mappings import MappingRuntime
    from esm.registry import Registry

TRANSITIONAL = frozenset({"Creating", "Updating", "Enabling", "Disabling", "Deleting"})
CREATE_ONLY = (
    "EventSourceArn",
    "StartingPosition",
    "StartingPositionTimestamp",
    "Tags",
    "Topics",
    "Queues",
    "SelfManagedEventSource",
)
INVOKE_CONFIG_FIELDS = ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
NOT_FOUND = "The resource you requested does not exist."
STREAM_USER_ACTION = "User action"
UNRESERVED = -1  # the registry's mark for "DeleteFunctionConcurrency"


def _page(items: list[Any], marker: str | None, max_items: int, key: str) -> tuple[list[Any], str]:
    """One page after ``marker`` (an opaque token naming the last item of the previous page)."""
    start = 0
    if marker:
        try:
            last = base64.b64decode(marker.encode(), altchars=b"-_", validate=True).decode()
        except ValueError:
            last = ""
        if not last:  # not one of ours (a lenient decode would make garbage an empty page)
            raise InvalidParameterValueException(f"Invalid Marker: {marker}")
        keys = [str(item[key]) for item in items]
        start = keys.index(last) + 1 if last in keys else len(items)
    page = items[start : start + max_items]
    more = start + max_items < len(items)
    token = base64.urlsafe_b64encode(str(page[-1][key]).encode()).decode() if more else ""
    return page, token


def _no_on_failure(value: Any) -> bool:
    """An Update's DestinationConfig that removes the on-failure destination (``{}``, or an
    empty ``Destination``); anything else, malformed included, is left to validation."""
    if not isinstance(value, dict):
        return False
    on_failure = value.get("OnFailure") or {}
    removes = isinstance(on_failure, dict) and not on_failure.get("Destination")
    return removes and not value.get("OnSuccess")


REVISION_NAMESPACE = uuidlib.UUID("0d3f5a52-6c1e-4b8e-9a77-5e0c2f3b9e41")


def revision_id(configuration: dict[str, Any], tags: dict[str, str]) -> str:
    """A function's RevisionId: a UUID named by what GetFunctionConfiguration shows and the
    function's tags (docs/semantics.md §10.9). It changes when either does, as on AWS, and
    every daemon sharing a registry, before and after a restart, gives the same one."""
    shown = {k: v for k, v in configuration.items() if k not in ("RevisionId", "LastModified")}
    doc = orjson.dumps({"configuration": shown, "tags": tags}, option=orjson.OPT_SORT_KEYS)
    return str(uuidlib.uuid5(REVISION_NAMESPACE, doc.decode()))


def _dump(model: BaseModel) -> dict[str, Any]:
    """A part of a mapping as the API shows it: AWS's names, what was given."""
    return model.model_dump(by_alias=True, exclude_none=True)


def _max_items(value: str | None, default: int, hi: int) -> int:
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise InvalidParameterValueException(f"MaxItems must be a number: {value}") from None
    if not 1 <= n <= hi:
        raise InvalidParameterValueException(f"MaxItems must be between 1 and {hi}: {n}")
    return n


class ControlHost(Protocol):
    """What the control plane needs from the daemon it runs in (:class:`~esm.engine.Engine`):
    the definitions it serves, the registry it writes and a way to apply what it wrote."""

    config: EsmConfig
    clock: Clock
    registry: Registry
    functions: dict[str, Function]
    invoke_config_records: dict[str, InvokeConfigRecord]  # the API's, as of the last sync

    @property
    def mappings(self) -> dict[str, MappingRuntime]: ...

    async def check_mapping(self, mapping: MappingSpec) -> None:
        """Lambda's checks against the mapping's source (the queue exists …)."""
        ...

    async def sync(self, *, if_changed: bool = False) -> None:
        """Apply the registry now."""
        ...

    def request_sync(self) -> None:
        """Apply the registry soon, without waiting."""
        ...


class ControlPlane:
    def __init__(self, host: ControlHost) -> None:
        self.host = host
        self.started_at = host.clock.now()

    @property
    def _cfg(self) -> EsmConfig:
        return self.host.config

    # -- functions ---------------------------------------------------------------------------------

    def function_name(self, name: str, qualifier: str | None = None) -> str:
        """A served function's name in any form of docs/semantics.md §10.4; only $LATEST exists."""
        try:
            ref = parse_function_name(name)
        except ValueError as exc:
            raise InvalidParameterValueException(str(exc)) from None
        if ref.qualifier and qualifier and ref.qualifier != qualifier:
            raise InvalidParameterValueException(
                "The derived qualifier from the function name does not match the specified "
                "qualifier."
            )
        q = qualifier or ref.qualifier
        if ref.name not in self.host.functions or q not in (None, "$LATEST"):
            raise ResourceNotFoundException(
                f"Function not found: {self._cfg.function_arn(ref.name, q)}"
            )
        return ref.name

    def function_configuration(self, name: str, tags: dict[str, str]) -> dict[str, Any]:
        """FunctionConfiguration as GetFunctionConfiguration answers it (docs/semantics.md
        §10.9): every key AWS always returns, with esm's values; ``tags`` count in RevisionId."""
        fn = self.host.functions[name]
        cfg = fn.config
        settings = self._cfg.settings
        out: dict[str, Any] = {"FunctionName": name, "FunctionArn": fn.arn}
        target = cfg.target or ""
        if cfg.runtime is not None:  # declared, in esm.yaml or the template
            out["Runtime"] = cfg.runtime
        elif target.startswith("python:"):  # declared nowhere: the Python it runs in
            out["Runtime"] = f"python{sys.version_info.major}.{sys.version_info.minor}"
        out["Role"] = cfg.role or f"arn:aws:iam::{settings.account_id}:role/esm-{name}"
        if cfg.handler is not None:
            out["Handler"] = cfg.handler
        elif target.startswith("python:"):
            out["Handler"] = target[len("python:") :]
        out |= {
            "CodeSize": 0,
            "Description": cfg.description,
            "Timeout": cfg.timeout_s,
            "MemorySize": cfg.memory_mb,
            "LastModified": datetime.fromtimestamp(self.started_at, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%f"
            )[:-3]
            + "+0000",
            "CodeSha256": "",
            "Version": "$LATEST",
        }
        if cfg.dead_letter_config is not None:
            out["DeadLetterConfig"] = {"TargetArn": cfg.dead_letter_config.target_arn}
        if cfg.environment.variables:
            out["Environment"] = {"Variables": dict(cfg.environment.variables)}
        logging = cfg.logging_config
        out["TracingConfig"] = {"Mode": "PassThrough"}
        out["State"] = "Active"
        out["LastUpdateStatus"] = "Successful"
        out["PackageType"] = "Image" if target.startswith("rie://") else "Zip"
        out["Architectures"] = ["x86_64"]
        out["EphemeralStorage"] = {"Size": 512}
        out["SnapStart"] = {"ApplyOn": "None", "OptimizationStatus": "Off"}
        logging_out: dict[str, str] = {
            "LogFormat": logging.log_format if logging else "Text",
            "LogGroup": (logging.log_group if logging else None) or f"/aws/lambda/{name}",
        }
        if logging is not None and logging.application_log_level is not None:
            logging_out["ApplicationLogLevel"] = logging.application_log_level
        if logging is not None and logging.system_log_level is not None:
            logging_out["SystemLogLevel"] = logging.system_log_level
        out["LoggingConfig"] = logging_out
        out["RevisionId"] = revision_id(out, tags)
        return out

    async def function_tags(self, *names: str) -> list[dict[str, str]]:
        """The functions' tags, in one read of the registry."""
        found = await self.host.registry.tags(*(function_tags_field(n) for n in names))
        return [t or {} for t in found]

    async def get_function_configuration(self, name: str, qualifier: str | None) -> dict[str, Any]:
        fn_name = self.function_name(name, qualifier)
        (tags,) = await self.function_tags(fn_name)
        return self.function_configuration(fn_name, tags)

    async def get_function(self, name: str, qualifier: str | None) -> dict[str, Any]:
        fn_name = self.function_name(name, qualifier)
        fn = self.host.functions[fn_name]
        (tags,) = await self.function_tags(fn_name)
        out: dict[str, Any] = {
            "Configuration": self.function_configuration(fn_name, tags),
            "Code": {"RepositoryType": "esm", "Location": fn.config.target or fn.config.code_uri},
        }
        if tags:  # as recorded on AWS: no Tags member when the function has none
            out["Tags"] = tags
        if fn.reserved is not None:
            out["Concurrency"] = {"ReservedConcurrentExecutions": fn.reserved}
        return out

    async def list_functions(self, marker: str | None, max_items: str | None) -> dict[str, Any]:
        names = sorted(self.host.functions)
        tags = await self.function_tags(*names)
        configs = [self.function_configuration(n, t) for n, t in zip(names, tags, strict=True)]
        page, token = _page(configs, marker, _max_items(max_items, 50, 10000), "FunctionName")
        out: dict[str, Any] = {"Functions": page}
        if token:
            out["NextMarker"] = token
        return out

    # -- tags --------------------------------------------------------------------------------------

    async def _tagged(self, arn: str) -> tuple[Resource, str, dict[str, str]]:
        """The resource ``arn`` names (404 in AWS's words when esm has no such one), its tags'
        field in the registry and its tags now."""
        resource = parse_resource(arn)
        if resource.kind == "function":
            if resource.name not in self.host.functions:
                raise ResourceNotFoundException(f"Function not found: {arn}")
            field = function_tags_field(resource.name)
            (tags,) = await self.host.registry.tags(field)
            return resource, field, tags or {}
        if resource.kind == "event-source-mapping":
            record = await self.host.registry.mapping(resource.name)
            if record is None:
                raise ResourceNotFoundException(f"Event source mapping not found: {arn}")
            field = mapping_tags_field(resource.name)
            (tags,) = await self.host.registry.tags(field)
            return resource, field, tags if tags is not None else record.params.get("Tags") or {}
        raise ResourceNotFoundException(f"{resource.label} not found: {arn}")

    async def _write_tags(self, resource: Resource, field: str, tags: dict[str, str]) -> None:
        mapping = resource.name if resource.kind == "event-source-mapping" else ""
        if not await self.host.registry.put_tags(field, tags, mapping=mapping):
            raise ResourceNotFoundException(f"Event source mapping not found: {resource.arn}")

    async def list_tags(self, arn: str) -> dict[str, Any]:
        _, _, tags = await self._tagged(arn)
        return {"Tags": tags}

    async def tag_resource(self, arn: str, body: dict[str, Any]) -> None:
        check_resource(arn)  # the model's constraints first: the ARN's pattern, then the tags'
        new = check_tags(body.get("Tags"))
        resource, field, current = await self._tagged(arn)
        await self._write_tags(resource, field, merged(current, new))

    async def untag_resource(self, arn: str, keys: list[str]) -> None:
        check_resource(arn)
        gone = check_keys(keys)
        resource, field, current = await self._tagged(arn)
        await self._write_tags(resource, field, {k: v for k, v in current.items() if k not in gone})

    # -- reserved concurrency ----------------------------------------------------------------------

    async def put_concurrency(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        fn_name = self.function_name(name)
        value = body.get("ReservedConcurrentExecutions")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidParameterValueException(
                "ReservedConcurrentExecutions: must be an integer of at least 0"
            )
        await self.host.registry.put_concurrency(fn_name, value)
        await self.host.sync()
        return {"ReservedConcurrentExecutions": value}

    def get_concurrency(self, name: str) -> dict[str, Any]:
        reserved = self.host.functions[self.function_name(name)].reserved
        return {} if reserved is None else {"ReservedConcurrentExecutions": reserved}

    async def delete_concurrency(self, name: str) -> None:
        await self.host.registry.put_concurrency(self.function_name(name), UNRESERVED)
        await self.host.sync()

    # -- event invoke configs ----------------------------------------------------------------------

    def _invoke_config_params(self, name: str) -> InvokeConfigRecord | None:
        """The function's current EventInvokeConfig as set (API first, then the config file)."""
        found = self.host.invoke_config_records.get(name)
        if found is not None:
            return None if found.deleted else found
        cfg = self._cfg.functions[name]
        if "event_invoke_config" not in cfg.model_fields_set:
            return None
        params = cfg.event_invoke_config.model_dump(
            by_alias=True, exclude_none=True, exclude_unset=True
        )
        return InvokeConfigRecord(params=params, last_modified=self.started_at)

    def invoke_config_json(self, name: str, record: InvokeConfigRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "LastModified": record.last_modified,
            "FunctionArn": self._cfg.function_arn(name, "$LATEST"),
        }
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if key in record.params:
                out[key] = record.params[key]
        dests = record.params.get("DestinationConfig") or {}
        out["DestinationConfig"] = {
            "OnSuccess": dests.get("OnSuccess") or {},
            "OnFailure": dests.get("OnFailure") or {},
        }
        return out

    async def put_invoke_config(
        self, name: str, qualifier: str | None, body: dict[str, Any], *, merge: bool
    ) -> dict[str, Any]:
        fn_name = self.function_name(name, qualifier)
        unknown = sorted(set(body) - set(INVOKE_CONFIG_FIELDS))
        if unknown:
            raise InvalidParameterValueException(f"{unknown[0]}: unknown parameter")
        params: dict[str, Any] = {}
        if merge:
            current = self._invoke_config_params(fn_name)
            if current is None:
                raise ResourceNotFoundException(self._no_invoke_config(fn_name))
            params = dict(current.params)
        params |= {k: v for k, v in body.items() if v is not None}
        invoke_config_from_params(params)  # validates (names the field and the rule)
        self._check_destinations(params)
        record = InvokeConfigRecord(params=params, last_modified=self.host.clock.now())
        await self.host.registry.put_invoke_config(fn_name, record)
        await self.host.sync()
        return self.invoke_config_json(fn_name, record)

    @staticmethod
    def _check_destinations(params: dict[str, Any]) -> None:
        dests = params.get("DestinationConfig") or {}
        on_success = (dests.get("OnSuccess") or {}).get("Destination") or ""
        if on_success.startswith("arn:aws:s3:"):
            raise InvalidParameterValueException(
                "DestinationConfig.OnSuccess.Destination: an S3 bucket is an on-failure "
                "destination only"
            )

    def _no_invoke_config(self, name: str) -> str:
        return (
            f"The function {self._cfg.function_arn(name, '$LATEST')} doesn't have an "
            "EventInvokeConfig"
        )

    def get_invoke_config(self, name: str, qualifier: str | None) -> dict[str, Any]:
        fn_name = self.function_name(name, qualifier)
        record = self._invoke_config_params(fn_name)
        if record is None:
            raise ResourceNotFoundException(self._no_invoke_config(fn_name))
        return self.invoke_config_json(fn_name, record)

    async def delete_invoke_config(self, name: str, qualifier: str | None) -> None:
        fn_name = self.function_name(name, qualifier)
        if self._invoke_config_params(fn_name) is None:
            raise ResourceNotFoundException(self._no_invoke_config(fn_name))
        record = InvokeConfigRecord(last_modified=self.host.clock.now(), deleted=True)
        await self.host.registry.put_invoke_config(fn_name, record)
        await self.host.sync()

    def list_invoke_configs(
        self, name: str, marker: str | None, max_items: str | None
    ) -> dict[str, Any]:
        fn_name = self.function_name(name)
        record = self._invoke_config_params(fn_name)
        items = [] if record is None else [self.invoke_config_json(fn_name, record)]
        page, token = _page(items, marker, _max_items(max_items, 50, 50), "FunctionArn")
        out: dict[str, Any] = {"FunctionEventInvokeConfigs": page}
        if token:
            out["NextMarker"] = token
        return out

    # -- event source mappings ---------------------------------------------------------------------

    def mapping_json(self, record: MappingRecord, *, created: bool = False) -> dict[str, Any]:
        """EventSourceMappingConfiguration (docs/semantics.md §10.3), rendered from the
        resolved mapping: its defaults are :meth:`~esm.config.MappingConfig.resolve`'s, never
        set here."""
        m = mapping_from_params(record.params)
        cfg = self._cfg
        stream = m.source != "sqs"
        out: dict[str, Any] = {"UUID": record.uuid}
        if m.starting_position is not None:
            out["StartingPosition"] = m.starting_position
        if m.starting_position_timestamp is not None:
            out["StartingPositionTimestamp"] = m.starting_position_timestamp
        out["BatchSize"] = m.batch_size
        out["MaximumBatchingWindowInSeconds"] = m.window_s
        if stream:
            out["ParallelizationFactor"] = m.parallelization_factor
        out["EventSourceArn"] = m.event_source_arn
        if m.filter_criteria is not None and m.filter_criteria.filters:
            out["FilterCriteria"] = _dump(m.filter_criteria)
        out["FunctionArn"] = cfg.function_arn(
            parse_function_name(m.function_name).name, record.qualifier
        )
        out["LastModified"] = record.last_modified
        if stream or not created:  # AWS's create answer for SQS has none
            runtime = self.host.mappings.get(record.uuid)
            out["LastProcessingResult"] = (
                runtime.last_processing_result if runtime else "No records processed"
            )
        out["State"] = record.state
        # as recorded on AWS: "USER_INITIATED" for SQS, "User action" for streams
        reason = record.reason
        out["StateTransitionReason"] = (
            STREAM_USER_ACTION if stream and reason == "USER_INITIATED" else reason
        )
        if stream:
            on_failure = m.destination_config.on_failure if m.destination_config else None
            out["DestinationConfig"] = {"OnFailure": _dump(on_failure) if on_failure else {}}
            out["MaximumRecordAgeInSeconds"] = m.maximum_record_age_s
            out["BisectBatchOnFunctionError"] = m.bisect_on_error
            out["MaximumRetryAttempts"] = m.maximum_retry_attempts
            out["TumblingWindowInSeconds"] = m.tumbling_window_s
        out["FunctionResponseTypes"] = list(m.function_response_types)
        for key, value in (
            ("ScalingConfig", m.scaling_config),
            ("MetricsConfig", m.metrics_config),
        ):
            dumped = _dump(value) if value is not None else {}
            if dumped:
                out[key] = dumped
        out["EventSourceMappingArn"] = (
            f"arn:aws:lambda:{cfg.settings.region}:{cfg.settings.account_id}:"
            f"event-source-mapping:{record.uuid}"
        )
        return out

    async def _validated(self, params: dict[str, Any]) -> None:
        """Every rule the config file has, and Lambda's checks against the source (which need
        the function: a daemon sharing the registry may not serve it)."""
        mapping = mapping_from_params(params)
        name = self._cfg.mapping_function(mapping)
        if name not in self.host.functions:
            raise ResourceNotFoundException(f"Function not found: {self._cfg.function_arn(name)}")
        await self.host.check_mapping(mapping)

    def _mapping_function(self, ref: Any) -> str:
        """A mapping's FunctionName → the served function's name; AWS's words when unknown."""
        if not isinstance(ref, str) or not ref:
            raise ValidationException(
                "1 validation error detected: Value null at 'functionName' failed to satisfy "
                "constraint: Member must not be null."
            )
        try:
            return self.function_name(ref)
        except ResourceNotFoundException:
            raise InvalidParameterValueException(NO_SUCH_FUNCTION) from None

    async def create_mapping(self, body: dict[str, Any]) -> dict[str, Any]:
        params = {k: v for k, v in body.items() if v is not None}
        check_mapping_request(params, create=True)
        ref_name = params.get("FunctionName")
        fn_name = self._mapping_function(ref_name)
        qualifier = parse_function_name(str(ref_name)).qualifier
        params["FunctionName"] = fn_name
        tags = check_tags(params.pop("Tags", None))
        if len(tags) > MAX_TAGS:
            raise InvalidParameterValueException(TOO_MANY)
        await self._validated(params)
        await self._refuse_duplicate(fn_name, params["EventSourceArn"])
        record = MappingRecord(
            uuid=str(uuidlib.uuid4()),
            params=params,
            state="Creating",
            last_modified=self.host.clock.now(),
            origin="api",
            qualifier=qualifier,
        )
        await self.host.registry.put_mapping(record)
        if tags:  # kept apart from the definition: TagResource changes them, not the mapping
            await self.host.registry.put_tags(mapping_tags_field(record.uuid), tags)
        self.host.request_sync()
        return self.mapping_json(record, created=True)

    async def _refuse_duplicate(self, fn_name: str, source_arn: str, uuid: str = "") -> None:
        """One mapping per function and event source (a mapping may keep its own pair)."""
        for other, rec in (await self.host.registry.mappings()).items():
            same_fn = parse_function_name(rec.params["FunctionName"]).name == fn_name
            if other != uuid and same_fn and rec.params["EventSourceArn"] == source_arn:
                if source_arn.startswith("arn:aws:sqs:"):
                    raise ResourceConflictException(
                        f'An event source mapping with SQS arn (" {source_arn} ") and function '
                        f'(" {fn_name} ") already exists. Please update or delete the existing '
                        f"mapping with UUID {other}"
                    )
                raise ResourceConflictException(
                    f'The event source arn (" {source_arn} ") and function '
                    f'(" {fn_name} ") provided mapping already exists. Please update or delete '
                    f"the existing mapping with UUID {other}"
                )

    async def _record(self, uuid: str) -> MappingRecord:
        record = await self.host.registry.mapping(uuid)
        if record is None:
            raise ResourceNotFoundException(NOT_FOUND)
        return record

    async def get_mapping(self, uuid: str) -> dict[str, Any]:
        return self.mapping_json(await self._record(uuid))

    async def list_mappings(
        self,
        event_source_arn: str | None,
        function_name: str | None,
        marker: str | None,
        max_items: str | None,
    ) -> dict[str, Any]:
        limit = min(100, _max_items(max_items, 100, 10000))
        fn = self._function_filter(function_name)
        records = sorted((await self.host.registry.mappings()).values(), key=lambda r: r.uuid)
        items = [
            self.mapping_json(r)
            for r in records
            if (event_source_arn is None or r.params["EventSourceArn"] == event_source_arn)
            and (fn is None or parse_function_name(r.params["FunctionName"]).name == fn)
        ]
        page, token = _page(items, marker, limit, "UUID")
        out: dict[str, Any] = {"EventSourceMappings": page}
        if token:
            out["NextMarker"] = token
        return out

    @staticmethod
    def _function_filter(function_name: str | None) -> str | None:
        """ListEventSourceMappings' FunctionName (any form of docs/semantics.md §10.4) → the
        function's name."""
        if not function_name:
            return None
        try:
            return parse_function_name(function_name).name
        except ValueError as exc:
            raise InvalidParameterValueException(str(exc)) from None

    async def update_mapping(self, uuid: str, body: dict[str, Any]) -> dict[str, Any]:
        record = await self._record(uuid)
        for key in CREATE_ONLY:
            if key in body:
                raise InvalidParameterValueException(
                    f"{key}: can only be set when the mapping is created"
                )
        if record.state in TRANSITIONAL:
            raise ResourceInUseException(
                f"Cannot update the event source mapping because it is in use ({record.state})."
            )
        params = dict(record.params)
        qualifier = record.qualifier
        for key, value in body.items():
            if value is None:
                continue
            if key in ("FilterCriteria", "ScalingConfig", "MetricsConfig") and not value:
                params.pop(key, None)  # {} removes it
            elif key == "DestinationConfig" and _no_on_failure(value):
                params.pop(key, None)  # "" removes the destination
            elif key == "FunctionName":
                params[key] = self._mapping_function(value)
                qualifier = parse_function_name(str(value)).qualifier
            else:
                params[key] = value
        check_mapping_request(params, create=False)
        await self._validated(params)
        if "FunctionName" in body:
            await self._refuse_duplicate(params["FunctionName"], params["EventSourceArn"], uuid)
        was, now = record.params.get("Enabled", True), params.get("Enabled", True)
        state = "Updating" if was == now else ("Enabling" if now else "Disabling")
        record = MappingRecord(
            uuid=uuid,
            params=params,
            state=state,
            last_modified=self.host.clock.now(),
            origin=record.origin,
            qualifier=qualifier,
        )
        await self.host.registry.put_mapping(record)
        self.host.request_sync()
        return self.mapping_json(record)

    async def delete_mapping(self, uuid: str) -> dict[str, Any]:
        record = await self._record(uuid)
        if record.state in ("Creating", "Updating", "Enabling", "Disabling"):
            raise ResourceInUseException(
                f"Cannot delete the event source mapping because it is in use ({record.state})."
            )
        record.state = "Deleting"
        record.last_modified = self.host.clock.now()
        await self.host.registry.put_mapping(record)
        self.host.request_sync()
        return self.mapping_json(record)
