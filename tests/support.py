"""Helpers for integration tests: waiting for a condition, SQS queues in the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from esm.aws import AwsClients
from esm.config import EsmConfig, parse_config

REGION = "us-east-1"
ACCOUNT = "123456789012"


async def eventually(
    check: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(interval)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Queues:
    """SQS queues in the emulator, through the same aiobotocore clients the engine uses."""

    def __init__(self, aws: AwsClients) -> None:
        self.aws = aws

    async def client(self) -> Any:
        return await self.aws.client("sqs", REGION)

    async def create(
        self,
        name: str,
        *,
        visibility_s: int = 30,
        dlq_arn: str | None = None,
        max_receive_count: int = 2,
        fifo: bool = False,
    ) -> tuple[str, str]:
        """Returns (arn, url)."""
        attrs = {"VisibilityTimeout": str(visibility_s)}
        if fifo:
            name += ".fifo"
            attrs |= {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        if dlq_arn:
            attrs["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
            )
        c = await self.client()
        url = (await c.create_queue(QueueName=name, Attributes=attrs))["QueueUrl"]
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}", url

    async def send(
        self, url: str, bodies: list[str], *, group: str | None = None, per_call: int = 10
    ) -> list[str]:
        c = await self.client()
        ids = []
        for start in range(0, len(bodies), per_call):
            entries = []
            for i, body in enumerate(bodies[start : start + per_call]):
                entry: dict[str, Any] = {"Id": str(i), "MessageBody": body}
                if group is not None:
                    entry["MessageGroupId"] = group
                entries.append(entry)
            resp = await c.send_message_batch(QueueUrl=url, Entries=entries)
            assert not resp.get("Failed"), resp
            ids += [s["MessageId"] for s in sorted(resp["Successful"], key=lambda s: int(s["Id"]))]
        return ids

    async def depth(self, url: str) -> tuple[int, int]:
        """(visible, in flight)."""
        c = await self.client()
        attrs = (
            await c.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    async def total(self, url: str) -> int:
        return sum(await self.depth(url))

    async def is_empty(self, url: str) -> bool:
        return await self.total(url) == 0

    async def holds(self, url: str, n: int) -> bool:
        return await self.total(url) == n

    async def drain(self, url: str) -> list[dict[str, Any]]:
        """Receive (and delete) everything visible now."""
        c = await self.client()
        out: list[dict[str, Any]] = []
        while True:
            resp = await c.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
            )
            msgs = resp.get("Messages", [])
            if not msgs:
                return out
            out += msgs
            await c.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)
                ],
            )


def engine_config(
    functions: dict[str, dict[str, Any]], mappings: list[dict[str, Any]], **settings: Any
) -> EsmConfig:
    doc: dict[str, Any] = {
        "Settings": {"Region": REGION, "AccountId": ACCOUNT, **settings},
        "Functions": functions,
        "EventSourceMappings": mappings,
    }
    return parse_config(doc, "test")


def self_signed_cert(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files in ``tmp``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextlib.asynccontextmanager
async def serve_app(app: Any, *, ssl_context: Any = None) -> AsyncIterator[int]:
    """Serves an ``aiohttp.web.Application`` on a free loopback port (TLS with ``ssl_context``);
    yields the port."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()
