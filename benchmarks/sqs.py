"""P1: SQS throughput through esm beside a plain aiobotocore receive/delete loop, same run.

Both consume the same number of messages from a fresh queue on the same emulator, with the same
concurrency and the same 20 ms handler (an ``async`` sleep), while a paced producer keeps the
queue's depth bounded (moto slows down as a queue grows). Prints one JSON object.

    python -m benchmarks.sqs [--messages 2000] [--concurrency 10] [--handler-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

from benchmarks import handlers
from benchmarks.machine import machine
from esm.aws import AwsClients
from esm.config import parse_config
from esm.engine import Engine

REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """moto's server in its own process, so it does not share the GIL with what is measured."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto's server did not start")


async def produce(client: Any, url: str, total: int, consumed: list[int], depth: int) -> None:
    """Send ``total`` messages in tens, never more than ``depth`` ahead of the consumer."""
    sent = 0
    while sent < total:
        if sent - consumed[0] >= depth:
            await asyncio.sleep(0.005)
            continue
        n = min(10, total - sent)
        await client.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": f"{sent + i}"} for i in range(n)],
        )
        sent += n


async def baseline(client: Any, url: str, total: int, concurrency: int, handler_s: float) -> float:
    consumed = [0]

    async def worker() -> None:
        while consumed[0] < total:
            resp = await client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            msgs = resp.get("Messages", [])
            if not msgs:
                continue
            await asyncio.sleep(handler_s)
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)
            ]
            await client.delete_message_batch(QueueUrl=url, Entries=entries)
            consumed[0] += len(msgs)

    producer = asyncio.create_task(produce(client, url, total, consumed, depth=200))
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await producer
    return total / elapsed


async def through_esm(
    aws: AwsClients, client: Any, arn: str, url: str, total: int, concurrency: int
) -> float:
    name = "bench-" + uuid.uuid4().hex[:8]
    config = parse_config(
        {
            "Settings": {"Region": REGION},
            "Functions": {name: {"Target": "python:benchmarks.handlers.sleep_async"}},
            "EventSourceMappings": [
                {
                    "FunctionName": name,
                    "EventSourceArn": arn,
                    "BatchSize": 10,
                    "ScalingConfig": {"MaximumConcurrency": max(2, concurrency)},
                }
            ],
        }
    )
    handlers.COUNT[name] = 0
    consumed = [0]
    engine = Engine(config, aws=aws)
    await engine.start()
    producer = asyncio.create_task(produce(client, url, total, consumed, depth=200))
    started = time.perf_counter()
    try:
        while consumed[0] < total:
            consumed[0] = int(engine.metrics.get("DeletedEventCount"))
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
    finally:
        await engine.aclose()
        await producer
    return total / elapsed


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    handlers.SLEEP_S = args.handler_ms / 1000
    proc, endpoint = start_moto()
    aws = AwsClients(endpoint_url=endpoint)
    try:
        client = await aws.client("sqs", REGION)

        async def fresh_queue() -> tuple[str, str]:
            name = "bench-" + uuid.uuid4().hex[:8]
            url = (await client.create_queue(QueueName=name))["QueueUrl"]
            attrs = await client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            return attrs["Attributes"]["QueueArn"], url

        _, url = await fresh_queue()
        base = await baseline(client, url, args.messages, args.concurrency, handlers.SLEEP_S)
        arn, url = await fresh_queue()
        esm_rate = await through_esm(aws, client, arn, url, args.messages, args.concurrency)
    finally:
        await aws.aclose()
        proc.terminate()
        proc.wait(10)
    return {
        "benchmark": "P1-sqs",
        "emulator": "moto",
        "parameters": {
            "messages": args.messages,
            "concurrency": args.concurrency,
            "handler_ms": args.handler_ms,
            "batch_size": 10,
            "max_depth": 200,
        },
        "esm_msgs_per_s": round(esm_rate, 1),
        "baseline_msgs_per_s": round(base, 1),
        "ratio": round(esm_rate / base, 3),
        "target_ratio": 0.9,
        "machine": machine(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--handler-ms", type=float, default=20.0)
    print(json.dumps(asyncio.run(main_async(p.parse_args()))))


if __name__ == "__main__":
    main()
