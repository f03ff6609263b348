"""LocalStack's own event source mapping poller, driven outside LocalStack (no gateway, no
containers), and the handler both sides of ``benchmarks.localstack`` call.

This module runs in two places:

- in the LocalStack venv (Python ≥ 3.13, ``localstack-core``), as
  ``python -m benchmarks.localstack_driver SPEC_JSON``: it builds what LocalStack's
  ``EsmWorkerFactory`` builds for a mapping — an ``SqsPoller`` or ``KinesisPoller`` with a boto3
  client on the emulator, an ``EsmEventProcessor`` (with the no-op pipe logger) and an
  ``EsmWorker`` running the poll loop in its thread — except that the ``Sender`` is
  :class:`InProcessSender`, which calls :meth:`Tally.handle` in process instead of Lambda's
  Invoke. It prints one JSON line: messages delivered, seconds, CPU seconds of this process,
  duplicates;
- in esm's process: :func:`esm_sqs` and :func:`esm_kinesis` are ``python:`` targets calling the
  same :meth:`Tally.handle`.

So it imports nothing but the standard library at module level (LocalStack's modules are imported
inside :func:`run_localstack`, esm's never).

The handler sleeps ``handler_ms`` (``time.sleep`` in LocalStack's poller thread, ``asyncio.sleep``
on esm's loop: each side's natural way to wait 20 ms) and counts every record it is given by its
id (SQS ``messageId``, Kinesis ``sequenceNumber``). With ``fail_every`` N, a message whose body's
``"i"`` is a multiple of N fails the first time it is seen (reported in ``batchItemFailures``) and
succeeds the second time; a failed delivery is not counted as delivered.

Where LocalStack needs its own services, the driver stands in: ``get_queue_url`` (LocalStack
asks its own SQS) is given the URL; the worker's state goes into LocalStack's in-memory Lambda
store under the mapping's UUID, and its function look-up (only for the store's account and region)
is answered without a function; kinesalite refuses the ``StreamARN`` parameter LocalStack's Kinesis
poller sends, so a botocore ``provide-client-params`` hook on LocalStack's client rewrites it to
``StreamName`` (and drops it from ``GetRecords``, where the iterator names the stream).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any


class Tally:
    """Deliveries counted per record id; ``done`` is set once ``expected`` distinct ids went
    through successfully."""

    def __init__(self, expected: int, handler_ms: float, fail_every: int = 0) -> None:
        self.expected = expected
        self.handler_s = handler_ms / 1000
        self.fail_every = fail_every
        self.delivered: Counter[str] = Counter()
        self.failed_once: set[str] = set()
        self.invocations = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.first_at: float | None = None

    def handle(self, records: list[dict[str, Any]]) -> list[str]:
        """Count ``records``; return the ids that fail this time."""
        failures: list[str] = []
        with self.lock:
            if self.first_at is None:
                self.first_at = time.perf_counter()
            self.invocations += 1
            for r in records:
                rid = record_id(r)
                if self.fail_every and rid not in self.failed_once:
                    i = int(json.loads(r["body"])["i"])
                    if i % self.fail_every == 0:
                        self.failed_once.add(rid)
                        failures.append(rid)
                        continue
                self.delivered[rid] += 1
            if len(self.delivered) >= self.expected:
                self.done.set()
        return failures

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {
                "delivered_ids": len(self.delivered),
                "duplicates": sum(n - 1 for n in self.delivered.values() if n > 1),
                "failed_once": len(self.failed_once),
                "invocations": self.invocations,
            }


def record_id(record: dict[str, Any]) -> str:
    if "messageId" in record:
        return str(record["messageId"])
    return str(record["kinesis"]["sequenceNumber"])


# -- esm's side: python: targets ------------------------------------------------------------------

TALLY: Tally | None = None
"""Set by ``benchmarks.localstack`` before each esm run."""


async def esm_sqs(event: dict[str, Any], context: Any) -> dict[str, Any] | None:
    assert TALLY is not None
    await asyncio.sleep(TALLY.handler_s)
    failed = TALLY.handle(event["Records"])
    if failed:
        return {"batchItemFailures": [{"itemIdentifier": rid} for rid in failed]}
    return None


async def esm_kinesis(event: dict[str, Any], context: Any) -> None:
    assert TALLY is not None
    if TALLY.handler_s:
        await asyncio.sleep(TALLY.handler_s)
    TALLY.handle(event["Records"])


# -- LocalStack's side ----------------------------------------------------------------------------


class _PollErrors(logging.Handler):
    """The poller's ERROR logs (LocalStack backs off and retries them forever)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.last: str | None = None
        self._first_at: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.last = record.getMessage()[:300]
        if self._first_at is None:
            self._first_at = time.monotonic()

    def stuck(self) -> bool:
        return self.count >= 5 and time.monotonic() - (self._first_at or 0.0) > 20


def _kinesis_stream_name(params: dict[str, Any], **_: Any) -> None:
    """kinesalite knows ``StreamName`` only: rewrite LocalStack's ``StreamARN``."""
    arn = params.pop("StreamARN", None)
    if arn is not None and "ShardIterator" not in params:
        params["StreamName"] = arn.rsplit("/", 1)[-1]


