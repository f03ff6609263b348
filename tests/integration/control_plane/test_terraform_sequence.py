"""Terraform's AWS provider against esm: the Lambda calls it makes for
``aws_lambda_event_source_mapping`` and ``aws_lambda_function_event_invoke_config``, in its
order, with its parameters, and every answer it reads checked as it reads it.

The sequences follow the provider's source (hashicorp/terraform-provider-aws,
``internal/service/lambda/event_source_mapping.go``, ``function_event_invoke_config.go``, the
generated ``tags_gen.go`` and the SDKv2 tagging interceptor), told here in our own words:

aws_lambda_event_source_mapping
    create  CreateEventSourceMapping with ``Enabled`` always, the attributes set in the
            configuration and ``Tags``; then GetEventSourceMapping every few seconds while
            ``State`` is Creating / Enabling / Disabling, until Enabled or Disabled (any other
            state fails the apply, with ``StateTransitionReason`` as the error); then read.
    read    GetEventSourceMapping (ResourceNotFoundException: the mapping is gone from the
            state, unless it was just created), then ListTags on its ``EventSourceMappingArn``;
            every attribute is taken from the answer, ``enabled`` from ``State`` (Enabled /
            Enabling → true, Disabled / Disabling → false).
    update  first the tags, by the provider's tagging interceptor: UntagResource (the keys
            removed) then TagResource (the keys added or changed); then
            UpdateEventSourceMapping with only what changed (a removed ``filter_criteria`` or
            ``scaling_config`` as ``{}``, since AWS ignores a missing one); then Get while
            Updating / Enabling / Disabling until Enabled or Disabled; then read.
    delete  DeleteEventSourceMapping, again while it answers ResourceInUseException;
            ResourceNotFoundException means already gone; then Get while Deleting, until
            ResourceNotFoundException.

aws_lambda_function_event_invoke_config
    create  PutFunctionEventInvokeConfig (``MaximumRetryAttempts`` always, 2 unless set;
            ``MaximumEventAgeInSeconds`` and ``DestinationConfig`` when set); then read.
    read    GetFunctionEventInvokeConfig (ResourceNotFoundException: gone); a
            ``DestinationConfig`` whose OnSuccess and OnFailure have no Destination is read as
            none.
    update  PutFunctionEventInvokeConfig again with the whole configuration (Put replaces:
            what is no longer set goes); then read.
    delete  DeleteFunctionEventInvokeConfig; ResourceNotFoundException means already gone.

The client is plain, synchronous boto3 (as the provider's SDK is a separate client), run in a
thread next to the daemon under test.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from esm.aws import AwsClients
from tests.control_support import ESM_ARN, FN_ARN, ControlWorld, fn, lambda_client
from tests.streams_support import create_stream
from tests.support import Queues, unique

pytestmark = pytest.mark.integration

# what the provider reads and these sources never have (Kafka, MQ, DocumentDB, a KMS key)
NOT_FOR_SQS_OR_STREAMS = (
    "KMSKeyArn",
    "Queues",
    "Topics",
    "SourceAccessConfigurations",
    "SelfManagedEventSource",
    "SelfManagedKafkaEventSourceConfig",
    "AmazonManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
)
POLL_S = 0.2  # the provider polls every few seconds; the states are the same, sooner
WAIT_S = 60.0


def error_code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


@dataclass
class MappingState:
    """What Terraform keeps of a mapping after reading it."""

    uuid: str = ""
    arn: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    enabled: bool | None = None
    gone: bool = False


@dataclass
class Provider:
    """The provider's calls for the two resources, step by step, through ``client``."""

    client: BaseClient
    calls: list[str] = field(default_factory=list)

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(operation)
        answer: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        return answer

    # -- aws_lambda_event_source_mapping ---------------------------------------------------------

    def wait_mapping(self, uuid: str, pending: set[str]) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while True:
            got = self.call("get_event_source_mapping", UUID=uuid)
            if got["State"] in ("Enabled", "Disabled"):
                return got
            assert got["State"] in pending, (got["State"], got["StateTransitionReason"])
            assert time.monotonic() < deadline, f"mapping {uuid} stayed {got['State']}"
            time.sleep(POLL_S)

    def create_mapping(self, **config: Any) -> MappingState:
        created = self.call("create_event_source_mapping", **config)
        assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
        state = MappingState(uuid=created["UUID"])
        self.wait_mapping(state.uuid, {"Creating", "Enabling", "Disabling"})
        self.read_mapping(state, new=True)
        return state

    def read_mapping(self, state: MappingState, *, new: bool = False) -> None:
        try:
            got = self.call("get_event_source_mapping", UUID=state.uuid)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException" and not new:
                state.gone = True
                return
            raise
        state.arn = got["EventSourceMappingArn"]
        state.tags = self.call("list_tags", Resource=state.arn)["Tags"]
        state.attributes = {k: v for k, v in got.items() if k != "ResponseMetadata"}
        state.enabled = {
            "Enabled": True,
            "Enabling": True,
            "Disabled": False,
            "Disabling": False,
        }.get(got["State"])

    def update_mapping(
        self, state: MappingState, changes: dict[str, Any], tags: dict[str, str]
    ) -> None:
        self.update_tags(state.arn, state.tags, tags)  # the tagging interceptor, before
        if changes:
            self.call("update_event_source_mapping", UUID=state.uuid, **changes)
            self.wait_mapping(state.uuid, {"Updating", "Enabling", "Disabling"})
        self.read_mapping(state)

    def update_tags(self, arn: str, old: dict[str, str], new: dict[str, str]) -> None:
        removed = [k for k in old if k not in new]
        if removed:
            self.call("untag_resource", Resource=arn, TagKeys=removed)
        updated = {k: v for k, v in new.items() if old.get(k) != v}
        if updated:
            self.call("tag_resource", Resource=arn, Tags=updated)

    def delete_mapping(self, state: MappingState) -> None:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                self.call("delete_event_source_mapping", UUID=state.uuid)
                break
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return
                assert error_code(exc) == "ResourceInUseException", exc
                assert time.monotonic() < deadline
                time.sleep(POLL_S)
        while True:
            try:
                got = self.call("get_event_source_mapping", UUID=state.uuid)
            except ClientError as exc:
                assert error_code(exc) == "ResourceNotFoundException", exc
                return
            assert got["State"] == "Deleting", got["State"]
            assert time.monotonic() < deadline
            time.sleep(POLL_S)

    # -- aws_lambda_function_event_invoke_config -------------------------------------------------

    def put_invoke_config(self, function: str, **config: Any) -> None:
        self.call(
            "put_function_event_invoke_config",
            FunctionName=function,
            MaximumRetryAttempts=config.pop("MaximumRetryAttempts", 2),
            **config,
        )

    def read_invoke_config(self, function: str) -> dict[str, Any] | None:
        try:
            got = self.call("get_function_event_invoke_config", FunctionName=function)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        dests = got.get("DestinationConfig") or {}
        on_failure = (dests.get("OnFailure") or {}).get("Destination")
        on_success = (dests.get("OnSuccess") or {}).get("Destination")
        return {
            "destination_config": (
                {"on_failure": on_failure, "on_success": on_success}
                if on_failure or on_success
                else None
            ),
            "maximum_event_age_in_seconds": got.get("MaximumEventAgeInSeconds"),
            "maximum_retry_attempts": got.get("MaximumRetryAttempts"),
        }

    def delete_invoke_config(self, function: str) -> None:
        try:
            self.call("delete_function_event_invoke_config", FunctionName=function)
        except ClientError as exc:
            assert error_code(exc) == "ResourceNotFoundException", exc


