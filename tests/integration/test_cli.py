"""``esm run`` as users run it: a subprocess, signals, the quickstart example."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from esm.aws import AwsClients
from tests.daemon import ROOT, Daemon
from tests.support import Queues, eventually, unique

pytestmark = pytest.mark.integration


async def test_quickstart_runs_embedded_and_the_poison_order_reaches_the_dlq(
    daemons: list[Daemon],
) -> None:
    d = Daemon(["run", "examples/quickstart/esm.yaml", "--embedded"])
    daemons.append(d)
    await eventually(lambda: d.has("processed order 6"), timeout=30, what=d.output)
    for n in (1, 2, 4, 5, 6):
        assert d.has(f"processed order {n} ")
    assert d.has("order 3 is poison")
    await eventually(
        lambda: d.has("embedded queue orders-dlq: 1 visible"), timeout=30, what="the DLQ"
    )
    # send.py reaches the same emulator at the URL the daemon logged
    url = re.search(r"embedded AWS emulator \(moto\) at (\S+)", d.output)
    assert url is not None
    sent = subprocess.run(
        [sys.executable, "examples/quickstart/send.py", "--endpoint", url.group(1), "--count", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "sent 2 order(s)" in sent.stdout
    await eventually(lambda: d.has("processed order 101 "), timeout=20, what="send.py's orders")
    assert d.stop(signal.SIGINT) == 0
    assert d.has("engine stopped")
    assert sum(line.count("processed order 3 ") for line in d.lines) == 0


HANDLER = """
import pathlib, time
OUT = pathlib.Path(__file__).parent / "processed.txt"

def handle(event, context):
    (pathlib.Path(__file__).parent / "started").touch()
    time.sleep(1.5)
    with OUT.open("a") as f:
        for r in event["Records"]:
            f.write(r["body"] + "\\n")
"""


async def test_sigterm_lets_the_in_flight_batch_finish_and_exits_cleanly(
    tmp_path: Path, moto_url: str, aws: AwsClients, daemons: list[Daemon]
) -> None:
    queues = Queues(aws)
    name = unique("sigterm")
    arn, url = await queues.create(name, visibility_s=30)
    await queues.send(url, ["a", "b", "c"])
    (tmp_path / "handler.py").write_text(HANDLER)
    (tmp_path / "esm.yaml").write_text(
        f"""
Settings: {{Region: us-east-1}}
Functions:
  work: {{Target: "python:handler.handle", Timeout: 10}}
EventSourceMappings:
  - {{FunctionName: work, EventSourceArn: "{arn}", BatchSize: 10}}
"""
    )
    d = Daemon(["run", str(tmp_path / "esm.yaml")], env={"AWS_ENDPOINT_URL": moto_url})
    daemons.append(d)
    await eventually(lambda: (tmp_path / "started").exists(), timeout=20, what=d.output)
    started = time.monotonic()
    assert d.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    processed = (tmp_path / "processed.txt").read_text().split()
    assert processed  # the in-flight batch finished …
    assert await queues.total(url) == 3 - len(processed)  # … and was deleted; the rest is left
    assert d.has("SIGTERM: stopping")


async def test_a_mapping_that_fails_lambdas_checks_stops_esm_run_with_the_aws_message(
    tmp_path: Path, moto_url: str, aws: AwsClients
) -> None:
    queues = Queues(aws)
    arn, _ = await queues.create(unique("vis"), visibility_s=5)
    (tmp_path / "esm.yaml").write_text(
        f"""
Functions:
  work: {{Target: "python:handler.handle", Timeout: 30}}
EventSourceMappings:
  - {{FunctionName: work, EventSourceArn: "{arn}"}}
"""
    )
    proc = subprocess.run(
        [sys.executable, "-m", "esm.cli", "run", str(tmp_path / "esm.yaml")],
        cwd=ROOT,
        env={**os.environ, "AWS_ENDPOINT_URL": moto_url},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert (
        "InvalidParameterValueException: Queue visibility timeout: 5 seconds is less than "
        "Function timeout: 30 seconds" in proc.stderr
    )


def test_esm_run_refuses_a_bad_config_before_starting(tmp_path: Path) -> None:
    (tmp_path / "esm.yaml").write_text("Functions:\n  f: {Target: 'python:h.h', Timeout: 0}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "esm.cli", "run", str(tmp_path / "esm.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert f"{tmp_path / 'esm.yaml'}: Functions.f.Timeout: must be between 1 and 900 (got 0)" in (
        proc.stderr
    )
