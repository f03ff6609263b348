"""The package's shape: one import root, and no import circles.

The repository keeps ``connectors/`` and ``destinations/`` at its top level; they are the
packages ``esm.connectors`` and ``esm.destinations`` (``esm/connectors`` and
``esm/destinations`` link to them), so an install puts nothing but ``esm`` into site-packages.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL_FOLDERS = ("connectors", "destinations")


def test_no_import_circles_in_the_package() -> None:
    """Not even through ``if TYPE_CHECKING:`` imports."""
    graph = grimp.build_graph("esm", exclude_type_checking_imports=False)
    assert "esm.connectors.sqs" in graph.modules and "esm.destinations.base" in graph.modules
    assert {"esm.targets.base", "esm.targets.python", "esm.targets.environment"} <= graph.modules
    circles = sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    )
    assert circles == []


def _python_files() -> list[Path]:
    out: list[Path] = []
    for folder in ("esm", *TOP_LEVEL_FOLDERS, "tests", "benchmarks", "examples"):
        base = ROOT / folder
        if base.is_symlink():
            continue
        out += [
            p
            for p in base.rglob("*.py")
            if "node_modules" not in p.parts and not any(q.is_symlink() for q in p.parents)
        ]
    return out


def test_nothing_imports_the_folders_as_top_level_packages() -> None:
    """In a source checkout ``import connectors`` would work and make a second copy of every
    module (two ``MemoryBroker`` classes); everything imports ``esm.connectors``."""
    offenders = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in TOP_LEVEL_FOLDERS:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert offenders == []


def test_links_point_at_the_top_level_folders() -> None:
    for name in TOP_LEVEL_FOLDERS:
        link = ROOT / "esm" / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve()


@pytest.mark.timeout(300)
def test_a_wheel_holds_only_esm(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside it
    for name in ("esm", *TOP_LEVEL_FOLDERS):
        shutil.copytree(
            ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"esm"}
    for module in (
        "esm/connectors/sqs.py",
        "esm/connectors/memory.py",
        "esm/destinations/base.py",
        "esm/destinations/factory.py",
        "esm/targets/python.py",
        "esm/targets/lambda_.py",
        "esm/connectors/py.typed",
        "esm/py.typed",
        "esm/ui/index.html",  # the dashboard, served from the package
        "esm/runtimes/nodejs.cjs",  # the Node.js runtime client environments start
    ):
        assert module in names
    assert any(n.endswith(".dist-info/METADATA") for n in names)
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["esm"]


def test_the_public_face_loads_on_first_use() -> None:
    """``import esm`` is cheap; its names are the engine's own classes."""
    code = (
        "import sys, esm\n"
        "assert 'esm.engine' not in sys.modules, sorted(sys.modules)\n"
        "from esm import ConfigError, Engine, RealClock, VirtualClock, load_config, parse_config\n"
        "from esm.engine import Engine as E\n"
        "assert Engine is E and set(esm.__all__) <= set(dir(esm))\n"
        "try:\n"
        "    esm.nothing\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    )
    assert out.stdout.strip() == "module 'esm' has no attribute 'nothing'"
