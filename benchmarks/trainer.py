"""Benchmark: our numpy trainers vs gensim word2vec and implicit BPR, same data, one run.

Data: the clickstream simulator (models/simulator.py), split by time: the first
80% of events train, the last 20% test. Reported per trainer: wall time, the
ratio to ours, and a quality figure:

* embeddings: click-to-cart purchase-intent hit rate@200 (Etsy's metric): for
  each test session, the first clicked item's click token is the seed, S = its
  200 nearest cart tokens (exact cosine), P = the items later carted or
  purchased in that session; hit rate = sum |P ∩ S| / sum |P|.
* matrix factorisation: ROC AUC of each test cart/purchase (user known,
  item not seen in training by that user) against 100 random items.

gensim and implicit are benchmark-only comparisons (pip install gensim implicit).

Run: ``python benchmarks/trainer.py [--events 600000] [--epochs 5]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.factorization import FactorizationParams, MatrixFactorization
from models.sessions import sessionise
from models.token_embedding import EmbeddingParams, TokenEmbedding

WEIGHTS = FactorizationParams().type_weights


def load_events(n: int, seed: int) -> list[dict]:
    from models.simulator import ClickstreamSimulator, SimulatorConfig

    sim = ClickstreamSimulator(SimulatorConfig(users=3000, items=5000, seed=seed))
    return sorted(sim.events(n), key=lambda e: e["ts"])


def hit_rate(neighbours, test_sessions, limit: int = 3000) -> tuple[float, int]:
    """Click-to-cart hit rate@200; ``neighbours(item) -> set of cart items or None``."""
    hits = total = 0
    for session in test_sessions[:limit]:
        tokens = session.tokens
        first = next((n for n, (_, kind) in enumerate(tokens) if kind == "click"), None)
        if first is None:
            continue
        later = [i for i, kind in tokens[first + 1 :] if kind in ("cart", "purchase")]
        if not later:
            continue
        candidates = neighbours(tokens[first][0])
        total += len(later)
        if candidates:
            hits += sum(i in candidates for i in later)
    return hits / max(1, total), total


def exact_cart_neighbours(tokens: list[tuple[str, str]], vectors: np.ndarray, k: int = 200):
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    row = {t: n for n, t in enumerate(tokens)}
    carts = np.array([n for n, t in enumerate(tokens) if t[1] == "cart"])
    cart_items = [tokens[n][0] for n in carts]

    def neighbours(item: str) -> set[str] | None:
        r = row.get((item, "click"))
        if r is None or not len(carts):
            return None
        scores = unit[carts] @ unit[r]
        top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
        return {cart_items[n] for n in top}

    return neighbours


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def embeddings(train_sessions, test_sessions, args) -> None:
    sentences = [s.tokens for s in train_sessions]
    n_tokens = sum(len(s) for s in sentences)
    print(f"\n## token embeddings ({len(sentences)} sessions, {n_tokens} tokens)")
    rows = []
    for name, cooc_k in (("ours (cooc_k=3, regularised)", 3), ("ours (cooc_k=0)", 0)):
        params = EmbeddingParams(
            dim=64, window=5, negatives=5, epochs=args.epochs, cooc_k=cooc_k, seed=0
        )
        model, seconds = timed(lambda p=params: TokenEmbedding(p).fit(sentences))
        hr, n = hit_rate(exact_cart_neighbours(model.vocab, model.vectors), test_sessions)
        rows.append((name, seconds, hr, n))
    try:
        from gensim.models import Word2Vec

        words = [[f"{i}\t{k}" for i, k in s] for s in sentences]
        for workers in (1, 3):
            model, seconds = timed(
                lambda w=workers: Word2Vec(
                    words,
                    vector_size=64,
                    window=5,
                    negative=5,
                    sg=1,
                    hs=0,
                    min_count=1,
                    sample=0,
                    epochs=args.epochs,
                    workers=w,
                    seed=0,
                )
            )
            tokens = [tuple(w.split("\t")) for w in model.wv.index_to_key]
            hr, n = hit_rate(exact_cart_neighbours(tokens, model.wv.vectors), test_sessions)
            label = (
                "gensim word2vec sg (workers=1)" if workers == 1 else "gensim (default workers=3)"
            )
            rows.append((label, seconds, hr, n))
    except ImportError:
        print("gensim not installed: skipped")
    base = rows[0][1]
    print(f"{'trainer':36s} {'seconds':>8s} {'x ours':>7s} {'click->cart HR@200':>19s}")
    for name, seconds, hr, n in rows:
        print(f"{name:36s} {seconds:8.2f} {seconds / base:7.2f} {100 * hr:18.2f}%  (|P|={n})")


def factorization(train_events, test_events, args) -> None:
    triples = [
        (e["user_id"], e["item_id"], WEIGHTS[e["type"]])
        for e in train_events
        if e["type"] in WEIGHTS
    ]
    print(f"\n## matrix factorisation ({len(triples)} weighted events)")
    rows = []
    rng = np.random.default_rng(1)
    for loss in ("bpr", "warp"):
        params = FactorizationParams(factors=64, loss=loss, epochs=args.mf_epochs, seed=0)
        model, seconds = timed(lambda p=params: MatrixFactorization(p).fit(triples))
        rows.append((f"ours {loss}", seconds, model))
    items = rows[0][2].items
    seen = {(u, i) for u, i, _ in triples}
    users = set(rows[0][2].users)
    tests = [
        (e["user_id"], e["item_id"])
        for e in test_events
        if e["type"] in ("cart", "purchase")
        and e["user_id"] in users
        and (e["user_id"], e["item_id"]) not in seen
        and e["item_id"] in set(items)
    ][:3000]
    negatives = rng.integers(0, len(items), size=(len(tests), 100))

    def auc(score) -> float:
        wins = [
            np.mean(s[0] > s[1:])
            for s in (
                score(u, [i, *(items[n] for n in neg)])
                for (u, i), neg in zip(tests, negatives, strict=True)
            )
        ]
        return float(np.mean(wins))

    results = [(name, seconds, auc(model.score)) for name, seconds, model in rows]
    try:
        import scipy.sparse as sp
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model0 = rows[0][2]
        user_index = {u: n for n, u in enumerate(model0.users)}
        item_index = {i: n for n, i in enumerate(model0.items)}
        ui = sp.coo_matrix(
            (
                [w for _, _, w in triples],
                ([user_index[u] for u, _, _ in triples], [item_index[i] for _, i, _ in triples]),
            ),
            shape=(len(user_index), len(item_index)),
        ).tocsr()
        for threads in (1, 0):
            bpr = BayesianPersonalizedRanking(
                factors=64, iterations=args.mf_epochs, random_state=0, num_threads=threads
            )
            _, seconds = timed(lambda b=bpr: b.fit(ui, show_progress=False))

            def score(u, its, b=bpr):
                vec = b.user_factors[user_index[u]]
                return np.array([b.item_factors[item_index[i]] @ vec for i in its])

            label = "implicit bpr (1 thread)" if threads == 1 else "implicit bpr (all threads)"
            results.append((label, seconds, auc(score)))
    except ImportError:
        print("implicit not installed: skipped")
    base = results[0][1]
    print(f"{'trainer':36s} {'seconds':>8s} {'x ours':>7s} {'AUC':>7s}   (n={len(tests)})")
    for name, seconds, value in results:
        print(f"{name:36s} {seconds:8.2f} {seconds / base:7.2f} {value:7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--mf-epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv), f"(cpus={os.cpu_count()})")
    events, seconds = timed(lambda: load_events(args.events, args.seed))
    cut = int(0.8 * len(events))
    train, test = events[:cut], events[cut:]
    print(f"simulated {len(events)} events in {seconds:.1f}s; train {len(train)}, test {len(test)}")
    train_sessions = [s for s in sessionise(train) if len(s.tokens) > 1]
    test_sessions = list(sessionise(test))
    embeddings(train_sessions, test_sessions, args)
    factorization(train, test, args)


if __name__ == "__main__":
    main()
