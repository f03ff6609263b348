"""How ``esm run`` logs: text or JSON lines on stderr, esm's level, the noisy libraries quiet.

- ``text`` (the default): ``2024-05-01 12:00:00,123 INFO    esm.invocation: invocation
  function=orders mapping=… outcome=ok …``.
- ``json``: one JSON object per line, ``{"time": "2024-05-01T12:00:00.123Z", "level": "INFO",
  "logger": "esm.invocation", "message": "…"}``; a line that carries fields (the per-invocation
  line of :mod:`esm.invocation_log`) has them as keys of the same object, as Powertools and
  CloudWatch Logs Insights users expect. An exception's traceback is ``exception``.

The level applies to esm's loggers. botocore, aiobotocore, urllib3 and aiohttp (except its
access log, enabled by ``--access-log``) log at WARNING and above unless ``debug_aws``
(``--debug-aws``) asks for their DEBUG too. Only the CLI calls :func:`configure`.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Literal

import orjson

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LIBRARIES = ("botocore", "aiobotocore", "urllib3", "s3transfer", "boto3", "aiohttp", "asyncio")


class JsonFormatter(logging.Formatter):
    """One JSON object per record; the record's ``esm`` dict (if any) merged in as keys."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "esm", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def _iso(created: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{stamp}.{int(created % 1 * 1000):03d}Z"


def configure(
    level: str = "INFO",
    fmt: LogFormat = "text",
    *,
    debug_aws: bool = False,
    access_log: bool = False,
) -> None:
    """Log to stderr in ``fmt`` at ``level`` (see the module docstring)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # botocore's DEBUG prints signed request headers: only when asked for, with DEBUG
    loud = debug_aws and level == "DEBUG"
    quiet = logging.DEBUG if loud else max(logging.WARNING, logging.getLevelName(level))
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(quiet)
    logging.getLogger("aiohttp.access").setLevel(logging.INFO if access_log else logging.WARNING)
    logging.getLogger("esm").debug(
        "logging at %s as %s; %s at %s",
        level,
        fmt,
        ", ".join(LIBRARIES),
        logging.getLevelName(quiet),
    )
