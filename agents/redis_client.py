"""Redis for the worker: list copies written in pipelines, and an outage that costs nothing else.

Consumers read ``<prefix>:recs:{surface}:{user_id}``; the worker writes them.
Redis going away must not stop ingest or serving: every call is bounded in
time, a failure is counted and remembered (``/health`` reports it), and
writes that failed are retried when Redis answers again (the newest list per
key wins; older pending copies are dropped, since only the latest matters).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis

from agents.metrics import Metrics

log = logging.getLogger(__name__)

#: Pending list copies kept while Redis is away (newest per key).
MAX_PENDING = 200_000


class RedisClient:
    """A redis.asyncio client with timeouts, error accounting and retried writes."""

    def __init__(self, url: str, metrics: Metrics, timeout: float = 1.0) -> None:
        self.url = url
        self.metrics = metrics
        self.timeout = timeout
        self._client: aioredis.Redis | None = None
        self.ok: bool | None = None
        self.last_error: str | None = None
        self.last_ok = 0.0
        #: key -> (value, ttl) not yet written (Redis was away).
        self.pending: dict[str, tuple[bytes, int]] = {}

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                health_check_interval=0,
            )
        return self._client

    def _failed(self, op: str, exc: BaseException) -> None:
        if self.ok is not False:
            log.warning("Redis %s failed (%s); serving goes on without it", op, exc)
        self.ok = False
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.metrics.inc("tastestream_redis_errors_total", labels={"op": op})

    def _succeeded(self) -> None:
        if self.ok is False:
            log.info("Redis is back")
        self.ok = True
        self.last_error = None
        self.last_ok = time.time()

    async def ping(self) -> tuple[bool, str]:
        try:
            await asyncio.wait_for(self.client.ping(), timeout=self.timeout)
        except Exception as exc:
            self._failed("ping", exc)
            return False, self.last_error or "unreachable"
        self._succeeded()
        return True, "pong"

    async def write(self, values: dict[str, tuple[bytes, int]]) -> bool:
        """Set ``key -> (value, ttl seconds)`` in one pipeline (with what is pending)."""
        if self.pending:
            values = {**self.pending, **values}
        if not values:
            return True
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, (value, ttl) in values.items():
                pipe.set(key, value, ex=ttl)
            await asyncio.wait_for(pipe.execute(), timeout=self.timeout * 5)
        except Exception as exc:
            self._failed("write", exc)
            self.pending = values
            if len(self.pending) > MAX_PENDING:
                # Keep the newest: dicts keep insertion order, and new values come last.
                drop = len(self.pending) - MAX_PENDING
                for key in list(self.pending)[:drop]:
                    del self.pending[key]
            self.metrics.set("tastestream_redis_pending_writes", len(self.pending))
            return False
        self.pending = {}
        self.metrics.set("tastestream_redis_pending_writes", 0)
        self._succeeded()
        return True

    async def get(self, key: str) -> bytes | None:
        try:
            value = await asyncio.wait_for(self.client.get(key), timeout=self.timeout)
        except Exception as exc:
            self._failed("get", exc)
            raise
        self._succeeded()
        return value

    def status(self) -> dict[str, Any]:
        return {
            "ok": bool(self.ok),
            "url": self.url,
            "detail": "pong" if self.ok else (self.last_error or "not checked yet"),
            "pending_writes": len(self.pending),
        }

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):  # closing a dead connection
                await self._client.aclose()
            self._client = None
