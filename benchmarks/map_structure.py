"""Do categories group on the page's map? The 2-D projections measured on the demo's traffic.

Run from the repository root::

    python benchmarks/map_structure.py                        # 5,000 and 24,000 events
    python benchmarks/map_structure.py --events 5000 --methods pca,graph,umap

For each event count it simulates the demo's live traffic (``tastestream demo``'s
simulator: 1,000 users, 5,000 items, 30 categories), trains a model as
``tastestream train`` does (the embedding's epochs chosen by log size, and with
the old fixed 5 epochs for comparison), takes the page's item vectors
(:func:`models.projection.item_vectors`, at most 3,000 items) and projects them
with each method. Two figures per map, on the 2-D coordinates:

* **within/between**: the mean distance between items of the same category
  divided by the mean distance between items of different categories
  (1.0: no grouping; lower: categories gather);
* **10-NN purity**: the share of each item's 10 nearest items on the map that
  share its category, beside **chance** (the same share for random neighbours,
  the sum of squared category shares).

The same two figures in the full embedding space say how much structure there
was to show. ``umap`` is measured when the optional extra is installed.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.trainer import epochs_for
from agents.ui import MAP_ITEMS
from models.projection import fit_projection, item_vectors, umap_available
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.training import TrainingParams, train_version


def within_between(coords: np.ndarray, categories: np.ndarray) -> float:
    """Mean same-category distance / mean different-category distance."""
    centred = coords - coords.mean(axis=0)
    centred /= centred.std() or 1.0
    distance = np.sqrt(((centred[:, None, :] - centred[None, :, :]) ** 2).sum(-1))
    same = categories[:, None] == categories[None, :]
    np.fill_diagonal(same, False)
    other = ~same & ~np.eye(len(coords), dtype=bool)
    return float(distance[same].mean() / distance[other].mean())


def purity(coords: np.ndarray, categories: np.ndarray, k: int = 10, cosine: bool = False) -> float:
    """Share of each point's ``k`` nearest points (Euclidean, or cosine) in its category."""
    if cosine:
        unit = coords / np.linalg.norm(coords, axis=1, keepdims=True)
        distance = -(unit @ unit.T)
    else:
        distance = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distance, np.inf)
    nearest = np.argpartition(distance, k, axis=1)[:, :k]
    return float((categories[nearest] == categories[:, None]).mean())


def demo_events(n: int, seed: int) -> tuple[ClickstreamSimulator, list[dict]]:
    """``n`` events of the demo's simulator, pulled as fast as they come (pull-paced clock)."""
    simulator = ClickstreamSimulator(SimulatorConfig(users=1000, items=5000, seed=seed))
    ticks = itertools.count(1_800_000_000 * 200)
    return simulator, list(itertools.islice(simulator.live_events(lambda: next(ticks) / 200), n))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="5000,24000", help="comma-separated event counts")
    parser.add_argument("--methods", default="pca,graph,umap", help="projections to measure")
    parser.add_argument("--seed", type=int, default=0, help="simulator and training seed")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m != "umap" or umap_available()]
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}; methods {methods}")
    header = f"{'events':>7} {'epochs':>6} {'map':>6} {'items':>5} {'within/between':>14} "
    print(header + f"{'10-NN purity':>12} {'chance':>6} {'seconds':>7}")
    for n in (int(x) for x in args.events.split(",")):
        simulator, events = demo_events(n, args.seed)
        for epochs in dict.fromkeys((epochs_for(n), 5)):
            params = TrainingParams(seed=args.seed)
            params.embedding.epochs = epochs
            started = time.perf_counter()
            trained = train_version(events, params)
            trained_in = time.perf_counter() - started
            items, matrix = item_vectors(
                trained.embedding.vocab, trained.embedding.vectors, limit=MAP_ITEMS
            )
            categories = np.array([simulator.item_category(i) for i in items])
            chance = sum((c / len(items)) ** 2 for c in Counter(categories.tolist()).values())
            row = f"{n:>7,} {epochs:>6} {{:>6}} {len(items):>5} {{:>14.3f}} {{:>12.3f}} "
            row += f"{chance:>6.3f} {{:>7.1f}}"
            unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
            full = (within_between(unit, categories), purity(matrix, categories, cosine=True))
            print(row.format("space", *full, trained_in))
            for method in methods:
                started = time.perf_counter()
                coords = fit_projection(matrix, method=method, seed=args.seed).coords
                seconds = time.perf_counter() - started
                figures = (within_between(coords, categories), purity(coords, categories))
                print(row.format(method, *figures, seconds))
    print(f"command: python benchmarks/map_structure.py {' '.join(argv or sys.argv[1:])}".strip())


if __name__ == "__main__":
    main()
