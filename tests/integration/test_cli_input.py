"""``esm validate`` / ``esm run`` given hostile files and arguments, as users run them: a
subprocess each, one line on stderr naming the file and what is wrong, exit code 1 (argparse's 2
for a bad option), never a traceback."""

from __future__ import annotations

import codecs
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import ROOT

pytestmark = pytest.mark.integration

GOOD = "Functions:\n  orders: {Target: 'python:app.handler'}\n"


def _bomb() -> str:
    lines = ["Resources:\n  Q: {Type: AWS::SQS::Queue}\n", "a0: &a0 [lol, lol, lol, lol, lol]\n"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)]
    return "".join(lines)


# (argv with {f} for the file, the file's bytes or None for a directory, exit code, stderr text)
CASES: dict[str, tuple[list[str], bytes | None, int, str]] = {
    "not utf-8": (
        ["validate", "{f}"],
        GOOD.encode() + b"# \xff\n",
        1,
        "{f}: not UTF-8: byte 0xff at line 3, column 3; esm reads UTF-8, or UTF-16 with a byte "
        "order mark (YAML 1.1's encodings)",
    ),
    "nested 5000 deep": (
        ["run", "{f}"],
        ("a: " + "[" * 5000 + "]" * 5000 + "\n").encode(),
        1,
        "{f}: nested deeper than 100 levels at line 1, column 103 (esm's limit)",
    ),
    "utf-16 with a byte order mark": (
        ["validate", "{f}"],
        codecs.BOM_UTF16_LE + GOOD.encode("utf-16-le"),
        0,
        "",
    ),
    "an alias bomb in a template": (
        ["validate", "--template", "{f}"],
        _bomb().encode(),
        1,
        "{f}: more than 200,000 values with aliases expanded at line 8, column 25 (esm's limit; "
        "an alias bomb?)",
    ),
    "a duplicate key": (
        ["run", "{f}"],
        (GOOD + "Functions: {}\n").encode(),
        1,
        "{f}: duplicate key 'Functions' at line 3 (first at line 1): a key may appear once in a "
        "mapping",
    ),
    "a directory": (["run", "{f}"], None, 1, "{f}: cannot read: Is a directory"),
    "a function named ..": (
        ["validate", "{f}"],
        b"Functions:\n  '..': {Target: 'python:app.handler'}\n",
        1,
        "{f}: Functions['..']: a function name is 1 to 64 characters of a-z, A-Z, 0-9, - and _ "
        "(Lambda's) (got '..')",
    ),
    "an unknown log level": (
        ["run", "--log-level", "LOUD", "{f}"],
        GOOD.encode(),
        2,
        "esm run: error: argument --log-level: invalid choice: 'LOUD' (choose from 'DEBUG', "
        "'INFO', 'WARNING', 'ERROR', 'CRITICAL')",
    ),
}


def test_hostile_input_gets_one_line_and_an_exit_code(tmp_path: Path) -> None:
    """All cases at once (one interpreter start-up each, in parallel)."""
    running: dict[str, tuple[subprocess.Popen[str], Path]] = {}
    for n, (name, (argv, data, _, _)) in enumerate(CASES.items()):
        path = tmp_path / f"case{n}.yaml"
        if data is None:
            path.mkdir()
        else:
            path.write_bytes(data)
        args = [a.replace("{f}", str(path)) for a in argv]
        proc = subprocess.Popen(
            [sys.executable, "-m", "esm.cli", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        running[name] = (proc, path)
    for name, (proc, path) in running.items():
        out, err = proc.communicate(timeout=60)
        _, _, code, expected = CASES[name]
        assert "Traceback" not in err, (name, err)
        assert proc.returncode == code, (name, proc.returncode, err)
        if code == 0:
            assert err == ""
            assert out == f"{path}: OK (1 function(s), 0 mapping(s), 0 enabled)\n"
        elif code == 1:
            assert err == expected.replace("{f}", str(path)) + "\n", name
        else:  # argparse: the usage lists the choices, then the error line
            assert "[--log-level {DEBUG,INFO,WARNING,ERROR,CRITICAL}]" in err
            assert err.splitlines()[-1] == expected


def test_the_log_level_is_case_insensitive(tmp_path: Path) -> None:
    """``--log-level debug`` is DEBUG: the bad config that follows is still refused with exit
    code 1 (the level was taken, not refused with 2)."""
    path = tmp_path / "esm.yaml"
    path.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "esm.cli", "run", "--log-level", "debug", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"{path}: the file is empty (or only comments): an esm.yaml holds at least Functions\n"
    )
