"""Counters and gauges named after Lambda's CloudWatch metrics (docs/semantics.md §11).

ESM metrics carry ``function_name`` and ``uuid`` labels, function metrics ``function_name``
(docs/semantics.md §11). The engine only counts; exporting (Prometheus at ``/metrics``) reads
:meth:`Metrics.samples`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from esm.functions import Outcome

Labels = tuple[tuple[str, str], ...]

COUNTERS = frozenset(
    {
        # function
        "Invocations",
        "Errors",
        "Throttles",
        "DeadLetterErrors",
        "DestinationDeliveryFailures",
        # event source mappings
        "PolledEventCount",
        "FilteredOutEventCount",
        "InvokedEventCount",
        "FailedInvokeEventCount",
        "DeletedEventCount",
        "DroppedEventCount",
        "OnFailureDestinationDeliveredEventCount",
        # async
        "AsyncEventsReceived",
        "AsyncEventsDropped",
    }
)


class Metrics:
    def __init__(self) -> None:
        self._values: dict[str, dict[Labels, float]] = defaultdict(dict)

    @staticmethod
    def _labels(labels: dict[str, str]) -> Labels:
        return tuple(sorted(labels.items()))

    def incr(self, name: str, value: float = 1, **labels: str) -> None:
        series = self._values[name]
        key = self._labels(labels)
        series[key] = series.get(key, 0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        self._values[name][self._labels(labels)] = value

    def get(self, name: str, **labels: str) -> float:
        """The value for exactly these labels, or the sum over all series when none are given."""
        series = self._values.get(name, {})
        if labels:
            return series.get(self._labels(labels), 0)
        return sum(series.values())

    def samples(self) -> Iterator[tuple[str, Labels, float]]:
        for name, series in sorted(self._values.items()):
            for labels, value in series.items():
                yield name, labels, value


def count_outcome(metrics: Metrics, function_name: str, outcome: Outcome) -> None:
    """Invocations / Errors / Throttles as Lambda counts them (docs/semantics.md §11)."""
    from esm.functions import FunctionError, Ok, Throttled

    if isinstance(outcome, Ok | FunctionError):
        metrics.incr("Invocations", function_name=function_name)
        if isinstance(outcome, FunctionError):
            metrics.incr("Errors", function_name=function_name)
    elif isinstance(outcome, Throttled):
        metrics.incr("Throttles", function_name=function_name)


def prometheus_text(metrics: Metrics, prefix: str = "esm_") -> str:
    """The Prometheus text exposition (0.0.4) of every series: counters as ``<name>_total``."""
    lines: list[str] = []
    current = ""
    for name, labels, value in metrics.samples():
        counter = name in COUNTERS
        metric = f"{prefix}{name}{'_total' if counter else ''}"
        if metric != current:
            current = metric
            lines.append(f"# TYPE {metric} {'counter' if counter else 'gauge'}")
        rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        lines.append(f"{metric}{{{rendered}}} {value:g}" if rendered else f"{metric} {value:g}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
