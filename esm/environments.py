"""Execution environments: a function's code run in processes of its own, as Lambda runs it.

A function declared with ``Runtime``, ``Handler`` and ``CodeUri`` runs in environments: each one
a process started with the runtime's client (``python -m awslambdaric <Handler>`` for
``python3.x``; ``node esm/runtimes/nodejs.cjs``, esm's own client, for ``nodejsNN.x``; the
code's own ``bootstrap`` for ``provided.al2`` / ``provided.al2023``), its
CodeUri as working directory and import root, talking to esm's :mod:`esm.runtime_api` on a
loopback port of its own::

    invoke ──> an idle environment (the most recently used) ── none ──> a new one (cold start:
     │         spawn, wait for its first /next: Init Duration), up to the pool's size
     │         (ReservedConcurrentExecutions, else Settings.MaxEnvironmentsPerFunction);
     │         a full pool makes the call wait its turn (outside Timeout)
     ├── init/error, or the process exits during init ──> that error; the environment is dropped
     └── the event, under Timeout on the clock
          ├── /response ──────────────────────────────> Ok
          ├── /error ─────────────────────────────────> FunctionError(Unhandled) with its body
          ├── Timeout ── the process group is killed ─> Sandbox.Timedout
          ├── the process exits ──────────────────────> Runtime.ExitError
          └── its memory passes MemorySize ── killed ─> Runtime.OutOfMemory
    idle for Settings.EnvironmentIdleSeconds (on the clock) ──> killed (reaped)

**Memory**: a watchdog reads the resident size of the process and its children from ``/proc``
(every 50 ms while it starts or runs, every 0.5 s idle) and kills the process group past
``MemorySize``; the invocation is ``Runtime.OutOfMemory``, "Runtime exited with error: signal:
killed", as on Lambda. Sampling lets a fast allocation overshoot a little before the kill
(cgroups would not, but need a delegated cgroup v2 memory controller esm cannot count on).

One invocation at a time per environment. An environment that failed (timeout, exit, init
error) is never reused: the next call gets a fresh one.

**Environment variables** (:func:`lambda_environment`): ``PATH``, ``LANG``, ``LD_LIBRARY_PATH``
and the AWS endpoint, CA bundle and credential variables of esm's own environment (so the
function's SDK talks to the same AWS as esm; with ``--embedded``, ``AWS_ENDPOINT_URL`` is the
embedded emulator), then the function's ``Environment.Variables``, then Lambda's reserved
variables (``_HANDLER``, ``AWS_REGION`` … :data:`RESERVED`), which the function cannot set.

**Logs**: stdout and stderr (one pipe, as Lambda's one log stream) are read line by line and
logged by the ``esm.function.<name>`` logger at INFO, each line prefixed with the request id of
the invocation in progress (``init`` before the first). Each invocation adds ``START``, ``END``
and ``REPORT`` lines as Lambda prints them; ``Max Memory Used`` is the peak resident size
(``VmHWM`` in ``/proc``, or the watchdog's largest sample, whichever is larger); the
invocation's log (its last 4 KB) goes back with the outcome for ``Invoke``'s ``LogType=Tail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import termios
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from esm import builds
from esm.clock import Clock
from esm.layers import import_paths
from esm.outcomes import LATEST, FunctionError, InvokeFailed, Ok, Outcome
from esm.runtime_api import Channel, ErrorResponse, Invocation, Response, RuntimeApi, trace_id

log = logging.getLogger(__name__)

TAIL_LIMIT = 4096
# Lambda's init phase may take 10 s; esm gives a cold start at least that, or the Timeout
INIT_TIMEOUT_S = 10.0
# lines kept per invocation for the LogResult tail (more than 4 KB of them)
_KEPT_LOG_CHARS = 2 * TAIL_LIMIT
_LINE_LIMIT = 256 * 1024

# Keys a function's Environment.Variables may not set (Lambda's "reserved environment
# variables"; CreateFunction refuses them).
RESERVED = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)
# What an environment takes from esm's own environment
_HOST_VARIABLES = ("PATH", "LANG", "LD_LIBRARY_PATH")
_HOST_AWS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CA_BUNDLE",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)
PYTHON_RUNTIMES = ("python3.",)
NODE_RUNTIMES = ("nodejs",)
PROVIDED_RUNTIMES = ("provided.al2023", "provided.al2", "provided")

# -- pure decisions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    """What every environment of one function shares."""

    name: str
    arn: str
    runtime: str
    handler: str
    code_dir: Path
    memory_mb: int
    timeout_s: float
    region: str
    variables: Mapping[str, str] = field(default_factory=dict)
    endpoint_url: str | None = None  # esm's own (--embedded): AWS_ENDPOINT_URL for the function
    log_format: str | None = None  # LoggingConfig.LogFormat
    log_level: str | None = None  # LoggingConfig.ApplicationLogLevel
    layers: tuple[Path, ...] = ()  # local layer folders (esm.layers), after the code on the paths
    # folders with the function's installed dependencies (esm.builds), on its import path
    import_dirs: tuple[Path, ...] = ()


def is_supported_runtime(runtime: str) -> bool:
    return runtime.startswith(PYTHON_RUNTIMES + NODE_RUNTIMES) or runtime in PROVIDED_RUNTIMES


def lambda_environment(
    spec: Spec,
    *,
    runtime_api: str,
    log_stream: str,
    runtime_dir: str,
    host: Mapping[str, str],
) -> dict[str, str]:
    """The environment variables of one environment (see the module's docstring)."""
    env = {k: host[k] for k in _HOST_VARIABLES if k in host}
    env.update({k: v for k, v in host.items() if k.startswith("AWS_ENDPOINT_URL")})
    env.update({k: host[k] for k in _HOST_AWS if k in host})
    if spec.endpoint_url:
        env["AWS_ENDPOINT_URL"] = spec.endpoint_url
    env.setdefault("LANG", "en_US.UTF-8")
    env["TZ"] = ":UTC"
    python_layers, node_layers = import_paths(spec.layers)
    if spec.runtime.startswith(PYTHON_RUNTIMES):
        env["PYTHONPATH"] = os.pathsep.join(
            map(str, [spec.code_dir, *spec.import_dirs, *python_layers])
        )
    elif spec.runtime.startswith(NODE_RUNTIMES):
        # Lambda's NODE_PATH: the layers' node_modules, then the task root; installed
        # dependencies (esm.builds) stand where the function's own node_modules would
        env["NODE_PATH"] = os.pathsep.join(
            map(str, [*spec.import_dirs, *node_layers, spec.code_dir])
        )
    elif node_layers:
        env["NODE_PATH"] = os.pathsep.join(map(str, node_layers))
    if spec.log_format:
        env["AWS_LAMBDA_LOG_FORMAT"] = spec.log_format
    if spec.log_level:
        env["AWS_LAMBDA_LOG_LEVEL"] = spec.log_level
    env.update(spec.variables)
    env.update(
        {
            "_HANDLER": spec.handler,
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": LATEST,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "LAMBDA_RUNTIME_DIR": runtime_dir,
        }
    )
    return env


def log_stream_name(now: float) -> str:
    """``2024/01/31/[$LATEST]<32 hex>``: one per environment, as on Lambda."""
    day = datetime.fromtimestamp(now, UTC).strftime("%Y/%m/%d")
    return f"{day}/[{LATEST}]{uuid.uuid4().hex}"


def report_line(
    request_id: str,
    duration_ms: float,
    memory_mb: int,
    max_memory_mb: int | None,
    init_ms: float | None,
    status: str | None = None,
) -> str:
    """Lambda's REPORT line: tab-separated fields, each followed by a tab; Billed Duration is
    the duration rounded up to the millisecond."""
    parts = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {max(1, math.ceil(duration_ms))} ms",
        f"Memory Size: {memory_mb} MB",
        f"Max Memory Used: {max_memory_mb if max_memory_mb is not None else 0} MB",
    ]
    if init_ms is not None:
        parts.append(f"Init Duration: {init_ms:.2f} ms")
    if status is not None:
        parts.append(f"Status: {status}")
    return "\t".join(parts) + "\t"


