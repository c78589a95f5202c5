"""Calibration after negative downsampling, and the per-head quality a ranker reports.

A head trained on every positive and a share ``alpha`` of the negatives
predicts ``q``, the probability in the downsampled data; the probability in
the served data is (Pinterest) ``p = q / (q + (1 - q) / alpha)``
(:func:`calibrate`). Which negatives are kept is decided by a hash of the
example's id and the head (:func:`kept_negatives`), so a replay of the same
log keeps the same ones.

:class:`Reliability` accumulates, per head, the Brier score and a reliability
table (predicted vs observed rate per probability bin) of calibrated
predictions against what happened: what ``/metrics``, ``GET /ranker`` and
``tastestream evaluate`` show.

Examples
--------
>>> round(float(calibrate(0.5, 0.1)), 4)
0.0909
>>> rel = Reliability(("click",), bins=2)
>>> rel.add(np.array([[0.2], [0.8]]), np.array([[0], [1]]))
>>> rel.summary()["click"]["brier"], rel.summary()["click"]["table"][1]["observed"]
(0.04, 1.0)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np


def calibrate(q: np.ndarray | float, alpha: np.ndarray | float) -> np.ndarray:
    """Undo negative downsampling at rate ``alpha``: ``q / (q + (1 - q) / alpha)``.

    Parameters
    ----------
    q
        Probabilities learned on the downsampled examples (any shape).
    alpha
        Share of negatives kept, in ``(0, 1]``; broadcast against ``q``
        (one per head on the last axis).

    Returns
    -------
    numpy.ndarray
        The served-data probabilities; ``alpha = 1`` changes nothing.

    Examples
    --------
    >>> calibrate(np.array([0.0, 0.3, 1.0]), 1.0).tolist()
    [0.0, 0.3, 1.0]
    """
    q = np.asarray(q, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    return q / (q + (1.0 - q) / alpha)


def kept_negatives(ids: Sequence[str], heads: Sequence[str], alpha: np.ndarray) -> np.ndarray:
    """Which examples each head keeps as a negative: ``(len(ids), len(heads))`` booleans.

    An example is kept for head ``t`` when ``hash(id, t) < alpha[t]`` (uniform
    on [0, 1)): the same id always gets the same answer.

    >>> kept_negatives(["a", "b"], ("click",), np.array([1.0])).tolist()
    [[True], [True]]
    """
    out = np.empty((len(ids), len(heads)), dtype=bool)
    for row, example_id in enumerate(ids):
        for column, head in enumerate(heads):
            digest = hashlib.blake2b(f"{example_id}\x1f{head}".encode(), digest_size=8).digest()
            out[row, column] = int.from_bytes(digest, "big") / 2.0**64 < alpha[column]
    return out


class Reliability:
    """Brier score and a reliability table per head, accumulated over examples.

    Parameters
    ----------
    heads
        Head names, in column order.
    bins
        Equal-width probability bins of the table.
    """

    def __init__(self, heads: Sequence[str], bins: int = 10) -> None:
        self.heads = tuple(heads)
        self.bins = bins
        self.count = np.zeros((len(self.heads), bins))
        self.predicted = np.zeros((len(self.heads), bins))
        self.observed = np.zeros((len(self.heads), bins))
        self.squared_error = np.zeros(len(self.heads))
        self.n = 0

    def add(self, p: np.ndarray, y: np.ndarray) -> None:
        """Add calibrated predictions ``p`` and outcomes ``y`` (both ``(n, heads)``)."""
        p = np.asarray(p, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if len(p) == 0:
            return
        self.n += len(p)
        self.squared_error += ((p - y) ** 2).sum(axis=0)
        index = np.minimum((p * self.bins).astype(np.int64), self.bins - 1)
        for head in range(len(self.heads)):
            np.add.at(self.count[head], index[:, head], 1.0)
            np.add.at(self.predicted[head], index[:, head], p[:, head])
            np.add.at(self.observed[head], index[:, head], y[:, head])

    def brier(self) -> dict[str, float | None]:
        """Mean squared error of the probabilities per head (``None`` before any example)."""
        if self.n == 0:
            return dict.fromkeys(self.heads)
        return {h: float(self.squared_error[i] / self.n) for i, h in enumerate(self.heads)}

    def summary(self) -> dict[str, Any]:
        """Per head: examples, Brier score, and the non-empty bins of the table."""
        brier = self.brier()
        out: dict[str, Any] = {}
        for i, head in enumerate(self.heads):
            table = []
            for b in range(self.bins):
                n = self.count[i, b]
                if n:
                    table.append(
                        {
                            "bin": [b / self.bins, (b + 1) / self.bins],
                            "n": int(n),
                            "predicted": round(float(self.predicted[i, b] / n), 6),
                            "observed": round(float(self.observed[i, b] / n), 6),
                        }
                    )
            value = brier[head]
            out[head] = {
                "examples": self.n,
                "brier": None if value is None else round(value, 6),
                "table": table,
            }
        return out
