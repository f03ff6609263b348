"""Which target a function's config names: the factory over :mod:`esm.targets`' kinds.

Apart from :mod:`esm.targets.base` (the call, the protocol and the error payloads every kind
imports), so ``base`` imports none of them and the package has no import circle. Each kind's
module is imported when a function first needs it.
"""

from __future__ import annotations

from esm.aws import AwsClients
from esm.clock import Clock
from esm.config import FunctionConfig, Settings
from esm.targets.base import Target

# threads (python:) and connections (http) of a function without reserved concurrency
DEFAULT_MAX_WORKERS = 256

_TARGET_RULE = (
    "a target is python:module.handler, http(s)://…, rie://host:port or lambda:<function ARN>"
)


def build_target(
    name: str,
    arn: str,
    fn: FunctionConfig,
    *,
    region: str,
    clock: Clock,
    aws: AwsClients,
    settings: Settings,
) -> Target:
    """The target of function ``name``: its execution environments when it has a ``Runtime``
    (no ``target``), else the kind its ``target`` URI names; ValueError naming the rule when
    none.

    ``fn.environment`` reaches environments only: python: handlers share this process's
    ``os.environ``, and http, rie and lambda targets have their own environments.
    """
    target = fn.target
    if target is None:
        from esm.targets.environment import environment_target

        return environment_target(
            name, arn, fn, region=region, clock=clock, aws=aws, settings=settings
        )
    workers = fn.reserved_concurrency or DEFAULT_MAX_WORKERS
    if target.startswith("python:"):
        from esm.targets.python import ContextInfo, PythonTarget, log_stream_name

        info = ContextInfo(name, arn, fn.memory_mb, log_stream_name(clock.now()))
        return PythonTarget(target[len("python:") :], info, clock, max_workers=workers)
    if target.startswith(("http://", "https://")):
        from esm.targets.http import HttpTarget

        return HttpTarget(target, arn=arn, max_connections=workers)
    if target.startswith("rie://"):
        from esm.targets.http import HttpTarget, rie_url

        return HttpTarget(rie_url(target), arn=arn, max_connections=1, rie=True)
    if target.startswith("lambda:"):
        from esm.targets.lambda_ import LambdaTarget

        return LambdaTarget(target[len("lambda:") :], aws)
    raise ValueError(f"function {name}: unsupported target {target!r}: {_TARGET_RULE}")
