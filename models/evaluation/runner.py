"""One evaluation run: split once, fit every row, score every row on the same targets.

:func:`evaluate` returns plain JSON (``config``, ``data``, ``rows``): per row
and item-level task the hit rate and novel hit rate with user-bootstrap 95%
intervals and counts, AUC; per home-list length hit@K and novel@K; coverage,
category cosine and train seconds. :mod:`models.evaluation.report` renders it.

Examples
--------
>>> from models.evaluation.baselines import Popularity
>>> from models.evaluation.rows import RecentlyViewed, SeedEcho
>>> evs = [{"user_id": u, "item_id": i, "type": t, "ts": ts} for u, i, t, ts in
...        [("u", "a", "click", 0.0), ("v", "a", "cart", 10.0), ("u", "a", "click", 90000.0),
...         ("u", "a", "cart", 90010.0)]]
>>> result = evaluate(evs, [Popularity(), SeedEcho(), RecentlyViewed()], test_hours=24)
>>> [(r["name"], r["tasks"]["item-to-item"]["rate"]) for r in result["rows"][:2]]
[('popularity', 1.0), ('seed echo (trivial)', 1.0)]
>>> result["rows"][2]["home"]["20"]["rate"]
1.0
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from models.evaluation.metrics import (
    TASKS,
    CachedAnswers,
    auc_cases,
    category_cosine,
    coverage,
    hit_rate,
    home_hit_rate,
    home_targets,
    item_targets,
    mean_auc,
)
from models.evaluation.rows import Row
from models.evaluation.split import EvalData, Event, Protocol

Say = Callable[[str], None]


def evaluate(
    events: Sequence[Event],
    rows: Sequence[Row],
    *,
    test_hours: float = 24.0,
    protocol: Protocol | None = None,
    auc_negatives: int = 100,
    seed: int = 0,
    progress: Say | None = None,
) -> dict[str, Any]:
    """Fit and score every row on one time split of ``events``.

    Parameters
    ----------
    events
        Canonical events, any order.
    rows
        The rows, in report order.
    test_hours
        The test window after the cut (the cut: the last event minus this).
    protocol
        Seed and target types, k, seeds per target, home list lengths.
    auc_negatives
        Random training items per AUC case.
    seed
        Seed of AUC negatives and bootstrap draws.
    progress
        Called with one line per step.

    Raises
    ------
    ValueError
        Nothing to train on or nothing to test.
    """
    say = progress or (lambda line: None)
    protocol = protocol or Protocol()
    data = EvalData.split(events, test_hours, protocol)
    if not data.train or not data.test_users:
        raise ValueError(
            f"the split left {len(data.train)} training events and {len(data.test_users)} "
            "test users with a target: the log must span more than the test window"
        )
    tasks = [task for task in TASKS.values() if task.applies(data)]
    targets = {task.name: item_targets(data, task) for task in tasks}
    cases = {name: auc_cases(data, found, auc_negatives, seed) for name, found in targets.items()}
    homes = home_targets(data)
    summary = data.summary()
    say(
        f"split: {summary['train_events']:,} training / {summary['test_events']:,} test "
        f"interactions, {summary['test_users']:,} test users, {summary['targets']:,} targets"
    )
    out_rows = []
    for row in rows:
        started = time.perf_counter()
        row.fit(data)
        row.train_seconds = time.perf_counter() - started
        say(f"{row.name}: fitted in {row.train_seconds:.1f}s")
        out_rows.append(_score(row, data, tasks, targets, cases, homes, seed))
        say(f"{row.name}: scored in {time.perf_counter() - started - row.train_seconds:.1f}s")
    return {
        "config": {
            "test_hours": test_hours,
            "k": protocol.k,
            "seeds": protocol.seeds,
            "seed_types": list(protocol.seed_types),
            "target_types": list(protocol.target_types),
            "home_k": list(protocol.home_k),
            "auc_negatives": auc_negatives,
            "seed": seed,
        },
        "data": {
            **summary,
            "tasks": {name: _seeded(found) for name, found in targets.items()},
        },
        "rows": out_rows,
    }


def _seeded(targets: Sequence[Any]) -> dict[str, int]:
    return {
        "targets": len(targets),
        "with_seeds": sum(bool(t.seeds) for t in targets),
        "novel": sum(t.novel for t in targets),
    }


def _score(
    row: Row,
    data: EvalData,
    tasks: Sequence[Any],
    targets: dict[str, Any],
    cases: dict[str, Any],
    homes: Sequence[Any],
    seed: int,
) -> dict[str, Any]:
    k = data.protocol.k
    answered: set[str] = set()
    result: dict[str, Any] = {
        "name": row.name,
        "group": row.group,
        "train_seconds": row.train_seconds,
        "tasks": {},
        "home": {},
    }
    for task in tasks:
        if task.name not in row.tasks:
            continue
        cached = CachedAnswers(lambda s, t=task: row.similar(s, t, k), k)
        cold = list(row.cold(task, k))[:k]
        found = hit_rate(targets[task.name], cached, cold, k)
        answered |= cached.items() | set(cold)
        result["tasks"][task.name] = {
            **found.to_dict(seed),
            "auc": mean_auc(cases[task.name], lambda s, items, t=task: row.score(s, t, items)),
        }
    if row.home_lists:
        for length in data.protocol.home_k:
            lists = {user: list(row.home(user, length))[:length] for user in data.test_users}
            for items in lists.values():
                answered.update(items)
            result["home"][str(length)] = home_hit_rate(homes, lists).to_dict(seed)
    result["coverage"] = coverage(answered, data.catalogue) if answered else None
    vectors = row.item_vectors()
    if vectors and data.categories:
        result["category_cosine"] = category_cosine(vectors, data.categories, rng=seed)
    result["params"] = row.describe()
    return result
