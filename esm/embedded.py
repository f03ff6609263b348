"""``esm run --embedded``: an AWS emulator (moto's server) in process, with the config's queues.

The emulator listens on loopback only. Queues named anywhere in the config (mapping sources,
redrive dead-letter queues, ``Resources`` of type ``AWS::SQS::Queue``) are created with the
properties given, dead-letter queues first so redrive policies point at them; then the messages
listed under ``Embedded.SendMessages`` are sent, so the demo shows batches at once.

With ``--template`` the emulator runs as the account of esm's ``Settings.AccountId`` (moto's
``MOTO_ACCOUNT_ID``), so the ARNs the template resolves are the emulator's own, and
:func:`provision_template` also creates the template's Kinesis streams, DynamoDB tables (with
their streams), SNS topics and their sqs subscriptions, S3 buckets and EventBridge buses. It
returns the attributes only the emulator knows (a table's ``StreamArn`` label) for
:meth:`esm.templates.Template.with_attributes`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from esm.arns import Arn
from esm.aws import AwsClients
from esm.clock import Clock
from esm.config import EsmConfig, QueueProperties
from esm.errors import ConfigError, EsmError, Problem
from esm.templates import TemplateResource

log = logging.getLogger(__name__)


class EmbeddedUnavailable(EsmError):
    """--embedded asked for, moto not installed."""


class EmbeddedAws:
    """moto's server on ``127.0.0.1:port`` (0: a free port) in a background thread; with
    ``account_id``, resources are created in that account (``MOTO_ACCOUNT_ID``)."""

    def __init__(self, port: int = 0, account_id: str | None = None) -> None:
        self._port = port
        self._account_id = account_id
        self._server: Any = None
        self.url = ""

    def start(self) -> str:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise EmbeddedUnavailable(
                "esm run --embedded needs moto's server: pip install 'esm-engine[embedded]'"
            ) from None

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        for key, value in (
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ):
            os.environ.setdefault(key, value)
        if self._account_id is not None:
            os.environ["MOTO_ACCOUNT_ID"] = self._account_id
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def _queue_attributes(props: QueueProperties, dlq_arn: str | None) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if props.fifo_queue:
        attrs["FifoQueue"] = "true"
    if props.content_based_deduplication is not None:
        attrs["ContentBasedDeduplication"] = str(props.content_based_deduplication).lower()
    for name, value in (
        ("VisibilityTimeout", props.visibility_timeout_s),
        ("DelaySeconds", props.delay_s),
        ("MessageRetentionPeriod", props.message_retention_s),
        ("ReceiveMessageWaitTimeSeconds", props.receive_wait_s),
    ):
        if value is not None:
            attrs[name] = str(value)
    if props.redrive_policy and dlq_arn:
        attrs["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": dlq_arn,
                "maxReceiveCount": props.redrive_policy.max_receive_count,
            }
        )
    return attrs


async def provision(config: EsmConfig, aws: AwsClients) -> dict[str, str]:
    """Create every queue the config names; returns queue name → queue URL."""
    queues = config.queue_resources()
    region = config.settings.region
    client = await aws.client("sqs", region)
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}

    async def create(name: str, props: QueueProperties) -> None:
        if name in urls:
            return
        dlq_arn = None
        if props.redrive_policy:
            dlq_name = Arn.parse(props.redrive_policy.dead_letter_target_arn).name
            await create(dlq_name, queues[dlq_name])
            dlq_arn = arns[dlq_name]
        resp = await client.create_queue(
            QueueName=name, Attributes=_queue_attributes(props, dlq_arn)
        )
        urls[name] = resp["QueueUrl"]
        got = await client.get_queue_attributes(QueueUrl=urls[name], AttributeNames=["QueueArn"])
        arns[name] = got["Attributes"]["QueueArn"]
        log.info("embedded: created queue %s", name)

    for name, props in queues.items():
        await create(name, props)
    return urls


async def send_messages(config: EsmConfig, aws: AwsClients, urls: dict[str, str]) -> int:
    """Send ``Embedded.SendMessages``; returns how many were sent."""
    sent = 0
    for batch in config.embedded.send_messages:
        arn = Arn.parse(batch.queue_arn)
        client = await aws.client("sqs", arn.region or config.settings.region)
        url = urls.get(arn.name) or (await client.get_queue_url(QueueName=arn.name))["QueueUrl"]
        for i, body in enumerate(batch.bodies):
            kwargs: dict[str, Any] = {"QueueUrl": url, "MessageBody": body}
            if arn.name.endswith(".fifo"):
                kwargs["MessageGroupId"] = batch.message_group_id or "default"
                kwargs["MessageDeduplicationId"] = hashlib.sha256(
                    f"{i}:{body}".encode()
                ).hexdigest()
            await client.send_message(**kwargs)
            sent += 1
    return sent


async def watch_queues(
    aws: AwsClients, urls: dict[str, str], region: str, clock: Clock, every_s: float = 2.0
) -> None:
    """Log each embedded queue's depth when it changes, so the demo shows messages move."""
    client = await aws.client("sqs", region)
    last: dict[str, tuple[str, str]] = {}
    while True:
        for name, url in sorted(urls.items()):
            try:
                got = await client.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                    ],
                )
            except Exception as exc:  # the emulator is going away: stop watching
                log.debug("embedded: watch stopped: %s", exc)
                return
            attrs = got["Attributes"]
            now = (
                attrs["ApproximateNumberOfMessages"],
                attrs["ApproximateNumberOfMessagesNotVisible"],
            )
            if last.get(name) != now:
                last[name] = now
                log.info("embedded queue %s: %s visible, %s in flight", name, *now)
        await clock.sleep(every_s)


