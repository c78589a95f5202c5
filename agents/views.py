"""HTTP API of the worker (Faust web, aiohttp), grouped by resource.

events     ``POST /events``
users      ``GET /users/{user_id}/history``, ``/state``, ``/recommendations``
           (answered by the worker that owns the user: requests are routed by the
           events topic's assignment)
items      ``GET /items/{item_id}/similar`` (routed to the owner of the seed token)
health     ``GET /health``, ``/health/live``, ``/health/ready``, ``GET /metrics``
internal   ``POST /internal/token-states`` (worker to worker)

Every malformed parameter or body is a ``400`` naming the field. When
``TASTESTREAM_API_TOKEN`` is set, writes and ``/internal/*`` need
``Authorization: Bearer <token>`` (reads too with ``api_token_reads``).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from faust import web
from faust.exceptions import SameNode
from faust.web.exceptions import ServiceUnavailable

from agents.app import Services, TastestreamApp
from agents.recommend import RequestError
from models.ranking.utility import WeightsError, parse_weights
from models.sessions import INTERACTION_TYPES
from models.user_state import UserState, token_key

#: An HTTP request body may be this large at most.
from streams.codecs import DecodedMessage, decode_message, encode_batches
from streams.limits import MAX_MESSAGE_BYTES as MAX_BODY_BYTES
from streams.topics import partition_for

#: Path parameters for ids: any characters but "/" (aiohttp's default also refuses
#: braces, which ids may hold; an encoded "/" (%2F) still reaches the id).
USER = "{user_id:[^/]+}"
ITEM = "{item_id:[^/]+}"

#: Seconds a request waits for routing while partitions move (a rebalance).
ROUTING_WAIT_SECONDS = 8.0
MAX_K = 500


class Reroute(Exception):
    """The local worker is not (yet) the owner after all: route the request again."""


class BadRequest(ValueError):
    """A parameter or body the caller must fix; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


def error(view: web.View, status: int, message: str, **extra: Any) -> web.Response:
    return view.json({"error": message, **extra}, status=status)


# -- parameters ------------------------------------------------------------------
def parse_k(raw: str | None, default: int) -> int:
    """``k`` from a query string: a whole number from 1 to MAX_K."""
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_K:
        raise BadRequest("k", f"must be a whole number from 1 to {MAX_K}, got {raw[:32]!r}")
    return int(raw)


