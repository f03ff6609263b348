"""How the harness runs Python functions in its own process: with their environment variables,
and with modules of their own.

**Environment variables.** While a function's handler runs (and while its module is imported),
``os.environ`` and ``os.getenv`` show the test process's variables overlaid with the function's
``Environment.Variables`` (``Globals`` included) and Lambda's reserved variables, as an execution
environment holds them (:func:`esm.environments.lambda_environment`; not ``AWS_LAMBDA_RUNTIME_API``
nor ``TZ``, which mean nothing in process). Several functions run at once in one process, so the
overlay is not written into the process's environment: for the harness's lifetime the
``os.environ`` object's class is a subclass of its own whose reads consult the overlay of the
function running in the current context (a :class:`~contextvars.ContextVar`, set around each
call: a sync handler's worker thread, an async handler's task and the tasks it starts). No lock, no
serialisation between functions. What a handler writes to ``os.environ`` stays in its function's
overlay, for its later calls, as in a warm environment. Not covered: threads a handler starts
itself, subprocesses it starts (they inherit the process's environment) and C code calling
``getenv``.

**Modules.** A function's handler module is imported by the harness, from the function's folder
(its ``CodeUri``, else the esm.yaml's folder, else where the module is found on ``sys.path``),
under the function's variables. The modules that import brings in from that folder are then taken
out of ``sys.modules`` again: the handler keeps them, the next function and the next harness
import their own. Two functions whose folders each hold ``app.py`` therefore never collide, and
no module state leaks from one harness to the next. A module the test itself imported from that
same folder before the harness was built is used as it is (the test shares its state, e.g. a
list the handler appends to). Imports a handler does at call time resolve against ``sys.path``
as it is then.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from esm.config import FunctionConfig
from esm.targets.python import RUNTIME_FILES
from esm.testing.handlers import with_var

Overlay = dict[str, str | None]  # None: deleted by the handler

_overlay: ContextVar[Overlay | None] = ContextVar("esm_testing_environ", default=None)
_DROPPED = ("AWS_LAMBDA_RUNTIME_API", "LAMBDA_RUNTIME_DIR", "PYTHONPATH", "TZ", "LANG")
_INSTALLED: list[object] = []  # one entry per harness using the overlay

RUNTIME_FILES.add(__file__)  # its wrappers are no frames of the handler's


class _OverlaidEnviron(os._Environ[str]):
    """``os.environ`` with the running function's overlay on top: the harness swaps the class of
    the very ``os.environ`` object (so code that kept a reference to it, such as botocore's
    sessions, sees the overlay too). Outside a function, and for every write outside one, it is
    the plain ``os.environ``."""

    def __getitem__(self, key: str) -> str:
        overlay = _overlay.get()
        if overlay is not None and key in overlay:
            value = overlay[key]
            if value is None:
                raise KeyError(key)
            return value
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: str) -> None:
        overlay = _overlay.get()
        if overlay is None:
            super().__setitem__(key, value)
            return
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"str expected, not {type(value if isinstance(key, str) else key)}")
        overlay[key] = value

    def __delitem__(self, key: str) -> None:
        overlay = _overlay.get()
        if overlay is None:
            super().__delitem__(key)
            return
        if key not in self:
            raise KeyError(key)
        overlay[key] = None

    def __iter__(self) -> Iterator[str]:
        overlay = _overlay.get()
        if overlay is None:
            yield from super().__iter__()
            return
        for key in list(super().__iter__()):
            if key not in overlay:
                yield key
        yield from (k for k, v in list(overlay.items()) if v is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"environ({dict(self)!r})"

    def copy(self) -> dict[str, str]:
        return dict(self)


def install() -> None:
    """Overlay ``os.environ`` (for one more harness)."""
    if not _INSTALLED and type(os.environ) is os._Environ:
        os.environ.__class__ = _OverlaidEnviron
    _INSTALLED.append(object())


def uninstall() -> None:
    """Give ``os.environ`` its class back once the last harness is done."""
    if _INSTALLED:
        _INSTALLED.pop()
    if not _INSTALLED and type(os.environ) is _OverlaidEnviron:
        object.__setattr__(os.environ, "__class__", os._Environ)


@contextmanager
def environment(overlay: Overlay) -> Iterator[None]:
    token = _overlay.set(overlay)
    try:
        yield
    finally:
        _overlay.reset(token)


def function_environment(
    name: str,
    fn: FunctionConfig,
    *,
    handler: str,
    code_dir: Path,
    region: str,
    account: str,
    log_stream: str,
) -> Overlay:
    """What the function's execution environment would add to the host's variables."""
    from esm.arns import function_arn
    from esm.environments import Spec, lambda_environment

    runtime = fn.runtime or f"python{sys.version_info.major}.{sys.version_info.minor}"
    logging_config = fn.logging_config
    spec = Spec(
        name=name,
        arn=function_arn(region, account, name),
        runtime=runtime,
        handler=handler,
        code_dir=code_dir,
        memory_mb=fn.memory_mb,
        timeout_s=float(fn.timeout_s),
        region=region,
        variables=dict(fn.environment.variables),
        log_format=logging_config.log_format if logging_config else None,
        log_level=logging_config.application_log_level if logging_config else None,
    )
    env = lambda_environment(spec, runtime_api="", log_stream=log_stream, runtime_dir="", host={})
    return {k: v for k, v in env.items() if k not in _DROPPED}


def with_environment(handler: Callable[..., Any], overlay: Overlay) -> Callable[..., Any]:
    """``handler`` run under ``overlay``, sync or async as it is."""
    return with_var(handler, _overlay, overlay)


# -- modules -------------------------------------------------------------------------------------


def module_folder(module: str) -> Path | None:
    """Where ``module``'s top-level package or module is found on ``sys.path`` (None: not
    found, or an installed package, which is imported as usual)."""
    top = module.split(".")[0]
    found = sys.modules.get(top)
    origin = getattr(found, "__file__", None)
    if origin is None:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec is not None else None
    if not origin:
        return None
    path = Path(origin).resolve()
    folder = path.parent.parent if path.name == "__init__.py" else path.parent
    return None if _installed(folder) else folder


def import_handler(spec: str, code_dir: Path, overlay: Overlay) -> Callable[..., Any]:
    """``module.attr`` imported from ``code_dir`` under ``overlay``, then its folder's modules
    taken out of ``sys.modules`` (see the module's docstring). Errors propagate."""
    module, _, attr = spec.rpartition(".")
    top = module.split(".")[0]
    folder = code_dir.resolve()
    if top == "esm" or _installed(folder):
        with environment(overlay):
            return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
    shared = sys.modules.get(module)
    if shared is not None and _under(shared, folder):  # the test imported it from there
        return getattr(shared, attr)  # type: ignore[no-any-return]
    tops = {top} | _top_level_names(folder)  # what the folder provides, shadowing the rest
    saved = {
        n: sys.modules.pop(n)
        for n in list(sys.modules)
        if n.split(".")[0] in tops
        and n != "esm"
        and not n.startswith("esm.")
        and not _under(sys.modules[n], folder)
    }
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        with environment(overlay):
            handler = getattr(importlib.import_module(module), attr)
    finally:
        sys.path.remove(str(folder))
        for name in set(sys.modules) - before:
            if name.split(".")[0] == "esm":
                continue
            if name.split(".")[0] in tops or _under(sys.modules[name], folder):
                del sys.modules[name]
        sys.modules.update(saved)
    return handler  # type: ignore[no-any-return]


def _top_level_names(folder: Path) -> set[str]:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return set()
    return {
        e.stem if e.suffix == ".py" else e.name
        for e in entries
        if (e.suffix == ".py" and e.is_file()) or (e / "__init__.py").is_file()
    }


def _under(module: object, folder: Path) -> bool:
    origin = getattr(module, "__file__", None)
    if not origin:
        return False
    path = Path(origin).resolve()
    return path.is_relative_to(folder) and not _installed(path)


def _installed(path: Path) -> bool:
    return any(part in ("site-packages", "dist-packages") for part in path.parts)


def handler_spec(fn: FunctionConfig) -> str | None:
    """``module.attr`` of a function the harness runs in process: a ``python:`` target, or a
    Python ``Runtime`` with its ``Handler`` (``dir/module.attr`` as ``dir.module.attr``)."""
    if fn.target is not None:
        return fn.target.removeprefix("python:") if fn.target.startswith("python:") else None
    if fn.runtime is not None and fn.runtime.startswith("python") and fn.handler:
        return fn.handler.replace("/", ".")
    return None
