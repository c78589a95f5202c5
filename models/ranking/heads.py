"""One model, a head per engagement type over shared features: learned online, served in batch.

:class:`OnlineHeads` learns with river, the project's online-learning library:
one :class:`river.preprocessing.StandardScaler` shared by the heads and one
:class:`river.linear_model.LogisticRegression` per head, fed mini-batches
(``learn_one`` per example, on rows standardised in one vectorised step:
``learn_many`` is faster but takes one gradient step per mini-batch and
ended far from the batch fit's log loss; benchmarks/ranker.py measures both
against scikit-learn's batch fit on the same examples). Each head learns
from every positive and the negatives kept at its rate ``alpha``
(see :mod:`~models.ranking.calibration`).

Serving never calls river: :meth:`OnlineHeads.export` copies the state into
:class:`HeadWeights`, numpy arrays that score a whole candidate list in one
matrix product (:meth:`HeadWeights.probabilities`), and a worker swaps the
exported weights in atomically after each learned batch.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(400, 3)).astype(np.float32)
>>> y = np.stack([(x[:, 0] > 0), (x[:, 1] > 0)], axis=1).astype(np.int8)
>>> heads = OnlineHeads(("a", "b", "c"), ("click", "cart"))
>>> for _ in range(20):
...     heads.learn(x, y)
>>> p = heads.export().probabilities(np.array([[3.0, -3.0, 0.0]], dtype=np.float32))
>>> bool(p[0, 0] > 0.9), bool(p[0, 1] < 0.1)
(True, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.ranking.calibration import calibrate


class HeadsError(ValueError):
    """Weights that cannot serve: wrong shapes, names or values (the message says which)."""


@dataclass(frozen=True)
class HeadWeights:
    """What serving needs, as numpy arrays (immutable once exported).

    Parameters
    ----------
    features
        Feature names, in column order.
    heads
        Head names, in column order.
    mean, scale
        Standardisation: ``(x - mean) * scale`` (``scale`` is 1/std, 0 for a constant).
    coef, intercept
        Per head, the logistic regression on standardised features: ``(heads, features)``
        and ``(heads,)``.
    alpha
        Per head, the share of negatives it learned from.
    """

    features: tuple[str, ...]
    heads: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    alpha: np.ndarray

    def downsampled(self, x: np.ndarray) -> np.ndarray:
        """``q``: each head's probability in its downsampled data, ``(n, heads)``."""
        z = ((x - self.mean) * self.scale) @ self.coef.T + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """``p``: calibrated probabilities per head for feature rows ``x``, ``(n, heads)``."""
        return calibrate(self.downsampled(x), self.alpha)

    def validate(self, features: Sequence[str] | None = None) -> None:
        """Raise :class:`HeadsError` unless these weights can serve ``features``.

        >>> w = HeadWeights(("a",), ("click",), np.zeros(1), np.ones(1), np.zeros((1, 1)),
        ...                 np.array([np.nan]), np.ones(1))
        >>> w.validate(("a",))
        Traceback (most recent call last):
        ...
        models.ranking.heads.HeadsError: intercept: not finite
        """
        d, h = len(self.features), len(self.heads)
        if features is not None and tuple(features) != self.features:
            missing = sorted(set(features) ^ set(self.features))
            raise HeadsError(
                f"features: the ranker was trained on other features (differ: "
                f"{', '.join(missing[:5]) or 'order'})"
            )
        shapes = {
            "mean": (d,),
            "scale": (d,),
            "coef": (h, d),
            "intercept": (h,),
            "alpha": (h,),
        }
        for name, shape in shapes.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.shape != shape:
                got = getattr(value, "shape", type(value).__name__)
                raise HeadsError(f"{name}: expected shape {shape}, got {got}")
            if not np.isfinite(value).all():
                raise HeadsError(f"{name}: not finite")
        if not ((self.alpha > 0.0) & (self.alpha <= 1.0)).all():
            raise HeadsError(f"alpha: each must be in (0, 1], got {self.alpha.tolist()}")

    def arrays(self) -> dict[str, np.ndarray]:
        """The numeric state, for a file (names travel beside it)."""
        return {
            "mean": self.mean,
            "scale": self.scale,
            "coef": self.coef,
            "intercept": self.intercept,
            "alpha": self.alpha,
        }

    @classmethod
    def from_arrays(
        cls, features: Sequence[str], heads: Sequence[str], arrays: Mapping[str, Any]
    ) -> HeadWeights:
        """Weights from :meth:`arrays` and the names (not validated: call :meth:`validate`)."""
        missing = [k for k in ("mean", "scale", "coef", "intercept", "alpha") if k not in arrays]
        if missing:
            raise HeadsError(f"{missing[0]}: missing")
        return cls(
            tuple(features),
            tuple(heads),
            *(
                np.asarray(arrays[k], dtype=np.float64)
                for k in ("mean", "scale", "coef", "intercept", "alpha")
            ),
        )


