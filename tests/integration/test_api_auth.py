"""``Settings.ApiAuth: {Mode: sigv4}`` as clients meet it: boto3 (botocore's signer) and the AWS CLI
against esm's API on a loopback port, and a daemon's log at DEBUG holding no secret.

The in-process tests run an engine (:class:`tests.control_support.ControlWorld`) whose API takes
only requests signed with ``KEY`` / ``SECRET``; the verifier's clock can be moved forward to
replay a captured request after its window. What is checked is what a client sees (the error
code, status and message botocore raises) and what the function got: nothing, for every refusal.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import boto3
import pytest
from botocore import UNSIGNED
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.credentials import Credentials

from esm.aws import AwsClients
from esm.sigv4 import MISMATCH, Verifier
from tests.control_support import (
    TARGET,
    Cli,
    ControlWorld,
    Node,
    call,
    code,
    error,
    find_aws_cli,
)
from tests.daemon import ROOT, Daemon
from tests.fixtures import recorder
from tests.support import REGION, Queues, eventually, unique

pytestmark = pytest.mark.integration

KEY = "AKIAESMINTEGRATION01"
SECRET = "esm-integration-secret-0123456789abcdefgh"
FORBIDDEN = "The security token included in the request is invalid."


class Skewed:
    """The verifier's clock: real time plus ``offset_s``."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now(self) -> float:
        return time.time() + self.offset_s


@pytest.fixture
async def world(aws: AwsClients, store_url: str) -> AsyncIterator[ControlWorld]:
    w = ControlWorld(aws, store_url)
    yield w
    await w.aclose()


@pytest.fixture
def clock() -> Skewed:
    return Skewed()


@pytest.fixture
async def node(world: ControlWorld, clock: Skewed) -> tuple[Node, str]:
    name = unique("auth")
    verifier = Verifier({KEY: SECRET}, REGION, now=clock.now)
    return await world.start({name: {"Target": TARGET}}, auth=verifier), name


def client(url: str, key: str = KEY, secret: str = SECRET, **config: Any) -> BaseClient:
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


async def test_the_right_key_passes_and_the_function_runs(node: tuple[Node, str]) -> None:
    n, name = node
    lam = client(n.url)
    listed = await call(lam, "list_functions")
    assert [f["FunctionName"] for f in listed["Functions"]] == [name]
    out = await call(lam, "invoke", FunctionName=name, Payload=b'{"order": 1}')
    assert out["StatusCode"] == 200
    assert recorder.EVENTS[name] == [{"order": 1}]
    presign = await call(lam, "get_function", FunctionName=name)
    assert presign["Configuration"]["FunctionName"] == name


@pytest.mark.parametrize(
    ("key", "secret", "expected"),
    [
        (KEY, "esm-integration-secret-WRONG-0123456789ab", ("InvalidSignatureException", MISMATCH)),
        ("AKIANOBODYKNOWS00000", SECRET, ("UnrecognizedClientException", FORBIDDEN)),
    ],
    ids=["wrong-secret", "unknown-key"],
)
async def test_a_wrong_key_gets_awss_403_and_nothing_runs(
    node: tuple[Node, str], key: str, secret: str, expected: tuple[str, str]
) -> None:
    n, name = node
    lam = client(n.url, key, secret)
    for operation, kwargs in [
        ("invoke", {"FunctionName": name, "Payload": b"{}", "InvocationType": "Event"}),
        ("put_function_concurrency", {"FunctionName": name, "ReservedConcurrentExecutions": 0}),
        ("list_event_source_mappings", {}),
    ]:
        status, err_code, message = code(await error(lam, operation, **kwargs))
        assert (status, err_code) == (403, expected[0])
        assert message.startswith(expected[1])
        assert SECRET not in message
    assert recorder.EVENTS[name] == []
    concurrency = await call(client(n.url), "get_function_concurrency", FunctionName=name)
    assert "ReservedConcurrentExecutions" not in concurrency


async def test_no_signature_is_missing_authentication_token_except_health_and_metrics(
    node: tuple[Node, str],
) -> None:
    n, name = node
    unsigned = client(n.url, signature_version=UNSIGNED)
    status, err_code, message = code(await error(unsigned, "invoke", FunctionName=name))
    assert (status, err_code, message) == (
        403,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )
    async with aiohttp.ClientSession() as session:
        for path in ("/health", "/health/live", "/metrics"):
            async with session.get(n.url + path) as resp:
                assert resp.status == 200, path
        # a path esm does not serve: refused as unsigned, not answered as unknown
        async with session.get(n.url + "/2015-03-31/nothing-here") as resp:
            assert resp.status == 403
            assert resp.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert recorder.EVENTS[name] == []


