"""Experiments in the worker: which arm serves a request, the guard, and ``GET /experiments``.

How a running experiment reaches every worker: the **compacted topic**
``<prefix>.experiments``, keyed by experiment name, each record the whole
experiment (definition, run, shares, stopped variants; :mod:`models.experiments`).
Every worker reads it whole from the beginning without a consumer group
(:class:`~agents.mirror.TopicReader`) and keeps the latest record per name.
Why a topic and not the config file: the file starts the definitions (the CLI
reads it), but a ramp, a stop, or the guard of one worker stopping a variant
must reach every worker within a second, without restarts and in one order;
a worker started later (or on another host, with another copy of the file)
learns the current state from the topic itself. The file alone cannot do that;
a file plus a control topic would leave two sources of truth to reconcile.

Per request, :meth:`ExperimentService.arm` gives the :class:`Arm`: the
experiment and variant of the user on that surface (exempt users and
surfaces without an experiment get the plain arm), and what the variant
serves: its surfaces (the configured ones with its recipe laid over), its
model (a pinned version, loaded beside the live one), personalisation, ranker
weights. A stopped variant's users get the control's arm, still labelled with
their own variant and ``served_as`` the control.

The **guard** watches each variant's last requests on this worker (error rate
and p95 latency, :class:`~models.experiments.Guard`) and, past a threshold,
stops the variant for every worker (a record on the topic), logs a warning and
counts ``tastestream_experiment_guard_stops_total``.

Per-variant statistics come from the join's per-partition sums
(:mod:`agents.impressions`), which every worker publishes to
``<prefix>.experiment-metrics``; any worker adds them up for ``GET /experiments/{name}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.metrics import Metrics
from agents.mirror import TopicReader
from agents.settings import Settings
from models.experiments import (
    LATENCY_BUCKETS_MS,
    Experiment,
    ExperimentError,
    Moments,
    p95,
    report,
)
from models.surfaces import Surface, SurfaceError, load_surfaces

log = logging.getLogger(__name__)

GUARD_STOPS = "tastestream_experiment_guard_stops_total"


@dataclass(frozen=True)
class Arm:
    """What serves one request: the plain recipe, or a variant of an experiment."""

    surfaces: Mapping[str, Surface]
    experiment: str | None = None
    run: str | None = None
    variant: str | None = None
    #: The variant whose treatment is served (the control once ``variant`` is stopped).
    served_as: str | None = None
    personalised: bool = True
    model_version: str | None = None
    model: Any = None
    ranker_weights: Mapping[str, float] | None = None
    delay_ms: float = 0.0

    def label(self) -> dict[str, Any]:
        """The fields every served list carries."""
        out: dict[str, Any] = {"experiment": self.experiment, "variant": self.variant}
        if self.served_as is not None and self.served_as != self.variant:
            out["served_as"] = self.served_as
        if self.ranker_weights is not None:
            out["ranker_weights"] = dict(self.ranker_weights)
        return out


def variant_surfaces(
    base: Mapping[str, Mapping[str, Any]], recipe: Mapping[str, Mapping[str, float]]
) -> dict[str, Surface]:
    """The configured surfaces with a variant's recipe laid over them (``load_surfaces``)."""
    merged = {name: dict(weights) for name, weights in base.items()}
    for name, weights in recipe.items():
        merged.setdefault(name, {}).update(weights)
    return load_surfaces(merged)


def check_definition(settings: Settings, experiment: Experiment) -> None:
    """Raise :class:`ExperimentError` if a variant's recipe or a surface is unknown."""
    known = load_surfaces(settings.surfaces or None)
    for surface in experiment.surfaces:
        if surface not in known:
            raise ExperimentError(
                f"experiments.{experiment.name}.surfaces: unknown surface {surface!r}; "
                f"expected one of {', '.join(sorted(known))}"
            )
    for v in experiment.variants:
        try:
            variant_surfaces(settings.surfaces or {}, v.recipe)
        except SurfaceError as exc:
            raise ExperimentError(
                f"experiments.{experiment.name}.variants.{v.name}.recipe: {exc}"
            ) from None


