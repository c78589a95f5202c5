"""Benchmark: the learned second pass (models/ranking) on the simulator, which knows the truth.

1. Simulate ``--events`` events over ``--days`` days; train the model version on
   the first ``--model-days`` (as ``train`` publishes it).
2. At ``--cuts`` cuts spread over the remaining days, fold the streaming state
   and build each of ``--users`` sampled users' home candidates (first pass
   plus the category-trending list at a negligible weight, so its items are in
   the pool and its own order can be read back), ``--candidates`` per list,
   with the features the worker computes.
3. Label every candidate per head by a draw from the simulator's own
   probabilities had the user been shown it at the cut (the **oracle**: click,
   favourite, cart, purchase from the funnel of models/simulator.py).
4. Train on the first ``--train-share`` of the cuts, test on the rest
   (``tune`` too: weights chosen on the training lists, checked on the test lists):

   * learners (log loss per head on the test rows, all negatives kept): the
     served river ``learn_one`` heads, river ``learn_many`` (mini-batches of 256),
     and scikit-learn's batch ``LogisticRegression`` on the same standardised rows;
   * calibration: Brier per head of the ranker (downsampled at its alpha and
     corrected) against the oracle's own Brier on the same draws;
   * lists of ``--k`` at equal length from the same candidates: expected
     conversion (sum of oracle P(cart) over the list) and click-through (mean
     oracle P(click)) of the utility order, the first-pass order and the
     category-trending order;
   * cost: p50/p99 of ranking ``--rank-candidates`` candidates (features +
     heads + sort), and examples/s the online learner keeps up with.

Run: ``python benchmarks/ranker.py [--events 200000] [--users 400] [--cuts 12]``
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.candidates.types import Candidate
from models.evaluation.served import publish_and_load
from models.ranking.bootstrap import Examples, bootstrap_examples, train_ranker
from models.ranking.features import FEATURE_NAMES
from models.ranking.heads import OnlineHeads
from models.ranking.ranker import LearnedRanker
from models.ranking.utility import DEFAULT_WEIGHTS, HEADS, utility
from models.simulator import ClickstreamSimulator, SimulatorConfig
from models.surfaces import load_surfaces
from models.training import TrainingParams


def oracle(sim: ClickstreamSimulator, users: list[str], items: list[str], times: np.ndarray):
    """P(click), P(favourite), P(cart), P(purchase) per row, had the user been shown the item."""
    cfg = sim.config
    index = {name: c for c, name in enumerate(sim.categories())}
    out = np.zeros((len(users), len(HEADS)))
    tastes: dict[tuple[str, float], np.ndarray] = {}
    for row, (user, item, ts) in enumerate(zip(users, items, times.tolist(), strict=True)):
        if not sim.item_available(item, ts):
            continue
        taste = tastes.get((user, ts))
        if taste is None:
            taste = tastes[(user, ts)] = sim.user_taste(user, ts)
        affinity = cfg.categories * float(taste[index[sim.item_category(item)]])
        gain = 2.0 * affinity / (1.0 + affinity)
        click = min(0.95, cfg.click_rate * gain)
        cart = click * min(0.9, cfg.cart_rate * gain)
        out[row] = (
            click,
            click * min(1.0, cfg.favorite_rate * gain),
            cart,
            cart * min(0.95, cfg.purchase_rate * gain),
        )
    return out


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def learners(train: Examples, test: Examples) -> dict[str, list[float]]:
    """Log loss per head on ``test`` of each learner fitted on ``train`` (no downsampling)."""
    import pandas as pd
    from river import linear_model, optim
    from sklearn.linear_model import LogisticRegression

    out: dict[str, list[float]] = {}
    started = time.perf_counter()
    served = OnlineHeads(FEATURE_NAMES, HEADS)
    order = np.random.default_rng(0).permutation(len(train))
    for _epoch in range(2):
        for s in range(0, len(order), 5000):
            rows = order[s : s + 5000]
            served.learn(train.x[rows], train.y[rows])
    weights = served.export()
    p = weights.probabilities(test.x)
    out["river learn_one (served), 2 passes"] = [
        log_loss(p[:, j], test.y[:, j]) for j in range(len(HEADS))
    ] + [time.perf_counter() - started]
    mean, scale = weights.mean, weights.scale
    xs_train = (train.x - mean) * scale
    xs_test = (test.x - mean) * scale
    cols = list(FEATURE_NAMES)
    started = time.perf_counter()
    losses = []
    for j in range(len(HEADS)):
        model = linear_model.LogisticRegression(optimizer=optim.SGD(0.01))
        for _epoch in range(2):
            for s in range(0, len(order), 256):
                rows = order[s : s + 256]
                model.learn_many(
                    pd.DataFrame(xs_train[rows], columns=cols), pd.Series(train.y[rows, j] > 0)
                )
        p = model.predict_proba_many(pd.DataFrame(xs_test, columns=cols))[True].to_numpy()
        losses.append(log_loss(p, test.y[:, j]))
    out["river learn_many (256), 2 passes"] = [*losses, time.perf_counter() - started]
    started = time.perf_counter()
    losses = []
    for j in range(len(HEADS)):
        if train.y[:, j].min() == train.y[:, j].max():
            losses.append(float("nan"))
            continue
        model = LogisticRegression(max_iter=500).fit(xs_train, train.y[:, j])
        losses.append(log_loss(model.predict_proba(xs_test)[:, 1], test.y[:, j]))
    out["scikit-learn LogisticRegression (batch)"] = [*losses, time.perf_counter() - started]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--model-days", type=float, default=3.0)
    ap.add_argument("--cuts", type=int, default=12)
    ap.add_argument("--users", type=int, default=400)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--train-share", type=float, default=0.67)
    ap.add_argument("--rank-candidates", type=int, default=500)
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("$ python benchmarks/ranker.py " + shlex.join(sys.argv[1:]))
    sim = ClickstreamSimulator(SimulatorConfig(seed=args.seed, span_days=args.days))
    events = list(sim.events(args.events))
    start = events[0]["ts"]
    model_cut = start + args.model_days * 86400.0
    t0 = time.perf_counter()
    model = publish_and_load(
        [e for e in events if e["ts"] < model_cut], TrainingParams(seed=args.seed)
    )
    print(f"model on {args.model_days:g} days: {time.perf_counter() - t0:.1f}s")
    end = events[-1]["ts"]
    cuts = list(np.linspace(model_cut, end - 3600.0, args.cuts))
    surfaces = load_surfaces({"home": {"category_trending": 1e-6}})
    rng = np.random.default_rng(args.seed)

    def sample(labelled, state):
        known = sorted(state.users)
        return list(rng.choice(known, size=min(args.users, len(known)), replace=False))

    t0 = time.perf_counter()
    found = bootstrap_examples(
        events,
        model,
        cuts,
        window_seconds=0.0,
        surface=surfaces["home"],
        candidates=args.candidates,
        max_users=None,
        seed=args.seed,
        users_of=sample,
    )
    truth = oracle(sim, found.users, found.items, found.times)
    found.y = (rng.random(truth.shape) < truth).astype(np.int8)
    print(
        f"{len(found):,} labelled candidates in {found.lists.max() + 1:,} lists "
        f"({time.perf_counter() - t0:.1f}s); positives per head "
        + ", ".join(f"{h} {found.y[:, j].mean():.2%}" for j, h in enumerate(HEADS))
    )
    split = cuts[int(len(cuts) * args.train_share)]
    train, test = found.subset(found.times < split), found.subset(found.times >= split)
    truth_test = truth[found.times >= split]

    print("\n## Learners: log loss per head on the test lists (lower is better)\n")
    print("| learner | " + " | ".join(HEADS) + " | seconds |")
    print("|---|" + "---|" * (len(HEADS) + 1))
    for name, values in learners(train, test).items():
        print(
            f"| {name} | " + " | ".join(f"{v:.4f}" for v in values[:-1]) + f" | {values[-1]:.1f} |"
        )
    oracle_loss = [log_loss(truth_test[:, j], test.y[:, j]) for j in range(len(HEADS))]
    print(
        "| oracle (the simulator's probabilities) | "
        + " | ".join(f"{v:.4f}" for v in oracle_loss)
        + " | |"
    )

    ranker = train_ranker(train, seed=args.seed)
    p = ranker.weights.probabilities(test.x)
    print(
        "\n## Calibration: Brier per head on the test lists "
        "(ranker downsampled at alpha, corrected)\n"
    )
    print("| head | alpha | ranker | oracle | ratio | mean p | observed |")
    print("|---|---|---|---|---|---|---|")
    for j, h in enumerate(HEADS):
        ours = float(np.mean((p[:, j] - test.y[:, j]) ** 2))
        best = float(np.mean((truth_test[:, j] - test.y[:, j]) ** 2))
        print(
            f"| {h} | {ranker.learner.alpha[j]:g} | {ours:.5f} | {best:.5f} | {ours / best:.3f} "
            f"| {p[:, j].mean():.4f} | {test.y[:, j].mean():.4f} |"
        )

    gone = truth_test[:, 0] == 0
    print(
        f"\n{gone.mean():.1%} of the test candidates were unavailable at the cut (oracle p = 0; "
        "the catalogue may not know yet). Click Brier on the available ones: ranker "
        f"{np.mean((p[~gone, 0] - test.y[~gone, 0]) ** 2):.5f}, oracle "
        f"{np.mean((truth_test[~gone, 0] - test.y[~gone, 0]) ** 2):.5f}"
    )
    print(f"\n## Lists of {args.k} from the same candidates (expected, by the oracle)\n")
    u = utility(p, DEFAULT_WEIGHTS)
    trending = test.x[:, FEATURE_NAMES.index("src_category_trending")]
    rows = {"utility (ranked)": [], "first pass": [], "category trending": []}
    for number in np.unique(test.lists):
        at = np.flatnonzero(test.lists == number)
        first = at[np.argsort(test.positions[at], kind="stable")][: args.k]
        ranked = at[np.argsort(-u[at], kind="stable")][: args.k]
        picked = at[trending[at] > 0]
        category = picked[np.argsort(-trending[picked], kind="stable")][: args.k]
        for name, chosen in (
            ("utility (ranked)", ranked),
            ("first pass", first),
            ("category trending", category),
        ):
            if len(chosen):
                rows[name].append(
                    (
                        truth_test[chosen, 2].sum(),
                        truth_test[chosen, 0].mean(),
                        truth_test[chosen, 3].sum(),
                        len(chosen),
                    )
                )
    base = np.mean([r[0] for r in rows["first pass"]])
    print(
        "| list | lists | mean length | conversion (P(cart) summed) | vs first pass "
        "| CTR | purchases |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, values in rows.items():
        a = np.array(values)
        print(
            f"| {name} | {len(a)} | {a[:, 3].mean():.1f} | {a[:, 0].mean():.4f} | "
            f"{a[:, 0].mean() / base:.2f}x | {a[:, 1].mean():.2%} | {a[:, 2].mean():.4f} |"
        )

    print("\n## tune: weights chosen on the training lists, checked on the test lists\n")
    from models.ranking.tune import compare, tune

    p_train = ranker.weights.probabilities(train.x)
    started = time.perf_counter()
    found = tune(p_train, train.y, train.lists, DEFAULT_WEIGHTS, trials=args.trials, seed=args.seed)
    print(found.report())
    print(f"\n({args.trials} trials in {time.perf_counter() - started:.1f}s)\n")
    held = compare(
        p,
        test.y,
        test.lists,
        {"configured": DEFAULT_WEIGHTS, "equal": dict.fromkeys(HEADS, 1.0), "chosen": found.chosen},
    )
    print("| test lists: per-list PR-AUC | " + " | ".join(HEADS) + " |")
    print("|---|" + "---|" * len(HEADS))
    for name, metrics in held.items():
        print(f"| {name} | " + " | ".join(f"{metrics[h]:.4f}" for h in HEADS) + " |")

    print("\n## Cost\n")
    rank_cost(ranker, test, args.rank_candidates)
    learn_rate(train)


def rank_cost(ranker: LearnedRanker, test: Examples, n: int) -> None:
    """p50/p99 of one RequestRanker.rank call on ``n`` candidates (features, heads, sort)."""
    from models.surfaces import SurfaceContext

    rng = np.random.default_rng(1)
    items = [f"i{i}" for i in range(n)]
    candidates = [
        Candidate(
            item,
            float(rng.random()),
            "popularity",
            "",
            {"normalised": {"popularity": float(rng.random())}},
        )
        for item in items
    ]
    from models.trajectory import UserTrajectory

    trajectory = UserTrajectory()
    for i in range(200):
        trajectory.update(
            {"item_id": items[i % n], "type": "click", "ts": float(i), "item": {"seller": "s1"}}
        )
    ctx = SurfaceContext(
        "u",
        now=1000.0,
        trajectory=trajectory,
        category_of=lambda i: "c",
        seller_of=lambda i: "s1",
        price_of=lambda i: 10.0,
        k=20,
    )
    request = ranker.for_request(DEFAULT_WEIGHTS)
    wall, cpu = [], []
    for _ in range(500):
        t, c = time.perf_counter(), time.thread_time()
        request.rank("u", candidates, ctx)
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    for name, values in (("wall", wall), ("thread CPU", cpu)):
        ms = np.array(values) * 1000
        print(
            f"rank {n} candidates (features + heads + sort + annotate 20), {name}: "
            f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms"
        )
    print(f"(load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def learn_rate(train: Examples) -> None:
    ranker = LearnedRanker()
    n = min(len(train), 50_000)
    t = time.perf_counter()
    for s in range(0, n, 1000):
        ranker.learn(train.x[s : s + 1000], train.y[s : s + 1000], train.ids[s : s + 1000])
    seconds = time.perf_counter() - t
    print(
        "online learning (validate, downsample, learn, export) at default alpha: "
        f"{n / seconds:,.0f} examples/s"
    )


if __name__ == "__main__":
    main()
