"""Recommendations: assembled from the streaming state (and the live model), served three ways.

* HTTP ``GET /users/{user_id}/recommendations?surface=home&k=20&exclude=a,b`` on the
  worker that owns the user (routed by the events topic's assignment);
* Kafka: a request ``{request_id, user_id, surface, k, context}`` on
  ``<prefix>.recommendation-requests`` is answered on ``<prefix>.recommendations``;
* Redis: ``<prefix>:recs:{surface}:{user_id}`` (JSON, with a TTL), rewritten
  shortly after the user's state changes.

The recipe per surface lives in :mod:`models.surfaces`. Building a list is
CPU work (index queries, merging), so it never runs on the event loop: the
loop gathers immutable inputs (the user's packed state, the packed
co-occurrence states of the seed tokens, fetched from their owners when they
live elsewhere, a periodically refreshed copy of popularity) and a worker
thread unpacks them and runs the recipe. A ``GET`` is answered from the
newest list when the user's state has not changed since; only users without
one are computed on demand.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import time
import uuid
from collections import OrderedDict, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp

from agents.metrics import Metrics
from agents.redis_client import RedisClient
from agents.state import StateService
from models.candidates.types import Candidate
from models.popularity import Popularity
from models.ranking.utility import WeightsError, parse_weights
from models.sessions import INTERACTION_TYPES
from models.surfaces import (
    SurfaceContext,
    SurfaceError,
    build_context,
    generate,
    load_surfaces,
    surface_named,
)
from models.token_state import TokenState
from models.user_state import UserState, token_key
from streams.codecs import dumps_json
from streams.topics import partition_for

log = logging.getLogger(__name__)
#: One JSON line per served list (``log_requests``): request id, user hash, surface, variant.
request_log = logging.getLogger("tastestream.requests")

REDIS_SURFACES = ("home", "cart")
#: Seconds a copy of popularity serves list building before it is taken again.
POPULARITY_COPY_SECONDS = 2.0


class RequestError(ValueError):
    """A recommendation request the caller must fix (unknown surface, bad k, ...)."""


def candidate_json(c: Candidate) -> dict[str, Any]:
    """One item of a list; with the learned ranker, its ``p`` per head and an explanation.

    ``features`` (the ranker's row) rides along for the impression log and is
    dropped from what callers see (:func:`public`).
    """
    out = {
        "item_id": c.item_id,
        "score": round(float(c.score), 6),
        "sources": list(dict.fromkeys(c.sources)),
        "reason": c.reason,
        "reasons": list(dict.fromkeys(c.reasons)),
    }
    evidence = c.evidence
    if "p" in evidence:
        out["p"] = {head: round(p, 6) for head, p in evidence["p"].items()}
        out["utility"] = round(evidence["utility"], 6)
        out["explanation"] = evidence["explanation"]
    if "features" in evidence:
        out["features"] = evidence["features"]
    return out


def public(body: dict[str, Any]) -> dict[str, Any]:
    """A list as callers get it: without the ranker's feature rows."""
    items = body.get("items")
    if not items or "features" not in items[0]:
        return body
    return {
        **body,
        "items": [{k: v for k, v in item.items() if k != "features"} for item in items],
    }


@dataclass
class ListInputs:
    """Everything one list needs, immutable or private to the thread that builds it."""

    user_id: str
    user: bytes | None
    neighbours: dict[str, bytes]
    popularity: Popularity
    model: Any
    now: float


class Recommender:
    """Builds users' lists off the event loop; keeps the newest per user and surface."""

    def __init__(
        self,
        settings: Any,
        state: StateService,
        models: Any,
        redis: RedisClient,
        metrics: Metrics,
        arms: Any = None,
        impressions: Any = None,
        ranking: Any = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.models = models
        self.redis = redis
        self.metrics = metrics
        try:
            self.surfaces = load_surfaces(settings.surfaces or None)
        except SurfaceError as exc:
            raise ValueError(f"settings.surfaces: {exc}") from None
        self.redis_prefix = f"{settings.topic_prefix}:recs"
        #: (surface, user) -> the latest default list (k = recs_k), most recent last.
        self.latest: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        # One thread: list building never takes both cores from ingest.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="lists")
        self._popularity: tuple[float, Popularity] | None = None
        self.http: aiohttp.ClientSession | None = None
        self.canonical_url = ""
        self.owner_url: Any = None  # token key -> owner URL (set by register)
        #: Which arm serves a request (agents.experiments.ExperimentService), and
        #: where served lists are logged (agents.impressions.Impressions).
        self.arms = arms
        self.impressions = impressions
        #: The learned second pass (agents.ranking.RankerService); None keeps the
        #: first-pass order everywhere.
        self.ranking = ranking

    # -- inputs, gathered on the loop ---------------------------------------------
    def popularity_copy(self) -> Popularity:
        """A private copy of popularity, taken at most every few seconds."""
        now = time.monotonic()
        if self._popularity is None or now - self._popularity[0] > POPULARITY_COPY_SECONDS:
            live = self.state.popularity
            copy = Popularity.from_state(
                live.to_state(),
                half_life=live.half_life,
                type_weights=live.type_weights,
                capacity=live.capacity,
                category_capacity=live.category_capacity,
                max_categories=live.max_categories,
            )
            self._popularity = (now, copy)
        return self._popularity[1]

    def seed_tokens(self, user: UserState | None, item_id: str | None) -> list[str]:
        keys: list[str] = []
        if user is not None:
            for etype in INTERACTION_TYPES:
                keys += [token_key(item, etype) for item in user.trajectory.seeds(etype)]
        if item_id is not None:
            keys += [token_key(item_id, etype) for etype in INTERACTION_TYPES]
        return list(dict.fromkeys(keys))

    async def inputs(self, user_id: str, item_id: str | None, arm: Any = None) -> ListInputs:
        # "No personalisation" (an experiment's control): built as for a user never seen.
        personal = arm is None or arm.personalised
        user = self.state.user(user_id) if personal else None
        packed = user.pack() if user is not None else None
        neighbours = await self.fetch_token_states(self.seed_tokens(user, item_id))
        model = arm.model if arm is not None and arm.model is not None else self.models.live_model
        return ListInputs(user_id, packed, neighbours, self.popularity_copy(), model, time.time())

    async def fetch_token_states(self, keys: list[str]) -> dict[str, bytes]:
        """Packed token states: read here, or from the worker that owns each."""
        found: dict[str, bytes] = {}
        remote: dict[str, list[str]] = defaultdict(list)
        partitions = self.settings.partitions
        for key in keys:
            partition = partition_for(key, partitions)
            if partition in self.state.assigned["tokens"]:
                token = self.state.tokens.get(key, partition)
                if token is not None:
                    found[key] = token.pack()
                continue
            owner = self.owner_url(key) if self.owner_url is not None else None
            if owner is not None and owner.rstrip("/") != self.canonical_url.rstrip("/"):
                remote[owner].append(key)
        if remote and self.http is not None:
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

    async def _fetch_remote(self, url: str, keys: list[str]) -> dict[str, bytes]:
        import base64

        headers = {}
        token = getattr(self.settings, "api_token", "")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        assert self.http is not None
        async with self.http.post(
            url.rstrip("/") + "/internal/token-states",
            json={"keys": keys},
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=2.0),
        ) as resp:
            resp.raise_for_status()
            states = await resp.json()
        return {key: base64.b64decode(v) for key, v in states.items() if v is not None}

    # -- one list, built in the thread ---------------------------------------------
    def _context(self, inputs: ListInputs, **request: Any) -> SurfaceContext:
        config = self.state.config
        user = UserState.unpack(inputs.user, config) if inputs.user is not None else None
        tokens = {
            key: TokenState.unpack(data, config.cooccurrence_capacity, config.half_life).neighbours
            for key, data in inputs.neighbours.items()
        }
        return build_context(
            inputs.user_id,
            now=inputs.now,
            trajectory=user.trajectory if user is not None else None,
            bandit=user.bandit if user is not None else None,
            neighbours=lambda token: tokens.get(token_key(*token)),
            popularity=inputs.popularity,
            catalogue=self.state.catalogue,
            model=inputs.model,
            per_source=self.settings.recs_per_source,
            **request,
        )

    def build(
        self,
        inputs: ListInputs,
        surface: str,
        k: int,
        exclude: frozenset[str] = frozenset(),
        item_id: str | None = None,
        seed: int | None = None,
        arm: Any = None,
        weights: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """One list (blocking CPU work: call it in the executor).

        ``weights`` override the surface's (and the variant's) utility weights.
        """
        recipe = surface_named(self.surfaces if arm is None else arm.surfaces, surface)
        ranker = None
        if self.ranking is not None:
            variant = arm.ranker_weights if arm is not None else None
            ranker = self.ranking.for_request(surface, weights, variant)
        extra = {"ranker": ranker} if ranker is not None else {}
        ctx = self._context(inputs, k=k, exclude=exclude, item_id=item_id, seed=seed, **extra)
        trace: dict[str, Any] = {}
        chosen = generate(recipe, ctx, trace)
        model = inputs.model
        return {
            "user_id": inputs.user_id,
            "surface": surface,
            "model_version": getattr(model, "version", None) if model is not None else None,
            # An unknown user is not an error: they get the popularity fallback, flagged here.
            "user_known": inputs.user is not None,
            "items": [candidate_json(c) for c in chosen],
            "sources_ran": sorted(trace.get("ran", {})),
            "computed_at": inputs.now,
            "fresh": True,
            **({"ranker": ranker.info} if ranker is not None else {}),
            **(arm.label() if arm is not None else {}),
        }

    def check(self, surface: str, k: int | None, item_id: str | None) -> int:
        """Validate a request; return its ``k``. Raises :class:`RequestError`."""
        try:
            recipe = surface_named(self.surfaces, surface)
        except SurfaceError as exc:
            raise RequestError(str(exc)) from None
        k = self.settings.recs_k if k is None else k
        if not 1 <= k <= 500:
            raise RequestError(f"k must be from 1 to 500, got {k}")
        if recipe.requires_item and item_id is None:
            raise RequestError(f"surface {surface!r} needs item_id")
        return k

    async def recommend(
        self,
        user_id: str,
        surface: str = "home",
        k: int | None = None,
        exclude: frozenset[str] = frozenset(),
        item_id: str | None = None,
        seed: int | None = None,
        arm: Any = None,
        weights: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """One list, computed now (off the loop)."""
        k = self.check(surface, k, item_id)
        inputs = await self.inputs(user_id, item_id, arm)
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        body = await loop.run_in_executor(
            self.executor,
            lambda: self.build(inputs, surface, k, exclude, item_id, seed, arm, weights),
        )
        self.metrics.observe("tastestream_list_build_seconds", time.monotonic() - started)
        return body

    def arm(self, user_id: str, surface: str) -> Any:
        """The experiment arm that serves ``user_id`` on ``surface`` (None: no experiments)."""
        return self.arms.arm(user_id, surface) if self.arms is not None else None

    async def serve(
        self,
        user_id: str,
        surface: str = "home",
        k: int | None = None,
        exclude: frozenset[str] = frozenset(),
        item_id: str | None = None,
        seed: int | None = None,
        channel: str = "http",
        request_id: str | None = None,
        weights: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """A list for a caller (HTTP or the requests topic): labelled, logged, timed.

        The list carries ``request_id`` (the caller's, or a new one),
        ``experiment`` and ``variant``; it is logged as impressions, its
        latency and outcome feed the variant's guard, and one JSON line goes
        to the request log. A :class:`RequestError` is the caller's mistake,
        not the variant's; any other failure is logged as the variant's error.
        """
        started = time.monotonic()
        request_id = request_id or uuid.uuid4().hex
        arm = self.arm(user_id, surface)
        try:
            plain = not exclude and seed is None and item_id is None and not weights
            body = self.cached(user_id, surface, k or self.settings.recs_k, arm) if plain else None
            if body is not None:
                self.metrics.inc("tastestream_recs_cache_hits_total")
            else:
                if arm is not None and arm.delay_ms:
                    await asyncio.sleep(arm.delay_ms / 1000.0)  # a drill of the guard
                body = await self.recommend(
                    user_id, surface, k, exclude, item_id, seed, arm, weights
                )
        except RequestError:
            raise
        except Exception:
            failed = {"user_id": user_id, "surface": surface, "request_id": request_id}
            await self.served(failed, arm, channel, time.monotonic() - started, error=True)
            raise
        body = {**body, "request_id": request_id}
        await self.served(body, arm, channel, time.monotonic() - started)
        return public(body)

    async def served(
        self, body: dict[str, Any], arm: Any, channel: str, latency: float, error: bool = False
    ) -> None:
        """Account for one served list: impressions, variant counters and guard, request log."""
        surface = body.get("surface", "")
        labels = arm.label() if arm is not None else {"experiment": None, "variant": None}
        body.update(labels)
        if channel != "redis":
            self.metrics.observe(
                "tastestream_serving_seconds",
                latency,
                labels={"surface": surface, "channel": channel},
            )
        if self.arms is not None and arm is not None:
            self.arms.observe(arm, surface, channel, latency, error)
        if self.impressions is not None:
            run = arm.run if arm is not None else None
            await self.impressions.log_list(body, channel, latency, error, run)
        if self.settings.log_requests and channel != "redis":
            request_log.info(
                json.dumps(
                    {
                        "ts": round(time.time(), 3),
                        "request_id": body.get("request_id"),
                        "user": user_hash(body["user_id"]),
                        "surface": surface,
                        "channel": channel,
                        "experiment": labels.get("experiment"),
                        "variant": labels.get("variant"),
                        "model_version": body.get("model_version"),
                        "items": len(body.get("items") or ()),
                        "latency_ms": round(latency * 1000.0, 2),
                        "status": "error" if error else "ok",
                    }
                )
            )

    # -- precomputed lists: memory and Redis ------------------------------------------
    def redis_key(self, surface: str, user_id: str) -> str:
        return f"{self.redis_prefix}:{surface}:{user_id}"

    def cached(self, user_id: str, surface: str, k: int, arm: Any = None) -> dict[str, Any] | None:
        """The newest precomputed list, or ``None`` when there is none to serve.

        A ``GET`` never waits for a list to be built when one exists: if the
        user's state changed since, the list says ``"fresh": false`` and the
        refresh (which takes changed users oldest first) replaces it within
        about ``recs_refresh_seconds`` plus the backlog. After a model swap a
        list may come from the previous version (``model_version`` says so)
        until the refresh reaches it. A list made for another experiment arm
        than ``arm`` is not used.
        """
        body = self.latest.get((surface, user_id))
        if body is None or k > self.settings.recs_k:
            return None
        labels = arm.label() if arm is not None else {"experiment": None, "variant": None}
        if any(body.get(key) != value for key, value in labels.items()):
            return None
        fresh = user_id not in self.state.dirty_users
        return {**body, "items": body["items"][:k], "fresh": fresh}

    def outdated_users(self, limit: int) -> list[str]:
        """Users whose cached lists came from another model version than the live one,
        or were left in first-pass order by a ranker that has since become ready."""
        live = self.models.live_version
        ranker_ready = self.ranking is not None and self.ranking.ranker.ready
        users: dict[str, None] = {}
        for (_, user), body in self.latest.items():
            cold = ranker_ready and (body.get("ranker") or {}).get("status") == "cold"
            if body["model_version"] != live or cold:
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
        ttl = self.settings.recs_ttl_seconds
        writes: dict[str, tuple[bytes, int]] = {}
        done = 0
        loop = asyncio.get_running_loop()
        surfaces = [s for s in REDIS_SURFACES if s in self.surfaces]
        k = self.settings.recs_k
        for user in users:
            if done and time.monotonic() > deadline:
                break
            # Discarded before computing: a change that lands meanwhile marks it again.
            changed_at = self.state.dirty_users.pop(user, None)
            if not self.state.owns_user(user):
                done += 1
                continue
            started = time.monotonic()
            arms = [self.arm(user, s) for s in surfaces]
            bodies = []
            for surface, arm in zip(surfaces, arms, strict=True):
                inputs = await self.inputs(user, None, arm)
                bodies.append(
                    await loop.run_in_executor(
                        self.executor, lambda i=inputs, s=surface, a=arm: self.build(i, s, k, arm=a)
                    )
                )
            latency = time.monotonic() - started
            for surface, body, arm in zip(surfaces, bodies, arms, strict=True):
                body["request_id"] = uuid.uuid4().hex
                await self.served(body, arm, "redis", latency)
                self.remember(surface, user, body)
                writes[self.redis_key(surface, user)] = (dumps_json(public(body)), ttl)
            if changed_at is not None:
                self.metrics.observe(
                    "tastestream_freshness_seconds",
                    time.monotonic() - changed_at,
                    labels={"stage": "state_to_list"},
                )
            done += 1
        if writes or self.redis.pending:
            await self.redis.write(writes)
        return users[done:]

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def log_requests_to_stderr() -> None:
    """Send the request log, as bare JSON lines, to stderr at INFO whatever the root level."""
    if not any(getattr(h, "tastestream_requests", False) for h in request_log.handlers):
        # sys.__stderr__: Faust's worker redirects sys.stderr into its own log format
        handler = logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.tastestream_requests = True  # type: ignore[attr-defined]
        request_log.addHandler(handler)
    request_log.setLevel(logging.INFO)
    request_log.propagate = False


def user_hash(user_id: str) -> str:
    """A short hash of a user id for logs: correlates lines without printing the id.

    >>> user_hash("u42") == user_hash("u42") != user_hash("u43")
    True
    """
    return hashlib.blake2b(user_id.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


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
    if not isinstance(exclude, list):
        raise RequestError("context.exclude: must be a list of item ids")
    item_id = context.get("item_id")
    if item_id is not None and not isinstance(item_id, str):
        raise RequestError("context.item_id: must be a string")
    surface = raw.get("surface", "home")
    if not isinstance(surface, str):
        raise RequestError("surface: must be a string")
    raw_weights = raw.get("weights", context.get("weights"))
    try:
        weights = parse_weights(raw_weights) if raw_weights is not None else None
    except WeightsError as exc:
        raise RequestError(str(exc)) from None
    return {
        "request_id": str(raw.get("request_id", "")),
        "user_id": user_id,
        "surface": surface,
        "k": k,
        "item_id": item_id,
        "exclude": frozenset(map(str, exclude)),
        "weights": weights,
    }


def register(app: Any, recommender: Recommender, events_topic: Any, pairs_topic: Any) -> None:
    from streams.codecs import decode_payload

    settings = recommender.settings
    topics = settings.topics
    state = recommender.state
    metrics = recommender.metrics
    recommender.canonical_url = str(app.conf.canonical_url)

    def token_owner(key: str) -> str | None:
        try:
            return str(app.router.external_topic_key_store(pairs_topic, key.encode()))
        except Exception:
            return None

    recommender.owner_url = token_owner

    from agents.app import bytes_topic

    requests_topic = bytes_topic(app, topics.recommendation_requests.name, settings.partitions)
    answers = topics.recommendations.name
    dead_letter = topics.dead_letter.name

    @app.agent(requests_topic, name="recommend")
    async def answer_requests(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            request_id = user_id = None
            try:
                raw = decode_payload(msg.value).items[0]
                if isinstance(raw, dict):
                    request_id, user_id = raw.get("request_id"), raw.get("user_id")
                request = parse_request(raw)
                body = await recommender.serve(
                    request["user_id"],
                    request["surface"],
                    request["k"],
                    request["exclude"],
                    request["item_id"],
                    channel="topic",
                    request_id=request["request_id"] or None,
                    weights=request["weights"],
                )
            except Exception as exc:
                reason = str(exc) if isinstance(exc, ValueError) else repr(exc)
                body = {
                    "error": reason[:500],
                    "request_id": request_id if isinstance(request_id, str) else None,
                    "user_id": user_id if isinstance(user_id, str) else None,
                }
                record = {
                    "reason": f"recommendation request: {reason}"[:1000],
                    "source": {
                        "topic": msg.topic,
                        "partition": msg.partition,
                        "offset": msg.offset,
                    },
                    "original": (msg.value or b"")[:4096].decode(errors="replace"),
                }
                await app.producer.send(dead_letter, msg.key, dumps_json(record), 0, None, None)
            await app.producer.send(answers, msg.key, dumps_json(body), msg.partition, None, None)
            metrics.inc("tastestream_recommendation_requests_total")

    if settings.log_requests:

        @app.task
        async def request_log_on() -> None:
            # after the worker configured logging, which would leave this logger at its level
            log_requests_to_stderr()

    @app.task
    async def refresh_lists() -> None:
        # One loop, never overlapping itself: users stay in the dirty set (so GETs
        # recompute rather than serve a stale list) until the refresh reaches them.
        recommender.http = app.http_client
        while not app.should_stop:
            users = list(state.dirty_users)
            if not users:
                # Idle: bring lists made by a previous model version up to date.
                users = recommender.outdated_users(limit=200)
            if not users:
                if recommender.redis.pending:
                    await recommender.redis.write({})
                await asyncio.sleep(settings.recs_refresh_seconds)
                continue
            started = time.monotonic()
            try:
                left = await recommender.refresh(users, settings.recs_refresh_budget_seconds)
            except Exception:
                log.exception("list refresh failed; retrying")
                await asyncio.sleep(1.0)
                continue
            elapsed = time.monotonic() - started
            metrics.inc("tastestream_recs_refreshed_total", len(users) - len(left))
            metrics.set("tastestream_recs_refresh_backlog", len(left))
            metrics.observe("tastestream_recs_refresh_seconds", elapsed)
            # A duty cycle, not a busy loop: list building takes at most
            # budget / interval of the CPU, and ingest keeps the rest.
            await asyncio.sleep(max(settings.recs_refresh_seconds - elapsed, 0.01))

    @app.on_before_shutdown.connect
    async def stop_lists(app: Any, **kwargs: Any) -> None:
        recommender.close()
        await recommender.redis.close()
