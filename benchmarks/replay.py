"""Replay: rebuild speed, and what a ``--to-topic`` replay costs the live traffic beside it.

One embedded stack, one worker. Three phases of the same live traffic (simulated
events with wall-clock stamps, ``--live-rate`` events/s in small batches):
alone, with ``tastestream replay --to-topic`` at its default rate beside it, and
with the replay unlimited (``--rate 1e9``). Per phase: the live events the
worker folded per second, the replayed ones, and the live messages' ingest
latency (broker timestamp to fold; replayed messages carry the replay header
and stay out of that histogram), its median and 95th percentile read from the
histogram's buckets. Before that, ``replay --rebuild`` of the replay file into
an empty prefix: events folded and written per second.

    python benchmarks/replay.py [--events 100000] [--live-rate 200] [--phase-seconds 20]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import harness

from agents.producer import EventProducer
from agents.provision import ensure_topics
from agents.replay import DEFAULT_RATE
from agents.stack import start_stack
from models.simulator import ClickstreamSimulator, SimulatorConfig

LATENCY = "tastestream_ingest_latency_seconds"


def latency_buckets(url: str) -> dict[float, int]:
    """Cumulative counts per upper bound of the live ingest-latency histogram."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as resp:
        text = resp.read().decode()
    out = {}
    for bound, count in re.findall(rf'^{LATENCY}_bucket{{le="([^"]+)"}} (\d+)$', text, re.M):
        out[float("inf") if bound == "+Inf" else float(bound)] = int(count)
    return out


def percentile(before: dict[float, int], after: dict[float, int], q: float) -> float | None:
    """The ``q`` quantile of the observations between two histogram reads (bucket upper bound)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0) for b in bounds]
    total = counts[-1] if counts else 0
    if not total:
        return None
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= q * total:
            return bound
    return bounds[-1]


class LiveTraffic(threading.Thread):
    """Simulated events stamped now, ``rate`` per second, in 20 small sends a second."""

    def __init__(self, settings, rate: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.rate = settings, rate
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        producer = EventProducer(self.settings, batch_size=20)
        events = ClickstreamSimulator(SimulatorConfig(users=500, items=2000, seed=9)).live_events(
            time.time
        )
        started = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - started) * self.rate) - self.sent
            for _ in range(max(due, 0)):
                producer.send(next(events))
                self.sent += 1
            producer.flush()
            time.sleep(0.05)


def cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "agents.cli", *args],
        env=env,
        cwd=str(harness.REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per replay file")
    parser.add_argument("--live-rate", type=float, default=200.0, help="live events per second")
    parser.add_argument("--phase-seconds", type=float, default=20.0, help="seconds per phase")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    stack = start_stack("", "", work / "stack")
    proc = None
    try:
        overrides, settings = harness.worker_overrides(stack, work, "replay")
        ensure_topics(settings)
        # One file per replay phase (other seeds: other event ids, none a duplicate).
        sources = []
        for seed in (3, 4):
            simulator = ClickstreamSimulator(SimulatorConfig(users=5000, items=5000, seed=seed))
            sources.append(work / f"replay-{seed}.jsonl")
            sources[-1].write_text(
                "".join(json.dumps(e) + "\n" for e in simulator.events(args.events))
            )
        source = sources[0]
        # Rebuild speed, into an empty prefix of its own.
        rebuild = dict(overrides, topic_prefix=overrides["topic_prefix"] + "-rebuilt")
        started = time.monotonic()
        done = cli(["replay", "--from", str(source), "--rebuild"], harness.worker_env(rebuild))
        summary = json.loads(done.communicate()[0].decode().strip().splitlines()[-1])
        rebuild_seconds = time.monotonic() - started
        proc, url = harness.start_worker(overrides, work / "worker.log")
        rows = []
        for name, rate, source in (
            ("live alone", None, None),
            (f"+ replay at the default {DEFAULT_RATE:g}/s", DEFAULT_RATE, sources[0]),
            ("+ replay unlimited", 1e9, sources[1]),
        ):
            live = LiveTraffic(settings, args.live_rate)
            live.start()
            time.sleep(2.0)  # past the start-up of the traffic
            before, m0 = latency_buckets(url), harness.read_metrics(url)
            replay = None
            if rate is not None:
                replay = cli(
                    ["replay", "--from", str(source), "--to-topic", "--rate", f"{rate:g}"],
                    harness.worker_env(overrides),
                )
            time.sleep(args.phase_seconds)
            after, m1 = latency_buckets(url), harness.read_metrics(url)
            live.stop.set()
            live.join()
            if replay is not None:
                replay.terminate()
                replay.wait(30)

            def delta(metric: str, m0=m0, m1=m1) -> float:
                return m1.get(metric, 0) - m0.get(metric, 0)

            # Both counted as a batch is decoded, side by side (the accepted count comes
            # after the batch's sends: a read between them would skew a difference).
            replayed = delta("tastestream_replayed_events_total")
            folded = delta("tastestream_events_in_total")
            rows.append(
                {
                    "phase": name,
                    "live folded/s": (folded - replayed) / args.phase_seconds,
                    "replayed/s": replayed / args.phase_seconds,
                    "live latency p50 s": percentile(before, after, 0.5),
                    "live latency p95 s": percentile(before, after, 0.95),
                }
            )
            # Let the worker drain the backlog before the next phase.
            harness.wait_for(
                lambda: harness.read_metrics(url).get("tastestream_consumer_lag", 0) == 0,
                600,
                "the backlog to drain",
                1.0,
            )
        print(
            f"\nreplay --rebuild of {summary['events']:,} events ({summary['users']:,} users): "
            f"{rebuild_seconds:.1f} s with start-up, {summary['rate']:,.0f} events/s in the verb"
        )
        print(f"\nlive traffic {args.live_rate:g} events/s, {args.phase_seconds:g} s per phase\n")
        top = max(b for b in latency_buckets(url) if b != float("inf"))
        print("(latency: the upper bound of the histogram bucket the quantile falls in)\n")
        print("| phase | live folded/s | replayed folded/s | live latency p50 | live latency p95 |")
        print("|---|---:|---:|---:|---:|")
        for row in rows:
            p50, p95 = (
                "-" if v is None else f"≤ {v:g} s" if v != float("inf") else f"> {top:g} s"
                for v in (row["live latency p50 s"], row["live latency p95 s"])
            )
            print(
                f"| {row['phase']} | {row['live folded/s']:,.0f} | {row['replayed/s']:,.0f} | "
                f"{p50} | {p95} |"
            )
        print(
            f"\n(python benchmarks/replay.py --events {args.events} --live-rate "
            f"{args.live_rate:g} --phase-seconds {args.phase_seconds:g})"
        )
    finally:
        if proc is not None:
            harness.stop_worker(proc)
        stack.stop()


if __name__ == "__main__":
    main()
