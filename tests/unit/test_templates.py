"""SAM / CloudFormation templates read as esm's config: every mapping, intrinsic, override and
problem a user meets with ``esm run --template`` and ``esm validate --template``."""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from esm.cli import main
from esm.config import EsmConfig, shown
from esm.errors import ConfigError
from esm.intrinsics import PLACEHOLDER_STREAM_LABEL
from esm.templates import (
    Overlay,
    Template,
    TemplateOptions,
    load_overlay,
    load_template,
)

R, A = "us-east-1", "000000000000"
QUEUE_ARN = f"arn:aws:sqs:{R}:{A}:orders"

HEADER = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
"""

# a function whose code is ./src/app.py, and an orders queue
BASE = """
Resources:
  OrdersQueue:
    Type: AWS::SQS::Queue
    Properties: {QueueName: orders, VisibilityTimeout: 30}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: orders
      Runtime: python3.12
      CodeUri: src/
      Handler: app.handler
"""


def write(tmp_path: Path, body: str, name: str = "template.yaml") -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def load(
    tmp_path: Path,
    body: str,
    *,
    overlay: str | None = None,
    targets: dict[str, str] | None = None,
    parameters: dict[str, str] | None = None,
    strict: bool = False,
    imports: dict[str, str] | None = None,
) -> Template:
    ov = Overlay()
    if overlay is not None:
        (tmp_path / "overlay.yaml").write_text(textwrap.dedent(overlay))
        ov = load_overlay(tmp_path / "overlay.yaml")
    options = TemplateOptions(
        overlay=ov,
        targets=targets or {},
        parameters=parameters or {},
        strict=strict,
        import_values=imports or {},
    )
    return load_template(write(tmp_path, body), options)


def config(tmp_path: Path, body: str, **kwargs: Any) -> EsmConfig:
    return load(tmp_path, body, **kwargs).config


def problems(tmp_path: Path, body: str, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, body, **kwargs)
    prefix = f"{tmp_path / 'template.yaml'}: "
    lines = str(info.value).splitlines()
    assert all(line.startswith(prefix) for line in lines), lines
    return [line[len(prefix) :] for line in lines]


def fn_with(props: str, extra: str = "") -> str:
    """BASE with more properties on Fn (indented 6) and more resources (indented 2)."""
    return (
        BASE
        + textwrap.indent(textwrap.dedent(props), " " * 6)
        + textwrap.indent(textwrap.dedent(extra), "  ")
    )


# -- AWS::Serverless::Function -------------------------------------------------------------------


def test_a_sam_function_becomes_a_python_function_importing_from_its_code_uri(
    tmp_path: Path,
) -> None:
    t = load(
        tmp_path,
        fn_with(
            """
            Timeout: 20
            MemorySize: 512
            ReservedConcurrentExecutions: 4
            Description: takes orders
            Role: !GetAtt OrdersRole.Arn
            Environment:
              Variables: {TABLE: orders, RETRIES: 3, DEBUG: true}
            """,
            """
            OrdersRole:
              Type: AWS::IAM::Role
              Properties: {RoleName: orders-role}
            """,
        ),
    )
    fn = t.config.functions["orders"]
    assert fn.target is None  # run in execution environments, from its own folder
    assert (fn.runtime, fn.handler) == ("python3.12", "app.handler")
    assert fn.code_uri == str((tmp_path / "src").resolve())
    assert (fn.timeout_s, fn.memory_mb, fn.reserved_concurrency) == (20, 512, 4)
    assert fn.description == "takes orders"
    assert fn.role == f"arn:aws:iam::{A}:role/orders-role"
    assert fn.environment.variables == {"TABLE": "orders", "RETRIES": "3", "DEBUG": "true"}
    assert t.code_paths == ()
    assert "ignored resource types (esm does not need them): AWS::IAM::Role" in t.warnings


IN_PROCESS = "Settings: {TemplatePythonFunctions: InProcess}"


def test_in_process_python_functions_import_from_their_code_uri(tmp_path: Path) -> None:
    t = load(tmp_path, fn_with(""), overlay=IN_PROCESS)
    fn = t.config.functions["orders"]
    # the template's Runtime is kept, declared: GetFunction shows it; esm's Python runs it
    assert (fn.target, fn.runtime) == ("python:app.handler", "python3.12")
    assert t.code_paths == ((tmp_path / "src").resolve(),)


def test_the_logical_id_names_a_function_without_function_name_and_handlers_take_folders(
    tmp_path: Path,
) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    body = """
        Resources:
          OrdersFunction:
            Type: AWS::Serverless::Function
            Properties: {Runtime: python3.11, CodeUri: src, Handler: pkg/orders.handle}
        """
    cfg = config(tmp_path, body)
    assert cfg.functions["OrdersFunction"].handler == "pkg/orders.handle"  # awslambdaric's
    in_process = config(tmp_path, body, overlay=IN_PROCESS)
    assert in_process.functions["OrdersFunction"].target == "python:pkg.orders.handle"


def test_globals_function_merges_as_sam_does(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        """
        Globals:
          Function:
            Runtime: python3.12
            CodeUri: src/
            Timeout: 10
            MemorySize: 256
            Environment: {Variables: {STAGE: dev, LEVEL: info}}
        Resources:
          A:
            Type: AWS::Serverless::Function
            Properties:
              Handler: a.handler
              Timeout: 30
              Environment: {Variables: {LEVEL: debug}}
          B:
            Type: AWS::Serverless::Function
            IgnoreGlobals: [Timeout]
            Properties: {Handler: b.handler}
        """,
    )
    a, b = cfg.functions["A"], cfg.functions["B"]
    assert (a.timeout_s, a.memory_mb) == (30, 256)
    assert a.environment.variables == {"STAGE": "dev", "LEVEL": "debug"}
    assert (b.timeout_s, b.memory_mb) == (3, 256)  # Lambda's default Timeout, Globals' memory


def test_event_invoke_config_and_dead_letter_queue_in_sams_shapes(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        fn_with(
            """
            EventInvokeConfig:
              MaximumRetryAttempts: 1
              MaximumEventAgeInSeconds: 600
              DestinationConfig:
                OnSuccess: {Type: SNS, Destination: !Ref Done}
                OnFailure: {Type: Lambda, Destination: !GetAtt Other.Arn}
            DeadLetterQueue: {Type: SQS, TargetArn: !GetAtt Dlq.Arn}
            """,
            """
            Done: {Type: AWS::SNS::Topic}
            Dlq: {Type: AWS::SQS::Queue}
            Other:
              Type: AWS::Serverless::Function
              Properties: {Runtime: python3.12, CodeUri: src/, Handler: app.other}
            """,
        ),
    )
    fn = cfg.functions["orders"]
    eic = fn.event_invoke_config
    assert (eic.maximum_retry_attempts, eic.maximum_event_age_s) == (1, 600)
    assert eic.destination_config.on_success is not None
    assert eic.destination_config.on_success.destination == f"arn:aws:sns:{R}:{A}:Done"
    assert eic.destination_config.on_failure is not None
    assert eic.destination_config.on_failure.destination == (
        f"arn:aws:lambda:{R}:{A}:function:Other"
    )
    assert fn.dead_letter_config is not None
    assert fn.dead_letter_config.target_arn == f"arn:aws:sqs:{R}:{A}:Dlq"


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        (
            "EventInvokeConfig: {DestinationConfig: {OnSuccess: {Type: SNS, Destination: "
            "!GetAtt OrdersQueue.Arn}}}",
            "Resources.Fn.Properties.EventInvokeConfig.DestinationConfig.OnSuccess.Type: is SNS "
            f"but the ARN is '{QUEUE_ARN}'",
        ),
        (
            "EventInvokeConfig: {DestinationConfig: {OnFailure: {Type: Kafka, Destination: x}}}",
            "Resources.Fn.Properties.EventInvokeConfig.DestinationConfig.OnFailure.Type: must be "
            "one of SQS, SNS, Lambda, EventBridge, S3 (got 'Kafka')",
        ),
        (
            "EventInvokeConfig: {DestinationConfig: {OnSuccess: {Type: SQS}}}",
            "Resources.Fn.Properties.EventInvokeConfig.DestinationConfig.OnSuccess.Destination: "
            "required by esm: SAM creates a queue or topic when Destination is left out, esm "
            "does not; declare one in the template and reference it",
        ),
        (
            "DeadLetterQueue: {TargetArn: !GetAtt OrdersQueue.Arn}",
            "Resources.Fn.Properties.DeadLetterQueue.Type: required: one of SQS, SNS",
        ),
        (
            "DeadLetterQueue: {Type: SQS, TargetArn: !Ref OrdersQueue}",
            "Resources.Fn.Properties.DeadLetterQueue.TargetArn: a queue URL (what Ref gives for "
            "AWS::SQS::Queue) where an ARN is needed: use !GetAtt <Queue>.Arn",
        ),
    ],
)
def test_sam_destinations_are_checked(tmp_path: Path, props: str, expected: str) -> None:
    assert problems(tmp_path, fn_with(props)) == [expected]


# -- events → event source mappings ------------------------------------------------------------


def test_an_sqs_event_becomes_a_mapping_with_every_property(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        fn_with(
            """
            Events:
              Orders:
                Type: SQS
                Properties:
                  Queue: !GetAtt OrdersQueue.Arn
                  BatchSize: 50
                  MaximumBatchingWindowInSeconds: 2
                  Enabled: false
                  FunctionResponseTypes: [ReportBatchItemFailures]
                  FilterCriteria:
                    Filters: [{Pattern: '{"body": {"type": ["order"]}}'}]
                  ScalingConfig: {MaximumConcurrency: 20}
                  KmsKeyArn: arn:aws:kms:us-east-1:000000000000:key/k
                  MetricsConfig: {Metrics: [EventCount]}
            """
        ),
    )
    (m,) = cfg.event_source_mappings
    assert (m.function_name, m.event_source_arn, m.source) == ("orders", QUEUE_ARN, "sqs")
    assert (m.batch_size, m.window_s, m.enabled) == (50, 2, False)
    assert m.report_item_failures
    assert m.filter_patterns == ['{"body": {"type": ["order"]}}']
    assert m.maximum_concurrency == 20
    assert m.kms_key_arn == "arn:aws:kms:us-east-1:000000000000:key/k"


def test_kinesis_and_dynamodb_events_become_stream_mappings(tmp_path: Path) -> None:
    t = load(
        tmp_path,
        fn_with(
            """
            Events:
              Clicks:
                Type: Kinesis
                Properties:
                  Stream: !GetAtt Clicks.Arn
                  StartingPosition: AT_TIMESTAMP
                  StartingPositionTimestamp: 1700000000
                  BatchSize: 200
                  MaximumBatchingWindowInSeconds: 1
                  ParallelizationFactor: 4
                  BisectBatchOnFunctionError: true
                  MaximumRetryAttempts: 3
                  MaximumRecordAgeInSeconds: 3600
                  TumblingWindowInSeconds: 60
                  FunctionResponseTypes: [ReportBatchItemFailures]
                  DestinationConfig:
                    OnFailure: {Type: SNS, Destination: !Ref Failures}
              Changes:
                Type: DynamoDB
                Properties:
                  Stream: !GetAtt Table.StreamArn
                  StartingPosition: LATEST
                  Enabled: true
                  FilterCriteria: {Filters: [{Pattern: '{"eventName": ["INSERT"]}'}]}
                  DestinationConfig:
                    OnFailure: {Destination: !GetAtt OrdersQueue.Arn}
            """,
            """
            Clicks:
              Type: AWS::Kinesis::Stream
              Properties: {Name: clicks, ShardCount: 2}
            Failures: {Type: AWS::SNS::Topic}
            Table:
              Type: AWS::DynamoDB::Table
              Properties:
                TableName: orders
                KeySchema: [{AttributeName: id, KeyType: HASH}]
                AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
                StreamSpecification: {StreamViewType: NEW_IMAGE}
            """,
        ),
    )
    kinesis, ddb = t.config.event_source_mappings
    assert kinesis.event_source_arn == f"arn:aws:kinesis:{R}:{A}:stream/clicks"
    assert (kinesis.starting_position, kinesis.starting_position_timestamp) == (
        "AT_TIMESTAMP",
        1700000000,
    )
    assert (kinesis.batch_size, kinesis.window_s, kinesis.parallelization_factor) == (200, 1, 4)
    assert (kinesis.bisect_on_error, kinesis.maximum_retry_attempts) == (True, 3)
    assert (kinesis.maximum_record_age_s, kinesis.tumbling_window_s) == (3600, 60)
    assert kinesis.report_item_failures
    assert kinesis.on_failure_arn == f"arn:aws:sns:{R}:{A}:Failures"
    label = PLACEHOLDER_STREAM_LABEL
    assert ddb.event_source_arn == f"arn:aws:dynamodb:{R}:{A}:table/orders/stream/{label}"
    assert (ddb.source, ddb.starting_position, ddb.batch_size) == ("dynamodb", "LATEST", 100)
    assert ddb.on_failure_arn == QUEUE_ARN
    # --embedded: the emulator's stream ARN replaces the placeholder
    real = f"arn:aws:dynamodb:{R}:{A}:table/orders/stream/2026-01-01T00:00:00.000"
    again = t.with_attributes({("Table", "StreamArn"): real})
    assert again.config.event_source_mappings[1].event_source_arn == real


def test_the_overlay_gives_attributes_esm_cannot_know(tmp_path: Path) -> None:
    real = f"arn:aws:dynamodb:{R}:{A}:table/orders/stream/2026-01-01T00:00:00.000"
    cfg = config(
        tmp_path,
        fn_with(
            """
            Events:
              Changes:
                Type: DynamoDB
                Properties: {Stream: !GetAtt Table.StreamArn, StartingPosition: LATEST}
            Description: !Ref OrdersQueue
            """,
            """
            Table:
              Type: AWS::DynamoDB::Table
              Properties:
                TableName: orders
                KeySchema: [{AttributeName: id, KeyType: HASH}]
                AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
                StreamSpecification: {StreamViewType: NEW_IMAGE}
            """,
        ),
        overlay=f"""
        Attributes:
          Table.StreamArn: {real}
          OrdersQueue: http://localhost:4566/000000000000/orders
        """,
    )
    assert cfg.event_source_mappings[0].event_source_arn == real
    assert cfg.functions["orders"].description == "http://localhost:4566/000000000000/orders"


def test_cloudformation_functions_mappings_and_invoke_configs(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    cfg = config(
        tmp_path,
        """
        Resources:
          Queue: {Type: AWS::SQS::Queue, Properties: {QueueName: work}}
          Fn:
            Type: AWS::Lambda::Function
            Properties:
              FunctionName: worker
              Runtime: python3.12
              Handler: work.handle
              Code: code
              Timeout: 15
              DeadLetterConfig: {TargetArn: !GetAtt Queue.Arn}
          Mapping:
            Type: AWS::Lambda::EventSourceMapping
            Properties:
              FunctionName: !Ref Fn
              EventSourceArn: !GetAtt Queue.Arn
              BatchSize: 7
              KmsKeyArn: arn:aws:kms:us-east-1:000000000000:key/k
              Tags: [{Key: team, Value: orders}]
          Async:
            Type: AWS::Lambda::EventInvokeConfig
            Properties:
              FunctionName: !Ref Fn
              Qualifier: $LATEST
              MaximumRetryAttempts: 0
              DestinationConfig: {OnFailure: {Destination: !GetAtt Queue.Arn}}
        """,
    )
    fn = cfg.functions["worker"]
    assert (fn.runtime, fn.handler, fn.timeout_s) == ("python3.12", "work.handle", 15)
    assert fn.dead_letter_config is not None
    assert fn.dead_letter_config.target_arn == f"arn:aws:sqs:{R}:{A}:work"
    assert fn.event_invoke_config.maximum_retry_attempts == 0
    assert fn.event_invoke_config.destination_config.on_failure is not None
    (m,) = cfg.event_source_mappings
    assert (m.function_name, m.batch_size, m.tags) == ("worker", 7, {"team": "orders"})
    assert m.kms_key_arn == "arn:aws:kms:us-east-1:000000000000:key/k"


def test_a_second_event_invoke_config_for_a_function_is_refused(tmp_path: Path) -> None:
    body = fn_with(
        "EventInvokeConfig: {MaximumRetryAttempts: 1}",
        """
        Async:
          Type: AWS::Lambda::EventInvokeConfig
          Properties: {FunctionName: orders, Qualifier: $LATEST, MaximumRetryAttempts: 0}
        """,
    )
    assert problems(tmp_path, body) == [
        "Resources.Async.Properties: the function has an EventInvokeConfig already "
        "(Resources.Fn.Properties.EventInvokeConfig)"
    ]


# -- queues and the other resources ------------------------------------------------------------


def test_queues_keep_their_properties_and_redrive_policies_for_embedded(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        """
        Resources:
          Orders:
            Type: AWS::SQS::Queue
            Properties:
              VisibilityTimeout: 40
              KmsMasterKeyId: alias/aws/sqs
              RedrivePolicy:
                deadLetterTargetArn: !GetAtt Dlq.Arn
                maxReceiveCount: 3
          Dlq: {Type: AWS::SQS::Queue}
          Fifo:
            Type: AWS::SQS::Queue
            Properties:
              FifoQueue: true
              RedrivePolicy: !Sub '{"deadLetterTargetArn": "${Dlq.Arn}", "maxReceiveCount": 5}'
        """,
    )
    queues = cfg.queue_resources()
    assert set(queues) == {"Orders", "Dlq", "Fifo.fifo"}
    assert queues["Orders"].visibility_timeout_s == 40
    assert queues["Orders"].redrive_policy is not None
    assert queues["Orders"].redrive_policy.dead_letter_target_arn == f"arn:aws:sqs:{R}:{A}:Dlq"
    assert queues["Fifo.fifo"].fifo_queue
    assert queues["Fifo.fifo"].redrive_policy is not None
    assert queues["Fifo.fifo"].redrive_policy.max_receive_count == 5


def test_streams_tables_topics_buckets_and_buses_are_resources_for_embedded(
    tmp_path: Path,
) -> None:
    t = load(
        tmp_path,
        fn_with(
            """
            Description: !Join [" ", [!GetAtt Bucket.Arn, !GetAtt Bus.Arn, !Ref Simple]]
            """,
            """
            Stream: {Type: AWS::Kinesis::Stream, Properties: {ShardCount: 3, Tags: []}}
            Table:
              Type: AWS::DynamoDB::Table
              Properties:
                KeySchema: [{AttributeName: id, KeyType: HASH}]
                AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
            Simple: {Type: AWS::Serverless::SimpleTable}
            Topic:
              Type: AWS::SNS::Topic
              Properties:
                Subscription: [{Protocol: sqs, Endpoint: !GetAtt OrdersQueue.Arn}]
            Sub:
              Type: AWS::SNS::Subscription
              Properties: {TopicArn: !Ref Topic, Protocol: sqs, Endpoint: !GetAtt OrdersQueue.Arn}
            Bucket: {Type: AWS::S3::Bucket}
            Bus: {Type: AWS::Events::EventBus, Properties: {Name: orders-bus}}
            """,
        ),
    )
    by_id = {r.logical_id: r for r in t.resources}
    assert {k: (r.type, r.name) for k, r in by_id.items()} == {
        "Stream": ("AWS::Kinesis::Stream", "Stream"),
        "Table": ("AWS::DynamoDB::Table", "Table"),
        "Simple": ("AWS::Serverless::SimpleTable", "Simple"),
        "Topic": ("AWS::SNS::Topic", "Topic"),
        "Sub": ("AWS::SNS::Subscription", ""),
        "Bucket": ("AWS::S3::Bucket", "bucket"),
        "Bus": ("AWS::Events::EventBus", "orders-bus"),
    }
    assert by_id["Stream"].properties == {"ShardCount": 3}
    assert by_id["Topic"].properties["Subscription"] == [{"Protocol": "sqs", "Endpoint": QUEUE_ARN}]
    assert by_id["Sub"].properties["TopicArn"] == f"arn:aws:sns:{R}:{A}:Topic"
    assert t.config.functions["orders"].description == (
        f"arn:aws:s3:::bucket arn:aws:events:{R}:{A}:event-bus/orders-bus Simple"
    )
    assert "AWS::Kinesis::Stream: Tags" in " ".join(t.warnings)


def test_a_stream_arn_needs_a_stream_specification(tmp_path: Path) -> None:
    body = fn_with(
        """
        Events:
          Changes: {Type: DynamoDB, Properties: {Stream: !GetAtt T.StreamArn, StartingPosition: LATEST}}
        """,
        """
        T:
          Type: AWS::DynamoDB::Table
          Properties:
            KeySchema: [{AttributeName: id, KeyType: HASH}]
            AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
        """,
    )
    assert problems(tmp_path, body) == [
        "Resources.Fn.Properties.Events.Changes.Properties.Stream.Fn::GetAtt: T has no "
        "StreamSpecification, so no StreamArn"
    ]


# -- intrinsic functions -------------------------------------------------------------------------

INTRINSICS_EXTRA = """
Parameters:
  Stage: {Type: String, Default: dev}
  Zones: {Type: CommaDelimitedList, Default: "a,b,c"}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: {"Fn::Not": [{Condition: IsProd}]}
  Both: !And [!Condition IsDev, !Or [!Equals [a, a], !Equals [a, b]]]
