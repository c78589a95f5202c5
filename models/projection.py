"""2D maps of an embedding space, for looking at it (Whatnot's figure).

A map should keep neighbourhoods: items that are near in the space should be
near on the map, so that groups (categories, tastes) show. Three methods:

``umap``
    UMAP (the optional extra ``pip install 'tastestream[umap]'``): the best
    at it, but it brings numba, llvmlite, scikit-learn and pynndescent (about
    150 MB) and a first call in a process compiles for ~10 s.
``graph`` (the default without UMAP)
    The same idea in numpy and scipy: a k-nearest-neighbour graph by cosine
    similarity, a spectral start (the graph Laplacian's first eigenvectors,
    ``scipy.sparse.linalg.eigsh``) and a short force layout, neighbours pulled
    together and random pairs pushed apart, with UMAP's attraction and
    repulsion curves. New points are placed at the similarity-weighted mean
    of their nearest fitted points, so they land among their neighbours.
``pca``
    Principal component analysis by the SVD of the centred data: linear and
    exact about the two directions of largest variance, but it keeps no
    neighbourhoods (on the simulator, items of one category scatter over the
    whole map); used below :data:`MIN_GRAPH_POINTS` points.

Every method returns a fitted object with ``method``, ``coords`` (the fitted
points' coordinates) and ``transform(X)`` (new points on the same map).
``benchmarks/map_structure.py`` measures how well each keeps categories together.

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
    """A fitted 2D projection: ``coords`` of the fitted points, ``transform`` for new ones."""

    method: str
    coords: np.ndarray

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
    coords: np.ndarray
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
    coords = centred @ components.T
    return PCAProjection(mean=mean, components=components, explained=explained, coords=coords)


@dataclass
class UMAPProjection:
    """A fitted ``umap.UMAP`` behind the same interface as :class:`PCAProjection`."""

    reducer: Any
    coords: np.ndarray
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


#: Fewer points than this are drawn by PCA: a neighbourhood graph needs some.
MIN_GRAPH_POINTS = 16
#: Neighbours per point in the graph (UMAP's default is 15).
GRAPH_NEIGHBOURS = 15
#: UMAP's curve 1 / (1 + a d^(2b)) for its default min_dist 0.1 and spread 1.
_A, _B = 1.577, 0.895


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.atleast_2d(np.asarray(X, dtype=np.float32))
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class GraphLayout:
    """A neighbourhood-graph layout (see the module docstring); new points by their neighbours.

    Attributes
    ----------
    unit
        ``(n, d)`` unit-length fitted vectors.
    coords
        ``(n, 2)`` their coordinates on the map.
    neighbours
        How many fitted points place a new one.
    """

    unit: np.ndarray
    coords: np.ndarray
    neighbours: int = GRAPH_NEIGHBOURS
    method: str = "graph"

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Each row at the similarity-weighted mean of its nearest fitted points.

        Examples
        --------
        >>> corners = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
        >>> layout = GraphLayout(np.eye(3, dtype=np.float32), corners, neighbours=1)
        >>> layout.transform(np.array([[0.1, 1.0, 0.0]])).tolist()
        [[4.0, 0.0]]
        """
        similarity = _unit(X) @ self.unit.T
        k = min(self.neighbours, self.unit.shape[0])
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.maximum(np.take_along_axis(similarity, nearest, axis=1), 0.0) + 1e-6
        weights /= weights.sum(axis=1, keepdims=True)
        return np.einsum("nk,nkc->nc", weights, self.coords[nearest]).astype(np.float64)


def _neighbour_graph(unit: np.ndarray, k: int) -> Any:
    """Symmetric sparse k-NN graph, weighted by cosine similarity (floored above 0)."""
    import scipy.sparse as sp

    n = len(unit)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(n), k)
    weights = np.maximum(similarity[rows, nearest.ravel()], 0.0) + 1e-3
    graph = sp.csr_matrix((weights, (rows, nearest.ravel())), shape=(n, n))
    return graph.maximum(graph.T)


def _spectral_start(graph: Any, seed: int) -> np.ndarray:
    """The normalised Laplacian's 2nd and 3rd eigenvectors (random when they do not converge)."""
    from scipy.sparse.csgraph import laplacian
    from scipy.sparse.linalg import ArpackError, eigsh

    n = graph.shape[0]
    rng = np.random.default_rng(seed)
    try:
        _, vectors = eigsh(
            laplacian(graph, normed=True),
            k=3,
            which="SM",
            tol=1e-4,
            maxiter=n * 5,
            v0=rng.uniform(size=n),
        )
        start = vectors[:, 1:3]
    except (ArpackError, ValueError):  # a disconnected or tiny graph: start at random
        start = rng.normal(size=(n, 2))
    start = start - start.mean(axis=0)
    return 10.0 * start / max(float(np.abs(start).max()), 1e-12)


