"""NotifyFunction: invoked asynchronously; its result goes to the OnSuccess topic, its failures
(after one retry) to the OnFailure queue."""

from __future__ import annotations

from typing import Any


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("fail"):
        raise RuntimeError(f"cannot notify {event.get('to')}")
    print(f"notified {event.get('to')}")
    return {"notified": event.get("to")}
