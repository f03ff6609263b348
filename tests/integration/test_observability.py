"""Seeing what a running ``esm run`` does, as its operator would: the per-invocation log lines
(JSON), ``/metrics`` read by Prometheus's parser, ``esm status`` (table, ``--json``, ``--watch``
in a terminal) and the ``/ui`` dashboard in a real browser (the system's chromium driven by
Playwright)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon import ROOT, Daemon
from tests.support import REGION, eventually, unique

pytestmark = pytest.mark.integration

HANDLER = """
def handle(event, context):
    failed = [r["messageId"] for r in event["Records"] if r["body"].startswith("poison")]
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}

def job(event, context):
    if event.get("fail"):
        raise ValueError("bad job")
    return {"ok": True}
"""


class Running:
    def __init__(self, daemon: Daemon, api: str, queue_url: str, uuid: str, sqs: Any) -> None:
        self.daemon, self.api, self.queue_url, self.uuid = daemon, api, queue_url, uuid
        self.sqs = sqs

    def send(self, bodies: list[str]) -> None:
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)]
        self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.api + path, timeout=10) as resp:
            body: bytes = resp.read()
            return body

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.get("/esm/status"))
        return doc

    def mapping(self) -> dict[str, Any]:
        (m,) = [m for m in self.status()["mappings"] if m["uuid"] == self.uuid]
        return m

    def invoke_event(self, payload: dict[str, Any]) -> str:
        req = urllib.request.Request(
            self.api + "/2015-03-31/functions/jobs/invocations",
            data=json.dumps(payload).encode(),
            headers={"X-Amz-Invocation-Type": "Event"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(resp.headers["x-amzn-RequestId"])

    def json_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.daemon.lines:
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


def sqs(moto_url: str) -> Any:
    return boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)


@pytest.fixture
def running(tmp_path: Path, moto_url: str) -> Iterator[Running]:
    client = sqs(moto_url)
    url = client.create_queue(QueueName=unique("obs"), Attributes={"VisibilityTimeout": "30"})[
        "QueueUrl"
    ]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    (tmp_path / "handler.py").write_text(HANDLER)
    (tmp_path / "esm.yaml").write_text(
        f"""
Settings: {{ApiPort: 0, LogFormat: json, Store: "memory://{unique("obs")}",
            AsyncRetryDelaysSeconds: [1, 1]}}
Functions:
  orders: {{Target: "python:handler.handle", Timeout: 10}}
  jobs:
    Target: "python:handler.job"
    EventInvokeConfig: {{MaximumRetryAttempts: 1}}
EventSourceMappings:
  - FunctionName: orders
    EventSourceArn: "{arn}"
    BatchSize: 10
    MaximumBatchingWindowInSeconds: 1
    FunctionResponseTypes: [ReportBatchItemFailures]
"""
    )
    d = Daemon(["run", str(tmp_path / "esm.yaml")], env={"AWS_ENDPOINT_URL": moto_url})
    try:
        found = asyncio.run(
            eventually(
                lambda: re.search(r"Lambda API at (http://\S+)", d.output),
                timeout=30,
                what=d.output,
            )
        )
        api = found.group(1)
        run = Running(d, api, url, "", sqs(moto_url))
        run.uuid = run.status()["mappings"][0]["uuid"]
        yield run
    finally:
        d.kill()


# -- logs, metrics, status ---------------------------------------------------------------------


def test_a_batch_is_one_json_log_line_with_its_fate_and_exact_metrics(
    running: Running, moto_url: str
) -> None:
    running.send(["a", "poison-1", "b"])
    lines = asyncio.run(
        eventually(
            lambda: [j for j in running.json_lines() if j.get("event") == "invocation"],
            timeout=20,
            what=running.daemon.output,
        )
    )
    line = lines[0]
    assert line["logger"] == "esm.invocation" and line["level"] == "INFO"
    assert line["function"] == "orders" and line["mapping"] == running.uuid
    assert (line["batch"], line["outcome"], line["failed"]) == (3, "partial", 1)
    assert (line["deleted"], line["left"]) == (2, 1)
    assert re.fullmatch(r"[0-9a-f-]{36}", line["request_id"])
    # probes and scrapes are never logged; access logs are off anyway
    running.get("/health")
    running.get("/metrics")
    assert not any("GET /health" in x or "GET /metrics" in x for x in running.daemon.lines)

    families = {f.name: f for f in text_string_to_metric_families(running.get("/metrics").decode())}
    labels = {"function_name": "orders", "uuid": running.uuid}

    def sample(name: str, **want: str) -> float:
        for f in families.values():
            for s in f.samples:
                if s.name == name and s.labels == want:
                    return float(s.value)
        raise AssertionError(name)

    assert sample("esm_DeletedEventCount_total", **labels) == 2
    assert sample("esm_InvokedEventCount_total", **labels) == 3
    assert sample("esm_BatchSize_count", **labels) == 1
    assert sample("esm_Duration_count", function_name="orders") == 1
    assert sample("esm_Invocations_total", function_name="jobs") == 0  # from the start
    assert families["esm_Duration"].documentation.startswith("Milliseconds")

    # where did the poison message go? the invocation that had it, by its message id
    mapping = running.mapping()
    (failed_id,) = mapping["recent"][0]["failed_ids"]
    found = json.loads(running.get(f"/esm/invocations/{failed_id}"))["invocations"]
    assert found[0]["request_id"] == line["request_id"]
    assert mapping["last_minute"]["records"] == 3
    assert mapping["backlog"] == {"visible": 0, "in_flight": 1}  # the poison one, hidden


def test_text_logs_and_the_access_log_on_request(tmp_path: Path, moto_url: str) -> None:
    (tmp_path / "handler.py").write_text(HANDLER)
    (tmp_path / "esm.yaml").write_text(
        f"""