def exit_description(returncode: int) -> str:
    """How Lambda words a runtime's end: ``exit status 3``, ``signal: segmentation fault``."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"signal: {-returncode}"
    return f"signal: {_SIGNAL_WORDS.get(name, name.lower())}"


_SIGNAL_WORDS = {
    "SIGSEGV": "segmentation fault",
    "SIGKILL": "killed",
    "SIGABRT": "aborted",
    "SIGTERM": "terminated",
    "SIGBUS": "bus error",
    "SIGILL": "illegal instruction",
    "SIGFPE": "floating point exception",
}


def exit_error(request_id: str, returncode: int, kind: str = "Runtime.ExitError") -> bytes:
    return orjson.dumps(
        {
            "errorType": kind,
            "errorMessage": (
                f"RequestId: {request_id} Error: Runtime exited with error: "
                f"{exit_description(returncode)}"
            ),
        }
    )


def timeout_message(now: float, request_id: str, timeout_s: float) -> str:
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    return (
        f"{stamp.replace('+00:00', 'Z')} {request_id} Task timed out after {timeout_s:.2f} seconds"
    )


def tail(lines: Sequence[str]) -> str:
    """The last 4 KB (of UTF-8) of a log, as LogResult holds it."""
    data = "".join(line + "\n" for line in lines).encode()
    return data[-TAIL_LIMIT:].decode("utf-8", "ignore")


def pick_idle(idle: Sequence[Environment]) -> Environment | None:
    """The most recently used idle environment: the others may then be reaped."""
    return max(idle, key=lambda e: e.last_used, default=None)


def reap_due(idle: Sequence[Environment], now: float, idle_s: float) -> list[Environment]:
    return [e for e in idle if now - e.last_used >= idle_s]


# -- interpreters --------------------------------------------------------------------------------

_PYTHONS: dict[str, tuple[str, str]] = {}


def _probe(executable: str) -> str | None:
    """The folder holding ``awslambdaric`` for that interpreter, or None when it has none."""
    try:
        done = subprocess.run(
            [executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


_PROBE = "import os, awslambdaric as r; print(os.path.dirname(os.path.dirname(r.__file__)))"


def _host_runtime_dir() -> str:
    import awslambdaric  # type: ignore[import-untyped]

    return str(Path(awslambdaric.__file__).parent.parent)


async def python_for(runtime: str) -> tuple[str, str]:
    """The interpreter for ``python3.x`` and its runtime folder (LAMBDA_RUNTIME_DIR): the host's
    when it is that version, else ``python3.x`` from PATH when it can import awslambdaric,
    else the host's with one warning. Decided once per runtime and process (no lock: two
    first calls at once probe twice, harmlessly)."""
    known = _PYTHONS.get(runtime)
    if known is not None:
        return known
    host = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found: tuple[str, str] | None = None
    if runtime == host:
        found = (sys.executable, _host_runtime_dir())
    else:
        executable = shutil.which(runtime)
        folder = await asyncio.to_thread(_probe, executable) if executable else None
        if executable and folder:
            found = (executable, folder)
        elif runtime not in _PYTHONS:
            why = "not on PATH" if executable is None else "cannot import awslambdaric"
            log.warning(
                "%s: %s; functions with Runtime %s run on this interpreter (%s)",
                runtime,
                why,
                runtime,
                host,
            )
    return _PYTHONS.setdefault(runtime, found or (sys.executable, _host_runtime_dir()))


NODE_CLIENT = Path(__file__).parent / "runtimes" / "nodejs.cjs"
_NODES: dict[str, str | None] = {}


def _node_major(executable: str) -> int | None:
    try:
        done = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = done.stdout.strip().lstrip("v").split(".")[0]
    return int(version) if done.returncode == 0 and version.isdigit() else None


async def node_for(runtime: str) -> str | None:
    """The ``node`` for ``nodejsNN.x``: ``nodeNN`` from PATH if there is one, else ``node``
    (one warning when its major version is another); None when there is no node at all.
    Decided once per runtime and process."""
    if runtime in _NODES:
        return _NODES[runtime]
    wanted = runtime.removeprefix("nodejs").split(".")[0]
    executable = shutil.which(f"node{wanted}") or shutil.which("node")
    if executable is not None:
        major = await asyncio.to_thread(_node_major, executable)
        if str(major) != wanted:
            log.warning(
                "%s: no node %s on PATH; functions with Runtime %s run on %s (node %s)",
                runtime,
                wanted,
                runtime,
                executable,
                major,
            )
    return _NODES.setdefault(runtime, executable)


async def command_for(spec: Spec) -> tuple[list[str], str]:
    """The environment's command line and its LAMBDA_RUNTIME_DIR."""
    if spec.runtime.startswith(PYTHON_RUNTIMES):
        executable, runtime_dir = await python_for(spec.runtime)
        return [executable, "-m", "awslambdaric", spec.handler], runtime_dir
    if spec.runtime.startswith(NODE_RUNTIMES):
        node = await node_for(spec.runtime) or "node"
        return [node, str(NODE_CLIENT)], str(NODE_CLIENT.parent)
    bootstrap = spec.code_dir / "bootstrap"
    return [str(bootstrap)], str(spec.code_dir)


