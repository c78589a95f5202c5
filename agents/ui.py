"""A page per user: look at the recommendations, don't read ids (StockX's lesson).

``GET /``
    Redirects to the page of a user this worker has seen lately (or to
    ``/ui``, which says how to get events in, when it has seen none).
``GET /ui/users/{user_id}``
    HTML (``agents/ui_page.html``, inline JS and SVG, no build step, nothing
    from the internet): the user's recent history beside their lists per
    surface (home, cart, and the item surface for the last viewed item) with
    sources, reasons, categories and sellers, refreshed every second from the
    worker's own API; below, a 2D map of the item embedding space, items
    coloured by category (the most common ones; the rest "other"), the user's
    path as a line and the user as a dot (Whatnot's figure).
``GET /ui/api/users/{user_id}/map``
    The map as JSON: ``{"model_version", "status": "ready"|"computing"|"no_model"|"failed",
    "method": "umap"|"graph"|"pca", "items": [{"item_id", "x", "y", "category"}],
    "trajectory": [{"item_id", "type", "ts", "x", "y"}], "user": {"x", "y"}|null,
    "message"}``. Routed to the worker that owns the user (their trajectory).
``GET /ui/operator``
    The operator's page (:mod:`agents.ui_operator`): experiments, model
    versions with a rollback, dead letters.
``GET /ui/api/items?ids=a,b``
    ``{"items": {id: {"category", "seller"}}}`` from this worker's catalogue, for
    history events and recommendations that carry no item attributes.

The projection (:func:`models.projection.fit_projection`: UMAP when installed,
else a neighbourhood-graph layout) is computed once per model version, in a
background thread (the first request for a new version answers
``computing``), over at most :data:`MAP_ITEMS` items, the model's most
frequent ones. Everything the page reads from the worker's state goes
through :func:`page_data`, the one place to change when the state layer does.

Examples
--------
>>> import numpy as np
>>> from models.token_embedding import TokenEmbedding
>>> emb = TokenEmbedding()
>>> emb.vocab = [("a", "click"), ("b", "click"), ("c", "cart"), ("a", "cart")]
>>> emb.vectors = np.array([[1, 0], [0, 1], [1, 1], [1, 0.1]], dtype=np.float32)
>>> item_map = ItemMap.build("v1", emb, method="pca")
>>> item_map.method, len(item_map.items), sorted(item_map.locate(["a", "zzz"]))
('pca', 3, ['a'])
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from models.projection import Projection, fit_projection, item_vectors
from models.trajectory import DEFAULT_TYPE_WEIGHTS

log = logging.getLogger(__name__)

#: Items drawn on the map at most (the model's most frequent ones).
MAP_ITEMS = 3000
#: Trajectory tokens drawn, and how many of the latest make the user's dot.
TRAJECTORY_POINTS = 50
USER_POINTS = 10
PAGE = Path(__file__).with_name("ui_page.html")
NO_MODEL = (
    "No model is live yet, so there is no embedding space to draw. Until then the lists "
    "come from co-occurrence and popularity, which work from the first events. The map "
    "appears when the trainer publishes a version: the demo trains its first after about "
    "25 seconds of traffic; elsewhere run: tastestream train --once"
)


@dataclass
class ItemMap:
    """One model version's 2D map: the sampled items' coordinates and the projection.

    Items outside the sample (a trajectory can visit rare items) are placed
    with the same projection from their token vectors, and remembered.
    """

    version: str
    method: str
    items: list[str]
    coords: np.ndarray
    projection: Projection
    embedding: Any
    rows: dict[str, list[int]]
    placed: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, version: str, embedding: Any, method: str = "auto", max_items: int = MAP_ITEMS
    ) -> ItemMap:
        """Fit the projection on the ``max_items`` most frequent items of ``embedding``."""
        items, matrix = item_vectors(embedding.vocab, embedding.vectors, limit=max_items)
        if not items:
            raise ValueError(f"model {version} has no items to draw")
        projection = fit_projection(matrix, method=method)
        coords = projection.coords
        rows: dict[str, list[int]] = {}
        for i, token in enumerate(embedding.vocab):
            rows.setdefault(str(token[0] if isinstance(token, tuple) else token), []).append(i)
        placed = {item: (float(x), float(y)) for item, (x, y) in zip(items, coords, strict=True)}
        return cls(version, projection.method, items, coords, projection, embedding, rows, placed)

    def vector(self, item_id: str) -> np.ndarray | None:
        """The item's mean unit token vector, or None when the model never saw it."""
        rows = self.rows.get(item_id)
        if rows is None:
            return None
        vectors = np.asarray(self.embedding.vectors[rows], dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms > 0, norms, 1.0)).mean(axis=0)

    def locate(self, item_ids: Iterable[str]) -> dict[str, tuple[float, float]]:
        """Coordinates of the items the model knows (unknown ones are left out)."""
        out: dict[str, tuple[float, float]] = {}
        missing = []
        for item in item_ids:
            if item in self.placed:
                out[item] = self.placed[item]
            elif item in self.rows:
                missing.append(item)
        if missing:
            missing = list(dict.fromkeys(missing))
            points = self.projection.transform(np.stack([self.vector(i) for i in missing]))
            for item, (x, y) in zip(missing, points, strict=True):
                self.placed[item] = out[item] = (float(x), float(y))
        return out

    def user_point(self, tokens: list[tuple[str, str]]) -> tuple[float, float] | None:
        """The user as one point: the type-weighted mean of their latest item vectors."""
        vectors, weights = [], []
        for item, etype in tokens[-USER_POINTS:]:
            vector = self.vector(item)
            if vector is not None:
                vectors.append(vector)
                weights.append(DEFAULT_TYPE_WEIGHTS.get(etype, 1.0))
        if not vectors:
            return None
        mean = np.average(np.stack(vectors), axis=0, weights=weights)
        x, y = self.projection.transform(mean[None, :])[0]
        return float(x), float(y)


