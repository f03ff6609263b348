"""How far past ``MemorySize`` an execution environment gets before esm's watchdog kills it, and
what one sample of its memory costs.

A Python and a Node.js function each allocate (and write) ``--step-mb`` every ``--pause-ms``
under ``MemorySize: 128`` until they are killed; the ``REPORT`` line's ``Max Memory Used`` says
where. Then ``resident_mb`` is timed on a live environment. Prints one JSON object per runtime.

    python -m benchmarks.memory_limit [--step-mb 8] [--pause-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

from esm.aws import AwsClients
from esm.clock import RealClock
from esm.config import FunctionConfig
from esm.environments import EnvironmentTarget, resident_mb
from esm.functions import build_function

PYTHON = """
import time
held = []
def handler(event, context):
    while True:
        held.append(b"x" * (event["step_mb"] * 1024 * 1024))
        time.sleep(event["pause_ms"] / 1000)
"""
NODE = """
const held = [];
exports.handler = async (event) => {
  for (;;) {
    held.push(Buffer.alloc(event.step_mb * 1024 * 1024, 1));
    await new Promise((r) => setTimeout(r, event.pause_ms));
  }
};
"""


async def measure(runtime: str, source: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="esm-memory-"))
    (folder / name).write_text(source)
    stem = name.split(".")[0]
    doc = {"Runtime": runtime, "Handler": f"{stem}.handler", "CodeUri": str(folder)}
    config = FunctionConfig.model_validate({**doc, "MemorySize": 128, "Timeout": 60})
    aws = AwsClients(endpoint_url="http://127.0.0.1:1")
    fn = build_function(
        "greedy", config, region="us-east-1", account="0" * 12, clock=RealClock(), aws=aws
    )
    try:
        out = await fn.invoke(
            json.dumps({"step_mb": args.step_mb, "pause_ms": args.pause_ms}).encode()
        )
        match = re.search(r"Max Memory Used: (\d+) MB", getattr(out, "log", "") or "")
        error = json.loads(out.payload).get("errorType") if hasattr(out, "payload") else None
        # a live environment's sample cost: start one that idles
        (folder / name).write_text(
            "exports.handler = async () => 1;"
            if runtime.startswith("nodejs")
            else "def handler(e, c):\n    return 1\n"
        )
        await fn.invoke(b"{}")
        target = fn._target
        assert isinstance(target, EnvironmentTarget)
        pid = target.environments[0].pid
        assert pid is not None
        runs = 2000
        sample_us = timeit.timeit(lambda: resident_mb(pid), number=runs) / runs * 1e6
    finally:
        await fn.aclose()
        await aws.aclose()
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "benchmark": "memory_limit",
        "runtime": runtime,
        "memory_size_mb": 128,
        "step_mb": args.step_mb,
        "pause_ms": args.pause_ms,
        "error_type": error,
        "max_memory_used_mb": int(match[1]) if match else None,
        "sample_us": round(sample_us, 1),
    }


async def main(args: argparse.Namespace) -> None:
    print(json.dumps(await measure("python3.11", PYTHON, "app.py", args)))
    if shutil.which("node"):
        print(json.dumps(await measure("nodejs20.x", NODE, "index.js", args)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-mb", type=int, default=8)
    parser.add_argument("--pause-ms", type=int, default=5)
    asyncio.run(main(parser.parse_args(sys.argv[1:])))
