"""The protocol's metrics (``../shared/data/BASELINES.md``): model-agnostic, on plain answers.

Tasks (Etsy's Table 1)
    :data:`TASKS`: ``item-to-item`` (click seeds, item-level neighbours),
    ``click-to-cart`` (click seeds, nearest cart tokens) and ``cart-to-cart``
    (cart seeds, nearest cart tokens). A log of one interaction type seeds with
    that type (:class:`~models.evaluation.split.Protocol`).
Seeds and targets
    A *target* is a test-window event of a target type (cart, purchase). Its
    seeds (:func:`item_targets`) are the user's up to 4 most recent distinct
    earlier seed items in the same session (same ``session_id``, else no gap
    over 30 minutes), else the last 4 distinct ones before it in any session,
    training history included. Each seed is a token ``(item, type)``.
Purchase-intent hit rate (Etsy)
    ``|P ∩ S| / |P|``: S is the union of the top ``k`` answers of the target's
    seeds (the row's *cold* answer when it has no seed: only seed-free rows
    such as popularity score there). **Novel**: only targets whose item is not
    one of its own seeds. 95% intervals: a bootstrap over users
    (:func:`bootstrap_ci`).
Home lists (user level)
    One list per test user asked once at the cut; hit@K = targets whose item is
    in the first K / all targets (a multiset over target events); novel@K: only
    targets whose item the user never touched before the cut.
ROC AUC
    Each distinct ``(user, target item)`` pair whose item is in training, its
    score against ``negatives`` random training items the user never touched
    (ties count one half); the mean over pairs.
Coverage, category cosine
    Distinct answered items over the training catalogue; mean cosine of
    same-category and cross-category item pairs (Etsy's Table 2).

Examples
--------
>>> from models.evaluation.split import EvalData
>>> evs = [{"user_id": "u", "item_id": "a", "type": "click", "ts": 0.0},
...        {"user_id": "u", "item_id": "b", "type": "click", "ts": 90000.0},
...        {"user_id": "u", "item_id": "c", "type": "cart", "ts": 90060.0}]
>>> data = EvalData.split(evs, test_hours=24)
>>> [(t.item_id, t.seeds) for t in item_targets(data, TASKS["click-to-cart"])]
[('c', (('b', 'click'),))]
>>> hit_rate(item_targets(data, TASKS["click-to-cart"]), lambda seed: ["c"]).rate
1.0
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from models.evaluation.split import EvalData
from models.sessions import Token, same_session

ArrayLike = Sequence[float] | np.ndarray
#: A row's answer to one seed token: item ids, best first.
Answer = Callable[[Token], Sequence[str]]


@dataclass(frozen=True)
class Task:
    """One item-level question: which seeds, and which tokens answer them.

    Parameters
    ----------
    name, label
        ``"click-to-cart"`` and how tables print it (``"click→cart"``).
    seed_types
        Event types that seed it; ``None``: the protocol's click types.
    target_type
        Token type of the answers; ``None``: item level (any type, one per item).
    """

    name: str
    label: str
    seed_types: tuple[str, ...] | None
    target_type: str | None

    def seeds_of(self, data: EvalData) -> tuple[str, ...]:
        """The event types that seed this task on ``data``."""
        return self.seed_types or data.protocol.seed_types

    def applies(self, data: EvalData) -> bool:
        """Whether the training data has the task's seed and answer token types."""
        types = data.train_types
        has_seeds = any(t in types for t in self.seeds_of(data))
        return has_seeds and (self.target_type is None or self.target_type in types)


TASKS: dict[str, Task] = {
    "item-to-item": Task("item-to-item", "item→item", None, None),
    "click-to-cart": Task("click-to-cart", "click→cart", None, "cart"),
    "cart-to-cart": Task("cart-to-cart", "cart→cart", ("cart",), "cart"),
}