def parse_limit(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        raise BadRequest("limit", f"must be a whole number from 0 to 999999, got {raw[:32]!r}")
    return int(raw)


def parse_at(raw: str | None) -> float:
    """``at``: epoch seconds (decayed values are read as of it); default now."""
    if raw is None:
        return time.time()
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest("at", f"must be epoch seconds, got {raw[:32]!r}") from None
    if not math.isfinite(value) or not 0 <= value <= 1e11:
        raise BadRequest("at", f"must be epoch seconds from 0 to 1e11, got {raw[:32]!r}")
    return value


#: ``/items/{id}/similar?to=item``: item-level neighbours (any interaction, one per item).
ITEM_LEVEL = "item"


def parse_interaction(raw: str | None, name: str, default: str) -> str:
    value = raw or default
    if value not in INTERACTION_TYPES:
        raise BadRequest(name, f"must be one of {', '.join(INTERACTION_TYPES)}, got {value[:32]!r}")
    return value


def parse_seed(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadRequest("seed", f"must be a whole number, got {raw[:32]!r}")
    return int(raw)


def parse_exclude(raw: str | None) -> frozenset[str]:
    items = frozenset(x for x in (raw or "").split(",") if x)
    if len(items) > 1000:
        raise BadRequest("exclude", f"at most 1000 items, got {len(items)}")
    return items


# -- routing ----------------------------------------------------------------------
async def routed(
    app: TastestreamApp,
    topic: Any,
    key: str,
    view: web.View,
    request: web.Request,
    local: Callable[[], Awaitable[web.Response]],
) -> web.Response:
    """Answer here if this worker owns ``key``'s partition of ``topic``, else forward.

    While partitions move (a rebalance) no worker owns the key: wait briefly
    for the assignment rather than fail.
    """
    deadline = time.monotonic() + ROUTING_WAIT_SECONDS
    while True:
        try:
            return await app.router.route_topic_req(
                topic, key.encode("utf-8", "surrogatepass"), view.web, request
            )
        except SameNode:
            try:
                return await local()
            except Reroute:
                if time.monotonic() > deadline:
                    return error(view, 503, "this key's state is being recovered; retry shortly")
                await asyncio.sleep(0.1)
        except (ServiceUnavailable, KeyError, TypeError, AttributeError):
            # Faust raises these until the assignment and its metadata are known.
            if time.monotonic() > deadline:
                return error(view, 503, "no worker owns this key yet (rebalancing); retry shortly")
            await asyncio.sleep(0.1)
        except Exception as exc:  # the owner went away mid-request
            if time.monotonic() > deadline:
                return error(view, 503, f"the owning worker did not answer: {exc!r}")
            await asyncio.sleep(0.2)


def authorised(services: Services, request: web.Request, write: bool) -> bool:
    token = services.settings.api_token
    if not token or (not write and not services.settings.api_token_reads):
        return True
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def worker_state(app: TastestreamApp, services: Services) -> dict[str, Any]:
    """This worker's partitions and whether a request for them would succeed now."""
    state = services.state
    return {
        "partitions": sorted(state.assigned["users"]),
        "token_partitions": sorted(state.assigned["tokens"]),
        "recovered": state.ready(),
        "ready": state.ready() and not app.rebalancing,
    }


def user_state_body(user: UserState, user_id: str, now: float) -> dict[str, Any]:
    """What the streaming state knows of a user (``GET /users/{id}/state``)."""
    trajectory, bandit = user.trajectory, user.bandit
    arms = []
    for kind, arm_id in bandit.arms():
        alpha, beta = bandit.posterior((kind, arm_id), now)
        arms.append(
            {
                "kind": kind,
                "id": arm_id,
                "alpha": alpha,
                "beta": beta,
                "mean": alpha / (alpha + beta),
            }
        )
    return {
        "user_id": user_id,
        "seeds": {t: trajectory.seeds(t) for t in INTERACTION_TYPES},
        "top_items": [{"item_id": i, "weight": w} for i, w in trajectory.top_items(20, now)],
        "top_sellers": [{"seller": s, "weight": w} for s, w in trajectory.top_sellers(20, now)],
        "purchased": list(trajectory.purchased),
        "first_seen": trajectory.first_seen,
        "last_seen": trajectory.last_seen,
        "tokens": len(trajectory),
        "events": len(user),
        "bandit_arms": sorted(arms, key=lambda a: (-a["mean"], a["kind"], a["id"])),
    }


def similar_answer(
    services: Services, item_id: str, from_type: str, to_type: str | None, k: int
) -> dict[str, Any]:
    """``/items/{id}/similar``: :func:`models.candidates.similar.similar_items` on this worker.

    The same function the offline evaluation scores as the served ``similar``
    row: the live model, then the token's co-occurrence sketch, the item's
    category and seller, trending; ``sources`` says which filled the answer.
    """
    from models.candidates.similar import similar_items

    state = services.state
    catalogue = state.catalogue
    model = services.models.live_model
    answer = similar_items(
        item_id,
        from_type,
        to_type,
        k=k,
        now=time.time(),
        model=model,
        neighbours=state.neighbours,
        popularity=state.popularity,
        category_of=catalogue.category,
        seller_of=catalogue.seller,
        seller_items=catalogue.items_of_seller,
    )
    items = []
    for candidate in answer.items:
        # Decayed counts change with the clock: 4 decimals keep one answer stable for a while.
        evidence = {
            name: round(float(value), 4 if name == "count" else 6)
            for name, value in candidate.evidence.items()
            if isinstance(value, int | float)
        }
        items.append(
            {
                "item_id": candidate.item_id,
                "score": round(float(candidate.score), 6),
                "source": candidate.source,
                "reason": candidate.reason,
                **evidence,
            }
        )
    return {
        "item_id": item_id,
        "from": from_type,
        "to": to_type or ITEM_LEVEL,
        "model_version": getattr(model, "version", None) if "model" in answer.sources else None,
        "source": answer.sources[0] if answer.sources else None,
        "sources": list(answer.sources),
        "items": items,
    }


def decode_body(body: bytes, content_type: str) -> DecodedMessage:
    """A ``POST /events`` body (one event or an array) decoded and validated, or BadRequest.

    The body is a message like any on the events topic
    (:func:`streams.codecs.decode_message`); only what cannot be read as events
    at all is a ``400``.
    """
    if not body.strip():
        raise BadRequest("body", "is empty; expected a JSON object or an array of objects")
    if "msgpack" not in content_type and body.lstrip()[:1] not in (b"{", b"["):
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            raise BadRequest(
                "body", "is not JSON; expected a JSON object or an array of objects"
            ) from None
        kind = {str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
        raise BadRequest("body", f"expected a JSON object or an array of objects, got {kind}")
    decoded = decode_message(body)
    whole = [r for r in decoded.rejections if r.kind == "message"]
    if whole:
        what = "msgpack" if decoded.encoding == "msgpack" else "JSON"
        raise BadRequest("body", f"is not valid {what}: {whole[0].reason[:300]}")
    return decoded


def register(app: TastestreamApp, services: Services, events_topic: Any, pairs_topic: Any) -> None:
    settings = services.settings
    state = services.state
    metrics = services.metrics
    recommender = services.recommender

    def owned_here(store: Any, partition: int) -> None:
        """Raise :class:`Reroute` unless ``partition`` is owned here and recovered."""
        if not state.settled.is_set() or not store.is_ready(partition):
            raise Reroute
        if partition not in state.assigned[store.name]:
            raise Reroute

    def by_user(view: web.View, request: web.Request, user_id: str, local: Any) -> Any:
        async def when_ready() -> web.Response:
            owned_here(state.users, state.user_partition(user_id))
            return await local()

        return routed(app, events_topic, user_id, view, request, when_ready)

    # -- events -------------------------------------------------------------------
    @app.page("/events")
    class Events(web.View):
        async def post(self, request: web.Request) -> web.Response:
            if not authorised(services, request, write=True):
                metrics.inc("tastestream_http_rejected_total", labels={"reason": "unauthorised"})
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            body = await request.read()
            if len(body) > MAX_BODY_BYTES:
                metrics.inc("tastestream_http_rejected_total", labels={"reason": "too_large"})
                return error(self, 413, f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
            try:
                decoded = decode_body(body, request.headers.get("Content-Type", ""))
            except BadRequest as exc:
                metrics.inc("tastestream_http_rejected_total", labels={"reason": "body"})
                return error(self, 400, str(exc), field=exc.field)
            rejected = [
                {"index": r.index or 0, "field": r.field, "reason": r.reason}
                for r in decoded.rejections
            ]
            if rejected:
                metrics.inc("tastestream_http_rejected_total", len(rejected), {"reason": "event"})
            by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
            # An event id is unique per user (the worker's redelivery guard is per user too):
            # two users may send the same id.
            seen_ids: set[tuple[str, str]] = set()
            duplicates = 0
            for event in decoded.events:
                identity = (event["user_id"], event["event_id"])
                if identity in seen_ids:
                    duplicates += 1
                    continue
                seen_ids.add(identity)
                by_partition[partition_for(event["user_id"], settings.partitions)].append(event)
            sends = []
            topic = events_topic.get_topic_name()
            for partition, events in by_partition.items():
                for value, chunk in encode_batches(events):
                    key = chunk[0]["user_id"].encode()
                    sends.append(await app.producer.send(topic, key, value, partition, None, None))
            # 202 only once the broker has the events: a lost send is an error, not a success.
            try:
                await asyncio.gather(*sends)
            except Exception as exc:
                metrics.inc("tastestream_http_rejected_total", labels={"reason": "broker"})
                return error(self, 503, f"the broker did not take the events: {exc!r}"[:300])
            accepted = sum(len(v) for v in by_partition.values())
            metrics.inc("tastestream_http_events_total", accepted)
            return self.json(
                {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}, status=202
            )

    # -- users --------------------------------------------------------------------
    @app.page(f"/users/{USER}/history")
    class History(web.View):
        async def get(self, request: web.Request, user_id: str) -> web.Response:
            if not authorised(services, request, write=False):
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            try:
                limit = parse_limit(request.query.get("limit"))
            except BadRequest as exc:
                return error(self, 400, str(exc), field=exc.field)

            async def local() -> web.Response:
                user = state.user(user_id)
                if user is None:
                    return error(self, 404, f"no events for user {user_id!r}", user_id=user_id)
                return self.json({"user_id": user_id, "events": user.events(limit)})

            return await by_user(self, request, user_id, local)

    @app.page(f"/users/{USER}/state")
    class UserStateView(web.View):
        async def get(self, request: web.Request, user_id: str) -> web.Response:
            if not authorised(services, request, write=False):
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            try:
                now = parse_at(request.query.get("at"))
            except BadRequest as exc:
                return error(self, 400, str(exc), field=exc.field)

            async def local() -> web.Response:
                user = state.user(user_id)
                if user is None:
                    return error(self, 404, f"no state for user {user_id!r}", user_id=user_id)
                return self.json(user_state_body(user, user_id, now))

            return await by_user(self, request, user_id, local)

    @app.page(f"/users/{USER}/recommendations")
    class Recommendations(web.View):
        async def get(self, request: web.Request, user_id: str) -> web.Response:
            if not authorised(services, request, write=False):
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            query = request.query
            try:
                k = parse_k(query.get("k"), settings.recs_k)
                exclude = parse_exclude(query.get("exclude"))
                seed = parse_seed(query.get("seed"))
                raw_weights = query.get("weights")
                weights = parse_weights(raw_weights) if raw_weights is not None else None
            except BadRequest as exc:
                return error(self, 400, str(exc), field=exc.field)
            except WeightsError as exc:
                return error(self, 400, str(exc), field=exc.field)
            surface = query.get("surface", "home")
            item_id = query.get("item_id")

            request_id = query.get("request_id") or None

            async def local() -> web.Response:
                try:
                    body = await recommender.serve(
                        user_id, surface, k, exclude, item_id, seed, "http", request_id, weights
                    )
                except RequestError as exc:
                    return error(self, 400, str(exc))
                return self.json(body)

            return await by_user(self, request, user_id, local)

    # -- the learned ranker ----------------------------------------------------------
    @app.page("/ranker")
    class Ranker(web.View):
        """This worker's ranker: ``GET`` its state; ``POST {"path": FILE}`` loads a file."""

        async def get(self, request: web.Request) -> web.Response:
            if not authorised(services, request, write=False):
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            return self.json(services.ranking.describe())

        async def post(self, request: web.Request) -> web.Response:
            if not authorised(services, request, write=True):
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            try:
                path = (await request.json()).get("path")
                if not isinstance(path, str) or not path:
                    raise ValueError("path must be a file name")
            except Exception as exc:
                return error(self, 400, f"body: {str(exc)[:200]}", field="path")
            if not services.ranking.load(path):
                refused = services.ranking.refused or {}
                return error(self, 409, f"ranker refused: {refused.get('reason')}", field="path")
            return self.json(services.ranking.describe())

    # -- items --------------------------------------------------------------------
    @app.page(f"/items/{ITEM}/similar")
    class Similar(web.View):
        async def get(self, request: web.Request, item_id: str) -> web.Response:
            if not authorised(services, request, write=False):
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            try:
                from_type = parse_interaction(request.query.get("from"), "from", "click")
                raw_to = request.query.get("to")
                to_type = (
                    None if raw_to == ITEM_LEVEL else parse_interaction(raw_to, "to", from_type)
                )
                k = parse_k(request.query.get("k"), settings.recs_k)
            except BadRequest as exc:
                return error(self, 400, str(exc), field=exc.field)

            async def local() -> web.Response:
                return self.json(similar_answer(services, item_id, from_type, to_type, k))

            key = token_key(item_id, from_type)

            async def when_ready() -> web.Response:
                owned_here(state.tokens, partition_for(key, settings.partitions))
                return await local()

            return await routed(app, pairs_topic, key, self, request, when_ready)

    # -- health ---------------------------------------------------------------------
    @app.page("/health/live")
    class Live(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json({"live": True, "worker_id": app.worker_id, "time": time.time()})

    async def readiness() -> tuple[bool, dict[str, Any]]:
        redis_ok, _ = await services.redis.ping()
        ws = worker_state(app, services)
        routing = True
        try:
            app.router.external_topic_key_store(events_topic, b"probe")
        except Exception:
            routing = False
        ready = ws["ready"] and routing
        body = {
            "status": "ready" if ready else "starting",
            "ready": ready,
            "routing": routing,
            **ws,
            "broker": services.broker.status(),
            "redis": services.redis.status(),
            "model_version": services.models.live_version,
            "worker_id": app.worker_id,
            "open": not settings.api_token,
            "time": time.time(),
        }
        body["redis"]["ok"] = redis_ok
        return ready, body

    @app.page("/health/ready")
    class Ready(web.View):
        async def get(self, request: web.Request) -> web.Response:
            ready, body = await readiness()
            return self.json(body, status=200 if ready else 503)

    @app.page("/health")
    class Health(web.View):
        async def get(self, request: web.Request) -> web.Response:
            ready, body = await readiness()
            # Redis away degrades (lists still served from memory); it does not unready.
            body["status"] = ("ok" if body["redis"]["ok"] else "degraded") if ready else "starting"
            return self.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    class MetricsView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            ws = worker_state(app, services)
            metrics.set("tastestream_partitions_assigned", len(ws["partitions"]))
            metrics.set("tastestream_worker_ready", int(ws["ready"]))
            metrics.set("tastestream_state_users", state.users.count())
            metrics.set("tastestream_state_tokens", state.tokens.count())
            for partition, lag in services.ingest.lag(app.consumer).items():
                metrics.set("tastestream_consumer_lag", lag, {"partition": str(partition)})
            return self.text(metrics.render(), content_type="text/plain; version=0.0.4")

    # -- internal -------------------------------------------------------------------
    @app.page("/internal/token-states")
    class TokenStates(web.View):
        """Packed co-occurrence states of tokens this worker owns (worker to worker)."""

        async def post(self, request: web.Request) -> web.Response:
            if not authorised(services, request, write=True):
                return error(self, 401, "missing or wrong Authorization: Bearer token")
            try:
                keys = (await request.json()).get("keys", [])
                if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                    raise ValueError("keys must be a list of strings")
            except Exception as exc:
                return error(self, 400, f"body: {str(exc)[:200]}", field="keys")
            out: dict[str, str | None] = {}
            for key in keys[:1000]:
                token = state.token(key)
                out[key] = base64.b64encode(token.pack()).decode() if token is not None else None
            return self.json(out)
