"""Benchmark: TokenIndex (hnswlib, Etsy's M=64 / efC=128 / ef=256) vs exact search.

Vectors: clustered random unit vectors (``--tokens`` per type, 2 types, dim 64),
the shape of trained token embeddings. Reports build time, recall@200 against
exact cosine search, and single-query latency p50/p99.

Run: ``python benchmarks/ann_index.py [--tokens 20000] [--queries 300]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.ann_index import TokenIndex


def clustered(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((max(1, n // 100), dim))
    vectors = centres[rng.integers(0, len(centres), n)] + 0.7 * rng.standard_normal((n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000, help="tokens per type")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv), f"(cpus={os.cpu_count()})")
    rng = np.random.default_rng(0)
    types = ("click", "cart")
    tokens = [(f"i{n}", kind) for kind in types for n in range(args.tokens)]
    vectors = clustered(len(tokens), args.dim, rng)
    start = time.perf_counter()
    index = TokenIndex.build(tokens, vectors, num_threads=args.threads)
    print(f"built {len(index)} tokens ({len(types)} types) in {time.perf_counter() - start:.1f}s")
    carts = vectors[args.tokens :]
    queries = vectors[rng.integers(0, args.tokens, args.queries)]  # click tokens
    recalls, latencies = [], []
    for q in queries:
        t = time.perf_counter()
        found = index.query(q, "cart", args.k)
        latencies.append(time.perf_counter() - t)
        exact = np.argpartition(-(carts @ q), args.k)[: args.k]
        recalls.append(len({i for i, _ in found} & {f"i{n}" for n in exact}) / args.k)
    lat = np.array(latencies) * 1000
    print(
        f"click->cart recall@{args.k}: {np.mean(recalls):.4f} (min {np.min(recalls):.3f}); "
        f"latency p50 {np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms"
    )
    start = time.perf_counter()
    for q in queries[:50]:
        np.argpartition(-(carts @ q), args.k)
    print(f"exact numpy search: {(time.perf_counter() - start) / 50 * 1000:.2f} ms/query")


if __name__ == "__main__":
    main()
