"""The worker's metrics on ``prometheus_client``, behind a small facade, served at ``GET /metrics``.

Callers name a metric and its labels where they count (``inc``, ``set``,
``observe``); the first use creates the Prometheus counter, gauge or
histogram, in a registry of this :class:`Metrics` (one per worker, so tests
may build several apps in one process). The text is prometheus_client's own
exposition (``generate_latest``), with HELP lines from :data:`HELP`.

What the operator's dashboard (``deploy/grafana-dashboard.json``) reads:

==========================================  ===================================================
``tastestream_consumer_lag{partition}``     messages behind the high watermark, per partition
``tastestream_ingest_latency_seconds``      event produced -> folded into state (freshness 1)
``tastestream_freshness_seconds{stage}``    ``state_to_list``: a user's state changed -> their
                                            lists rewritten (freshness 2)
``tastestream_serving_seconds{surface,      a served list's latency, per surface and channel
channel}``
``tastestream_model_live_info{version}``    1 for the live model version
``tastestream_model_swaps_total``,          swaps and refusals of model versions
``tastestream_model_refused_total``
``tastestream_events_rejected_total{field}`` dead letters by reason (the field at fault)
``tastestream_redis_errors_total{op}``,     Redis and broker errors
``tastestream_broker_errors_total{op}``
``tastestream_replay_events_total``         replayed events folded (they carry the replay
                                            header; live metrics leave them out)
``tastestream_experiment_*``                per-variant lists, impressions, outcomes, guard stops
==========================================  ===================================================

Examples
--------
>>> m = Metrics()
>>> m.inc("tastestream_events_in_total", 3)
>>> m.inc("tastestream_events_rejected_total", labels={"field": "type"})
>>> m.value("tastestream_events_in_total")
3.0
>>> m.value("tastestream_events_rejected_total", {"field": "type"})
1.0
>>> "tastestream_events_in_total 3.0" in m.render()
True
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

#: Seconds; the default buckets of every histogram.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Replayed events folded by this worker (``tastestream replay --to-topic``).
REPLAY_EVENTS = "tastestream_replay_events_total"

HELP = {
    "tastestream_consumer_lag": "messages behind the high watermark, per partition of the events",
    "tastestream_ingest_latency_seconds": "event produced -> folded into the user's state",
    "tastestream_freshness_seconds": "a user's state changed -> their lists rewritten",
    "tastestream_serving_seconds": "latency of a served list, per surface and channel",
    "tastestream_model_swaps_total": "model versions switched live (publish or rollback)",
    "tastestream_model_refused_total": "model versions refused by validation",
    "tastestream_model_live_info": "1 for the live model version",
    "tastestream_events_rejected_total": "events and messages sent to the dead letter, by field",
    "tastestream_redis_errors_total": "Redis calls that failed, by operation",
    "tastestream_broker_errors_total": "broker calls that failed, by operation",
    REPLAY_EVENTS: "replayed events folded (carrying the replay header)",
    "tastestream_experiment_lists_total": "lists served, per experiment, variant and channel",
    "tastestream_experiment_impressions_total": "items served in lists, per experiment and variant",
    "tastestream_experiment_outcomes_total": "impressions labelled by the join, per label",
    "tastestream_experiment_guard_stops_total": "variants stopped by their guard",
    "tastestream_join_records_total": "join records folded, by what they did",
}


class Metrics:
    """Counters, gauges and histograms by name and labels, created on first use.

    A metric's label names are those of its first use; using it later with
    other label names is a bug and raises ``ValueError``.
    """

    def __init__(self) -> None:
        # "_created" series double every counter's lines and no dashboard here reads them
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.help: dict[str, str] = dict(HELP)
        self._metrics: dict[str, Any] = {}
        self._children: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
        self._lock = threading.Lock()

    def _child(self, kind: type, name: str, labels: dict[str, str] | None) -> Any:
        key = (name, tuple(sorted(labels.items())) if labels else ())
        child = self._children.get(key)
        if child is not None:
            return child
        with self._lock:
            metric = self._metrics.get(name)
            names = tuple(k for k, _ in key[1])
            if metric is None:
                doc = self.help.get(name, name.replace("_", " "))
                # prometheus_client adds the _total of a counter itself
                counter_total = kind is Counter and name.endswith("_total")
                base = name[: -len("_total")] if counter_total else name
                extra = {"buckets": LATENCY_BUCKETS} if kind is Histogram else {}
                metric = kind(base, doc, names, registry=self.registry, **extra)
                self._metrics[name] = metric
            elif tuple(metric._labelnames) != names or not isinstance(metric, kind):
                raise ValueError(
                    f"metric {name} is a {type(metric).__name__} with labels "
                    f"{metric._labelnames}; used as a {kind.__name__} with {names}"
                )
            child = metric.labels(**dict(key[1])) if names else metric
            self._children[key] = child
            return child

    def inc(self, name: str, value: float = 1, labels: dict[str, str] | None = None) -> None:
        """Add ``value`` to the counter ``name`` (with ``labels``)."""
        if value:
            self._child(Counter, name, labels).inc(value)
        else:
            self._child(Counter, name, labels)  # the series exists from its first use

    def set(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        """Set the gauge ``name`` (with ``labels``)."""
        self._child(Gauge, name, labels).set(value)

    def clear(self, name: str) -> None:
        """Drop every labelled series of the gauge ``name`` (e.g. the previous live version)."""
        metric = self._metrics.get(name)
        if metric is not None:
            with self._lock:
                metric.clear()
                self._children = {k: v for k, v in self._children.items() if k[0] != name}

    def observe(
        self, name: str, value: float, count: int = 1, labels: dict[str, str] | None = None
    ) -> None:
        """Record ``value`` (``count`` times) in the histogram ``name``."""
        child = self._child(Histogram, name, labels)
        for _ in range(count):
            child.observe(value)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The current value of a counter or gauge series (0 when it was never used)."""
        found = self.registry.get_sample_value(name, labels or {})
        return 0.0 if found is None else float(found)

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry).decode()
