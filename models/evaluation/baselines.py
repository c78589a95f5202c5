"""Well-known libraries and plain counts, under the same protocol as the served rows.

Set up as in ``../shared/data/BASELINES.md``, so that numbers compare:

:class:`Item2Vec`
    gensim skip-gram over per-user sequences (dim 64, window 5, 10 negatives,
    20 epochs, min_count 1, one worker thread: deterministic), one token per
    item for item-to-item and home lists, one per (item, interaction) for
    click-to-cart and cart-to-cart. ``followers=3`` inserts each token's 3 most
    frequent within-session followers after it (Etsy's co-occurrence
    regularisation).
:class:`ImplicitMF`
    implicit's BPR (64 factors, 100 iterations) or ALS, user x item for
    item-to-item and home lists, user x (item, interaction) for the typed tasks;
    neighbours by cosine of item factors; home lists do not filter items the
    user touched.
:class:`SessionCooccurrence`
    within-session counts of item pairs (both directions); typed for the typed tasks.
:class:`Popularity`
    training counts (cart and purchase counts for the typed tasks), the same
    answer for every seed and for targets without one.

Home lists of the seed-based rows rank the union of the answers to the user's
last 4 distinct clicks before the cut (best score over the seeds).

Examples
--------
>>> from models.evaluation.split import EvalData
>>> evs = [{"user_id": u, "item_id": i, "type": "click", "ts": float(n)}
...        for n, (u, i) in enumerate([("u", "a"), ("u", "b"), ("v", "a"), ("v", "b"),
...                                    ("v", "c"), ("w", "c")])]
>>> data = EvalData.split(evs, test_hours=0.0001)
>>> row = SessionCooccurrence()
>>> row.fit(data)
>>> from models.evaluation.metrics import TASKS
>>> list(row.similar(("a", "click"), TASKS["item-to-item"], 5))  # b with a twice, c once
['b', 'c']
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from models.evaluation.metrics import Task
from models.evaluation.rows import Row
from models.evaluation.split import EvalData, Event
from models.sessions import Token, same_session

ALL_TASKS = frozenset({"item-to-item", "click-to-cart", "cart-to-cart"})


# ---------------------------------------------------------------- helpers


class ExactNeighbours:
    """Exact cosine neighbours among keyed vectors, optionally within one group of keys.

    Examples
    --------
    >>> nn = ExactNeighbours(["a", "b", "c"], np.array([[1.0, 0], [1, 0.1], [0, 1]]))
    >>> nn.nearest("a", 2)
    ['b', 'c']
    >>> [round(s, 3) for s in nn.scores("a", ["c", "zz"]).tolist()]
    [0.0, -inf]
    """

    def __init__(self, keys: Sequence[Hashable], vectors: np.ndarray) -> None:
        matrix = np.asarray(vectors, dtype=np.float32)
        self.keys = list(keys)
        self.unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        self.row = {key: n for n, key in enumerate(self.keys)}

    def rows_where(self, keep: Callable[[Hashable], bool]) -> np.ndarray:
        """The rows whose key passes ``keep`` (a candidate group, e.g. cart tokens)."""
        return np.array([n for n, key in enumerate(self.keys) if keep(key)], dtype=np.int64)

    def nearest(self, key: Hashable, k: int, among: np.ndarray | None = None) -> list[Hashable]:
        """The ``k`` keys closest to ``key`` (itself excluded), best first."""
        row = self.row.get(key)
        if row is None or k <= 0:
            return []
        rows = np.arange(len(self.keys)) if among is None else among
        rows = rows[rows != row]
        if len(rows) == 0:
            return []
        scores = self.unit[rows] @ self.unit[row]
        k = min(k, len(rows))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((rows[top], -scores[top]))]
        return [self.keys[r] for r in rows[top].tolist()]

    def scores(self, key: Hashable, others: Sequence[Hashable]) -> np.ndarray:
        """Cosine of ``key`` with each of ``others``; ``-inf`` for unknown keys."""
        row = self.row.get(key)
        out = np.full(len(others), -np.inf)
        if row is None:
            return out
        for n, other in enumerate(others):
            r = self.row.get(other)
            if r is not None:
                out[n] = float(self.unit[r] @ self.unit[row])
        return out


def user_sequences(data: EvalData, key: Callable[[Event], Hashable]) -> list[list[Hashable]]:
    """Each user's training events as one sequence of keys, in time order."""
    return [[key(e) for e in events] for events in data.train_by_user.values()]


