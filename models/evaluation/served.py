"""The served rows: each computed by the component's own code, on the state the worker keeps.

:class:`ServedSystem` is what a deployment would hold at the cut, built the
way the deployment builds it:

* the model version exactly as ``tastestream train`` publishes it
  (:func:`models.training.train_version`, written by
  :func:`models.model_version.write_version` and read back by
  :func:`models.model_version.load_version`, HNSW indexes included);
* the streaming state folded over the training events by the functions the
  worker calls (:func:`fold_state`, a :class:`~models.stream_state.StreamState`:
  trajectories, bandits, the co-occurrence sketches with their decay and
  capacity, popularity, the catalogue), read at the cut.

Its rows: ``similar`` (:func:`models.candidates.similar.similar_items`, the
``/items/{id}/similar`` answer with its fallbacks), its parts alone (the
model's index, the co-occurrence sketch, trending), and ``home``
(:func:`models.surfaces.generate` on the context of
:func:`models.surfaces.build_context`, as the worker builds it).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from models.candidates.similar import similar_items
from models.evaluation.metrics import Task
from models.evaluation.rows import Row
from models.evaluation.split import EvalData, Event
from models.model_version import LoadedModel, load_version, write_version
from models.sessions import Token
from models.stream_state import StreamState
from models.surfaces import Surface, build_context, generate, load_surfaces
from models.training import TrainingParams, train_version
from models.user_state import StateConfig

#: Candidates per source: the worker's ``recs_per_source``.
DEFAULT_PER_SOURCE = 50

ITEM_TASKS = frozenset({"item-to-item", "click-to-cart", "cart-to-cart"})


def fold_state(events: Iterable[Event], config: StateConfig | None = None) -> StreamState:
    """The worker's state after canonical events (with ``event_id``), folded in the given order.

    :class:`models.stream_state.StreamState` folds with the functions the
    worker calls per message (users, co-occurrence tokens, catalogue,
    popularity), so what it serves here is what a worker would serve.
    """
    state = StreamState(config or StateConfig())
    state.apply(events)
    return state


def publish_and_load(events: Sequence[Event], params: TrainingParams) -> LoadedModel:
    """Train a version, write it as ``train`` publishes it, and load it as a worker does."""
    trained = train_version(events, params)
    with tempfile.TemporaryDirectory(prefix="tastestream-eval-") as root:
        info = write_version(root, trained, {"source": "evaluation"})
        return load_version(info.path, verify=True, expected_checksum=info.checksum)


class ServedSystem:
    """A deployment's model and state at the cut, shared by the served rows (built once)."""

    def __init__(
        self,
        params: TrainingParams | None = None,
        state: StateConfig | None = None,
        surfaces: Mapping[str, Surface] | None = None,
        seed: int = 0,
        per_source: int = DEFAULT_PER_SOURCE,
    ) -> None:
        self.params = params or TrainingParams(seed=seed)
        self.state_config = state or StateConfig()
        self.surfaces = surfaces or load_surfaces()
        self.seed = seed
        self.per_source = per_source
        self.data: EvalData | None = None
        self.model: LoadedModel | None = None
        self.state: StreamState | None = None
        self.train_seconds = 0.0
        self.fold_seconds = 0.0

    @classmethod
    def from_parts(
        cls, model: LoadedModel | None, state: StreamState, seed: int = 0
    ) -> ServedSystem:
        """A system around a model and a state already built (e.g. what a worker loaded)."""
        system = cls(state=state.config, seed=seed)
        system.model, system.state = model, state
        return system

    def fit(self, data: EvalData) -> None:
        if self.data is data:
            return
        self.data = data
        started = time.perf_counter()
        self.model = publish_and_load(data.raw_train, self.params)
        self.train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        self.state = fold_state(data.raw_train, self.state_config)
        self.fold_seconds = time.perf_counter() - started

    def similar(
        self,
        seed: Token,
        task: Task,
        k: int,
        *,
        model: bool = True,
        cooccurrence: bool = True,
        fallbacks: bool = True,
        **options: Any,
    ) -> list[str]:
        """``similar_items`` for a seed token, with chosen parts of the chain switched on."""
        assert self.state is not None and self.data is not None, "fit first"
        catalogue = self.state.catalogue
        answer = similar_items(
            seed[0],
            seed[1],
            task.target_type,
            k=k,
            now=self.data.cut,
            model=self.model if model else None,
            neighbours=self.state.neighbours if cooccurrence else None,
            popularity=self.state.popularity if fallbacks else None,
            category_of=catalogue.category if fallbacks else None,
            seller_of=catalogue.seller if fallbacks else None,
            seller_items=catalogue.items_of_seller if fallbacks else None,
            **options,
        )
        return [c.item_id for c in answer.items]

    def trending(self, k: int) -> list[str]:
        assert self.state is not None and self.data is not None, "fit first"
        return [item for item, _ in self.state.popularity.top(k, self.data.cut)]

    def home(
        self, user_id: str, k: int, surface: str = "home", now: float | None = None
    ) -> list[str]:
        """The user's list as the worker builds it at ``now`` (default: the cut; fixed seed)."""
        return [c.item_id for c in self.recommend(user_id, k, surface, now)]

    def recommend(
        self,
        user_id: str,
        k: int,
        surface: str = "home",
        now: float | None = None,
        ranker: Any = None,
    ) -> list[Any]:
        """The surface's candidates for the user, built as the worker builds them.

        ``ranker``: the second pass (default: the first-pass order).
        """
        assert self.state is not None, "fit first"
        if now is None:
            assert self.data is not None, "fit first, or give now"
            now = self.data.cut
        user = self.state.user(user_id)
        ctx = build_context(
            user_id,
            now=now,
            trajectory=user.trajectory if user is not None else None,
            bandit=user.bandit if user is not None else None,
            neighbours=self.state.neighbours,
            popularity=self.state.popularity,
            catalogue=self.state.catalogue,
            model=self.model,
            k=k,
            per_source=self.per_source,
            seed=self.seed,
            ranker=ranker,
        )
        return generate(self.surfaces[surface], ctx)

    def describe(self) -> dict[str, Any]:
        return {
            "training": asdict(self.params),
            "state": asdict(self.state_config),
            "per_source": self.per_source,
            "model_seconds": round(self.train_seconds, 2),
            "fold_seconds": round(self.fold_seconds, 2),
        }