Mappings:
  Sizes:
    dev: {Memory: 256}
"""


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("!Ref Stage", "dev"),
        ("{Ref: Stage}", "dev"),
        ("!Ref AWS::Region", R),
        ("!Ref AWS::AccountId", A),
        ("!Ref AWS::StackName", "esm"),
        ("!Ref AWS::Partition", "aws"),
        ("!Ref OrdersQueue", f"https://sqs.{R}.amazonaws.com/{A}/orders"),
        ("!GetAtt OrdersQueue.Arn", QUEUE_ARN),
        ("!GetAtt [OrdersQueue, QueueName]", "orders"),
        ('{"Fn::GetAtt": [OrdersQueue, Arn]}', QUEUE_ARN),
        ('{"Fn::GetAtt": OrdersQueue.Arn}', QUEUE_ARN),
        ("!GetAtt Fn.Arn", f"arn:aws:lambda:{R}:{A}:function:orders"),
        ("!Ref Fn", "orders"),
        ('!Sub "${AWS::StackName}-${Stage}"', "esm-dev"),
        ('{"Fn::Sub": "q=${OrdersQueue.Arn}"}', f"q={QUEUE_ARN}"),
        ('!Sub "${OrdersQueue}"', f"https://sqs.{R}.amazonaws.com/{A}/orders"),
        ('!Sub "${!Literal} ${AWS::Region}"', f"${{Literal}} {R}"),
        ('!Sub ["${Name}-${Stage}", {Name: !GetAtt OrdersQueue.QueueName}]', "orders-dev"),
        ('!Join ["-", [a, !Ref Stage, 1]]', "a-dev-1"),
        ('{"Fn::Join": [",", !Ref Zones]}', "a,b,c"),
        ("!Select [1, !Ref Zones]", "b"),
        ('!Select ["2", !Split [",", "x,y,z"]]', "z"),
        ("!If [IsProd, big, small]", "small"),
        ("!If [IsDev, !Ref Stage, !Ref AWS::NoValue]", "dev"),
        ("!If [Both, ok, ko]", "ok"),
        ('!Join ["", [!FindInMap [Sizes, !Ref Stage, Memory]]]', "256"),
        ("!Base64 hi", "aGk="),
        ("!ToJsonString {a: [1, !Ref Stage]}", '{"a":[1,"dev"]}'),
    ],
)
def test_intrinsic_functions_short_and_long_forms(
    tmp_path: Path, expression: str, expected: str
) -> None:
    body = INTRINSICS_EXTRA + fn_with(f"Description: {expression}")
    assert config(tmp_path, body).functions["orders"].description == expected


def test_a_property_resolving_to_no_value_is_left_out(tmp_path: Path) -> None:
    body = INTRINSICS_EXTRA + fn_with("Timeout: !If [IsProd, 60, !Ref AWS::NoValue]")
    assert config(tmp_path, body).functions["orders"].timeout_s == 3


def test_resources_whose_condition_is_false_are_not_created(tmp_path: Path) -> None:
    body = INTRINSICS_EXTRA + fn_with(
        "",
        """
        ProdQueue: {Type: AWS::SQS::Queue, Condition: IsProd}
        """,
    )
    assert "ProdQueue" not in config(tmp_path, body).resources


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            "!Ref Nothing",
            "Resources.Fn.Properties.Description.Ref: Ref 'Nothing': no parameter or resource of "
            "that name in the template",
        ),
        (
            "!GetAtt Nothing.Arn",
            "Resources.Fn.Properties.Description.Fn::GetAtt: Fn::GetAtt: no resource 'Nothing' in "
            "the template",
        ),
        (
            "!GetAtt OrdersQueue.Nope",
            "Resources.Fn.Properties.Description.Fn::GetAtt: Fn::GetAtt OrdersQueue.Nope "
            "(AWS::SQS::Queue) is not resolved by esm",
        ),
        (
            '!Sub "${Missing}"',
            "Resources.Fn.Properties.Description.Fn::Sub: Ref 'Missing': no parameter or "
            "resource of that name in the template",
        ),
        (
            "!ImportValue shared-queue",
            "Resources.Fn.Properties.Description.Fn::ImportValue: Fn::ImportValue "
            "'shared-queue': no such export known to esm (give its value with --import-value "
            "shared-queue=… or the overlay's ImportValues) (--strict)",
        ),
    ],
)
def test_unknown_references_are_reported_at_their_path(
    tmp_path: Path, expression: str, expected: str
) -> None:
    assert problems(tmp_path, fn_with(f"Description: {expression}"), strict=True) == [expected]


def test_a_queue_url_where_an_arn_is_needed_is_refused_with_a_hint(tmp_path: Path) -> None:
    body = fn_with("Events: {Q: {Type: SQS, Properties: {Queue: !Ref OrdersQueue}}}")
    assert problems(tmp_path, body) == [
        "Resources.Fn.Properties.Events.Q.Properties.Queue: a queue URL (what Ref gives for "
        "AWS::SQS::Queue) where an ARN is needed: use !GetAtt <Queue>.Arn"
    ]


# -- parameters ------------------------------------------------------------------------------------

PARAMS = """
Parameters:
  Stage: {Type: String, AllowedValues: [dev, prod]}
  Memory: {Type: Number, Default: 256}
