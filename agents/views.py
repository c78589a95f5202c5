"""HTTP API of the worker (Faust web, aiohttp).

``POST /events``                 one event or a JSON array; 202 {"accepted", "rejected"}
``GET /users/{user_id}/history`` the user's last events, newest first (routed to the owner)
``GET /health``                  broker and Redis reachability; 200 or 503
``GET /metrics``                 Prometheus text
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import msgpack
import redis.asyncio as aioredis
from confluent_kafka.admin import AdminClient
from faust import web
from faust.exceptions import SameNode
from faust.web.exceptions import ServiceUnavailable

from agents.app import TastestreamApp
from streams.codecs import DecodeError, decode_payload, encode_events
from streams.events import EventError, validate_event
from streams.topics import partition_for

#: An HTTP request body may be this large at most.
MAX_BODY_BYTES = 16 * 1024 * 1024


def error(view: web.View, status: int, message: str, **extra: Any) -> web.Response:
    return view.json({"error": message, **extra}, status=status)


async def _broker_ok(bootstrap: str) -> tuple[bool, str]:
    def probe() -> tuple[bool, str]:
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        try:
            meta = admin.list_topics(timeout=2.0)
            return True, f"{len(meta.brokers)} broker(s)"
        except Exception as exc:
            return False, str(exc)

    return await asyncio.to_thread(probe)


async def _redis_ok(client: aioredis.Redis) -> tuple[bool, str]:
    try:
        await asyncio.wait_for(client.ping(), timeout=2.0)
        return True, "pong"
    except Exception as exc:
        return False, str(exc) or type(exc).__name__


def worker_state(app: TastestreamApp) -> dict[str, Any]:
    """Which events partitions this worker owns, and whether it is serving them."""
    events_topic = app.settings.topics.events.name
    try:
        assigned = sorted(
            tp.partition for tp in app.consumer.assignment() if tp.topic == events_topic
        )
    except Exception:
        assigned = []
    recovered = app.tables.recovery.completed.is_set() if app.tables.recovery else False
    ready = bool(assigned) and recovered and not app.rebalancing and not app.in_recovery
    return {"partitions": assigned, "ready": ready}


INTERACTIONS = ("view", "click", "favorite", "cart", "purchase")
PAST_TENSE = {
    "view": "viewed",
    "click": "clicked",
    "favorite": "favourited",
    "cart": "carted",
    "purchase": "bought",
}
MAX_K = 500


def parse_k(raw: str | None, default: int) -> int:
    """``k`` from a query string: a whole number from 1 to MAX_K."""
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_K:
        raise ValueError(f"k must be a whole number from 1 to {MAX_K}, got {raw!r}")
    return int(raw)


def parse_interaction(raw: str | None, name: str, default: str) -> str:
    value = raw or default
    if value not in INTERACTIONS:
        raise ValueError(f"{name} must be one of {', '.join(INTERACTIONS)}, got {value!r}")
    return value


async def routed(
    app: TastestreamApp, table: Any, key: str, view: web.View, request: web.Request, local: Any
) -> web.Response:
    """Answer here if this worker owns ``key`` in ``table``, else forward to the owner."""
    try:
        return await app.router.route_req(table.name, key, view.web, request)
    except SameNode:
        return await local()
    except ServiceUnavailable:
        return error(view, 503, "no worker owns this key yet (rebalancing); retry shortly")


def cooccurrence_similar(
    app: TastestreamApp, item_id: str, from_type: str, to_type: str, k: int
) -> list[dict[str, Any]]:
    from agents.state import token_key

    neighbours = app.streaming_state.neighbours.get(token_key(item_id, from_type))
    if neighbours is None:
        return []
    items = []
    for target, count, p in neighbours.top(to_type, k, time.time()):
        p = min(p, 1.0)  # decayed counts carry float error; a share is at most 1
        items.append(
            {
                "item_id": target,
                "score": round(p, 6),
                "count": round(count, 4),
                "p": round(p, 6),
                "reason": f"{p:.0%} of sessions that {PAST_TENSE[from_type]} {item_id} "
                f"went on to {to_type} this",
            }
        )
    return items


def register(app: TastestreamApp) -> None:
    ingest = app.ingest
    settings = app.settings
    redis_client: list[aioredis.Redis] = []

    def redis() -> aioredis.Redis:
        if not redis_client:
            redis_client.append(aioredis.Redis.from_url(settings.redis_url))
        return redis_client[0]

    app.redis = redis

    @app.page("/events")
    class Events(web.View):
        async def post(self, request: web.Request) -> web.Response:
            body = await request.read()
            if len(body) > MAX_BODY_BYTES:
                return error(self, 413, f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
            content_type = request.headers.get("Content-Type", "")
            try:
                if "msgpack" in content_type:
                    items = msgpack.unpackb(body, raw=False)
                    items = items if isinstance(items, list) else [items]
                else:
                    items = decode_payload(body).items
            except (DecodeError, ValueError) as exc:
                return error(self, 400, f"undecodable body: {exc}")
            rejected = []
            by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for index, raw in enumerate(items):
                try:
                    event = validate_event(raw)
                except EventError as exc:
                    rejected.append({"index": index, "field": exc.field, "reason": str(exc)})
                    continue
                by_partition[partition_for(event["user_id"], settings.partitions)].append(event)
            sends = [
                await ingest.events_topic.send(
                    key=events[0]["user_id"].encode(),
                    value=encode_events(events),
                    partition=partition,
                )
                for partition, events in by_partition.items()
            ]
            # 202 only once the broker has the events: a lost send is an error, not a success.
            await asyncio.gather(*sends)
            accepted = sum(len(v) for v in by_partition.values())
            app.metrics.inc("tastestream_http_events_total", accepted)
            return self.json({"accepted": accepted, "rejected": rejected}, status=202)

    @app.page("/users/{user_id}/history")
    class History(web.View):
        @app.table_route(table=ingest.history, match_info="user_id")
        async def get(self, request: web.Request, user_id: str) -> web.Response:
            state = ingest.history.get(user_id)
            if state is None:
                return error(self, 404, f"no events for user {user_id!r}", user_id=user_id)
            limit = request.query.get("limit")
            events = state["events"]
            if limit is not None:
                if not limit.isdigit():
                    return error(self, 400, f"limit must be a non-negative integer, got {limit!r}")
                events = events[: int(limit)]
            return self.json({"user_id": user_id, "events": events})

    @app.page("/users/{user_id}/state")
    class UserState(web.View):
        """What the streaming state knows of a user: seeds, weights, bandit arms."""

        @app.table_route(table=app.streaming_state.trajectories.table, match_info="user_id")
        async def get(self, request: web.Request, user_id: str) -> web.Response:
            state = app.streaming_state
            trajectory = state.trajectories.get(user_id)
            if trajectory is None:
                return error(self, 404, f"no state for user {user_id!r}", user_id=user_id)
            try:  # decayed values are as of ``at`` (default now): comparable across calls
                now = float(request.query.get("at", time.time()))
            except ValueError:
                return error(self, 400, "at must be epoch seconds")
            bandit = state.bandits.get(user_id)
            arms = []
            if bandit is not None:
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
            body = {
                "user_id": user_id,
                "seeds": {t: trajectory.seeds(t) for t in INTERACTIONS},
                "top_items": [
                    {"item_id": i, "weight": w} for i, w in trajectory.top_items(20, now)
                ],
                "top_sellers": [
                    {"seller": s, "weight": w} for s, w in trajectory.top_sellers(20, now)
                ],
                "purchased": list(trajectory.purchased),
                "first_seen": trajectory.first_seen,
                "last_seen": trajectory.last_seen,
                "tokens": len(trajectory),
                "bandit_arms": sorted(arms, key=lambda a: -a["mean"]),
            }
            return self.json(body)

    @app.page("/items/{item_id}/similar")
    class Similar(web.View):
        async def get(self, request: web.Request, item_id: str) -> web.Response:
            from agents.state import token_key

            try:
                from_type = parse_interaction(request.query.get("from"), "from", "click")
                to_type = parse_interaction(request.query.get("to"), "to", from_type)
                k = parse_k(request.query.get("k"), settings.recs_k)
            except ValueError as exc:
                return error(self, 400, str(exc))

            async def local() -> web.Response:
                serving = getattr(app, "serving", None)
                items = serving.similar(item_id, from_type, to_type, k) if serving else None
                version = serving.live_version if items is not None else None
                if items is None:
                    items = cooccurrence_similar(app, item_id, from_type, to_type, k)
                body = {
                    "item_id": item_id,
                    "from": from_type,
                    "to": to_type,
                    "model_version": version,
                    "source": "model" if version else "cooccurrence",
                    "items": items,
                }
                return self.json(body)

            table = app.streaming_state.neighbours.table
            return await routed(app, table, token_key(item_id, from_type), self, request, local)

    @app.page("/health")
    class Health(web.View):
        async def get(self, request: web.Request) -> web.Response:
            (broker_ok, broker_detail), (redis_ok, redis_detail) = await asyncio.gather(
                _broker_ok(settings.kafka_bootstrap), _redis_ok(redis())
            )
            body = {
                "status": "ok" if broker_ok and redis_ok else "degraded",
                "broker": {"ok": broker_ok, "url": settings.kafka_url, "detail": broker_detail},
                "redis": {"ok": redis_ok, "url": settings.redis_url, "detail": redis_detail},
                "worker_id": app.worker_id,
                **worker_state(app),
                "time": time.time(),
            }
            return self.json(body, status=200 if broker_ok and redis_ok else 503)

    @app.page("/metrics")
    class Metrics(web.View):
        async def get(self, request: web.Request) -> web.Response:
            state = worker_state(app)
            app.metrics.set("tastestream_partitions_assigned", len(state["partitions"]))
            app.metrics.set("tastestream_worker_ready", int(state["ready"]))
            for partition, lag in ingest.lag().items():
                app.metrics.set("tastestream_consumer_lag", lag, {"partition": str(partition)})
            return self.text(app.metrics.render(), content_type="text/plain; version=0.0.4")
