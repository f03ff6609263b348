"""Helpers for the control-plane tests (``tests/integration/control_plane/``): engines on the
real Redis serving Lambda's API on a loopback port, boto3 ``lambda`` clients on it, the AWS CLI
as a subprocess, and the calls and constants the tests share.

Every engine of one :class:`ControlWorld` shares one Redis key prefix (so they share the
registry, as daemons of one deployment do); the keys are deleted when the world closes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from esm.api import ApiServer, serve
from esm.aws import AwsClients
from esm.clock import RealClock
from esm.engine import Engine
from esm.sigv4 import Verifier
from esm.store import Store
from tests.fixtures import recorder
from tests.streams_support import delete_keys, value
from tests.support import ACCOUNT, REGION, engine_config, eventually, unique

TARGET = "python:tests.fixtures.recorder.handle"
SETTINGS = {"RegistryPollSeconds": 0.2, "ShutdownTimeoutSeconds": 2}
FN_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
ESM_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping"
ESM_PATH = "/2015-03-31/event-source-mappings"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NOT_FOUND = "The resource you requested does not exist."
QUIET_S = 1.5  # how long "nothing happens" is watched for

# Stopping an SQS poller (Update, Disable, Delete, a daemon stopping) cancels its 20 s long polls.
# moto's server does not notice: the orphaned ReceiveMessage goes on for up to 20 s and may take
# a message sent meanwhile, hiding it for the queue's visibility timeout. Tests that stop pollers
# use a 1 s visibility timeout (and a 1 s function Timeout, which must not exceed it), wait up to
# AFTER_STOP_S for deliveries that follow a stop, and compare sets: SQS is at-least-once.
SHORT_VISIBILITY_S = 1
AFTER_STOP_S = 30.0


def lambda_client(url: str, *, validate: bool = True) -> BaseClient:
    """boto3's ``lambda`` client on ``url``, one attempt per call. ``validate=False`` turns off
    botocore's client-side checks (ranges, required members), so the server's are tested."""
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}, parameter_validation=validate),
    )


async def call(client: BaseClient, operation: str, **kwargs: Any) -> dict[str, Any]:
    """``client.<operation>(**kwargs)`` in a thread (boto3 blocks)."""
    result: dict[str, Any] = await asyncio.to_thread(getattr(client, operation), **kwargs)
    return result


async def error(client: BaseClient, operation: str, **kwargs: Any) -> ClientError:
    """The ClientError ``operation`` raises (AssertionError if it succeeds)."""
    with pytest.raises(ClientError) as info:
        await call(client, operation, **kwargs)
    return info.value


def status(response: dict[str, Any]) -> int:
    return int(response["ResponseMetadata"]["HTTPStatusCode"])


def code(exc: ClientError) -> tuple[int, str, str]:
    """(HTTP status, error code, message) of a ClientError."""
    err = exc.response["Error"]
    return status(exc.response), err["Code"], err["Message"]


def body(response: dict[str, Any]) -> dict[str, Any]:
    """A response without ``ResponseMetadata``."""
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


@dataclass
class Node:
    """One engine with its API: what one ``esm run`` daemon is."""

    engine: Engine
    server: ApiServer
    client: BaseClient  # boto3, validating
    raw: BaseClient  # boto3, botocore's client-side checks off

    @property
    def url(self) -> str:
        return self.server.url

    async def http(
        self, method: str, path: str, payload: Any = None, *, data: bytes | None = None
    ) -> tuple[int, dict[str, str], Any]:
        """A raw HTTP request (for what boto3 cannot send): ``payload`` as JSON or ``data`` as it
        is; (status, headers, the answer as JSON or text)."""
        if payload is not None:
            data = json.dumps(payload).encode()
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, data=data) as resp,
        ):
            text = await resp.text()
            try:
                parsed: Any = json.loads(text) if text else None
            except ValueError:
                parsed = text
            return resp.status, dict(resp.headers), parsed


class ControlWorld:
    """Engines on the real Redis under one fresh key prefix, moto for the sources."""

    def __init__(self, aws: AwsClients, redis_url: str) -> None:
        self.aws = aws
        self.redis_url = redis_url
        self.prefix = unique("esm-control")
        self.nodes: list[Node] = []
        self._stores: list[Store] = []

    async def start(
        self,
        functions: dict[str, dict[str, Any]],
        mappings: list[dict[str, Any]] | None = None,
        *,
        auth: Verifier | None = None,
        **settings: Any,
    ) -> Node:
        """An engine serving ``functions`` (and the config file's ``mappings``), started, with
        its API on a free port (taking only requests signed for ``auth``, when given)."""
        config = engine_config(functions, mappings or [], **{**SETTINGS, **settings})
        store = Store.from_url(self.redis_url, clock=RealClock(), prefix=self.prefix)
        self._stores.append(store)
        engine = Engine(config, aws=self.aws, store=store)
        await engine.start()
        server = await serve(engine, port=0, auth=auth)
        node = Node(
            engine, server, lambda_client(server.url), lambda_client(server.url, validate=False)
        )
        self.nodes.append(node)
        return node

    async def stop(self, node: Node) -> None:
        """Stop a daemon: its API, then its engine (idempotent)."""
        await node.server.aclose()
        await node.engine.aclose(deadline_s=1)
        node.client.close()
        node.raw.close()

    async def aclose(self) -> None:
        for node in self.nodes:
            await self.stop(node)
        for store in self._stores:
            await store.aclose()
        await delete_keys(self.redis_url, f"{self.prefix}:*")


# -- the AWS CLI -----------------------------------------------------------------------------------


def find_aws_cli() -> tuple[list[str], int]:
    """How to run the AWS CLI here, and its major version (v1 exits 255 on a service error,
    v2 254); the test is skipped without one."""
    if importlib.util.find_spec("awscli") is not None:
        command = [sys.executable, "-m", "awscli"]
    elif (path := shutil.which("aws")) is not None:
        command = [path]
    else:
        pytest.skip("the AWS CLI is not installed (pip install 'awscli>=1.46')")
    out = subprocess.run(
        [*command, "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    version = (out.stdout or out.stderr).strip()
    assert version.startswith("aws-cli/"), version
    return command, int(version.removeprefix("aws-cli/").split(".")[0])


class Cli:
    """``aws lambda <operation> … --endpoint-url <esm>`` with throwaway credentials, one attempt."""

    def __init__(
        self, command: list[str], major: int, url: str, tmp: Path, *, settings: str = ""
    ) -> None:
        self.command = command
        self.error_exit = 255 if major == 1 else 254
        self.url = url
        self.tmp = tmp
        config = tmp / "config"
        config.write_text(f"[default]\nregion = {REGION}\noutput = json\n{settings}")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update(
            AWS_CONFIG_FILE=str(config),
            AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-credentials"),
            AWS_ACCESS_KEY_ID="x",
            AWS_SECRET_ACCESS_KEY="x",
            AWS_MAX_ATTEMPTS="1",
            AWS_RETRY_MODE="standard",
            AWS_PAGER="",
        )

    async def __call__(self, operation: str, *args: str) -> tuple[int, Any, str]:
        """Exit code, stdout as JSON (None when empty), stderr."""
        proc = await asyncio.create_subprocess_exec(
            *self.command,
            "lambda",
            operation,
            "--endpoint-url",
            self.url,
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode is not None
        return proc.returncode, json.loads(stdout) if stdout.strip() else None, stderr.decode()

    async def ok(self, operation: str, *args: str) -> Any:
        rc, out, err = await self(operation, *args)
        assert rc == 0, f"aws lambda {operation} exited {rc}: {err}"
        return out


# -- calls the tests share -------------------------------------------------------------------------


def fn(**settings: Any) -> dict[str, Any]:
    return {"Target": TARGET, **settings}


def bodies(name: str) -> list[str]:
    """The SQS message bodies function ``name`` has been given, in order."""
    return [r["body"] for e in recorder.EVENTS[name] for r in e["Records"]]


def kinesis_values(name: str) -> list[Any]:
    return [value(r) for e in recorder.EVENTS[name] for r in e["Records"]]


async def get_mapping(node: Node, uuid: str) -> dict[str, Any]:
    return await call(node.client, "get_event_source_mapping", UUID=uuid)


async def wait_state(node: Node, uuid: str, state: str) -> dict[str, Any]:
    """Get, until the mapping is in ``state``."""
    found: dict[str, Any] = {}

    async def reached() -> bool:
        found.update(await get_mapping(node, uuid))
        return bool(found["State"] == state)

    await eventually(reached, interval=0.1, what=f"mapping {uuid} {state}")
    return found


async def create_sqs_mapping(
    node: Node, function: str, arn: str, *, wait: bool = True, **kwargs: Any
) -> str:
    resp = await call(
        node.client,
        "create_event_source_mapping",
        FunctionName=function,
        EventSourceArn=arn,
        **kwargs,
    )
    if wait:
        await wait_state(node, resp["UUID"], "Enabled")
    return str(resp["UUID"])


async def create_table(aws: AwsClients) -> str:
    """A DynamoDB table with a stream; the stream's ARN."""
    c = await aws.client("dynamodb", REGION)
    resp = await c.create_table(
        TableName=unique("table"),
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    return str(resp["TableDescription"]["LatestStreamArn"])


def failing(event: Any, context: Any) -> Any:
    raise ValueError("boom")