"""


def test_parameters_take_defaults_and_overrides(tmp_path: Path) -> None:
    body = PARAMS + fn_with("MemorySize: !Ref Memory\nDescription: !Ref Stage")
    fn = config(tmp_path, body, parameters={"Stage": "prod"}).functions["orders"]
    assert (fn.memory_mb, fn.description) == (256, "prod")
    fn = config(tmp_path, body, overlay="Parameters: {Stage: dev, Memory: 512}").functions["orders"]
    assert (fn.memory_mb, fn.description) == (512, "dev")


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (
            {"strict": True},
            "Parameters.Stage: no Default: give a value with --parameter-overrides Stage=…",
        ),
        (
            {"Stage": "test"},
            "Parameters.Stage: 'test' is not one of AllowedValues ['dev', 'prod']",
        ),
        (
            {"Stage": "dev", "Nope": "1"},
            "Parameters.Nope: a value is given for it, but the template declares none",
        ),
    ],
)
def test_parameter_problems(tmp_path: Path, parameters: dict[str, Any], expected: str) -> None:
    body = PARAMS + fn_with("Description: !Ref Stage")
    if parameters.pop("strict", False):
        assert problems(tmp_path, body, strict=True) == [expected]
    else:
        assert problems(tmp_path, body, parameters=parameters) == [expected]


def test_a_parameter_with_no_value_takes_its_first_allowed_value_or_its_name(
    tmp_path: Path,
) -> None:
    t = load(tmp_path, PARAMS + fn_with("Description: !Ref Stage"))
    assert t.config.functions["orders"].description == "dev"
    assert t.warnings[-1] == (
        "Parameters.Stage: no Default and no value given: esm uses 'dev' (give one with "
        "--parameter-overrides Stage=…)"
    )


# -- overlay and --target --------------------------------------------------------------------------


def test_the_overlay_sets_settings_targets_and_embedded(tmp_path: Path) -> None:
    t = load(
        tmp_path,
        fn_with(
            "Events: {Q: {Type: SQS, Properties: {Queue: !GetAtt OrdersQueue.Arn}}}",
            """
            Node:
              Type: AWS::Serverless::Function
              Properties: {Runtime: nodejs20.x, Handler: index.handler, CodeUri: src/}
            """,
        ),
        overlay="""
        Settings: {Region: eu-west-1, AccountId: "123456789012", ApiPort: 0}
        Functions:
          orders: {Target: "http://localhost:8080/orders", Timeout: 9}
          Node: {Target: "rie://localhost:9000"}
        Embedded:
          SendMessages: [{QueueArn: "arn:aws:sqs:eu-west-1:123456789012:orders", Bodies: [x]}]
        """,
    )
    cfg = t.config
    assert (cfg.settings.region, cfg.settings.account_id, cfg.settings.api_port) == (
        "eu-west-1",
        "123456789012",
        0,
    )
    assert cfg.functions["orders"].target == "http://localhost:8080/orders"
    assert cfg.functions["orders"].timeout_s == 9
    assert cfg.functions["Node"].target == "rie://localhost:9000"
    assert cfg.event_source_mappings[0].event_source_arn == (
        "arn:aws:sqs:eu-west-1:123456789012:orders"
    )
    assert cfg.embedded.send_messages[0].bodies == ["x"]
    assert t.code_paths == ()  # no python: target derived from the template


def test_target_on_the_command_line_wins_over_the_overlay_by_name_or_logical_id(
    tmp_path: Path,
) -> None:
    cfg = config(
        tmp_path,
        BASE,
        overlay="Functions: {orders: {Target: 'http://localhost:1/'}}",
        targets={"Fn": "rie://localhost:9000"},
    )
    assert cfg.functions["orders"].target == "rie://localhost:9000"


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        (
            "Runtime: java21",
            "Resources.Fn.Properties.Runtime: esm runs python3.x, nodejsNN.x, provided.al2 and "
            "provided.al2023 functions in environments (got 'java21')",
        ),
        ("PackageType: Image", "Resources.Fn.Properties.PackageType: a container image function"),
        (
            "CodeUri: s3://bucket/code.zip",
            "Resources.Fn.Properties.CodeUri: code in S3: esm runs code from a local folder",
        ),
        (
            "CodeUri: build/code.zip",
            "Resources.Fn.Properties.CodeUri: code in a .zip file: esm runs code from a local "
            "folder",
        ),
    ],
)
def test_functions_esm_cannot_import_need_a_target(
    tmp_path: Path, props: str, expected: str
) -> None:
    if props.startswith("CodeUri"):
        body = BASE.replace("CodeUri: src/", props)
    else:
        body = BASE.replace("Runtime: python3.12", props)
    body += textwrap.indent(
        "Events:\n  Q: {Type: SQS, Properties: {Queue: !GetAtt OrdersQueue.Arn}}\n", " " * 6
    )
    need = "give it a Target with --target orders=… or in an overlay (e.g. rie://host:port)"
    assert problems(tmp_path, body, strict=True) == [f"{expected}: {need} (--strict)"]
    skipped = load(tmp_path, body)  # without --strict: skipped with its events, one warning
    assert (skipped.config.functions, skipped.config.event_source_mappings) == ({}, [])
    assert skipped.warnings[-1] == (
        f"{expected}: function orders skipped with its events (give a Target with --target "
        "NAME=… or in an overlay, e.g. rie://host:port)"
    )
    assert config(tmp_path, body, targets={"orders": "rie://localhost:9000"}).functions


def test_a_missing_code_folder_and_a_module_imported_from_two_folders_are_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / "other").mkdir()
    body = fn_with(
        "",
        """
        Two:
          Type: AWS::Serverless::Function
          Properties: {Runtime: python3.12, CodeUri: other/, Handler: app.handler}
        Three:
          Type: AWS::Serverless::Function
          Properties: {Runtime: python3.12, CodeUri: missing/, Handler: three.handler}
        """,
    )
    # in environments, each function imports from its own folder: only the missing one fails
    assert problems(tmp_path, body) == [
        f"Resources.Three.Properties.CodeUri: no such folder: {(tmp_path / 'missing').resolve()}",
    ]
    assert problems(tmp_path, body, overlay=IN_PROCESS) == [
        "Resources.Two.Properties.Handler: module 'app' is also imported by orders from "
        f"{(tmp_path / 'src').resolve()}; one process imports a module once: give it a Target "
        "with --target Two=… or in an overlay (e.g. rie://host:port)",
        f"Resources.Three.Properties.CodeUri: no such folder: {(tmp_path / 'missing').resolve()}",
    ]


def test_overrides_for_functions_the_template_does_not_have_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, BASE, targets={"nope": "rie://x:1"})
    assert str(info.value) == (
        "--target: Functions.nope: not a function of the template (FunctionName or logical id)"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, BASE, overlay="Functions: {ordrs: {Target: 'rie://x:1'}}")
    assert str(info.value) == (
        f"{tmp_path / 'overlay.yaml'}: Functions.ordrs: not a function of the template "
        "(FunctionName or logical id)"
    )


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        (
            "Setings: {}",
            "Setings: unknown key (an overlay holds Settings, Functions, Parameters, "
            "IgnoredResources, Attributes, Embedded, ImportValues)",
        ),
        (
            "Settings: {Region: 5, ApiPort: -1}",
            "Settings.ApiPort: must be between 0 and 65535 (got -1)",
        ),
        (
            "Functions: {orders: {Target: 'ftp://x'}}",
            "Functions.orders.Target: must start with "
            "python:, http://, https://, rie:// or lambda: (got 'ftp://x')",
        ),
    ],
)
def test_overlay_problems_name_the_overlay(tmp_path: Path, overlay: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, BASE, overlay=overlay)
    assert f"{tmp_path / 'overlay.yaml'}: {expected}" in str(info.value).splitlines()


def test_a_bad_target_on_the_command_line_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, BASE, targets={"orders": "ftp://x"})
    assert str(info.value).startswith("--target: Functions.orders.Target: must start with")


# -- unsupported and ignored ---------------------------------------------------------------------


def test_a_property_aws_does_not_have_is_a_spelling_error_one_it_has_is_skipped(
    tmp_path: Path,
) -> None:
    body = fn_with(
        """
        Tracing: Active
        SomethingNew: 1
        TenancyConfig: {TenantIsolationMode: PER_TENANT}
        DurableConfig: {ExecutionTimeout: 900}
        Events:
          Q:
            Type: SQS
            Properties:
              Queue: !GetAtt OrdersQueue.Arn
              Foo: bar
              ProvisionedPollerConfig: {MinimumPollers: 2}
        """,
        """
        Mapping:
          Type: AWS::Lambda::EventSourceMapping
          Properties:
            FunctionName: orders
            EventSourceArn: !GetAtt Other.Arn
            Topics: [t]
            BatchSise: 5
        Other: {Type: AWS::SQS::Queue}
        """,
    )
    assert problems(tmp_path, body) == [
        "Resources.Fn.Properties.SomethingNew: not a property of AWS::Serverless::Function "
        "(check the spelling)",
        "Resources.Fn.Properties.Events.Q.Properties.Foo: not a property of SQS (check the "
        "spelling)",
        "Resources.Mapping.Properties.BatchSise: not a property of "
        "AWS::Lambda::EventSourceMapping (check the spelling)",
    ]
    body = body.replace("SomethingNew: 1", "").replace("Foo: bar", "").replace("BatchSise: 5", "")
    t = load(tmp_path, body)
    assert [m.function_name for m in t.config.event_source_mappings] == ["orders", "orders"]
    assert t.warnings == (
        "ignored properties (no effect outside AWS): AWS::Serverless::Function: Tracing",
        "Resources.Fn.Properties.TenancyConfig: supported by AWS, not by esm: skipped",
        "Resources.Fn.Properties.DurableConfig: supported by AWS, not by esm: skipped",
        "Resources.Fn.Properties.Events.Q.Properties.ProvisionedPollerConfig: supported by AWS, "
        "not by esm: skipped",
        "Resources.Mapping.Properties.Topics: supported by AWS, not by esm: skipped",
    )
    assert problems(tmp_path, body, strict=True) == [
        "Resources.Fn.Properties.TenancyConfig: supported by AWS, not by esm (--strict)",
        "Resources.Fn.Properties.DurableConfig: supported by AWS, not by esm (--strict)",
        "Resources.Fn.Properties.Events.Q.Properties.ProvisionedPollerConfig: supported by AWS, "
        "not by esm (--strict)",
        "Resources.Mapping.Properties.Topics: supported by AWS, not by esm (--strict)",
    ]


def test_event_and_resource_types_esm_does_not_run_are_skipped_once_or_refused_when_strict(
    tmp_path: Path,
) -> None:
    body = fn_with(
        """
        Environment:
          Variables:
            API: !Sub "https://${Api}.execute-api.${AWS::Region}.amazonaws.com"
            QUEUE_URL: !Ref OrdersQueue
        Events:
          Http: {Type: HttpApi, Properties: {ApiId: !Ref Api}}
          Nightly: {Type: Schedule, Properties: {Schedule: rate(1 day)}}
          Q: {Type: SQS, Properties: {Queue: !GetAtt OrdersQueue.Arn}}
        """,
        """
        Api: {Type: AWS::Serverless::HttpApi}
        Schedule: {Type: AWS::Scheduler::Schedule, Properties: {ScheduleExpression: rate(1 day)}}
        Ledger: {Type: AWS::QLDB::Stream, Description: the ledger's stream}
        Logs: {Type: AWS::Logs::LogGroup}
        Role1: {Type: AWS::IAM::Role}
        Role2: {Type: AWS::IAM::Role}
        """,
    )
    body += textwrap.dedent(
        """
        Outputs:
          QueueUrl: {Value: !Ref OrdersQueue}
          ApiUrl: {Value: !Sub "https://${Api}.execute-api.amazonaws.com"}
          LedgerStream: {Value: !GetAtt Ledger.Arn}
          RoleArn: {Value: !GetAtt FnRole.Arn}
        """
    )
    t = load(tmp_path, body)
    assert [m.event_source_arn for m in t.config.event_source_mappings] == [QUEUE_ARN]
    assert dict(t.config.functions["orders"].environment.variables) == {
        "QUEUE_URL": f"https://sqs.{R}.amazonaws.com/{A}/orders"
    }
    assert t.outputs == {"QueueUrl": f"https://sqs.{R}.amazonaws.com/{A}/orders"}
    assert t.warnings == (
        "ignored resource types (esm does not need them): AWS::IAM::Role (2), AWS::Logs::LogGroup",
        "Resources.Fn.Properties.Environment.Variables.API.Fn::Sub: Ref Api: esm does not run "
        "AWS::Serverless::HttpApi: skipped",
        "Resources.Fn.Properties.Events.Http: event type HttpApi: esm runs SQS, Kinesis and "
        "DynamoDB event source mappings: skipped",
        "Resources.Fn.Properties.Events.Nightly: event type Schedule: esm runs SQS, Kinesis and "
        "DynamoDB event source mappings: skipped",
        "Resources.Api: AWS::Serverless::HttpApi: esm does not run it: skipped",
        "Resources.Schedule: AWS::Scheduler::Schedule: esm does not run it: skipped",
        "Resources.Ledger.Description: a description, of no effect on how esm runs: skipped",
        "Resources.Ledger: AWS::QLDB::Stream: esm does not run it: skipped",
        "Outputs.ApiUrl.Value.Fn::Sub: Ref Api: esm does not run AWS::Serverless::HttpApi: skipped",
        "Outputs.LedgerStream.Value.Fn::GetAtt: Fn::GetAtt Ledger.Arn: esm does not run "
        "AWS::QLDB::Stream: skipped",
        "Outputs.RoleArn.Value.Fn::GetAtt: Fn::GetAtt: no resource 'FnRole' in the template: "
        "skipped",
    )
    strict = problems(tmp_path, body, strict=True)
    assert strict[:2] == [
        "Resources.Fn.Properties.Environment.Variables.API.Fn::Sub: Ref Api: esm does not run "
        "AWS::Serverless::HttpApi (--strict)",
        "Resources.Fn.Properties.Events.Http: event type HttpApi: esm runs SQS, Kinesis and "
        "DynamoDB event source mappings (--strict)",
    ]
    assert len(strict) == 10
    typo = body.replace("Type: Schedule,", "Type: Shedule,")
    assert problems(tmp_path, typo) == [
        "Resources.Fn.Properties.Events.Nightly.Type: 'Shedule' is not a SAM event type (check the "
        "spelling)"
    ]
    # IgnoredResources leaves things out without a warning of their own
    t = load(tmp_path, body, overlay="IgnoredResources: ['AWS::Scheduler::*', Fn.Events.Nightly]")
    assert "left out by IgnoredResources: Fn.Events.Nightly, Schedule" in t.warnings


def test_import_value_takes_the_value_given_on_the_command_line_or_in_the_overlay(
    tmp_path: Path,
) -> None:
    body = fn_with(
        """
        Environment: {Variables: {SHARED: !ImportValue shared-queue-url}}
        Events:
          Q: {Type: SQS, Properties: {Queue: !ImportValue shared-queue-arn}}
        """
    )
    t = load(tmp_path, body)
    assert (t.config.event_source_mappings, t.config.functions["orders"].environment.variables) == (
        [],
        {},
    )
    assert t.warnings[-1].startswith(
        "Resources.Fn.Properties.Events.Q.Properties.Queue.Fn::ImportValue: Fn::ImportValue "
        "'shared-queue-arn': no such export known to esm"
    )
    shared = f"arn:aws:sqs:{R}:{A}:shared"
    t = load(
        tmp_path,
        body,
        imports={"shared-queue-arn": shared},
        overlay="ImportValues: {shared-queue-url: http://localhost:4566/shared}",
    )
    assert [m.event_source_arn for m in t.config.event_source_mappings] == [shared]
    assert t.config.functions["orders"].environment.variables == {
        "SHARED": "http://localhost:4566/shared"
    }


def test_problems_of_the_translated_config_point_at_the_template(tmp_path: Path) -> None:
    body = fn_with(
        """
        Events:
          Q:
            Type: SQS
            Properties: {Queue: !GetAtt Fifo.Arn, BatchSize: 20, StartingPosition: LATEST}
        """,
        """
        Fifo: {Type: AWS::SQS::Queue, Properties: {FifoQueue: true}}
        """,
    )
    assert problems(tmp_path, body) == [
        "Resources.Fn.Properties.Events.Q.Properties.StartingPosition: not supported for SQS "
        "event sources (streams only)",
        "Resources.Fn.Properties.Events.Q.Properties.BatchSize: must be at most 10 for FIFO "
        "queues (got 20)",
    ]
    body = body.replace("Resources:", "Globals: {Function: {MemorySize: 64}}\nResources:")
    assert problems(tmp_path, body) == [
        "Globals.Function.MemorySize: must be between 128 and 10240 (got 64)"
    ]


def test_template_level_problems(tmp_path: Path) -> None:
    body = BASE + "Outputs: {}\nTransform2: x\n"
    assert problems(tmp_path, body.replace("Resources:", "Foo: 1\nResources:")) == [
        "Foo: not supported by esm (not a template section)",
        "Transform2: not supported by esm (not a template section)",
    ]
    (tmp_path / "bad.yaml").write_text("Transform: MyMacro\nResources: {}\n")
    with pytest.raises(ConfigError) as info:
        load_template(tmp_path / "bad.yaml")
    assert str(info.value).splitlines() == [
        f"{tmp_path / 'bad.yaml'}: Transform: not supported by esm (esm reads "
        "AWS::LanguageExtensions and AWS::Serverless-2016-10-31)",
        f"{tmp_path / 'bad.yaml'}: Resources: required: a template declares at least one resource",
    ]


# -- the command line ----------------------------------------------------------------------------


def test_esm_validate_template_prints_ok_and_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, fn_with("Tracing: Active"))
    assert main(["validate", "--template", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK (1 function(s), 0 mapping(s), 0 enabled)\n"
    assert err == (
        f"{path}: warning: ignored properties (no effect outside AWS): "
        "AWS::Serverless::Function: Tracing\n"
    )


def test_esm_validate_template_exits_1_with_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, fn_with("Timeout: 0\nFoo: 1"))
    assert main(["validate", "--template", str(path), "--stack-name", "s"]) == 1
    assert capsys.readouterr().err == (
        f"{path}: Resources.Fn.Properties.Foo: not a property of AWS::Serverless::Function "
        "(check the spelling)\n"
    )
    path = write(tmp_path, fn_with("Timeout: 0"))
    assert main(["validate", "--template", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"{path}: Resources.Fn.Properties.Timeout: must be between 1 and 900 (got 0)\n"
    )


def test_esm_validate_template_takes_targets_parameters_and_overlays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, PARAMS + fn_with("Description: !Ref Stage"))
    (tmp_path / "overlay.yaml").write_text("Settings: {Region: eu-west-1}\n")
    args = ["validate", "--template", str(path), "--overlay", str(tmp_path / "overlay.yaml")]
    assert main([*args, "--parameter-overrides", "Stage=dev", "--target", "orders=rie://x:1"]) == 0
    assert main([*args, "--parameter-overrides", "Stage"]) == 1
    assert "--parameter-overrides: expected NAME=VALUE (got 'Stage')" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["validate"],
        ["validate", "esm.yaml", "--template", "t.yaml"],
        ["validate", "esm.yaml", "--target", "a=rie://x:1"],
        ["run", "esm.yaml", "--overlay", "o.yaml"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert "esm" in capsys.readouterr().err


def test_the_sam_example_validates(capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "sam"
    assert main(["validate", "--template", str(example / "template.yaml")]) == 0
    assert "OK (3 function(s), 2 mapping(s), 2 enabled)" in capsys.readouterr().out
    overlay = ["--overlay", str(example / "overlay.yaml")]
    assert main(["validate", "--template", str(example / "template.yaml"), *overlay]) == 0


def test_json_templates_and_the_stack_name(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "template.json").write_text(
        """{
          "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue",
                      "Properties": {"QueueName": {"Fn::Sub": "${AWS::StackName}-q"}}},
            "Fn": {"Type": "AWS::Serverless::Function",
                   "Properties": {"Runtime": "python3.12", "CodeUri": "src", "Handler": "a.h",
                                  "Events": {"Q": {"Type": "SQS", "Properties": {
                                    "Queue": {"Fn::GetAtt": ["Queue", "Arn"]}}}}}}
          }
        }"""
    )
    t = load_template(tmp_path / "template.json", TemplateOptions(stack_name="shop"))
    assert t.config.event_source_mappings[0].event_source_arn == f"arn:aws:sqs:{R}:{A}:shop-q"
    assert set(t.config.resources) == {"Queue"}


# -- names and bounds -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", "a/b", "my.fn", "x" * 65])
def test_a_function_name_property_follows_lambdas_rule(tmp_path: Path, name: str) -> None:
    body = BASE.replace("FunctionName: orders", f"FunctionName: '{name}'")
    assert problems(tmp_path, body) == [
        "Resources.Fn.Properties.FunctionName: a function name is 1 to 64 characters of a-z, "
        f"A-Z, 0-9, - and _ (Lambda's) (got {name!r})"
    ]


def test_a_function_named_by_a_long_logical_id_is_refused(tmp_path: Path) -> None:
    logical = "F" * 65
    body = BASE.replace("  Fn:", f"  {logical}:").replace("      FunctionName: orders\n", "")
    assert problems(tmp_path, body) == [
        f"Resources.{logical}: a function name is 1 to 64 characters of a-z, A-Z, 0-9, - and _ "
        f"(Lambda's) (got {logical!r}), from the logical id"
    ]


@pytest.mark.parametrize("logical", ["My-Queue", "../x", "a.b", "Q" * 256])
def test_logical_ids_are_alphanumeric_as_cloudformation_requires(
    tmp_path: Path, logical: str
) -> None:
    body = BASE + f"  '{logical}':\n    Type: AWS::SQS::Queue\n"
    assert problems(tmp_path, body) == [
        f"Resources[{shown(logical)}]: a logical id is 1 to 255 letters and digits (A-Za-z0-9), as "
        "CloudFormation requires"
    ]


def test_overlay_and_target_names_follow_lambdas_rule(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, BASE, targets={"../x": "python:a.b"})
    assert str(info.value).startswith("--target: Functions['../x']: a function name is 1 to 64")


def test_names_built_by_doubling_subs_stop_at_the_string_limit(tmp_path: Path) -> None:
    """Each topic's name is twice the one before: 2^n characters, and without memoized names
    2^n evaluations; refused at the first name over a megabyte, at once."""
    body = "Resources:\n  T0:\n    Type: AWS::SNS::Topic\n    Properties: {TopicName: ab}\n"
    for i in range(1, 40):
        body += (
            f"  T{i}:\n    Type: AWS::SNS::Topic\n    Properties:\n"
            f"      TopicName: !Sub '${{T{i - 1}.TopicName}}${{T{i - 1}.TopicName}}'\n"
        )
    found = problems(tmp_path, body)
    assert found[0] == (
        "Resources.T20.Properties.TopicName.Fn::Sub: the result would be longer than 1,048,576 "
        "characters (esm's limit)"
    )


def test_a_join_of_aliases_stops_at_the_string_limit(tmp_path: Path) -> None:
    body = BASE + (
        "  Topic:\n    Type: AWS::SNS::Topic\n    Properties:\n"
        f"      TopicName: !Join ['', [&s {'x' * 100_000}{', *s' * 20}]]\n"
    )
    assert problems(tmp_path, body) == [
        "Resources.Topic.Properties.TopicName.Fn::Join: the result would be longer than "
        "1,048,576 characters (esm's limit)"
    ]


def test_names_and_conditions_nested_deeper_than_the_limit_are_refused(tmp_path: Path) -> None:
    """T59's name refers to T58's … to T0's, and T0's condition to C0, C1 … C60: without a
    bound each level costs Python frames until RecursionError."""
    body = "Conditions:\n" + "".join(f"  C{i}: {{Condition: C{i + 1}}}\n" for i in range(60))
    body += "  C60: !Equals [a, a]\nResources:\n"
    for i in reversed(range(1, 60)):
        body += (
            f"  T{i}:\n    Type: AWS::SNS::Topic\n    Properties:\n"
            f"      TopicName: !Sub '${{T{i - 1}.TopicName}}x'\n"
        )
    body += "  T0:\n    Type: AWS::SNS::Topic\n    Condition: C0\n"
    found = problems(tmp_path, body)
    rule = "refers through more than 40 names or conditions, one inside another (esm's limit)"
    assert found[0] == f"Resources.T18: {rule}"  # T59 resolves its own name, then 40 more
    assert all(rule in line or "is left out" in line for line in found)


def test_an_allowed_pattern_that_is_no_regular_expression_is_a_problem(tmp_path: Path) -> None:
    body = BASE + ("Parameters:\n  Stage: {Type: String, Default: dev, AllowedPattern: '([a-z'}\n")
    body = body.replace("FunctionName: orders", "FunctionName: !Ref Stage")
    assert problems(tmp_path, body) == [
        "Parameters.Stage: AllowedPattern is not a regular expression: unterminated character "
        "set at position 1"
    ]


def test_unhashable_values_where_names_belong_are_problems(tmp_path: Path) -> None:
    body = fn_with("Events:\n  Q: {Type: {a: b}, Properties: {Queue: x}}\n")
    assert problems(tmp_path, body) == [
        "Resources.Fn.Properties.Events.Q.Type: required: an event type (got {'a': 'b'})",
    ]
    path = tmp_path / "transform.yaml"
    path.write_text("Transform: [[a]]\n" + textwrap.dedent(BASE))
    with pytest.raises(ConfigError) as info:
        load_template(path)
    assert str(info.value) == (
        f"{path}: Transform[0]: not supported by esm (esm reads AWS::LanguageExtensions and "
        "AWS::Serverless-2016-10-31)"
    )


# -- layers --------------------------------------------------------------------------------------

LAYERED = """
Resources:
  Shared:
    Type: AWS::Serverless::LayerVersion
    Properties: {LayerName: shared, ContentUri: layer/, CompatibleRuntimes: [python3.12]}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: orders
      Runtime: python3.12
      CodeUri: src/
      Handler: app.handler
      Layers:
        - !Ref Shared
        - arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3:7
