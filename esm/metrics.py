"""Lambda's CloudWatch metrics, counted per engine and exported as Prometheus text
(docs/semantics.md §11).

Every engine has its own :class:`Metrics`: a ``prometheus_client`` ``CollectorRegistry`` holding
the metrics of :data:`SPECS`, named as Lambda names them with the ``esm_`` prefix (counters end
in ``_total``), each with a ``# HELP`` and a ``# TYPE`` line. Values are exact (a counter past
10⁶ prints every digit, so ``rate()`` loses nothing).

Labels (docs/semantics.md §11): function metrics carry ``function_name``, event-source-mapping
metrics ``function_name`` and ``uuid``. The engine registers every configured function and every
mapping it runs when it starts them (:meth:`Metrics.function`, :meth:`Metrics.keep_mappings`),
so their series exist from the start, at zero, and a deleted mapping's series go.

Units are Lambda's: ``Duration``, ``IteratorAge`` and ``AsyncEventAge`` in milliseconds.
``AsyncEventAge`` is the age of the event last handed to the function, and 0 once the
function's ready queue is empty; ``IteratorAge`` is the age of the last record of the last
batch invoked, and 0 once a shard is read to its tip.

:attr:`Metrics.invocations` keeps what the last invocations did (:mod:`esm.invocation_log`), for
the log, ``esm status`` and the dashboard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import Metric as _Metric

from esm.invocation_log import InvocationLog

if TYPE_CHECKING:
    from esm.functions import Outcome

Labels = tuple[tuple[str, str], ...]
Kind = Literal["counter", "gauge", "histogram"]

PREFIX = "esm"
CONTENT_TYPE = CONTENT_TYPE_LATEST  # text/plain; version=0.0.4; charset=utf-8
FUNCTION = ("function_name",)
MAPPING = ("function_name", "uuid")
DURATION_BUCKETS_MS = (1, 5, 10, 25, 50, 100, 250, 500, 1e3, 2.5e3, 5e3, 1e4, 3e4, 6e4, 9e5)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass(frozen=True, slots=True)
class Spec:
    kind: Kind
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()


SPECS: dict[str, Spec] = {
    # functions
    "Invocations": Spec(
        "counter", FUNCTION, "Invocations that ran the function, failed ones included"
    ),
    "Errors": Spec("counter", FUNCTION, "Invocations that ended in a function error"),
    "Throttles": Spec("counter", FUNCTION, "Invocations refused for lack of concurrency"),
    "ConcurrentExecutions": Spec("gauge", FUNCTION, "Invocations running now"),
    "Duration": Spec(
        "histogram",
        FUNCTION,
        "Milliseconds an invocation that ran took (as Lambda's Duration)",
        DURATION_BUCKETS_MS,
    ),
    "DeadLetterErrors": Spec(
        "counter", FUNCTION, "Async events that could not be sent to the dead-letter queue"
    ),
    "DestinationDeliveryFailures": Spec(
        "counter", FUNCTION, "Records not delivered to an on-success / on-failure destination"
    ),
    # asynchronous invocation
    "AsyncEventsReceived": Spec("counter", FUNCTION, "Events queued by Invoke(Event)"),
    "AsyncEventsDropped": Spec(
        "counter", FUNCTION, "Async events given up (retries exhausted, too old, no concurrency)"
    ),
    "AsyncEventAge": Spec(
        "gauge",
        FUNCTION,
        "Milliseconds between queueing and invoking of the last async event (0: queue empty)",
    ),
    # event source mappings
    "PolledEventCount": Spec("counter", MAPPING, "Records read from the source"),
    "FilteredOutEventCount": Spec("counter", MAPPING, "Records dropped by FilterCriteria"),
    "InvokedEventCount": Spec("counter", MAPPING, "Records sent to the function, retries too"),
    "FailedInvokeEventCount": Spec(
        "counter", MAPPING, "Records of invocations that failed or reported failures"
    ),
    "DeletedEventCount": Spec("counter", MAPPING, "SQS messages deleted after processing"),
    "DroppedEventCount": Spec(
        "counter", MAPPING, "Stream records discarded without reaching an on-failure destination"
    ),
    "OnFailureDestinationDeliveredEventCount": Spec(
        "counter", MAPPING, "Stream records discarded and described to the on-failure destination"
    ),
    "IteratorAge": Spec(
        "gauge",
        MAPPING,
        "Milliseconds between arrival and invocation of the last record (0: shard caught up)",
    ),
    "BatchSize": Spec("histogram", MAPPING, "Records per invocation", BATCH_BUCKETS),
}

COUNTERS = frozenset(n for n, s in SPECS.items() if s.kind == "counter")

_Any = Counter | Gauge | Histogram


class Metrics:
    """One engine's metrics. ``incr`` / ``set`` / ``observe`` take the metric's labels as
    keywords; a name not in :data:`SPECS`, or other labels, is a ``ValueError``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.invocations = InvocationLog()
        self._metrics: dict[str, _Any] = {}
        self._mappings: set[tuple[str, str]] = set()
        for name, spec in SPECS.items():
            self._metrics[name] = _build(name, spec, self.registry)

    def _child(self, name: str, labels: dict[str, str]) -> _Any:
        spec = SPECS.get(name)
        if spec is None:
            raise ValueError(f"unknown metric {name!r}")
        if set(labels) != set(spec.labels):
            raise ValueError(f"metric {name} takes labels {spec.labels}, not {tuple(labels)}")
        return self._metrics[name].labels(**labels)

    def incr(self, name: str, value: float = 1, **labels: str) -> None:
        child = self._child(name, labels)
        assert isinstance(child, Counter), name
        child.inc(value)

    def set(self, name: str, value: float, **labels: str) -> None:
        child = self._child(name, labels)
        assert isinstance(child, Gauge), name
        child.set(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        child = self._child(name, labels)
        assert isinstance(child, Histogram), name
        child.observe(value)

    # -- series from the start --------------------------------------------------------------------

    def function(self, name: str, in_flight: Callable[[], float] | None = None) -> None:
        """Create a function's series at zero; ``in_flight`` feeds ``ConcurrentExecutions``."""
        for metric, spec in SPECS.items():
            if spec.labels == FUNCTION:
                child = self._child(metric, {"function_name": name})
                if metric == "ConcurrentExecutions" and in_flight is not None:
                    assert isinstance(child, Gauge)
                    child.set_function(in_flight)

    def keep_mappings(self, mappings: Iterable[tuple[str, str]]) -> None:
        """The (function name, uuid) of every mapping running now: their series exist (at zero
        when new); the series of mappings gone are removed."""
        wanted = set(mappings)
        for function_name, uuid in wanted - self._mappings:
            for metric, spec in SPECS.items():
                if spec.labels == MAPPING:
                    self._child(metric, {"function_name": function_name, "uuid": uuid})
        for function_name, uuid in self._mappings - wanted:
            for metric, spec in SPECS.items():
                if spec.labels == MAPPING:
                    self._metrics[metric].remove(function_name, uuid)
        self._mappings = wanted

    # -- reading --------------------------------------------------------------------------------

    def get(self, name: str, **labels: str) -> float:
        """The value for exactly these labels, or the sum over all series when none are given
        (a histogram's: its number of observations)."""
        if name not in SPECS:
            raise ValueError(f"unknown metric {name!r}")
        wanted = tuple(sorted(labels.items()))
        total = 0.0
        for sample_name, sample_labels, value in self.samples():
            if sample_name != name:
                continue
            key = tuple(sorted(sample_labels))
            if not labels or key == wanted:
                total += value
        return total

    def samples(self) -> Iterator[tuple[str, Labels, float]]:
        """(Lambda's name, labels, value) of every series; a histogram's value is its count."""
        for metric in self.registry.collect():
            name = _lambda_name(metric)
            for s in metric.samples:
                if s.name.endswith(("_created", "_bucket", "_sum")):
                    continue
                yield name, tuple(sorted(s.labels.items())), s.value

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)


