"""The pure parts of the build cache, the memory rule and --watch's choice of functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esm import builds
from esm.environments import exit_error, exit_error_type, over_memory
from esm.watch import touched


def test_plan_follows_the_runtime_and_the_manifest(tmp_path: Path) -> None:
    assert builds.plan("f", "python3.12", tmp_path) is None  # nothing to install
    (tmp_path / "requirements.txt").write_text("six\n")
    (tmp_path / "package.json").write_text("{}")
    py = builds.plan("f", "python3.12", tmp_path)
    node = builds.plan("f", "nodejs20.x", tmp_path)
    assert py is not None and py.tool == "pip" and py.manifest.name == "requirements.txt"
    assert node is not None and node.tool == "npm" and node.manifest.name == "package.json"
    assert builds.plan("f", "provided.al2023", tmp_path) is None
    assert builds.plan("f", None, tmp_path) is None


def test_the_key_changes_with_the_manifest_lock_runtime_and_interpreter(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"dependencies": {"a": "1"}}))
    build = builds.plan("f", "nodejs20.x", tmp_path)
    assert build is not None
    first = builds.key(build)
    assert builds.key(build) == first
    (tmp_path / "package-lock.json").write_text("{}")
    locked = builds.key(build)
    assert locked != first
    assert builds.key(builds.Build("f", "nodejs22.x", tmp_path, build.manifest)) != locked
    (tmp_path / "package.json").write_text(json.dumps({"dependencies": {"a": "2"}}))
    assert builds.key(build) not in (first, locked)
    (tmp_path / "requirements.txt").write_text("six\n")
    py = builds.plan("f", "python3.12", tmp_path)
    assert py is not None
    assert builds.key(py, "/usr/bin/python3.12") != builds.key(py, "/usr/bin/python3.11")


def test_import_dir_is_the_target_or_node_modules(tmp_path: Path) -> None:
    py = builds.Build("f", "python3.12", tmp_path, tmp_path / "requirements.txt")
    node = builds.Build("f", "nodejs20.x", tmp_path, tmp_path / "package.json")
    assert builds.import_dir(py, tmp_path / "k") == tmp_path / "k"
    assert builds.import_dir(node, tmp_path / "k") == tmp_path / "k" / "node_modules"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ESM_BUILD_CACHE": "/c", "XDG_CACHE_HOME": "/x"}, "/c"),
        ({"XDG_CACHE_HOME": "/x"}, "/x/esm/builds"),
    ],
)
def test_cache_root(env: dict[str, str], expected: str) -> None:
    assert builds.cache_root(env) == Path(expected)


def test_cache_root_defaults_to_the_home_cache() -> None:
    assert builds.cache_root({}) == Path.home() / ".cache" / "esm" / "builds"


def test_out_of_memory_is_lambdas_words() -> None:
    assert not over_memory(128.0, 128) and over_memory(128.5, 128)
    assert exit_error_type(-9, out_of_memory=True) == "Runtime.OutOfMemory"
    assert exit_error_type(-9, out_of_memory=False) == "Runtime.ExitError"
    body = json.loads(exit_error("rid", -9, "Runtime.OutOfMemory"))
    assert body == {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": "RequestId: rid Error: Runtime exited with error: signal: killed",
    }


def test_watch_recycles_the_functions_whose_folder_changed() -> None:
    folders = {"a": Path("/src/a"), "b": Path("/src/b"), "ab": Path("/src/ab")}
    assert touched([Path("/src/a/app.py")], folders) == ["a"]
    assert touched([Path("/src/ab/x/y.py"), Path("/src/b/z")], folders) == ["b", "ab"]
    assert touched([Path("/src/esm.yaml")], folders) == []
