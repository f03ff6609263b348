"""What /metrics exports and what each invocation's log line says, as an operator reads them:
Prometheus text parsed by prometheus_client's own parser, log lines as text and as JSON."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from esm.invocation_log import LoggedInvocation, text
from esm.logs import JsonFormatter
from esm.metrics import SPECS, Metrics, prometheus_text
from esm.testing import Harness

A = "arn:aws:sqs:us-east-1:000000000000:"


def parsed(metrics: Metrics) -> dict[str, Any]:
    """{family name: family} of the exposition, read back by Prometheus's parser."""
    families = text_string_to_metric_families(prometheus_text(metrics).decode())
    return {f.name: f for f in families}


def value(metrics: Metrics, sample: str, **labels: str) -> float:
    for family in parsed(metrics).values():
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    raise AssertionError(f"no sample {sample}{labels}")


def test_every_metric_has_help_and_type_and_counters_are_exact_past_a_million() -> None:
    metrics = Metrics()
    metrics.function("orders")
    metrics.incr("Invocations", 1_234_567, function_name="orders")
    metrics.incr("Invocations", function_name="orders")
    text_out = prometheus_text(metrics).decode()
    assert "1.23457e+06" not in text_out
    assert value(metrics, "esm_Invocations_total", function_name="orders") == 1_234_568
    assert 'esm_Invocations_total{function_name="orders"} 1.234568e+06' in text_out
    families = parsed(metrics)
    for name, spec in SPECS.items():
        family = families[f"esm_{name}"]
        assert family.type == spec.kind
        assert family.documentation == spec.help
        assert f"# HELP esm_{name}" in text_out
    assert families["esm_Duration"].type == "histogram"


def test_an_unknown_metric_or_wrong_labels_is_refused() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="unknown metric 'Nope'"):
        metrics.incr("Nope", function_name="f")
    with pytest.raises(ValueError, match="takes labels"):
        metrics.incr("PolledEventCount", function_name="f")


def test_mapping_series_exist_at_zero_and_go_with_the_mapping() -> None:
    metrics = Metrics()
    metrics.keep_mappings([("orders", "u-1")])
    labels = {"function_name": "orders", "uuid": "u-1"}
    assert value(metrics, "esm_PolledEventCount_total", **labels) == 0
    assert value(metrics, "esm_BatchSize_count", **labels) == 0
    metrics.keep_mappings([])
    with pytest.raises(AssertionError):
        value(metrics, "esm_PolledEventCount_total", **labels)


def sqs_config() -> dict[str, Any]:
    return {
        "Functions": {"orders": {"Target": "python:handlers.placeholder", "Timeout": 10}},
        "EventSourceMappings": [
            {
                "FunctionName": "orders",
                "EventSourceArn": A + "orders",
                "BatchSize": 10,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }
        ],
        "Resources": {
            "Orders": {
                "Type": "AWS::SQS::Queue",
                "Properties": {"QueueName": "orders", "VisibilityTimeout": 60},
            }
        },
    }


def report_poison(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failed = [r["messageId"] for r in event["Records"] if r["body"] == "poison"]
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}


async def test_an_sqs_batch_is_counted_timed_and_logged_with_its_fate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="esm.invocation")
    async with Harness(sqs_config(), functions={"orders": report_poison}) as h:
        uuid = h.mapping("orders").uuid
        labels = {"function_name": "orders", "uuid": uuid}
        # every series of the configured function and mapping exists before any message
        assert value(h.metrics, "esm_Invocations_total", function_name="orders") == 0
        assert value(h.metrics, "esm_DeletedEventCount_total", **labels) == 0
        assert value(h.metrics, "esm_ConcurrentExecutions", function_name="orders") == 0
        ids = h.put_sqs_messages("orders", ["a", "poison", "b"])
        await h.run_until(lambda: h.metrics.get("DeletedEventCount") == 2)
        assert value(h.metrics, "esm_BatchSize_count", **labels) == 1
        assert value(h.metrics, "esm_BatchSize_sum", **labels) == 3
        assert value(h.metrics, "esm_Duration_count", function_name="orders") == 1
        first = h.metrics.invocations.recent(uuid)[0]
    assert first.outcome == "partial" and first.failed == 1
    assert (first.deleted, first.left) == (2, 1)
    assert first.failed_ids == (ids[1],)
    assert first.ids == tuple(ids)
    line = next(r.getMessage() for r in caplog.records if r.name == "esm.invocation")
    assert line.startswith("invocation function=orders ")
    assert f"mapping={uuid} request_id={first.request_id} " in line
    assert f"batch=3 first={ids[0]} last={ids[2]} outcome=partial failed=1 duration_ms=" in line
    assert line.endswith(" deleted=2 left=1")