@dataclass(frozen=True, slots=True)
class Target:
    """One target event with its seeds (most recent first)."""

    user_id: str
    item_id: str
    seeds: tuple[Token, ...]

    @property
    def novel(self) -> bool:
        """Whether the item is none of its own seeds."""
        return all(item != self.item_id for item, _ in self.seeds)


def item_targets(data: EvalData, task: Task) -> list[Target]:
    """Every test-window target with the task's seeds (see the module docstring).

    Examples
    --------
    >>> from models.evaluation.split import EvalData
    >>> evs = [{"user_id": "u", "item_id": i, "type": t, "ts": ts} for i, t, ts in
    ...        [("a", "click", 0.0), ("b", "click", 10.0), ("a", "click", 20.0),
    ...         ("x", "click", 5000.0), ("c", "cart", 90000.0)]]
    >>> data = EvalData.split(evs, test_hours=1)
    >>> item_targets(data, TASKS["item-to-item"])[0].seeds  # no click in its session
    (('x', 'click'), ('a', 'click'), ('b', 'click'))
    """
    protocol = data.protocol
    seed_types = set(task.seeds_of(data))
    target_types = set(protocol.target_types)
    n = protocol.seeds
    out: list[Target] = []
    for user in data.test_users:
        # Item -> its latest seed type, oldest first: the last n keys are the seeds.
        overall: dict[str, str] = {}
        session: dict[str, str] = {}
        prev_ts: float | None = None
        prev_sid: str | None = None
        for event in data.all_by_user[user]:
            ts, sid = event["ts"], event.get("session_id")
            if not same_session(prev_ts, prev_sid, ts, sid, protocol.gap_seconds):
                session = {}
            prev_ts, prev_sid = ts, sid
            item, etype = event["item_id"], event["type"]
            if ts >= data.cut and etype in target_types:
                source = session or overall
                seeds = tuple((i, source[i]) for i in list(source)[-n:][::-1])
                out.append(Target(user, item, seeds))
            if etype in seed_types:
                for recent in (overall, session):
                    recent.pop(item, None)
                    recent[item] = etype
    return out


# ---------------------------------------------------------------- hit rates


def bootstrap_ci(
    hits: np.ndarray, totals: np.ndarray, draws: int = 1000, seed: int = 0
) -> tuple[float, float] | None:
    """95% interval of ``sum(hits) / sum(totals)`` over users drawn with replacement.

    Parameters
    ----------
    hits, totals
        Per-user hit and target counts.
    draws
        Bootstrap resamples.
    seed
        Seed of the draws.

    Examples
    --------
    >>> bootstrap_ci(np.array([1, 1]), np.array([1, 1]))
    (1.0, 1.0)
    >>> bootstrap_ci(np.array([0]), np.array([0])) is None
    True
    """
    hits, totals = np.asarray(hits, float), np.asarray(totals, float)
    if totals.sum() <= 0:
        return None
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(totals), size=(draws, len(totals)))
    # Users drawn per resample as counts: (draws, users) @ (users,) sums.
    counts = np.zeros((draws, len(totals)))
    np.add.at(counts, (np.arange(draws)[:, None], picks), 1.0)
    num, den = counts @ hits, counts @ totals
    rates = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    lo, hi = np.percentile(rates, [2.5, 97.5])
    return float(lo), float(hi)


@dataclass
class HitRate:
    """Per-user counts behind one hit rate and its novel variant."""

    users: list[str]
    hits: np.ndarray
    targets: np.ndarray
    novel_hits: np.ndarray
    novel_targets: np.ndarray

    @property
    def rate(self) -> float | None:
        total = self.targets.sum()
        return float(self.hits.sum() / total) if total else None

    @property
    def novel_rate(self) -> float | None:
        total = self.novel_targets.sum()
        return float(self.novel_hits.sum() / total) if total else None

    def to_dict(self, ci_seed: int = 0) -> dict[str, Any]:
        """Rates, counts and bootstrap intervals as plain JSON."""
        return {
            "rate": self.rate,
            "novel_rate": self.novel_rate,
            "ci": bootstrap_ci(self.hits, self.targets, seed=ci_seed),
            "novel_ci": bootstrap_ci(self.novel_hits, self.novel_targets, seed=ci_seed),
            "hits": int(self.hits.sum()),
            "targets": int(self.targets.sum()),
            "novel_hits": int(self.novel_hits.sum()),
            "novel_targets": int(self.novel_targets.sum()),
            "users": len(self.users),
        }


