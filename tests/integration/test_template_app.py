"""A SAM app as users write it, run as users type it: ``esm run template.yml --embedded``. What
esm cannot run (an HTTP API, a schedule, a layer by ARN) is skipped with one warning each; the
queue URL and stream ARN the handler reads from its Environment are the emulator's own; the
template's local layer is importable by the handler in its execution environment."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest

from esm.aws import AwsClients
from esm.intrinsics import PLACEHOLDER_STREAM_LABEL
from tests.daemon import Daemon
from tests.support import eventually, unique

pytestmark = pytest.mark.integration

REGION = "us-east-1"

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Inbox:
    Type: AWS::SQS::Queue
    Properties: {{QueueName: {p}-inbox}}
  Outbox:
    Type: AWS::SQS::Queue
    Properties: {{QueueName: {p}-outbox}}
  Ledger:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: {p}-ledger
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{{AttributeName: id, AttributeType: S}}]
      KeySchema: [{{AttributeName: id, KeyType: HASH}}]
      StreamSpecification: {{StreamViewType: NEW_IMAGE}}
  Words:
    Type: AWS::Serverless::LayerVersion
    Properties: {{ContentUri: words/, CompatibleRuntimes: [python3.12]}}
  Nightly:
    Type: AWS::Scheduler::Schedule
    Properties: {{ScheduleExpression: rate(1 day), FlexibleTimeWindow: {{Mode: "OFF"}}}}
  Relay:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: {p}-relay
      Runtime: python3.12
      CodeUri: src/
      Handler: relay.handler
      Timeout: 10
      Layers:
        - !Ref Words
        - arn:aws:lambda:us-east-1:123456789012:layer:elsewhere:3
      Environment:
        Variables:
          OUTBOX_URL: !Ref Outbox
          LEDGER_STREAM: !GetAtt Ledger.StreamArn
      Events:
        Inbox:
          Type: SQS
          Properties: {{Queue: !GetAtt Inbox.Arn, BatchSize: 1}}
        Web:
          Type: HttpApi
          Properties: {{Path: /relay, Method: post}}
Outputs:
  OutboxUrl:
    Value: !Ref Outbox
"""

RELAY = """
import json, os
import boto3
from greeting import WORD   # from the layer's python/ folder

def handler(event, context):
    sqs = boto3.client("sqs")
    for record in event["Records"]:
        sqs.send_message(
            QueueUrl=os.environ["OUTBOX_URL"],
            MessageBody=json.dumps({
                "said": WORD + " " + record["body"],
                "stream": os.environ["LEDGER_STREAM"],
            }),
        )
"""


async def test_a_sam_app_runs_as_written_with_real_urls_and_its_layer(
    tmp_path: Path, daemons: list[Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    prefix = unique("app")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "relay.py").write_text(textwrap.dedent(RELAY))
    (tmp_path / "words" / "python").mkdir(parents=True)
    (tmp_path / "words" / "python" / "greeting.py").write_text("WORD = 'hello'\n")
    (tmp_path / "template.yml").write_text(TEMPLATE.format(p=prefix))
    (tmp_path / "overlay.yaml").write_text(
        'Settings: {Region: us-east-1, AccountId: "000000000000", ApiPort: 0, Store: "memory://"}\n'
    )
    template = str(tmp_path / "template.yml")
    d = Daemon(["run", template, "--overlay", str(tmp_path / "overlay.yaml"), "--embedded"])
    daemons.append(d)
    await eventually(lambda: d.has("Lambda API at "), timeout=30, what=d.output)
    for skipped in (
        "Resources.Nightly: AWS::Scheduler::Schedule: esm does not run it: skipped",
        "Resources.Relay.Properties.Events.Web: event type HttpApi",
        "Resources.Relay.Properties.Layers[1]: layer 'arn:aws:lambda:us-east-1:123456789012:"
        "layer:elsewhere:3': esm mounts layers of the template: skipped",
    ):
        assert d.output.count(skipped) == 1, d.output
    emulator_url = d.output.split("embedded AWS emulator (moto) at ")[1].split()[0]
    emulator = AwsClients(endpoint_url=emulator_url)
    try:
        sqs = await emulator.client("sqs", REGION)
        inbox = (await sqs.get_queue_url(QueueName=f"{prefix}-inbox"))["QueueUrl"]
        outbox = (await sqs.get_queue_url(QueueName=f"{prefix}-outbox"))["QueueUrl"]
        assert outbox.startswith(emulator_url)  # Ref gives the emulator's URL, not AWS's
        assert f"output OutboxUrl = {outbox}" in d.output
        await sqs.send_message(QueueUrl=inbox, MessageBody="world")

        async def relayed() -> dict[str, str] | None:
            got = await sqs.receive_message(QueueUrl=outbox, WaitTimeSeconds=1)
            for message in got.get("Messages", []):
                return dict(json.loads(message["Body"]))
            return None

        body = await eventually(relayed, timeout=30, what=d.output)
        ddb = await emulator.client("dynamodb", REGION)
        table = (await ddb.describe_table(TableName=f"{prefix}-ledger"))["Table"]
        assert body == {"said": "hello world", "stream": table["LatestStreamArn"]}
        assert PLACEHOLDER_STREAM_LABEL not in body["stream"]
    finally:
        await emulator.aclose()
    assert d.stop(signal.SIGINT) == 0


async def test_without_embedded_refs_resolve_to_what_the_endpoint_holds(
    tmp_path: Path, aws: AwsClients
) -> None:
    from esm.embedded import live_attributes
    from esm.templates import load_template

    prefix = unique("live")
    (tmp_path / "src").mkdir()
    (tmp_path / "words" / "python").mkdir(parents=True)
    (tmp_path / "template.yml").write_text(TEMPLATE.format(p=prefix))
    template = load_template(tmp_path / "template.yml")
    env = template.config.functions[f"{prefix}-relay"].environment.variables
    assert env["OUTBOX_URL"] == f"https://sqs.{REGION}.amazonaws.com/000000000000/{prefix}-outbox"
    assert PLACEHOLDER_STREAM_LABEL in env["LEDGER_STREAM"]

    sqs = await aws.client("sqs", REGION)
    outbox = (await sqs.create_queue(QueueName=f"{prefix}-outbox"))["QueueUrl"]
    ddb = await aws.client("dynamodb", REGION)
    created = await ddb.create_table(
        TableName=f"{prefix}-ledger",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    attributes = await live_attributes(template.config, template.resources, aws, REGION)
    env = template.with_attributes(attributes).config.functions[f"{prefix}-relay"]
    assert env.environment.variables == {
        "OUTBOX_URL": outbox,  # the endpoint's own URL for the queue
        "LEDGER_STREAM": created["TableDescription"]["LatestStreamArn"],
    }
    assert ("Inbox", "Ref") not in attributes  # not created there: CloudFormation's URL stays
