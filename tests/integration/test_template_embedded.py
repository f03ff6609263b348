"""``esm run --template examples/sam/template.yaml --embedded`` as users run it: a subprocess
that creates the SAM app's queues, table and topic in moto and runs its three functions."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from esm.aws import AwsClients
from esm.embedded import provision, provision_template
from esm.errors import ConfigError
from esm.templates import load_template
from tests.daemon import Daemon
from tests.support import eventually, unique

pytestmark = pytest.mark.integration

REGION = "us-east-1"
# esm's API on a free port, the async queue in memory
OVERLAY = """
Settings: {Region: us-east-1, AccountId: "000000000000", ApiPort: 0, Store: "memory://"}
"""


def logged(d: Daemon, pattern: str) -> str:
    found = re.search(pattern, d.output)
    assert found is not None, d.output
    return found.group(1)


async def test_the_sam_example_runs_embedded(
    tmp_path: Path, daemons: list[Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    (tmp_path / "overlay.yaml").write_text(OVERLAY)
    d = Daemon(
        [
            "run",
            "--template",
            "examples/sam/template.yaml",
            "--overlay",
            str(tmp_path / "overlay.yaml"),
            "--embedded",
        ]
    )
    daemons.append(d)
    await eventually(lambda: d.has("Lambda API at "), timeout=30, what=d.output)
    assert d.has("ignored resource types (esm does not need them): AWS::Logs::LogGroup")
    emulator = AwsClients(endpoint_url=logged(d, r"embedded AWS emulator \(moto\) at (\S+)"))
    api = AwsClients(endpoint_url=logged(d, r"Lambda API at (\S+)"))
    try:
        # messages sent to the template's queue reach ProcessOrderFunction; the poison one is
        # reported and, after two receives, moved to the dead-letter queue by the redrive policy
        sqs = await emulator.client("sqs", REGION)
        orders = (await sqs.get_queue_url(QueueName="esm-orders"))["QueueUrl"]
        for body in ({"id": "1", "item": "tea"}, {"id": "2", "poison": True}):
            await sqs.send_message(QueueUrl=orders, MessageBody=json.dumps(body))
        await eventually(lambda: d.has("processed order 1 (tea)"), timeout=15, what=d.output)
        await eventually(lambda: d.has("order 2 is poison"), timeout=15, what=d.output)

        # a write to the template's table reaches AuditFunction through the table's stream
        ddb = await emulator.client("dynamodb", REGION)
        await ddb.put_item(TableName="esm-orders", Item={"id": {"S": "42"}})
        await eventually(lambda: d.has("audit INSERT {'id': '42'}"), timeout=15, what=d.output)

        # an asynchronous Invoke runs NotifyFunction; its OnSuccess record goes to the topic,
        # which the notifications queue is subscribed to
        lam = await api.client("lambda", REGION)
        resp = await lam.invoke(
            FunctionName="esm-notify", InvocationType="Event", Payload=json.dumps({"to": "ann"})
        )
        assert resp["StatusCode"] == 202
        await eventually(lambda: d.has("notified ann"), timeout=15, what=d.output)
        notifications = (await sqs.get_queue_url(QueueName="esm-notifications"))["QueueUrl"]

        async def success_record() -> dict[str, object] | None:
            got = await sqs.receive_message(QueueUrl=notifications, WaitTimeSeconds=1)
            for message in got.get("Messages", []):
                return dict(json.loads(json.loads(message["Body"])["Message"]))
            return None

        record = await eventually(success_record, timeout=15, what="the OnSuccess record")
        assert record["responsePayload"] == {"notified": "ann"}
        assert record["requestPayload"] == {"to": "ann"}

        dlq = (await sqs.get_queue_url(QueueName="esm-orders-dlq"))["QueueUrl"]

        async def in_dlq() -> bool:
            got = await sqs.get_queue_attributes(
                QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"]
            )
            return got["Attributes"]["ApproximateNumberOfMessages"] == "1"

        await eventually(in_dlq, timeout=20, interval=0.5, what="the poison order in the DLQ")
    finally:
        await emulator.aclose()
        await api.aclose()
    assert d.stop(signal.SIGINT) == 0
    assert d.has("engine stopped")
    assert "processed order 2" not in d.output


TEMPLATE = """
Resources:
  Queue: {{Type: AWS::SQS::Queue, Properties: {{QueueName: {p}-q}}}}
  Stream: {{Type: AWS::Kinesis::Stream, Properties: {{Name: {p}-s, ShardCount: 2}}}}
  OnDemand:
    Type: AWS::Kinesis::Stream
    Properties: {{Name: {p}-od, StreamModeDetails: {{StreamMode: ON_DEMAND}}}}
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: {p}-t
      KeySchema: [{{AttributeName: id, KeyType: HASH}}]
      AttributeDefinitions: [{{AttributeName: id, AttributeType: S}}]
      ProvisionedThroughput: {{ReadCapacityUnits: 5, WriteCapacityUnits: "5"}}
      StreamSpecification: {{StreamViewType: KEYS_ONLY}}
      TimeToLiveSpecification: {{Enabled: true, AttributeName: ttl}}
  Simple:
    Type: AWS::Serverless::SimpleTable
    Properties: {{TableName: {p}-simple, PrimaryKey: {{Name: pk, Type: Number}}}}
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: {p}-topic
      Subscription: [{{Protocol: sqs, Endpoint: !GetAtt Queue.Arn}}]
  Bucket: {{Type: AWS::S3::Bucket, Properties: {{BucketName: {p}-bucket}}}}
  Bus: {{Type: AWS::Events::EventBus, Properties: {{Name: {p}-bus}}}}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      Events:
        Changes:
          Type: DynamoDB
          Properties: {{Stream: !GetAtt Table.StreamArn, StartingPosition: LATEST}}