class MapCache:
    """The live version's :class:`ItemMap`, built once per version in a thread."""

    def __init__(self, method: str = "auto", max_items: int = MAP_ITEMS) -> None:
        self.method = method
        self.max_items = max_items
        self._maps: dict[str, ItemMap] = {}
        self._building: set[str] = set()
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, model: Any) -> ItemMap | None:
        """The map of ``model`` if built; else start building it and return None."""
        version = model.version
        with self._lock:
            if version in self._maps:
                return self._maps[version]
            if version in self._building or version in self._failed:
                return None
            self._building.add(version)
        threading.Thread(
            target=self._build,
            args=(version, model.embedding),
            name=f"ui-map-{version}",
            daemon=True,
        ).start()
        return None

    def failure(self, version: str) -> str | None:
        return self._failed.get(version)

    def _build(self, version: str, embedding: Any) -> None:
        started = time.monotonic()
        try:
            built = ItemMap.build(version, embedding, self.method, self.max_items)
        except Exception as exc:
            log.exception("map of model %s failed", version)
            with self._lock:
                self._building.discard(version)
                self._failed[version] = str(exc) or type(exc).__name__
            return
        with self._lock:
            self._building.discard(version)
            # keep only the newest map: at most two versions are in memory anyway
            self._maps = {version: built}
        log.info(
            "map of model %s: %d items by %s in %.1f s",
            version,
            len(built.items),
            built.method,
            time.monotonic() - started,
        )


@dataclass(frozen=True)
class PageData:
    """What the page reads from a worker: its live model and what its state knows."""

    live_model: Any
    category: Any  # item_id -> category or None
    seller: Any  # item_id -> seller or None
    recent: Any  # (user_id, n) -> [(item_id, type, ts)], oldest first
    recent_user: Any  # () -> a user id this worker holds, or None


def page_data(app: Any) -> PageData:
    """The worker's model and state as the page needs them: its only access to the state."""
    services = app.services
    state = services.state

    def recent(user_id: str, n: int) -> list[tuple[str, str, float]]:
        user_state = state.user(user_id)
        trajectory = user_state.trajectory if user_state is not None else None
        return trajectory.recent(n) if trajectory is not None else []

    def recent_user() -> str | None:
        dirty = next(reversed(state.dirty_users), None)  # changed lately, lists not yet redone
        if dirty is not None:
            return dirty
        for partition in sorted(state.assigned["users"]):
            for user_id in state.users.keys(partition):
                return user_id
        return None

    return PageData(
        live_model=services.models.live_model,
        category=state.catalogue.category,
        seller=state.catalogue.seller,
        recent=recent,
        recent_user=recent_user,
    )