def sessions_of(data: EvalData, events: Sequence[Event]) -> list[list[Event]]:
    """One user's events cut into sessions by the protocol's rule."""
    out: list[list[Event]] = []
    prev: Event | None = None
    for event in events:
        if prev is None or not same_session(
            prev["ts"],
            prev.get("session_id"),
            event["ts"],
            event.get("session_id"),
            data.protocol.gap_seconds,
        ):
            out.append([])
        out[-1].append(event)
        prev = event
    return out


def top_followers(sessions: Sequence[Sequence[Hashable]], k: int) -> dict[Hashable, list]:
    """Each key's ``k`` most frequent immediate followers within sessions (ties: first seen).

    Examples
    --------
    >>> top_followers([["a", "b", "a", "c"], ["a", "b"]], 1)
    {'a': ['b'], 'b': ['a'], 'c': []}
    """
    follows: dict[Hashable, Counter] = defaultdict(Counter)
    for session in sessions:
        for first, then in itertools.pairwise(session):
            if first != then:
                follows[first][then] += 1
        if session:
            follows[session[-1]]  # a key with no follower still has an entry
    return {key: [f for f, _ in counter.most_common(k)] for key, counter in follows.items()}


def last_clicks(data: EvalData, user_id: str, n: int = 4) -> list[str]:
    """The user's last ``n`` distinct seed-type items before the cut, most recent first."""
    seed_types = set(data.protocol.seed_types)
    found: dict[str, None] = {}
    for event in reversed(data.train_by_user.get(user_id, [])):
        if event["type"] in seed_types and event["item_id"] not in found:
            found[event["item_id"]] = None
            if len(found) == n:
                break
    return list(found)


def rank_union(answers: Sequence[Sequence[str]], k: int) -> list[str]:
    """Merge ranked lists by best position (earlier lists win ties).

    >>> rank_union([["a", "b"], ["c", "a"]], 3)
    ['a', 'c', 'b']
    """
    best: dict[str, tuple[int, int]] = {}
    for n, answer in enumerate(answers):
        for position, item in enumerate(answer):
            if item not in best or (position, n) < best[item]:
                best[item] = (position, n)
    return sorted(best, key=lambda item: best[item])[:k]


def _typed(token: Token) -> str:
    return f"{token[0]}\x1f{token[1]}"


# ---------------------------------------------------------------- gensim


