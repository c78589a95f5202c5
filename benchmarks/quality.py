"""Benchmark: offline quality of every candidate generator on the simulator (one run).

Simulates a clickstream (models/simulator.py, seed 0), cuts it in time (train
before, test the last ``--test-hours``) and runs
:func:`models.offline_evaluation.evaluate_models`: Etsy's purchase-intent hit
rate@k and its novel variant per task, ROC AUC, coverage, category cosine and
train time per model. Prints the Markdown table, the regularised embedding's
novel click-to-cart hit rate against each baseline (difference and ratio), the
train times and the command line.

``--compare-backends`` instead trains the regularised and the plain embedding
with each embedding backend (numpy, gensim) on the same data and prints train
time and hit rates side by side: the measurement behind
``EmbeddingParams.backend``'s default.

Run: ``python benchmarks/quality.py [--events 300000] [--compare-backends]``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.offline_evaluation import KNOWN_MODELS, evaluate_models, report_text
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.token_embedding import BACKENDS, EmbeddingParams


def say(message: str) -> None:
    if "epoch" not in message:  # per-model lines only
        print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:6.2f}"


def compare_backends(events: list[dict], args: argparse.Namespace, base: EmbeddingParams) -> None:
    print("\n## embedding backends, same data (regularised = cooc_k 3; embedding = cooc_k 0)\n")
    rows = []
    for backend in BACKENDS:
        params = dataclasses.replace(base, backend=backend)
        result = evaluate_models(
            events,
            test_hours=args.test_hours,
            k=args.k,
            models=("regularised", "embedding"),
            embedding_params=params,
            max_seeds=args.max_seeds,
            seed=args.seed,
            progress=say,
        )
        for name, row in result["models"].items():
            rows.append((backend, name, row))
    print(
        "| backend | model | train s | hit % click→cart | novel % click→cart "
        "| novel % item→item | novel % cart→cart | AUC |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for backend, name, row in rows:
        hit, novel = row["hit_rate"], row["novel_hit_rate"]
        print(
            f"| {backend} | {name} | {row['train_seconds']:.1f} | {pct(hit['click-to-cart'])} "
            f"| {pct(novel['click-to-cart'])} | {pct(novel['item-to-item'])} "
            f"| {pct(novel['cart-to-cart'])} | {row['auc']:.3f} |"
        )
    times = {(b, n): r["train_seconds"] for b, n, r in rows}
    for name in ("regularised", "embedding"):
        ratio = times[("numpy", name)] / max(times[("gensim", name)], 1e-9)
        print(f"\n{name}: numpy takes {ratio:.2f}x gensim's train time", end="")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000, help="simulated events")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-hours", type=float, default=24.0)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5, help="embedding epochs")
    parser.add_argument("--backend", choices=BACKENDS, default=EmbeddingParams().backend)
    parser.add_argument("--models", default=",".join(KNOWN_MODELS))
    parser.add_argument(
        "--max-seeds", type=int, default=None, help="only the N latest seeds per target"
    )
    parser.add_argument("--compare-backends", action="store_true")
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv), f"(cpus={os.cpu_count()})")

    started = time.perf_counter()
    config = SimulatorConfig(users=args.users, items=args.items, seed=args.seed)
    events = list(ClickstreamSimulator(config).events(args.events))
    print(
        f"simulated {len(events):,} events ({args.users} users, {args.items} items, "
        f"seed {args.seed}) in {time.perf_counter() - started:.1f}s"
    )
    base = EmbeddingParams(epochs=args.epochs, seed=args.seed, backend=args.backend)
    if args.compare_backends:
        compare_backends(events, args, base)
        print(f"\ntotal {time.perf_counter() - started:.0f}s")
        return

    result = evaluate_models(
        events,
        test_hours=args.test_hours,
        k=args.k,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        embedding_params=base,
        max_seeds=args.max_seeds,
        seed=args.seed,
        progress=say,
    )
    print()
    print(report_text(result, title=f"Offline quality, simulator {args.events:,} events"))
    print("## train and scoring seconds\n")
    for name, row in result["models"].items():
        print(f"- {name}: train {row['train_seconds']:.1f}s, score {row['eval_seconds']:.1f}s")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
