"""The learned ranker's state, its files, and the per-request second pass.

:class:`LearnedRanker` holds the learner (:class:`~models.ranking.heads.OnlineHeads`),
the exported weights every request reads, and the progressive validation of
each head (each batch is scored *before* it is learned: Brier score and
reliability table, :class:`~models.ranking.calibration.Reliability`).

:meth:`LearnedRanker.for_request` gives a :class:`RequestRanker` for one list
and one set of utility weights: it computes the features
(:func:`~models.ranking.features.candidate_features`), the calibrated
probabilities per head and the utility, orders the candidates by utility and
annotates the items shown with their features (logged with the impression,
so the outcome join yields training examples), ``p`` per head and an
explanation. Until the ranker has learned from ``min_examples`` examples it is
**cold**: it keeps the first-pass order (still logging features) and says so.

Files (:meth:`LearnedRanker.save`, :func:`load_ranker`) are ``.npz`` arrays
with a JSON header; a file that fails validation (other features, wrong
shapes, values that are not finite, alpha out of range) raises
:class:`RankerError` and is refused, as a bad model version is.

Examples
--------
>>> from models.candidates.types import Candidate
>>> from models.surfaces import SurfaceContext
>>> ranker = LearnedRanker(min_examples=10)
>>> one = ranker.for_request({"click": 1.0})
>>> ranked = one.rank("u", [Candidate("a", 1.0, "popularity", "")], SurfaceContext("u", now=0.0))
>>> one.info["status"], len(unpack_features(ranked[0].evidence["features"])) == len(FEATURE_NAMES)
('cold', True)
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.candidates.types import Candidate
from models.ranking.calibration import Reliability, kept_negatives
from models.ranking.features import FEATURE_NAMES, candidate_features
from models.ranking.heads import HeadsError, HeadWeights, OnlineHeads
from models.ranking.utility import HEADS, merged_weights, utility

#: Share of negatives each head learns from (Pinterest's downsampling; stored with the model).
DEFAULT_ALPHA: dict[str, float] = {"click": 0.5, "favorite": 0.2, "cart": 0.2, "purchase": 0.2}
#: Examples a ranker learns from before it reorders lists.
DEFAULT_MIN_EXAMPLES = 2000
FORMAT = "tastestream-ranker/1"


class RankerError(ValueError):
    """A ranker that cannot serve (a bad file or weights); the message names what is wrong."""


class LearnedRanker:
    """A multi-head ranker: learns from labelled examples, ranks by utility.

    Parameters
    ----------
    alpha
        Head -> share of negatives learned from (default :data:`DEFAULT_ALPHA`).
    min_examples
        Examples learned before the ranker leaves the cold fallback.
    version
        A name for where the weights came from (a bootstrap file, ``"online"``).
    learner
        A learner to carry on from (e.g. restored from a file).
    """

    def __init__(
        self,
        alpha: Mapping[str, float] | None = None,
        min_examples: int = DEFAULT_MIN_EXAMPLES,
        version: str = "online",
        learner: OnlineHeads | None = None,
    ) -> None:
        self.learner = learner or OnlineHeads(
            FEATURE_NAMES, HEADS, {**DEFAULT_ALPHA, **(alpha or {})}
        )
        self.min_examples = min_examples
        self.version = version
        self.weights: HeadWeights = self.learner.export()
        self.reliability = Reliability(HEADS)
        #: Outcomes that could not be learned from (no features, or other features).
        self.skipped = 0

    @property
    def examples(self) -> int:
        """Examples learned from."""
        return self.learner.examples

    @property
    def ready(self) -> bool:
        """Whether it has learned enough to reorder lists."""
        return self.learner.examples >= self.min_examples

    def learn(self, x: np.ndarray, y: np.ndarray, ids: Sequence[str]) -> None:
        """Score the batch (progressive validation), then learn it.

        Parameters
        ----------
        x
            Feature rows ``(n, len(FEATURE_NAMES))``.
        y
            Labels ``(n, len(HEADS))``.
        ids
            Example ids: decide which negatives each head keeps (replayable).
        """
        if len(x) == 0:
            return
        if self.learner.examples:
            self.reliability.add(self.weights.probabilities(x), y)
        keep = kept_negatives(ids, HEADS, self.learner.alpha)
        self.learner.learn(x, y, keep)
        self.weights = self.learner.export()  # one reference swap: readers see old or new

    def learn_outcomes(self, outcomes: Iterable[Mapping[str, Any]]) -> int:
        """Learn from the outcome join's records that carry features; return how many."""
        outcomes = list(outcomes)
        x, y, ids = examples_of(outcomes)
        self.skipped += len(outcomes) - len(x)
        self.learn(x, y, ids)
        return len(x)

    def for_request(
        self, weights: Mapping[str, float], weights_from: str = "surface"
    ) -> RequestRanker:
        """The second pass of one list, ranking by ``weights`` (heads not named weigh 0)."""
        return RequestRanker(self, merged_weights(None, weights), weights_from)

    def describe(self) -> dict[str, Any]:
        """What ``GET /ranker`` shows: status, examples, alpha, Brier and reliability per head."""
        return {
            "status": "ready" if self.ready else "cold",
            "version": self.version,
            "examples": self.examples,
            "min_examples": self.min_examples,
            "skipped": self.skipped,
            "learned_per_head": dict(zip(HEADS, self.learner.learned.tolist(), strict=True)),
            "alpha": dict(zip(HEADS, self.learner.alpha.tolist(), strict=True)),
            "features": list(FEATURE_NAMES),
            "heads": self.reliability.summary(),
        }

    # -- files ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the ranker to ``path`` (``.npz``), atomically; return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "format": FORMAT,
            "features": list(self.weights.features),
            "heads": list(self.weights.heads),
            "examples": self.examples,
            "learned": self.learner.learned.tolist(),
            "min_examples": self.min_examples,
            "version": self.version,
        }
        buffer = io.BytesIO()
        np.savez(buffer, header=np.array(json.dumps(header)), **self.weights.arrays())
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ranker-")
        with os.fdopen(fd, "wb") as out:
            out.write(buffer.getvalue())
        os.replace(tmp, path)
        return path