# -- a template's other resources ------------------------------------------------------------------

Attributes = dict[tuple[str, str], str]


async def provision_template(
    resources: Sequence[TemplateResource], aws: AwsClients, region: str
) -> Attributes:
    """Create a template's streams, tables, topics, buckets and buses (queues come from
    :func:`provision`), then its subscriptions; returns (logical id, attribute) → value.
    ConfigError names a resource the emulator refuses."""
    creators: dict[str, Callable[[TemplateResource, AwsClients, str], Awaitable[Attributes]]] = {
        "AWS::Kinesis::Stream": _create_stream,
        "AWS::DynamoDB::Table": _create_table,
        "AWS::Serverless::SimpleTable": _create_table,
        "AWS::SNS::Topic": _create_topic,
        "AWS::S3::Bucket": _create_bucket,
        "AWS::Events::EventBus": _create_bus,
        "AWS::SNS::Subscription": _create_subscription,
    }
    order = list(creators)
    attributes: Attributes = {}
    for res in sorted(resources, key=lambda r: order.index(r.type)):
        try:
            attributes |= await creators[res.type](res, aws, region)
        except (BotoCoreError, ClientError, KeyError, TypeError, ValueError) as exc:
            problem = Problem(
                f"Resources.{res.logical_id}", f"the emulator cannot create it: {exc}"
            )
            raise ConfigError([problem], "--embedded") from exc
    return attributes


async def _create_stream(res: TemplateResource, aws: AwsClients, region: str) -> Attributes:
    client = await aws.client("kinesis", region)
    mode = (res.properties.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
    kwargs: dict[str, Any] = {"StreamName": res.name}
    if mode == "ON_DEMAND":
        kwargs["StreamModeDetails"] = {"StreamMode": "ON_DEMAND"}
    else:
        kwargs["ShardCount"] = int(res.properties.get("ShardCount", 1))
    await client.create_stream(**kwargs)
    got = await client.describe_stream_summary(StreamName=res.name)
    summary = got["StreamDescriptionSummary"]
    log.info(
        "embedded: created Kinesis stream %s (%s shard(s))", res.name, summary["OpenShardCount"]
    )
    return {(res.logical_id, "Arn"): summary["StreamARN"]}


def _table_request(res: TemplateResource) -> dict[str, Any]:
    """CreateTable's request for an ``AWS::DynamoDB::Table`` or ``AWS::Serverless::SimpleTable``."""
    p = res.properties
    if res.type == "AWS::Serverless::SimpleTable":
        key = p.get("PrimaryKey") or {}
        attr = str(key.get("Name", "id"))
        kind = {"String": "S", "Number": "N", "Binary": "B"}.get(str(key.get("Type")), "S")
        p = {
            **p,
            "KeySchema": [{"AttributeName": attr, "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": attr, "AttributeType": kind}],
            "BillingMode": "PROVISIONED" if p.get("ProvisionedThroughput") else "PAY_PER_REQUEST",
        }
    req: dict[str, Any] = {
        "TableName": res.name,
        "KeySchema": p["KeySchema"],
        "AttributeDefinitions": p["AttributeDefinitions"],
    }
    throughput = p.get("ProvisionedThroughput")
    if p.get("BillingMode", "PROVISIONED") == "PROVISIONED" and throughput:
        req["BillingMode"] = "PROVISIONED"
        req["ProvisionedThroughput"] = {k: int(v) for k, v in throughput.items()}
    else:
        req["BillingMode"] = "PAY_PER_REQUEST"
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if p.get(key):
            req[key] = [
                {k: v for k, v in index.items() if k != "ContributorInsightsSpecification"}
                for index in p[key]
            ]
    spec = p.get("StreamSpecification")
    if spec:
        req["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": spec.get("StreamViewType", "NEW_AND_OLD_IMAGES"),
        }
    return req


async def _create_table(res: TemplateResource, aws: AwsClients, region: str) -> Attributes:
    client = await aws.client("dynamodb", region)
    described = (await client.create_table(**_table_request(res)))["TableDescription"]
    ttl = res.properties.get("TimeToLiveSpecification")
    if ttl and str(ttl.get("Enabled")).lower() == "true":
        await client.update_time_to_live(
            TableName=res.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )
    out = {(res.logical_id, "Arn"): described["TableArn"]}
    if described.get("LatestStreamArn"):
        out[(res.logical_id, "StreamArn")] = described["LatestStreamArn"]
    log.info(
        "embedded: created DynamoDB table %s%s",
        res.name,
        f" with stream {described['LatestStreamArn']}" if "LatestStreamArn" in described else "",
    )
    return out


def _flags(props: Mapping[str, Any], *names: str) -> dict[str, str]:
    return {n: str(props[n]).lower() for n in names if n in props}


async def _create_topic(res: TemplateResource, aws: AwsClients, region: str) -> Attributes:
    client = await aws.client("sns", region)
    attrs = _flags(res.properties, "FifoTopic", "ContentBasedDeduplication")
    arn = (await client.create_topic(Name=res.name, Attributes=attrs))["TopicArn"]
    for sub in res.properties.get("Subscription") or []:
        await client.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=sub["Endpoint"])
    log.info("embedded: created SNS topic %s", res.name)
    return {(res.logical_id, "Ref"): arn, (res.logical_id, "TopicArn"): arn}


