"""Benchmark: offline quality of the served system against library baselines (one run per set).

The same evaluation as ``tastestream evaluate`` (:mod:`models.evaluation`:
Etsy's purchase-intent hit rate with session seeds, K = 200, novel hit rate
with user-bootstrap 95% intervals, AUC, home-list hit@20/@100, coverage,
category cosine, train time), on:

* ``sim``: the simulator (``models/simulator.py``), ``--events`` events, seed
  ``--seed``, last 24 h held out;
* ``dev``, ``slice``, ``ml``: the real logs of ``../shared/data`` (Taobao's
  407 dev users, last 24 h; Taobao's two-hour slice, last 30 min; MovieLens
  100k, last 30 days), read through the importer as they are.

Prints each report and the command line; ``--out DIR`` also writes
``DIR/<set>.md`` and ``.json``.

Run: ``python benchmarks/quality.py [--sets sim,dev,slice,ml] [--events 300000] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.trainer import epochs_for
from models.evaluation import Protocol, evaluate, report_markdown
from models.evaluation.baselines import baseline_rows
from models.evaluation.rows import RecentlyViewed, SeedEcho
from models.evaluation.served import ServedSystem, served_rows
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.training import TrainingParams
from streams.importer import ImportSpec, ImportStats, import_csv, parse_mapping

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TAOBAO = {
    "columns": parse_mapping("user_id=0,item_id=1,category=2,type=3,ts=4"),
    "types": parse_mapping("pv=click,fav=favorite,cart=cart,buy=purchase"),
    "header": False,
    "delimiter": "auto",
}
#: set -> (file, import spec, test hours, protocol)
REAL_SETS = {
    "dev": (
        "taobao_dev_users.csv.gz",
        ImportSpec(**TAOBAO, since=1511539200, until=1512316800),
        24.0,
        Protocol(),
    ),
    "slice": ("taobao_2h_slice.csv.gz", ImportSpec(**TAOBAO), 0.5, Protocol()),
    "ml": (
        "ml-100k/u.data.gz",
        ImportSpec(
            columns=parse_mapping("user_id=0,item_id=1,value=2,ts=3"),
            header=False,
            delimiter="auto",
            every_type="purchase",
        ),
        30 * 24.0,
        Protocol(seed_types=("purchase",), target_types=("purchase",)),
    ),
}


def say(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load(name: str, args: argparse.Namespace) -> tuple[list[dict], float, Protocol, str]:
    if name == "sim":
        config = SimulatorConfig(users=args.users, items=args.items, seed=args.seed)
        events = list(ClickstreamSimulator(config).events(args.events))
        return events, 24.0, Protocol(), f"simulator, {args.events:,} events, seed {args.seed}"
    file, spec, hours, protocol = REAL_SETS[name]
    path = DATA / file
    if not path.exists():
        raise SystemExit(f"{path} is absent: the real data sets live in ../shared/data")
    stats = ImportStats()
    events = list(import_csv(path, spec, stats=stats))
    rejected = f", {sum(stats.rejected.values())} rows rejected" if stats.rejected else ""
    return events, hours, protocol, f"{file}{rejected}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="sim", help="comma-separated: sim, dev, slice, ml")
    parser.add_argument("--events", type=int, default=300_000, help="simulated events")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baselines", choices=("none", "fast", "all"), default="all")
    parser.add_argument("--out", default=None, help="directory for <set>.md and <set>.json")
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv), f"(cpus={os.cpu_count()})")
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        started = time.perf_counter()
        events, hours, protocol, label = load(name, args)
        params = TrainingParams(seed=args.seed)
        cut = max(e["ts"] for e in events) - hours * 3600.0
        # The epochs `train` would choose for what the served model trains on.
        params.embedding.epochs = epochs_for(sum(e["ts"] < cut for e in events))
        system = ServedSystem(params, seed=args.seed)
        rows = [
            *served_rows(system),
            *baseline_rows(args.baselines, seed=args.seed),
            SeedEcho(),
            RecentlyViewed(),
        ]
        result = evaluate(
            events, rows, test_hours=hours, protocol=protocol, seed=args.seed, progress=say
        )
        markdown = report_markdown(result, title=f"{name}: {label}")
        print()
        print(markdown)
        print(
            f"served system: model {system.train_seconds:.1f}s, state fold "
            f"{system.fold_seconds:.1f}s; set total {time.perf_counter() - started:.0f}s"
        )
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{name}.md").write_text(markdown)
            (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