class Item2Vec(Row):
    """gensim skip-gram over per-user sequences (item-level and typed tokens)."""

    tasks = ALL_TASKS
    home_lists = True

    def __init__(
        self,
        followers: int = 0,
        *,
        dim: int = 64,
        window: int = 5,
        negatives: int = 10,
        epochs: int = 20,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.followers = followers
        self.params = {
            "vector_size": dim,
            "window": window,
            "negative": negatives,
            "epochs": epochs,
            "min_count": 1,
            "sg": 1,
            "hs": 0,
            "workers": 1,
            "seed": seed,
        }
        self.name = f"item2vec + Etsy k={followers} (gensim)" if followers else "item2vec (gensim)"

    def _train(self, data: EvalData, key: Callable[[Event], str]) -> ExactNeighbours:
        from gensim.models import Word2Vec

        sequences = user_sequences(data, key)
        if self.followers:
            sessions = [
                [key(e) for e in session]
                for events in data.train_by_user.values()
                for session in sessions_of(data, events)
            ]
            follows = top_followers(sessions, self.followers)
            sequences = [[t for x in seq for t in (x, *follows.get(x, []))] for seq in sequences]
        model = Word2Vec(sequences, **self.params)
        return ExactNeighbours(model.wv.index_to_key, model.wv.vectors)

    def fit(self, data: EvalData) -> None:
        self.data = data
        self.items = self._train(data, lambda e: e["item_id"])
        self.tokens = self._train(data, lambda e: _typed((e["item_id"], e["type"])))
        self._groups: dict[str, np.ndarray] = {}

    def _group(self, etype: str) -> np.ndarray:
        if etype not in self._groups:
            suffix = "\x1f" + etype
            self._groups[etype] = self.tokens.rows_where(lambda key: str(key).endswith(suffix))
        return self._groups[etype]

    def similar(self, seed: Token, task: Task, k: int) -> Sequence[str]:
        if task.target_type is None:
            return self.items.nearest(seed[0], k)  # type: ignore[return-value]
        found = self.tokens.nearest(_typed(seed), k, self._group(task.target_type))
        return [str(key).split("\x1f")[0] for key in found]

    def score(self, seed: Token | None, task: Task, items: Sequence[str]) -> np.ndarray:
        if seed is None:
            return np.full(len(items), -np.inf)
        if task.target_type is None:
            return self.items.scores(seed[0], items)
        return self.tokens.scores(_typed(seed), [_typed((i, task.target_type)) for i in items])

    def home(self, user_id: str, k: int) -> Sequence[str]:
        seeds = last_clicks(self.data, user_id)
        return rank_union([self.items.nearest(s, k) for s in seeds], k)  # type: ignore[misc]

    def item_vectors(self) -> Mapping[str, np.ndarray]:
        return {key: self.items.unit[n] for key, n in self.items.row.items()}

    def describe(self) -> dict[str, object]:
        return {**self.params, "followers": self.followers, "sequences": "per user"}


# ---------------------------------------------------------------- implicit


class ImplicitMF(Row):
    """implicit's BPR or ALS: user x item, and user x (item, interaction) for typed tasks."""

    tasks = ALL_TASKS
    home_lists = True

    def __init__(
        self, model: str = "bpr", *, factors: int = 64, iterations: int | None = None, seed: int = 0
    ) -> None:
        super().__init__()
        if model not in ("bpr", "als"):
            raise ValueError(f"model must be bpr or als, not {model!r}")
        self.model = model
        self.factors = factors
        self.iterations = iterations or (100 if model == "bpr" else 15)
        self.seed = seed
        self.name = f"{model.upper()} (implicit)"

    def _train(self, data: EvalData, key: Callable[[Event], Hashable]) -> tuple[Any, Any, dict]:
        from implicit.als import AlternatingLeastSquares
        from implicit.bpr import BayesianPersonalizedRanking

        users = {u: n for n, u in enumerate(data.train_by_user)}
        columns: dict[Hashable, int] = {}
        counts: Counter[tuple[int, int]] = Counter()
        for event in data.train:
            column = columns.setdefault(key(event), len(columns))
            counts[(users[event["user_id"]], column)] += 1
        rows, cols = zip(*counts, strict=True) if counts else ((), ())
        values = np.ones(len(counts), np.float32)
        if self.model == "als":  # ALS's confidence: how often, not just whether
            values = np.array(list(counts.values()), np.float32)
        matrix = sp.csr_matrix(
            (values, (rows, cols)), shape=(len(users), len(columns)), dtype=np.float32
        )
        from threadpoolctl import threadpool_limits

        common = {"factors": self.factors, "iterations": self.iterations}
        common |= {"random_state": self.seed, "num_threads": 1}
        # One BLAS thread (implicit warns otherwise, and runs share the cores fairly).
        with threadpool_limits(1, "blas"):
            if self.model == "bpr":
                model = BayesianPersonalizedRanking(**common)
            else:
                model = AlternatingLeastSquares(**common)
            model.fit(matrix, show_progress=False)
        keys = sorted(columns, key=columns.__getitem__)
        return model, matrix, {"users": users, "keys": keys}

    def fit(self, data: EvalData) -> None:
        self.data = data
        model, self.matrix, index = self._train(data, lambda e: e["item_id"])
        self.model_items = model
        self.users = index["users"]
        self.item_keys = index["keys"]
        self.items = ExactNeighbours(index["keys"], _factors(model.item_factors))
        typed, _, typed_index = self._train(data, lambda e: (e["item_id"], e["type"]))
        self.tokens = ExactNeighbours(typed_index["keys"], _factors(typed.item_factors))
        self._groups: dict[str, np.ndarray] = {}

    def similar(self, seed: Token, task: Task, k: int) -> Sequence[str]:
        if task.target_type is None:
            return self.items.nearest(seed[0], k)  # type: ignore[return-value]
        etype = task.target_type
        if etype not in self._groups:
            self._groups[etype] = self.tokens.rows_where(lambda key: key[1] == etype)
        return [key[0] for key in self.tokens.nearest(seed, k, self._groups[etype])]

    def score(self, seed: Token | None, task: Task, items: Sequence[str]) -> np.ndarray:
        if seed is None:
            return np.full(len(items), -np.inf)
        if task.target_type is None:
            return self.items.scores(seed[0], items)
        return self.tokens.scores(seed, [(i, task.target_type) for i in items])

    def home(self, user_id: str, k: int) -> Sequence[str]:
        row = self.users.get(user_id)
        if row is None:
            return []
        ids, _ = self.model_items.recommend(
            row, self.matrix[row], N=k, filter_already_liked_items=False
        )
        return [self.item_keys[i] for i in np.asarray(ids).tolist()]

    def item_vectors(self) -> Mapping[str, np.ndarray]:
        return {key: self.items.unit[n] for key, n in self.items.row.items()}

    def describe(self) -> dict[str, object]:
        return {"model": self.model, "factors": self.factors, "iterations": self.iterations}


def _factors(factors: Any) -> np.ndarray:
    return np.asarray(factors.to_numpy() if hasattr(factors, "to_numpy") else factors)


# ---------------------------------------------------------------- counts


class SessionCooccurrence(Row):
    """Within-session counts of every pair of items (both directions), typed for typed tasks."""

    name = "co-occurrence (within session)"
    tasks = ALL_TASKS
    home_lists = True

    def fit(self, data: EvalData) -> None:
        self.data = data
        self.items: dict[str, Counter[str]] = defaultdict(Counter)
        self.tokens: dict[Token, Counter[Token]] = defaultdict(Counter)
        for events in data.train_by_user.values():
            for session in sessions_of(data, events):
                items = [e["item_id"] for e in session]
                tokens = [(e["item_id"], e["type"]) for e in session]
                for n, item in enumerate(items):
                    for m, other in enumerate(items):
                        if m != n and other != item:
                            self.items[item][other] += 1
                        if m != n and tokens[m] != tokens[n]:
                            self.tokens[tokens[n]][tokens[m]] += 1

    def _counts(self, seed: Token, task: Task) -> Mapping[str, float]:
        if task.target_type is None:
            return self.items.get(seed[0], Counter())
        found: Counter[str] = Counter()
        for (item, etype), n in self.tokens.get(seed, Counter()).items():
            if etype == task.target_type:
                found[item] += n
        return found

    def similar(self, seed: Token, task: Task, k: int) -> Sequence[str]:
        counts = self._counts(seed, task)
        return sorted(counts, key=lambda item: (-counts[item], item))[:k]

    def score(self, seed: Token | None, task: Task, items: Sequence[str]) -> np.ndarray:
        counts = self._counts(seed, task) if seed is not None else {}
        return np.array([float(counts.get(item, 0.0)) for item in items])

    def home(self, user_id: str, k: int) -> Sequence[str]:
        total: Counter[str] = Counter()
        for seed in last_clicks(self.data, user_id):
            total.update(self.items.get(seed, Counter()))
        return sorted(total, key=lambda item: (-total[item], item))[:k]


class Popularity(Row):
    """Training popularity: every event for item-level answers, carts and purchases for typed."""

    name = "popularity"
    tasks = ALL_TASKS
    home_lists = True

    def fit(self, data: EvalData) -> None:
        self.all = Counter(e["item_id"] for e in data.train)
        intent = set(data.protocol.target_types)
        self.intent = Counter(e["item_id"] for e in data.train if e["type"] in intent)
        self.ranked = {
            key: sorted(counts, key=lambda item: (-counts[item], item))
            for key, counts in (("all", self.all), ("intent", self.intent))
        }

    def _which(self, task: Task) -> str:
        return "all" if task.target_type is None else "intent"

    def similar(self, seed: Token, task: Task, k: int) -> Sequence[str]:
        return self.ranked[self._which(task)][:k]

    def cold(self, task: Task, k: int) -> Sequence[str]:
        return self.ranked[self._which(task)][:k]

    def score(self, seed: Token | None, task: Task, items: Sequence[str]) -> np.ndarray:
        counts = self.all if task.target_type is None else self.intent
        return np.array([float(counts.get(item, 0)) for item in items])

    def home(self, user_id: str, k: int) -> Sequence[str]:
        return self.ranked["all"][:k]


#: ``--baselines``: which library rows a run computes (``none`` leaves only references).
FAST_BASELINES: tuple[str, ...] = ("popularity", "cooccurrence", "bpr", "als")
ALL_BASELINES: tuple[str, ...] = (*FAST_BASELINES, "item2vec", "item2vec-etsy")


def baseline_rows(which: str, seed: int = 0) -> list[Row]:
    """The library rows of ``--baselines none|fast|all``.

    Examples
    --------
    >>> [row.name for row in baseline_rows("fast")]
    ['popularity', 'co-occurrence (within session)', 'BPR (implicit)', 'ALS (implicit)']
    """
    names = {"none": (), "fast": FAST_BASELINES, "all": ALL_BASELINES}.get(which)
    if names is None:
        raise ValueError(f"baselines must be none, fast or all, not {which!r}")
    make: dict[str, Callable[[], Row]] = {
        "popularity": Popularity,
        "cooccurrence": SessionCooccurrence,
        "bpr": lambda: ImplicitMF("bpr", seed=seed),
        "als": lambda: ImplicitMF("als", seed=seed),
        "item2vec": lambda: Item2Vec(0, seed=seed),
        "item2vec-etsy": lambda: Item2Vec(3, seed=seed),
    }
    return [make[name]() for name in names]
