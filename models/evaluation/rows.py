"""A report row: one object with one interface, whatever computes it.

Every line of an evaluation (a served component, a library baseline, a
trivial reference) is a :class:`Row`: :meth:`Row.fit` trains it on the
training events of an :class:`~models.evaluation.split.EvalData`, then the
runner asks it, per item-level task, for the answer to each seed token
(:meth:`Row.similar`), its answer without a seed (:meth:`Row.cold`) and
scores for AUC (:meth:`Row.score`); per test user, for a home list
(:meth:`Row.home`); and for item vectors (:meth:`Row.item_vectors`, Etsy's
category cosine). A row says what it answers in :attr:`Row.tasks` and
:attr:`Row.home_lists`; everything else keeps the defaults (no answer).

The references are here; the library baselines are in
:mod:`models.evaluation.baselines` and the served components in
:mod:`models.evaluation.served`.

Examples
--------
>>> from models.evaluation.split import EvalData
>>> evs = [{"user_id": "u", "item_id": i, "type": "click", "ts": t}
...        for i, t in (("a", 0.0), ("b", 10.0), ("a", 20.0), ("c", 90000.0))]
>>> data = EvalData.split(evs, test_hours=24)
>>> row = RecentlyViewed()
>>> row.fit(data)
>>> list(row.home("u", 5))
['a', 'b']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from models.evaluation.metrics import Task
from models.evaluation.split import EvalData
from models.sessions import Token

#: The groups a row belongs to, in report order.
GROUPS: tuple[str, ...] = ("served", "library", "reference")


class Row:
    """One line of the report. Subclasses override what they answer.

    Attributes
    ----------
    name
        How the report names the row.
    group
        ``"served"`` (the engine's own components, computed by their own code),
        ``"library"`` (a well-known library under the same protocol) or
        ``"reference"`` (a trivial list to hold one's own against).
    tasks
        Item-level task names it answers (see :data:`~models.evaluation.metrics.TASKS`).
    home_lists
        Whether it makes one list per user (the home protocol).
    train_seconds
        Set by the runner: how long :meth:`fit` took.
    """

    name: str = "row"
    group: str = "library"
    tasks: ClassVar[frozenset[str]] = frozenset()
    home_lists: ClassVar[bool] = False
    #: Depth of the answer list that ranks items for AUC when a row has no scores.
    score_depth: ClassVar[int] = 1000

    def __init__(self) -> None:
        self.train_seconds: float | None = None

    def fit(self, data: EvalData) -> None:
        """Train on ``data.train`` (and remember what the answers need)."""

    def similar(self, seed: Token, task: Task, k: int) -> Sequence[str]:
        """The top ``k`` answers to one seed token on ``task``, best first."""
        return []

    def cold(self, task: Task, k: int) -> Sequence[str]:
        """The answer for a target without any seed (seed-free rows only)."""
        return []

    def score(self, seed: Token | None, task: Task, items: Sequence[str]) -> np.ndarray:
        """Scores of ``items`` for a seed (``None``: no seed), higher is closer; for AUC.

        The default ranks by position in the answer to ``score_depth`` items
        (those not in it tie, lowest): right for rows that only give lists.
        """
        answer = self.similar(seed, task, self.score_depth) if seed else self.cold(task, 10**6)
        position = {item: n for n, item in enumerate(answer)}
        return np.array([-float(position.get(item, np.inf)) for item in items])

    def home(self, user_id: str, k: int) -> Sequence[str]:
        """The user's home list of ``k`` items at the cut, best first."""
        return []

    def item_vectors(self) -> Mapping[str, np.ndarray] | None:
        """One vector per item, for the category cosine (``None``: the row has none)."""
        return None

    def describe(self) -> dict[str, object]:
        """Parameters worth printing in the JSON report."""
        return {}


class SeedEcho(Row):
    """The trivial item-level answer: the seed item itself (what novel hit rates leave out)."""

    name = "seed echo (trivial)"
    group = "reference"
    tasks = frozenset({"item-to-item", "click-to-cart", "cart-to-cart"})

    def similar(self, seed: Token, task: Task, k: int) -> Sequence[str]:
        return [seed[0]]


class RecentlyViewed(Row):
    """The user's own most recent distinct items before the cut (any interaction)."""

    name = "recently viewed (trivial)"
    group = "reference"
    home_lists = True

    def fit(self, data: EvalData) -> None:
        self.recent: dict[str, list[str]] = {
            user: list(dict.fromkeys(e["item_id"] for e in reversed(events)))
            for user, events in data.train_by_user.items()
        }

    def home(self, user_id: str, k: int) -> Sequence[str]:
        return self.recent.get(user_id, [])[:k]
