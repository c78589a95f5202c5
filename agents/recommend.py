"""Recommendations: assembled from the streaming state (and the live model), served three ways.

* HTTP ``GET /users/{user_id}/recommendations?surface=home&k=20&exclude=a,b`` on the
  worker that owns the user (Faust table routing);
* Kafka: a request ``{request_id, user_id, surface, k, context}`` on
  ``<prefix>.recommendation-requests`` is answered on ``<prefix>.recommendations``;
* Redis: ``<prefix>:recs:{surface}:{user_id}`` (JSON, with a TTL), rewritten
  shortly after the user's state changes.

The recipe per surface (which candidate sources, with which weights) lives in
:mod:`models.surfaces`; this module only feeds it: the user's trajectory and
bandit, co-occurrence neighbours (fetched from the workers that own the
tokens), popularity, the catalogue's filters and the live model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict
from typing import Any

import aiohttp
import numpy as np

from agents.app import TastestreamApp, bytes_topic
from agents.state import StreamingState, token_key
from models.candidates.types import Candidate
from models.cooccurrence import TokenNeighbours
from models.sessions import INTERACTION_TYPES
from models.surfaces import SurfaceContext, SurfaceError, generate, load_surfaces, surface_named
from streams.codecs import decode_payload, dumps_json

log = logging.getLogger(__name__)

REDIS_SURFACES = ("home", "cart")


class RequestError(ValueError):
    """A recommendation request the caller must fix (unknown surface, bad k, ...)."""


def candidate_json(c: Candidate) -> dict[str, Any]:
    return {
        "item_id": c.item_id,
        "score": round(float(c.score), 6),
        "sources": list(dict.fromkeys(c.sources)),
        "reason": c.reason,
        "reasons": list(dict.fromkeys(c.reasons)),
    }


class Recommender:
    """Builds one user's list for one surface from this worker's state."""

    def __init__(self, app: TastestreamApp) -> None:
        self.app = app
        self.settings = app.settings
        self.state: StreamingState = app.streaming_state
        try:
            self.surfaces = load_surfaces(self.settings.surfaces or None)
        except SurfaceError as exc:
            raise ValueError(f"settings.surfaces: {exc}") from None
        self.redis_prefix = f"{self.settings.topic_prefix}:recs"
        #: (surface, user) -> the latest default list (k = recs_k), most recent last.
        self.latest: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    # -- co-occurrence neighbours of tokens, wherever they live ------------------
    def seed_tokens(self, user_id: str, item_id: str | None) -> list[str]:
        keys: list[str] = []
        trajectory = self.state.trajectories.get(user_id)
        if trajectory is not None:
            for etype in INTERACTION_TYPES:
                keys += [token_key(item, etype) for item in trajectory.seeds(etype)]
        if item_id is not None:
            keys += [token_key(item_id, etype) for etype in INTERACTION_TYPES]
        return list(dict.fromkeys(keys))

    async def fetch_neighbours(self, keys: list[str]) -> dict[str, TokenNeighbours]:
        """Each key's neighbours: read locally, or from the worker that owns it."""
        table = self.state.neighbours.table
        found: dict[str, TokenNeighbours] = {}
        remote: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            try:
                owner = str(self.app.router.key_store(table.name, key))
            except KeyError:
                owner = None
            if owner is None or self._is_me(owner):
                obj = self.state.neighbours.get(key)
                if obj is not None:
                    found[key] = obj
            else:
                remote[owner].append(key)
        if remote:
            results = await asyncio.gather(
                *(self._fetch_remote(url, ks) for url, ks in remote.items()),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    log.warning("token look-up on another worker failed: %r", result)
                    continue
                found.update(result)
        return found

    def _is_me(self, url: str) -> bool:
        return url.rstrip("/") == str(self.app.conf.canonical_url).rstrip("/")

    async def _fetch_remote(self, url: str, keys: list[str]) -> dict[str, TokenNeighbours]:
        capacity = self.settings.cooccurrence_capacity
        half_life = self.settings.state_half_life_seconds
        async with self.app.http_client.post(
            url.rstrip("/") + "/internal/token-neighbours",
            json={"keys": keys},
            timeout=aiohttp.ClientTimeout(total=2.0),
        ) as resp:
            resp.raise_for_status()
            states = await resp.json()
        return {
            key: TokenNeighbours.from_state(state, capacity, half_life)
            for key, state in states.items()
            if state is not None
        }

    # -- one list --------------------------------------------------------------
    async def recommend(
        self,
        user_id: str,
        surface: str = "home",
        k: int | None = None,
        exclude: frozenset[str] = frozenset(),
        item_id: str | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        try:
            recipe = surface_named(self.surfaces, surface)
        except SurfaceError as exc:
            raise RequestError(str(exc)) from None
        k = self.settings.recs_k if k is None else k
        if not 1 <= k <= 500:
            raise RequestError(f"k must be from 1 to 500, got {k}")
        if recipe.requires_item and item_id is None:
            raise RequestError(f"surface {surface!r} needs item_id")
        now = time.time()
        neighbours = await self.fetch_neighbours(self.seed_tokens(user_id, item_id))
        catalogue = self.state.catalogue
        serving = getattr(self.app, "serving", None)
        model = serving.live_model if serving is not None else None
        trace: dict[str, Any] = {}
        trajectory = self.state.trajectories.get(user_id)
        ctx = SurfaceContext(
            user_id,
            now=now,
            trajectory=trajectory,
            bandit=self.state.bandits.get(user_id),
            neighbours=lambda token: neighbours.get(token_key(*token)),
            popularity=self.state.popularity,
            model=model,
            item_id=item_id,
            k=k,
            per_source=self.settings.recs_per_source,
            exclude=exclude,
            unavailable=lambda item: not catalogue.available(item),
            offline_sellers=lambda seller: catalogue.seller_online.get(seller, True) is False,
            rng=np.random.default_rng(seed),
            category_of=catalogue.category,
            seller_of=catalogue.seller,
            seller_items=catalogue.items_of_seller,
        )
        try:
            chosen = generate(recipe, ctx, trace)
        except SurfaceError as exc:
            raise RequestError(str(exc)) from None
        return {
            "user_id": user_id,
            "surface": surface,
            "model_version": getattr(model, "version", None) if model is not None else None,
            # An unknown user is not an error: they get the popularity fallback, flagged here.
            "user_known": trajectory is not None,
            "items": [candidate_json(c) for c in chosen],
            "sources_ran": sorted(trace.get("ran", {})),
            "computed_at": now,
        }

    # -- precomputed lists: memory and Redis -------------------------------------
    def redis_key(self, surface: str, user_id: str) -> str:
        return f"{self.redis_prefix}:{surface}:{user_id}"

    def cached(self, user_id: str, surface: str, k: int) -> dict[str, Any] | None:
        """The precomputed list, if the user's state has not changed since.

        After a model swap a list may still come from the previous version (it
        says which in ``model_version``) until the refresh reaches it: the
        model is the slow-moving half, and recomputing every list on every
        request after a swap would stall the worker.
        """
        body = self.latest.get((surface, user_id))
        if body is None or user_id in self.state.dirty_users or k > self.settings.recs_k:
            return None
        return {**body, "items": body["items"][:k]}

    def outdated_users(self, limit: int) -> list[str]:
        """Users whose cached lists came from another model version than the live one."""
        serving = getattr(self.app, "serving", None)
        live = serving.live_version if serving is not None else None
        users: dict[str, None] = {}
        for (_, user), body in self.latest.items():
            if body["model_version"] != live:
                users[user] = None
                if len(users) >= limit:
                    break
        return list(users)

    def remember(self, surface: str, user_id: str, body: dict[str, Any]) -> None:
        key = (surface, user_id)
        self.latest.pop(key, None)
        self.latest[key] = body
        while len(self.latest) > self.settings.recs_cache_users * len(REDIS_SURFACES):
            self.latest.popitem(last=False)

    async def refresh(self, users: list[str], budget_seconds: float) -> list[str]:
        """Recompute the default lists of ``users`` until the budget is spent.

        Writes them to memory and Redis (one pipeline); returns the users not reached.
        """
        deadline = time.monotonic() + budget_seconds
        pipe = self.app.redis().pipeline(transaction=False)
        ttl = self.settings.recs_ttl_seconds
        done = 0
        for user in users:
            if done and time.monotonic() > deadline:
                break
            # Discarded before computing: a change that lands meanwhile marks it again.
            self.state.dirty_users.pop(user, None)
            for surface in REDIS_SURFACES:
                if surface not in self.surfaces:
                    continue
                body = await self.recommend(user, surface)
                self.remember(surface, user, body)
                pipe.set(self.redis_key(surface, user), dumps_json(body), ex=ttl)
            done += 1
        if done:
            await pipe.execute()
        return users[done:]


def parse_request(raw: Any) -> dict[str, Any]:
    """Check a recommendation request from the topic; raise RequestError with the reason."""
    if not isinstance(raw, dict):
        raise RequestError("a request must be an object/map")
    user_id = raw.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        raise RequestError("user_id: missing or not a string")
    k = raw.get("k", None)
    if k is not None and (isinstance(k, bool) or not isinstance(k, int)):
        raise RequestError("k: must be an integer")
    context = raw.get("context") or {}
    if not isinstance(context, dict):
        raise RequestError("context: must be an object")
    exclude = context.get("exclude") or raw.get("exclude") or []
    return {
        "request_id": str(raw.get("request_id", "")),
        "user_id": user_id,
        "surface": str(raw.get("surface", "home")),
        "k": k,
        "item_id": context.get("item_id"),
        "exclude": frozenset(map(str, exclude)),
    }


def register(app: TastestreamApp) -> Recommender:
    from faust import web

    from agents.views import error, parse_k, routed

    recommender = Recommender(app)
    app.recommender = recommender
    settings = app.settings
    topics = settings.topics
    requests_topic = bytes_topic(app, topics.recommendation_requests.name, settings.partitions)
    answers_topic = bytes_topic(app, topics.recommendations.name, settings.partitions)
    dead_letter = app.ingest.dead_letter_topic

    @app.agent(requests_topic, name="recommend")
    async def answer_requests(stream):
        async for event in stream.events():
            msg = event.message
            try:
                request = parse_request(decode_payload(msg.value).items[0])
                body = await recommender.recommend(
                    request["user_id"],
                    request["surface"],
                    request["k"],
                    request["exclude"],
                    request["item_id"],
                )
                body["request_id"] = request["request_id"]
            except Exception as exc:
                reason = str(exc) if isinstance(exc, RequestError | ValueError) else repr(exc)
                body = {"error": reason, "request_id": None, "user_id": None}
                try:
                    first = decode_payload(msg.value).items[0]
                    if isinstance(first, dict):
                        body["request_id"] = first.get("request_id")
                        body["user_id"] = first.get("user_id")
                except Exception:
                    pass
                await dead_letter.send(
                    key=msg.key,
                    value=dumps_json(
                        {
                            "reason": f"recommendation request: {reason}",
                            "source": {
                                "topic": msg.topic,
                                "partition": msg.partition,
                                "offset": msg.offset,
                            },
                            "original": msg.value.decode(errors="replace") if msg.value else None,
                        }
                    ),
                )
            await answers_topic.send(key=msg.key, value=dumps_json(body))
            app.metrics.inc("tastestream_recommendation_requests_total")

    @app.timer(interval=settings.recs_refresh_seconds)
    async def refresh_lists() -> None:
        # Users stay in the dirty set (so GETs recompute rather than serve a stale
        # list) until the refresh reaches them; the rest wait for the next tick.
        users = list(app.streaming_state.dirty_users)
        if not users:
            # Idle: bring lists made by a previous model version up to date.
            users = recommender.outdated_users(limit=200)
        if not users:
            return
        started = time.monotonic()
        left = await recommender.refresh(users, settings.recs_refresh_budget_seconds)
        app.metrics.inc("tastestream_recs_refreshed_total", len(users) - len(left))
        app.metrics.set("tastestream_recs_refresh_backlog", len(left))
        app.metrics.observe("tastestream_recs_refresh_seconds", time.monotonic() - started)

    @app.page("/users/{user_id}/recommendations")
    class Recommendations(web.View):
        async def get(self, request: web.Request, user_id: str) -> web.Response:
            try:
                k = parse_k(request.query.get("k"), settings.recs_k)
            except ValueError as exc:
                return error(self, 400, str(exc))
            exclude = frozenset(x for x in request.query.get("exclude", "").split(",") if x)
            seed = request.query.get("seed")

            async def local() -> web.Response:
                surface = request.query.get("surface", "home")
                plain = not exclude and seed is None and "item_id" not in request.query
                hit = recommender.cached(user_id, surface, k) if plain else None
                if hit is not None:
                    app.metrics.inc("tastestream_recs_cache_hits_total")
                    return self.json(hit)
                try:
                    body = await recommender.recommend(
                        user_id,
                        surface,
                        k,
                        exclude,
                        request.query.get("item_id"),
                        int(seed) if seed and seed.isdigit() else None,
                    )
                except RequestError as exc:
                    return error(self, 400, str(exc))
                return self.json(body)

            table = app.streaming_state.trajectories.table
            return await routed(app, table, user_id, self, request, local)

    @app.page("/internal/token-neighbours")
    class TokenNeighboursState(web.View):
        """Raw co-occurrence state of tokens this worker owns (worker-to-worker)."""

        async def post(self, request: web.Request) -> web.Response:
            keys = (await request.json()).get("keys", [])
            cached = app.streaming_state.neighbours
            out = {}
            for key in keys[:1000]:
                obj = cached.get(key)
                out[key] = obj.to_state() if obj is not None else None
            return self.json(out)

    return recommender
