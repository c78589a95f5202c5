"""Throughput of the clickstream simulator: generation alone, then generation + JSONL.

Run from the repository root::

    python benchmarks/simulator.py                 # 1,000,000 events, default config
    python benchmarks/simulator.py --events 200000 --users 5000

Prints events per second (wall clock and CPU time, since the machine is shared)
and the command line that produced them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.simulator import ClickstreamSimulator, SimulatorConfig, write_jsonl


def timed(label: str, n: int, run) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{label:<22} {n:>9,} events  {wall:6.2f} s wall  {n / wall:>9,.0f} ev/s wall  "
        f"{n / cpu:>9,.0f} ev/s cpu"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=SimulatorConfig.users)
    parser.add_argument("--items", type=int, default=SimulatorConfig.items)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    build = time.perf_counter()
    sim = ClickstreamSimulator(SimulatorConfig(users=args.users, items=args.items, seed=args.seed))
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"config: users={args.users} items={args.items} seed={args.seed}; "
        f"built in {time.perf_counter() - build:.2f} s"
    )

    def generate() -> None:
        for _ in sim.events(args.events):
            pass

    timed("generate", args.events, generate)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "events.jsonl")
        timed(
            "generate + write_jsonl",
            args.events,
            lambda: write_jsonl(sim.events(args.events), path),
        )
        print(f"jsonl size: {os.path.getsize(path) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