def load_ranker(path: str | Path, min_examples: int | None = None) -> LearnedRanker:
    """A ranker from a file of :meth:`LearnedRanker.save`, validated before use.

    Raises
    ------
    RankerError
        A missing or unreadable file, another format, or weights that fail
        :meth:`~models.ranking.heads.HeadWeights.validate` against this
        code's features and heads.

    Examples
    --------
    >>> load_ranker("/nonexistent.npz")
    Traceback (most recent call last):
    ...
    models.ranking.ranker.RankerError: /nonexistent.npz: cannot read a ranker: FileNotFoundError
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            arrays = {k: data[k] for k in data.files if k != "header"}
    except Exception as exc:
        raise RankerError(f"{path}: cannot read a ranker: {type(exc).__name__}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise RankerError(f"{path}: not a ranker file (format {header.get('format')!r})")
    try:
        weights = HeadWeights.from_arrays(header["features"], header["heads"], arrays)
        if tuple(weights.heads) != HEADS:
            raise HeadsError(f"heads: expected {', '.join(HEADS)}")
        weights.validate(FEATURE_NAMES)
    except (HeadsError, KeyError, TypeError, ValueError) as exc:
        raise RankerError(f"{path}: refused: {exc}") from None
    learner = OnlineHeads.from_weights(weights, header.get("examples", 0), header.get("learned"))
    return LearnedRanker(
        min_examples=header.get("min_examples", DEFAULT_MIN_EXAMPLES)
        if min_examples is None
        else min_examples,
        version=str(header.get("version", Path(path).name)),
        learner=learner,
    )


#: How a logged feature row is stored: float16, 2 bytes a feature (a list of 20
#: items costs ~1.5 kB in the cached list, the impression and the outcome).
FEATURE_DTYPE = np.dtype("<f2")


def pack_features(x: np.ndarray) -> list[bytes]:
    """Each row of ``x`` as compact bytes (what impressions and outcomes carry).

    >>> unpack_features(pack_features(np.array([[0.5, 2.0]]))[0]).tolist()
    [0.5, 2.0]
    """
    rows = np.asarray(x, dtype=np.float64).clip(-6e4, 6e4).astype(FEATURE_DTYPE)
    return [row.tobytes() for row in rows]


def unpack_features(value: Any) -> np.ndarray | None:
    """A logged feature row (bytes, or a plain list) as floats; ``None`` when absent."""
    if isinstance(value, bytes | bytearray):
        if len(value) % FEATURE_DTYPE.itemsize:
            return None
        return np.frombuffer(value, dtype=FEATURE_DTYPE).astype(np.float64)
    if isinstance(value, list | tuple | np.ndarray):
        return np.asarray(value, dtype=np.float64)
    return None


def examples_of(
    outcomes: Iterable[Mapping[str, Any]],
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Feature rows, labels and ids of the outcomes that carry a full feature row."""
    width = len(FEATURE_NAMES)
    rows: list[Any] = []
    labels: list[list[int]] = []
    ids: list[str] = []
    for o in outcomes:
        try:
            features = unpack_features(o.get("features"))
        except (TypeError, ValueError):
            features = None
        if features is None or features.shape != (width,):
            continue
        rows.append(features)
        labels.append([int(bool(o.get(f"y_{h}"))) for h in HEADS])
        ids.append(str(o.get("event_id", len(ids))))
    x = np.asarray(rows, dtype=np.float64).reshape(len(rows), width)
    return x, np.asarray(labels, dtype=np.int8).reshape(len(rows), len(HEADS)), ids


