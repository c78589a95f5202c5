"""Benchmark: the cost of counting, prometheus_client facade against the hand-written one.

``agents/metrics.py`` moved from a hand-written registry to prometheus_client
behind the same ``inc/set/observe/value`` facade. Ingest counts a few times per
batch and observes one latency per message; serving observes one per list.
This times each call both ways, side by side in one process: the old module
is read from git (``--old-rev``, default ``main``), so the ratio needs no
second run. It also times one ``render`` of a registry with ~200 series.

Run: ``python benchmarks/metrics_overhead.py [--calls 200000] [--old-rev main]``
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.metrics import Metrics  # noqa: E402


def old_metrics(rev: str) -> type:
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:agents/metrics.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType("old_metrics")
    exec(compile(source, "old_metrics.py", "exec"), module.__dict__)
    return module.Metrics


def per_call(fn, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--old-rev", default="main")
    args = parser.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))
    rows = []
    for name, cls in (("hand-written", old_metrics(args.old_rev)), ("prometheus_client", Metrics)):
        m = cls()
        labels = {"experiment": "ab", "variant": "b", "channel": "http"}
        timings = {
            "inc": per_call(lambda m=m: m.inc("bench_total"), args.calls),
            "inc with 3 labels": per_call(
                lambda m=m, labels=labels: m.inc("bench_l_total", 1, labels), args.calls
            ),
            "set": per_call(lambda m=m: m.set("bench_gauge", 3.0), args.calls),
            "observe": per_call(lambda m=m: m.observe("bench_seconds", 0.012), args.calls),
        }
        for i in range(200):
            m.inc("bench_many_total", 1, {"k": str(i)})
        started = time.perf_counter()
        for _ in range(100):
            m.render()
        timings["render 200 series"] = (time.perf_counter() - started) / 100 * 1e6
        rows.append((name, timings))
    print("\n| call | hand-written µs | prometheus_client µs | ratio |")
    print("|---|---|---|---|")
    for key in rows[0][1]:
        old, new = rows[0][1][key], rows[1][1][key]
        print(f"| {key} | {old:.2f} | {new:.2f} | {new / old:.2f}x |")


if __name__ == "__main__":
    main()
