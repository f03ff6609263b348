"""How the harness reads a config: the file or dict, the test's handlers, the queues it names.

The config goes through the same models and checks as ``esm run``'s (:func:`esm.config.
parse_config`). Handlers a test gives as callables are registered (:mod:`esm.testing.handlers`)
and become ``python:`` targets; async handlers of modules are registered too, so the harness
sees them sleep on its clock.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esm.arns import Arn
from esm.config import EsmConfig, FunctionConfig, QueueProperties, parse_config
from esm.targets.python import Handler
from esm.testing import handlers
from esm.yamlfile import read_yaml_file

ConfigSource = EsmConfig | Mapping[str, Any] | str | os.PathLike[str]


@dataclass
class Loaded:
    config: EsmConfig
    registered: list[str] = field(default_factory=list)  # targets to unregister at the end
    code_path: str | None = None  # the folder put first on sys.path (an esm.yaml's)

    def release(self) -> None:
        for target in self.registered:
            handlers.unregister(target)
        if self.code_path is not None and self.code_path in sys.path:
            sys.path.remove(self.code_path)


def load(source: ConfigSource, functions: Mapping[str, Handler | str]) -> Loaded:
    """The config with the test's handlers; ConfigError lists every problem, as ``esm run``
    does. A path's folder goes first on ``sys.path`` (``python:`` targets import from it)."""
    loaded = Loaded(EsmConfig())
    targets = {name: _target(loaded, name, h) for name, h in functions.items()}
    if isinstance(source, EsmConfig):
        config = with_targets(source, targets)
    else:
        origin = ""
        data: Any = source
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            origin = str(path)
            data = read_yaml_file(path)
            folder = str(path.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)
                loaded.code_path = folder
        config = parse_config(_with_handlers(data, targets), origin)
    loaded.config = _quieter(_register_async(loaded, config))
    return loaded


def _with_handlers(data: Any, targets: Mapping[str, str]) -> Any:
    """The document with the test's targets under Functions; a document of the wrong shape is
    left as it is for :func:`parse_config` to name what is wrong."""
    doc = {} if data is None else data
    if not isinstance(doc, Mapping):
        return doc
    fns = doc.get("Functions") or {}
    if not isinstance(fns, Mapping) or not all(isinstance(v, Mapping) for v in fns.values()):
        return doc
    merged = {k: dict(v) for k, v in fns.items()}
    for name, target in targets.items():
        merged[name] = {**merged.get(name, {}), "Target": target}
    return {**doc, "Functions": merged}


def _quieter(config: EsmConfig) -> EsmConfig:
    """One engine owns every shard, so leases never change hands: unless the config says
    otherwise, they are as long as allowed (fewer renewals to run through, same behaviour)."""
    settings = config.settings
    if "lease_s" in settings.model_fields_set:
        return config
    return config.model_copy(update={"settings": settings.model_copy(update={"lease_s": 600.0})})


def _target(loaded: Loaded, name: str, handler: Handler | str) -> str:
    if isinstance(handler, str):
        return handler
    target = handlers.register(handler, name)
    loaded.registered.append(target)
    return target


def _register_async(loaded: Loaded, config: EsmConfig) -> EsmConfig:
    """Async ``python:`` handlers of modules through the registry too. A module that cannot be
    imported is left for the engine to report, as Lambda does."""
    targets: dict[str, str] = {}
    for name, fn in config.functions.items():
        if fn.target is None:
            continue
        spec = fn.target.removeprefix("python:")
        if fn.target == spec or spec.startswith(handlers.MODULE + "."):
            continue
        module, _, attr = spec.rpartition(".")
        try:
            handler = getattr(__import__(module, fromlist=[attr]), attr)
        except Exception:
            continue
        if handlers.is_async(handler):
            targets[name] = _target(loaded, name, handler)
    return with_targets(config, targets)


def with_targets(config: EsmConfig, targets: Mapping[str, str]) -> EsmConfig:
    """The config with these functions' targets (functions it lacks are added)."""
    if not targets:
        return config
    functions = dict(config.functions)
    for name, target in targets.items():
        current = functions.get(name)
        functions[name] = (
            current.model_copy(update={"target": target})
            if current is not None
            else FunctionConfig.model_validate({"Target": target})
        )
    return config.model_copy(update={"functions": functions})


def queues(config: EsmConfig) -> dict[str, QueueProperties]:
    """Every SQS queue the config names, by ARN: ``Resources`` (in the settings' region and
    account), mapping sources (with their ``Resources`` properties), and SQS destinations and
    dead-letter queues (redrive dead-letter queues come with their source queue)."""
    settings = config.settings
    by_name: dict[str, QueueProperties] = {}
    for logical, res in config.resources.items():
        name = res.properties.queue_name or logical
        if res.properties.fifo_queue and not name.endswith(".fifo"):
            name += ".fifo"
        by_name[name] = res.properties
    out = {
        f"arn:aws:sqs:{settings.region}:{settings.account_id}:{name}": props
        for name, props in by_name.items()
    }
    for m in config.event_source_mappings:
        if m.source == "sqs":
            out[m.event_source_arn] = by_name.get(Arn.parse(m.event_source_arn).name) or (
                QueueProperties()
            )
    for arn in _targets(config):
        if arn.startswith("arn:") and Arn.parse(arn).service == "sqs":
            out.setdefault(arn, QueueProperties())
    return out


def _targets(config: EsmConfig) -> list[str]:
    found: list[str] = []
    for fn in config.functions.values():
        dests = fn.event_invoke_config.destination_config
        found += [
            d.destination for d in (dests.on_success, dests.on_failure) if d and d.destination
        ]
        if fn.dead_letter_config is not None:
            found.append(fn.dead_letter_config.target_arn)
    found += [m.on_failure_arn for m in config.event_source_mappings if m.on_failure_arn]
    return found


def streams(config: EsmConfig) -> list[str]:
    """The Kinesis and DynamoDB streams the config's mappings read."""
    return list(
        dict.fromkeys(m.event_source_arn for m in config.event_source_mappings if m.source != "sqs")
    )
