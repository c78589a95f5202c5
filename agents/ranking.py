"""The learned ranker in the worker: serves the second pass, learns from the outcome join.

Design: **each worker learns its own ranker from its own users' outcomes.**
The outcome join is partitioned by user and runs on the worker that serves
those users, so the examples a worker needs are already local: no extra
topic, no cross-worker traffic, and learning costs one thread's share of the
outcome stream (it runs in the list-building thread, so a list is never
built while the weights change). Workers start from the same bootstrapped
file (``ranker_path``, made offline by ``tastestream rank-bootstrap``) and
drift apart only by what their users did; each checkpoints its ranker to
``data_dir/ranker/<worker_id>.npz`` every ``ranker_checkpoint_seconds`` and at
shutdown, and resumes from it (a rebalance moves users, not the ranker: the
new owner's ranker knows the same features and carries on).

A file that fails validation (:func:`models.ranking.ranker.load_ranker`) is
refused like a bad model version: the worker keeps what it has, counts
``tastestream_ranker_refused_total`` and ``GET /ranker`` says why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.metrics import Metrics
from agents.settings import Settings, SettingsError
from models.ranking.ranker import LearnedRanker, RankerError, RequestRanker, load_ranker
from models.ranking.utility import (
    DEFAULT_WEIGHTS,
    HEADS,
    WeightsError,
    merged_weights,
    parse_weights,
)

log = logging.getLogger(__name__)


def surface_weights(settings: Settings) -> dict[str, dict[str, float]]:
    """Surface -> utility weights: ``home`` by default, then ``settings.ranker_weights``.

    Raises
    ------
    SettingsError
        A weight naming an unknown engagement type, or not a number >= 0.
    """
    out = {"home": dict(DEFAULT_WEIGHTS)}
    for surface, weights in (settings.ranker_weights or {}).items():
        try:
            parsed = parse_weights(weights, f"ranker_weights.{surface}")
        except WeightsError as exc:
            raise SettingsError(str(exc)) from None
        out[str(surface)] = merged_weights(out.get(str(surface)), parsed)
    return out


def check_alpha(alpha: Mapping[str, Any]) -> dict[str, float]:
    """``settings.ranker_alpha`` checked: known heads, each a share in (0, 1].

    Raises
    ------
    SettingsError
        Naming the key at fault.
    """
    out = {}
    for head, value in (alpha or {}).items():
        if head not in HEADS:
            raise SettingsError(
                f"ranker_alpha.{head}: unknown engagement type; expected one of {', '.join(HEADS)}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise SettingsError(f"ranker_alpha.{head}: must be in (0, 1], got {value!r}")
        out[head] = float(value)
    return out


class RankerService:
    """One worker's ranker: state, files, the per-request second pass, learning."""

    def __init__(self, settings: Settings, worker_id: str, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.weights = surface_weights(settings)
        self.checkpoint_path = settings.data_path / "ranker" / f"{worker_id}.npz"
        self.ranker = LearnedRanker(
            alpha=check_alpha(settings.ranker_alpha), min_examples=settings.ranker_min_examples
        )
        #: The last refusal: {"path", "reason", "at"}.
        self.refused: dict[str, Any] | None = None
        self.source = "new (cold)"
        self._saved_examples = 0
        # Its own checkpoint first (what it learned before a restart), else the bootstrap.
        resumed = self.checkpoint_path.exists() and self.load(self.checkpoint_path)
        if not resumed and settings.ranker_path:
            self.load(settings.ranker_path)

    # -- files ---------------------------------------------------------------------
    def _refuse(self, path: Path, reason: str) -> None:
        self.refused = {"path": str(path), "reason": reason, "at": time.time()}
        self.metrics.inc("tastestream_ranker_refused_total")
        log.error("ranker %s refused: %s", path, reason)

    def load(self, path: str | Path) -> bool:
        """Swap in the ranker at ``path`` if it validates; else keep this one (False)."""
        path = Path(path)
        try:
            loaded = load_ranker(path, min_examples=self.settings.ranker_min_examples)
        except RankerError as exc:
            self._refuse(path, str(exc))
            return False
        self.ranker = loaded
        self.source = str(path)
        self._saved_examples = loaded.examples
        log.info("ranker loaded from %s (%d examples)", path, loaded.examples)
        return True

    def checkpoint(self) -> bool:
        """Save the ranker if it learned since the last save; return whether it saved."""
        if self.ranker.examples == self._saved_examples:
            return False
        self.ranker.save(self.checkpoint_path)
        self._saved_examples = self.ranker.examples
        return True

    # -- serving ---------------------------------------------------------------------
    def for_request(
        self,
        surface: str,
        override: Mapping[str, float] | None = None,
        variant: Mapping[str, float] | None = None,
    ) -> RequestRanker | None:
        """The second pass of one list, or ``None`` when ``surface`` is not ranked.

        Weights: the surface's, then the experiment variant's, then the request's.
        """
        base = self.weights.get(surface)
        if base is None or not self.settings.ranker_enabled:
            return None
        weights = merged_weights(base, variant)
        weights_from = "variant" if variant else "surface"
        if override:
            weights = merged_weights(weights, override)
            weights_from = "request"
        return self.ranker.for_request(weights, weights_from)

    # -- learning ----------------------------------------------------------------------
    def learn(self, outcomes: list[Mapping[str, Any]]) -> int:
        """Learn from closed outcomes (blocking: run it in the list-building thread)."""
        started = time.perf_counter()
        learned = self.ranker.learn_outcomes(outcomes)
        if learned:
            self.metrics.inc("tastestream_ranker_examples_total", learned)
            self.metrics.observe("tastestream_ranker_learn_seconds", time.perf_counter() - started)
            for head, found in self.ranker.reliability.summary().items():
                if found["brier"] is None:
                    continue
                self.metrics.set("tastestream_ranker_brier", found["brier"], {"head": head})
                for row in found["table"]:
                    labels = {"head": head, "bin": f"{row['bin'][0]:.1f}"}
                    self.metrics.set(
                        "tastestream_ranker_reliability_predicted", row["predicted"], labels
                    )
                    self.metrics.set(
                        "tastestream_ranker_reliability_observed", row["observed"], labels
                    )
        self.metrics.set("tastestream_ranker_ready", int(self.ranker.ready))
        return learned

    def describe(self) -> dict[str, Any]:
        """``GET /ranker``: state, weights per surface, Brier and reliability per head."""
        return {
            **self.ranker.describe(),
            "enabled": self.settings.ranker_enabled,
            "source": self.source,
            "checkpoint": str(self.checkpoint_path),
            "refused": self.refused,
            "weights": self.weights,
            "engagement_types": list(HEADS),
        }


def register(app: Any, service: RankerService, executor: Any) -> None:
    """The checkpoint timer and the shutdown save."""
    settings = service.settings

    @app.timer(interval=settings.ranker_checkpoint_seconds)
    async def checkpoint_ranker() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(executor, service.checkpoint)
        except Exception as exc:  # a full disk must not stop the worker: the next tick retries
            log.warning("ranker checkpoint failed: %r", exc)

    @app.on_before_shutdown.connect
    async def save_ranker(app: Any, **kwargs: Any) -> None:
        try:
            service.checkpoint()
        except Exception as exc:
            log.warning("ranker checkpoint at shutdown failed: %r", exc)