def merge_records(current: Experiment | None, newer: Experiment) -> Experiment:
    """The newer record, keeping stops of the same run (a guard and a ramp may race).

    Within one run stopped variants only accumulate: a ramp written from an
    older copy must not restart a variant the guard stopped meanwhile.
    """
    if current is None or current.run != newer.run or newer.status != "running":
        return newer
    stops = {**current.stopped_variants, **newer.stopped_variants}
    if stops == dict(newer.stopped_variants):
        return newer
    from dataclasses import replace

    return replace(newer, stopped_variants=stops)


def publish_experiment(settings: Settings, experiment: Experiment, timeout: float = 10.0) -> None:
    """Write ``experiment``'s record to the control topic and wait for the broker (blocking)."""
    from agents.producer import kafka_producer

    producer = kafka_producer(settings, **{"linger.ms": 0})
    failures: list[str] = []
    producer.produce(
        settings.topics.experiments.name,
        key=experiment.name.encode(),
        value=json.dumps(experiment.as_record()).encode(),
        partition=0,
        on_delivery=lambda err, msg: failures.append(str(err)) if err else None,
    )
    if producer.flush(timeout) or failures:
        raise ConnectionError(
            f"the broker did not take the record of {experiment.name!r}: "
            f"{failures[0] if failures else 'timed out'}"
        )


def read_experiments(settings: Settings) -> dict[str, Experiment]:
    """The latest record of every experiment on the control topic (blocking)."""
    from agents.offsets import read_partition, true_end_offsets

    topic = settings.topics.experiments.name
    end = true_end_offsets(settings.kafka_client_config(), [(topic, 0)])[(topic, 0)]
    found: dict[str, Experiment] = {}
    for value in read_partition(settings.kafka_client_config(), topic, 0, 0, end):
        newer = parse_record(value)
        if newer is not None:
            found[newer.name] = merge_records(found.get(newer.name), newer)
    return found


def parse_record(value: bytes) -> Experiment | None:
    """An experiment from a control-topic record, or ``None`` (logged) if it is unusable."""
    try:
        raw = json.loads(value)
        return Experiment.from_definition(raw.get("name", ""), raw, where="record")
    except (ValueError, AttributeError) as exc:
        log.warning("experiments topic: ignoring a record: %s", exc)
        return None


@dataclass
class _Window:
    """A variant's last requests on this worker, for its guard."""

    latencies: deque = field(default_factory=deque)
    errors: deque = field(default_factory=deque)