class _ServedRow(Row):
    group = "served"

    def __init__(self, system: ServedSystem) -> None:
        super().__init__()
        self.system = system

    def fit(self, data: EvalData) -> None:
        self.system.fit(data)

    def describe(self) -> dict[str, object]:
        return self.system.describe()


class ServedSimilar(_ServedRow):
    """``/items/{id}/similar``: model, then co-occurrence, category/seller, trending."""

    name = "similar (served: model + fallbacks)"
    tasks = ITEM_TASKS

    def similar(self, seed: Token, task: Task, k: int) -> Sequence[str]:
        return self.system.similar(seed, task, k)

    def cold(self, task: Task, k: int) -> Sequence[str]:
        # With no item to ask about, what the page shows is what is trending.
        return self.system.trending(k)

    def item_vectors(self) -> Mapping[str, np.ndarray] | None:
        model = self.system.model
        if model is None:
            return None
        items, vectors = model.embedding.item_vectors()
        return dict(zip(items, vectors, strict=True))


class ServedModelIndex(_ServedRow):
    """The published model's HNSW index alone (no fallbacks)."""

    name = "model index (served)"
    tasks = ITEM_TASKS

    def similar(self, seed: Token, task: Task, k: int) -> Sequence[str]:
        return self.system.similar(seed, task, k, cooccurrence=False, fallbacks=False)


class ServedCooccurrence(_ServedRow):
    """The streaming co-occurrence sketches alone (``TokenNeighbours``, decayed, bounded)."""

    name = "co-occurrence sketch (served)"
    tasks = ITEM_TASKS

    def similar(self, seed: Token, task: Task, k: int) -> Sequence[str]:
        return self.system.similar(seed, task, k, model=False, fallbacks=False)


class ServedTrending(_ServedRow):
    """The worker's trending list (``Popularity``, decayed, type-weighted)."""

    name = "trending (served)"
    tasks = ITEM_TASKS
    home_lists = True

    def similar(self, seed: Token, task: Task, k: int) -> Sequence[str]:
        return self.system.trending(k)

    def cold(self, task: Task, k: int) -> Sequence[str]:
        return self.system.trending(k)

    def home(self, user_id: str, k: int) -> Sequence[str]:
        return self.system.trending(k)


class ServedHome(_ServedRow):
    """The ``home`` surface: every source, merge, filters, as the worker builds it."""

    name = "home (served)"
    home_lists = True

    def home(self, user_id: str, k: int) -> Sequence[str]:
        return self.system.home(user_id, k)


class RankedHome(_ServedRow):
    """``home`` with the learned second pass, bootstrapped from the training log.

    :func:`models.ranking.bootstrap.bootstrap_ranker` learns the heads from
    home candidate lists at past cuts of the training events (one test window
    apart), labelled by the next window; the lists at the evaluation's cut are
    then ranked by utility (``weights``) exactly as the worker ranks them.
    :meth:`describe` carries the held-out Brier score and reliability per head.
    """

    name = "home (ranked: learned second pass)"
    home_lists = True

    def __init__(
        self,
        system: ServedSystem,
        weights: Mapping[str, float] | None = None,
        cuts: int = 4,
    ) -> None:
        super().__init__(system)
        from models.ranking.utility import DEFAULT_WEIGHTS

        self.weights = dict(weights or DEFAULT_WEIGHTS)
        self.cuts = cuts
        self.bootstrapped: Any = None
        self.window_seconds = 86400.0

    def fit(self, data: EvalData) -> None:
        from models.ranking.bootstrap import bootstrap_ranker

        self.system.fit(data)
        self.window_seconds = (data.test[-1]["ts"] - data.cut) if data.test else 86400.0
        self.window_seconds = max(self.window_seconds, 3600.0)
        self.bootstrapped = bootstrap_ranker(
            data.raw_train,
            data.cut,
            window_seconds=self.window_seconds,
            cuts=self.cuts,
            params=self.system.params,
            surface=self.system.surfaces["home"],
            seed=self.system.seed,
        )

    def home(self, user_id: str, k: int) -> Sequence[str]:
        ranker = self.bootstrapped.ranker.for_request(self.weights, "evaluation")
        return [c.item_id for c in self.system.recommend(user_id, k, ranker=ranker)]

    def describe(self) -> dict[str, object]:
        b = self.bootstrapped
        quality = b.held_out_quality() if b is not None else {}
        return {
            **self.system.describe(),
            "weights": self.weights,
            "bootstrap_cuts": self.cuts,
            "bootstrap_examples": len(b.train) if b is not None else 0,
            "held_out_examples": len(b.held_out) if b is not None else 0,
            "ranker_brier": {h: q["brier"] for h, q in quality.items()},
            "ranker_reliability": {h: q["table"] for h, q in quality.items()},
        }


def served_rows(system: ServedSystem, ranked: bool = True) -> list[Row]:
    """Every served row over one shared system, in report order."""
    rows: list[Row] = [
        ServedSimilar(system),
        ServedModelIndex(system),
        ServedCooccurrence(system),
        ServedTrending(system),
        ServedHome(system),
    ]
    if ranked:
        rows.append(RankedHome(system))
    return rows
