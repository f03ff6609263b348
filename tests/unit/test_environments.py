"""The pure parts of execution environments: the environment variables, REPORT lines, how a
runtime's end is worded, which environment is picked and which are reaped."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from esm.config import RESERVED_VARIABLES
from esm.environments import (
    RESERVED,
    Spec,
    exit_description,
    lambda_environment,
    pick_idle,
    reap_due,
    report_line,
    tail,
)
from esm.runtime_api import error_body


def spec(**kw: Any) -> Spec:
    base: dict[str, Any] = {
        "name": "orders",
        "arn": "arn:aws:lambda:eu-west-1:123456789012:function:orders",
        "runtime": "python3.12",
        "handler": "app.handler",
        "code_dir": Path("/code/orders"),
        "memory_mb": 256,
        "timeout_s": 3.0,
        "region": "eu-west-1",
    }
    return Spec(**{**base, **kw})


HOST = {
    "PATH": "/usr/bin",
    "HOME": "/root",
    "AWS_ENDPOINT_URL_SQS": "http://sqs:1",
    "AWS_ACCESS_KEY_ID": "AK",
    "AWS_SECRET_ACCESS_KEY": "SK",
    "AWS_PROFILE": "dev",
    "PYTHONPATH": "/esm",
}


def test_the_environment_holds_lambdas_variables_over_the_functions() -> None:
    env = lambda_environment(
        spec(variables={"TABLE": "t", "PYTHONPATH": "/mine"}, endpoint_url="http://moto:5000"),
        runtime_api="127.0.0.1:9001",
        log_stream="2024/01/31/[$LATEST]abc",
        runtime_dir="/rt",
        host=HOST,
    )
    assert env == {
        "PATH": "/usr/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_ENDPOINT_URL_SQS": "http://sqs:1",
        "AWS_ENDPOINT_URL": "http://moto:5000",
        "AWS_ACCESS_KEY_ID": "AK",
        "AWS_SECRET_ACCESS_KEY": "SK",
        "PYTHONPATH": "/mine",  # not reserved: the function's own wins, as on Lambda
        "TABLE": "t",
        "_HANDLER": "app.handler",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_NAME": "orders",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/orders",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/31/[$LATEST]abc",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "LAMBDA_TASK_ROOT": "/code/orders",
        "LAMBDA_RUNTIME_DIR": "/rt",
    }


def test_the_config_refuses_what_environments_reserve() -> None:
    assert RESERVED == RESERVED_VARIABLES


def test_report_line_as_lambda_prints_it() -> None:
    assert report_line("r1", 12.341, 128, 40, 150.5) == (
        "REPORT RequestId: r1\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB"
        "\tMax Memory Used: 40 MB\tInit Duration: 150.50 ms\t"
    )
    assert report_line("r1", 0.2, 128, None, None, "timeout").endswith(
        "Billed Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 0 MB\tStatus: timeout\t"
    )


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (0, "exit status 0"),
        (3, "exit status 3"),
        (-11, "signal: segmentation fault"),
        (-9, "signal: killed"),
        (-10, "signal: sigusr1"),
    ],
)
def test_exit_description(code: int, words: str) -> None:
    assert exit_description(code) == words


def test_tail_keeps_the_last_4_kb() -> None:
    lines = [f"line {i:04d} " + "x" * 90 for i in range(100)]
    text = tail(lines)
    assert len(text.encode()) == 4096
    assert text.endswith(lines[-1] + "\n")


def test_the_most_recently_used_is_picked_and_the_long_idle_reaped() -> None:
    a, b, c = (SimpleNamespace(last_used=t) for t in (10.0, 30.0, 20.0))
    assert pick_idle([a, b, c]) is b  # type: ignore[list-item]
    assert pick_idle([]) is None
    assert reap_due([a, b, c], now=80.0, idle_s=60) == [a, c]  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("raw", "header", "expected"),
    [
        (
            b'{"errorMessage": "m", "errorType": "E"}',
            None,
            ("E", b'{"errorMessage": "m", "errorType": "E"}'),
        ),
        (b'{"errorMessage": "m"}', "H", ("H", b'{"errorMessage": "m"}')),
        (
            b"plain text",
            None,
            ("Runtime.Unknown", b'{"errorMessage":"plain text","errorType":"Runtime.Unknown"}'),
        ),
    ],
)
def test_error_bodies(raw: bytes, header: str | None, expected: tuple[str, bytes]) -> None:
    assert error_body(raw, header) == expected
