"""Constrained Bayesian optimisation of the utility weights on logged examples (Pinterest).

Given logged (or bootstrapped) examples grouped in lists, each with every
head's calibrated probability ``p`` and what happened ``y``, a weight vector
``w`` ranks each list by ``u = p @ w``. :func:`list_metrics` scores that
ranking per head by the mean over lists of the average precision of ``u``
against the head's labels (PR-AUC per list; lists without a positive skip).

:func:`tune` maximises one head's metric (default: purchase) subject to

* bounds per weight, and a fixed scale (one weight fixed, ``fixed``);
* every other head's metric ``>= c_t x`` its value under the baseline weights
  (Pinterest: 0.9 for saves, 1.0 for the rest; ``factors``),

with optuna's TPE sampler and trial constraints (``Trial.set_constraint``) (a sequential,
model-based optimiser that prefers feasible trials; no torch, unlike optuna's
GP sampler or Ax). The baseline is trial 0, so a feasible answer always
exists; the best feasible trial wins. :class:`TuneResult` holds the trials,
the chosen weights and each constraint's margin.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> lists = np.repeat(np.arange(200), 10)
>>> p = rng.random((2000, 4)) * [0.3, 0.02, 0.05, 0.02]
>>> y = (rng.random((2000, 4)) < p).astype(np.int8)
>>> found = tune(p, y, lists, {"click": 1, "favorite": 1, "cart": 1, "purchase": 1}, trials=20)
>>> all(m >= 0 for m in found.margins.values())
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.ranking.utility import HEADS, weight_vector

#: c_t of the constraints (Pinterest: saves may lose 10%, the rest nothing).
DEFAULT_FACTORS: dict[str, float] = {"click": 1.0, "favorite": 0.9, "cart": 1.0, "purchase": 1.0}


def list_metrics(p: np.ndarray, y: np.ndarray, lists: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean per-list average precision of the ranking by ``p @ w``, per head (``NaN``: no list).

    Ties are broken by row order. Vectorised: one sort for all lists.

    >>> p = np.array([[0.9, 0, 0, 0], [0.1, 0, 0, 0]]); y = np.array([[0, 0, 0, 0], [1, 0, 0, 1]])
    >>> list_metrics(p, y, np.array([0, 0]), np.array([1.0, 0, 0, 0])).tolist()[::3]
    [0.5, 0.5]
    """
    u = np.asarray(p, dtype=np.float64) @ np.asarray(w, dtype=np.float64)
    order = np.lexsort((np.arange(len(u)), -u, lists))
    sorted_lists = lists[order]
    starts = np.flatnonzero(np.r_[True, sorted_lists[1:] != sorted_lists[:-1]])
    group = np.cumsum(np.r_[True, sorted_lists[1:] != sorted_lists[:-1]]) - 1
    rank = np.arange(len(u)) - starts[group] + 1
    out = np.full(y.shape[1], np.nan)
    for head in range(y.shape[1]):
        labels = y[order, head].astype(np.float64)
        hits = np.cumsum(labels)
        hits_before = np.r_[0.0, hits[starts[1:] - 1]] if len(starts) > 1 else np.zeros(1)
        within = hits - hits_before[group]
        precision_at_hit = np.where(labels > 0, within / rank, 0.0)
        per_list = np.bincount(group, weights=precision_at_hit)
        positives = np.bincount(group, weights=labels)
        has = positives > 0
        if has.any():
            out[head] = float(np.mean(per_list[has] / positives[has]))
    return out


@dataclass
class TuneResult:
    """What :func:`tune` found: every trial, the chosen weights and constraint margins."""

    objective: str
    baseline: dict[str, float]
    baseline_metrics: dict[str, float]
    chosen: dict[str, float]
    chosen_metrics: dict[str, float]
    #: head -> metric / (c_t x baseline) - 1 for each constrained head (>= 0: satisfied).
    margins: dict[str, float]
    factors: dict[str, float]
    trials: list[dict[str, Any]] = field(default_factory=list)

    def report(self) -> str:
        """Markdown: chosen vs baseline, margins, the best trials."""
        lines = [
            f"objective: {self.objective} (mean per-list PR-AUC of the utility ranking)",
            "",
            "| weights | "
            + " | ".join(HEADS)
            + " | "
            + " | ".join(f"{h} PR-AUC" for h in HEADS)
            + " |",
            "|---|" + "---|" * (2 * len(HEADS)),
        ]
        for name, weights, metrics in (
            ("baseline", self.baseline, self.baseline_metrics),
            ("chosen", self.chosen, self.chosen_metrics),
        ):
            lines.append(
                f"| {name} | "
                + " | ".join(f"{weights[h]:.3g}" for h in HEADS)
                + " | "
                + " | ".join(f"{metrics[h]:.4f}" for h in HEADS)
                + " |"
            )
        lines += ["", "constraint margins (metric / (c x baseline) - 1, >= 0 holds):", ""]
        lines += [
            f"- {h}: c = {self.factors[h]:g}, margin {m:+.2%}" for h, m in self.margins.items()
        ]
        feasible = [t for t in self.trials if t["feasible"]]
        lines += [
            "",
            f"{len(self.trials)} trials, {len(feasible)} feasible; best five feasible:",
            "",
        ]
        for t in sorted(feasible, key=lambda t: -t["objective"])[:5]:
            weights = ", ".join(f"{h}={t['weights'][h]:.3g}" for h in HEADS)
            lines.append(f"- #{t['number']}: {self.objective} {t['objective']:.4f} ({weights})")
        return "\n".join(lines)


