"""Dependencies: a CodeUri's requirements.txt / package.json installed into esm's build cache
(``esm build``, or an environment's first start) and found by the handler's imports."""

from __future__ import annotations

import asyncio
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from esm import builds
from esm.cli import main
from esm.functions import Function, InvokeFailed
from tests.integration.test_environments import make, payload, write_code
from tests.integration.test_node_environments import write

__all__ = ["make"]  # the fixture, shared

pytestmark = pytest.mark.integration

USES_DEP = """
import os, tinydep
def handler(event, context):
    return {"value": tinydep.VALUE, "from": tinydep.__file__, "path": os.environ["PYTHONPATH"]}
"""


def wheel(folder: Path, value: str) -> Path:
    """A tiny pure-Python wheel, so pip installs offline (--no-index)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tinydep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("tinydep/__init__.py", f"VALUE = {value!r}\n")
        info = "tinydep-1.0.dist-info"
        whl.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n")
        whl.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: esm-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        whl.writestr(
            f"{info}/RECORD",
            f"tinydep/__init__.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n",
        )
    return path


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ESM_BUILD_CACHE", str(root))
    return root


async def test_requirements_are_installed_once_and_imported(
    tmp_path: Path, make: Callable[..., Function], cache: Path
) -> None:
    code = write_code(tmp_path / "src", USES_DEP)
    wheel(code / "wheels", "from the cache")
    (code / "requirements.txt").write_text("--no-index\n./wheels/tinydep-1.0-py3-none-any.whl\n")
    out = payload(await make("orders", code).invoke(b"{}"))
    assert out["value"] == "from the cache"
    installed = Path(out["from"])
    assert installed.is_relative_to(cache / "orders")
    assert out["path"].split(":") == [str(code.resolve()), str(installed.parent.parent)]
    # the same manifest: the cached folder, no second install
    build = builds.plan("orders", "python3.11", code)
    assert build is not None
    (folder,) = (cache / "orders").iterdir()
    stamp = folder.stat().st_mtime_ns
    again = payload(await make("orders", code).invoke(b"{}"))
    assert again["from"] == out["from"] and folder.stat().st_mtime_ns == stamp
    # a changed manifest: a new key, a fresh install on the next cold start
    wheel(code / "wheels2", "changed")
    (code / "requirements.txt").write_text("--no-index\n./wheels2/tinydep-1.0-py3-none-any.whl\n")
    changed = payload(await make("orders", code).invoke(b"{}"))
    assert changed["value"] == "changed" and changed["from"] != out["from"]


async def test_a_failed_install_names_the_function_and_shows_pip(
    tmp_path: Path, make: Callable[..., Function], cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = write_code(tmp_path / "src", USES_DEP)
    (code / "requirements.txt").write_text("--no-index\nno-such-package-for-esm==9.9\n")
    out = await make("broken", code).invoke(b"{}")
    assert isinstance(out, InvokeFailed)
    assert out.reason.startswith(f"function broken: pip could not install {code}/requirements.txt")
    assert "No matching distribution found for no-such-package-for-esm==9.9" in out.reason
    assert not (cache / "broken").exists() or not any((cache / "broken").iterdir())
    config = tmp_path / "esm.yaml"
    config.write_text(
        json.dumps(
            {
                "Functions": {
                    "broken": {"Runtime": "python3.11", "Handler": "app.handler", "CodeUri": "src"}
                }
            }
        )
    )
    assert await asyncio.to_thread(main, ["build", str(config)]) == 1
    assert "function broken: pip could not install" in capsys.readouterr().err
    (code / "requirements.txt").write_text("--no-index\n./wheels/tinydep-1.0-py3-none-any.whl\n")
    wheel(code / "wheels", "fixed")
    assert await asyncio.to_thread(main, ["build", str(config)]) == 0
    assert capsys.readouterr().out.startswith(f"broken: {code}/requirements.txt -> {cache}/broken/")
    assert await asyncio.to_thread(main, ["build", str(config)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("(cached)")
    assert payload(await make("broken", code).invoke(b"{}"))["value"] == "fixed"


@pytest.mark.skipif(shutil.which("npm") is None, reason="no npm on PATH")
async def test_package_json_dependencies_are_required(
    tmp_path: Path, make: Callable[..., Function], cache: Path
) -> None:
    tiny = write(
        tmp_path / "tiny",
        {
            "package.json": '{"name": "tiny", "version": "1.0.0", "main": "index.js"}',
            "index.js": "module.exports.value = 'from node_modules';",
        },
    )
    code = write(
        tmp_path / "src",
        {
            "package.json": json.dumps(
                {"name": "fn", "version": "1.0.0", "dependencies": {"tiny": f"file:{tiny}"}}
            ),
            "index.js": """
            const tiny = require("tiny");
            exports.handler = async () => ({ value: tiny.value, path: process.env.NODE_PATH });
            """,
        },
    )
    fn = make("nodefn", code, Runtime="nodejs20.x", Handler="index.handler", Timeout=10)
    out = payload(await fn.invoke(b"{}"))
    assert out["value"] == "from node_modules"
    first = out["path"].split(":")[0]
    assert first.startswith(str(cache / "nodefn")) and first.endswith("/node_modules")
    assert not (code / "node_modules").exists()  # the CodeUri is left as it was