Settings: {{ApiPort: 0, LogFormat: json, Store: "memory://{unique("obs")}"}}
Functions:
  jobs: {{Target: "python:handler.job"}}
"""
    )
    d = Daemon(
        ["run", str(tmp_path / "esm.yaml"), "--log-format", "text", "--access-log"],
        env={"AWS_ENDPOINT_URL": moto_url},
    )
    try:
        found = asyncio.run(
            eventually(
                lambda: re.search(r"Lambda API at (http://\S+)", d.output),
                timeout=30,
                what=d.output,
            )
        )
        api = found.group(1)
        for path in ("/health", "/metrics", "/2015-03-31/functions"):
            urllib.request.urlopen(api + path, timeout=10).close()
        req = urllib.request.Request(
            api + "/2015-03-31/functions/jobs/invocations", data=b"{}", method="POST"
        )
        request_id = urllib.request.urlopen(req, timeout=10).headers["x-amzn-RequestId"]
        asyncio.run(
            eventually(lambda: d.has("GET /2015-03-31/functions"), timeout=10, what=d.output)
        )
        asyncio.run(eventually(lambda: d.has(f"request_id={request_id} "), what=d.output))
    finally:
        d.kill()
    line = next(x for x in d.lines if f"request_id={request_id} " in x)
    assert " INFO    esm.invocation: invocation function=jobs mapping=sync " in line
    assert "outcome=ok" in line
    assert not any(x.startswith("{") for x in d.lines)  # --log-format beats Settings.LogFormat
    assert not any("GET /health" in x or "GET /metrics" in x for x in d.lines)


def esm_status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "esm.cli", "status", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "250"},
    )


def test_esm_status_prints_the_mappings_and_async_queues(running: Running) -> None:
    request_id = running.invoke_event({"fail": True})
    asyncio.run(
        eventually(
            lambda: running.status()["functions"][0]["recent"], timeout=20, what="an invocation"
        )
    )
    as_json = esm_status("--api", running.api, "--json")
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    (jobs,) = [f for f in doc["functions"] if f["function"] == "jobs"]
    # newest first; on a slow machine the retry may already have run (it keeps the request id)
    first = jobs["recent"][-1]
    assert first["request_id"] == request_id
    assert first["outcome"] == "error" and first["error"] == "ValueError"
    assert 0.5 <= first["retry_in_s"] <= 1.5  # AsyncRetryDelaysSeconds, jittered
    if jobs["async"]["delayed"]:  # not retried yet: the retry waits, with its due time
        assert jobs["async"]["next_due"][0]["request_id"] == request_id

    table = esm_status("--api", running.api)
    assert table.returncode == 0, table.stderr
    assert running.uuid in table.stdout
    assert "Event source mappings" in table.stdout and "Functions (async queue)" in table.stdout
    assert "error ValueError, 1 rec" in table.stdout

    down = esm_status("--api", "http://127.0.0.1:9")
    assert down.returncode == 1 and "cannot read http://127.0.0.1:9/esm/status" in down.stderr


def test_esm_status_watch_redraws_in_a_terminal(running: Running, moto_url: str) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "esm.cli",
            "status",
            "--api",
            running.api,
            "--watch",
            "--interval",
            "0.3",
        ],
        cwd=ROOT,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "250", "LINES": "60", "TERM": "xterm"},
    )
    os.close(follower)
    seen = b""

    def read_for(seconds: float) -> None:
        nonlocal seen
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    seen += os.read(leader, 65536)
                except OSError:
                    return

    try:
        read_for(2.0)
        assert running.uuid.encode() in seen
        before = len(seen)
        running.send(["x", "y"])
        deadline = time.monotonic() + 20
        while b"ok, 2 rec" not in seen[before:] and time.monotonic() < deadline:
            read_for(0.5)
        assert b"ok, 2 rec" in seen[before:]  # the table was redrawn with the new batch
        assert b"\x1b[" in seen  # drawn with terminal control sequences (rich's Live)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)


# -- the dashboard in a browser ----------------------------------------------------------------


def test_the_dashboard_shows_rows_counters_and_a_batch_fate(
    running: Running, moto_url: str, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("the dashboard test needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15_000)  # the page polls every 2 s; the machine may be busy

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            page.goto(running.api + "/ui")
            row = page.locator(f'tr.mapping[data-key="{running.uuid}"]')
            expect(row).to_be_visible()
            expect(row.locator("td.state")).to_have_text("Enabled")
            expect(row.locator("td.records-1m")).to_have_text("0")
            expect(page.locator('tr.function[data-key="async:jobs"]')).to_be_visible()

            running.send(["a", "poison-2", "b", "c"])
            running.invoke_event({"n": 1})
            expect(row.locator("td.records-1m")).to_have_text("4", timeout=20_000)
            expect(row.locator("td.errors-1m")).to_have_text("1")
            jobs = page.locator('tr.function[data-key="async:jobs"]')
            expect(jobs.locator(".inv.ok")).to_have_count(1, timeout=20_000)

            chip = row.locator(".inv.partial").first
            expect(chip).to_contain_text("partial 1 failed")
            chip.click()
            fate = page.locator("#fate")
            expect(fate).to_be_visible()
            # all four in one batch, unless a loaded machine split them: then the poison's
            expect(fate.locator('[data-field="left"]')).to_have_text("1")
            batch = int(fate.locator('[data-field="batch"]').inner_text())
            expect(fate.locator('[data-field="deleted"]')).to_have_text(str(batch - 1))
            expect(fate.locator(".failed-id")).to_have_count(1)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            shot = os.environ.get("ESM_DASHBOARD_SCREENSHOT")
            if shot:
                shutil.copy(tmp_path / "dashboard.png", shot)
        finally:
            browser.close()
