"""Offline evaluation of candidate generators, following Etsy (hit rate) and Whatnot (ROC AUC).

Every metric here is model-agnostic: a model enters only as a callable, so the same
report compares regularised embeddings, plain embeddings, matrix factorisation,
co-occurrence counts and popularity.

Definitions
-----------
Time split
    :func:`split_by_time` cuts the log at ``cut`` (default: last timestamp minus
    ``test_hours``). Train holds events with ``ts < cut``; test holds events with
    ``cut <= ts <= cut + test_hours * 3600`` (the window is closed so the newest event
    is tested). Models are trained on train only.
Tasks (Etsy's Table 1)
    For each test user, their test-window interactions are ordered by ``(ts, input
    order)``. A task names which of them are *seeds* and which token type the
    candidates must have:

    ``item-to-item``   seed: any interaction token; candidates of the seed's own type;
    ``click-to-cart``  seed: a click token (``view`` or ``click``: Etsy's "click" is
                       a listing view); candidates are cart tokens;
    ``cart-to-cart``   seed: a cart token; candidates are cart tokens.

    The candidate generator is called as ``candidates(item_id, seed_type,
    target_type, k)`` (a :data:`Candidates`) and returns up to ``k`` item ids
    (default ``k = 200``, Etsy's figure).
Purchase-intent hit rate
    A *target* is a test-window ``cart`` or ``purchase`` event. It enters P, the
    multiset of targets, when at least one seed of the task comes strictly before it
    (earlier in the ordering: an event is never its own seed). S for that target is
    the union of the top-k candidates of the seeds before it (all of them, or the
    ``max_seeds`` most recent distinct seed tokens). The hit rate is the micro
    average ``sum |P ∩ S| / sum |P|`` over users, each target counted once per
    occurrence. This is Etsy's ``|P ∩ S| / |P|`` with time respected: a seed that
    happens after a cart cannot predict it.
Novel hit rate
    The same, with P restricted to targets whose item was *not* a seed item before
    them: returning the item the user just clicked is a trivial way to score.
User-level hit rate (matrix factorisation)
    :func:`user_hit_rate` asks a :data:`UserCandidates` ``(user_id, k)`` once per
    test user; P is all of the user's test-window targets. The novel variant drops
    targets whose item the user viewed or clicked earlier in the window.
ROC AUC (Whatnot)
    :func:`roc_auc` groups positive ``(key, item)`` pairs by key (a user or a seed
    item), draws ``negatives_per_positive`` random catalogue items per positive
    that the key has not seen, scores them with ``score_fn(key, items)`` and
    computes each group's Mann-Whitney AUC (ties count one half); the result is
    the mean over groups (Rendle et al.'s BPR AUC). 1 is perfect, 0.5 is chance.
Coverage
    Distinct catalogue items appearing in any candidate set, over catalogue size.
Category cosine (Etsy's Table 2)
    Mean cosine similarity of same-category pairs and of cross-category pairs,
    exact when there are few pairs, else a seeded uniform sample.

Examples
--------
>>> events = [
...     {"user_id": "u", "item_id": "a", "type": "click", "ts": 0.0},
...     {"user_id": "u", "item_id": "b", "type": "cart", "ts": 10.0},
... ]
>>> def always_b(item_id, seed_type, target_type, k):
...     return ["b"]
>>> hit_rates(events, always_b, tasks=("click-to-cart",))["click-to-cart"].rate
1.0
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np

from models.sessions import DEFAULT_GAP_SECONDS, INTERACTION_TYPES, Token, sessionise

#: ``(item_id, seed_type, target_type, k) -> item ids``: candidates for one seed token.
Candidates = Callable[[str, str, str, int], list[str]]
#: ``(user_id, k) -> item ids``: candidates for a user (matrix factorisation).
UserCandidates = Callable[[str, int], list[str]]
#: ``(user_or_seed, item_ids) -> scores``, higher means more likely.
ScoreFn = Callable[[str, Sequence[str]], Sequence[float]]

#: Event types that are purchase intent: the targets of the hit rate.
TARGET_TYPES: tuple[str, ...] = ("cart", "purchase")
#: Event types that count as a "click" seed (Etsy's click is a listing view).
CLICK_TYPES: tuple[str, ...] = ("view", "click")
#: Task name -> (seed event types, target token type or ``None`` for the seed's own type).
TASKS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "item-to-item": (INTERACTION_TYPES, None),
    "click-to-cart": (CLICK_TYPES, "cart"),
    "cart-to-cart": (("cart",), "cart"),
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
DEFAULT_K = 200

ArrayLike = Sequence[float] | np.ndarray

T = TypeVar("T")


# ---------------------------------------------------------------- time split


def split_by_time(
    events: Iterable[dict[str, Any]], test_hours: float = 24.0, cut: float | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """Split events into train (before the cut) and test (the next ``test_hours``).

    Parameters
    ----------
    events
        Canonical events (``ts`` in epoch seconds).
    test_hours
        Length of the test window.
    cut
        Start of the test window; default: the last timestamp minus ``test_hours``.

    Returns
    -------
    train, test, cut
        ``train`` has ``ts < cut``; ``test`` has ``cut <= ts <= cut + test_hours``.

    Examples
    --------
    >>> evs = [{"ts": t} for t in (0.0, 3600.0, 7200.0)]
    >>> train, test, cut = split_by_time(evs, test_hours=1)
    >>> [e["ts"] for e in train], [e["ts"] for e in test], cut
    ([0.0], [3600.0, 7200.0], 3600.0)
    """
    events = list(events)
    if test_hours <= 0:
        raise ValueError(f"test_hours must be positive, got {test_hours}")
    window = test_hours * 3600.0
    if cut is None:
        if not events:
            raise ValueError("no events to split")
        cut = max(e["ts"] for e in events) - window
    end = cut + window
    train = [e for e in events if e["ts"] < cut]
    test = [e for e in events if cut <= e["ts"] <= end]
    return train, test, float(cut)


# ---------------------------------------------------------------- hit rate


@dataclass(slots=True)
class HitRate:
    """Counts behind one hit rate; ``rate`` and ``novel_rate`` are ``None`` without targets."""

    task: str
    hits: int = 0
    targets: int = 0
    novel_hits: int = 0
    novel_targets: int = 0
    users: int = 0
    seeds: int = 0
    seeds_with_candidates: int = 0

    @property
    def rate(self) -> float | None:
        return self.hits / self.targets if self.targets else None

    @property
    def novel_rate(self) -> float | None:
        return self.novel_hits / self.novel_targets if self.novel_targets else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rate"] = self.rate
        out["novel_rate"] = self.novel_rate
        return out


def _by_user(events: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Interactions per user in (ts, input order); users in order of first appearance."""
    users: dict[str, list[tuple[float, int, dict[str, Any]]]] = defaultdict(list)
    for index, event in enumerate(events):
        if event["type"] in INTERACTION_TYPES:
            users[event["user_id"]].append((event["ts"], index, event))
    return {
        user: [e for _, _, e in sorted(rows, key=lambda r: r[:2])] for user, rows in users.items()
    }


