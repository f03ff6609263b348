"""Config validation (docs/semantics.md §10.2 for SQS): every error names the file, the field and the rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from esm.cli import main
from esm.config import load_config, parse_config
from esm.errors import ConfigError
from esm.mappings import mapping_params

Q = "arn:aws:sqs:us-east-1:000000000000:orders"
FIFO = "arn:aws:sqs:us-east-1:000000000000:orders.fifo"
STREAM = "arn:aws:kinesis:us-east-1:000000000000:stream/events"


def cfg(mapping: dict[str, Any] | None = None, **function: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"Functions": {"orders": {"Target": "python:app.handler", **function}}}
    if mapping is not None:
        doc["EventSourceMappings"] = [{"FunctionName": "orders", "EventSourceArn": Q, **mapping}]
    return doc


def problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, "esm.yaml")
    return str(info.value).splitlines()


def test_sqs_defaults_follow_aws() -> None:
    m = parse_config(cfg({})).event_source_mappings[0]
    assert m.batch_size == 10
    assert m.window_s == 0
    assert m.enabled is True
    assert m.maximum_concurrency == 1250
    assert m.report_item_failures is False
    # stream-only settings are not an SQS mapping's parameters (they hold neutral values)
    assert "MaximumRetryAttempts" not in mapping_params(m)
    assert mapping_params(m) == {"FunctionName": "orders", "EventSourceArn": m.event_source_arn}
    fn = parse_config(cfg({})).functions["orders"]
    assert (fn.timeout_s, fn.memory_mb, fn.reserved_concurrency) == (3, 128, None)
    assert fn.event_invoke_config.maximum_retry_attempts == 2
    assert fn.event_invoke_config.maximum_event_age_s == 21600


def test_stream_defaults_follow_aws() -> None:
    doc = cfg({"EventSourceArn": STREAM, "StartingPosition": "LATEST"})
    m = parse_config(doc).event_source_mappings[0]
    assert (m.batch_size, m.window_s, m.parallelization_factor) == (100, 0, 1)
    assert (m.maximum_retry_attempts, m.maximum_record_age_s, m.bisect_on_error) == (-1, -1, False)


@pytest.mark.parametrize(
    ("mapping", "function", "expected"),
    [
        (
            {"BatchSize": 0},
            {},
            "EventSourceMappings[0].BatchSize: must be between 1 and 10000 (got 0)",
        ),
        (
            {"BatchSize": 10001, "MaximumBatchingWindowInSeconds": 1},
            {},
            "EventSourceMappings[0].BatchSize: must be between 1 and 10000 (got 10001)",
        ),
        (
            {"BatchSize": 11},
            {},
            "EventSourceMappings[0].MaximumBatchingWindowInSeconds: must be at least 1 when BatchSize "
            "is greater than 10 (BatchSize is 11)",
        ),
        (
            {"BatchSize": 100, "MaximumBatchingWindowInSeconds": 0},
            {},
            "EventSourceMappings[0].MaximumBatchingWindowInSeconds: must be at least 1",
        ),
        (
            {"MaximumBatchingWindowInSeconds": 301},
            {},
            "EventSourceMappings[0].MaximumBatchingWindowInSeconds: must be between 0 and 300 (got 301)",
        ),
        (
            {"EventSourceArn": FIFO, "BatchSize": 11, "MaximumBatchingWindowInSeconds": 1},
            {},
            "EventSourceMappings[0].BatchSize: must be at most 10 for FIFO queues (got 11)",
        ),
        (
            {"EventSourceArn": FIFO, "MaximumBatchingWindowInSeconds": 1},
            {},
            "EventSourceMappings[0].MaximumBatchingWindowInSeconds: not supported for FIFO queues",
        ),
        (
            {"StartingPosition": "LATEST"},
            {},
            "EventSourceMappings[0].StartingPosition: not supported for SQS event sources",
        ),
        (
            {"BisectBatchOnFunctionError": True},
            {},
            "EventSourceMappings[0].BisectBatchOnFunctionError: not supported for SQS event sources",
        ),
        (
            {"MaximumRetryAttempts": 3},
            {},
            "EventSourceMappings[0].MaximumRetryAttempts: not supported for SQS event sources",
        ),
        (
            {"ParallelizationFactor": 2},
            {},
            "EventSourceMappings[0].ParallelizationFactor: not supported for SQS event sources",
        ),
        (
            {"TumblingWindowInSeconds": 60},
            {},
            "EventSourceMappings[0].TumblingWindowInSeconds: not supported for SQS event sources",
        ),
        (
            {"DestinationConfig": {"OnFailure": {"Destination": Q}}},
            {},
            "EventSourceMappings[0].DestinationConfig: not supported for SQS event sources",
        ),
        (
            {"ScalingConfig": {"MaximumConcurrency": 1}},
            {},
            "EventSourceMappings[0].ScalingConfig.MaximumConcurrency: must be between 2 and 1000 (got 1)",
        ),
        (
            {"ScalingConfig": {"MaximumConcurrency": 1001}},
            {},
            "EventSourceMappings[0].ScalingConfig.MaximumConcurrency: must be between 2 and 1000",
        ),
        (
            {"FunctionResponseTypes": ["ReportItemFailures"]},
            {},
            "EventSourceMappings[0].FunctionResponseTypes[0]: Input should be 'ReportBatchItemFailures'",
        ),
        ({"Batchsize": 5}, {}, "EventSourceMappings[0].Batchsize: unknown property"),
        (
            {"FunctionName": "missing"},
            {},
            "EventSourceMappings[0].FunctionName: function 'missing' is not defined under Functions",
        ),
        (
            {"EventSourceArn": "arn:aws:s3:::bucket"},
            {},
            "EventSourceMappings[0].EventSourceArn: unsupported event source",
        ),
        ({"EventSourceArn": "orders"}, {}, "EventSourceMappings[0].EventSourceArn: not an ARN"),
        (
            {"FilterCriteria": {"Filters": [{"Pattern": "{not json"}]}},
            {},
            "EventSourceMappings[0].FilterCriteria.Filters[0].Pattern:",
        ),
        (
            {"FilterCriteria": {"Filters": [{"Pattern": "{}"}] * 6}},
            {},
            "EventSourceMappings[0].FilterCriteria.Filters: List should have at most 5 items",
        ),
        ({}, {"Timeout": 901}, "Functions.orders.Timeout: must be between 1 and 900 (got 901)"),
        ({}, {"Timeout": 0}, "Functions.orders.Timeout: must be between 1 and 900 (got 0)"),
        ({}, {"Target": "ftp://x"}, "Functions.orders.Target: must start with python:"),
        ({}, {"Target": "python:nodots"}, "Functions.orders.Target: python: targets are"),
        (
            {},
            {"ReservedConcurrentExecutions": -1},
            "Functions.orders.ReservedConcurrentExecutions: must be between 0 and 100000 (got -1)",
        ),
    ],
)
def test_each_rule_is_reported_with_file_field_and_rule(
    mapping: dict[str, Any], function: dict[str, Any], expected: str
) -> None:
    found = problems(cfg(mapping, **function))
    assert any(line.startswith(f"esm.yaml: {expected}") for line in found), found


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    doc = cfg({"BatchSize": 50, "StartingPosition": "LATEST", "BisectBatchOnFunctionError": True})
    found = problems(doc)
    assert len(found) == 3, found


def test_duplicate_mapping_for_the_same_function_and_queue_is_refused() -> None:
    doc = cfg({})
    doc["EventSourceMappings"].append({"FunctionName": "orders", "EventSourceArn": Q})
    assert problems(doc) == [
        "esm.yaml: EventSourceMappings[1]: duplicates EventSourceMappings[0]: one mapping per "
        "function and event source (ResourceConflictException)"
    ]


@pytest.mark.parametrize(
    "name",
    [
        "orders",
        "orders:$LATEST",
        "000000000000:function:orders",
        "us-east-1:000000000000:function:orders",
        "arn:aws:lambda:us-east-1:000000000000:function:orders",
        "arn:aws:lambda:us-east-1:000000000000:function:orders:live",
    ],
)
def test_function_name_in_every_lambda_form(name: str) -> None:
    config = parse_config(cfg({"FunctionName": name}))
    assert config.mapping_function(config.event_source_mappings[0]) == "orders"


def test_uuid_is_stable_and_distinct_per_source() -> None:
    a = parse_config(cfg({})).event_source_mappings[0].mapping_uuid("orders")
    b = parse_config(cfg({})).event_source_mappings[0].mapping_uuid("orders")
    c = parse_config(cfg({"EventSourceArn": Q + "2"})).event_source_mappings[0]
    assert a == b != c.mapping_uuid("orders")
    assert len(a) == 36


def test_yaml_errors_and_missing_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "esm.yaml"
    bad.write_text("Functions: [unclosed\n")
    with pytest.raises(ConfigError, match=r"esm.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"nope.yaml: cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_esm_validate_exits_non_zero_with_the_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "esm.yaml"
    path.write_text(
        "Functions:\n  orders: {Target: 'python:app.handler'}\n"
        f"EventSourceMappings:\n  - {{FunctionName: orders, EventSourceArn: '{FIFO}', BatchSize: 20}}\n"
    )
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: EventSourceMappings[0].BatchSize: must be at most 10 for FIFO queues" in err

    path.write_text(
        "Functions:\n  orders: {Target: 'python:app.handler'}\n"
        f"EventSourceMappings:\n  - {{FunctionName: orders, EventSourceArn: '{Q}', Enabled: false}}\n"
    )
    assert main(["validate", str(path)]) == 0
    assert "OK (1 function(s), 1 mapping(s), 0 enabled)" in capsys.readouterr().out


def test_api_limits_settings_have_defaults_and_ranges() -> None:
    settings = parse_config(cfg()).settings
    assert (settings.api_max_connections, settings.api_read_timeout_s) == (1024, 60.0)
    doc = {**cfg(), "Settings": {"ApiMaxConnections": 50, "ApiReadTimeoutSeconds": 2.5}}
    settings = parse_config(doc).settings
    assert (settings.api_max_connections, settings.api_read_timeout_s) == (50, 2.5)
    doc = {**cfg(), "Settings": {"ApiMaxConnections": 0, "ApiReadTimeoutSeconds": 0.5}}
    assert problems(doc) == [
        "esm.yaml: Settings.ApiMaxConnections: must be between 1 and 100000 (got 0)",
        "esm.yaml: Settings.ApiReadTimeoutSeconds: Input should be greater than or equal to 1",
    ]


# -- names that become Redis keys and S3 object keys ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("..", "Functions['..']"),
        ("a/b", "Functions['a/b']"),
        ("my.fn", "Functions['my.fn']"),
        ("x" * 65, f"Functions.{'x' * 65}"),
        ("y" * 81, f"Functions.{'y' * 81}"),
        ("fn:live", "Functions.fn:live"),
        ("", "Functions['']"),
    ],
)
def test_function_names_follow_lambdas_rule(name: str, shown: str) -> None:
    doc = {"Functions": {name: {"Target": "python:app.handler"}}}
    (line,) = problems(doc)
    assert line.startswith(
        f"esm.yaml: {shown}: a function name is 1 to 64 characters of a-z, A-Z, 0-9, - and _ "
        "(Lambda's) (got "
    )


@pytest.mark.parametrize("name", ["orders", "Orders-2_x", "a", "x" * 64])
def test_names_lambda_takes_are_taken(name: str) -> None:
    assert list(parse_config({"Functions": {name: {"Target": "python:a.b"}}}).functions) == [name]


@pytest.mark.parametrize(
    "uuid",
    [
        "../../../x:y",
        "nope",
        "5d0b4e4c-6a44-4f7e-9a5e-0e5e3c3a7e1",  # 35
        "5d0b4e4c6a444f7e9a5e0e5e3c3a7e11aaaa",  # 36, no dashes
        "5d0b4e4c-6a44-4f7e-9a5e-0e5e3c3a7e1g",
    ],
)
def test_a_mapping_uuid_is_a_uuid(uuid: str) -> None:
    (line,) = problems(cfg({"UUID": uuid}))
    assert line == (
        "esm.yaml: EventSourceMappings[0].UUID: must be a UUID: 36 characters, hexadecimal digits "
        f"grouped 8-4-4-4-12 (Lambda's UUIDString) (got {uuid!r})"
    )


def test_a_given_uuid_is_the_mappings() -> None:
    given = "5D0B4E4C-6A44-4F7E-9A5E-0E5E3C3A7E11"
    mapping = parse_config(cfg({"UUID": given})).event_source_mappings[0]
    assert mapping.mapping_uuid("orders") == given


def test_a_mapping_naming_an_undefined_function_with_dots_is_refused() -> None:
    (line,) = problems(cfg({"FunctionName": ".."}))
    assert line == (
        "esm.yaml: EventSourceMappings[0].FunctionName: function '..' is not defined under Functions"
    )


def test_a_python_target_may_declare_its_python_runtime_and_no_other_target_may() -> None:
    """The Runtime a python: Target declares is what GetFunction shows (docs/semantics.md
    §10.9); any other pairing of Target and Runtime is refused, naming both."""
    cfg = parse_config(
        {"Functions": {"f": {"Target": "python:app.handler", "Runtime": "python3.12"}}}
    )
    assert (cfg.functions["f"].target, cfg.functions["f"].runtime) == (
        "python:app.handler",
        "python3.12",
    )
    assert cfg.functions["f"].code_uri is None  # nothing for an environment to run
    for target, runtime in (
        ("python:app.handler", "provided.al2023"),
        ("http://127.0.0.1:9/invoke", "python3.12"),
        ("rie://127.0.0.1:9", "python3.12"),
    ):
        (line,) = problems({"Functions": {"f": {"Target": target, "Runtime": runtime}}})
        assert "Target and Runtime exclude each other" in line, line


def test_a_declared_runtime_gets_no_code_folder(tmp_path: Path) -> None:
    """A python: Target declaring its Runtime is imported, not run in an environment: loading
    the file gives it no CodeUri (an environment function gets the file's folder)."""
    path = tmp_path / "esm.yaml"
    path.write_text(
        "Functions:\n"
        "  f: {Target: 'python:app.handler', Runtime: python3.12}\n"
        "  g: {Runtime: python3.12, Handler: app.handler}\n"
    )
    cfg = load_config(path)
    assert cfg.functions["f"].code_uri is None
    assert cfg.functions["g"].code_uri == str(tmp_path.resolve())