class RequestRanker:
    """One list's second pass (a :class:`~models.candidates.types.Ranker`).

    After :meth:`rank`, :attr:`info` says how the list was ranked: ``status``
    (``"ranked"``, or ``"cold"`` with the first-pass order kept), the
    ``weights`` and where they came from, the ranker's version and examples.
    """

    def __init__(self, ranker: LearnedRanker, weights: dict[str, float], weights_from: str) -> None:
        self.ranker = ranker
        self.weights = weights
        self.weights_from = weights_from
        self.info: dict[str, Any] = {}

    def rank(
        self, user_id: str, candidates: Sequence[Candidate], context: Any = None
    ) -> list[Candidate]:
        """Order by utility (or keep the order when cold); annotate the items shown."""
        state = self.ranker
        head_weights = state.weights  # one read: a concurrent update swaps the reference
        ready = state.ready
        self.info = {
            "status": "ranked" if ready else "cold",
            "weights": self.weights,
            "weights_from": self.weights_from,
            "version": state.version,
            "examples": state.examples,
        }
        if not ready:
            self.info["reason"] = (
                f"cold: learned from {state.examples} of {state.min_examples} examples; "
                "first-pass order kept"
            )
        if not candidates:
            return []
        x = candidate_features(candidates, context)
        p = head_weights.probabilities(x)
        u = utility(p, self.weights)
        order = np.argsort(-u, kind="stable") if ready else np.arange(len(candidates))
        shown = getattr(context, "k", None) or len(candidates)
        w = np.array([self.weights[h] for h in HEADS])
        packed = pack_features(x[order[:shown]])
        packed = dict(zip(order[:shown].tolist(), packed, strict=True))
        out: list[Candidate] = []
        for rank, i in enumerate(order.tolist()):
            c = candidates[i]
            if rank >= shown:
                out.append(c)
                continue
            evidence = {**c.evidence, "features": packed[i]}
            if ready:
                probabilities = {h: float(p[i, j]) for j, h in enumerate(HEADS)}
                top = int(np.argmax(w * p[i])) if w.any() else 0
                evidence["p"] = probabilities
                evidence["utility"] = float(u[i])
                evidence["explanation"] = f"p({HEADS[top]}) {p[i, top]:.1%}"
            out.append(dataclasses.replace(c, evidence=evidence))
        return out
