"""Where a function's layers go on its import paths, as Lambda mounts them.

Lambda extracts each layer into ``/opt`` and puts these on the runtime's import paths (after the
function's own code): for Python ``/opt/python`` and ``/opt/python/lib/python3.x/site-packages``,
for Node.js ``/opt/nodejs/node_modules`` and ``/opt/nodejs/node<version>/node_modules``. esm
does not copy layers anywhere: a layer is a local folder laid out as that ``/opt`` would be, and
those of its sub-folders that exist are added to the function's import paths (``PYTHONPATH`` /
``NODE_PATH`` in an execution environment, ``sys.path`` for an in-process ``python:`` target).
A folder with no ``python/`` but Python files of its own is taken as the ``python/`` folder
itself, as ``sam build`` lays out a layer whose ``BuildMethod`` is a Python runtime.
"""

from __future__ import annotations

from pathlib import Path


def python_paths(layer: Path) -> list[Path]:
    """The folders of ``layer`` that Lambda's Python runtimes import from, in Lambda's order."""
    root = layer / "python"
    if not root.is_dir():
        return [layer] if any(layer.glob("*.py")) or any(layer.glob("*/__init__.py")) else []
    site = sorted((root / "lib").glob("python3*/site-packages"))
    return [root, *site]


def node_paths(layer: Path) -> list[Path]:
    """The folders of ``layer`` that Lambda's Node.js runtimes resolve modules from."""
    found = sorted((layer / "nodejs").glob("node*/node_modules"))
    plain = layer / "nodejs" / "node_modules"
    return ([plain] if plain.is_dir() else []) + found


def import_paths(layers: list[Path] | tuple[Path, ...]) -> tuple[list[Path], list[Path]]:
    """(Python paths, Node.js paths) of several layers, in the order the function lists them."""
    py: list[Path] = []
    node: list[Path] = []
    for layer in layers:
        py += python_paths(layer)
        node += node_paths(layer)
    return py, node