def fit_graph_layout(
    X: np.ndarray, seed: int = 0, neighbours: int = GRAPH_NEIGHBOURS, epochs: int = 200
) -> GraphLayout:
    """Lay out the k-NN graph of ``X``: spectral start, then a force layout.

    Each epoch samples every graph edge with probability proportional to its
    weight and pulls its ends together, and pushes each sampled point away
    from 5 random points, both along UMAP's curves; a point's moves are
    averaged over its edges and the step shrinks linearly to 0.

    Parameters
    ----------
    X
        ``(n, d)`` vectors, compared by cosine similarity; ``n >= 3``.
    seed
        Same data and seed, same map.
    neighbours
        Edges per point.
    epochs
        Layout iterations.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> centres = rng.normal(size=(3, 8)) * 5
    >>> X = np.concatenate([c + rng.normal(size=(30, 8)) for c in centres])
    >>> layout = fit_graph_layout(X)
    >>> groups = layout.coords.reshape(3, 30, 2)
    >>> spread = np.mean([np.linalg.norm(g - g.mean(0), axis=1).mean() for g in groups])
    >>> middles = groups.mean(axis=1)
    >>> gaps = [np.linalg.norm(middles[i] - middles[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    >>> bool(min(gaps) > 2 * spread)
    True
    """
    unit = _unit(X)
    n = len(unit)
    if n < 3:
        raise ValueError(f"a graph layout needs at least 3 points, got {n}")
    k = min(neighbours, n - 1)
    graph = _neighbour_graph(unit, k).tocoo()
    heads, tails = graph.row, graph.col
    keep = graph.data / graph.data.max()
    coords = _spectral_start(graph.tocsr(), seed)
    rng = np.random.default_rng(seed)
    negatives = 5
    for epoch in range(epochs):
        step = 1.0 - epoch / epochs
        sampled = rng.random(len(heads)) < keep
        h, t = heads[sampled], tails[sampled]
        diff = coords[h] - coords[t]
        d2 = (diff * diff).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            pull = np.where(d2 > 0, -2 * _A * _B * d2 ** (_B - 1) / (1 + _A * d2**_B), 0.0)
        moves = np.clip(pull[:, None] * diff, -4, 4)
        hn = np.repeat(h, negatives)
        diff = coords[hn] - coords[rng.integers(n, size=len(hn))]
        d2 = (diff * diff).sum(axis=1)
        push = 2 * _B / ((0.001 + d2) * (1 + _A * d2**_B))
        pushes = np.clip(push[:, None] * diff, -4, 4)
        count = np.bincount(h, minlength=n) + 1.0
        for axis in (0, 1):
            total = np.bincount(h, moves[:, axis], n) + np.bincount(hn, pushes[:, axis], n)
            coords[:, axis] += step * total / count
    return GraphLayout(unit=unit, coords=coords, neighbours=k)


def fit_projection(X: np.ndarray, method: str = "auto", seed: int = 0) -> Projection:
    """Fit a 2D map: ``auto`` is UMAP when installed, else the graph layout (PCA when tiny).

    UMAP needs a handful of points (its neighbourhood graph), as does the
    graph layout: below :data:`MIN_GRAPH_POINTS` rows, or if UMAP fails, the
    next method answers.

    Examples
    --------
    >>> X = np.random.default_rng(1).normal(size=(10, 4))
    >>> fit_projection(X, method="pca").method, fit_projection(X, method="graph").method
    ('pca', 'pca')
    >>> fit_projection(np.random.default_rng(1).normal(size=(40, 4)), method="graph").method
    'graph'
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    X = np.asarray(X, dtype=np.float64)
    if method == "pca" or len(X) < MIN_GRAPH_POINTS:
        return fit_pca(X)
    if method in ("auto", "umap") and umap_available():
        import umap

        try:
            reducer = umap.UMAP(
                n_components=2,
                n_neighbors=min(GRAPH_NEIGHBOURS, len(X) - 1),
                metric="cosine",
                random_state=seed,
                n_jobs=1,  # a seeded UMAP runs on one thread anyway; saying so avoids a warning
            ).fit(X)
            return UMAPProjection(reducer, np.asarray(reducer.embedding_, dtype=np.float64))
        except Exception:  # a numerical failure draws the graph layout rather than no map
            pass
    return fit_graph_layout(X, seed=seed)


#: What :func:`fit_projection` accepts (``umap`` falls back to ``graph`` when not installed).
METHODS = ("auto", "umap", "graph", "pca")


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
