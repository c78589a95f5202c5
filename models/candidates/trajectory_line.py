"""Trajectory line (Whatnot's second guard rail): items on the path the user is walking.

The user's recent tokens are points in embedding space, in order. A smoothing
spline (one per dimension, fitted at once by
:func:`scipy.interpolate.make_smoothing_spline` with a fixed penalty
``smoothing``: choosing it by GCV costs about 0.6 s for 20 points in 32
dimensions, a fixed one 2-3 ms)
through them, parameterised by position ``0..1``, is sampled at ``n_points``
positions from the start to ``1 + extrapolate`` (a short step past the last
point: where the user is heading). With fewer than 5 distinct points (the
spline needs 5) a polynomial of degree ``min(2, n - 1)`` stands in. Each point
is looked up in the index; an item's score is its best similarity to any point.
Items the trajectory already visited are skipped: the answer is the items the
user "should have met on the way".

Examples
--------
>>> import numpy as np
>>> from models.ann_index import TokenIndex
>>> from models.trajectory import UserTrajectory
>>> angles = {"a": 0.0, "b": 0.4, "gap": 0.6, "c": 0.8, "far": 2.5}
>>> vectors = np.array([[np.cos(a), np.sin(a)] for a in angles.values()])
>>> index = TokenIndex.build([(i, "click") for i in angles], vectors, M=8)
>>> user = UserTrajectory()
>>> _ = user.update_many(
...     [{"item_id": i, "type": "click", "ts": float(t)} for t, i in enumerate("abc")]
... )
>>> [c.item_id for c in trajectory_line(user, index, k_per_point=1, extrapolate=0.0)]
['gap']
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import make_smoothing_spline

from models.candidates.types import Candidate, EmbeddingIndex, Trajectory

SOURCE = "trajectory_line"
DEFAULT_RECENT = 20
DEFAULT_POINTS = 12
DEFAULT_EXTRAPOLATE = 0.25
DEFAULT_K_PER_POINT = 30
MIN_SPLINE_POINTS = 5  # make_smoothing_spline's minimum
#: Penalty on the curve's second derivative (positions in 0..1); ``None``: GCV (slow).
DEFAULT_SMOOTHING = 1e-3


def trajectory_points(
    trajectory: Trajectory, index: EmbeddingIndex, n_recent: int
) -> tuple[list[str], np.ndarray]:
    """The items and vectors of the user's last ``n_recent`` tokens found in the index.

    A token missing from the index falls back to its item's click token;
    consecutive repeats of one item collapse to one point.
    """
    items: list[str] = []
    vectors: list[np.ndarray] = []
    for item, etype, _ in trajectory.recent(n_recent):
        if items and items[-1] == item:
            continue
        vector = index.vector((item, etype))
        if vector is None and etype != "click":
            vector = index.vector((item, "click"))
        if vector is None:
            continue
        items.append(item)
        vectors.append(np.asarray(vector, dtype=np.float64))
    if not vectors:
        return items, np.zeros((0, getattr(index, "dim", 0)))
    return items, np.array(vectors)


def fit_curve(
    points: np.ndarray, positions: np.ndarray, smoothing: float | None = DEFAULT_SMOOTHING
) -> np.ndarray:
    """Evaluate a smooth curve through ``points`` (rows, in order) at ``positions`` in ``[0, ...]``.

    The points sit at evenly spaced positions ``0..1``; positions past 1 extrapolate.

    >>> line = np.array([[0.0, 0.0], [1.0, 2.0]])
    >>> fit_curve(line, np.array([0.5, 1.5])).round(6).tolist()
    [[0.5, 1.0], [1.5, 3.0]]
    """
    n = len(points)
    if n == 1:
        return np.repeat(points, len(positions), axis=0)
    x = np.linspace(0.0, 1.0, n)
    if n >= MIN_SPLINE_POINTS:
        return make_smoothing_spline(x, points, lam=smoothing)(positions)
    coefficients = np.polyfit(x, points, deg=min(2, n - 1))
    powers = np.vander(positions, len(coefficients))
    return powers @ coefficients


def trajectory_line(
    trajectory: Trajectory,
    index: EmbeddingIndex,
    *,
    n_recent: int = DEFAULT_RECENT,
    n_points: int = DEFAULT_POINTS,
    extrapolate: float = DEFAULT_EXTRAPOLATE,
    k_per_point: int = DEFAULT_K_PER_POINT,
    target_type: str = "click",
    smoothing: float | None = DEFAULT_SMOOTHING,
) -> list[Candidate]:
    """Items nearest to a smooth curve through the user's recent tokens and its extension.

    Parameters
    ----------
    trajectory
        The user's state; its last ``n_recent`` tokens make the path.
    index
        Token embeddings.
    n_points
        Points sampled along the curve (spread over ``[0, 1 + extrapolate]``).
    extrapolate
        How far past the last point to follow the curve, as a fraction of its length.
    k_per_point
        Neighbours looked up per sampled point.
    target_type
        Token type of the neighbours.
    smoothing
        The spline's penalty on curvature (``None``: chosen by GCV, slow).

    Returns
    -------
    list of Candidate
        Best similarity first; ``evidence["position"]`` is where on the curve
        (0 = oldest point, 1 = latest, above 1 = extrapolated) the item is closest.
    """
    items, points = trajectory_points(trajectory, index, n_recent)
    if not items:
        return []
    positions = np.linspace(0.0, 1.0 + max(0.0, extrapolate), max(2, n_points))
    curve = fit_curve(points, positions, smoothing)
    seen = set(items)
    best: dict[str, tuple[float, float]] = {}
    for position, point in zip(positions, curve, strict=True):
        norm = np.linalg.norm(point)
        if not np.isfinite(norm) or norm == 0.0:
            continue
        # Visited items are near the path by construction: ask for that many more.
        found = index.query(point / norm, target_type, k_per_point + len(seen))
        found = [(item, s) for item, s in found if item not in seen][:k_per_point]
        for item, similarity in found:
            if item not in best or similarity > best[item][0]:
                best[item] = (similarity, float(position))
    out = [
        Candidate(
            item,
            similarity,
            SOURCE,
            "where your recent browsing is heading"
            if position > 1.0
            else "on the path of your recent browsing",
            {"position": round(position, 3), "path_length": len(items)},
        )
        for item, (similarity, position) in best.items()
    ]
    out.sort(key=lambda c: (-c.score, c.item_id))
    return out
