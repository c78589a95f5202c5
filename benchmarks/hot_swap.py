"""Benchmark: a steady similar() load on the event loop while model versions hot-swap.

The worker's path, in-process: a :class:`agents.serving.ModelServer` (no Kafka:
announcements are handed to ``apply`` directly) serves ``similar(item, "click",
"cart", k)`` from coroutines on one asyncio loop at a fixed rate, as Faust web
views would, while new versions are loaded in a thread (checksums, load,
canaries) and switched live several times.

A request's latency is measured from its *scheduled* start, so time the loop
spends blocked (a load stealing it) counts against the request. Reported:
requests, failed (exception, or no answer), slow (> 50 ms), p50, p99, max, and
the swap times. Target: zero failed.

Run: ``python benchmarks/hot_swap.py [--events 100000] [--items 2000] [--rate 1000] [--swaps 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.serving import ModelServer
from agents.settings import Settings
from models.model_version import set_current, write_version
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.training import TrainingParams, train_version


async def run(args: argparse.Namespace, server: ModelServer, versions, items: list[str]) -> None:
    latencies: list[float] = []
    failed = 0
    swap_seconds: list[float] = []
    done = asyncio.Event()
    rng = random.Random(0)

    async def one(scheduled: float, item: str) -> None:
        nonlocal failed
        try:
            result = server.similar(item, "click", "cart", args.k)
            if not result:
                failed += 1
        except Exception:
            failed += 1
        latencies.append(time.perf_counter() - scheduled)

    async def load() -> None:
        interval = 1.0 / args.rate
        start = time.perf_counter()
        n = 0
        tasks = set()
        while not done.is_set():
            scheduled = start + n * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(one(scheduled, rng.choice(items)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)

    async def swaps() -> None:
        await asyncio.sleep(args.settle)
        for info in versions[1:]:
            began = time.perf_counter()
            ok = await server.apply(info.announcement("publish"))
            swap_seconds.append(time.perf_counter() - began)
            assert ok and server.live_version == info.version, server.status()
            await asyncio.sleep(args.settle)
        done.set()

    await server.check_current()
    began = time.perf_counter()
    await asyncio.gather(load(), swaps())
    wall = time.perf_counter() - began
    lat = np.array(latencies) * 1000
    slow = int((lat > 50).sum())
    print(
        f"requests {len(lat):,} in {wall:.1f}s ({len(lat) / wall:,.0f}/s)  failed {failed}  "
        f"slow(>50ms) {slow}  p50 {np.percentile(lat, 50):.3f} ms  "
        f"p99 {np.percentile(lat, 99):.3f} ms  max {lat.max():.1f} ms"
    )
    print(
        f"swaps {len(swap_seconds)} (load + verify + canaries + switch): "
        + ", ".join(f"{s:.2f}s" for s in swap_seconds)
    )
    print(f"swaps counted {server.metrics.value('tastestream_model_swaps_total'):g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--swaps", type=int, default=5)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds between swaps")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after set-up")
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv), f"(cpus={os.cpu_count()})")
    sim = ClickstreamSimulator(SimulatorConfig(users=args.users, items=args.items, seed=0))
    events = list(sim.events(args.events))
    began = time.perf_counter()
    trained = [train_version(events, TrainingParams(seed=s)) for s in (0, 1)]
    print(
        f"trained 2 versions on {len(events):,} events in {time.perf_counter() - began:.1f}s "
        f"({trained[0].metrics['vocab']:,} tokens)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=tmp)
        root = settings.data_path / "models"
        versions = [write_version(root, trained[n % 2]) for n in range(args.swaps + 1)]
        set_current(root, versions[0].version)
        size = sum(f.stat().st_size for f in versions[0].path.rglob("*") if f.is_file())
        print(f"version size {size / 1e6:.1f} MB")
        items = [i for i, kind in trained[0].embedding.vocab if kind == "click"]
        items = [i for i in items if (i, "click") in trained[1].index]
        server = ModelServer(settings)
        del events, trained
        if args.gc_freeze:  # move set-up objects out of the collector's sight
            gc.collect()
            gc.freeze()
        asyncio.run(run(args, server, versions, items))


if __name__ == "__main__":
    main()