async def test_a_stale_signing_time_is_signature_expired(node: tuple[Node, str]) -> None:
    n, name = node
    lam = client(n.url)
    then = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=6)
    with mock.patch("botocore.auth.get_current_datetime", return_value=then):
        status, err_code, message = code(await error(lam, "invoke", FunctionName=name))
    assert (status, err_code) == (403, "InvalidSignatureException")
    stamp = then.strftime("%Y%m%dT%H%M%SZ")
    assert re.fullmatch(
        rf"Signature expired: {stamp} is now earlier than \d{{8}}T\d{{6}}Z "
        r"\(\d{8}T\d{6}Z - 5 min\.\)",
        message,
    ), message
    assert recorder.EVENTS[name] == []


async def test_a_body_changed_after_signing_is_refused(node: tuple[Node, str]) -> None:
    n, name = node
    lam = client(n.url)

    def tamper(request: Any, **_: Any) -> None:
        request.body = b'{"order": 666}'  # same length, different bytes
        request.headers["Content-Length"] = str(len(request.body))

    lam.meta.events.register("before-send.lambda.Invoke", tamper)
    status, err_code, message = code(
        await error(lam, "invoke", FunctionName=name, Payload=b'{"order": 111}')
    )
    assert (status, err_code) == (403, "InvalidSignatureException")
    assert message.startswith(MISMATCH)
    assert recorder.EVENTS[name] == []


async def test_a_replay_passes_inside_five_minutes_and_fails_after(
    node: tuple[Node, str], clock: Skewed
) -> None:
    """As on AWS: a captured request can be sent again while its date is in the window."""
    n, name = node
    lam = client(n.url)
    sent: list[Any] = []
    lam.meta.events.register("before-send.lambda.Invoke", lambda request, **_: sent.append(request))
    await call(lam, "invoke", FunctionName=name, Payload=b'{"n": 1}')
    request = sent[0]
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}

    async def replay() -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(skip_auto_headers=["Content-Type", "User-Agent"]) as session,
            session.post(request.url, data=request.body, headers=headers) as resp,
        ):
            return resp.status, resp.headers.get("x-amzn-ErrorType", "")

    clock.offset_s = 299
    assert await replay() == (200, "")
    clock.offset_s = 301
    assert await replay() == (403, "InvalidSignatureException")
    assert recorder.EVENTS[name] == [{"n": 1}, {"n": 1}]


async def test_a_presigned_url_passes(node: tuple[Node, str]) -> None:
    n, name = node
    url = f"{n.url}/2015-03-31/functions/{name}/configuration"
    request = AWSRequest(method="GET", url=url)
    SigV4QueryAuth(Credentials(KEY, SECRET), "lambda", REGION, expires=60).add_auth(request)
    async with aiohttp.ClientSession() as session:
        async with session.get(request.url) as resp:
            assert resp.status == 200
            assert (await resp.json())["FunctionName"] == name
        tampered = request.url.replace(name, name + "x")
        async with session.get(tampered) as resp:
            assert resp.status == 403
            assert resp.headers["x-amzn-ErrorType"] == "InvalidSignatureException"


# -- the AWS CLI and a daemon's log ----------------------------------------------------------------


AWS_SECRET = "esm-own-aws-secret-for-moto-0123456789abc"
AWS_TOKEN = "esm-own-aws-session-token-0123456789"


async def _daemon(tmp_path: Path, moto_url: str, queue_arn: str, *args: str) -> tuple[Daemon, str]:
    """``esm run`` with ApiAuth on, an SQS mapping (so esm signs its own AWS calls) and
    recognisable AWS credentials of its own."""
    (tmp_path / "handler.py").write_text("def handle(event, context):\n    return {'ok': 1}\n")
    (tmp_path / "esm.yaml").write_text(
        f"""
Settings:
  Region: {REGION}
  ApiPort: 0
  ApiAuth:
    Mode: sigv4
    Keys:
      - {{AccessKeyId: {KEY}, SecretAccessKeyEnv: ESM_API_SECRET}}
Functions:
  orders: {{Target: "python:handler.handle"}}
EventSourceMappings:
  - {{FunctionName: orders, EventSourceArn: "{queue_arn}"}}
"""
    )
    env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_SESSION_TOKEN": AWS_TOKEN,
        "ESM_API_SECRET": SECRET,
    }
    d = Daemon(["run", str(tmp_path / "esm.yaml"), *args], env=env)
    await eventually(lambda: d.has("Lambda API at "), timeout=30, what=d.output)
    found = re.search(r"Lambda API at (\S+)", d.output)
    assert found is not None
    return d, found.group(1)


