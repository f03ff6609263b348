"""How the harness reads a config: the file, dict or SAM template, the test's handlers, the
queues it names.

The config goes through the same models and checks as ``esm run``'s (:func:`esm.config.
load_config`, :func:`esm.templates.load_template`). Every Python function runs in the harness's
process: handlers a test gives as callables, ``python:`` targets and functions with a Python
``Runtime`` and ``Handler``; each is imported and wrapped by :mod:`esm.testing.inprocess` (its
environment variables while it runs, modules of its own) and registered
(:mod:`esm.testing.handlers`), so the harness sees async ones sleep on its clock. Functions of
other runtimes (``nodejs*``, ``provided*``) run in execution environments, as under ``esm run``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esm.arns import Arn
from esm.config import EsmConfig, FunctionConfig, QueueProperties, parse_config, with_code_root
from esm.targets.python import Handler, log_stream_name
from esm.testing import handlers, inprocess
from esm.yamlfile import read_yaml_file

log = logging.getLogger(__name__)

ConfigSource = EsmConfig | Mapping[str, Any] | str | os.PathLike[str]
_PENDING = "python:esm.testing.handlers.pending"  # a test's callable, until it is registered


@dataclass
class Loaded:
    config: EsmConfig
    registered: list[str] = field(default_factory=list)  # targets to unregister at the end
    code_paths: list[str] = field(default_factory=list)  # folders put first on sys.path
    environ: bool = False  # os.environ overlaid (inprocess.install)

    def release(self) -> None:
        for target in self.registered:
            handlers.unregister(target)
        self.registered = []
        for path in self.code_paths:
            if path in sys.path:
                sys.path.remove(path)
        self.code_paths = []
        if self.environ:
            self.environ = False
            inprocess.uninstall()


def load(
    source: ConfigSource | None,
    functions: Mapping[str, Handler | str],
    *,
    template: str | os.PathLike[str] | None = None,
    overlay: str | os.PathLike[str] | None = None,
    parameters: Mapping[str, str] | None = None,
    start: float = 0.0,
) -> Loaded:
    """The config with the test's handlers; ConfigError lists every problem, as ``esm run``
    does. A path's folder goes first on ``sys.path`` (``python:`` targets import from it)."""
    loaded = Loaded(EsmConfig())
    callables = {n: h for n, h in functions.items() if not isinstance(h, str)}
    targets = {n: h if isinstance(h, str) else _PENDING for n, h in functions.items()}
    folder: Path | None = None
    if template is not None:
        if source is not None:
            raise TypeError("give config or template, not both")
        config, folder = _template(loaded, template, overlay, parameters, targets)
    elif overlay is not None or parameters is not None:
        raise TypeError("overlay and parameters go with template=")
    elif source is None:
        raise TypeError("give a config (an esm.yaml path, its dict, an EsmConfig) or template=")
    elif isinstance(source, EsmConfig):
        config = with_targets(source, targets)
    else:
        origin = ""
        data: Any = source
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            origin = str(path)
            data = read_yaml_file(path)
            folder = path.resolve().parent
            _on_path(loaded, folder)
        config = parse_config(_with_handlers(data, targets), origin)
        if folder is not None:
            config = with_code_root(config, folder)
    try:
        loaded.config = _quieter(_in_process(loaded, config, callables, folder, start))
    except BaseException:
        loaded.release()
        raise
    return loaded


def _template(
    loaded: Loaded,
    template: str | os.PathLike[str],
    overlay: str | os.PathLike[str] | None,
    parameters: Mapping[str, str] | None,
    targets: Mapping[str, str],
) -> tuple[EsmConfig, Path]:
    from esm.templates import TemplateOptions, load_overlay, load_template

    options = TemplateOptions(
        overlay=load_overlay(Path(overlay)) if overlay is not None else TemplateOptions().overlay,
        targets=dict(targets),
        parameters=dict(parameters or {}),
    )
    loaded_template = load_template(Path(template), options)
    for warning in loaded_template.warnings:
        log.info("%s", warning)
    for path in loaded_template.code_paths:  # Settings TemplatePythonFunctions: InProcess
        _on_path(loaded, path)
    return loaded_template.config, Path(template).resolve().parent


def _on_path(loaded: Loaded, folder: Path) -> None:
    path = str(folder.resolve())
    if path not in sys.path:
        sys.path.insert(0, path)
        loaded.code_paths.append(path)


def _in_process(
    loaded: Loaded,
    config: EsmConfig,
    callables: Mapping[str, Callable[..., Any]],
    folder: Path | None,
    start: float,
) -> EsmConfig:
    """Each Python function imported (see :mod:`esm.testing.inprocess`), wrapped with its
    environment and registered. A module that cannot be imported is left for the engine to
    report, as Lambda does (its error on each call)."""
    settings = config.settings
    targets: dict[str, str] = {}
    for name, fn in config.functions.items():
        spec = inprocess.handler_spec(fn)
        if name not in callables and (spec is None or spec.startswith(handlers.MODULE + ".")):
            continue
        if not loaded.environ:
            inprocess.install()
            loaded.environ = True
        handler_name = spec or f"{handlers.MODULE}.{name}"
        code_dir = _code_dir(fn, spec, folder)
        overlay = inprocess.function_environment(
            name,
            fn,
            handler=handler_name,
            code_dir=code_dir or Path.cwd(),
            region=settings.region,
            account=settings.account_id,
            log_stream=log_stream_name(start),
        )
        handler = callables.get(name)
        if handler is None:
            assert spec is not None
            try:
                handler = inprocess.import_handler(spec, code_dir or Path.cwd(), overlay)
            except Exception as exc:
                log.warning("function %s: cannot import %s: %r", name, spec, exc)
                if fn.target is None and code_dir is not None:
                    _on_path(loaded, code_dir)  # the engine's own import reports the error
                targets[name] = f"python:{spec}"
                continue
        target = handlers.register(inprocess.with_environment(handler, overlay), name)
        loaded.registered.append(target)
        targets[name] = target
    return with_targets(config, targets)


def _code_dir(fn: FunctionConfig, spec: str | None, folder: Path | None) -> Path | None:
    """Where the function's modules come from: its CodeUri, else the config's folder when the
    module is there, else wherever ``sys.path`` finds it."""
    if fn.code_uri:
        return Path(fn.code_uri)
    if spec is None:
        return folder
    top = spec.split(".")[0]
    if folder is not None and (
        (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file()
    ):
        return folder
    return inprocess.module_folder(spec)


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