"""


async def test_provision_template_creates_every_resource_type(
    tmp_path: Path, aws: AwsClients
) -> None:
    prefix = unique("tpl")
    (tmp_path / "template.yaml").write_text(TEMPLATE.format(p=prefix))
    template = load_template(tmp_path / "template.yaml")
    await provision(template.config, aws)
    attributes = await provision_template(template.resources, aws, REGION)
    stream_arn = attributes[("Table", "StreamArn")]
    assert stream_arn.split(":table/")[1].startswith(f"{prefix}-t/stream/")
    config = template.with_attributes(attributes).config
    assert config.event_source_mappings[0].event_source_arn == stream_arn

    kinesis = await aws.client("kinesis", REGION)
    summary = await kinesis.describe_stream_summary(StreamName=f"{prefix}-s")
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 2
    ddb = await aws.client("dynamodb", REGION)
    simple = await ddb.describe_table(TableName=f"{prefix}-simple")
    assert simple["Table"]["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    sns = await aws.client("sns", REGION)
    topic = attributes[("Topic", "TopicArn")]
    subs = await sns.list_subscriptions_by_topic(TopicArn=topic)
    assert [s["Protocol"] for s in subs["Subscriptions"]] == ["sqs"]
    s3 = await aws.client("s3", REGION)
    await s3.head_bucket(Bucket=f"{prefix}-bucket")
    events = await aws.client("events", REGION)
    bus = await events.describe_event_bus(Name=f"{prefix}-bus")
    assert bus["Arn"] == attributes[("Bus", "Arn")]


async def test_a_resource_the_emulator_refuses_is_named(tmp_path: Path, aws: AwsClients) -> None:

    (tmp_path / "template.yaml").write_text(
        "Resources:\n  B: {Type: AWS::S3::Bucket, Properties: {BucketName: 'Not_Valid!'}}\n"
    )
    template = load_template(tmp_path / "template.yaml")
    with pytest.raises(ConfigError) as info:
        await provision_template(template.resources, aws, REGION)
    assert str(info.value).startswith("--embedded: Resources.B: the emulator cannot create it: ")