class _CachedCandidates:
    """Memoises a generator: one call per distinct (item, seed type, target type)."""

    def __init__(self, candidates: Candidates, k: int) -> None:
        self.candidates = candidates
        self.k = k
        self.cache: dict[tuple[str, str, str], frozenset[str]] = {}

    def __call__(self, item_id: str, seed_type: str, target_type: str) -> frozenset[str]:
        key = (item_id, seed_type, target_type)
        found = self.cache.get(key)
        if found is None:
            # Trust no generator to respect k: Etsy's S is the top k per seed.
            found = frozenset(
                list(self.candidates(item_id, seed_type, target_type, self.k))[: self.k]
            )
            self.cache[key] = found
        return found

    def items(self) -> set[str]:
        return set().union(*self.cache.values()) if self.cache else set()


def _task_hit_rate(
    users: Mapping[str, list[dict[str, Any]]],
    cached: _CachedCandidates,
    task: str,
    max_seeds: int | None,
) -> HitRate:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    seed_types, fixed_target = TASKS[task]
    result = HitRate(task)
    seen_tokens: set[tuple[str, str, str]] = set()
    for events in users.values():
        # Most recent distinct seed tokens, oldest first (a dict: ordered, O(1) moves).
        seeds: dict[tuple[str, str, str], None] = {}
        seed_items: set[str] = set()
        user_has_target = False
        for event in events:
            item, etype = event["item_id"], event["type"]
            if etype in TARGET_TYPES and seeds:
                # item in the union of the seeds' candidate sets, without building it.
                hit = any(item in cached(*seed) for seed in seeds)
                result.targets += 1
                result.hits += hit
                user_has_target = True
                if item not in seed_items:
                    result.novel_targets += 1
                    result.novel_hits += hit
            if etype in seed_types:
                seed = (item, etype, fixed_target or etype)
                seeds.pop(seed, None)
                seeds[seed] = None
                if max_seeds is not None and len(seeds) > max_seeds:
                    del seeds[next(iter(seeds))]
                seed_items.add(item)
                seen_tokens.add(seed)
        result.users += user_has_target
    result.seeds = len(seen_tokens)
    result.seeds_with_candidates = sum(bool(cached(*seed)) for seed in seen_tokens)
    return result