class OnlineHeads:
    """The learner: a shared river scaler and a river logistic regression per head.

    Parameters
    ----------
    features
        Feature names (the columns of every ``x``).
    heads
        Head names (the columns of every ``y``).
    alpha
        Head -> share of negatives learned from (default 1: all).
    learning_rate
        Step of each head's SGD.
    l2
        L2 penalty of each head.
    """

    def __init__(
        self,
        features: Sequence[str],
        heads: Sequence[str],
        alpha: Mapping[str, float] | None = None,
        learning_rate: float = 0.01,
        l2: float = 1e-5,
    ) -> None:
        from river import linear_model, optim, preprocessing

        self.features = tuple(features)
        self.heads = tuple(heads)
        self.alpha = np.array([float((alpha or {}).get(h, 1.0)) for h in self.heads])
        self.learning_rate = learning_rate
        self.l2 = l2
        self.scaler = preprocessing.StandardScaler()
        self.models = {
            h: linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), l2=l2)
            for h in self.heads
        }
        #: Examples learned from, and per head the rows given to it (positives + kept negatives).
        self.examples = 0
        self.learned = np.zeros(len(self.heads), dtype=np.int64)

    def learn(self, x: np.ndarray, y: np.ndarray, keep: np.ndarray | None = None) -> None:
        """Learn one mini-batch.

        Parameters
        ----------
        x
            Feature rows, ``(n, features)``.
        y
            Labels 0/1, ``(n, heads)``.
        keep
            Which negatives each head learns from, ``(n, heads)`` booleans
            (:func:`~models.ranking.calibration.kept_negatives`); default all.
        """
        import pandas as pd

        if len(x) == 0:
            return
        x = np.asarray(x, dtype=np.float64)
        self.scaler.learn_many(pd.DataFrame(x, columns=list(self.features)))
        weights = self.export()
        scaled = ((x - weights.mean) * weights.scale).tolist()
        y = np.asarray(y) > 0
        use = y if keep is None else y | keep
        if keep is None:
            use = np.ones_like(y)
        names = self.features
        models = [self.models[h] for h in self.heads]
        labels = y.tolist()
        for row, heads, label in zip(scaled, use.tolist(), labels, strict=True):
            if not any(heads):
                continue
            example = dict(zip(names, row, strict=True))
            for column, wanted in enumerate(heads):
                if wanted:
                    models[column].learn_one(example, label[column])
        self.learned += use.sum(axis=0)
        self.examples += len(x)

    def export(self) -> HeadWeights:
        """A numpy copy of the current state, for serving."""
        d = len(self.features)
        mean = np.array([self.scaler.means.get(f, 0.0) for f in self.features])
        var = np.array([self.scaler.vars.get(f, 0.0) for f in self.features])
        scale = np.divide(1.0, np.sqrt(var), out=np.zeros(d), where=var > 0.0)
        coef = np.array(
            [[self.models[h].weights.get(f, 0.0) for f in self.features] for h in self.heads]
        ).reshape(len(self.heads), d)
        intercept = np.array([float(self.models[h].intercept) for h in self.heads])
        return HeadWeights(self.features, self.heads, mean, scale, coef, intercept, self.alpha)

    @classmethod
    def from_weights(
        cls,
        weights: HeadWeights,
        examples: int = 0,
        learned: Sequence[int] | None = None,
        **options: Any,
    ) -> OnlineHeads:
        """A learner that carries on from exported weights (a file or a bootstrap)."""
        from river import utils

        alpha = dict(zip(weights.heads, weights.alpha.tolist(), strict=True))
        heads = cls(weights.features, weights.heads, alpha, **options)
        n = max(int(examples), 1)
        var = np.divide(
            1.0, weights.scale**2, out=np.zeros_like(weights.scale), where=weights.scale > 0
        )
        for f, m, v in zip(weights.features, weights.mean.tolist(), var.tolist(), strict=True):
            heads.scaler.counts[f] = n
            heads.scaler.means[f] = m
            heads.scaler.vars[f] = v
        for column, head in enumerate(weights.heads):
            model = heads.models[head]
            model._weights = utils.VectorDict(
                dict(zip(weights.features, weights.coef[column].tolist(), strict=True))
            )
            model.intercept = float(weights.intercept[column])
        heads.examples = int(examples)
        if learned is not None:
            heads.learned = np.asarray(learned, dtype=np.int64)
        return heads