class _Counts:
    def __init__(self) -> None:
        self.by_user: dict[str, list[int]] = {}

    def add(self, user: str, hit: bool, novel: bool) -> None:
        counts = self.by_user.setdefault(user, [0, 0, 0, 0])
        counts[0] += hit
        counts[1] += 1
        counts[2] += hit and novel
        counts[3] += novel

    def result(self) -> HitRate:
        users = list(self.by_user)
        table = np.array([self.by_user[u] for u in users], dtype=float).reshape(-1, 4)
        return HitRate(users, table[:, 0], table[:, 1], table[:, 2], table[:, 3])


class CachedAnswers:
    """A row's answers, asked once per distinct seed and kept as sets of the top ``k``."""

    def __init__(self, answer: Answer, k: int) -> None:
        self.answer = answer
        self.k = k
        self.sets: dict[Token, frozenset[str]] = {}

    def __call__(self, seed: Token) -> frozenset[str]:
        found = self.sets.get(seed)
        if found is None:
            # Trust no row to respect k: Etsy's S is the top k per seed.
            found = self.sets[seed] = frozenset(list(self.answer(seed))[: self.k])
        return found

    def items(self) -> set[str]:
        """Every item any seed was answered with."""
        return set().union(*self.sets.values()) if self.sets else set()


def hit_rate(
    targets: Sequence[Target],
    answer: Answer | CachedAnswers,
    cold: Collection[str] = (),
    k: int = 200,
) -> HitRate:
    """Etsy's purchase-intent hit rate of one row on one task.

    Parameters
    ----------
    targets
        From :func:`item_targets`.
    answer
        The row's answer to a seed token (called once per distinct seed).
    cold
        The row's answer for a target without seeds (empty for seed-based rows).
    k
        Answers per seed.

    Examples
    --------
    >>> ts = [Target("u", "b", (("a", "click"),)), Target("u", "a", (("a", "click"),)),
    ...       Target("v", "z", ())]
    >>> r = hit_rate(ts, lambda seed: ["a", "b"], cold=["z"])
    >>> r.rate, r.novel_rate
    (1.0, 1.0)
    >>> hit_rate(ts, lambda seed: ["a"]).novel_rate
    0.0
    """
    cached = answer if isinstance(answer, CachedAnswers) else CachedAnswers(answer, k)
    cold_set = frozenset(list(cold)[:k])
    counts = _Counts()
    for target in targets:
        if target.seeds:
            hit = any(target.item_id in cached(seed) for seed in target.seeds)
        else:
            hit = target.item_id in cold_set
        counts.add(target.user_id, hit, target.novel)
    return counts.result()


# ---------------------------------------------------------------- home lists


@dataclass(frozen=True, slots=True)
class HomeTarget:
    """A test user's target event; ``novel`` if the user never touched the item before the cut."""

    user_id: str
    item_id: str
    novel: bool


def home_targets(data: EvalData) -> list[HomeTarget]:
    """Every test-window target, for the home lists asked at the cut."""
    targets = set(data.protocol.target_types)
    touched: dict[str, set[str]] = defaultdict(set)
    for event in data.train:
        touched[event["user_id"]].add(event["item_id"])
    return [
        HomeTarget(e["user_id"], e["item_id"], e["item_id"] not in touched[e["user_id"]])
        for e in data.test
        if e["type"] in targets
    ]