def tune(
    p: np.ndarray,
    y: np.ndarray,
    lists: np.ndarray,
    baseline: Mapping[str, float],
    *,
    objective: str = "purchase",
    factors: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    fixed: Mapping[str, float] | None = None,
    trials: int = 60,
    seed: int = 0,
) -> TuneResult:
    """Maximise ``objective``'s metric under the constraints (see the module docstring).

    Parameters
    ----------
    p, y, lists
        Calibrated probabilities and labels per row (``(n, len(HEADS))``) and
        the list each row belongs to.
    baseline
        The weights to beat and to constrain against (trial 0).
    objective
        The head whose metric is maximised.
    factors
        ``c_t`` per constrained head (default :data:`DEFAULT_FACTORS`); heads
        with no positive in the data are not constrained.
    bounds
        Per free weight ``(low, high)``; default ``(0, 10)``.
    fixed
        Weights held constant: the scale (default ``{"click": baseline's click or 1}``).
    trials
        Optimiser trials, the baseline included.
    seed
        The sampler's seed.

    Raises
    ------
    ValueError
        An unknown head, bounds that are not ``0 <= low <= high``, or no list
        with a positive of ``objective``.
    """
    import optuna

    if objective not in HEADS:
        raise ValueError(f"objective: unknown head {objective!r}; expected one of {HEADS}")
    factors = {**DEFAULT_FACTORS, **(factors or {})}
    fixed = (
        dict(fixed) if fixed is not None else {"click": float(baseline.get("click", 1.0)) or 1.0}
    )
    for name in (*factors, *(bounds or {}), *fixed):
        if name not in HEADS:
            raise ValueError(f"unknown head {name!r}; expected one of {', '.join(HEADS)}")
    free = [h for h in HEADS if h not in fixed]
    box = {h: (bounds or {}).get(h, (0.0, 10.0)) for h in free}
    for h, (low, high) in box.items():
        if not 0.0 <= low <= high:
            raise ValueError(f"bounds.{h}: need 0 <= low <= high, got ({low}, {high})")
    target = HEADS.index(objective)
    base_weights = {h: float(fixed.get(h, baseline.get(h, 0.0))) for h in HEADS}
    base_metrics = list_metrics(p, y, lists, weight_vector(base_weights))
    if np.isnan(base_metrics[target]):
        raise ValueError(f"no list has a {objective} positive: nothing to tune for")
    constrained = [i for i, h in enumerate(HEADS) if i != target and not np.isnan(base_metrics[i])]

    def evaluate(weights: Mapping[str, float]) -> tuple[np.ndarray, list[float]]:
        metrics = list_metrics(p, y, lists, weight_vector(weights))
        # optuna: a constraint value <= 0 is satisfied.
        violations = [factors[HEADS[i]] * base_metrics[i] - metrics[i] for i in constrained]
        return metrics, violations

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=10)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({h: min(max(base_weights[h], box[h][0]), box[h][1]) for h in free})
    records: list[dict[str, Any]] = []

    def run(trial: Any) -> float:
        weights = {h: trial.suggest_float(h, *box[h]) for h in free}
        weights.update(fixed)
        metrics, violations = evaluate(weights)
        for i, violation in zip(constrained, violations, strict=True):
            trial.set_constraint(HEADS[i], float(violation))
        records.append(
            {
                "number": trial.number,
                "weights": {h: float(weights[h]) for h in HEADS},
                "metrics": dict(zip(HEADS, metrics.tolist(), strict=True)),
                "objective": float(metrics[target]),
                "feasible": all(v <= 1e-12 for v in violations),
            }
        )
        return float(metrics[target])

    study.optimize(run, n_trials=trials)
    feasible = [r for r in records if r["feasible"]]
    best = max(feasible, key=lambda r: (r["objective"], -r["number"])) if feasible else None
    if best is None:  # the baseline itself always satisfies its own constraints
        best = {
            "weights": base_weights,
            "metrics": dict(zip(HEADS, base_metrics.tolist(), strict=True)),
        }
    margins = {
        HEADS[i]: best["metrics"][HEADS[i]] / (factors[HEADS[i]] * base_metrics[i]) - 1.0
        if base_metrics[i] > 0
        else 0.0
        for i in constrained
    }
    return TuneResult(
        objective,
        base_weights,
        dict(zip(HEADS, base_metrics.tolist(), strict=True)),
        best["weights"],
        best["metrics"],
        margins,
        {HEADS[i]: factors[HEADS[i]] for i in constrained},
        records,
    )


def compare(
    p: np.ndarray, y: np.ndarray, lists: np.ndarray, candidates: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, float]]:
    """Per named weight set, each head's metric on (held-back) examples."""
    return {
        name: dict(zip(HEADS, list_metrics(p, y, lists, weight_vector(w)).tolist(), strict=True))
        for name, w in candidates.items()
    }


def split_lists(lists: np.ndarray, held_back: float, seed: int = 0) -> np.ndarray:
    """A boolean mask of the rows whose list is held back (a seeded share of the lists)."""
    unique = np.unique(lists)
    rng = np.random.default_rng(seed)
    back = rng.random(len(unique)) < held_back
    return np.isin(lists, unique[back])


__all__: Sequence[str] = (
    "DEFAULT_FACTORS",
    "TuneResult",
    "compare",
    "list_metrics",
    "split_lists",
    "tune",
)