"""


def write_layer(tmp_path: Path) -> Path:
    site = tmp_path / "layer" / "python" / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    (tmp_path / "layer" / "python" / "greeting.py").write_text("WORD = 'hello'\n")
    (site / "vendored.py").write_text("NAME = 'vendored'\n")
    node = tmp_path / "layer" / "nodejs" / "node_modules"
    node.mkdir(parents=True)
    return tmp_path / "layer"


def test_a_local_layer_is_on_the_functions_paths_and_a_layer_by_arn_is_skipped(
    tmp_path: Path,
) -> None:
    layer = write_layer(tmp_path)
    t = load(tmp_path, LAYERED)
    assert t.config.functions["orders"].layers == [str(layer.resolve())]
    assert t.warnings[-1] == (
        "Resources.Fn.Properties.Layers[1]: layer 'arn:aws:lambda:us-east-1:017000801446:layer:"
        "AWSLambdaPowertoolsPythonV3:7': esm mounts layers of the template: skipped"
    )
    assert problems(tmp_path, LAYERED, strict=True)[0].endswith("of the template (--strict)")
    # in process, the layer's python folders follow the code folder on sys.path
    t = load(tmp_path, LAYERED, overlay="Settings: {TemplatePythonFunctions: InProcess}")
    assert t.code_paths == (
        (tmp_path / "src").resolve(),
        (layer / "python").resolve(),
        (layer / "python" / "lib" / "python3.12" / "site-packages").resolve(),
    )


def test_a_layer_in_process_is_importable_by_the_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_layer(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "layered_app.py").write_text(
        "import greeting, vendored\n"
        "def handler(event, context):\n"
        "    return greeting.WORD + ' ' + vendored.NAME\n"
    )
    body = LAYERED.replace("app.handler", "layered_app.handler")
    t = load(tmp_path, body, overlay="Settings: {TemplatePythonFunctions: InProcess}")
    for folder in reversed(t.code_paths):
        monkeypatch.syspath_prepend(str(folder))
    import importlib

    try:
        module = importlib.import_module("layered_app")
        assert module.handler({}, None) == "hello vendored"
    finally:
        for name in ("layered_app", "greeting", "vendored"):
            sys.modules.pop(name, None)
    assert t.config.functions["orders"].target == "python:layered_app.handler"


def test_a_missing_layer_folder_is_an_error(tmp_path: Path) -> None:
    assert problems(tmp_path, LAYERED) == [
        f"Resources.Shared.Properties.ContentUri: no such folder: {(tmp_path / 'layer').resolve()}"
    ]


def test_layers_reach_an_environments_import_paths(tmp_path: Path) -> None:
    from esm.environments import Spec, lambda_environment

    layer = write_layer(tmp_path)
    spec = Spec(
        name="orders",
        arn="arn:aws:lambda:us-east-1:000000000000:function:orders",
        runtime="python3.12",
        handler="app.handler",
        code_dir=tmp_path / "src",
        memory_mb=128,
        timeout_s=3,
        region=R,
        layers=(layer,),
    )
    env = lambda_environment(
        spec, runtime_api="127.0.0.1:1", log_stream="s", runtime_dir="/r", host={}
    )
    site = layer / "python" / "lib" / "python3.12" / "site-packages"
    assert env["PYTHONPATH"] == f"{tmp_path / 'src'}:{layer / 'python'}:{site}"
    assert "NODE_PATH" not in env  # as on Lambda: NODE_PATH is the Node runtimes' own
    node = lambda_environment(
        dataclasses.replace(spec, runtime="nodejs20.x"),
        runtime_api="127.0.0.1:1",
        log_stream="s",
        runtime_dir="/r",
        host={},
    )
    assert node["NODE_PATH"] == f"{layer / 'nodejs' / 'node_modules'}:{tmp_path / 'src'}"


# -- the command line: templates given where esm.yaml goes ----------------------------------------


@pytest.mark.parametrize("name", ["template.yaml", "template.yml", "app.json"])
def test_validate_and_run_recognise_a_template_given_positionally(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, fn_with("Tracing: Active"), name=name)
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: OK (1 function(s), 0 mapping(s), 0 enabled)\n"


def test_a_template_without_a_header_is_recognised_by_its_resources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "src").mkdir()
    path = tmp_path / "stack.yaml"
    path.write_text(textwrap.dedent(BASE))
    assert main(["validate", str(path)]) == 0
    assert "OK (1 function(s)" in capsys.readouterr().out
    # an esm.yaml with Resources (queues for --embedded) stays an esm.yaml
    path.write_text(
        "Functions: {orders: {Target: 'python:app.handler'}}\n"
        "Resources: {Q: {Type: 'AWS::SQS::Queue', Properties: {QueueName: q}}}\n"
    )
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: OK (1 function(s), 0 mapping(s), 0 enabled)\n"


@pytest.mark.parametrize("name", ["template.yaml", "template.yml"])
def test_with_no_file_validate_reads_the_template_of_the_current_folder(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, fn_with(""), name=name)
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 0
    assert capsys.readouterr().out == f"{name}: OK (1 function(s), 0 mapping(s), 0 enabled)\n"


def test_strict_and_import_value_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        fn_with(
            """
            Events:
              Api: {Type: Api, Properties: {Path: /, Method: get}}
              Q: {Type: SQS, Properties: {Queue: !ImportValue orders-queue-arn}}
            """
        ),
    )
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK (1 function(s), 0 mapping(s), 0 enabled)\n"
    assert err.count("Events.Api: event type Api") == 1
    assert main(["validate", str(path), "--import-value", f"orders-queue-arn={QUEUE_ARN}"]) == 0
    assert "1 mapping(s)" in capsys.readouterr().out
    assert main(["validate", str(path), "--strict", "--import-value", f"x={QUEUE_ARN}"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{path}: Resources.Fn.Properties.Events.Api: event type Api: esm runs SQS, Kinesis and "
        "DynamoDB event source mappings (--strict)",
        f"{path}: Resources.Fn.Properties.Events.Q.Properties.Queue.Fn::ImportValue: "
        "Fn::ImportValue 'orders-queue-arn': no such export known to esm (give its value with "
        "--import-value orders-queue-arn=… or the overlay's ImportValues) (--strict)",
    ]


CIDR = '{"body": {"ip": [{"cidr": "10.0.0.0/24"}]}}'
CIDR_WARNING = (
    "'cidr' is not among the operators Lambda documents for event filtering (AWS may refuse or "
    "ignore it); esm matches it as EventBridge does: a string holding an IP address inside the "
    "block"
)


def test_a_cidr_filter_is_run_with_a_warning_in_templates_and_esm_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = fn_with(
        f"""
        Events:
          Q:
            Type: SQS
            Properties:
              Queue: !GetAtt OrdersQueue.Arn
              FilterCriteria: {{Filters: [{{Pattern: '{CIDR}'}}]}}
        """
    )
    t = load(tmp_path, body)
    assert t.warnings[-1] == (
        "Resources.Fn.Properties.Events.Q.Properties.FilterCriteria.Filters[0].Pattern: "
        + CIDR_WARNING
    )
    esm_yaml = tmp_path / "esm.yaml"
    esm_yaml.write_text(
        "Functions: {orders: {Target: 'python:app.handler'}}\n"
        "EventSourceMappings:\n"
        f"  - {{FunctionName: orders, EventSourceArn: '{QUEUE_ARN}',\n"
        f"     FilterCriteria: {{Filters: [{{Pattern: '{CIDR}'}}]}}}}\n"
    )
    assert main(["validate", str(esm_yaml)]) == 0
    assert capsys.readouterr().err == (
        f"{esm_yaml}: warning: EventSourceMappings[0].FilterCriteria.Filters[0].Pattern: "
        f"{CIDR_WARNING}\n"
    )


def test_inline_code_is_written_where_lambda_puts_it_and_imported_from_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = "def handler(event, context):\n    return {'inline': event}\n"
    body = BASE.replace("CodeUri: src/", f"InlineCode: {json.dumps(code)}").replace(
        "app.handler", "index.handler"
    )
    t = load(tmp_path, body)
    folder = Path(t.config.functions["orders"].code_uri or "")
    assert (folder / "index.py").read_text() == code
    assert load(tmp_path, body).config.functions["orders"].code_uri == str(folder)  # same code
    node = body.replace("python3.12", "nodejs20.x")
    node_folder = Path(load(tmp_path, node).config.functions["orders"].code_uri or "")
    assert (node_folder / "index.js").read_text() == code  # as Lambda names Node.js inline code
    cfn = textwrap.dedent(
        f"""
        Resources:
          Fn:
            Type: AWS::Lambda::Function
            Properties:
              Runtime: python3.12
              Handler: index.handler
              Code: {{ZipFile: {json.dumps(code)}}}
        """
    )
    t = load(tmp_path, cfn, overlay="Settings: {TemplatePythonFunctions: InProcess}")
    assert t.config.functions["Fn"].target == "python:index.handler"
    monkeypatch.syspath_prepend(str(t.code_paths[0]))
    monkeypatch.delitem(sys.modules, "index", raising=False)
    import importlib

    try:
        assert importlib.import_module("index").handler(1, None) == {"inline": 1}
    finally:
        sys.modules.pop("index", None)


def test_a_kinesis_event_through_a_fan_out_consumer_reads_the_consumers_stream(
    tmp_path: Path,
) -> None:
    body = fn_with(
        """
        Events:
          S:
            Type: Kinesis
            Properties: {Stream: !GetAtt Fanout.ConsumerARN, StartingPosition: LATEST}
        """,
        """
        Clicks: {Type: AWS::Kinesis::Stream, Properties: {Name: clicks, ShardCount: 1}}
        Fanout:
          Type: AWS::Kinesis::StreamConsumer
          Properties: {StreamARN: !GetAtt Clicks.Arn, ConsumerName: fanout}
        """,
    )
    t = load(tmp_path, body)
    assert [m.event_source_arn for m in t.config.event_source_mappings] == [
        f"arn:aws:kinesis:{R}:{A}:stream/clicks"
    ]
    assert (
        "Resources.Fn.Properties.Events.S.Properties.Stream: enhanced fan-out through Fanout: esm "
        "reads its stream with GetRecords (shared throughput) instead; the consumer is: skipped"
    ) in t.warnings
    assert len(problems(tmp_path, body, strict=True)) == 2  # the consumer, and reading through it


def test_esm_yaml_layers_of_in_process_functions_go_on_sys_path(tmp_path: Path) -> None:
    from esm.cli import _layer_paths
    from esm.config import parse_config

    layer = write_layer(tmp_path)
    config = parse_config(
        {
            "Functions": {
                "inproc": {"Target": "python:app.handler", "Layers": [str(layer)]},
                "remote": {"Target": "http://127.0.0.1:9/x", "Layers": [str(layer)]},
            }
        }
    )
    site = layer / "python" / "lib" / "python3.12" / "site-packages"
    assert _layer_paths(config) == [(layer / "python").resolve(), site.resolve()]
