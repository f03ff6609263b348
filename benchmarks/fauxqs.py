"""fauxqs: a fast SQS emulator (npm) for the SQS throughput and latency benchmarks.

:func:`serve` runs it on 127.0.0.1 and a port of the OS's choosing and yields its endpoint URL;
the process is killed on the way out. fauxqs is pinned in ``benchmarks/package.json`` (with
``benchmarks/package-lock.json``); when ``benchmarks/node_modules`` lacks it,
:func:`ensure_installed` runs ``npm ci --prefix benchmarks`` once (under a file lock, so parallel
runs install it once).

Why 1.9.2: fauxqs 2.x imports ``node:sqlite`` at start-up (Node ≥ 22.5) and this project's
machines have Node 20; 1.9.2 is the newest release on the registry that runs on Node 20.

fauxqs takes its port from ``startFauxqs({port})`` / ``FAUXQS_PORT`` but always listens on
``0.0.0.0`` (``FAUXQS_HOST`` only names the host in queue URLs). So it is started through its
module API by a small script that first makes every ``net.Server.listen({host, …})`` in the
process use ``127.0.0.1``; the script prints the port it got, so there is no free-port race.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.node_server import node_server

BENCH_DIR = Path(__file__).parent
MODULE_DIR = BENCH_DIR / "node_modules" / "fauxqs"

_SERVER_JS = """
import net from "node:net";
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  // fauxqs hard-codes host "0.0.0.0": keep it on loopback.
  if (args[0] && typeof args[0] === "object") args[0] = { ...args[0], host: "127.0.0.1" };
  return listen.apply(this, args);
};
const { startFauxqs } = await import(process.argv[1]);
const server = await startFauxqs({ port: 0, logger: false });
console.log("LISTENING " + server.port);
process.on("SIGTERM", () => process.exit(0));
"""


def ensure_installed() -> Path:
    """``benchmarks/node_modules/fauxqs``, installed from the lockfile if absent."""
    if (MODULE_DIR / "package.json").exists():
        return MODULE_DIR
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("fauxqs needs node and npm (Node 20+); neither was found")
    lock_path = Path(tempfile.gettempdir()) / (
        f"esm-npm-{hashlib.sha1(bytes(BENCH_DIR)).hexdigest()}.lock"
    )
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing: wait for it
        if not (MODULE_DIR / "package.json").exists():
            proc = subprocess.run(
                [npm, "ci", "--prefix", str(BENCH_DIR), "--no-audit", "--no-fund"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"`npm ci --prefix benchmarks` failed:\n{proc.stdout}\n{proc.stderr}"
                )
    return MODULE_DIR


@contextlib.contextmanager
def serve(pids: list[int] | None = None) -> Iterator[str]:
    """fauxqs on 127.0.0.1; yields ``http://127.0.0.1:PORT`` and kills it afterwards. Its process
    id goes into ``pids`` when given (to measure its CPU)."""
    module = ensure_installed()
    entry = (module / "dist" / "app.js").as_uri()
    env = {**os.environ, "FAUXQS_LOGGER": "false"}
    env.pop("FAUXQS_PORT", None)
    argv = ["--input-type=module", "-e", _SERVER_JS, entry]
    with node_server(argv, "fauxqs", env=env) as (proc, url):
        if pids is not None:
            pids.append(proc.pid)
        yield url


def version() -> str | None:
    """The installed fauxqs version (None before :func:`ensure_installed`)."""
    try:
        return str(json.loads((MODULE_DIR / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None
