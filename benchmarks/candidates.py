"""Benchmark: home-surface candidate generation + merge for one user, 100k-item index.

World: ``--items`` items in clustered categories, a click and a cart token per
item (dim ``--dim``) in a :class:`~models.ann_index.TokenIndex` (efSearch
256), a factorisation over the same items, co-occurrence and popularity from a
simulated crowd, and ``--users`` users with 200-token trajectories and bandits.
One request = :func:`models.surfaces.generate` on the default ``home`` surface
(Etsy 8 seeds x 200 cart tokens, T x K voting, trajectory line, Thompson,
user vector, co-occurrence; popularity fill) with ``k=50``. Prints p50/p99 of
the whole request and of each source alone.

Run: ``python benchmarks/candidates.py [--items 100000] [--requests 300]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.ann_index import TokenIndex
from models.bandit import UserBandit
from models.candidates.types import ModelParts
from models.cooccurrence import build_neighbours
from models.factorization import MatrixFactorization
from models.popularity import Popularity
from models.surfaces import DEFAULT_SURFACES, SOURCES, SurfaceContext, generate
from models.trajectory import UserTrajectory


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def factorization(items: list[str], users: list[str], dim: int, rng) -> MatrixFactorization:
    """A random model of the right shape, through the public save format."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        np.save(path / "user_factors.npy", rng.standard_normal((len(users), dim)).astype("f4"))
        np.save(path / "item_factors.npy", rng.standard_normal((len(items), dim)).astype("f4"))
        np.save(path / "item_bias.npy", np.zeros(len(items), dtype="f4"))
        np.save(path / "seen.npy", np.zeros(0, dtype=np.int64))
        meta = {"params": {"factors": dim}, "users": users, "items": items}
        (path / "model.json").write_text(json.dumps(meta))
        return MatrixFactorization.load(path)


def user_events(user: str, n: int, items: np.ndarray, rng) -> list[dict]:
    kinds = rng.choice(["view", "click", "cart", "purchase"], n, p=[0.4, 0.4, 0.15, 0.05])
    picked = rng.choice(items, n)
    return [
        {"user_id": user, "item_id": str(i), "type": str(k), "ts": 60.0 * t,
         "item": {"seller": f"s{hash(str(i)) % 5000}", "category": f"c{hash(str(i)) % 100}"}}
        for t, (i, k) in enumerate(zip(picked, kinds, strict=True))
    ]  # fmt: skip


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):6.2f} ms  p99 {np.percentile(ms, 99):6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--crowd-events", type=int, default=100_000)
    parser.add_argument("--M", type=int, default=16, help="HNSW links (Etsy: 64)")
    parser.add_argument("--ef-construction", type=int, default=100)
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv), f"(cpus={os.cpu_count()})")
    rng = np.random.default_rng(0)
    items = [f"i{n}" for n in range(args.items)]
    centres = rng.standard_normal((max(1, args.items // 100), args.dim))
    base = centres[rng.integers(0, len(centres), args.items)]
    click = unit_rows(base + 0.5 * rng.standard_normal(base.shape))
    cart = unit_rows(base + 0.5 * rng.standard_normal(base.shape))
    start = time.perf_counter()
    tokens = [(i, "click") for i in items] + [(i, "cart") for i in items]
    index = TokenIndex.build(
        tokens, np.vstack([click, cart]), M=args.M, ef_construction=args.ef_construction
    )
    print(f"index: {len(index)} tokens built in {time.perf_counter() - start:.1f}s "
          f"(M={args.M}, efC={args.ef_construction}, ef=256, dim={args.dim})")  # fmt: skip
    users = [f"u{n}" for n in range(args.users)]
    model = ModelParts(index=index, factorization=factorization(items, users, args.dim, rng))

    # A user's items come from a few categories (centres), like real trajectories.
    by_centre = np.argsort(rng.integers(0, len(centres), args.items))
    item_ids = np.array(items)
    start = time.perf_counter()
    crowd = []
    for n in range(args.crowd_events // 50):
        pool = item_ids[by_centre[rng.integers(0, args.items - 500) :][:500]]
        crowd += user_events(f"c{n}", 50, pool, rng)
    neighbours = build_neighbours(crowd)
    popularity = Popularity()
    popularity.update_many(crowd)
    print(f"crowd: {len(crowd)} events, {len(neighbours)} co-occurrence tokens "
          f"in {time.perf_counter() - start:.1f}s")  # fmt: skip

    contexts = []
    for user in users:
        pool = item_ids[by_centre[rng.integers(0, args.items - 300) :][:300]]
        history = user_events(user, 200, pool, rng)
        trajectory, bandit = UserTrajectory(), UserBandit()
        trajectory.update_many(history)
        bandit.update_many(history)
        contexts.append(
            SurfaceContext(
                user, now=history[-1]["ts"], trajectory=trajectory, bandit=bandit,
                neighbours=neighbours.get, popularity=popularity, model=model, k=50,
                rng=np.random.default_rng(1),
            )
        )  # fmt: skip
    home = DEFAULT_SURFACES["home"]
    for ctx in contexts[:5]:  # warm-up
        generate(home, ctx)
    whole, sizes = [], []
    per_source: dict[str, list[float]] = {s: [] for s in home.sources(False)}
    for n in range(args.requests):
        ctx = contexts[n % len(contexts)]
        t = time.perf_counter()
        trace: dict = {}
        generate(home, ctx, trace)
        whole.append(time.perf_counter() - t)
        sizes.append(sum(trace["ran"].values()))
    for ctx in contexts:
        for source in per_source:
            t = time.perf_counter()
            SOURCES[source].run(ctx)
            per_source[source].append(time.perf_counter() - t)
    print(f"home request (generate, k=50, {np.mean(sizes):.0f} raw candidates on average): "
          f"{percentiles(whole)} over {args.requests} requests")  # fmt: skip
    for source, seconds in per_source.items():
        print(f"  {source:16s} {percentiles(seconds)}")


if __name__ == "__main__":
    main()