async def test_async_event_age_goes_back_to_zero_once_the_queue_drains(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="esm.invocation")
    config = {
        "Functions": {
            "jobs": {
                "Target": "python:handlers.placeholder",
                "EventInvokeConfig": {"MaximumRetryAttempts": 0},
                "DeadLetterConfig": {"TargetArn": A + "jobs-dlq"},
            }
        },
        "Resources": {"Dlq": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "jobs-dlq"}}},
    }

    def fail(event: Any, context: Any) -> None:
        raise KeyError("order")

    async with Harness(config, functions={"jobs": fail}) as h:
        assert value(h.metrics, "esm_AsyncEventAge", function_name="jobs") == 0
        await h.advance(1)
        request_id = await h.invoke_async("jobs", {"n": 1})
        await h.advance(5)  # the event waited before its invocation
        await h.run_until_idle()
        assert h.metrics.get("AsyncEventsDropped") == 1
        assert value(h.metrics, "esm_AsyncEventAge", function_name="jobs") == 0
        (inv,) = h.metrics.invocations.recent("async:jobs")
    assert inv.request_id == request_id
    assert (inv.outcome, inv.error, inv.discarded) == ("error", "KeyError", "RetriesExhausted")
    assert inv.dead_letter == A + "jobs-dlq"
    line = next(r.getMessage() for r in caplog.records if r.name == "esm.invocation")
    assert "mapping=async" in line and f"dead_letter={A}jobs-dlq" in line


def test_a_value_with_spaces_is_quoted_and_json_has_the_same_keys() -> None:
    inv = LoggedInvocation(
        1.0, "f", "async", "r-1", "throttled", 2.5, error="Rate Exceeded. (x)", retry_in_s=60.0
    )
    assert text(inv.fields()) == (
        "function=f mapping=async request_id=r-1 batch=0 outcome=throttled "
        'error="Rate Exceeded. (x)" duration_ms=2.5 retry_in_s=60.0'
    )
    record = logging.LogRecord("esm.invocation", logging.INFO, "", 0, "invocation %s", ("x",), None)
    record.esm = {"event": "invocation", **inv.fields()}
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "INFO" and doc["logger"] == "esm.invocation"
    assert doc["event"] == "invocation" and doc["request_id"] == "r-1"
    assert doc["retry_in_s"] == 60.0 and doc["error"] == "Rate Exceeded. (x)"


async def test_a_shard_s_lines_say_bisected_retried_discarded_and_checkpointed() -> None:
    kinesis = "arn:aws:kinesis:us-east-1:000000000000:stream/ledger"
    config = {
        "Functions": {"ledger": {"Target": "python:handlers.placeholder"}},
        "EventSourceMappings": [
            {
                "FunctionName": "ledger",
                "EventSourceArn": kinesis,
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 4,
                "BisectBatchOnFunctionError": True,
                "MaximumRetryAttempts": 1,
                "DestinationConfig": {"OnFailure": {"Destination": A + "ledger-failures"}},
            }
        ],
    }

    def ledger(event: dict[str, Any], context: Any) -> None:
        if any(b"poison" in base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]):
            raise ValueError("poison")

    async with Harness(config, functions={"ledger": ledger}) as h:
        seqs = h.put_kinesis_records("ledger", ["a", "b", "poison", "c"])
        await h.run_until_idle()
        uuid = h.mapping("ledger").uuid
        log = [inv.fields() for inv in h.metrics.invocations.recent(uuid)]

    def brief(f: dict[str, Any]) -> tuple[Any, ...]:
        nxt = {k: f[k] for k in ("bisected", "retry_in_s", "discarded", "checkpoint") if k in f}
        return (f["first"], f["batch"], f["outcome"], nxt)

    a, b, poison, c = seqs
    assert [brief(f) for f in log] == [
        (a, 4, "error", {"bisected": True}),
        (a, 2, "ok", {"checkpoint": b}),
        (poison, 2, "error", {"bisected": True}),
        (poison, 1, "error", {"retry_in_s": 1.0}),
        (poison, 1, "error", {"discarded": "RetryAttemptsExhausted", "checkpoint": poison}),
        (c, 1, "ok", {"checkpoint": c}),
    ]
    assert log[4]["destination"] == A + "ledger-failures" and log[4]["error"] == "ValueError"