def map_body(data: PageData, cache: MapCache, user_id: str) -> dict[str, Any]:
    """The map JSON for ``user_id`` from this worker's live model and state."""
    model = data.live_model
    body: dict[str, Any] = {
        "user_id": user_id,
        "model_version": None,
        "status": "no_model",
        "method": None,
        "items": [],
        "trajectory": [],
        "user": None,
        "message": NO_MODEL,
    }
    if model is None:
        return body
    body["model_version"] = model.version
    item_map = cache.get(model)
    if item_map is None:
        failed = cache.failure(model.version)
        body["status"] = "failed" if failed else "computing"
        body["message"] = (
            f"The map of model {model.version} could not be drawn: {failed}"
            if failed
            else f"Projecting model {model.version} to 2D; the map appears in a moment."
        )
        return body
    recent = data.recent(user_id, TRAJECTORY_POINTS)
    where = item_map.locate(item for item, _, _ in recent)
    user = item_map.user_point([(item, etype) for item, etype, _ in recent])
    body.update(
        status="ready",
        method=item_map.method,
        message=f"{len(item_map.items)} items of model {model.version}, projected by "
        f"{METHOD_NAMES.get(item_map.method, item_map.method)}",
        items=[
            {
                "item_id": item,
                "x": round(float(x), 5),
                "y": round(float(y), 5),
                "category": data.category(item),
            }
            for item, (x, y) in zip(item_map.items, item_map.coords, strict=True)
        ],
        trajectory=[
            {
                "item_id": item,
                "type": etype,
                "ts": ts,
                "x": round(where[item][0], 5),
                "y": round(where[item][1], 5),
            }
            for item, etype, ts in recent
            if item in where
        ],
        user=None if user is None else {"x": round(user[0], 5), "y": round(user[1], 5)},
    )
    return body


#: Faust's blueprint for "/" (replaced by a redirect to the page).
FAUST_INDEX = "faust.web.apps.production_index:blueprint"

#: How the page names each projection method.
METHOD_NAMES = {"umap": "UMAP", "graph": "a neighbour-graph layout", "pca": "PCA"}


def register(app: Any, events_topic: Any) -> MapCache:
    """Add the page and its JSON endpoints to ``app`` (once; later calls are no-ops)."""
    existing = getattr(app, "ui_maps", None)
    if existing is not None:
        return existing
    from faust import web

    from agents.views import USER, error, routed

    cache = MapCache()
    app.ui_maps = cache
    from agents import ui_operator

    ui_operator.register(app)
    # Faust's production index answers "/" with {"status": "OK"}; here "/" leads to the page.
    # (faust-streaming is pinned; its blueprint manager has no public way to drop one.)
    manager = app.web.blueprints
    manager._enabled = [(at, bp) for at, bp in manager._enabled if bp != FAUST_INDEX]

    @app.page("/")
    class Home(web.View):
        async def get(self, request: web.Request) -> web.Response:
            user = page_data(app).recent_user()
            target = "/ui" if user is None else f"/ui/users/{quote(user, safe='')}"
            return self.text(f"see {target}\n", status=302, headers={"Location": target})

    @app.page("/ui")
    class NoUserPage(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.html(PAGE.read_text(encoding="utf-8"))

    @app.page(f"/ui/users/{USER}")
    class UserPage(web.View):
        async def get(self, request: web.Request, user_id: str) -> web.Response:
            # read per request: cheap, and an edited page shows without a restart
            return self.html(PAGE.read_text(encoding="utf-8"))

    @app.page(f"/ui/api/users/{USER}/map")
    class UserMap(web.View):
        async def get(self, request: web.Request, user_id: str) -> web.Response:
            async def local() -> web.Response:
                return self.json(map_body(page_data(app), cache, user_id))

            return await routed(app, events_topic, user_id, self, request, local)

    @app.page("/ui/api/items")
    class Items(web.View):
        async def get(self, request: web.Request) -> web.Response:
            ids = [x for x in request.query.get("ids", "").split(",") if x]
            if len(ids) > 1000:
                return error(self, 400, f"at most 1000 ids, got {len(ids)}")
            data = page_data(app)
            return self.json(
                {
                    "items": {
                        i: {"category": data.category(i), "seller": data.seller(i)} for i in ids
                    }
                }
            )

    return cache