def _build(name: str, spec: Spec, registry: CollectorRegistry) -> _Any:
    if spec.kind == "counter":
        return Counter(name, spec.help, spec.labels, namespace=PREFIX, registry=registry)
    if spec.kind == "gauge":
        return Gauge(name, spec.help, spec.labels, namespace=PREFIX, registry=registry)
    return Histogram(
        name, spec.help, spec.labels, namespace=PREFIX, registry=registry, buckets=spec.buckets
    )


def _lambda_name(metric: _Metric) -> str:
    return metric.name.removeprefix(f"{PREFIX}_")


def count_outcome(
    metrics: Metrics, function_name: str, outcome: Outcome, duration_ms: float | None = None
) -> None:
    """Invocations / Errors / Throttles as Lambda counts them (docs/semantics.md §11), and the
    ``Duration`` of an invocation that ran."""
    from esm.functions import FunctionError, Ok, Throttled

    if isinstance(outcome, Ok | FunctionError):
        metrics.incr("Invocations", function_name=function_name)
        if isinstance(outcome, FunctionError):
            metrics.incr("Errors", function_name=function_name)
        if duration_ms is not None:
            metrics.observe("Duration", duration_ms, function_name=function_name)
    elif isinstance(outcome, Throttled):
        metrics.incr("Throttles", function_name=function_name)


def prometheus_text(metrics: Metrics) -> bytes:
    """The Prometheus text exposition (0.0.4) of every series, ``# HELP`` and ``# TYPE`` lines
    included."""
    return metrics.prometheus_text()
