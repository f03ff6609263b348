"""A function with ``Runtime``, ``Handler`` and ``CodeUri``: its execution environments
(:mod:`esm.environments`) as a target, built from its config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from esm.aws import AwsClients
from esm.clock import Clock
from esm.config import FunctionConfig, Settings

if TYPE_CHECKING:
    from esm.environments import EnvironmentTarget


def environment_target(
    name: str,
    arn: str,
    fn: FunctionConfig,
    *,
    region: str,
    clock: Clock,
    aws: AwsClients,
    settings: Settings,
) -> EnvironmentTarget:
    """The pool of ``fn``'s environments: ``ReservedConcurrentExecutions`` of them at most, else
    ``Settings.MaxEnvironmentsPerFunction``; the function's SDK is pointed at esm's endpoint."""
    from esm.environments import EnvironmentTarget, Spec

    if fn.runtime is None:
        raise ValueError(f"function {name}: an execution environment needs a Runtime")
    logging_config = fn.logging_config
    spec = Spec(
        name=name,
        arn=arn,
        runtime=fn.runtime,
        handler=fn.handler or "",
        code_dir=Path(fn.code_uri or ".").resolve(),
        layers=tuple(Path(p).resolve() for p in fn.layers),
        memory_mb=fn.memory_mb,
        timeout_s=float(fn.timeout_s),
        region=region,
        variables=dict(fn.environment.variables),
        endpoint_url=aws.endpoint_url,
        log_format=logging_config.log_format if logging_config else None,
        log_level=_application_log_level(fn),
    )
    pool = fn.reserved_concurrency or settings.max_environments
    return EnvironmentTarget(
        spec, clock, max_environments=max(pool, 1), idle_s=settings.environment_idle_s
    )


def _application_log_level(fn: FunctionConfig) -> str | None:
    """``LoggingConfig.ApplicationLogLevel``; with ``LogFormat: JSON`` and none given, ``INFO``,
    the level Lambda gives a JSON-format function (the runtime client would otherwise keep
    Python's default, WARNING, and drop every ``logger.info``)."""
    config = fn.logging_config
    if config is None:
        return None
    if config.application_log_level is None and config.log_format == "JSON":
        return "INFO"
    return config.application_log_level
