"""Impressions and outcomes: every served list logged, joined with its engagements in the stream.

* :meth:`Impressions.log_list` puts every served list (HTTP answer, Kafka
  answer, Redis copy) on ``<prefix>.impressions``, partitioned by user: its
  ``request_id``, user, surface, channel, model version, experiment, variant,
  and per position the item, its sources, score and room for the ranker's
  features;
* ingest forwards each accepted engagement (click, favourite, cart, purchase,
  and client ``impression`` events naming a request id) to the same partition
  (:meth:`Impressions.forward_engagements`), and a timer sends a **tick** to
  each owned partition that has lists due;
* one agent folds that topic with :class:`models.outcome_join.OutcomeJoin`
  into a third state store (``join``: per user the pending lists, per
  partition the per-variant sums), under the state's checkpoints, recovery
  and snapshots (:mod:`agents.state`), so it is exact across ``kill -9``
  like the user and token states; the partition's records come in one order,
  so folding them again after a crash closes the same outcomes;
* each closed impression's **outcome** (``y_click``, ``y_favorite``,
  ``y_cart``, ``y_purchase``, ``value``) goes to ``<prefix>.outcomes`` and to
  the durable log ``data_dir/outcomes/<worker_id>/`` (read it with
  ``streams.eventlog.read_logs``: its ``event_id`` is the outcome's id, so a
  repeat after a crash is dropped, as for events);
* every ``experiment_metrics_seconds`` each owned partition's per-variant sums
  go to ``<prefix>.experiment-metrics`` (:mod:`agents.experiments` adds them up).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgpack
from faust.types import EventT

from agents.metrics import Metrics
from agents.settings import Settings
from agents.state import StateService
from agents.store import ChangelogStore, read_snapshot
from models.outcome_join import (
    Aggregates,
    JoinState,
    OutcomeJoin,
    engagement_record,
    unpack,
)
from streams.codecs import encode_batches
from streams.eventlog import EventLog
from streams.topics import partition_for

log = logging.getLogger(__name__)

STORE = "join"
#: Outcomes per message on the outcomes topic.
OUTCOMES_PER_MESSAGE = 1000


def user_key(user_id: str) -> str:
    return "u:" + user_id


def aggregates_key(partition: int) -> str:
    return f"a:{partition}"


class Impressions:
    """The impression log, the join and its outputs; see the module docstring.

    Parameters
    ----------
    send
        ``send(topic, key, value, partition)`` (the app's producer) for the
        per-variant sums, which need no checkpoint.
    """

    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        state: StateService,
        metrics: Metrics,
        send: Callable[[str, bytes | None, bytes, int], Awaitable[Any]],
    ) -> None:
        self.settings = settings
        self.state = state
        self.metrics = metrics
        self._send = send
        topics = settings.topics
        self.topic = topics.impressions.name
        self.outcomes_topic = topics.outcomes.name
        self.metrics_topic = topics.experiment_metrics.name
        window = settings.dedupe_window
        self.store: ChangelogStore[Any] = ChangelogStore(
            STORE,
            topics.join_changelog.name,
            lambda: JoinState(window),
            lambda data: unpack(data, window),
            settings.data_path / "state" / settings.topic_prefix / STORE,
            live_capacity=settings.state_cache_keys,
            backend=settings.state_store,
        )
        state.add_store(self.store, self.topic, self.rebuild)
        self.outcome_dir = settings.data_path / "outcomes" / worker_id
        self._log: EventLog | None = None
        #: partition -> user id -> earliest pending deadline (a view of the states).
        self.due: dict[int, dict[str, float]] = {}
        self._indexed: dict[int, int] = {}
        self._published: dict[int, bytes] = {}
        #: Called with each batch of closed outcomes (the learned ranker's examples).
        self.on_outcomes: Callable[[list[dict[str, Any]]], Awaitable[Any]] | None = None

    # -- what the recommender and ingest call ------------------------------------------
    async def log_list(
        self,
        body: Mapping[str, Any],
        channel: str,
        latency: float,
        error: bool,
        run: str | None,
    ) -> None:
        """Log one served list (or a failed request, ``error`` with no items)."""
        now = time.time()
        user_id = body["user_id"]
        record = {
            "kind": "list",
            "list_id": uuid.uuid4().hex,
            "request_id": body.get("request_id") or "",
            "user_id": user_id,
            "surface": body.get("surface", ""),
            "channel": channel,
            "served_at": now,
            "deadline": now + self.settings.outcome_window_seconds,
            "experiment": body.get("experiment"),
            "run": run,
            "variant": body.get("variant"),
            "model_version": body.get("model_version"),
            "latency": latency,
            "error": error,
            "items": [
                [
                    item["item_id"],
                    item.get("sources") or [],
                    item.get("score"),
                    item.get("features"),
                ]
                for item in body.get("items") or ()
            ],
        }
        if body.get("ranker_weights") is not None:
            record["ranker_weights"] = body["ranker_weights"]
        ranker = body.get("ranker")
        if ranker is not None and record.get("ranker_weights") is None:
            # Which weights ranked the list travels with its outcomes (tune replays them).
            record["ranker_weights"] = ranker["weights"]
        partition = partition_for(user_id, self.settings.partitions)
        await self.state.send(self.topic, user_id.encode(), pack([record]), partition)

    async def forward_engagements(self, events: list[Mapping[str, Any]]) -> None:
        """Send accepted engagements to the join (their user's partition); others are skipped."""
        by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for event in events:
            record = engagement_record(event)
            if record is not None:
                by_partition[partition_for(event["user_id"], self.settings.partitions)].append(
                    record
                )
        for partition, records in by_partition.items():
            for value, chunk in encode_batches(records):
                await self.state.send(self.topic, chunk[0]["user_id"].encode(), value, partition)

    # -- the join ---------------------------------------------------------------------------
    def _join(self, partition: int) -> OutcomeJoin:
        store = self.store
        aggregates = store.get_for_update(aggregates_key(partition), partition, Aggregates)
        return OutcomeJoin(
            lambda u: store.get(user_key(u), partition),
            lambda u: store.get_for_update(user_key(u), partition),
            aggregates,
            self._due(partition),
        )

    def _due(self, partition: int) -> dict[str, float]:
        """The partition's deadlines by user, rebuilt when its state was recovered or rebuilt."""
        store = self.store
        due = self.due.setdefault(partition, {})
        values = store.values.get(partition)
        if values is not None and self._indexed.get(partition) != id(values):
            due.clear()
            for key in list(store.keys(partition)):
                state = store.get(key, partition) if key.startswith("u:") else None
                deadline = state.earliest_deadline() if state is not None else None
                if deadline is not None:
                    due[key[2:]] = deadline
            self._indexed[partition] = id(values)
        return due

    async def process(self, batch: list[EventT]) -> None:
        """One batch of messages from the impressions topic."""
        wanted = {event.message.partition for event in batch}
        async with self.state.folding(self.store, wanted) as owned:
            await self._fold_batch(batch, owned)

    async def _fold_batch(self, batch: list[EventT], owned: set[int]) -> None:
        joins: dict[int, OutcomeJoin] = {}
        kinds: Counter = Counter()
        outcomes: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for event in batch:
            partition = event.message.partition
            if partition not in owned:
                continue
            try:
                records = msgpack.unpackb(event.message.value, raw=False)
            except Exception as exc:  # written by workers only: a bug, never input
                log.error("impressions p%d: undecodable message skipped: %r", partition, exc)
                kinds["undecodable"] += 1
                continue
            join = joins.get(partition)
            if join is None:
                join = joins[partition] = self._join(partition)
            for record in records:
                folded = join.fold(record)
                kinds[folded.kind] += 1
                outcomes[partition].extend(folded.outcomes)
        for kind, n in kinds.items():
            self.metrics.inc("tastestream_join_records_total", n, {"kind": kind})
        for partition, closed in outcomes.items():
            await self._emit(partition, closed)

    async def _emit(self, partition: int, closed: list[dict[str, Any]]) -> None:
        if not closed:
            return
        for value, chunk in encode_batches(closed, max_events=OUTCOMES_PER_MESSAGE):
            await self.state.send(
                self.outcomes_topic, chunk[0]["user_id"].encode(), value, partition
            )
        self.outcome_log.append(closed)
        if self.on_outcomes is not None:
            try:
                await self.on_outcomes(closed)
            except Exception:  # learning must never stop the join
                log.exception("learning from %d outcomes failed", len(closed))
        labels: Counter = Counter()
        for o in closed:
            if o["experiment"]:
                for name in ("y_click", "y_cart", "y_purchase"):
                    if o[name]:
                        labels[(o["experiment"], o["variant"], name)] += 1
                labels[(o["experiment"], o["variant"], "impression")] += 1
        for (experiment, variant, label), n in labels.items():
            self.metrics.inc(
                "tastestream_experiment_outcomes_total",
                n,
                {"experiment": experiment, "variant": variant, "label": label},
            )

    @property
    def outcome_log(self) -> EventLog:
        if self._log is None:
            from agents.ingest import configured_log

            self._log = configured_log(self.settings, self.outcome_dir)
        return self._log

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def rebuild(self, partition: int) -> dict[str, bytes]:
        """A partition whose changelog was lost: its last snapshot (nothing if none).

        The impressions topic went with the changelog (a broker that restarted
        empty), so the lists pending since the snapshot are gone; the sums and
        the lists pending at the snapshot carry on.
        """
        snapshot = read_snapshot(self.store.snapshot_path(partition))
        return {} if snapshot is None else snapshot.values

    # -- timers ------------------------------------------------------------------------------
    async def tick(self, now: float | None = None) -> int:
        """Send a tick to each owned partition with lists due; return how many were sent."""
        now = time.time() if now is None else now
        sent = 0
        for partition in sorted(self.state.assigned[STORE]):
            if not self.store.is_ready(partition):
                continue
            due = self._due(partition)
            if due and min(due.values()) <= now:
                await self.state.send(
                    self.topic, None, pack([{"kind": "tick", "now": now}]), partition
                )
                sent += 1
        return sent

    async def publish_sums(self) -> int:
        """Publish each owned partition's per-variant sums that changed; return how many."""
        sent = 0
        for partition in sorted(self.state.assigned[STORE]):
            if not self.store.is_ready(partition):
                continue
            aggregates = self.store.get(aggregates_key(partition), partition)
            if aggregates is None:
                continue
            value = json.dumps({"partition": partition, "runs": aggregates.runs}).encode()
            if self._published.get(partition) == value:
                continue
            await self._send(self.metrics_topic, str(partition).encode(), value, 0)
            self._published[partition] = value
            sent += 1
        return sent


def pack(records: list[dict[str, Any]]) -> bytes:
    return msgpack.packb(records, use_bin_type=True)


def register(app: Any, impressions: Impressions, impressions_topic: Any) -> None:
    settings = impressions.settings

    @app.agent(impressions_topic, name="outcomes")
    async def join_agent(stream: Any) -> None:
        async for batch in stream.take_events(
            settings.ingest_batch_size, within=settings.ingest_batch_seconds
        ):
            await impressions.process(list(batch))

    @app.timer(interval=settings.outcome_tick_seconds)
    async def close_due_lists() -> None:
        await impressions.tick()

    @app.timer(interval=settings.experiment_metrics_seconds)
    async def publish_variant_sums() -> None:
        try:
            await impressions.publish_sums()
        except Exception as exc:  # the broker may be away: the next tick publishes
            log.warning("publishing per-variant sums failed: %r", exc)

    @app.on_before_shutdown.connect
    async def close_outcome_log(app: Any, **kwargs: Any) -> None:
        impressions.close()