async def test_aws_cli_and_boto3_against_a_daemon_and_no_secret_in_its_debug_log(
    tmp_path: Path, moto_url: str, aws: AwsClients, daemons: list[Daemon]
) -> None:
    queues = Queues(aws)
    arn, queue_url = await queues.create(unique("auth"))
    d, url = await _daemon(tmp_path, moto_url, arn, "--log-level", "debug")
    daemons.append(d)
    command, major = find_aws_cli()
    cli = Cli(command, major, url, tmp_path)
    cli.env.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION=REGION)
    listed = await cli.ok("list-functions")
    assert [f["FunctionName"] for f in listed["Functions"]] == ["orders"]
    cli.env["AWS_SECRET_ACCESS_KEY"] = "esm-integration-secret-WRONG-0123456789ab"
    rc, out, err = await cli("list-functions")
    assert (rc, out) == (cli.error_exit, None)
    assert "(InvalidSignatureException)" in err and "ListFunctions" in err
    # boto3, and a presigned URL, through the same daemon; the mapping polls with esm's own keys
    lam = client(url)
    answer = await call(lam, "invoke", FunctionName="orders", Payload=b"{}")
    assert json.loads(answer["Payload"].read()) == {"ok": 1}
    presigned = AWSRequest(method="GET", url=f"{url}/2015-03-31/functions/orders/configuration")
    SigV4QueryAuth(Credentials(KEY, SECRET), "lambda", REGION, expires=60).add_auth(presigned)
    async with aiohttp.ClientSession() as session, session.get(presigned.url) as resp:
        assert resp.status == 200
    signature = presigned.url.rsplit("X-Amz-Signature=", 1)[1]
    await queues.send(queue_url, ["hello"])
    await eventually(lambda: queues.is_empty(queue_url), timeout=20, what="the queue drained")
    assert d.stop(signal.SIGINT) == 0
    log = d.output
    assert " DEBUG " in log  # the level was DEBUG …
    assert "refused: InvalidSignatureException" in log  # … and the refusal was logged
    for secret in (SECRET, AWS_SECRET, AWS_TOKEN, signature, "Authorization", "X-Amz-Signature"):
        assert secret not in log, f"{secret!r} is in the daemon's log"


async def test_debug_aws_brings_botocores_debug_lines_back(
    tmp_path: Path, moto_url: str, aws: AwsClients, daemons: list[Daemon]
) -> None:
    """The switch the previous test's silence depends on: with it, botocore prints signed
    headers (which is why it is off by default)."""
    arn, _ = await Queues(aws).create(unique("auth"))
    d, _ = await _daemon(tmp_path, moto_url, arn, "--log-level", "DEBUG", "--debug-aws")
    daemons.append(d)
    await eventually(lambda: d.has("botocore"), timeout=20, what=d.output)
    assert d.stop(signal.SIGINT) == 0
    assert re.search(r"DEBUG +botocore\.", d.output)


def test_the_api_secret_comes_from_the_environment_not_the_file(tmp_path: Path) -> None:
    """``esm validate`` names the variable that is missing, never a value."""
    (tmp_path / "esm.yaml").write_text(
        "Settings:\n  ApiAuth:\n    Mode: sigv4\n    Keys:\n"
        "      - {AccessKeyId: a, SecretAccessKeyEnv: ESM_TEST_NOT_SET}\n"
        "Functions:\n  f: {Target: 'python:h.h'}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ESM_TEST_NOT_SET"}
    proc = subprocess.run(
        [sys.executable, "-m", "esm.cli", "validate", str(tmp_path / "esm.yaml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert (
        "Settings.ApiAuth.Keys[0]: SecretAccessKeyEnv: the environment variable ESM_TEST_NOT_SET "
        "is not set" in proc.stderr
    )