def run_localstack(spec: dict[str, Any]) -> dict[str, Any]:
    # LocalStack reads its settings from the environment when its config module is imported.
    os.environ["LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC"] = str(spec["poll_interval_s"])
    import boto3
    import botocore.config
    from localstack.services.lambda_.event_source_mapping import esm_worker
    from localstack.services.lambda_.event_source_mapping.esm_event_processor import (
        EsmEventProcessor,
    )
    from localstack.services.lambda_.event_source_mapping.pipe_loggers.noops_pipe_logger import (
        NoOpsPipeLogger,
    )
    from localstack.services.lambda_.event_source_mapping.pollers import sqs_poller
    from localstack.services.lambda_.event_source_mapping.pollers.kinesis_poller import (
        KinesisPoller,
    )
    from localstack.services.lambda_.event_source_mapping.senders.sender import (
        PartialFailureSenderError,
        Sender,
    )
    from localstack.services.lambda_.invocation.models import lambda_stores

    tally = Tally(spec["expected"], spec["handler_ms"], spec.get("fail_every", 0))
    report_failures = bool(spec.get("fail_every"))

    class InProcessSender(Sender):
        """LocalStack's ``LambdaSender`` without the Invoke: the payload goes through a JSON
        round trip (as an invoke's would) to the handler in this process."""

        def event_target(self) -> str:
            return "aws:lambda"

        def send_events(self, events: Any) -> dict[str, Any] | None:
            payload = json.loads(json.dumps({"Records": events}))
            if tally.handler_s:
                time.sleep(tally.handler_s)
            failed = tally.handle(payload["Records"])
            if failed and report_failures:
                result = {"batchItemFailures": [{"itemIdentifier": rid} for rid in failed]}
                raise PartialFailureSenderError(
                    error={"message": "Target invocation failed partially."},
                    partial_failure_payload=result,
                )
            return None

    region, account = spec["region"], spec["account"]
    function_arn = f"arn:aws:lambda:{region}:{account}:function:bench"
    mapping_uuid = spec["uuid"]
    source_arn = spec["source_arn"]
    client_config = botocore.config.Config(
        retries={"total_max_attempts": 1}, read_timeout=65, tcp_keepalive=True
    )
    service = "sqs" if spec["kind"] == "sqs" else "kinesis"
    client = boto3.client(
        service, region_name=region, endpoint_url=spec["endpoint"], config=client_config
    )
    processor = EsmEventProcessor(
        sender=InProcessSender(function_arn, target_client=object()),
        logger=NoOpsPipeLogger(),
    )
    poller: Any
    if service == "sqs":
        queue_url = spec["queue_url"]
        sqs_poller.get_queue_url = lambda arn: queue_url  # LocalStack would ask its own SQS
        poller = sqs_poller.SqsPoller(
            source_arn=source_arn,
            source_parameters={
                "FilterCriteria": {"Filters": []},
                "SqsQueueParameters": {
                    "BatchSize": spec["batch_size"],
                    "MaximumBatchingWindowInSeconds": 0,
                },
            },
            source_client=client,
            processor=processor,
        )
        reason = esm_worker.EsmStateReason.USER_INITIATED
    else:
        client.meta.events.register("provide-client-params.kinesis.*", _kinesis_stream_name)
        poller = KinesisPoller(
            esm_uuid=mapping_uuid,
            source_arn=source_arn,
            source_parameters={
                "FilterCriteria": {"Filters": []},
                "KinesisStreamParameters": {
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": spec["batch_size"],
                    "MaximumBatchingWindowInSeconds": 0,
                    "MaximumRetryAttempts": -1,
                    "MaximumRecordAgeInSeconds": -1,
                },
            },
            source_client=client,
            processor=processor,
            invoke_identity_arn=f"arn:aws:iam::{account}:role/bench",
            kinesis_namespace=True,
        )
        reason = esm_worker.EsmStateReason.USER_ACTION
    config = {
        "UUID": mapping_uuid,
        "FunctionArn": function_arn,
        "EventSourceArn": source_arn,
        "BatchSize": spec["batch_size"],
    }
    lambda_stores[account][region].event_source_mappings[mapping_uuid] = dict(config)
    # the worker looks its function up only for the store's account and region
    where = SimpleNamespace(id=SimpleNamespace(account=account, region=region))
    esm_worker.get_function_version_from_arn = lambda arn: where
    worker = esm_worker.EsmWorker(config, poller=poller, enabled=True, user_state_reason=reason)

    errors = _PollErrors()
    logging.getLogger("localstack.services.lambda_.event_source_mapping").addHandler(errors)
    cpu0 = time.process_time()
    started = time.perf_counter()
    worker.create()
    deadline = started + spec["timeout_s"]
    finished = False
    while time.perf_counter() < deadline and not finished:
        finished = tally.done.wait(1.0)
        if not finished and errors.stuck():
            break  # the poller keeps failing (the emulator gone?): say why instead of waiting
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    # a short grace: a duplicate arriving just after the last new id is still seen
    time.sleep(spec.get("grace_s", 0.3))
    worker.stop_for_shutdown()
    worker.stop()
    out = tally.summary()
    out.update(
        {
            "poll_errors": errors.count,
            "last_poll_error": errors.last,
            "completed": finished,
            "seconds": elapsed,
            "cpu_s": cpu,
            "seconds_to_first_batch": None if tally.first_at is None else tally.first_at - started,
        }
    )
    return out


def main() -> None:
    spec = json.loads(sys.argv[1])
    print(json.dumps(run_localstack(spec)), flush=True)
    # the poller thread may sit in a long poll: do not wait for it
    os._exit(0)


if __name__ == "__main__":
    main()
