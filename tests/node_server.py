"""Emulators that run on Node (kinesalite for the tests, fauxqs for the benchmarks).

The script given to ``node`` listens on 127.0.0.1 and a port of the OS's choosing and prints
``LISTENING <port>`` first, so there is no free-port race; the server is ready once it answers
HTTP. Its output goes to a temporary file, so a full pipe never stalls it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

START_TIMEOUT_S = 20.0


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer will do: it is serving
    except OSError:
        return False


@contextlib.contextmanager
def node_server(
    argv: list[str], name: str, *, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``node *argv``; yields the process and ``http://127.0.0.1:PORT`` once it answers, and
    stops it afterwards (SIGTERM, then SIGKILL after 5 s)."""
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        ["node", *argv],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env if env is not None else dict(os.environ),
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        url = ""
        while not url or not answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"{name} did not start: {log.read()}")
            time.sleep(0.05)
            if not url:
                log.seek(0)
                first = log.readline()
                if first.startswith("LISTENING ") and first.endswith("\n"):
                    url = f"http://127.0.0.1:{int(first.split()[1])}"
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
