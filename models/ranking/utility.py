"""Utility weights: ``utility = sum_t w_t * p_t`` over the engagement heads.

Weights come from a surface's configuration, an experiment variant or a
request (``weights=cart:2,purchase:5`` on HTTP, a ``weights`` map on the
requests topic); :func:`parse_weights` reads either form and says which field
is wrong, :func:`merged_weights` lays a request's weights over the surface's.

Examples
--------
>>> parse_weights("cart:2,purchase:5")
{'cart': 2.0, 'purchase': 5.0}
>>> parse_weights({"save": 1})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
models.ranking.utility.WeightsError: weights.save: unknown engagement type; expected one of ...
>>> merged_weights({"click": 1.0, "purchase": 1.0}, {"purchase": 5.0})
{'click': 1.0, 'favorite': 0.0, 'cart': 0.0, 'purchase': 5.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

#: Engagement types with a head each, in the column order of every probability matrix.
HEADS: tuple[str, ...] = ("click", "favorite", "cart", "purchase")
#: Default utility weights of a surface (configurable per surface).
DEFAULT_WEIGHTS: dict[str, float] = {"click": 1.0, "favorite": 0.5, "cart": 2.0, "purchase": 5.0}
#: Largest weight accepted.
MAX_WEIGHT = 1e6


class WeightsError(ValueError):
    """A weight naming an unknown engagement type, or not a finite number >= 0."""

    def __init__(self, message: str, field: str = "weights") -> None:
        super().__init__(message)
        self.field = field


def _weight(value: Any, where: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise WeightsError(f"{where}: not a number: {value!r}", where) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise WeightsError(f"{where}: must be a finite number, got {value!r}", where)
    if value < 0 or value > MAX_WEIGHT:
        raise WeightsError(f"{where}: must be from 0 to {MAX_WEIGHT:g}, got {value!r}", where)
    return float(value)


def parse_weights(raw: str | Mapping[str, Any], where: str = "weights") -> dict[str, float]:
    """Weights from ``"type:w,type:w"`` or a mapping; raise :class:`WeightsError` naming the field.

    >>> parse_weights("click:-1")
    Traceback (most recent call last):
    ...
    models.ranking.utility.WeightsError: weights.click: must be from 0 to 1e+06, got -1.0
    """
    if isinstance(raw, str):
        pairs: list[tuple[str, Any]] = []
        for part in filter(None, (p.strip() for p in raw.split(","))):
            name, sep, value = part.partition(":")
            if not sep:
                raise WeightsError(f"{where}: expected type:weight, got {part!r}", where)
            pairs.append((name.strip(), value.strip()))
    elif isinstance(raw, Mapping):
        pairs = list(raw.items())
    else:
        raise WeightsError(f"{where}: expected 'type:weight,...' or a map", where)
    out: dict[str, float] = {}
    for name, value in pairs:
        if name not in HEADS:
            raise WeightsError(
                f"{where}.{name}: unknown engagement type; expected one of {', '.join(HEADS)}",
                f"{where}.{name}",
            )
        out[str(name)] = _weight(value, f"{where}.{name}")
    return out


def merged_weights(
    base: Mapping[str, float] | None, override: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Every head's weight: ``override``'s, else ``base``'s, else 0."""
    merged = {h: 0.0 for h in HEADS}
    merged.update(base or {})
    merged.update(override or {})
    return {h: float(merged[h]) for h in HEADS}


def weight_vector(weights: Mapping[str, float]) -> np.ndarray:
    """The weights as a vector in :data:`HEADS` order (missing heads weigh 0)."""
    return np.array([float(weights.get(h, 0.0)) for h in HEADS], dtype=np.float64)


def utility(p: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
    """``sum_t w_t p_t`` per row of ``p`` (``(n, len(HEADS))``).

    >>> utility(np.array([[0.1, 0.0, 0.0, 0.02]]), {"click": 1, "purchase": 5}).round(3).tolist()
    [0.2]
    """
    return np.asarray(p, dtype=np.float64) @ weight_vector(weights)