class ExperimentService:
    """The running experiments as this worker sees them; see the module docstring."""

    def __init__(self, settings: Settings, metrics: Metrics, models: Any) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models = models
        try:
            self.surfaces = load_surfaces(settings.surfaces or None)
        except SurfaceError as exc:
            raise ValueError(f"settings.surfaces: {exc}") from None
        self.plain = Arm(self.surfaces)
        self.experiments: dict[str, Experiment] = {}
        #: run key -> partition -> that partition's sums (from the experiment-metrics topic).
        self.partition_sums: dict[int, dict[str, Any]] = {}
        self._arms: dict[tuple[str, str, int, str], Arm | None] = {}
        self._windows: dict[tuple[str, str, str], _Window] = {}
        self._stopping: set[tuple[str, str, str]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.readers: list[TopicReader] = []

    # -- the control topic ---------------------------------------------------------
    def start(self) -> None:
        """Read the control and metrics topics (in threads) from the beginning."""
        self._loop = asyncio.get_running_loop()
        topics = self.settings.topics
        for topic, apply in (
            (topics.experiments.name, self._apply_record),
            (topics.experiment_metrics.name, self._apply_sums),
        ):
            reader = TopicReader(
                self.settings.kafka_client_config(),
                topic,
                lambda key, value, apply=apply: self._on_loop(apply, value),
                name=topic,
            )
            self.readers.append(reader.start())

    def stop(self) -> None:
        for reader in self.readers:
            reader.stop()

    def _on_loop(self, apply: Any, value: bytes) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(apply, value)

    def _apply_record(self, value: bytes) -> None:
        newer = parse_record(value)
        if newer is None:
            self.metrics.inc("tastestream_experiment_records_refused_total")
            return
        self.apply(newer)

    def apply(self, newer: Experiment) -> None:
        """Take an experiment's newer record (from the topic, or this worker's guard)."""
        current = self.experiments.get(newer.name)
        merged = merge_records(current, newer)
        self.experiments[newer.name] = merged
        self._arms.clear()
        if current is None or current.status != merged.status or current.run != merged.run:
            log.info("experiment %s: %s (run %s)", merged.name, merged.status, merged.run)

    def _apply_sums(self, value: bytes) -> None:
        try:
            record = json.loads(value)
            self.partition_sums[int(record["partition"])] = record["runs"]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("experiment-metrics topic: ignoring a record: %s", exc)

    # -- serving ----------------------------------------------------------------------
    def running_on(self, surface: str) -> Experiment | None:
        """The running experiment of ``surface`` (the first by name if several claim it)."""
        for name in sorted(self.experiments):
            experiment = self.experiments[name]
            if experiment.status == "running" and surface in experiment.surfaces:
                return experiment
        return None

    def arm(self, user_id: str, surface: str) -> Arm:
        """What serves ``user_id`` on ``surface`` now."""
        experiment = self.running_on(surface)
        if experiment is None:
            return self.plain
        variant = experiment.variant_of(user_id)
        if variant is None:
            return self.plain
        served = experiment.served_variant(variant)
        key = (experiment.name, experiment.run, experiment.revision, f"{variant}>{served}")
        arm = self._arms.get(key)
        if key not in self._arms:
            arm = self._arms[key] = self._build_arm(experiment, variant, served)
        if arm is None:
            return self.plain
        if arm.model_version is not None and arm.model is None:
            # A pinned version: serve only once it is loaded (till then the user is exempt).
            model = self.models.pinned(arm.model_version)
            if model is None:
                self.metrics.inc("tastestream_experiment_unready_total")
                return self.plain
            from dataclasses import replace

            arm = self._arms[key] = replace(arm, model=model)
        return arm

    def _build_arm(self, experiment: Experiment, variant: str, served: str) -> Arm | None:
        spec = experiment.variant_named(served)
        try:
            surfaces = variant_surfaces(self.settings.surfaces or {}, spec.recipe)
        except SurfaceError as exc:
            log.error("experiment %s variant %s cannot serve: %s", experiment.name, served, exc)
            return None
        return Arm(
            surfaces,
            experiment=experiment.name,
            run=experiment.run,
            variant=variant,
            served_as=served,
            personalised=spec.personalised,
            model_version=spec.model_version,
            ranker_weights=spec.ranker_weights,
            delay_ms=spec.delay_ms,
        )

    # -- the guard ------------------------------------------------------------------------
    def observe(self, arm: Arm, surface: str, channel: str, latency: float, error: bool) -> None:
        """Count one served list of ``arm``; stop its variant when it crosses the guard."""
        if arm.experiment is None:
            return
        labels = {"experiment": arm.experiment, "variant": arm.variant or "", "channel": channel}
        self.metrics.inc("tastestream_experiment_lists_total", labels=labels)
        # counted as 0 too: the series exists before the first error, for rates and alerts
        self.metrics.inc("tastestream_experiment_errors_total", int(error), labels)
        experiment = self.experiments.get(arm.experiment)
        if (
            experiment is None
            or arm.served_as == experiment.control
            or arm.served_as != arm.variant
            or channel == "redis"  # background refreshes are not requests
        ):
            return
        guard = experiment.guard
        key = (experiment.name, experiment.run, arm.variant or "")
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(
                deque(maxlen=guard.window), deque(maxlen=guard.window)
            )
        window.latencies.append(latency * 1000.0)
        window.errors.append(1 if error else 0)
        if len(window.latencies) < guard.min_requests or key in self._stopping:
            return
        error_rate = sum(window.errors) / len(window.errors)
        slow = p95(window.latencies)
        reason = None
        if error_rate > guard.max_error_rate:
            reason = f"error rate {error_rate:.1%} > {guard.max_error_rate:.1%}"
        elif slow > guard.max_p95_ms:
            reason = f"p95 latency {slow:.0f} ms > {guard.max_p95_ms:g} ms"
        if reason is not None:
            self._stopping.add(key)
            self._trip(experiment, arm.variant or "", reason, len(window.latencies))

    def _trip(self, experiment: Experiment, variant: str, reason: str, requests: int) -> None:
        text = f"{reason} over the last {requests} requests on {self.settings.worker_id or 'a'}"
        stopped = experiment.stopped(time.time(), variant, f"guard: {text}")
        self.apply(stopped)
        self.metrics.inc(
            GUARD_STOPS,
            labels={
                "experiment": experiment.name,
                "variant": variant,
                "reason": "errors" if reason.startswith("error") else "latency",
            },
        )
        log.warning(
            json.dumps(
                {
                    "event": "experiment_guard_stop",
                    "experiment": experiment.name,
                    "run": experiment.run,
                    "variant": variant,
                    "reason": text,
                    "served_instead": experiment.control,
                }
            )
        )
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(asyncio.to_thread(self._publish_retrying, stopped))
        task.add_done_callback(lambda t: t.exception())

    def _publish_retrying(self, experiment: Experiment) -> None:
        for attempt in range(30):
            try:
                publish_experiment(self.settings, experiment)
                return
            except Exception as exc:
                log.warning("publishing the stop of %s failed (%s); retrying", experiment.name, exc)
                time.sleep(min(2.0**attempt, 10.0))

    # -- reports ------------------------------------------------------------------------
    def report(self, name: str) -> dict[str, Any] | None:
        """``GET /experiments/{name}``: the current run's statistics, or None if unknown."""
        experiment = self.experiments.get(name)
        if experiment is None:
            return None
        moments: dict[str, Moments] = {}
        latency: dict[str, list[float]] = {}
        partitions = 0
        key = f"{experiment.name}\x1f{experiment.run}"
        for runs in self.partition_sums.values():
            entry = runs.get(key)
            if entry is None:
                continue
            partitions += 1
            for variant, (state, counts) in entry["variants"].items():
                moments.setdefault(variant, Moments()).add(Moments.from_state(state))
                into = latency.setdefault(variant, [0.0] * (len(LATENCY_BUCKETS_MS) + 1))
                for i, count in enumerate(counts):
                    into[i] += count
        body = report(experiment, moments, latency)
        body["partitions_reporting"] = partitions
        body["partitions"] = self.settings.partitions
        return body

    def summaries(self) -> list[dict[str, Any]]:
        """Every experiment this worker knows, newest first, with its shares and stops."""
        out = []
        for experiment in sorted(self.experiments.values(), key=lambda e: -(e.updated_at or 0.0)):
            out.append(experiment.as_record())
        return out


def register(app: Any, service: ExperimentService) -> None:
    """Read the topics while the app runs; serve ``GET /experiments`` and ``/experiments/NAME``."""
    from faust import web

    from agents.views import authorised, error

    @app.task
    async def start_experiments() -> None:
        service.start()

    @app.on_before_shutdown.connect
    async def stop_experiments(app: Any, **kwargs: Any) -> None:
        service.stop()

    @app.page("/experiments")
    class Experiments(web.View):
        async def get(self, request: web.Request) -> web.Response:
            if not authorised(app.services, request, write=False):
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            return self.json({"experiments": service.summaries()})

    @app.page("/experiments/{name}")
    class ExperimentReport(web.View):
        async def get(self, request: web.Request, name: str) -> web.Response:
            if not authorised(app.services, request, write=False):
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            body = service.report(name)
            if body is None:
                known = ", ".join(sorted(service.experiments)) or "none"
                return error(self, 404, f"no experiment {name!r} (known: {known})", name=name)
            return self.json(body)
