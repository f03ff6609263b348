"""MemorySize, enforced: an environment that grows past it is killed, as Lambda's sandbox is,
and the invocation fails with ``Runtime.OutOfMemory``; REPORT says how much it used."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from esm.functions import Function, FunctionError
from tests.integration.test_environments import make, payload, write_code
from tests.integration.test_node_environments import write

__all__ = ["make"]  # the fixture, shared

pytestmark = pytest.mark.integration

GREEDY = """
import time
def handler(event, context):
    chunks = []
    for _ in range(event["mb"] // 8):
        chunks.append(b"x" * (8 * 1024 * 1024))  # written, so resident
        time.sleep(0.005)
    return {"held_mb": 8 * len(chunks)}
"""


def max_memory_used(log: str | None) -> int:
    match = re.search(r"Max Memory Used: (\d+) MB", log or "")
    assert match, log
    return int(match[1])


async def test_a_python_function_past_its_memory_size_is_killed(
    tmp_path: Path, make: Callable[..., Function]
) -> None:
    fn = make("greedy", write_code(tmp_path / "src", GREEDY), MemorySize=128, Timeout=30)
    small = await fn.invoke(b'{"mb": 16}')
    assert payload(small) == {"held_mb": 16}
    assert 16 < max_memory_used(small.log) < 128
    out = await fn.invoke(b'{"mb": 1024}')
    assert isinstance(out, FunctionError)
    error = json.loads(out.payload)
    assert error["errorType"] == "Runtime.OutOfMemory"
    assert error["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    log = out.log or ""
    assert "Status: error\tError Type: Runtime.OutOfMemory" in log
    assert 128 <= max_memory_used(log) < 512  # killed soon after it passed 128 MB
    assert payload(await fn.invoke(b'{"mb": 8}')) == {"held_mb": 8}  # a fresh environment


@pytest.mark.skipif(shutil.which("node") is None, reason="no node on PATH")
async def test_a_node_function_past_its_memory_size_is_killed(
    tmp_path: Path, make: Callable[..., Function]
) -> None:
    code = write(
        tmp_path / "src",
        {
            "index.js": """
            const held = [];
            exports.handler = async (event) => {
              for (let i = 0; i < event.mb / 8; i++) {
                held.push(Buffer.alloc(8 * 1024 * 1024, 1));
                await new Promise((r) => setTimeout(r, 5));
              }
              return held.length;
            };
            """
        },
    )
    fn = make(
        "greedy", code, MemorySize=128, Timeout=30, Runtime="nodejs20.x", Handler="index.handler"
    )
    out = await fn.invoke(b'{"mb": 1024}')
    assert isinstance(out, FunctionError)
    assert json.loads(out.payload)["errorType"] == "Runtime.OutOfMemory"
    assert max_memory_used(out.log) >= 128
