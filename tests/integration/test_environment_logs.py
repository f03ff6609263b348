"""``LoggingConfig`` for a Python function in execution environments: with ``LogFormat: JSON``
the runtime client writes the application's log records as JSON objects, one a line, with
Lambda's fields, and esm's log and ``Invoke``'s ``LogType=Tail`` carry them as written."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import boto3
import pytest

from esm.api import serve
from esm.aws import AwsClients
from esm.engine import Engine
from tests.conftest import REGION
from tests.support import engine_config

pytestmark = pytest.mark.integration

APP = """
import logging

log = logging.getLogger("orders")


def handler(event, context):
    print("plain print")
    log.info("order %s taken", event["n"])
    log.warning("stock low")
    if event.get("fail"):
        raise ValueError("bad order")
    return {"request_id": context.aws_request_id}
"""
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def function(code: Path, **logging_config: str) -> dict[str, Any]:
    return {
        "Runtime": "python3.11",
        "Handler": "app.handler",
        "CodeUri": str(code),
        "LoggingConfig": logging_config,
    }


def invoke(url: str, name: str, event: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    client = boto3.client(
        "lambda",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    resp = client.invoke(FunctionName=name, Payload=json.dumps(event), LogType="Tail")
    return json.loads(resp["Payload"].read()), base64.b64decode(resp["LogResult"]).decode().split(
        "\n"
    )


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


async def test_json_log_format_is_honoured(
    tmp_path: Path, aws: AwsClients, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="esm.function")
    code = tmp_path / "src"
    code.mkdir()
    (code / "app.py").write_text(textwrap.dedent(APP))
    config = engine_config(
        {
            "structured": function(code, LogFormat="JSON"),
            "quiet": function(code, LogFormat="JSON", ApplicationLogLevel="WARN"),
            "text": function(code, LogFormat="Text"),
        },
        [],
    )
    engine = Engine(config, aws=aws)
    await engine.start()
    api = await serve(engine, port=0)
    try:
        body, tail = await asyncio.to_thread(invoke, api.url, "structured", {"n": 7})
        failed, failed_tail = await asyncio.to_thread(
            invoke, api.url, "structured", {"n": 8, "fail": True}
        )
        _, quiet_tail = await asyncio.to_thread(invoke, api.url, "quiet", {"n": 9})
        _, text_tail = await asyncio.to_thread(invoke, api.url, "text", {"n": 10})
    finally:
        await api.aclose()
        await engine.aclose()

    rid = body["request_id"]
    records = json_lines(tail)
    assert [(r["level"], r["message"], r["logger"], r["requestId"]) for r in records] == [
        ("INFO", "order 7 taken", "orders", rid),
        ("WARNING", "stock low", "orders", rid),
    ]
    assert all(ISO.fullmatch(r["timestamp"]) for r in records)
    assert "plain print" in tail  # print() stays plain text, as Lambda documents

    # a failure: the runtime logs its error as one JSON object too
    (error,) = [r for r in json_lines(failed_tail) if r["level"] == "ERROR"]
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "bad order"
    assert error["requestId"] == failed["requestId"]
    assert any("raise ValueError" in frame for frame in error["stackTrace"])

    # ApplicationLogLevel filters the application's records
    assert [r["message"] for r in json_lines(quiet_tail)] == ["stock low"]
    # Text: the runtime's own text lines, no JSON
    assert json_lines(text_tail) == []
    assert any(
        line.startswith("[WARNING]\t") and line.endswith("\tstock low") for line in text_tail
    )

    # esm's own log: each line tagged with the request id, the JSON as the runtime wrote it
    tagged = [r.getMessage() for r in caplog.records if r.name == "esm.function.structured"]
    ours = [m.removeprefix(f"{rid} ") for m in tagged if m.startswith(f"{rid} {{")]
    assert [json.loads(m)["message"] for m in ours] == ["order 7 taken", "stock low"]
