"""The compose stack (``compose.yaml``, ``examples/compose/``) without Docker, driven from outside.

The same pieces, natively: moto's server (``moto_url``) for the ``aws`` service, the real Redis
(``redis_url``, a ``StorePrefix`` of its own) for ``redis``, the function image's own handler file
(``examples/compose/function/app.py``) behind ``examples/compose/local_rie.py`` for ``orders``,
and ``esm run`` on a copy of ``examples/compose/esm.yaml`` whose compose hostnames point at those
on 127.0.0.1. ``examples/compose/setup.py`` creates the file's queues and table, as the ``setup``
service does. Queue and table names carry a prefix of this module's own (one emulator serves the
whole session). The tests then use boto3 only, as an application would: SQS and DynamoDB at the
emulator, Lambda at esm's port.

The files Docker would use are checked without an engine: ``docker-compose -f compose.yaml
config`` (a missing docker-compose skips the test, and fails it when ``CI`` is set), the
Dockerfile against ``.dockerignore``, and the native config against the compose one.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
import yaml
from botocore.client import BaseClient
from botocore.config import Config

from esm.metrics import SPECS
from tests.daemon import Daemon, Process
from tests.support import ACCOUNT, REGION, unique

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "compose"
COMPOSE_CONFIG = EXAMPLE / "esm.yaml"
NATIVE_CONFIG = EXAMPLE / "esm.native.yaml"
COMPOSE_STORE = "redis://redis:6379/0"
COMPOSE_RIE = "rie://orders:8080"
VISIBILITY_S = 5  # the API mapping's queue: at least the function's Timeout (5 s in esm.yaml)


# -- the example config, moved from compose's hosts to this machine's ----------------------------


def localize(
    doc: dict[str, Any],
    *,
    store: str,
    rie: str,
    api_port: int,
    prefix: str = "",
    store_prefix: str | None = None,
) -> dict[str, Any]:
    """``esm.yaml`` for the compose stack → the same stack on 127.0.0.1: Redis at ``store``, the
    function at ``rie``, the API on loopback at ``api_port``, every SQS name with ``prefix``."""
    hosts = {COMPOSE_STORE: store, COMPOSE_RIE: rie}

    def convert(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: convert(v) for k, v in node.items()}
        if isinstance(node, list):
            return [convert(v) for v in node]
        if isinstance(node, str) and node.startswith("arn:aws:sqs:"):
            head, name = node.rsplit(":", 1)
            return f"{head}:{prefix}{name}"
        return hosts.get(node, node) if isinstance(node, str) else node

    out: dict[str, Any] = convert(copy.deepcopy(doc))
    out["Settings"] |= {"ApiHost": "127.0.0.1", "ApiPort": api_port}
    if store_prefix is not None:
        out["Settings"]["StorePrefix"] = store_prefix
    return out


def compose_config() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE_CONFIG.read_text())
    return doc


# -- the stack -----------------------------------------------------------------------------------


def until(check: Callable[[], Any], *, timeout: float = 30, what: str = "") -> Any:
    """Call ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(0.1)


