"""esm: AWS Lambda event source mappings and asynchronous invocation, outside AWS.

The public face, importable from here::

    from esm import Engine, load_config, parse_config, ConfigError, RealClock, VirtualClock

- :func:`load_config` / :func:`parse_config`: an ``esm.yaml`` file or document, validated
  (:class:`ConfigError` lists every problem, each naming its field and rule).
- :class:`Engine`: what ``esm run`` runs, for embedding in an application
  (``async with Engine(config) as engine: …``).
- :class:`RealClock`, :class:`VirtualClock`: the time every retry, window and lease runs on.
- :mod:`esm.testing`: the pytest library (event factories, the in-process harness on a virtual
  clock); its own ``__all__`` lists what it offers.

Everything else is internal and may change. Names load on first use, so ``import esm`` stays
cheap (and ``esm.config`` does not pull in the engine).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from esm._version import __version__ as __version__

_EXPORTS = {
    "ConfigError": "esm.errors",
    "Engine": "esm.engine",
    "RealClock": "esm.clock",
    "VirtualClock": "esm.clock",
    "load_config": "esm.config",
    "parse_config": "esm.config",
}

__all__ = ["ConfigError", "Engine", "RealClock", "VirtualClock", "load_config", "parse_config"]

if TYPE_CHECKING:
    from esm.clock import RealClock, VirtualClock
    from esm.config import load_config, parse_config
    from esm.engine import Engine
    from esm.errors import ConfigError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'esm' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