def home_hit_rate(targets: Sequence[HomeTarget], lists: Mapping[str, Sequence[str]]) -> HitRate:
    """hit@K of one list per user (``lists[user]``, already cut to K) and its novel variant.

    Examples
    --------
    >>> ts = [HomeTarget("u", "a", False), HomeTarget("u", "b", True)]
    >>> r = home_hit_rate(ts, {"u": ["a"]})
    >>> r.rate, r.novel_rate
    (0.5, 0.0)
    """
    sets = {user: frozenset(items) for user, items in lists.items()}
    counts = _Counts()
    for target in targets:
        hit = target.item_id in sets.get(target.user_id, frozenset())
        counts.add(target.user_id, hit, target.novel)
    return counts.result()


# ---------------------------------------------------------------- AUC


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return (starts + (counts + 1) / 2.0)[inverse]


def auc_from_scores(positive_scores: ArrayLike, negative_scores: ArrayLike) -> float:
    """Probability that a positive outscores a negative (ties count 1/2), via ranks.

    Examples
    --------
    >>> auc_from_scores([3, 1], [1, 0])
    0.875
    >>> auc_from_scores([float("-inf")], [float("-inf"), 0.0])
    0.25
    """
    pos = np.asarray(positive_scores, dtype=float).ravel()
    neg = np.asarray(negative_scores, dtype=float).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError("AUC needs at least one positive and one negative score")
    both = np.concatenate((pos, neg))
    if np.isnan(both).any():
        raise ValueError("scores contain NaN")
    ranks = _average_ranks(both)
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


@dataclass(frozen=True, slots=True)
class AucCase:
    """One distinct (user, target item) pair, its seeds and its negatives."""

    target: Target
    negatives: tuple[str, ...]


def auc_cases(
    data: EvalData, targets: Sequence[Target], negatives: int = 100, seed: int = 0
) -> list[AucCase]:
    """The AUC cases of a task: first target per distinct (user, item in training).

    Negatives are drawn uniformly from the training catalogue, skipping items
    the user touched (before or after the cut), with a seeded generator.
    """
    rng = np.random.default_rng(seed)
    catalogue = data.catalogue
    known = set(catalogue)
    cases: list[AucCase] = []
    seen: set[tuple[str, str]] = set()
    for target in targets:
        key = (target.user_id, target.item_id)
        if key in seen or target.item_id not in known:
            continue
        seen.add(key)
        touched = {e["item_id"] for e in data.all_by_user[target.user_id]}
        drawn: list[str] = []
        while len(drawn) < negatives and len(touched) < len(catalogue):
            for i in rng.integers(len(catalogue), size=2 * negatives):
                item = catalogue[int(i)]
                if item not in touched:
                    drawn.append(item)
                    if len(drawn) == negatives:
                        break
        if drawn:
            cases.append(AucCase(target, tuple(drawn)))
    return cases


#: ``(seed token or None for a seed-free target, item ids) -> scores``.
Scorer = Callable[[Token | None, Sequence[str]], np.ndarray]


def mean_auc(cases: Sequence[AucCase], score: Scorer) -> float | None:
    """Mean AUC over cases; an item's score is its best over the target's seeds.

    Examples
    --------
    >>> case = AucCase(Target("u", "a", (("s", "click"),)), ("b", "c"))
    >>> mean_auc([case], lambda seed, items: np.array([1.0 if i == "a" else 0.0 for i in items]))
    1.0
    """
    aucs = []
    for case in cases:
        items = [case.target.item_id, *case.negatives]
        seeds: Sequence[Token | None] = case.target.seeds or (None,)
        scores = np.max([np.asarray(score(s, items), dtype=float) for s in seeds], axis=0)
        aucs.append(auc_from_scores(scores[:1], scores[1:]))
    return float(np.mean(aucs)) if aucs else None


# ---------------------------------------------------------------- coverage, cosine


