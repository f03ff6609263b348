"""Amazon SQS: ReceiveMessage (long polls) and DeleteMessageBatch on the lean path of
:mod:`esm.awsjson`; GetQueueUrl, GetQueueAttributes and visibility changes through aiobotocore."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from esm.arns import Arn, is_fifo_queue
from esm.aws import AwsClients
from esm.clock import Clock
from esm.connectors.base import Record, translate_aws_errors
from esm.events import sqs_record

log = logging.getLogger(__name__)

MAX_RECEIVE = 10  # SQS's MaxNumberOfMessages ceiling
MAX_WAIT_S = 20  # SQS's WaitTimeSeconds ceiling
DELETE_ATTEMPTS = 3


class SqsConnector:
    """One SQS queue, named by its ARN."""

    def __init__(self, queue_arn: str, *, aws: AwsClients, clock: Clock) -> None:
        self.source_arn = queue_arn
        self.fifo = is_fifo_queue(queue_arn)
        self._arn = Arn.parse(queue_arn)
        self._name = self._arn.name  # for messages; computed once
        self._aws = aws
        self._clock = clock
        self._url: str | None = None

    async def _client(self) -> Any:
        return await self._aws.client("sqs", self._arn.region)

    async def queue_url(self) -> str:
        if self._url is None:
            client = await self._client()
            with translate_aws_errors(f"GetQueueUrl {self._name}"):
                resp = await client.get_queue_url(
                    QueueName=self._name, QueueOwnerAWSAccountId=self._arn.account
                )
            self._url = str(resp["QueueUrl"])
        return self._url

    async def visibility_timeout_s(self) -> int:
        client = await self._client()
        url = await self.queue_url()
        with translate_aws_errors(f"GetQueueAttributes {self._name}"):
            resp = await client.get_queue_attributes(
                QueueUrl=url, AttributeNames=["VisibilityTimeout"]
            )
        return int(resp["Attributes"]["VisibilityTimeout"])

    async def backlog(self) -> tuple[int, int]:
        """(ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible) (esm status)."""
        client = await self._client()
        url = await self.queue_url()
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        with translate_aws_errors(f"GetQueueAttributes {self._name}"):
            resp = await client.get_queue_attributes(QueueUrl=url, AttributeNames=names)
        attrs = resp["Attributes"]
        return int(attrs[names[0]]), int(attrs[names[1]])

    async def receive(
        self, max_records: int, wait_s: float, visibility_timeout_s: int | None = None
    ) -> list[Record]:
        api = await self._aws.json("sqs", self._arn.region)
        url = await self.queue_url()
        kwargs: dict[str, Any] = {
            "QueueUrl": url,
            "MaxNumberOfMessages": max(1, min(MAX_RECEIVE, max_records)),
            "WaitTimeSeconds": max(0, min(MAX_WAIT_S, int(wait_s))),
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout_s is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout_s
        with translate_aws_errors(f"ReceiveMessage {self._name}"):
            resp = await api.call("ReceiveMessage", kwargs)
        arn, region = self.source_arn, self._arn.region
        out = []
        for msg in resp.get("Messages", ()):
            data = sqs_record(msg, arn, region, wire=True)
            attrs = data["attributes"]
            out.append(
                Record(
                    data=data,
                    item_id=data["messageId"],
                    token=data["receiptHandle"],
                    arrival=int(attrs.get("SentTimestamp", 0)) / 1000.0,
                    key=attrs.get("MessageGroupId"),
                )
            )
        return out

    async def delete(self, records: Sequence[Record]) -> list[Record]:
        """DeleteMessageBatch in tens; entries that fail are retried, then logged and returned."""
        pending = list(records)
        for attempt in range(1, DELETE_ATTEMPTS + 1):
            if not pending:
                return []
            failed: list[Record] = []
            for start in range(0, len(pending), MAX_RECEIVE):
                failed += await self._delete_chunk(pending[start : start + MAX_RECEIVE])
            pending = failed
            if pending and attempt < DELETE_ATTEMPTS:
                await self._clock.sleep(0.1 * 2**attempt)
        if pending:
            log.error(
                "could not delete %d message(s) from %s after %d attempts: %s",
                len(pending),
                self._name,
                DELETE_ATTEMPTS,
                ", ".join(r.item_id for r in pending),
            )
        return pending

    async def _delete_chunk(self, chunk: Sequence[Record]) -> list[Record]:
        api = await self._aws.json("sqs", self._arn.region)
        url = await self.queue_url()
        entries = [{"Id": str(i), "ReceiptHandle": r.token} for i, r in enumerate(chunk)]
        try:
            with translate_aws_errors(f"DeleteMessageBatch {self._name}"):
                resp = await api.call("DeleteMessageBatch", {"QueueUrl": url, "Entries": entries})
        except Exception as exc:  # the whole call failed: every entry is retried
            log.warning("%s", exc)
            return list(chunk)
        failed = resp.get("Failed", [])
        for f in failed:
            log.warning(
                "delete of %s from %s failed: %s %s",
                chunk[int(f["Id"])].item_id,
                self._name,
                f.get("Code"),
                f.get("Message"),
            )
        return [chunk[int(f["Id"])] for f in failed]

    async def release(self, records: Sequence[Record]) -> None:
        """Visibility 0 for received but unprocessed messages (best effort, on shutdown)."""
        client = await self._client()
        url = await self.queue_url()
        for start in range(0, len(records), MAX_RECEIVE):
            chunk = records[start : start + MAX_RECEIVE]
            entries = [
                {"Id": str(i), "ReceiptHandle": r.token, "VisibilityTimeout": 0}
                for i, r in enumerate(chunk)
            ]
            try:
                with translate_aws_errors(f"ChangeMessageVisibilityBatch {self._name}"):
                    await client.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            except Exception as exc:
                log.warning("could not release %d message(s): %s", len(chunk), exc)

    async def close(self) -> None:
        return None