def hit_rates(
    test_events: Iterable[dict[str, Any]],
    candidates: Candidates,
    *,
    k: int = DEFAULT_K,
    tasks: Sequence[str] = TASK_NAMES,
    max_seeds: int | None = None,
    candidate_items: set[str] | None = None,
) -> dict[str, HitRate]:
    """Etsy's purchase-intent hit rate (and its novel variant) per task.

    Parameters
    ----------
    test_events
        The test window's events (any order).
    candidates
        The model under test; called once per distinct seed token and task.
    k
        Candidates per seed (Etsy: 200).
    tasks
        Names from :data:`TASKS`.
    max_seeds
        Use only the most recent distinct seed tokens before each target.
    candidate_items
        If given, every candidate item seen is added to it (for :func:`coverage`).

    Examples
    --------
    >>> evs = [{"user_id": "u", "item_id": "a", "type": "cart", "ts": 0.0},
    ...        {"user_id": "u", "item_id": "a", "type": "purchase", "ts": 1.0}]
    >>> r = hit_rates(evs, lambda i, s, t, k: [i], tasks=("cart-to-cart",))["cart-to-cart"]
    >>> r.rate, r.novel_rate
    (1.0, None)
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    users = _by_user(test_events)
    cached = _CachedCandidates(candidates, k)
    results = {task: _task_hit_rate(users, cached, task, max_seeds) for task in tasks}
    if candidate_items is not None:
        candidate_items |= cached.items()
    return results


def user_hit_rate(
    test_events: Iterable[dict[str, Any]],
    user_candidates: UserCandidates,
    *,
    k: int = DEFAULT_K,
    candidate_items: set[str] | None = None,
) -> HitRate:
    """Hit rate of one candidate list per user (e.g. matrix factorisation's top k).

    Examples
    --------
    >>> evs = [{"user_id": "u", "item_id": "a", "type": "view", "ts": 0.0},
    ...        {"user_id": "u", "item_id": "a", "type": "cart", "ts": 1.0},
    ...        {"user_id": "u", "item_id": "b", "type": "cart", "ts": 2.0}]
    >>> r = user_hit_rate(evs, lambda user, k: ["a"])
    >>> r.rate, r.novel_rate
    (0.5, 0.0)
    """
    result = HitRate("user")
    for user, events in _by_user(test_events).items():
        targets = [e for e in events if e["type"] in TARGET_TYPES]
        if not targets:
            continue
        chosen = list(user_candidates(user, k))[:k]
        union = set(chosen)
        if candidate_items is not None:
            candidate_items |= union
        result.users += 1
        result.seeds += 1
        result.seeds_with_candidates += bool(union)
        clicked: set[str] = set()
        for event in events:
            item = event["item_id"]
            if event["type"] in TARGET_TYPES:
                hit = item in union
                result.targets += 1
                result.hits += hit
                if item not in clicked:
                    result.novel_targets += 1
                    result.novel_hits += hit
            if event["type"] in CLICK_TYPES:
                clicked.add(item)
    return result


def coverage(candidate_items: Iterable[str], catalogue: Collection[str]) -> float:
    """Fraction of the catalogue that appears in at least one candidate set.

    Examples
    --------
    >>> coverage({"a", "b", "zz"}, ["a", "b", "c", "d"])
    0.5
    """
    catalogue = set(catalogue)
    if not catalogue:
        raise ValueError("empty catalogue")
    return len(catalogue.intersection(candidate_items)) / len(catalogue)


def evaluate(
    test_events: Iterable[dict[str, Any]],
    candidates: Candidates | None = None,
    *,
    user_candidates: UserCandidates | None = None,
    catalogue: Collection[str] | None = None,
    k: int = DEFAULT_K,
    tasks: Sequence[str] = TASK_NAMES,
    max_seeds: int | None = None,
) -> dict[str, Any]:
    """One report row (plain JSON): hit rates, novel hit rates, counts and coverage.

    Add ``"auc"``, ``"train_seconds"`` and ``"category_cosine"`` to the row as
    measured; :func:`report_markdown` renders whichever are present.

    Examples
    --------
    >>> evs = [{"user_id": "u", "item_id": "a", "type": "click", "ts": 0.0},
    ...        {"user_id": "u", "item_id": "b", "type": "cart", "ts": 1.0}]
    >>> row = evaluate(evs, lambda i, s, t, k: ["b"], catalogue=["a", "b"])
    >>> row["hit_rate"]["click-to-cart"], row["coverage"]
    (1.0, 0.5)
    """
    test_events = list(test_events)
    seen: set[str] = set()
    row: dict[str, Any] = {"k": k, "hit_rate": {}, "novel_hit_rate": {}, "counts": {}}
    results: list[HitRate] = []
    if candidates is not None:
        results += hit_rates(
            test_events, candidates, k=k, tasks=tasks, max_seeds=max_seeds, candidate_items=seen
        ).values()
    if user_candidates is not None:
        results.append(user_hit_rate(test_events, user_candidates, k=k, candidate_items=seen))
    for result in results:
        row["hit_rate"][result.task] = result.rate
        row["novel_hit_rate"][result.task] = result.novel_rate
        row["counts"][result.task] = result.to_dict()
    row["coverage"] = coverage(seen, catalogue) if catalogue is not None else None
    return row


def timed(train: Callable[[], T]) -> tuple[T, float]:
    """Run ``train()`` and return its result with the wall-clock seconds it took."""
    start = time.perf_counter()
    model = train()
    return model, time.perf_counter() - start


# ---------------------------------------------------------------- ROC AUC


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    # The tied block of the v-th distinct value spans ranks start+1 .. start+count.
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return (starts + (counts + 1) / 2.0)[inverse]


def auc_from_scores(positive_scores: ArrayLike, negative_scores: ArrayLike) -> float:
    """Probability that a positive outscores a negative (ties count 1/2), via ranks.

    Examples
    --------
    >>> auc_from_scores([3, 1], [1, 0])
    0.875
    """
    pos = np.asarray(positive_scores, dtype=float).ravel()
    neg = np.asarray(negative_scores, dtype=float).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError("AUC needs at least one positive and one negative score")
    both = np.concatenate((pos, neg))
    if np.isnan(both).any():
        raise ValueError("scores contain NaN")
    ranks = _average_ranks(both)
    # Mann-Whitney U of the positives, normalised by the number of pairs.
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def _sample_unseen(
    items: list[str],
    index: Mapping[str, int],
    exclude: set[str],
    count: int,
    rng: np.random.Generator,
) -> list[str]:
    blocked = {index[i] for i in exclude if i in index}
    allowed = len(items) - len(blocked)
    if allowed <= 0:
        return []
    if allowed * 2 < len(items):
        # Mostly seen: rejection sampling would spin, so draw from the explicit rest.
        rest = np.array([i for i in range(len(items)) if i not in blocked])
        return [items[i] for i in rng.choice(rest, size=count)]
    chosen: list[str] = []
    while len(chosen) < count:
        for i in rng.integers(len(items), size=2 * (count - len(chosen)) + 4):
            if int(i) not in blocked:
                chosen.append(items[int(i)])
                if len(chosen) == count:
                    break
    return chosen


def roc_auc(
    score_fn: ScoreFn,
    positives: Iterable[tuple[str, str]],
    catalogue: Collection[str],
    negatives_per_positive: int = 10,
    rng: np.random.Generator | int | None = None,
    *,
    seen: Mapping[str, Collection[str]] | None = None,
) -> float:
    """Whatnot's offline metric: ROC AUC of positives against random unseen items.

    Parameters
    ----------
    score_fn
        ``score_fn(key, item_ids) -> scores``; a model returns a low score (e.g.
        ``-inf``) for items it does not know. NaN is an error.
    positives
        ``(key, item_id)`` pairs: a user and an item they engaged with, or a seed
        item and an item carted after it. Duplicates count once.
    catalogue
        Items negatives are drawn from (uniformly, with replacement).
    negatives_per_positive
        Negatives drawn per positive of a key.
    rng
        Generator or seed for the negative draws.
    seen
        Items each key must not get as negatives besides its positives (e.g. the
        user's training interactions).

    Returns
    -------
    float
        Mean over keys of each key's AUC (keys with no unseen item are skipped).

    Examples
    --------
    >>> cat = ["a", "b", "c", "d"]
    >>> roc_auc(lambda key, items: [1.0 if i == "a" else 0.0 for i in items],
    ...         [("u", "a")], cat, 5, rng=0)
    1.0
    """
    if negatives_per_positive <= 0:
        raise ValueError("negatives_per_positive must be positive")
    rng = np.random.default_rng(rng)
    # Sorted so that a set catalogue gives the same draws in every process.
    items = sorted(set(catalogue))
    index = {item: i for i, item in enumerate(items)}
    groups: dict[str, dict[str, None]] = {}
    for key, item in positives:
        groups.setdefault(key, {})[item] = None
    aucs: list[float] = []
    for key, group in groups.items():
        pos = list(group)
        exclude = set(pos)
        if seen is not None:
            exclude.update(seen.get(key, ()))
        negs = _sample_unseen(items, index, exclude, negatives_per_positive * len(pos), rng)
        if not negs:
            continue
        scores = np.asarray(score_fn(key, pos + negs), dtype=float)
        if scores.shape != (len(pos) + len(negs),):
            raise ValueError(
                f"score_fn returned {scores.shape} scores for {len(pos) + len(negs)} items"
            )
        aucs.append(auc_from_scores(scores[: len(pos)], scores[len(pos) :]))
    if not aucs:
        raise ValueError("no positive has an unseen catalogue item to compare with")
    return float(np.mean(aucs))


def user_positives(
    test_events: Iterable[dict[str, Any]], types: Collection[str] = TARGET_TYPES
) -> list[tuple[str, str]]:
    """Distinct ``(user_id, item_id)`` pairs of the given event types, in order of appearance."""
    pairs = ((e["user_id"], e["item_id"]) for e in test_events if e["type"] in types)
    return list(dict.fromkeys(pairs))


def seed_positives(
    test_events: Iterable[dict[str, Any]],
    seed_types: Collection[str] = CLICK_TYPES,
    target_types: Collection[str] = TARGET_TYPES,
) -> list[tuple[str, str]]:
    """Distinct ``(seed item, target item)`` pairs: each target with the user's last seed before it.

    Pairs where the target is the seed item itself are left out (trivially close).

    Examples
    --------
    >>> seed_positives([{"user_id": "u", "item_id": "a", "type": "view", "ts": 0.0},
    ...                 {"user_id": "u", "item_id": "b", "type": "cart", "ts": 1.0}])
    [('a', 'b')]
    """
    pairs: dict[tuple[str, str], None] = {}
    for events in _by_user(test_events).values():
        last_seed: str | None = None
        for event in events:
            if event["type"] in target_types and last_seed not in (None, event["item_id"]):
                pairs[(last_seed, event["item_id"])] = None
            if event["type"] in seed_types:
                last_seed = event["item_id"]
    return list(pairs)


# ---------------------------------------------------------------- category cosine

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

    def mean_cosine(a: list[int] | np.ndarray, b: list[int] | np.ndarray) -> float | None:
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


# ---------------------------------------------------------------- calibration


def brier_score(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared error of probabilities ``p`` against 0/1 outcomes ``y``.

    Examples
    --------
    >>> brier_score([1, 0, 1, 0], [0.5, 0.5, 1.0, 0.0])
    0.125
    """
    y_arr, p_arr = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if y_arr.shape != p_arr.shape or y_arr.size == 0:
        raise ValueError("y and p must be non-empty and of the same shape")
    return float(np.mean((p_arr - y_arr) ** 2))


def reliability_bins(y: ArrayLike, p: ArrayLike, bins: int = 10) -> list[dict[str, Any]]:
    """Reliability-plot data: per equal-width score bin, mean score and fraction positive.

    Bin ``b`` holds scores in ``[b/bins, (b+1)/bins)``; a score of exactly 1 goes to
    the last bin. Empty bins have ``count`` 0 and ``None`` means.

    Examples
    --------
    >>> [b["fraction_positive"] for b in reliability_bins([0, 1, 1], [0.1, 0.7, 0.9], bins=2)]
    [0.0, 1.0]
    """
    y_arr, p_arr = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if y_arr.shape != p_arr.shape:
        raise ValueError("y and p must have the same shape")
    if bins <= 0:
        raise ValueError("bins must be positive")
    which = np.clip((p_arr * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": count,
                "mean_score": float(p_arr[mask].mean()) if count else None,
                "fraction_positive": float(y_arr[mask].mean()) if count else None,
            }
        )
    return out


# ---------------------------------------------------------------- baselines


def popularity_candidates(train_events: Iterable[dict[str, Any]]) -> Candidates:
    """Baseline: the items with the most training events of the target type.

    Ties break by total interactions, then item id; the seed is ignored, so every
    seed gets the same list. Items never seen with the target type follow, by
    total interactions.

    Examples
    --------
    >>> evs = [{"item_id": i, "type": t} for i, t in
    ...        [("a", "view"), ("a", "view"), ("b", "cart"), ("c", "view")]]
    >>> popularity_candidates(evs)("zz", "view", "cart", 2)
    ['b', 'a']
    """
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    total: Counter[str] = Counter()
    for event in train_events:
        if event["type"] in INTERACTION_TYPES:
            by_type[event["type"]][event["item_id"]] += 1
            total[event["item_id"]] += 1
    ranked: dict[str, list[str]] = {}

    def candidates(item_id: str, seed_type: str, target_type: str, k: int) -> list[str]:
        order = ranked.get(target_type)
        if order is None:
            counts = by_type.get(target_type, Counter())
            order = sorted(total, key=lambda i: (-counts[i], -total[i], i))
            ranked[target_type] = order
        return order[:k]

    return candidates


def cooccurrence_counts(
    train_events: Iterable[dict[str, Any]],
    window: int = 20,
    gap_seconds: float = DEFAULT_GAP_SECONDS,
) -> dict[Token, Counter[Token]]:
    """Directional counts: how often token b follows token a within ``window`` in a session.

    Every ordered occurrence counts; a token never counts as following itself.
    Sessions come from :func:`models.sessions.sessionise`.
    """
    follows: dict[Token, Counter[Token]] = defaultdict(Counter)
    for session in sessionise(train_events, gap_seconds):
        tokens = session.tokens
        for i, first in enumerate(tokens):
            counter = follows[first]
            for later in tokens[i + 1 : i + 1 + window]:
                if later != first:
                    counter[later] += 1
    return dict(follows)


def cooccurrence_candidates(
    train_events: Iterable[dict[str, Any]],
    window: int = 20,
    gap_seconds: float = DEFAULT_GAP_SECONDS,
) -> Candidates:
    """Baseline: the target-type tokens that most often followed the seed token.

    Ranked by :func:`cooccurrence_counts`, ties by item id.

    Examples
    --------
    >>> evs = [{"user_id": "u", "item_id": i, "type": t, "ts": float(n)} for n, (i, t) in
    ...        enumerate([("a", "click"), ("b", "cart"), ("a", "click"), ("c", "cart"),
    ...                    ("b", "cart")])]
    >>> cooccurrence_candidates(evs)("a", "click", "cart", 5)
    ['b', 'c']
    """
    follows = cooccurrence_counts(train_events, window, gap_seconds)
    ranked: dict[tuple[Token, str], list[str]] = {}

    def candidates(item_id: str, seed_type: str, target_type: str, k: int) -> list[str]:
        key = ((item_id, seed_type), target_type)
        order = ranked.get(key)
        if order is None:
            counts = follows.get((item_id, seed_type), Counter())
            pairs = [(n, item) for (item, kind), n in counts.items() if kind == target_type]
            order = [item for n, item in sorted(pairs, key=lambda p: (-p[0], p[1]))]
            ranked[key] = order
        return order[:k]

    return candidates


# ---------------------------------------------------------------- report

_PERCENT_TASKS = (
    ("item-to-item", "item→item"),
    ("click-to-cart", "click→cart"),
    ("cart-to-cart", "cart→cart"),
    ("user", "user"),
)


def _fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value * scale, spec)


def report_markdown(results: Mapping[str, Any]) -> str:
    """Render ``{"config": {...}, "models": {name: row}}`` as a Markdown table.

    Rows are models in insertion order; hit rates and coverage are percentages.
    Optional columns (user-level hit rate, AUC, category cosine, train seconds)
    appear when any row has them.

    Examples
    --------
    >>> row = {"hit_rate": {"click-to-cart": 0.12}, "novel_hit_rate": {}, "auc": 0.9}
    >>> print(report_markdown({"models": {"embedding": row}}).splitlines()[2])
    | embedding | - | 12.00 | - | - | - | - | 0.900 | - | - |
    """
    models: Mapping[str, Mapping[str, Any]] = results.get("models", {})
    rows = list(models.values())

    def has(get: Callable[[Mapping[str, Any]], Any]) -> bool:
        return any(get(r) is not None for r in rows)

    columns: list[tuple[str, Callable[[Mapping[str, Any]], str]]] = []
    for metric, prefix in (("hit_rate", "hit %"), ("novel_hit_rate", "novel %")):
        for task, label in _PERCENT_TASKS:
            get = lambda r, m=metric, t=task: (r.get(m) or {}).get(t)  # noqa: E731
            if task != "user" or has(get):
                columns.append((f"{prefix} {label}", lambda r, g=get: _fmt(g(r), ".2f", 100)))
    columns.append(("AUC", lambda r: _fmt(r.get("auc"), ".3f")))
    columns.append(("coverage %", lambda r: _fmt(r.get("coverage"), ".1f", 100)))
    if has(lambda r: r.get("category_cosine")):
        for side in ("same", "cross"):
            columns.append(
                (
                    f"cos {side}-cat",
                    lambda r, s=side: _fmt((r.get("category_cosine") or {}).get(s), ".2f"),
                )
            )
    columns.append(("train s", lambda r: _fmt(r.get("train_seconds"), ".1f")))

    lines = []
    config = results.get("config")
    if config:
        lines.append(", ".join(f"{key}={value}" for key, value in config.items()))
        lines.append("")
    lines.append("| model | " + " | ".join(name for name, _ in columns) + " |")
    lines.append("|---" * (len(columns) + 1) + "|")
    for name, row in models.items():
        lines.append(f"| {name} | " + " | ".join(render(row) for _, render in columns) + " |")
    return "\n".join(lines) + "\n"
