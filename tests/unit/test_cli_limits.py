"""`esm run` takes the hard limit on open files as its soft limit (SQS pollers hold one each)."""

from __future__ import annotations

import subprocess
import sys

import pytest

resource = pytest.importorskip("resource")


def test_the_soft_open_files_limit_is_raised_to_the_hard_one() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 256:
        pytest.skip(f"hard limit {hard}: nothing to show")
    # a child process starting low, as a container's default soft limit of 1,024 would
    code = (
        "import resource\n"
        "from esm.cli import raise_open_files_limit\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, (128, {hard}))\n"
        "raise_open_files_limit()\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == hard
