"""kinesalite: Kinesis in memory, with resharding (moto does not model SplitShard / MergeShards).

:func:`serve` runs it on a free loopback port and yields its URL; ``tests/conftest.py`` exposes it
as the session fixture ``kinesalite_url``. kinesalite is pinned in ``tests/package.json``; when
``tests/node_modules`` lacks it, :func:`ensure_installed` runs ``npm ci --prefix tests`` once
(under a file lock, so parallel test processes install it once). Without node/npm the tests that
need it are skipped on a developer's machine and FAIL under ``CI=true``.

kinesalite's CLI listens on every interface and has no host option, so the server is started
through its module API (``require('kinesalite')(options).listen(0, '127.0.0.1')``) with the
CLI's options ``--createStreamMs 0 --deleteStreamMs 0 --updateStreamMs 0``; it prints the port
the OS chose, so there is no free-port race.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node_server import node_server

TESTS_DIR = Path(__file__).parent
MODULE_DIR = TESTS_DIR / "node_modules" / "kinesalite"

_SERVER_JS = """
const kinesalite = require(process.argv[1]);
const server = kinesalite({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0,
                           shardLimit: Number(process.argv[2] || 10)});
server.listen(0, '127.0.0.1', () => console.log('LISTENING ' + server.address().port));
process.on('SIGTERM', () => process.exit(0));
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"kinesalite is needed and unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"kinesalite unavailable: {reason}")


def ensure_installed() -> Path:
    """``tests/node_modules/kinesalite``, installing it from ``tests/package-lock.json`` if absent."""
    if (MODULE_DIR / "package.json").exists():
        return MODULE_DIR
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        _unavailable("node/npm not found; run `npm install --prefix tests` on a machine with node")
    assert npm is not None
    lock_path = (
        Path(tempfile.gettempdir()) / f"esm-npm-{hashlib.sha1(bytes(TESTS_DIR)).hexdigest()}.lock"
    )
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing: wait for it
        if not (MODULE_DIR / "package.json").exists():
            proc = subprocess.run(
                [
                    npm,
                    "ci",
                    "--prefix",
                    str(TESTS_DIR),
                    "--omit=optional",
                    "--no-audit",
                    "--no-fund",
                ],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if proc.returncode != 0:
                _unavailable(f"`npm ci --prefix tests` failed:\n{proc.stdout}\n{proc.stderr}")
    return MODULE_DIR


@contextlib.contextmanager
def server(shard_limit: int = 10) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """kinesalite on 127.0.0.1 with room for ``shard_limit`` shards; yields its process and
    ``http://127.0.0.1:PORT``."""
    module = ensure_installed()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with node_server(["-e", _SERVER_JS, str(module), str(shard_limit)], "kinesalite") as found:
        yield found


@contextlib.contextmanager
def serve() -> Iterator[str]:
    """kinesalite on 127.0.0.1 and a port of the OS's choosing; yields ``http://127.0.0.1:PORT``."""
    with server() as (_, url):
        yield url


# kinesalite's shard iterators are AES-256-CBC with a fixed key: 8 version bytes, then
# "<created ms, 14 digits>/<stream>/<shard>/<sequence>/<36 zeros>". Ageing one is how a test gets
# a real ExpiredIteratorException (after 300 s) without waiting five minutes.
_ITERATOR_KEY = bytes.fromhex("1133a5a833666b49abf28c8ba302930f0b2fb240dccd43cf4dfbc0ca91f17751")
_ITERATOR_IV = bytes.fromhex("7bf139dbabbea2d9995d6fcae1dff7da")


def aged_iterator(iterator: str, seconds: float) -> str:
    """The same kinesalite iterator, as if issued ``seconds`` earlier."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    raw = base64.b64decode(iterator)
    cipher = Cipher(algorithms.AES(_ITERATOR_KEY), modes.CBC(_ITERATOR_IV))
    decryptor = cipher.decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    plain = unpadder.update(decryptor.update(raw[8:]) + decryptor.finalize()) + unpadder.finalize()
    created, rest = plain.decode().split("/", 1)
    older = str(int(created) - int(seconds * 1000)).rjust(14, "0")
    padder = padding.PKCS7(128).padder()
    data = padder.update(f"{older}/{rest}".encode()) + padder.finalize()
    encryptor = cipher.encryptor()
    return base64.b64encode(raw[:8] + encryptor.update(data) + encryptor.finalize()).decode()
