"""Matrix factorisation of implicit user x item feedback with BPR or WARP loss.

Whatnot's user -> host model (DESIGN.md, source 1): a latent-factor model gives
user and item vectors, items are ranked for a user by dot product (plus an
item bias). Training data is implicit: each event type carries a weight
(purchase > cart > favorite > click > view); a (user, item) pair's weight is
the sum over its events, and positive pairs are *sampled in proportion to
that weight*, so a purchase counts for more without inflating gradients.

Losses (vectorised in minibatches of pairs, rows scatter-added):

* ``"bpr"``: one uniform negative per positive; maximise
  ``log sigmoid(x_ui - x_uj)``.
* ``"warp"``: draw negatives until one violates the margin
  (``x_uj > x_ui - 1``), at most ``max_negatives`` per positive. With ``N``
  draws the positive's rank is estimated as ``floor((n_items - 1) / N)`` and
  the hinge update is scaled by ``log(rank + 1) / log(n_items)`` (the WARP
  rank weight ``sum_{r<=rank} 1/r`` ≈ log, normalised to at most 1 so one
  learning rate suits both losses): positives ranked low get large updates. A
  positive with no violator in ``max_negatives`` draws gets no update.
  :func:`sample_warp_negatives` does the drawing.

Negatives that are in fact positives of the user are skipped.

Examples
--------
>>> triples = [("u1", "a", 1.0), ("u1", "b", 1.0), ("u2", "c", 1.0), ("u2", "d", 1.0)] * 5
>>> mf = MatrixFactorization(FactorizationParams(factors=4, epochs=30, lr=0.1, seed=0))
>>> mf = mf.fit(triples)
>>> sorted(item for item, _ in mf.recommend("u1", 2))
['a', 'b']
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

Progress = Callable[[dict[str, Any]], None] | None

DEFAULT_TYPE_WEIGHTS: dict[str, float] = {
    "view": 0.5,
    "click": 1.0,
    "favorite": 2.0,
    "cart": 3.0,
    "purchase": 5.0,
}


@dataclass
class FactorizationParams:
    """Hyper-parameters of :class:`MatrixFactorization`.

    Parameters
    ----------
    factors
        Latent dimension.
    loss
        ``"bpr"`` or ``"warp"``.
    epochs
        Passes; one pass samples as many positives as there are (user, item) pairs.
    lr
        Learning rate (constant).
    reg
        L2 regularisation of the factors touched by a step.
    max_negatives
        WARP's cap on negatives drawn per positive.
    margin
        WARP's margin.
    type_weights
        Weight of one event of each type; unknown types weigh 0 (ignored).
    seed
        Seed of every random draw.
    batch_size
        Positive pairs per minibatch.
    damping
        A row repeated ``n`` times in a minibatch moves by its summed update
        divided by ``n ** damping`` (0: plain sum, 1: mean), which keeps
        minibatch SGD stable on popular rows.
    init_scale
        Standard deviation of the initial factors.
    """

    factors: int = 64
    loss: str = "bpr"
    epochs: int = 20
    lr: float = 0.1
    reg: float = 0.001
    max_negatives: int = 50
    margin: float = 1.0
    type_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TYPE_WEIGHTS))
    seed: int = 0
    batch_size: int = 1024
    damping: float = 0.25
    init_scale: float = 0.1


def _scatter_add_rows(
    matrix: np.ndarray, rows: np.ndarray, updates: np.ndarray, damping: float
) -> None:
    """``matrix[rows] += updates``, a row repeated ``n`` times gets its sum / ``n**damping``."""
    unique, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    indptr = np.zeros(len(unique) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    data = np.repeat((counts.astype(np.float64) ** -damping).astype(updates.dtype), counts)
    mean = sp.csr_matrix((data, order, indptr), shape=(len(unique), len(rows)))
    matrix[unique] += mean @ updates


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def sample_warp_negatives(
    rng: np.random.Generator,
    user_vecs: np.ndarray,
    pos_scores: np.ndarray,
    item_factors: np.ndarray,
    item_bias: np.ndarray,
    max_negatives: int,
    margin: float = 1.0,
    is_positive: Callable[[np.ndarray], np.ndarray] | None = None,
    chunk: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw negatives per row until one violates the margin, at most ``max_negatives``.

    Parameters
    ----------
    rng
        Random source.
    user_vecs
        ``(B, f)`` user factors of the batch.
    pos_scores
        ``(B,)`` scores of the positives.
    item_factors, item_bias
        Item parameters.
    max_negatives
        Cap on draws per row.
    margin
        A negative ``j`` violates when ``score_j > pos_score - margin``.
    is_positive
        Maps ``(rows, items)`` flat arrays to a mask of known positives, which
        never count as violators.
    chunk
        Draws scored together per round (rows stop at their first violator).

    Returns
    -------
    tuple of np.ndarray
        ``negatives`` (item per row, ``-1`` if none violated) and ``trials``
        (draws used: index of the first violator + 1, else ``max_negatives``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> items = np.eye(3, dtype=np.float32)
    >>> neg, trials = sample_warp_negatives(
    ...     rng, np.ones((2, 3), np.float32), np.array([5.0, -5.0]), items, np.zeros(3), 4
    ... )
    >>> neg[0], int(trials[0]), int(trials[1])
    (np.int64(-1), 4, 1)
    """
    n_rows, n_items = len(pos_scores), len(item_factors)
    negatives = np.full(n_rows, -1, dtype=np.int64)
    trials = np.full(n_rows, max_negatives, dtype=np.int64)
    active = np.arange(n_rows)
    drawn = 0
    while drawn < max_negatives and len(active):
        width = min(chunk, max_negatives - drawn)
        cand = rng.integers(0, n_items, size=(len(active), width))
        scores = np.einsum("bf,bkf->bk", user_vecs[active], item_factors[cand]) + item_bias[cand]
        violates = scores > (pos_scores[active] - margin)[:, None]
        if is_positive is not None:
            known = is_positive(np.repeat(active, width), cand.ravel()).reshape(cand.shape)
            violates &= ~known
        found = violates.any(axis=1)
        first = violates.argmax(axis=1)
        rows = active[found]
        negatives[rows] = cand[found, first[found]]
        trials[rows] = drawn + first[found] + 1
        active = active[~found]
        drawn += width
    return negatives, trials