def exit_error_type(returncode: int, out_of_memory: bool) -> str:
    """``Runtime.OutOfMemory`` when esm killed the process for its memory, else
    ``Runtime.ExitError``: Lambda's words for both are "Runtime exited with error: ..."."""
    return "Runtime.OutOfMemory" if out_of_memory else "Runtime.ExitError"


def over_memory(rss_mb: float, memory_mb: int) -> bool:
    return rss_mb > memory_mb


# How often an environment's memory is read: while it starts or runs an invocation, and idle
MEMORY_SAMPLE_S = 0.05
MEMORY_SAMPLE_IDLE_S = 0.5


def _status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _descendants(pid: int) -> list[int]:
    """The process and the processes it started, and theirs (``/proc/<pid>/task/<pid>/children``:
    the children of each main thread, which is where runtimes run handlers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children", encoding="ascii") as f:
                todo.extend(int(child) for child in f.read().split())
        except (OSError, ValueError):
            continue
    return found


def resident_mb(pid: int) -> float | None:
    """The resident memory of the process and its descendants, in MB (None: no /proc)."""
    sizes = [_status_kb(p, "VmRSS:") for p in _descendants(pid)]
    known = [kb for kb in sizes if kb is not None]
    return sum(known) / 1024 if known else None


def max_memory_mb(pid: int) -> int | None:
    """The process's peak resident set (``VmHWM``) in MB, None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return math.ceil(int(line.split()[1]) / 1024)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _pending_bytes(fd: int) -> int:
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])
    except OSError:
        return 0


