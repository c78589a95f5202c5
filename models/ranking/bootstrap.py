"""Offline bootstrap: labelled examples from a log without impressions.

The real shop logs have no record of what was shown, so the heads start from
candidate lists generated at past cuts, as the worker would have served them
then, labelled by what each user did in the next window (Pinterest's first
model is trained the same way before any logged impression exists):

1. fold the streaming state (:class:`~models.stream_state.StreamState`) up to
   a cut, in time order, incrementally from one cut to the next;
2. for each user active in the window after the cut, run the surface's first
   pass (:func:`~models.surfaces.build_context`, :func:`~models.surfaces.generate`)
   with a :class:`FeatureRecorder` as the second pass: it keeps the first-pass
   order and records :func:`~models.ranking.features.candidate_features`, the
   very rows a served list is ranked by;
3. label each candidate per head by the user's events on that item in
   ``(cut, cut + window]`` (:data:`LABEL_TYPES`: a page view is a click).

:func:`train_ranker` learns a :class:`~models.ranking.ranker.LearnedRanker`
from them (its file is what a worker starts from).

Examples
--------
>>> evs = [{"event_id": str(i), "user_id": "u", "item_id": it, "type": "view", "ts": float(t),
...         "item": {"category": "c"}} for i, (it, t) in enumerate([("a", 0), ("b", 10),
...         ("a", 5000), ("b", 9000)])]
>>> found = bootstrap_examples(evs, model=None, cuts=[100.0], window_seconds=10000.0)
>>> sorted(zip(found.items, found.y[:, 0].tolist()))
[('a', 1), ('b', 1)]
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.candidates.types import Candidate
from models.ranking.features import FEATURE_NAMES, candidate_features
from models.ranking.ranker import LearnedRanker
from models.ranking.utility import HEADS
from models.stream_state import StreamState
from models.surfaces import Surface, build_context, generate, load_surfaces
from models.user_state import StateConfig

#: Event types that set each head's label.
LABEL_TYPES: dict[str, tuple[str, ...]] = {
    "click": ("view", "click"),
    "favorite": ("favorite",),
    "cart": ("cart",),
    "purchase": ("purchase",),
}


class FeatureRecorder:
    """A second pass that keeps the first-pass order and records the feature rows."""

    def __init__(self) -> None:
        self.x: np.ndarray = np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
        self.items: list[str] = []

    def rank(
        self, user_id: str, candidates: Sequence[Candidate], context: Any = None
    ) -> list[Candidate]:
        """Record the candidates' feature rows; return them in the first-pass order."""
        self.x = candidate_features(candidates, context)
        self.items = [c.item_id for c in candidates]
        return list(candidates)


@dataclass
class Examples:
    """Labelled candidate rows: features, labels per head, and where each row came from."""

    x: np.ndarray
    y: np.ndarray
    ids: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    #: One number per list (cut, user): rows of a list share it.
    lists: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: The row's position in its list's first-pass order.
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: The cut the row's list was served at.
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, rows: np.ndarray) -> Examples:
        """The rows where ``rows`` (a boolean mask or indices) says."""
        index = np.arange(len(self))[rows]
        return Examples(
            self.x[index],
            self.y[index],
            [self.ids[i] for i in index],
            [self.users[i] for i in index],
            [self.items[i] for i in index],
            self.lists[index],
            self.positions[index],
            self.times[index],
        )