class MatrixFactorization:
    """Implicit-feedback matrix factorisation (user and item factors, item bias).

    Parameters
    ----------
    params
        Hyper-parameters.

    Attributes
    ----------
    users, items
        Ids in row order of :attr:`user_factors` / :attr:`item_factors`.
    user_factors, item_factors
        float32 ``(n, factors)`` matrices.
    item_bias
        float32 ``(n_items,)``.
    """

    def __init__(self, params: FactorizationParams | None = None) -> None:
        self.params = params or FactorizationParams()
        self.users: list[str] = []
        self.items: list[str] = []
        self.user_factors = np.zeros((0, self.params.factors), dtype=np.float32)
        self.item_factors = np.zeros((0, self.params.factors), dtype=np.float32)
        self.item_bias = np.zeros(0, dtype=np.float32)
        self._user_index: dict[str, int] = {}
        self._item_index: dict[str, int] = {}
        self._seen: np.ndarray = np.zeros(0, dtype=np.int64)  # sorted user*n_items+item codes
        self.last_trials: np.ndarray = np.zeros(0, dtype=np.int64)  # WARP draws, last batch

    # ----------------------------------------------------------------- data
    def _triples(self, data: Iterable[Any]) -> list[tuple[str, str, float]]:
        weights = self.params.type_weights
        out = []
        for row in data:
            if isinstance(row, dict):
                weight = weights.get(row["type"], 0.0)
                if weight > 0:
                    out.append((row["user_id"], row["item_id"], weight))
            else:
                user, item, weight = row
                if weight > 0:
                    out.append((user, item, float(weight)))
        return out

    def _encode(self, data: Iterable[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        triples = self._triples(data)
        self.users = sorted({u for u, _, _ in triples})
        self.items = sorted({i for _, i, _ in triples})
        self._user_index = {u: n for n, u in enumerate(self.users)}
        self._item_index = {i: n for n, i in enumerate(self.items)}
        u = np.array([self._user_index[t[0]] for t in triples], dtype=np.int64)
        i = np.array([self._item_index[t[1]] for t in triples], dtype=np.int64)
        w = np.array([t[2] for t in triples], dtype=np.float64)
        codes = u * max(1, len(self.items)) + i
        pairs, inverse = np.unique(codes, return_inverse=True)
        summed = np.bincount(inverse, weights=w, minlength=len(pairs))
        self._seen = pairs
        n_items = max(1, len(self.items))
        return pairs // n_items, pairs % n_items, summed

    def _is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        codes = users * len(self.items) + items
        where = np.searchsorted(self._seen, codes)
        where = np.minimum(where, len(self._seen) - 1)
        return self._seen[where] == codes

    # ---------------------------------------------------------------- train
    def fit(
        self, data: Iterable[dict[str, Any]] | Iterable[Sequence[Any]], progress: Progress = None
    ) -> MatrixFactorization:
        """Learn factors from events or ``(user_id, item_id, weight)`` triples.

        Parameters
        ----------
        data
            Event dicts (``user_id``, ``item_id``, ``type``; weighted by
            ``params.type_weights``) or ``(user, item, weight)`` triples.
        progress
            Called after each epoch with ``epoch``, ``epochs``, ``loss``,
            ``elapsed`` and, for WARP, ``mean_trials`` / ``max_trials``.

        Returns
        -------
        MatrixFactorization
            ``self``, fitted.
        """
        p = self.params
        if p.loss not in ("bpr", "warp"):
            raise ValueError(f"loss must be 'bpr' or 'warp', not {p.loss!r}")
        rng = np.random.default_rng(p.seed)
        pair_users, pair_items, pair_weights = self._encode(data)
        n_users, n_items = len(self.users), len(self.items)
        scale = np.float32(p.init_scale)
        self.user_factors = (rng.standard_normal((n_users, p.factors)) * scale).astype(np.float32)
        self.item_factors = (rng.standard_normal((n_items, p.factors)) * scale).astype(np.float32)
        self.item_bias = np.zeros(n_items, dtype=np.float32)
        if len(pair_users) == 0 or n_items < 2:
            return self
        cdf = np.cumsum(pair_weights / pair_weights.sum())
        cdf[-1] = 1.0
        begin = time.perf_counter()
        for epoch in range(p.epochs):
            picks = np.searchsorted(cdf, rng.random(len(pair_users)))
            loss_sum, trial_sum, trial_max = 0.0, 0, 0
            for lo in range(0, len(picks), p.batch_size):
                chosen = picks[lo : lo + p.batch_size]
                users, positives = pair_users[chosen], pair_items[chosen]
                if p.loss == "bpr":
                    loss_sum += self._bpr_step(rng, users, positives)
                else:
                    loss, trials = self._warp_step(rng, users, positives)
                    loss_sum += loss
                    trial_sum += int(trials.sum())
                    trial_max = max(trial_max, int(trials.max()))
            if progress is not None:
                report = {
                    "epoch": epoch + 1,
                    "epochs": p.epochs,
                    "loss": loss_sum / len(picks),
                    "elapsed": time.perf_counter() - begin,
                }
                if p.loss == "warp":
                    report |= {"mean_trials": trial_sum / len(picks), "max_trials": trial_max}
                progress(report)
        return self

    def _update(
        self,
        users: np.ndarray,
        positives: np.ndarray,
        negatives: np.ndarray,
        coeff: np.ndarray,
    ) -> None:
        """Ascend ``coeff * (x_ui - x_uj)`` with L2 decay on the touched rows."""
        p = self.params
        lr, reg = np.float32(p.lr), np.float32(p.reg)
        u = self.user_factors[users]
        vi, vj = self.item_factors[positives], self.item_factors[negatives]
        c = coeff.astype(np.float32)[:, None]
        user_step = lr * (c * (vi - vj) - reg * u)
        pos_step = lr * (c * u - reg * vi)
        neg_step = lr * (-c * u - reg * vj)
        items = np.concatenate([positives, negatives])
        damping = p.damping
        _scatter_add_rows(self.user_factors, users, user_step, damping)
        _scatter_add_rows(self.item_factors, items, np.vstack([pos_step, neg_step]), damping)
        bias_step = lr * np.concatenate([coeff, -coeff]).astype(np.float32)
        _scatter_add_rows(self.item_bias, items, bias_step, damping)

    def _bpr_step(
        self, rng: np.random.Generator, users: np.ndarray, positives: np.ndarray
    ) -> float:
        negatives = rng.integers(0, len(self.items), size=len(users))
        valid = ~self._is_positive(users, negatives)
        users, positives, negatives = users[valid], positives[valid], negatives[valid]
        u = self.user_factors[users]
        diff = np.einsum(
            "bf,bf->b", u, self.item_factors[positives] - self.item_factors[negatives]
        ) + (self.item_bias[positives] - self.item_bias[negatives])
        coeff = _sigmoid(-diff)  # d/dx log sigmoid(x)
        self._update(users, positives, negatives, coeff)
        return float(np.logaddexp(0.0, -diff).sum())

    def _warp_step(
        self, rng: np.random.Generator, users: np.ndarray, positives: np.ndarray
    ) -> tuple[float, np.ndarray]:
        p = self.params
        u = self.user_factors[users]
        pos_scores = np.einsum("bf,bf->b", u, self.item_factors[positives])
        pos_scores = pos_scores + self.item_bias[positives]
        negatives, trials = sample_warp_negatives(
            rng,
            u,
            pos_scores,
            self.item_factors,
            self.item_bias,
            p.max_negatives,
            p.margin,
            lambda rows, items: self._is_positive(users[rows], items),
        )
        self.last_trials = trials
        found = negatives >= 0
        if not found.any():
            return 0.0, trials
        users, positives, negatives = users[found], positives[found], negatives[found]
        rank = np.floor((len(self.items) - 1) / trials[found])
        # Normalised so a first-draw violation weighs 1, as BPR's sigmoid is at most 1.
        weight = (np.log1p(rank) / np.log(len(self.items))).astype(np.float32)
        neg_scores = np.einsum("bf,bf->b", u[found], self.item_factors[negatives])
        hinge = p.margin - pos_scores[found] + neg_scores + self.item_bias[negatives]
        self._update(users, positives, negatives, weight)
        return float((weight * np.maximum(hinge, 0.0)).sum()), trials

    # ---------------------------------------------------------------- query
    def user_vector(self, user_id: str) -> np.ndarray | None:
        """The user's factors, or ``None`` for an unknown user."""
        row = self._user_index.get(user_id)
        return None if row is None else self.user_factors[row]

    def item_vector(self, item_id: str) -> np.ndarray | None:
        """The item's factors, or ``None`` for an unknown item."""
        row = self._item_index.get(item_id)
        return None if row is None else self.item_factors[row]

    @property
    def item_vectors(self) -> np.ndarray:
        """Item factors in :attr:`items` order."""
        return self.item_factors

    def _all_scores(self, user_id: str) -> np.ndarray:
        row = self._user_index.get(user_id)
        if row is None:  # cold user: the bias alone, a popularity-like order
            return self.item_bias.astype(np.float32).copy()
        return self.item_factors @ self.user_factors[row] + self.item_bias

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        """Scores of ``item_ids`` for the user; ``-inf`` for unknown items.

        An unknown user gets the item biases only.
        """
        scores = self._all_scores(user_id)
        rows = np.array([self._item_index.get(i, -1) for i in item_ids], dtype=np.int64)
        out = np.full(len(rows), -np.inf, dtype=np.float32)
        known = rows >= 0
        out[known] = scores[rows[known]]
        return out

    def recommend(
        self, user_id: str, k: int = 10, exclude: Iterable[str] = ()
    ) -> list[tuple[str, float]]:
        """Top ``k`` items for the user by score, skipping ``exclude``."""
        if k <= 0 or not self.items:
            return []
        scores = self._all_scores(user_id).astype(np.float64)
        for item in exclude:
            row = self._item_index.get(item)
            if row is not None:
                scores[row] = -np.inf
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        return [(self.items[i], float(scores[i])) for i in top if np.isfinite(scores[i])]

    # ------------------------------------------------------------------- io
    def save(self, directory: str | Path) -> None:
        """Write factors as ``.npy`` and ids/params as ``model.json`` (no pickle)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "user_factors.npy", self.user_factors, allow_pickle=False)
        np.save(path / "item_factors.npy", self.item_factors, allow_pickle=False)
        np.save(path / "item_bias.npy", self.item_bias, allow_pickle=False)
        np.save(path / "seen.npy", self._seen, allow_pickle=False)
        meta = {"params": asdict(self.params), "users": self.users, "items": self.items}
        (path / "model.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: str | Path) -> MatrixFactorization:
        """Read a model written by :meth:`save`."""
        path = Path(directory)
        meta = json.loads((path / "model.json").read_text())
        model = cls(FactorizationParams(**meta["params"]))
        model.users, model.items = meta["users"], meta["items"]
        model._user_index = {u: n for n, u in enumerate(model.users)}
        model._item_index = {i: n for n, i in enumerate(model.items)}
        model.user_factors = np.load(path / "user_factors.npy", allow_pickle=False)
        model.item_factors = np.load(path / "item_factors.npy", allow_pickle=False)
        model.item_bias = np.load(path / "item_bias.npy", allow_pickle=False)
        model._seen = np.load(path / "seen.npy", allow_pickle=False)
        return model
