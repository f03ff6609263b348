"""Function targets: where a function runs, one module per kind, the outcomes apart
(:mod:`esm.outcomes`)::

    base.py          Call, the Target protocol, Lambda's error payloads
    python.py        python:pkg.module.handler  in process; async handlers awaited, sync ones in a
                     thread pool; the LambdaContext
    http.py          http://… https://…  POST the event through one aiohttp session per function;
                     rie://host:port  the Lambda Runtime Interface Emulator, one request at a time
    lambda_.py       lambda:arn:aws:lambda:…  Lambda's Invoke through aiobotocore
    environment.py   Runtime + Handler + CodeUri: execution environments (esm.environments)
    factory.py       build_target: which kind a function's config names

What each target's answer becomes (docs/semantics.md §9.1: a function error is an answer, not an
exception):

=====================================  =====================================================
the target said                        outcome
=====================================  =====================================================
a value / HTTP 2xx                     ``Ok(payload)``
an exception, timeout, import error,   ``FunctionError(payload, "Unhandled")`` with Lambda's
unserialisable value                   ``{"errorMessage", "errorType", …}`` payload
``X-Amz-Function-Error`` / Lambda's    ``FunctionError(payload, kind)`` (Handled / Unhandled)
``FunctionError``
HTTP 4xx (not 429), 5xx                ``FunctionError(…, "Unhandled")``: it reached the function
rie: 200 with ``errorType`` and        ``FunctionError(…, "Unhandled")``: the RIE does not always
``errorMessage``                       set the header
HTTP 429, ``TooManyRequestsException``  ``Throttled(reason)``
connection refused, DNS, connect       ``InvokeFailed(reason)``: the function never ran
timeout, Lambda API errors
(``ResourceNotFoundException`` …)
=====================================  =====================================================

No target raises for a function's misbehaviour; ``CancelledError`` from the caller always
propagates. Calls are cheap on purpose (the engine's hot path): no pydantic per call, one session
and one thread pool per function, orjson for (de)serialisation.
"""

from esm.targets.base import Call, Target
from esm.targets.factory import build_target

__all__ = ["Call", "Target", "build_target"]
