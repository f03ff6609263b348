"""A function's dependencies, installed as ``sam build`` would, into a build cache.

A ``python3.x`` function whose CodeUri holds ``requirements.txt`` gets
``python -m pip install --target <dir> -r requirements.txt`` (the runtime's interpreter); a
``nodejsNN.x`` one with ``package.json`` gets ``npm install --omit=dev`` (``npm ci`` when
``package-lock.json`` is there) in ``<dir>``. pip and npm run as the machine configures them
(``pip.conf``, ``PIP_INDEX_URL``, ``.npmrc`` …), from the CodeUri, so relative paths in
requirements.txt work.

``<dir>`` is ``<cache>/<function>/<key>``: the key is a hash of the manifest (and the lock
file), the runtime and, for Python, the interpreter, so an unchanged manifest installs once and
a changed one installs afresh. ``<cache>`` is ``$ESM_BUILD_CACHE``, else
``$XDG_CACHE_HOME/esm/builds``, else ``~/.cache/esm/builds``. An install happens in a temporary
folder renamed into place when it succeeds, so a failed or interrupted one leaves nothing used.

The folder is put on the environment's import path: first on ``PYTHONPATH`` after the code,
or on ``NODE_PATH`` (``<dir>/node_modules``; like Lambda layers, ``NODE_PATH`` serves
``require``, not ``import`` from an ES module: such a function keeps ``node_modules`` in its
CodeUri).

``esm build`` installs every function's ahead of time; an environment's first start does it
otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from esm.errors import EsmError

# how much of pip's or npm's output a BuildError shows
OUTPUT_LIMIT = 8000


class BuildError(EsmError):
    """Installing a function's dependencies failed; the message names the function, the
    command and shows its output."""


@dataclass(frozen=True, slots=True)
class Build:
    """What to install for one function."""

    function: str
    runtime: str
    code_dir: Path
    manifest: Path  # requirements.txt or package.json

    @property
    def tool(self) -> str:
        return "pip" if self.manifest.name == "requirements.txt" else "npm"

    @property
    def lock(self) -> Path | None:
        lock = self.code_dir / "package-lock.json"
        return lock if self.tool == "npm" and lock.is_file() else None


def plan(function: str, runtime: str | None, code_dir: Path) -> Build | None:
    """The build a function needs, None when its runtime or its folder has nothing to install."""
    if runtime is None:
        return None
    if runtime.startswith("python3."):
        manifest = code_dir / "requirements.txt"
    elif runtime.startswith("nodejs"):
        manifest = code_dir / "package.json"
    else:
        return None
    return Build(function, runtime, code_dir, manifest) if manifest.is_file() else None


def cache_root(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get("ESM_BUILD_CACHE"):
        return Path(env["ESM_BUILD_CACHE"])
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "esm" / "builds"


def key(build: Build, interpreter: str = "") -> str:
    """The cache key: the manifest's (and lock file's) bytes, the runtime, the interpreter."""
    digest = hashlib.sha256()
    for part in (build.runtime, interpreter):
        digest.update(part.encode() + b"\0")
    for file in (build.manifest, build.lock):
        digest.update(file.read_bytes() if file is not None else b"")
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def import_dir(build: Build, folder: Path) -> Path:
    """What goes on the import path: the pip target, or npm's ``node_modules``."""
    return folder if build.tool == "pip" else folder / "node_modules"


def _command(build: Build, target: Path, interpreter: str) -> list[str]:
    if build.tool == "pip":
        return [
            interpreter,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
            str(target),
            "-r",
            str(build.manifest),
        ]
    npm = shutil.which("npm") or "npm"
    verb = "ci" if build.lock is not None else "install"
    return [npm, verb, "--omit=dev", "--no-audit", "--no-fund", "--prefix", str(target)]


def _run(build: Build, interpreter: str, root: Path, folder: Path) -> None:
    """Install into a temporary folder beside ``folder`` and rename it into place."""
    work = folder.with_name(f"{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    work.mkdir(parents=True)
    try:
        if build.tool == "npm":
            shutil.copy2(build.manifest, work / "package.json")
            if build.lock is not None:
                shutil.copy2(build.lock, work / "package-lock.json")
        argv = _command(build, work, interpreter)
        try:
            done = subprocess.run(
                argv,
                cwd=build.code_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as exc:
            raise BuildError(
                f"function {build.function}: cannot run {argv[0]} to install "
                f"{build.manifest.name}: {exc}"
            ) from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-OUTPUT_LIMIT:]
            raise BuildError(
                f"function {build.function}: {build.tool} could not install "
                f"{build.manifest} (exit status {done.returncode}):\n{output}"
            )
        try:
            work.rename(folder)
        except OSError:
            if not folder.is_dir():  # another esm finished the same build first: keep its
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def ensure(build: Build, interpreter: str = "", root: Path | None = None) -> Path:
    """The folder to put on the import path, installed first unless the cache has it.
    ``interpreter`` is the runtime's Python (pip runs as ``<interpreter> -m pip``)."""
    root = root or cache_root()
    folder = root / build.function / key(build, interpreter)
    if not folder.is_dir():
        await asyncio.to_thread(_run, build, interpreter, root, folder)
    return import_dir(build, folder)


def is_cached(build: Build, interpreter: str = "", root: Path | None = None) -> bool:
    return (((root or cache_root()) / build.function) / key(build, interpreter)).is_dir()
