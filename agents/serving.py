"""Model serving in the worker: blue/green hot swap of trained model versions.

StockX's zero-downtime retraining (DESIGN.md, source 2): the new version is
loaded beside the live one, health-checked, then one pointer flips traffic to
it; the previous version stays in memory for an instant rollback.

* :class:`ModelSlots` is the plain core (no Faust, no Kafka): the live and
  previous :class:`~models.model_version.LoadedModel` behind ONE reference (a
  tuple), so a reader always sees a consistent pair and never waits; loading,
  validation (checksums, finite vectors, canary queries) and the switch.
* :class:`ModelServer` drives it in a worker: announcements from
  ``<prefix>.model-updates`` are loaded in a thread (``asyncio.to_thread``),
  never on the event loop; refusals and swaps are counted in ``app.metrics``.
* :class:`AnnouncementListener` reads the model-updates topic in a background
  thread (:class:`agents.mirror.TopicReader`: every partition assigned, no
  consumer group, so every worker sees every announcement), from the end
  (``CURRENT`` covers what came before), and hands messages to the event loop
  with ``loop.call_soon_threadsafe``.
* :func:`register` wires all of it into the Faust app (``app.serving``,
  ``GET /models``).

Examples
--------
>>> slots = ModelSlots()
>>> slots.live_version is None, slots.similar("i1", "click", "cart", 5)
(True, None)
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agents.metrics import Metrics
from agents.mirror import TopicReader
from agents.settings import Settings
from models.model_version import (
    LoadedModel,
    ModelVersionError,
    current_version,
    load_version,
)

log = logging.getLogger(__name__)

#: A version's name: one path component, no traversal.
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

SWAPS = "tastestream_model_swaps_total"
REFUSED = "tastestream_model_refused_total"
LIVE_INFO = "tastestream_model_live_info"


def models_roots(settings: Settings) -> list[Path]:
    """``<data_dir>/models`` then every ``model_publish_dirs`` entry (comma-separated)."""
    extra = getattr(settings, "model_publish_dirs", "") or ""
    roots = [settings.data_path / "models"]
    roots += [Path(p.strip()).expanduser().resolve() for p in extra.split(",") if p.strip()]
    return list(dict.fromkeys(roots))


# ------------------------------------------------------------------- the core
class ModelSlots:
    """Live and previous model behind one reference; validation and the switch.

    Readers (:meth:`similar`, :meth:`user_scores`) read ``self._slots`` once
    and use that model to the end of the call: a swap in the middle changes
    nothing for them. Writers are serialised by the caller (one loader at a time).

    Parameters
    ----------
    canaries
        Tokens per type checked by :meth:`validate` (the most frequent ones).
    freeze_gc
        ``gc.freeze()`` after each load (see :meth:`load`).
    """

    def __init__(self, canaries: int = 3, freeze_gc: bool = True) -> None:
        self.freeze_gc = freeze_gc
        self._slots: tuple[LoadedModel | None, LoadedModel | None] = (None, None)
        self.canaries = canaries
        self.swaps = 0
        self.refused: deque[dict[str, Any]] = deque(maxlen=20)
        self._refused_keys: set[tuple[str, str | None]] = set()

    # -- state
    @property
    def live(self) -> LoadedModel | None:
        return self._slots[0]

    @property
    def previous(self) -> LoadedModel | None:
        return self._slots[1]

    @property
    def live_version(self) -> str | None:
        live = self._slots[0]
        return None if live is None else live.version

    def was_refused(self, version: str, checksum: str | None) -> bool:
        return (version, checksum) in self._refused_keys

    # -- reads (never raise for unknown ids; None when nothing can answer)
    def similar(
        self, item_id: str, from_type: str, to_type: str, k: int = 10
    ) -> list[dict[str, Any]] | None:
        live = self._slots[0]
        return None if live is None else live.similar(item_id, from_type, to_type, k)

    def user_scores(
        self, user_id: str, k: int = 10, exclude: tuple[str, ...] | list[str] = ()
    ) -> list[dict[str, Any]] | None:
        live = self._slots[0]
        return None if live is None else live.user_scores(user_id, k, exclude)

    # -- writes
    def validate(self, model: LoadedModel) -> None:
        """Health check before a switch; raises :class:`ModelVersionError` with the reason."""
        emb = model.embedding
        if len(emb.vocab) == 0 or len(model.index) == 0:
            raise ModelVersionError(f"{model.version}: empty model")
        if not np.isfinite(emb.vectors).all():
            raise ModelVersionError(f"{model.version}: embedding has non-finite values")
        mf = model.factorization
        if mf is not None and not (
            np.isfinite(mf.item_factors).all() and np.isfinite(mf.user_factors).all()
        ):
            raise ModelVersionError(f"{model.version}: MF factors have non-finite values")
        for kind in model.index.types():
            # vocab is sorted by count: the first tokens of a type are its best-known
            of_kind = [t for t in emb.vocab if t[1] == kind]
            want = min(10, len(of_kind) - 1)
            for token in of_kind[: self.canaries]:
                vector = emb.vector(token)
                if vector is None or not np.isfinite(vector).all():
                    raise ModelVersionError(f"{model.version}: canary {token} has no finite vector")
                found = model.index.neighbours(token, kind, want)
                if len(found) < want or not all(np.isfinite(s) for _, s in found):
                    raise ModelVersionError(
                        f"{model.version}: canary {token} got {len(found)} of {want} neighbours"
                    )

    def load(self, path: str | Path, expected_checksum: str | None = None) -> LoadedModel:
        """Load and validate a version (blocking: run it in a thread).

        Why the gc calls: a load allocates tens of thousands of objects, which
        sets off full cyclic collections; each holds the GIL for as long as
        the whole heap takes to walk (~100 ms in a busy process), stalling the
        event loop that serves requests. Collection is paused during the load
        and the loaded model is then frozen out of the collector's sight
        (``gc.freeze``); refcounting still frees it when it is dropped.
        """
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            model = load_version(path, verify=True, expected_checksum=expected_checksum)
            self.validate(model)
        finally:
            if self.freeze_gc:
                gc.freeze()
            if was_enabled:
                gc.enable()
        return model

    def release_previous(self) -> None:
        """Drop the previous version so that a load keeps at most two in memory."""
        self._slots = (self._slots[0], None)

    def install(self, model: LoadedModel) -> None:
        """Make ``model`` live, the live one previous: one assignment."""
        live = self._slots[0]
        if live is not None and live.version == model.version:
            self._slots = (model, self._slots[1])
        else:
            self._slots = (model, live)
        self.swaps += 1

    def rollback(self, version: str | None = None) -> bool:
        """Swap live and previous if previous is ``version`` (any, when None)."""
        live, previous = self._slots
        if previous is None or (version is not None and previous.version != version):
            return False
        self._slots = (previous, live)
        self.swaps += 1
        return True

    def refuse(self, version: str, checksum: str | None, reason: str) -> None:
        # CURRENT polling asks without a checksum: remember the version under both keys.
        self._refused_keys.update({(version, checksum), (version, None)})
        self.refused.append(
            {"version": version, "checksum": checksum, "reason": reason, "at": time.time()}
        )

    def status(self) -> dict[str, Any]:
        live, previous = self._slots

        def describe(model: LoadedModel | None) -> dict[str, Any] | None:
            if model is None:
                return None
            info = model.info
            return {
                "version": info.version,
                "created_at": info.created_at,
                "checksum": info.checksum,
                "path": str(info.path),
                "data": info.data,
                "metrics": info.metrics,
            }

        return {
            "live": describe(live),
            "previous": describe(previous),
            "swaps": self.swaps,
            "refused": list(self.refused),
        }


# ------------------------------------------------------ the Kafka listener
class AnnouncementListener(TopicReader):
    """Reads the model-updates topic in a thread, without a consumer group.

    Every worker must see every announcement, which a shared group would
    prevent; it starts at the end (``CURRENT`` covers what came before).

    Parameters
    ----------
    bootstrap
        ``host:port`` list.
    topic
        The model-updates topic (must exist).
    on_message
        Called in the listener thread with each decoded announcement.
    """

    def __init__(
        self,
        bootstrap: str | dict[str, str],
        topic: str,
        on_message: Callable[[dict[str, Any]], None],
    ) -> None:
        super().__init__(bootstrap, topic, self._decode, from_beginning=False, name="model-updates")
        self.on_message = on_message

    def _decode(self, key: bytes | None, value: bytes) -> None:
        try:
            announcement = json.loads(value)
            if not isinstance(announcement, dict) or "version" not in announcement:
                raise ValueError("not an announcement object")
        except ValueError as exc:
            log.warning("model-updates: ignoring undecodable message: %s", exc)
            return
        self.on_message(announcement)


# ------------------------------------------------------- the worker's server
class ModelServer:
    """The worker's model: announcements in, blue/green swap, metrics out.

    Parameters
    ----------
    settings
        For the models roots, the broker and the topic name.
    metrics
        Where swaps, refusals and the live version are counted.
    """

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.metrics.help[SWAPS] = "model versions switched live (publish or rollback)"
        self.metrics.help[REFUSED] = "model versions refused by validation"
        self.metrics.help[LIVE_INFO] = "1 for the live model version"
        for counter in (SWAPS, REFUSED):  # present at 0 before the first swap or refusal
            self.metrics.inc(counter, 0)
        self.slots = ModelSlots()
        self.roots = models_roots(settings)
        self.listener: AnnouncementListener | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()
        #: Versions experiments serve beside the live one: version -> model (None: failed).
        self._pinned: dict[str, LoadedModel | None] = {}

    # -- queries for the views
    @property
    def live_version(self) -> str | None:
        return self.slots.live_version

    @property
    def live_model(self) -> LoadedModel | None:
        """The live version (``.index``, ``.factorization``, ``.version``) or None."""
        return self.slots.live

    def similar(
        self, item_id: str, from_type: str, to_type: str, k: int = 10
    ) -> list[dict[str, Any]] | None:
        """Nearest ``to_type`` items to ``(item_id, from_type)``; None: no model, unknown token."""
        return self.slots.similar(item_id, from_type, to_type, k)

    def user_scores(
        self, user_id: str, k: int = 10, exclude: tuple[str, ...] | list[str] = ()
    ) -> list[dict[str, Any]] | None:
        """MF top ``k`` for the user; None: no model or unknown user."""
        return self.slots.user_scores(user_id, k, exclude)

    def pinned(self, version: str) -> LoadedModel | None:
        """A version an experiment serves beside the live one, or None while it loads.

        The first call starts loading it in a thread (checksums and canaries,
        as for a swap); a version that fails is refused and stays None.
        """
        live = self.slots.live
        if live is not None and live.version == version:
            return live
        if version in self._pinned:
            return self._pinned[version]
        self._pinned[version] = None

        async def load() -> None:
            try:
                path = self._resolve(version, None)
                self._pinned[version] = await asyncio.to_thread(self.slots.load, path)
                log.info("model %s loaded for an experiment", version)
            except Exception as exc:
                self._refuse(version, None, f"pinned by an experiment: {exc}")

        task = asyncio.ensure_future(load())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    def status(self) -> dict[str, Any]:
        """What ``GET /models`` shows: live, previous, swaps, refusals, listening."""
        listening = self.listener is not None and self.listener.assigned.is_set()
        pinned = sorted(v for v, m in self._pinned.items() if m is not None)
        return {**self.slots.status(), "listening": listening, "pinned": pinned}

    # -- lifecycle
    async def start(self, listen: bool = True) -> None:
        """Listen for announcements (if ``listen``), then load CURRENT if there is one."""
        self._loop = asyncio.get_running_loop()
        if listen and self.settings.kafka_url:
            topic = self.settings.topics.model_updates.name
            self.listener = AnnouncementListener(
                self.settings.kafka_client_config(), topic, self._from_thread
            ).start()
        await self.check_current()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None

    def _from_thread(self, announcement: dict[str, Any]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._spawn, announcement)

    def _spawn(self, announcement: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self.apply(announcement))
        self._tasks.add(task)  # keep a reference until done (asyncio holds only weak ones)
        task.add_done_callback(self._tasks.discard)

    # -- the swap
    def _resolve(self, version: str, path: str | None) -> Path:
        """The version's directory: under one of the configured model roots, or refused.

        Anyone who can write to the model-updates topic can announce; nobody
        may make a worker load a directory outside the roots it was given.
        """
        if not VERSION_NAME.fullmatch(version):
            raise ModelVersionError(f"version name {version[:80]!r} is not a plain name")
        roots = [root.resolve() for root in self.roots]
        if path:
            announced = Path(path).resolve()
            if not any(announced == root / version for root in roots):
                raise ModelVersionError(
                    f"announced path {path[:200]!r} is not {version!r} under a model root"
                )
        candidates = [root / version for root in roots]
        for candidate in candidates:
            if (candidate / "manifest.json").is_file():
                return candidate
        return candidates[0]

    async def check_current(self) -> bool:
        """Load the version CURRENT points at when it is not live (start-up, polling)."""
        for root in self.roots:
            version = current_version(root)
            if version is None:
                continue
            if version == self.live_version or self.slots.was_refused(version, None):
                return True
            return await self.apply(
                {"action": "current", "version": version, "path": str(root / version)}
            )
        return False

    async def apply(self, announcement: dict[str, Any]) -> bool:
        """Act on one announcement; True when the announced version is live afterwards."""
        if self._lock is None:
            self._lock = asyncio.Lock()  # FIFO: announcements apply in arrival order
        action = announcement.get("action", "publish")
        version = str(announcement.get("version", ""))
        checksum = announcement.get("checksum")
        async with self._lock:
            live = self.slots.live
            same = live is not None and live.version == version
            if same and checksum in (None, live.info.checksum):
                return True
            if action == "publish" and live is not None and version < live.version:
                # ("current", from CURRENT polling, is authoritative and not subject to this)
                # a stale replay: newer versions win unless an operator rolls back
                log.info("model %s is older than live %s; ignored", version, live.version)
                return False
            if action == "rollback" and self.slots.rollback(version):
                self._swapped("rollback")
                return True
            if self.slots.was_refused(version, checksum):
                return False
            if action == "publish" and not checksum:
                return self._refuse(
                    version, checksum, "a published version must carry its checksum"
                )
            try:
                path = self._resolve(version, announcement.get("path"))
            except ModelVersionError as exc:
                return self._refuse(version, checksum, str(exc))
            self.slots.release_previous()
            try:
                model = await asyncio.to_thread(self.slots.load, path, checksum)
            except Exception as exc:
                reason = str(exc) if isinstance(exc, ModelVersionError) else repr(exc)
                self.slots.refuse(version, checksum, reason)
                self.metrics.inc(REFUSED)
                log.error(
                    "model %s refused, %s keeps serving: %s", version, live and live.version, reason
                )
                return False
            self.slots.install(model)
            self._swapped(action)
            return True

    def _refuse(self, version: str, checksum: str | None, reason: str) -> bool:
        self.slots.refuse(version, checksum, reason)
        self.metrics.inc(REFUSED)
        log.error("model announcement %s refused: %s", version[:80], reason)
        return False

    def _swapped(self, action: str) -> None:
        self.metrics.inc(SWAPS)
        self.metrics.clear(LIVE_INFO)
        self.metrics.set(LIVE_INFO, 1, {"version": self.live_version or ""})
        log.info("model %s live (%s)", self.live_version, action)


# ------------------------------------------------------------------ wiring
def register(app: Any, server: ModelServer) -> ModelServer:
    """Run ``server`` in the app (start, poll ``CURRENT``, stop) and serve ``GET /models``."""
    from faust import web

    @app.task
    async def start_model_server() -> None:
        await server.start()

    poll = float(server.settings.model_poll_seconds)
    if poll > 0:

        @app.timer(interval=poll)
        async def poll_current_model() -> None:
            # Covers announcements made while this worker was down or not yet listening.
            await server.check_current()

    @app.on_before_shutdown.connect
    async def stop_model_server(app: Any, **kwargs: Any) -> None:
        server.stop()

    @app.page("/models")
    class Models(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json(server.status())

    return server


__all__ = ["AnnouncementListener", "ModelServer", "ModelSlots", "models_roots", "register"]
