"""Watching the broker: reachability for ``/health``, and topics recreated when they vanish.

The embedded broker keeps everything in memory: when it restarts, every topic
is gone. The watch notices (a topic of ours is missing), recreates the topics
(:func:`agents.provision.ensure_topics`), and the consumer group's rejoin then
hands the partitions back, whose state recovery finds the changelog lost and
rebuilds from the durable event log (:mod:`agents.state`). Meanwhile the
worker keeps serving from what it holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from confluent_kafka.admin import AdminClient

from agents.metrics import Metrics
from agents.provision import ensure_topics
from agents.settings import Settings

log = logging.getLogger(__name__)


class BrokerWatch:
    """Periodic broker check: reachable?, our topics present? (recreate them if not)."""

    def __init__(self, settings: Settings, metrics: Metrics, interval: float = 2.0) -> None:
        self.settings = settings
        self.metrics = metrics
        self.interval = interval
        self.ok: bool | None = None
        self.detail = "not checked yet"
        self.checked_at = 0.0
        self.recreated = 0
        self._admin: AdminClient | None = None

    def _check(self) -> tuple[bool, str, list[str]]:
        if self._admin is None:
            self._admin = AdminClient({**self.settings.kafka_client_config(), "log_level": 0})
        meta = self._admin.list_topics(timeout=2.0)
        missing = [s.name for s in self.settings.topics.all() if s.name not in meta.topics]
        created = ensure_topics(self.settings) if missing else []
        return True, f"{len(meta.brokers)} broker(s)", created

    async def check(self) -> bool:
        try:
            ok, detail, created = await asyncio.to_thread(self._check)
        except Exception as exc:
            ok, detail, created = False, str(exc) or type(exc).__name__, []
        if ok != self.ok:
            say = log.info if ok else log.warning
            say("broker %s: %s", "reachable" if ok else "away", detail)
        if not ok:
            self.metrics.inc("tastestream_broker_errors_total", labels={"op": "check"})
        if created:
            self.recreated += len(created)
            self.metrics.inc("tastestream_topics_recreated_total", len(created))
            log.warning("recreated missing topics: %s", ", ".join(created))
        self.ok, self.detail, self.checked_at = ok, detail, time.time()
        return ok

    def status(self) -> dict[str, Any]:
        return {
            "ok": bool(self.ok),
            "url": self.settings.kafka_url,
            "detail": self.detail,
            "checked_at": self.checked_at,
            "topics_recreated": self.recreated,
        }

    async def run(self, should_stop: Any) -> None:
        while not should_stop():
            await self.check()
            await asyncio.sleep(self.interval)