# -- one environment -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitFailed:
    """The environment could not start: Lambda's init error body (its type inside)."""

    body: bytes


@dataclass(frozen=True, slots=True)
class Exited:
    """The process ended during the invocation (``out_of_memory``: esm killed it for going past
    its MemorySize)."""

    returncode: int
    out_of_memory: bool = False


class Environment:
    """One process and its Runtime API channel. Its states: ``starting`` → ``idle`` ⇄ ``busy``
    → ``dead`` (killed, exited, failed); only the pool moves it between them."""

    def __init__(self, spec: Spec, api: RuntimeApi, clock: Clock) -> None:
        self.spec = spec
        self._api = api
        self._clock = clock
        self.state = "starting"
        self.last_used = clock.now()
        self.invocations = 0
        self.init_ms: float | None = None
        self.log_stream = log_stream_name(clock.now())
        self._logger = logging.getLogger(f"esm.function.{spec.name}")
        self._channel: Channel | None = None
        self._address = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._exited: asyncio.Task[int] | None = None
        self._read_fd = -1
        self._request_id = "init"
        self.lines: list[str] = []
        self._kept = 0
        self._watchdog: asyncio.Task[None] | None = None
        self.generation = 0  # the pool's code generation when it started (see recycle)
        self.out_of_memory = False
        self.peak_mb = 0.0  # the largest resident size the watchdog saw

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # -- log lines

    def note(self, line: str) -> None:
        """A line of this environment's log (the process's, or esm's START/END/REPORT)."""
        self.lines.append(line)
        self._kept += len(line) + 1
        while self._kept > _KEPT_LOG_CHARS and len(self.lines) > 1:
            self._kept -= len(self.lines.pop(0)) + 1

    def begin(self, request_id: str) -> None:
        self._request_id = request_id
        if self.invocations:  # a cold start keeps its init lines before START
            self.lines, self._kept = [], 0

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await reader.readline()
            except ValueError:  # a line past the limit: asyncio dropped it
                raw = b"[esm: a line longer than 256 KB was dropped]\n"
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._logger.info("%s %s", self._request_id, line)
            self.note(line)

    async def drain(self) -> None:
        """Let the reader take what the process wrote before it answered."""
        for _ in range(50):
            await asyncio.sleep(0)
            if self._read_fd < 0 or _pending_bytes(self._read_fd) == 0:
                await asyncio.sleep(0)
                return
            await asyncio.sleep(0.001)

    # -- lifecycle

    async def start(self) -> float | InitFailed:
        """Spawn and wait for the runtime's first /next: the init duration (ms), or why not."""
        started = self._clock.now()
        loop = asyncio.get_running_loop()
        channel = self._channel = Channel()
        self._address = await self._api.open(channel)
        argv, runtime_dir = await command_for(self.spec)
        env = lambda_environment(
            self.spec,
            runtime_api=self._address,
            log_stream=self.log_stream,
            runtime_dir=runtime_dir,
            host=os.environ,
        )
        read_fd, write_fd = os.pipe()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.spec.code_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,
            )
        except OSError as exc:
            os.close(read_fd)
            return InitFailed(
                orjson.dumps(
                    {
                        "errorMessage": f"Couldn't start {argv[0]}: {exc}",
                        "errorType": "Runtime.InvalidEntrypoint",
                    }
                )
            )
        finally:
            os.close(write_fd)
        self._read_fd = read_fd
        reader = asyncio.StreamReader(limit=_LINE_LIMIT)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
        )
        self._reader = asyncio.create_task(self._read(reader))
        self._exited = asyncio.create_task(self._proc.wait())
        self._watchdog = asyncio.create_task(self._watch_memory(self._proc.pid))
        ready = asyncio.create_task(channel.ready.wait())
        limit = max(INIT_TIMEOUT_S, self.spec.timeout_s)
        try:
            waited: set[asyncio.Future[Any]] = {ready, channel.init_error, self._exited}
            done, _ = await asyncio.wait(
                waited,
                timeout=limit,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
        if channel.init_error.done():
            return InitFailed(channel.init_error.result().body)
        if self._exited in done:
            await self.drain()
            return InitFailed(
                orjson.dumps(
                    {
                        "errorType": exit_error_type(0, self.out_of_memory),
                        "errorMessage": "Runtime exited without providing a reason: "
                        + exit_description(self._exited.result()),
                    }
                )
            )
        if not done:
            return InitFailed(
                orjson.dumps(
                    {
                        "errorType": "Runtime.InitTimeout",
                        "errorMessage": f"Init phase timed out after {limit:.2f} seconds",
                    }
                )
            )
        self.init_ms = (self._clock.now() - started) * 1000
        self.state = "idle"
        return self.init_ms

    async def invoke(self, invocation: Invocation) -> Response | ErrorResponse | Exited:
        """Hand the event over and wait for the answer or the process's end."""
        assert self._channel is not None and self._exited is not None
        answer = self._channel.submit(invocation)
        waited: set[asyncio.Future[Any]] = {answer, self._exited}
        done, _ = await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        if answer in done:
            return answer.result()
        return Exited(self._exited.result(), self.out_of_memory)

    async def _watch_memory(self, pid: int) -> None:
        """MemorySize, enforced: the process group is killed (SIGKILL, as Lambda's sandbox is)
        once the resident memory of the process and its children passes it. Sampled on real
        time, not the Clock: it measures real processes, as the log reader does
        (docs/semantics.md §9.4)."""
        limit = self.spec.memory_mb
        while self._proc is not None and self._proc.returncode is None:
            rss = resident_mb(pid)
            if rss is not None:
                self.peak_mb = max(self.peak_mb, rss)
                if over_memory(rss, limit):
                    self.out_of_memory = True
                    log.info(
                        "function %s: environment pid %s uses %.0f MB, past its MemorySize "
                        "(%d MB): killed",
                        self.spec.name,
                        pid,
                        rss,
                        limit,
                    )
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                    return
            busy = self.state in ("starting", "busy")
            await asyncio.sleep(MEMORY_SAMPLE_S if busy else MEMORY_SAMPLE_IDLE_S)

    def max_memory_mb(self) -> int | None:
        """Max Memory Used: the peak resident size (the kernel's VmHWM, or the watchdog's
        samples of the process and its children, whichever is larger)."""
        hwm = max_memory_mb(self.pid) if self.pid else None
        sampled = math.ceil(self.peak_mb) if self.peak_mb else None
        known = [m for m in (hwm, sampled) if m is not None]
        return max(known) if known else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def kill(self) -> None:
        """Kill the process group, close the channel and the reader; safe twice."""
        self.state = "dead"
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        if self._exited is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._exited), 5)
        if self._address:
            await self._api.close(self._address)
            self._address = ""
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._reader), 1)
            self._reader.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watchdog


