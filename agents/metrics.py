"""Process-wide counters rendered as Prometheus text at ``GET /metrics``.

Small on purpose: counters, gauges and one latency histogram, without a
client library (the text format is four lines of spec).

Examples
--------
>>> m = Metrics()
>>> m.inc("tastestream_events_in_total", 3)
>>> m.inc("tastestream_events_rejected_total", labels={"reason": "type"})
>>> print(m.render().splitlines()[0])
# TYPE tastestream_events_in_total counter
"""

from __future__ import annotations

import bisect
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[tuple[str, str], ...]


def _label_text(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float, count: int = 1) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += count
        self.total += value * count
        self.n += count


class Metrics:
    """Counters and gauges keyed by (name, labels)."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self.gauges: dict[str, dict[Labels, float]] = defaultdict(dict)
        self.histograms: dict[str, Histogram] = {}
        self.help: dict[str, str] = {}

    def inc(self, name: str, value: float = 1, labels: dict[str, str] | None = None) -> None:
        key = tuple(sorted(labels.items())) if labels else ()
        series = self.counters[name]
        series[key] = series.get(key, 0) + value

    def set(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        key = tuple(sorted(labels.items())) if labels else ()
        self.gauges[name][key] = value

    def observe(self, name: str, value: float, count: int = 1) -> None:
        hist = self.histograms.get(name)
        if hist is None:
            hist = self.histograms[name] = Histogram()
        hist.observe(value, count)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        key = tuple(sorted(labels.items())) if labels else ()
        return self.counters.get(name, {}).get(key, self.gauges.get(name, {}).get(key, 0))

    def render(self) -> str:
        lines: list[str] = []
        for kind, table in (("counter", self.counters), ("gauge", self.gauges)):
            for name in sorted(table):
                if name in self.help:
                    lines.append(f"# HELP {name} {self.help[name]}")
                lines.append(f"# TYPE {name} {kind}")
                for labels, value in sorted(table[name].items()):
                    lines.append(f"{name}{_label_text(labels)} {value:g}")
        for name in sorted(self.histograms):
            hist = self.histograms[name]
            lines.append(f"# TYPE {name} histogram")
            cumulative = 0
            for bound, count in zip(self.buckets_of(hist), hist.counts, strict=False):
                cumulative += count
                lines.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
            lines.append(f"{name}_sum {hist.total:g}")
            lines.append(f"{name}_count {hist.n}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def buckets_of(hist: Histogram) -> list[str]:
        return [f"{b:g}" for b in hist.buckets] + ["+Inf"]
