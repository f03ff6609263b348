"""``esm run --embedded``: an AWS emulator (moto's server) in process, with the config's queues.

The emulator listens on loopback only. Queues named anywhere in the config (mapping sources,
redrive dead-letter queues, ``Resources`` of type ``AWS::SQS::Queue``) are created with the
properties given, dead-letter queues first so redrive policies point at them; then the messages
listed under ``Embedded.SendMessages`` are sent, so the demo shows batches at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

from esm.arns import Arn
from esm.aws import AwsClients
from esm.clock import Clock
from esm.config import EsmConfig, QueueProperties

log = logging.getLogger(__name__)


class EmbeddedAws:
    """moto's server on ``127.0.0.1:port`` (0: a free port) in a background thread."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: Any = None
        self.url = ""

    def start(self) -> str:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        for key, value in (
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ):
            os.environ.setdefault(key, value)
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