async def _create_subscription(res: TemplateResource, aws: AwsClients, region: str) -> Attributes:
    p = res.properties
    client = await aws.client("sns", Arn.parse(p["TopicArn"]).region or region)
    attrs = _flags(p, "RawMessageDelivery")
    for key in ("FilterPolicy", "RedrivePolicy"):
        if key in p:
            attrs[key] = p[key] if isinstance(p[key], str) else json.dumps(p[key])
    if "FilterPolicyScope" in p:
        attrs["FilterPolicyScope"] = str(p["FilterPolicyScope"])
    got = await client.subscribe(
        TopicArn=p["TopicArn"],
        Protocol=p["Protocol"],
        Endpoint=p["Endpoint"],
        Attributes=attrs,
        ReturnSubscriptionArn=True,
    )
    return {(res.logical_id, "Ref"): got["SubscriptionArn"]}


async def _create_bucket(res: TemplateResource, aws: AwsClients, region: str) -> Attributes:
    client = await aws.client("s3", region)
    kwargs: dict[str, Any] = {"Bucket": res.name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    await client.create_bucket(**kwargs)
    log.info("embedded: created S3 bucket %s", res.name)
    return {}


async def _create_bus(res: TemplateResource, aws: AwsClients, region: str) -> Attributes:
    if res.name == "default":
        return {}
    client = await aws.client("events", region)
    arn = (await client.create_event_bus(Name=res.name))["EventBusArn"]
    log.info("embedded: created EventBridge bus %s", res.name)
    return {(res.logical_id, "Arn"): arn}


async def live_attributes(
    config: EsmConfig, resources: Sequence[TemplateResource], aws: AwsClients, region: str
) -> Attributes:
    """What ``Ref`` / ``Fn::GetAtt`` give for a template's queues, streams and tables that
    already exist where esm talks to AWS (an emulator, or AWS itself): the queue URL that
    endpoint answers with, a table's ``StreamArn``, a stream's ``Arn``. A resource that is not
    there keeps the value CloudFormation's rules give (a debug line says so)."""
    out: Attributes = {}
    sqs = await aws.client("sqs", region)
    for logical, res in config.resources.items():
        name = res.properties.queue_name or logical
        try:
            url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        except (BotoCoreError, ClientError) as exc:
            log.debug("queue %s: no URL from the endpoint (%s)", name, exc)
            continue
        out[(logical, "Ref")] = out[(logical, "QueueUrl")] = url
    for r in resources:
        try:
            if r.type == "AWS::Kinesis::Stream":
                kinesis = await aws.client("kinesis", region)
                got = await kinesis.describe_stream_summary(StreamName=r.name)
                out[(r.logical_id, "Arn")] = got["StreamDescriptionSummary"]["StreamARN"]
            elif r.type in ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
                ddb = await aws.client("dynamodb", region)
                table = (await ddb.describe_table(TableName=r.name))["Table"]
                if "LatestStreamArn" in table:
                    out[(r.logical_id, "StreamArn")] = table["LatestStreamArn"]
        except (BotoCoreError, ClientError) as exc:
            log.debug("%s %s: not found at the endpoint (%s)", r.type, r.name, exc)
    return out
