"""A stand-in for the Lambda Runtime Interface Emulator: the example function without Docker.

::

    python examples/compose/local_rie.py [--host 127.0.0.1] [--port 8080] [--handler app.handler]
                                         [--code-dir examples/compose/function]

It serves what the emulator in ``public.ecr.aws/lambda/python`` serves, for the same handler file
the image holds (``function/app.py``):

- ``POST /2015-03-31/functions/function/invocations`` with the event as body; the answer is the
  handler's return value as JSON, or, when the handler raises, status 200 with Lambda's error
  object ``{"errorMessage", "errorType", "requestId", "stackTrace"}`` (no
  ``X-Amz-Function-Error`` header: esm reads the failure from the body, as it does for the RIE);
- one invocation at a time, as one container runs one;
- the handler module is imported once, at start (init code runs once, like a cold start), with
  the code folder first on ``sys.path``; an import error stops the program.

``context`` carries ``aws_request_id`` (the ``Lambda-Runtime-Aws-Request-Id`` header esm sends, or
a new id), ``function_name``, ``function_version``, ``invoked_function_arn``,
``memory_limit_in_mb`` and ``get_remaining_time_in_millis()`` (from
``Lambda-Runtime-Deadline-Ms``). Standard library only. Once it listens it prints
``listening on http://HOST:PORT`` (``--port 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
DEFAULT_CODE_DIR = Path(__file__).resolve().parent / "function"


class Context:
    """The parts of Lambda's Python ``context`` a handler usually reads."""

    def __init__(self, request_id: str, deadline_ms: int, function_name: str) -> None:
        self.aws_request_id = request_id
        self.function_name = function_name
        self.function_version = "$LATEST"
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        self.invoked_function_arn = f"arn:aws:lambda:{region}:000000000000:function:{function_name}"
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(exc: BaseException, request_id: str) -> dict[str, Any]:
    frames = traceback.extract_tb(exc.__traceback__)[1:]  # without this module's frame
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(frames),
    }


def make_server(
    host: str, port: int, handler: Callable[[Any, Context], Any], function_name: str
) -> ThreadingHTTPServer:
    one_at_a_time = threading.Lock()
    timeout_ms = int(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "300")) * 1000

    class Invocations(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the RIE

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path.split("?", 1)[0] != INVOKE_PATH:
                self._answer(404, b'{"message": "not found"}')
                return
            request_id = self.headers.get("Lambda-Runtime-Aws-Request-Id") or str(uuid.uuid4())
            deadline = self.headers.get("Lambda-Runtime-Deadline-Ms")
            deadline_ms = int(deadline) if deadline else int(time.time() * 1000) + timeout_ms
            context = Context(request_id, deadline_ms, function_name)
            with one_at_a_time:
                try:
                    event = json.loads(body) if body else {}
                    result = json.dumps(handler(event, context)).encode()
                except Exception as exc:
                    result = json.dumps(_error(exc, request_id)).encode()
            self._answer(200, result)

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the handler's own prints are the log

    server = ThreadingHTTPServer((host, port), Invocations)
    server.daemon_threads = True
    return server


def load_handler(spec: str, code_dir: Path) -> Callable[[Any, Context], Any]:
    """``module.function`` from ``code_dir``, as the Lambda image's ``CMD`` names it."""
    module_name, _, attr = spec.rpartition(".")
    if not module_name:
        raise SystemExit(f"--handler must be module.function (got {spec!r})")
    sys.path.insert(0, str(code_dir))
    handler: Callable[[Any, Context], Any] = getattr(importlib.import_module(module_name), attr)
    return handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0: a free port (printed)")
    p.add_argument("--handler", default="app.handler", help="module.function (default app.handler)")
    p.add_argument("--code-dir", type=Path, default=DEFAULT_CODE_DIR, help="the handler's folder")
    p.add_argument("--function-name", default=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "orders"))
    args = p.parse_args(argv)
    handler = load_handler(args.handler, args.code_dir)
    server = make_server(args.host, args.port, handler, args.function_name)
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