def coverage(answered: Collection[str], catalogue: Collection[str]) -> float | None:
    """Fraction of the catalogue that appears in at least one answer.

    Examples
    --------
    >>> coverage({"a", "b", "zz"}, ["a", "b", "c", "d"])
    0.5
    """
    catalogue = set(catalogue)
    if not catalogue:
        return None
    return len(catalogue.intersection(answered)) / len(catalogue)


K = TypeVar("K", bound=Hashable)


def category_cosine(
    vectors: Mapping[K, ArrayLike],
    categories: Mapping[K, str],
    *,
    max_pairs: int = 10_000,
    rng: np.random.Generator | int | None = None,
) -> dict[str, float | int | None]:
    """Mean cosine of same-category vs cross-category pairs (Etsy's Table 2).

    All pairs are used when there are at most ``max_pairs`` of a kind; otherwise
    ``max_pairs`` pairs are drawn uniformly (seeded by ``rng``). Keys without a
    category or with a zero vector are ignored.

    Examples
    --------
    >>> vecs = {"a": [1.0, 0.0], "b": [1.0, 0.0], "c": [0.0, 1.0]}
    >>> category_cosine(vecs, {"a": "x", "b": "x", "c": "y"})
    {'same': 1.0, 'cross': 0.0, 'same_pairs': 1, 'cross_pairs': 2}
    """
    rng = np.random.default_rng(rng)
    keys = sorted((k for k in vectors if k in categories), key=repr)
    matrix = np.array([np.asarray(vectors[k], dtype=float) for k in keys]).reshape(len(keys), -1)
    norms = np.linalg.norm(matrix, axis=1) if len(keys) else np.zeros(0)
    keep = norms > 0
    keys = [k for k, ok in zip(keys, keep, strict=True) if ok]
    unit = matrix[keep] / norms[keep, None] if len(keys) else matrix
    by_category: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        by_category[categories[key]].append(i)
    groups = [np.array(g) for _, g in sorted(by_category.items())]
    sizes = np.array([len(g) for g in groups], dtype=float)
    same_total = int((sizes * (sizes - 1) / 2).sum())
    cross_total = len(keys) * (len(keys) - 1) // 2 - same_total

    def mean_cosine(a: Sequence[int], b: Sequence[int]) -> float | None:
        if len(a) == 0:
            return None
        return float(np.einsum("ij,ij->i", unit[np.asarray(a)], unit[np.asarray(b)]).mean())

    if same_total <= max_pairs:
        same = [p for g in groups for p in itertools.combinations(g.tolist(), 2)]
        same_a, same_b = [p[0] for p in same], [p[1] for p in same]
    else:
        # Category chosen in proportion to its pair count: uniform over same pairs.
        weights = sizes * (sizes - 1) / 2 / same_total
        same_a, same_b = [], []
        for g in rng.choice(len(groups), size=max_pairs, p=weights):
            i, j = rng.choice(groups[g], size=2, replace=False)
            same_a.append(int(i))
            same_b.append(int(j))
    if cross_total <= max_pairs:
        cross = [
            (i, j)
            for g, h in itertools.combinations(groups, 2)
            for i in g.tolist()
            for j in h.tolist()
        ]
        cross_a, cross_b = [p[0] for p in cross], [p[1] for p in cross]
    else:
        category_of = np.empty(len(keys), dtype=int)
        for c, g in enumerate(groups):
            category_of[g] = c
        cross_a, cross_b = [], []
        while len(cross_a) < max_pairs:
            i, j = rng.integers(len(keys), size=2)
            if category_of[i] != category_of[j]:
                cross_a.append(int(i))
                cross_b.append(int(j))
    return {
        "same": mean_cosine(same_a, same_b),
        "cross": mean_cosine(cross_a, cross_b),
        "same_pairs": len(same_a),
        "cross_pairs": len(cross_a),
    }