def _labels(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    by_type = {t: h for h, types in LABEL_TYPES.items() for t in types}
    column = {h: i for i, h in enumerate(HEADS)}
    out: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for e in events:
        head = by_type.get(e["type"])
        if head is None:
            continue
        row = out[e["user_id"]].get(e["item_id"])
        if row is None:
            row = out[e["user_id"]][e["item_id"]] = np.zeros(len(HEADS), dtype=np.int8)
        row[column[head]] = 1
    return out


def bootstrap_examples(
    events: Sequence[Mapping[str, Any]],
    model: Any,
    cuts: Sequence[float],
    window_seconds: float = 86400.0,
    *,
    surface: Surface | None = None,
    candidates: int = 100,
    per_source: int = 50,
    max_users: int | None = 2000,
    state_config: StateConfig | None = None,
    seed: int = 0,
    users_of: Callable[[dict[str, Any], StreamState], Sequence[str]] | None = None,
) -> Examples:
    """Candidate lists at each cut, labelled by the next window (see the module docstring).

    Parameters
    ----------
    events
        Canonical events (with ``event_id``), any order.
    model
        The model the worker would have served at the cuts (trained on events
        before the first cut), or ``None``.
    cuts
        Times to serve at.
    window_seconds
        How long after a cut engagement counts.
    surface
        The recipe (default ``home``).
    candidates
        First-pass candidates kept per list.
    per_source
        Candidates per source (the worker's ``recs_per_source``).
    max_users
        Users per cut at most (a seeded sample), ``None`` for all.
    state_config
        The streaming state's configuration.
    seed
        Seed of the user sample and of Thompson sampling.
    users_of
        ``(labels per user, state at the cut)`` -> the users to serve at a cut
        (default: the users with a label in the window and some state).
    """
    surface = surface or load_surfaces()["home"]
    ordered = sorted(events, key=lambda e: e["ts"])
    state = StreamState(state_config or StateConfig())
    rng = random.Random(seed)
    rows: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    out = Examples(np.zeros((0, len(FEATURE_NAMES))), np.zeros((0, len(HEADS))))
    lists: list[int] = []
    positions: list[int] = []
    times: list[float] = []
    start = 0
    for cut in sorted(cuts):
        end = start
        while end < len(ordered) and ordered[end]["ts"] < cut:
            end += 1
        state.apply(ordered[start:end])
        start = end
        window = []
        for e in ordered[end:]:
            if e["ts"] > cut + window_seconds:
                break
            window.append(e)
        labelled = _labels(window)
        if users_of is not None:
            users = list(users_of(labelled, state))
        else:
            users = [u for u in labelled if state.user(u) is not None]
        if max_users is not None and len(users) > max_users:
            users = rng.sample(users, max_users)
        for user_id in users:
            user = state.user(user_id)
            recorder = FeatureRecorder()
            ctx = build_context(
                user_id,
                now=cut,
                trajectory=user.trajectory if user is not None else None,
                bandit=user.bandit if user is not None else None,
                neighbours=state.neighbours,
                popularity=state.popularity,
                catalogue=state.catalogue,
                model=model,
                k=candidates,
                per_source=per_source,
                seed=seed,
                ranker=recorder,
            )
            generate(surface, ctx)
            if not recorder.items:
                continue
            zero = np.zeros(len(HEADS), dtype=np.int8)
            mine = labelled.get(user_id, {})
            rows.append(recorder.x)
            labels.append(np.stack([mine.get(item, zero) for item in recorder.items]))
            lists.extend([len(rows) - 1] * len(recorder.items))
            positions.extend(range(len(recorder.items)))
            times.extend([cut] * len(recorder.items))
            out.ids.extend(f"{cut:.0f}:{user_id}:{item}" for item in recorder.items)
            out.users.extend([user_id] * len(recorder.items))
            out.items.extend(recorder.items)
    if rows:
        out.x = np.concatenate(rows)
        out.y = np.concatenate(labels)
    out.lists = np.asarray(lists, dtype=np.int64)
    out.positions = np.asarray(positions, dtype=np.int64)
    out.times = np.asarray(times, dtype=np.float64)
    return out


def train_ranker(
    examples: Examples,
    *,
    alpha: Mapping[str, float] | None = None,
    method: str = "batch",
    epochs: int = 2,
    batch: int = 5000,
    min_examples: int | None = None,
    version: str = "bootstrap",
    seed: int = 0,
) -> LearnedRanker:
    """A ranker learned from ``examples``; it carries on learning online from there.

    ``method``: ``"batch"`` fits each head at once with scikit-learn's
    ``LogisticRegression`` on the standardised rows (the same negatives kept
    as online), which reached a lower log loss than river's single pass on the
    few positives of carts and purchases (benchmarks/ranker.py); ``"online"``
    feeds the river learner ``epochs`` shuffled passes, in batches.
    ``min_examples`` defaults to 1: a bootstrapped ranker starts ready.
    """
    ranker = LearnedRanker(
        alpha=alpha, min_examples=1 if min_examples is None else min_examples, version=version
    )
    if method == "batch":
        ranker.learner = _batch_fit(examples, ranker.learner.alpha)
        ranker.weights = ranker.learner.export()
        return ranker
    if method != "online":
        raise ValueError(f"method: 'batch' or 'online', got {method!r}")
    order_rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = order_rng.permutation(len(examples))
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            ranker.learn(
                examples.x[rows],
                examples.y[rows],
                [f"{examples.ids[i]}#{epoch}" for i in rows],
            )
    return ranker


def _batch_fit(examples: Examples, alpha: np.ndarray) -> Any:
    """Heads fitted at once (scikit-learn), as an online learner that carries on from them."""
    from sklearn.linear_model import LogisticRegression

    from models.ranking.calibration import kept_negatives
    from models.ranking.heads import HeadWeights, OnlineHeads

    x = np.asarray(examples.x, dtype=np.float64)
    mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    std = x.std(axis=0) if len(x) else np.zeros(x.shape[1])
    scale = np.divide(1.0, std, out=np.zeros_like(std), where=std > 0)
    z = (x - mean) * scale
    keep = kept_negatives(examples.ids, HEADS, alpha)
    coef = np.zeros((len(HEADS), x.shape[1]))
    intercept = np.zeros(len(HEADS))
    for j in range(len(HEADS)):
        y = examples.y[:, j] > 0
        rows = y | keep[:, j]
        if y[rows].any() and not y[rows].all():
            model = LogisticRegression(C=1.0, max_iter=1000).fit(z[rows], y[rows])
            coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
        elif rows.any():  # one class only: its log-odds, no slope
            rate = float(np.clip(y[rows].mean(), 1e-4, 1 - 1e-4))
            intercept[j] = np.log(rate / (1 - rate))
    weights = HeadWeights(FEATURE_NAMES, HEADS, mean, scale, coef, intercept, alpha)
    learned = (examples.y > 0) | keep
    return OnlineHeads.from_weights(weights, len(examples), learned.sum(axis=0).tolist())


@dataclass
class Bootstrapped:
    """A ranker bootstrapped from a log, with what it was learned from and checked on."""

    ranker: LearnedRanker
    train: Examples
    held_out: Examples
    cuts: list[float]
    model_seconds: float = 0.0
    examples_seconds: float = 0.0

    def held_out_quality(self) -> dict[str, Any]:
        """Brier and reliability per head on the held-out (last) cut's lists."""
        from models.ranking.calibration import Reliability

        found = Reliability(HEADS)
        if len(self.held_out):
            found.add(self.ranker.weights.probabilities(self.held_out.x), self.held_out.y)
        return found.summary()


def bootstrap_ranker(
    events: Sequence[Mapping[str, Any]],
    end: float,
    *,
    window_seconds: float = 86400.0,
    cuts: int = 4,
    params: Any = None,
    surface: Surface | None = None,
    alpha: Mapping[str, float] | None = None,
    seed: int = 0,
    max_users: int | None = 2000,
) -> Bootstrapped:
    """Bootstrap a ranker from the events before ``end`` (the whole offline recipe).

    The cuts are ``end - i * window_seconds`` for ``i = cuts .. 1``; the model
    the lists are built with is trained (as ``train`` publishes it) on the
    events before the first cut, so no feature has seen a label. The last
    cut's lists are held out to measure calibration; the others train.

    Raises
    ------
    ValueError
        Fewer than two cuts, or nothing before the first cut to train on.
    """
    import time

    from models.evaluation.served import publish_and_load
    from models.training import TrainingParams

    if cuts < 2:
        raise ValueError(f"cuts: need at least 2 (one to hold out), got {cuts}")
    times = [end - i * window_seconds for i in range(cuts, 0, -1)]
    before = [e for e in events if e["ts"] < times[0]]
    if not before:
        raise ValueError(f"no events before the first bootstrap cut ({times[0]:.0f})")
    started = time.perf_counter()
    model = publish_and_load(before, params or TrainingParams(seed=seed))
    model_seconds = time.perf_counter() - started
    started = time.perf_counter()
    found = bootstrap_examples(
        [e for e in events if e["ts"] < end],
        model,
        times,
        window_seconds,
        surface=surface,
        max_users=max_users,
        seed=seed,
    )
    examples_seconds = time.perf_counter() - started
    held = found.times >= times[-1]
    train, held_out = found.subset(~held), found.subset(held)
    ranker = train_ranker(train, alpha=alpha, seed=seed)
    return Bootstrapped(ranker, train, held_out, times, model_seconds, examples_seconds)
