"""A bounded soak: one worker under a steady event rate and request load; memory, lag, latency flat?

Starts the embedded stack (or uses ``--kafka-url``/``--redis-url``) and one
real worker, then for ``--duration`` seconds sends ``--rate`` events/s (in
``--batch-size``-event messages over ``--users`` users) and ``--rps`` home-list
requests/s, and every ``--every`` seconds samples the worker's resident memory
(psutil), the events applied and the consumer lag (``/metrics``), and the
window's request latency (p50, p99) and failures. At the end it compares the
last quarter of the run with the second (after warm-up): memory growth, lag,
p99, and says whether each stayed flat.

Run::

    python benchmarks/soak.py                       # 10 minutes, 1,000 events/s, 50 req/s
    python benchmarks/soak.py --duration 120        # a quick look
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import read_metrics, start_worker, stop_worker, worker_overrides

from agents.producer import EventProducer
from agents.provision import ensure_topics
from agents.stack import start_stack


class Load(threading.Thread):
    """A steady open loop in a thread; ``step()`` does one unit of work."""

    def __init__(self, rate: float, step) -> None:
        super().__init__(daemon=True)
        self.rate = rate
        self.step = step
        self.stop_event = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        done = 0
        while not self.stop_event.is_set():
            due = int((time.monotonic() - started) * self.rate) - done
            for _ in range(max(due, 0)):
                self.step()
                done += 1
            time.sleep(0.01)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--batch-size", type=int, default=10, help="events per message")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rps", type=float, default=50.0, help="home-list requests per second")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--kafka-url", default="")
    parser.add_argument("--redis-url", default="")
    args = parser.parse_args(argv)
    command = "python benchmarks/soak.py " + shlex.join(argv if argv is not None else sys.argv[1:])

    work = Path(tempfile.mkdtemp(prefix="soak-"))
    stack = start_stack(args.kafka_url, args.redis_url, work / "stack")
    proc = None
    try:
        overrides, settings = worker_overrides(stack, work, "soak")
        ensure_topics(settings)
        proc, url = start_worker(overrides, work / "worker.log")
        worker = psutil.Process(proc.pid)
        rng = random.Random(7)
        producer = EventProducer(settings, batch_size=args.batch_size)
        kinds = ["view"] * 6 + ["click"] * 3 + ["cart", "favorite", "purchase", "impression"]
        sent = [0]

        def send_one() -> None:
            i = sent[0]
            user = rng.randrange(args.users)
            producer.send(
                {
                    "user_id": f"s{user}",
                    "item_id": f"i{int(rng.paretovariate(1.2)) % args.items}",
                    "type": rng.choice(kinds),
                    "ts": time.time(),
                    "event_id": f"soak-{i}",
                    "item": {"category": f"c{user % 40}", "seller": f"v{user % 300}"},
                }
            )
            sent[0] += 1
            if sent[0] % args.batch_size == 0:
                producer.producer.poll(0)

        latencies: list[float] = []
        failures = [0]
        lock = threading.Lock()

        def request_one() -> None:
            user = rng.randrange(args.users)
            started = time.monotonic()
            try:
                with urllib.request.urlopen(
                    f"{url}/users/s{user}/recommendations", timeout=10
                ) as resp:
                    resp.read()
                    ok = resp.status == 200
            except (urllib.error.URLError, OSError):
                ok = False
            with lock:
                latencies.append(time.monotonic() - started)
                if not ok:
                    failures[0] += 1

        events = Load(args.rate, send_one)
        requests = Load(args.rps, request_one)
        events.start()
        requests.start()
        rows = []
        started = time.monotonic()
        header = ("t (s)", "RSS MB", "applied", "lag", "p50 ms", "p99 ms", "failed")
        print(" ".join(f"{h:>{w}}" for h, w in zip(header, (6, 7, 9, 6, 7, 7, 6), strict=True)))
        while time.monotonic() - started < args.duration:
            time.sleep(args.every)
            producer.producer.poll(0)
            metrics = read_metrics(url)
            with lock:
                window, latencies[:] = list(latencies), []
                failed, failures[0] = failures[0], 0
            row = {
                "t": time.monotonic() - started,
                "rss": worker.memory_info().rss / 1e6,
                "applied": metrics.get("tastestream_events_accepted_total", 0.0),
                "lag": metrics.get("tastestream_consumer_lag", 0.0),
                "p50": percentile(window, 0.5) * 1000,
                "p99": percentile(window, 0.99) * 1000,
                "failed": failed,
                "requests": len(window),
            }
            rows.append(row)
            print(
                f"{row['t']:6.0f} {row['rss']:7.0f} {row['applied']:9.0f} {row['lag']:6.0f} "
                f"{row['p50']:7.1f} {row['p99']:7.1f} {row['failed']:6d}",
                flush=True,
            )
        events.stop_event.set()
        requests.stop_event.set()
        producer.flush()
        quarter = max(1, len(rows) // 4)
        early, late = rows[quarter : 2 * quarter] or rows[:1], rows[-quarter:]

        def mean(part: list[dict], key: str) -> float:
            return sum(r[key] for r in part) / len(part)

        growth = mean(late, "rss") - mean(early, "rss")
        print()
        print(f"command: {command}")
        print(
            f"sent {sent[0]} events at {args.rate:.0f}/s and "
            f"{sum(r['requests'] for r in rows)} requests at {args.rps:.0f}/s for "
            f"{args.duration:.0f} s; failed requests {sum(r['failed'] for r in rows)}"
        )
        print(
            f"RSS {mean(early, 'rss'):.0f} -> {mean(late, 'rss'):.0f} MB ({growth:+.0f} MB); "
            f"lag {mean(early, 'lag'):.0f} -> {mean(late, 'lag'):.0f} messages; "
            f"p99 {mean(early, 'p99'):.1f} -> {mean(late, 'p99'):.1f} ms"
        )
        flat_memory = growth < 0.1 * mean(early, "rss") + 50
        flat_lag = mean(late, "lag") <= max(2 * mean(early, "lag"), args.rate / args.batch_size)
        flat_p99 = mean(late, "p99") <= 2 * mean(early, "p99") + 10
        print(
            f"memory {'flat' if flat_memory else 'GROWING'}, "
            f"lag {'flat' if flat_lag else 'GROWING'}, "
            f"p99 {'flat' if flat_p99 else 'GROWING'}"
        )
    finally:
        if proc is not None:
            stop_worker(proc)
        stack.stop()


if __name__ == "__main__":
    main()
