"""2D projections of an embedding space, for looking at it (Whatnot's figure).

:func:`fit_pca` is principal component analysis by the SVD of the centred
data (numpy only); :func:`fit_projection` prefers UMAP when the ``umap``
package is importable (it keeps local neighbourhoods, which is what a person
looks for in such a map) and falls back to PCA. Both return a fitted object
with ``method`` and ``transform(X)``, so points that were not in the fitted
sample (a user's trajectory, the user's mean vector) land on the same map.

:func:`item_vectors` turns interaction-token vectors into one vector per item
(the mean of the item's unit-length token vectors): the map shows items, and
an item's click, cart and purchase tokens are its facets.

Examples
--------
>>> import numpy as np
>>> X = np.array([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [4.0, 0.1, 1.0], [6.0, 0.0, 1.0]])
>>> pca = fit_pca(X)
>>> pca.method, pca.transform(X).round(2)[:, 0].tolist()
('pca', [-3.0, -1.0, 1.0, 3.0])
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class Projection(Protocol):
    """A fitted 2D projection."""

    method: str

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``(n, 2)`` coordinates of the ``(n, d)`` rows of ``X``."""
        ...


@dataclass(frozen=True)
class PCAProjection:
    """Linear projection onto the two directions of largest variance.

    Attributes
    ----------
    mean
        ``(d,)`` mean of the fitted data.
    components
        ``(2, d)`` unit principal directions (a zero row when the data has
        fewer than two directions of variance).
    explained
        Share of the total variance along each component.
    """

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray
    method: str = "pca"

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Coordinates of ``X`` on the two components.

        Examples
        --------
        >>> p = fit_pca(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.5], [0.0, -0.5]]))
        >>> p.transform(np.array([[2.0, 0.0]])).round(3).tolist()
        [[2.0, 0.0]]
        """
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        return (X - self.mean) @ self.components.T


def fit_pca(X: np.ndarray) -> PCAProjection:
    """Fit a 2D PCA by the SVD of the centred data.

    Signs are made deterministic (each component's largest coordinate is
    positive), so the same data always draws the same map.

    Parameters
    ----------
    X
        ``(n, d)`` data, ``n >= 1``.

    Returns
    -------
    PCAProjection

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(50, 5)) * [5.0, 1.0, 0.1, 0.1, 0.1]
    >>> p = fit_pca(X)
    >>> np.abs(p.components.round(1)).argmax(axis=1).tolist(), bool(p.explained[0] > 0.9)
    ([0, 1], True)
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"fit_pca needs a non-empty (n, d) array, got shape {X.shape}")
    mean = X.mean(axis=0)
    centred = X - mean
    # full_matrices=False: Vt is (min(n, d), d), cheap for a few thousand rows.
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    components = np.zeros((2, X.shape[1]))
    kept = min(2, len(vt))
    components[:kept] = vt[:kept]
    for row in components:
        pivot = np.argmax(np.abs(row))
        if row[pivot] < 0:
            row *= -1
    variance = singular**2
    total = variance.sum()
    explained = np.zeros(2)
    if total > 0:
        explained[:kept] = variance[:kept] / total
    return PCAProjection(mean=mean, components=components, explained=explained)


@dataclass
class UMAPProjection:
    """A fitted ``umap.UMAP`` behind the same interface as :class:`PCAProjection`."""

    reducer: Any
    method: str = "umap"

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.reducer.transform(np.atleast_2d(X)), dtype=np.float64)


def umap_available() -> bool:
    """True when the optional ``umap`` package imports."""
    try:
        import umap  # noqa: F401
    except Exception:  # ImportError, or a broken numba install under it
        return False
    return True


def fit_projection(X: np.ndarray, method: str = "auto", seed: int = 0) -> Projection:
    """Fit a 2D projection: UMAP when asked or available (``auto``), else PCA.

    UMAP needs a handful of points (its neighbourhood graph); below 16 rows,
    or if it fails, PCA answers.

    Examples
    --------
    >>> X = np.random.default_rng(1).normal(size=(10, 4))
    >>> fit_projection(X, method="pca").method
    'pca'
    """
    if method not in ("auto", "pca", "umap"):
        raise ValueError(f"method must be auto, pca or umap, not {method!r}")
    X = np.asarray(X, dtype=np.float64)
    if method != "pca" and len(X) >= 16 and umap_available():
        import umap

        try:
            reducer = umap.UMAP(
                n_components=2,
                n_neighbors=min(15, len(X) - 1),
                metric="cosine",
                random_state=seed,
            ).fit(X)
            return UMAPProjection(reducer)
        except Exception:  # a numerical failure draws PCA rather than no map
            pass
    return fit_pca(X)


def item_vectors(
    vocab: Sequence[Hashable], vectors: np.ndarray, limit: int | None = None
) -> tuple[list[str], np.ndarray]:
    """One vector per item: the mean of its unit-length token vectors.

    Parameters
    ----------
    vocab
        Tokens in vector order: ``(item_id, type)`` tuples or plain item ids,
        most frequent first (as :class:`models.token_embedding.TokenEmbedding` keeps them).
    vectors
        ``(len(vocab), d)`` token vectors.
    limit
        Keep the first ``limit`` distinct items in vocabulary order (the most
        frequent ones); all when None.

    Returns
    -------
    items, matrix
        Item ids in first-seen order and their ``(len(items), d)`` vectors.

    Examples
    --------
    >>> vocab = [("a", "click"), ("b", "click"), ("a", "cart")]
    >>> vecs = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    >>> items, M = item_vectors(vocab, vecs)
    >>> items, M.round(2).tolist()
    (['a', 'b'], [[0.5, 0.5], [0.0, 1.0]])
    """
    rows: dict[str, list[int]] = {}
    for i, token in enumerate(vocab):
        item = str(token[0] if isinstance(token, tuple | list) else token)
        if item not in rows:
            if limit is not None and len(rows) >= limit:
                continue
            rows[item] = []
        rows[item].append(i)
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    items = list(rows)
    matrix = np.zeros((len(items), vectors.shape[1] if vectors.ndim == 2 else 0))
    for j, item in enumerate(items):
        matrix[j] = unit[rows[item]].mean(axis=0)
    return items, matrix