# -- aws_lambda_event_source_mapping --------------------------------------------------------------


def sqs_lifecycle(provider: Provider, function: str, queue_arn: str) -> None:
    # terraform apply: create
    state = provider.create_mapping(
        Enabled=True,
        FunctionName=function,
        EventSourceArn=queue_arn,
        BatchSize=5,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        ScalingConfig={"MaximumConcurrency": 4},
        Tags={"env": "dev", "team": "a"},
    )
    # create, the waiter's Gets (at least one), the read's Get and ListTags
    assert provider.calls[0] == "create_event_source_mapping"
    assert set(provider.calls[1:-1]) == {"get_event_source_mapping"}
    assert len(provider.calls) >= 4 and provider.calls[-1] == "list_tags"
    a = state.attributes
    assert state.arn == f"{ESM_ARN}:{state.uuid}"
    assert (a["State"], state.enabled) == ("Enabled", True)
    assert a["FunctionArn"] == f"{FN_ARN}:{function}"  # function_name is read from it
    assert (a["EventSourceArn"], a["BatchSize"], a["MaximumBatchingWindowInSeconds"]) == (
        queue_arn,
        5,
        0,
    )
    assert a["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert a["ScalingConfig"] == {"MaximumConcurrency": 4}
    assert a["StateTransitionReason"] == "USER_INITIATED"
    assert isinstance(a["LastProcessingResult"], str)
    for stream_only in ("StartingPosition", "ParallelizationFactor", "DestinationConfig"):
        assert stream_only not in a  # nil in the state, as the configuration has them
    assert "FilterCriteria" not in a
    assert isinstance(a["LastModified"], datetime)  # formatted as RFC 3339 into the state
    for absent in NOT_FOR_SQS_OR_STREAMS:
        assert absent not in a, absent  # nil in the state
    assert state.tags == {"env": "dev", "team": "a"}

    # terraform plan: a read changes nothing
    before = dict(state.attributes)
    provider.read_mapping(state)
    assert state.attributes == before and state.tags == {"env": "dev", "team": "a"}

    # terraform apply: disable, filter, rescale, retag
    pattern = '{"body": {"kind": ["order"]}}'
    provider.calls.clear()
    provider.update_mapping(
        state,
        {
            "BatchSize": 8,
            "Enabled": False,
            "FilterCriteria": {"Filters": [{"Pattern": pattern}]},
            "ScalingConfig": {"MaximumConcurrency": 10},
        },
        {"env": "prod", "owner": "me"},
    )
    assert provider.calls[:3] == [
        "untag_resource",
        "tag_resource",
        "update_event_source_mapping",
    ]
    assert set(provider.calls[3:-1]) == {"get_event_source_mapping"}
    assert provider.calls[-1] == "list_tags"
    a = state.attributes
    assert (a["State"], state.enabled) == ("Disabled", False)
    assert a["BatchSize"] == 8
    assert a["FilterCriteria"] == {"Filters": [{"Pattern": pattern}]}
    assert a["ScalingConfig"] == {"MaximumConcurrency": 10}
    assert state.tags == {"env": "prod", "owner": "me"}

    # terraform apply: enable again, filter and scaling removed (sent as {}), no tag change
    provider.calls.clear()
    provider.update_mapping(
        state, {"Enabled": True, "FilterCriteria": {}, "ScalingConfig": {}}, state.tags
    )
    assert "tag_resource" not in provider.calls and "untag_resource" not in provider.calls
    a = state.attributes
    assert (a["State"], state.enabled) == ("Enabled", True)
    assert "FilterCriteria" not in a and "ScalingConfig" not in a
    assert a["BatchSize"] == 8

    destroy(provider, state)


def destroy(provider: Provider, state: MappingState) -> None:
    # another actor changes the mapping just before terraform destroy: the delete is retried
    # while esm answers ResourceInUseException (the name the provider retries on)
    provider.call("update_event_source_mapping", UUID=state.uuid, BatchSize=9)
    provider.calls.clear()
    provider.delete_mapping(state)
    assert provider.calls[-1] == "get_event_source_mapping"  # answered ResourceNotFoundException
    # terraform plan after: the read finds it gone, tags too
    provider.read_mapping(state)
    assert state.gone
    try:
        provider.call("list_tags", Resource=state.arn)
        raise AssertionError("ListTags of a deleted mapping answered")
    except ClientError as exc:
        assert error_code(exc) == "ResourceNotFoundException"
    # terraform destroy again (a state that still had it): gone is success
    provider.delete_mapping(state)


def stream_lifecycle(provider: Provider, function: str, stream_arn: str, dlq_arn: str) -> None:
    state = provider.create_mapping(
        Enabled=True,
        FunctionName=f"{FN_ARN}:{function}",
        EventSourceArn=stream_arn,
        StartingPosition="TRIM_HORIZON",
        BatchSize=50,
        MaximumRetryAttempts=2,
        ParallelizationFactor=2,
        BisectBatchOnFunctionError=True,
        MaximumRecordAgeInSeconds=3600,
        DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
        Tags={"stream": "yes"},
    )
    a = state.attributes
    assert (a["State"], state.enabled) == ("Enabled", True)
    assert a["StateTransitionReason"] == "User action"
    assert a["StartingPosition"] == "TRIM_HORIZON"
    assert (a["BatchSize"], a["MaximumBatchingWindowInSeconds"]) == (50, 0)
    assert (a["MaximumRetryAttempts"], a["ParallelizationFactor"]) == (2, 2)
    assert (a["BisectBatchOnFunctionError"], a["MaximumRecordAgeInSeconds"]) == (True, 3600)
    assert a["DestinationConfig"] == {"OnFailure": {"Destination": dlq_arn}}
    assert a["TumblingWindowInSeconds"] == 0
    assert a["FunctionResponseTypes"] == []
    assert "StartingPositionTimestamp" not in a
    assert isinstance(a["LastModified"], datetime)
    for absent in NOT_FOR_SQS_OR_STREAMS:
        assert absent not in a, absent
    assert state.tags == {"stream": "yes"}

    provider.update_mapping(
        state,
        {
            "MaximumRetryAttempts": 5,
            "BisectBatchOnFunctionError": False,
            "ParallelizationFactor": 1,
            "TumblingWindowInSeconds": 60,
        },
        {},
    )
    a = state.attributes
    assert (a["State"], state.enabled) == ("Enabled", True)
    assert (a["MaximumRetryAttempts"], a["BisectBatchOnFunctionError"]) == (5, False)
    assert (a["ParallelizationFactor"], a["TumblingWindowInSeconds"]) == (1, 60)
    assert a["DestinationConfig"] == {"OnFailure": {"Destination": dlq_arn}}
    assert a["StartingPosition"] == "TRIM_HORIZON"  # create-only, kept
    assert state.tags == {}

    destroy(provider, state)


async def test_terraform_event_source_mapping_sequences(
    world: ControlWorld, queues: Queues, aws: AwsClients
) -> None:
    sqs_fn, stream_fn = unique("tf-sqs"), unique("tf-stream")
    node = await world.start({sqs_fn: fn(), stream_fn: fn()})
    queue_arn, _ = await queues.create(unique("tf-q"))
    dlq_arn, _ = await queues.create(unique("tf-dlq"))
    stream_arn = await create_stream(aws)
    client = lambda_client(node.url)
    try:
        await asyncio.to_thread(sqs_lifecycle, Provider(client), sqs_fn, queue_arn)
        await asyncio.to_thread(stream_lifecycle, Provider(client), stream_fn, stream_arn, dlq_arn)
    finally:
        client.close()


# -- aws_lambda_function_event_invoke_config ------------------------------------------------------


def invoke_config_lifecycle(provider: Provider, function: str, dest_arn: str) -> None:
    # create (the provider's default retries: 2) and read
    provider.put_invoke_config(function, MaximumEventAgeInSeconds=300)
    assert provider.read_invoke_config(function) == {
        "destination_config": None,  # AWS's empty OnSuccess / OnFailure read as none
        "maximum_event_age_in_seconds": 300,
        "maximum_retry_attempts": 2,
    }
    # update: the whole configuration again; the age is no longer set, a destination is
    provider.put_invoke_config(
        function,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": dest_arn}},
    )
    assert provider.read_invoke_config(function) == {
        "destination_config": {"on_failure": dest_arn, "on_success": None},
        "maximum_event_age_in_seconds": None,
        "maximum_retry_attempts": 0,
    }
    # UpdateFunctionEventInvokeConfig (what other tools call) merges instead
    provider.call(
        "update_function_event_invoke_config", FunctionName=function, MaximumEventAgeInSeconds=60
    )
    assert provider.read_invoke_config(function) == {
        "destination_config": {"on_failure": dest_arn, "on_success": None},
        "maximum_event_age_in_seconds": 60,
        "maximum_retry_attempts": 0,
    }
    # destroy, plan after (gone), destroy again (gone is success)
    provider.delete_invoke_config(function)
    assert provider.read_invoke_config(function) is None
    provider.delete_invoke_config(function)
    assert provider.calls[-3:] == [
        "delete_function_event_invoke_config",
        "get_function_event_invoke_config",
        "delete_function_event_invoke_config",
    ]


async def test_terraform_function_event_invoke_config_sequence(
    world: ControlWorld, queues: Queues
) -> None:
    name = unique("tf-eic")
    node = await world.start({name: fn()})
    dest_arn, _ = await queues.create(unique("tf-eic-dest"))
    client = lambda_client(node.url)
    try:
        await asyncio.to_thread(invoke_config_lifecycle, Provider(client), name, dest_arn)
    finally:
        client.close()