def logged(process: Daemon | Process, pattern: str, what: str) -> str:
    """The first group of ``pattern`` in the output, once it is there; fails if it exits first."""

    def found() -> str | None:
        if process.proc.poll() is not None:
            raise AssertionError(f"{what} exited with {process.proc.returncode}:\n{process.output}")
        match = re.search(pattern, process.output)
        return match.group(1) if match else None

    value: str = until(found, timeout=30, what=f"{what}\n{process.output}")
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    prefix: str
    api: str
    daemon: Daemon
    function: Process
    lam: BaseClient
    sqs: BaseClient
    dynamodb: BaseClient

    def arn(self, name: str) -> str:
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.prefix}{name}"

    def url(self, name: str) -> str:
        url: str = self.sqs.get_queue_url(QueueName=self.prefix + name)["QueueUrl"]
        return url

    def create_queue(self, name: str, **attributes: str) -> str:
        url: str = self.sqs.create_queue(QueueName=self.prefix + name, Attributes=attributes)[
            "QueueUrl"
        ]
        return url

    def send(self, name: str, *orders: dict[str, Any]) -> None:
        url = self.url(name)
        for order in orders:
            self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(order))

    def receive(self, name: str) -> list[dict[str, Any]]:
        resp = self.sqs.receive_message(
            QueueUrl=self.url(name), MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        return [json.loads(m["Body"]) for m in resp.get("Messages", [])]

    def messages_on(self, name: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.url(name),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def saved(self) -> dict[str, dict[str, str]]:
        """The function's effect: the orders table, id → {item, source}."""
        items = self.dynamodb.scan(TableName=self.prefix + "orders")["Items"]
        return {i["id"]["S"]: {"item": i["item"]["S"], "source": i["source"]["S"]} for i in items}

    def diagnostics(self) -> str:
        return f"--- esm ---\n{self.daemon.output}\n--- function ---\n{self.function.output}"


def aws_client(service: str, endpoint: str) -> BaseClient:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def stack(
    moto_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    prefix = unique("stack") + "-"
    store_prefix = unique("esm-stack")
    env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }
    # the `setup` service
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "setup.py"), "--prefix", prefix],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"queue {prefix}orders: " in done.stdout
    assert f"table {prefix}orders: " in done.stdout
    # the `orders` service: the image's handler behind the RIE stand-in
    function = Process(
        [sys.executable, str(EXAMPLE / "local_rie.py"), "--port", "0"],
        env={**env, "ORDERS_TABLE": prefix + "orders"},
    )
    daemon: Daemon | None = None
    clients: list[BaseClient] = []
    try:
        rie = logged(function, r"listening on http://(\S+)", "the RIE stand-in")
        # the `esm` service
        folder = tmp_path_factory.mktemp("stack")
        config = localize(
            compose_config(),
            store=redis_url,
            rie=f"rie://{rie}",
            api_port=free_port(),
            prefix=prefix,
            store_prefix=store_prefix,
        )
        (folder / "esm.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        daemon = Daemon(["run", str(folder / "esm.yaml")], env=env)
        api = logged(daemon, r"Lambda API at (http://\S+)", "esm run")
        clients = [
            aws_client("lambda", api),
            aws_client("sqs", moto_url),
            aws_client("dynamodb", moto_url),
        ]
        yield Stack(prefix, api, daemon, function, *clients)
    finally:
        for c in clients:
            c.close()
        rc = daemon.stop(signal.SIGTERM) if daemon is not None else 0
        function.kill()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{store_prefix}:*", count=500))
        if keys:
            client.delete(*keys)
        client.close()
        if rc != 0:
            pytest.fail(f"esm run exited with {rc} on SIGTERM:\n{daemon.output if daemon else ''}")


# -- the stack, from outside ---------------------------------------------------------------------


def test_the_file_mapping_runs_the_function_image_handler(stack: Stack) -> None:
    with urllib.request.urlopen(f"{stack.api}/health", timeout=5) as resp:
        assert resp.status == 200
        assert json.load(resp)["status"] == "ok"
    names = [f["FunctionName"] for f in stack.lam.list_functions()["Functions"]]
    assert names == ["orders"]
    mappings = stack.lam.list_event_source_mappings(FunctionName="orders")["EventSourceMappings"]
    assert [(m["EventSourceArn"], m["State"]) for m in mappings] == [
        (stack.arn("orders"), "Enabled")
    ]
    assert mappings[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]

    stack.send("orders", {"id": "file-1", "item": "coffee"})

    until(lambda: "file-1" in stack.saved(), what=f"order file-1 saved\n{stack.diagnostics()}")
    assert stack.saved()["file-1"] == {"item": "coffee", "source": stack.prefix + "orders"}
    until(lambda: stack.messages_on("orders") == 0, what="the orders queue to empty")


def test_a_mapping_created_through_the_api_sends_a_poison_message_to_the_dlq(
    stack: Stack,
) -> None:
    dlq = stack.create_queue("api-orders-dlq")
    dlq_arn = stack.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}
    stack.create_queue(
        "api-orders", VisibilityTimeout=str(VISIBILITY_S), RedrivePolicy=json.dumps(redrive)
    )

    created = stack.lam.create_event_source_mapping(
        FunctionName="orders",
        EventSourceArn=stack.arn("api-orders"),
        BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    uuid = created["UUID"]
    until(
        lambda: stack.lam.get_event_source_mapping(UUID=uuid)["State"] == "Enabled",
        what=f"the mapping to be Enabled\n{stack.diagnostics()}",
    )

    good = [{"id": f"api-{i}", "item": item} for i, item in enumerate(["tea", "cake", "juice"])]
    poison = {"id": "api-poison", "item": "bad", "poison": True}
    stack.send("api-orders", good[0], poison, *good[1:])

    def saved_from_api() -> dict[str, dict[str, str]]:
        return {k: v for k, v in stack.saved().items() if k.startswith("api-")}

    until(lambda: len(saved_from_api()) == 3, what=f"three orders saved\n{stack.diagnostics()}")
    assert saved_from_api() == {
        o["id"]: {"item": o["item"], "source": stack.prefix + "api-orders"} for o in good
    }
    # the poison message: reported twice, then moved by the queue's redrive policy
    in_dlq = until(lambda: stack.receive("api-orders-dlq"), timeout=4 * VISIBILITY_S + 10)
    assert in_dlq == [poison]
    assert stack.messages_on("api-orders") == 0
    failed = [line for line in stack.function.lines if "failed (receive" in line]
    assert [line.rsplit("(receive ", 1)[1][0] for line in failed] == ["1", "2"], failed
    saves = [line for line in stack.function.lines if line.startswith("saved order api-")]
    assert len(saves) == 3, saves  # reported items only: the good ones ran once

    stack.lam.delete_event_source_mapping(UUID=uuid)
    remaining = stack.lam.list_event_source_mappings(EventSourceArn=stack.arn("api-orders"))
    assert [m["State"] for m in remaining["EventSourceMappings"]] in ([], ["Deleting"])


def test_async_invokes_reach_the_destinations_set_through_the_api(stack: Stack) -> None:
    stack.create_queue("api-succeeded")
    stack.create_queue("api-failed")
    stack.lam.put_function_event_invoke_config(
        FunctionName="orders",
        MaximumRetryAttempts=0,
        DestinationConfig={
            "OnSuccess": {"Destination": stack.arn("api-succeeded")},
            "OnFailure": {"Destination": stack.arn("api-failed")},
        },
    )
    good = {"id": "async-1", "item": "bagel"}
    poison = {"id": "async-poison", "item": "bad", "poison": True}

    for payload in (good, poison):
        resp = stack.lam.invoke(
            FunctionName="orders", InvocationType="Event", Payload=json.dumps(payload).encode()
        )
        assert resp["StatusCode"] == 202

    [success] = until(
        lambda: stack.receive("api-succeeded"), what=f"the success record\n{stack.diagnostics()}"
    )
    assert success["requestContext"]["condition"] == "Success"
    assert success["requestContext"]["functionArn"].startswith(
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders"
    )
    assert success["requestPayload"] == good
    assert success["responsePayload"] == {"processed": "async-1"}
    assert stack.saved()["async-1"] == {"item": "bagel", "source": "invoke"}
    # the handler raised: the RIE answered 200 with Lambda's error object, esm saw a failure
    [failure] = until(
        lambda: stack.receive("api-failed"), what=f"the failure record\n{stack.diagnostics()}"
    )
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 1
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert failure["requestPayload"] == poison
    assert failure["responsePayload"]["errorType"] == "ValueError"
    assert failure["responsePayload"]["errorMessage"] == "order async-poison is poison"
    # the API's invoke config replaced the file's: its queues got nothing
    assert stack.messages_on("orders-succeeded") == stack.messages_on("orders-failed") == 0


# -- the files Docker uses, without an engine ----------------------------------------------------


def test_docker_compose_accepts_compose_yaml() -> None:
    if shutil.which("docker-compose") is None:
        message = "docker-compose is not on PATH (apt-get install docker-compose)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    done = subprocess.run(
        ["docker-compose", "-f", "compose.yaml", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    monitoring = {"prometheus", "grafana"}
    assert set(services) == {"redis", "aws", "setup", "orders", "esm", *monitoring}
    # Prometheus and Grafana only with --profile monitoring, fed from examples/monitoring/
    for name in monitoring:
        assert services[name]["profiles"] == ["monitoring"]
        for source, _ in (_mount(v) for v in services[name]["volumes"]):
            assert source.exists(), source
    scrape = yaml.safe_load((ROOT / "examples/monitoring/prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == ["esm:3001"]
    dashboard = json.loads((ROOT / "examples/monitoring/grafana/dashboards/esm.json").read_text())
    queried = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in SPECS:  # every metric esm exports has a panel
        assert f"esm_{metric}" in queried, metric
    esm = services["esm"]
    mounts = [_mount(v) for v in esm["volumes"]]
    assert (COMPOSE_CONFIG, "/etc/esm/esm.yaml") in mounts
    assert esm["environment"]["AWS_ENDPOINT_URL"] == "http://aws:5000"
    # published on the host's loopback only: the API lets whoever reaches it do anything
    for service, port in (("esm", 3001), ("aws", 5000)):
        published = [_port(p) for p in services[service]["ports"]]
        assert published == [("127.0.0.1", port, port)], service
    assert esm["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    assert Path(esm["build"]["context"]).resolve() == ROOT
    assert Path(services["orders"]["build"]["context"]).resolve() == EXAMPLE / "function"
    assert services["orders"]["environment"]["ORDERS_TABLE"] == "orders"
    # Redis keeps its data across restarts (append-only file on a named volume)
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert [_mount(v)[1] for v in services["redis"]["volumes"]] == ["/data"]


def _port(port: str | dict[str, Any]) -> tuple[str | None, int, int]:
    """(host address, published, target) of a port in docker-compose 1.x
    (``127.0.0.1:3001:3001/tcp``, or the long form without an address) or v2 (long) form."""
    if isinstance(port, dict):
        return port.get("host_ip"), int(port["published"]), int(port["target"])
    parts = port.split("/")[0].split(":")
    host = parts[0] if len(parts) == 3 else None
    return host, int(parts[-2]), int(parts[-1])


def _mount(volume: str | dict[str, Any]) -> tuple[Path, str]:
    """(source, target) of a volume in docker-compose 1.x (``src:dst:ro``) or v2 (long) form."""
    if isinstance(volume, dict):
        return Path(volume["source"]).resolve(), str(volume["target"])
    source, target = volume.split(":")[:2]
    return Path(source).resolve(), target


def test_the_native_config_is_the_compose_config_on_loopback() -> None:
    native = yaml.safe_load(NATIVE_CONFIG.read_text())
    expected = localize(
        compose_config(),
        store="redis://127.0.0.1:6379/0",
        rie="rie://127.0.0.1:8080",
        api_port=3001,
    )
    assert native == expected


def test_the_image_gets_what_it_copies_and_serves_where_compose_and_the_config_say() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        src
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for src in line.split()[1:-1]
    ]
    assert {"pyproject.toml", "README.md", "esm", "connectors", "destinations"} <= set(sources)
    for src in sources:
        path = ROOT / src
        files = [path] if path.is_file() else list(path.rglob("*.py"))
        files = [f for f in files if "__pycache__" not in f.parts]
        assert files, f"COPY {src}: nothing there"
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            assert not _dockerignored(rel, ignore), f"COPY {src}: .dockerignore leaves out {rel}"
    assert _dockerignored("tests/node_modules/kinesalite/index.js", ignore)
    assert _dockerignored(".git/HEAD", ignore)
    assert _dockerignored("esm/__pycache__/api.cpython-311.pyc", ignore)

    settings = compose_config()["Settings"]
    assert settings["ApiHost"] == "0.0.0.0"
    port = settings["ApiPort"]
    assert f"EXPOSE {port}" in dockerfile
    assert f"http://127.0.0.1:{port}/health" in dockerfile
    assert re.search(r"^USER (?!root|0\b)\S+", dockerfile, re.M)
    assert 'ENTRYPOINT ["esm"]' in dockerfile
    assert 'CMD ["run", "/etc/esm/esm.yaml"]' in dockerfile
    assert "COPY app.py" in (EXAMPLE / "function" / "Dockerfile").read_text()


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, closely enough for these patterns: the last pattern that matches the path or
    one of its parent folders decides; ``!`` lets it back in."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        globs = [pat[3:], "*/" + pat[3:]] if pat.startswith("**/") else [pat]
        if any(fnmatch.fnmatchcase(c, g) for c in candidates for g in globs):
            ignored = not keep
    return ignored
