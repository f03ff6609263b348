"""``esm run --watch``: code and config changes applied to a running daemon.

::

    a file under a function's CodeUri changes ──> its idle environments stop; busy ones finish
                                                  their invocation on the old code, then stop;
                                                  the next call starts on the new code (and
                                                  reinstalls requirements.txt / package.json
                                                  when they changed)
    the config file (esm.yaml, or the template and
    its overlay) changes ──> loaded and checked again
        ├── broken ──> the problems logged at ERROR; the running config stays
        └── valid ───> Engine.apply_config: mappings through the registry and the same
                       reconcile as the API; changed functions on new targets

Files are watched with ``watchfiles`` (inotify on Linux, debounced; ``__pycache__``,
``node_modules``, ``.git`` and editors' swap files are ignored). Only functions that run in
execution environments are recycled: a ``python:`` target lives in esm's own process, and
reloading modules there is not safe.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from esm.config import EsmConfig
from esm.engine import Engine
from esm.environments import EnvironmentTarget
from esm.errors import ConfigError, LambdaApiError

if TYPE_CHECKING:
    from watchfiles import Change

log = logging.getLogger(__name__)


def code_dirs(engine: Engine) -> dict[str, Path]:
    """Each environment function's CodeUri folder."""
    found: dict[str, Path] = {}
    for name, fn in engine.functions.items():
        target = getattr(fn, "_target", None)
        if isinstance(target, EnvironmentTarget):
            found[name] = target.spec.code_dir
    return found


def touched(changed: Iterable[Path], folders: dict[str, Path]) -> list[str]:
    """The functions whose code folder holds one of the changed paths."""
    paths = list(changed)
    return [n for n, d in folders.items() if any(p.is_relative_to(d) for p in paths)]


def recycle(engine: Engine, names: Iterable[str]) -> None:
    for name in names:
        fn = engine.functions.get(name)
        target = getattr(fn, "_target", None)
        if isinstance(target, EnvironmentTarget):
            stopped = target.recycle()
            log.info(
                "function %s: code changed: %d idle environment(s) stopped; new calls start on "
                "the new code",
                name,
                stopped,
            )


async def apply(engine: Engine, source: str, load: Callable[[], EsmConfig]) -> None:
    """Load the config again and apply it, or say why not and keep the running one."""
    try:
        config = await asyncio.to_thread(load)
    except ConfigError as exc:
        log.error("%s changed but is not valid; running on as before:\n%s", source, exc)
        return
    try:
        kept = await engine.apply_config(config)
    except LambdaApiError as exc:
        log.error("%s changed but is refused; running on as before: %s", source, exc)
        return
    if kept:
        log.warning("%s changed: %s need a restart; kept as they were", source, ", ".join(kept))
    log.info("%s changed: applied", source)


async def watch(
    engine: Engine,
    config_files: Iterable[Path],
    load: Callable[[], EsmConfig],
    stop: asyncio.Event,
) -> None:
    """Watch until ``stop``; the folders follow the config (a new CodeUri is watched too)."""
    from watchfiles import awatch

    files = {p.resolve() for p in config_files}
    source = ", ".join(sorted(str(p) for p in files))
    while not stop.is_set():
        folders = code_dirs(engine)
        roots = sorted({str(p) for p in folders.values()} | {str(p.parent) for p in files})
        again = asyncio.Event()
        log.info("watching %s and %d function folder(s)", source, len(folders))
        wanted = _Wanted(files, folders.values())
        async for changes in awatch(*roots, watch_filter=wanted, stop_event=_either(stop, again)):
            paths = {Path(p) for _, p in changes}  # absolute, under the resolved roots
            recycle(engine, touched(paths, folders))
            if paths & files:
                await apply(engine, source, load)
                if code_dirs(engine) != folders:
                    again.set()  # other folders to watch: start again with them


class _Wanted:
    """Only the config files and what is under the code folders count (the config's folder may
    hold anything else, esm's own log file among it); watchfiles' default filter on top
    (``__pycache__``, ``node_modules``, ``.git``, swap files)."""

    def __init__(self, files: Iterable[Path], folders: Iterable[Path]) -> None:
        from watchfiles import DefaultFilter

        self._default = DefaultFilter()
        self._files = {str(f) for f in files}
        self._folders = tuple(str(d).rstrip(os.sep) + os.sep for d in folders)

    def __call__(self, change: Change, path: str) -> bool:
        return (path in self._files or path.startswith(self._folders)) and self._default(
            change, path
        )


class _either:
    """Set when either event is (what ``awatch``'s ``stop_event`` asks of an event: it polls
    ``is_set`` from its thread and calls ``set`` to end that thread, which sets the last)."""

    def __init__(self, *events: asyncio.Event) -> None:
        self._events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self._events)

    def set(self) -> None:
        self._events[-1].set()

    async def wait(self) -> bool:
        waits = [asyncio.ensure_future(e.wait()) for e in self._events]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return True