# -- the pool: a function target -----------------------------------------------------------------


class EnvironmentTarget:
    """A function's environments, as a target of :class:`esm.functions.Function`.

    ``gate`` (a semaphore of the pool's size) is held around each call outside the timeout, so
    a call waits for a free environment rather than timing out for want of one; the target
    times the invocation itself (``times_itself``): a cold start's init is not counted in
    ``Timeout``, as on Lambda (init has its own limit, :data:`INIT_TIMEOUT_S` or the Timeout if
    longer).
    """

    times_itself = True

    def __init__(self, spec: Spec, clock: Clock, *, max_environments: int, idle_s: float) -> None:
        self.spec = spec
        self._clock = clock
        self._idle_s = idle_s
        self._api = RuntimeApi()
        self.gate: asyncio.Semaphore | None = asyncio.Semaphore(max_environments)
        self.environments: list[Environment] = []
        self._reaper: asyncio.Task[None] | None = None
        self._killing: set[asyncio.Task[None]] = set()
        self._closed = False
        self._building = asyncio.Lock()
        self._build_failed: tuple[str, str] | None = None  # (cache key, error) of the last try
        self._generation = 0

    def _take_idle(self) -> Environment | None:
        for dead in [e for e in self.environments if e.state == "idle" and not e.alive]:
            self.environments.remove(dead)  # died while idle: reaped at once
            task = asyncio.get_running_loop().create_task(dead.kill())
            self._killing.add(task)
            task.add_done_callback(self._killing.discard)
        env = pick_idle([e for e in self.environments if e.state == "idle"])
        if env is not None:
            env.state = "busy"
        return env

    def _new(self) -> Environment:
        env = Environment(self.spec, self._api, self._clock)
        env.generation = self._generation
        self.environments.append(env)
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap(), name=f"reaper-{self.spec.name}")
        return env

    async def _drop(self, env: Environment) -> None:
        if env in self.environments:
            self.environments.remove(env)
        await asyncio.shield(env.kill())

    def _platform(self, env: Environment, line: str) -> None:
        env.note(line)
        logging.getLogger(f"esm.function.{self.spec.name}").info("%s", line)

    async def call(self, call: _CallLike) -> Outcome:
        if self._closed:
            return InvokeFailed(f"function {self.spec.name} is closed")
        env = self._take_idle()
        if env is None:
            failed = await self._prepare()
            if failed is not None:
                return InvokeFailed(failed)
        try:
            if env is None:
                env = self._new()
                started = await env.start()
                if isinstance(started, InitFailed):
                    return await self._init_failed(env, call.request_id, started)
                env.state = "busy"
            return await self._run(env, call)
        except BaseException:
            if env is not None:
                await self._drop(env)
            raise

    async def _prepare(self) -> str | None:
        """Before a cold start: the function's dependencies installed (:mod:`esm.builds`) and
        on its import path; the error when they cannot be (not tried again until the manifest
        changes)."""
        spec = self.spec
        build = builds.plan(spec.name, spec.runtime, spec.code_dir)
        if build is None:
            return None
        interpreter = ""
        if spec.runtime.startswith(PYTHON_RUNTIMES):
            interpreter = (await python_for(spec.runtime))[0]
        async with self._building:
            try:
                key = builds.key(build, interpreter)
            except OSError as exc:
                return f"function {spec.name}: cannot read {build.manifest}: {exc}"
            if self._build_failed is not None and self._build_failed[0] == key:
                return self._build_failed[1]
            if not builds.is_cached(build, interpreter):
                log.info("function %s: installing %s (%s)", spec.name, build.manifest, build.tool)
            try:
                folder = await builds.ensure(build, interpreter)
            except builds.BuildError as exc:
                log.error("%s", exc)
                self._build_failed = (key, str(exc))
                return str(exc)
            self._build_failed = None
            if self.spec.import_dirs != (folder,):
                self.spec = replace(self.spec, import_dirs=(folder,))
        return None

    async def _init_failed(self, env: Environment, rid: str, failed: InitFailed) -> Outcome:
        await env.drain()
        await self._drop(env)
        kind = _error_type(failed.body)
        self._platform(env, f"START RequestId: {rid} Version: {LATEST}")
        self._platform(env, f"END RequestId: {rid}")
        self._platform(
            env,
            report_line(rid, 0.0, self.spec.memory_mb, None, None, f"error\tError Type: {kind}"),
        )
        return FunctionError(failed.body, log=tail(env.lines))

    async def _run(self, env: Environment, call: _CallLike) -> Outcome:
        clock = self._clock
        rid = call.request_id
        timeout = self.spec.timeout_s
        init_ms = env.init_ms if env.invocations == 0 else None
        env.begin(rid)
        self._platform(env, f"START RequestId: {rid} Version: {LATEST}")
        start = clock.now()
        invocation = Invocation(
            request_id=rid,
            payload=call.payload,
            deadline_ms=int((start + timeout) * 1000),
            function_arn=self.spec.arn,
            trace_id=trace_id(start),
            client_context=call.client_context,
        )
        result: Response | ErrorResponse | Exited | None
        try:
            result = await clock.wait_for(env.invoke(invocation), timeout)
        except TimeoutError:
            result = None
        duration_ms = (clock.now() - start) * 1000
        env.invocations += 1
        memory = env.max_memory_mb()
        status: str | None = None
        keep = False
        outcome: Outcome
        if result is None:
            await env.kill()
            await env.drain()
            message = timeout_message(clock.now(), rid, timeout)
            self._platform(env, message)
            outcome = FunctionError(
                orjson.dumps({"errorMessage": message, "errorType": "Sandbox.Timedout"})
            )
            status = "timeout"
        elif isinstance(result, Exited):
            await env.drain()
            kind = exit_error_type(result.returncode, result.out_of_memory)
            body = exit_error(rid, result.returncode, kind)
            self._platform(env, orjson.loads(body)["errorMessage"])
            self._platform(env, kind)
            outcome = FunctionError(body)
            status = f"error\tError Type: {kind}"
        elif isinstance(result, ErrorResponse):
            await env.drain()
            outcome = FunctionError(result.body)
            keep = result.error_type != "Function.ResponseSizeTooLarge" or env.alive
        else:
            await env.drain()
            outcome = Ok(result.body)
            keep = True
        self._platform(env, f"END RequestId: {rid}")
        self._platform(
            env, report_line(rid, duration_ms, self.spec.memory_mb, memory, init_ms, status)
        )
        log_text = tail(env.lines)
        if keep and env.alive and not self._closed and env.generation == self._generation:
            env.state = "idle"
            env.last_used = clock.now()
        else:
            await self._drop(env)
        if isinstance(outcome, Ok):
            return Ok(outcome.payload, log=log_text)
        assert isinstance(outcome, FunctionError)
        return FunctionError(outcome.payload, log=log_text)

    def recycle(self) -> int:
        """The function's code changed (``esm run --watch``): idle environments stop now, busy
        ones once their invocation ends (it finishes on the old code); the next call starts a
        fresh one. Returns how many were stopped now."""
        self._generation += 1
        idle = [e for e in self.environments if e.state == "idle"]
        for env in idle:
            self.environments.remove(env)
            task = asyncio.get_running_loop().create_task(env.kill())
            self._killing.add(task)
            task.add_done_callback(self._killing.discard)
        return len(idle)

    async def _reap(self) -> None:
        """Kill environments idle for ``idle_s``, on the clock, while the pool has any."""
        clock = self._clock
        while not self._closed and self.environments:
            now = clock.now()
            idle = [e for e in self.environments if e.state == "idle"]
            for env in reap_due(idle, now, self._idle_s):
                log.info(
                    "function %s: environment pid %s idle for %gs: stopped",
                    self.spec.name,
                    env.pid,
                    self._idle_s,
                )
                await self._drop(env)
            idle = [e for e in self.environments if e.state == "idle"]
            wait = min((e.last_used + self._idle_s - now for e in idle), default=self._idle_s)
            await clock.sleep(max(wait, 0.001))

    async def aclose(self) -> None:
        """Kill every environment and stop listening; safe twice."""
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        envs, self.environments = self.environments, []
        await asyncio.gather(*(env.kill() for env in envs), return_exceptions=True)
        await self._api.aclose()


def _error_type(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "Runtime.Unknown"
    kind = data.get("errorType") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else "Runtime.Unknown"


class _CallLike(Protocol):
    @property
    def payload(self) -> bytes: ...
    @property
    def request_id(self) -> str: ...
    @property
    def client_context(self) -> str | None: ...
