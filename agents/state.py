"""The worker's state: user and token stores, checkpoints, recovery and rebuilds.

:class:`StateService` owns what the agents fold into and the protocol that
makes it exact across crashes, rebalances and a lost broker:

* two :class:`~agents.store.ChangelogStore`: user states (keyed by user, on
  the partitions of the events topic) and token states (keyed by token, on the
  partitions of the co-occurrence pairs topic);
* one lock: an agent holds it while it folds a batch; a **checkpoint** holds it
  while it (1) awaits every side effect sent so far (pair records, forwarded
  events, dead letters), (2) writes every changed key to its changelog and
  awaits the broker's acknowledgement, and only then (3) commits the source
  offsets (the Faust consumer's commit goes through :meth:`checkpoint`). So an
  offset is committed only after the state changes, changelog records and
  event-log appends of its messages are durable; a ``kill -9`` anywhere redoes
  at most the uncommitted input, which the redelivery guards
  (:class:`~models.user_state.SeenIds`, :class:`~models.token_state.TokenState`)
  make a no-op where it was already applied;
* recovery when partitions are assigned (snapshot + changelog tail, in a
  thread; agents wait for their partitions), snapshots every
  ``snapshot_seconds``, and a **rebuild from the durable event log** when the
  changelog was lost (the memory-only broker restarted) or is new while the
  log holds events;
* worker-local views: the item catalogue and popularity (warmed from the
  event log at start) and the set of users whose lists are stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.offsets import read_partition, true_end_offsets
from agents.settings import Settings
from agents.store import (
    ChangelogStore,
    PackedChanges,
    Recovered,
    incarnation_record,
    pack_plan,
    write_snapshot,
)
from models.catalogue import ItemCatalogue
from models.popularity import Popularity
from models.stream_state import StreamState
from models.token_state import TokenState
from models.user_state import StateConfig, UserState, token_key
from streams.eventlog import log_directories, read_logs
from streams.topics import partition_for

log = logging.getLogger(__name__)
#: A checkpoint packing at least this many states packs them in a worker thread.
PACK_IN_THREAD_KEYS = 200


def state_config(settings: Settings) -> StateConfig:
    """The fold's configuration from the worker's settings (replay uses the same)."""
    return StateConfig(
        history_length=settings.history_length,
        history_max_bytes=settings.history_max_bytes,
        dedupe_window=settings.dedupe_window,
        half_life=settings.state_half_life_seconds,
        session_gap=settings.session_gap_seconds,
        cooccurrence_window=settings.cooccurrence_window,
        cooccurrence_capacity=settings.cooccurrence_capacity,
        impression_window=settings.impression_window_seconds,
        popularity_half_life=settings.popularity_half_life_seconds,
    )


def state_stores(
    settings: Settings, config: StateConfig
) -> tuple[ChangelogStore[UserState], ChangelogStore[TokenState]]:
    """The user and token stores of ``settings``' prefix (empty; recovery fills them).

    Their changelog topics and snapshot directories are where workers recover
    from: ``tastestream replay --rebuild`` and ``state checksum`` use the same.
    """
    topics = settings.topics
    root = settings.data_path / "state" / settings.topic_prefix
    users: ChangelogStore[UserState] = ChangelogStore(
        "users",
        topics.user_changelog.name,
        lambda: UserState(config),
        lambda data: UserState.unpack(data, config),
        root / "users",
        live_capacity=settings.state_cache_keys,
        backend=settings.state_store,
    )
    tokens: ChangelogStore[TokenState] = ChangelogStore(
        "tokens",
        topics.token_changelog.name,
        lambda: TokenState(config.cooccurrence_capacity, config.half_life),
        lambda data: TokenState.unpack(data, config.cooccurrence_capacity, config.half_life),
        root / "tokens",
        live_capacity=settings.state_cache_keys,
        backend=settings.state_store,
    )
    return users, tokens


def partition_values(
    replica: StreamState, name: str, partition: int, partitions: int
) -> dict[str, bytes]:
    """The packed values of one partition of a store (``users`` or ``tokens``) of ``replica``.

    Rebuilt tokens start without their redelivery guard: its numbers name
    source offsets of a stream that is gone (a broker restarted empty, or a
    replay that folded the events without a broker), so new records, whatever
    their offsets, must count.
    """
    if name == "users":
        return {
            user: state.pack()
            for user, state in replica.users.items()
            if partition_for(user, partitions) == partition
        }
    config = replica.config
    out = {}
    for key, token in replica.tokens.items():
        if partition_for(key, partitions) == partition:
            rebuilt = TokenState(config.cooccurrence_capacity, config.half_life)
            rebuilt.neighbours = token.neighbours
            out[key] = rebuilt.pack()
    return out


@dataclass
class Flight:
    """A checkpoint taken under the lock, to be delivered after it."""

    pending: list[tuple[Any, ...]]
    changes: list[tuple[ChangelogStore, list[PackedChanges]]]


class StateService:
    """Stores, the checkpoint protocol, recovery and views; see the module docstring.

    Parameters
    ----------
    settings
        The worker's settings.
    send
        ``send(topic, key, value, partition) -> awaitable of the record metadata``
        (the app's producer).
    """

    def __init__(
        self,
        settings: Settings,
        send: Callable[[str, bytes | None, bytes, int], Awaitable[Awaitable[Any]]],
        metrics: Any,
    ) -> None:
        self.settings = settings
        self.config = state_config(settings)
        self.metrics = metrics
        self._send = send
        topics = settings.topics
        self.users, self.tokens = state_stores(settings, self.config)
        #: Every store by name: users and tokens, and those added with :meth:`add_store`.
        self.stores: dict[str, ChangelogStore[Any]] = {"users": self.users, "tokens": self.tokens}
        #: Store name -> partition -> its values, for stores not rebuilt from the event log.
        self.rebuilders: dict[str, Callable[[int], dict[str, bytes]]] = {}
        self.source_topics = {
            topics.events.name: self.users,
            topics.cooccurrence_pairs.name: self.tokens,
        }
        self.lock = asyncio.Lock()
        #: One checkpoint at a time (records and commits in order); taken before ``lock``.
        self._checkpointing = asyncio.Lock()
        #: Sends whose delivery a checkpoint must see before it commits:
        #: (delivery future, topic, key, value, partition).
        self.pending: list[tuple[Any, ...]] = []
        #: Set while the assignment is settled (cleared between revoke and assign).
        self.settled = asyncio.Event()
        self.settled.set()
        #: Partitions assigned to this worker, per store.
        self.assigned: dict[str, set[int]] = {name: set() for name in self.stores}
        self.catalogue = ItemCatalogue()
        self.popularity = Popularity(half_life=settings.popularity_half_life_seconds)
        #: Users whose lists are stale -> when their state first changed (monotonic),
        #: oldest change first.
        self.dirty_users: dict[str, float] = {}
        self.recovering: dict[tuple[str, int], asyncio.Task] = {}
        self._snapshot_task: asyncio.Task | None = None
        #: The event log folded once for every partition one assignment rebuilds.
        self._replica: asyncio.Task | None = None
        self.checkpoints = 0
        self.last_checkpoint_seconds = 0.0
        self.rebuilds = 0

    def add_store(
        self,
        store: ChangelogStore[Any],
        source_topic: str,
        rebuild: Callable[[int], dict[str, bytes]],
    ) -> None:
        """Keep one more store under the same checkpoints, recovery and snapshots.

        ``rebuild(partition)`` gives a partition's values when its changelog
        was lost (the users and tokens fold the durable event log instead).
        """
        self.stores[store.name] = store
        self.rebuilders[store.name] = rebuild
        self.source_topics[source_topic] = store
        self.assigned[store.name] = set()

    # -- keys ------------------------------------------------------------------
    def user_partition(self, user_id: str) -> int:
        return partition_for(user_id, self.settings.partitions)

    def user(self, user_id: str) -> UserState | None:
        """A user's state if this worker holds it (``None`` otherwise)."""
        return self.users.get(user_id, self.user_partition(user_id))

    def token(self, key: str) -> TokenState | None:
        return self.tokens.get(key, partition_for(key, self.settings.partitions))

    def neighbours(self, token: tuple[str, str]) -> Any:
        state = self.token(token_key(*token))
        return state.neighbours if state is not None else None

    def owns_user(self, user_id: str) -> bool:
        return self.user_partition(user_id) in self.assigned["users"]

    def ready(self) -> bool:
        """Every assigned partition recovered and the assignment settled."""
        if not self.settled.is_set():
            return False
        for name, store in self.stores.items():
            if not all(store.is_ready(p) for p in self.assigned[name]):
                return False
        return bool(self.assigned["users"])

    def mark_dirty(self, users: Iterable[str]) -> None:
        now = time.monotonic()
        for user in users:
            self.dirty_users.setdefault(user, now)

    # -- side effects ------------------------------------------------------------
    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int) -> None:
        """Send a record whose delivery the next checkpoint awaits before committing."""
        future = await self._send_retrying(topic, key, value, partition)
        self.pending.append((future, topic, key, value, partition))

    async def _send_retrying(
        self, topic: str, key: bytes | None, value: bytes, partition: int
    ) -> Awaitable[Any]:
        """Hand a record to the producer, waiting out a broker that is away."""
        delay = 0.2
        while True:
            try:
                return await self._send(topic, key, value, partition)
            except Exception as exc:
                self.metrics.inc("tastestream_broker_errors_total", labels={"op": "send"})
                log.warning("send to %s[%d] failed (%r); retrying", topic, partition, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _deliver(self, sends: list[tuple[Any, ...]]) -> list[Any]:
        """Await deliveries; resend (in order) what failed until the broker takes it."""
        results: list[Any] = [None] * len(sends)
        todo = list(range(len(sends)))
        delay = 0.2
        while todo:
            outcomes = await asyncio.gather(*(sends[i][0] for i in todo), return_exceptions=True)
            failed = []
            for i, outcome in zip(todo, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    failed.append(i)
                else:
                    results[i] = outcome
            if not failed:
                return results
            self.metrics.inc("tastestream_broker_errors_total", len(failed), {"op": "deliver"})
            log.warning("%d deliveries failed (%r); resending", len(failed), outcomes[0])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            for i in failed:
                _, *args = sends[i]
                sends[i] = (await self._send_retrying(*args), *args)
            todo = failed
        return results

    async def wait_owned(self, store: ChangelogStore, partitions: set[int]) -> set[int]:
        """Wait for the assignment to settle and the partitions to recover; return those owned.

        Messages of partitions not assigned here (revoked while they sat in a
        buffer) must not be folded: their owner folds them from its committed offset.
        """
        await self.settled.wait()
        owned = partitions & self.assigned[store.name]
        await store.wait_ready(owned)
        return owned

    @contextlib.asynccontextmanager
    async def folding(self, store: ChangelogStore, partitions: set[int]) -> AsyncIterator[set[int]]:
        """Hold the lock while ``partitions`` of ``store`` are settled and recovered.

        Yields those of ``partitions`` owned here (messages of others, revoked
        while they sat in a buffer, are left to their new owner).
        """
        while True:
            await self.wait_owned(store, partitions)
            async with self.lock:
                # Re-check under the lock: a rebalance may have moved partitions meanwhile.
                if not self.settled.is_set():
                    continue
                owned = partitions & self.assigned[store.name]
                if not all(store.is_ready(p) for p in owned):
                    continue
                yield owned
                return

    # -- checkpoints ---------------------------------------------------------------
    async def checkpoint(
        self,
        commit: Callable[[Any], Awaitable[bool]] | None = None,
        capture: Callable[[], Any] | None = None,
    ) -> bool:
        """Make every effect so far durable, then run ``commit`` (the offset commit).

        Under the lock (the folds wait) only what is quick: the pending effects
        and the changed states are taken and packed, and ``capture()`` names
        the offsets they cover. The waiting (deliveries, changelog, the offset
        commit of exactly those offsets: ``commit(captured)``) happens after
        the lock is released, so the folds go on meanwhile; checkpoints run one
        at a time, so their records and commits stay in order.
        """
        async with self._checkpointing:
            started = time.monotonic()
            async with self.lock:
                flight = await self._prepare()
                captured = capture() if capture is not None else None
            await self._complete(flight)
            committed = await commit(captured) if commit is not None else False
            self.checkpoints += 1
            self.last_checkpoint_seconds = time.monotonic() - started
            self.metrics.observe("tastestream_checkpoint_seconds", self.last_checkpoint_seconds)
        return committed

    async def _flush(self) -> None:
        """A whole checkpoint's writes at once (the caller holds the lock)."""
        await self._complete(await self._prepare())

    async def _prepare(self) -> Flight:
        """Take the pending effects and pack the changed states (under the lock)."""
        pending, self.pending = self.pending, []
        changes: list[tuple[ChangelogStore, list[PackedChanges]]] = []
        for store in self.stores.values():
            plan = store.plan_changes()
            if sum(len(part.items) for part in plan) >= PACK_IN_THREAD_KEYS:
                # Packing thousands of states is CPU work: off the event loop, so requests
                # are answered meanwhile (the lock keeps the folds out until it is done).
                packed = await asyncio.to_thread(pack_plan, store.checkpoint, plan)
            else:
                packed = pack_plan(store.checkpoint, plan)
            changes.append((store, packed))
        return Flight(pending, changes)

    async def _complete(self, flight: Flight) -> None:
        """Deliver a prepared checkpoint: its effects first, then its changelog records."""
        if flight.pending:
            # Pair records, forwards and dead letters first: a state that says
            # "applied" must never outlive the effects it stands for.
            await self._deliver(flight.pending)
        for store, packed in flight.changes:
            # The packed values become the stored ones only now, after the effects: a
            # RocksDB store is its own snapshot, and must not hold a state whose effects
            # a crash could still lose.
            changes = store.apply_packed(packed)
            sends: list[tuple[Any, ...]] = []
            for partition, records in changes.items():
                for record in records:
                    future = await self._send_retrying(store.changelog, b"", record, partition)
                    sends.append((future, store.changelog, b"", record, partition))
            for (_, _, _, _, partition), metadata in zip(
                sends, await self._deliver(sends), strict=True
            ):
                store.sent(partition, metadata.offset)
            if sends:
                self.metrics.inc(
                    "tastestream_changelog_records_total", len(sends), {"store": store.name}
                )
        self._maybe_snapshot()

    def _maybe_snapshot(self) -> None:
        interval = self.settings.snapshot_seconds
        if interval <= 0 or (self._snapshot_task is not None and not self._snapshot_task.done()):
            return
        jobs = []
        for store in self.stores.values():
            for partition in sorted(store.partitions):
                if store.is_ready(partition) and store.snapshot_due(partition, interval):
                    snapshot = store.prepare_snapshot(partition)
                    if snapshot is not None:
                        jobs.append((store.snapshot_path(partition), snapshot))
        if jobs:
            self._snapshot_task = asyncio.get_running_loop().create_task(self._write(jobs))

    async def _write(self, jobs: list[tuple[Path, Any]]) -> None:
        for path, snapshot in jobs:
            try:
                started = time.monotonic()
                size = await asyncio.to_thread(write_snapshot, path, snapshot)
                self.metrics.inc("tastestream_snapshots_total")
                log.debug(
                    "snapshot %s: %d keys, %d bytes in %.2f s",
                    path, len(snapshot.values), size, time.monotonic() - started,
                )  # fmt: skip
            except OSError as exc:
                log.warning("snapshot %s failed: %s", path, exc)

    async def flush_snapshots(self) -> None:
        """Wait for a snapshot being written (at shutdown)."""
        if self._snapshot_task is not None:
            with contextlib.suppress(Exception):
                await self._snapshot_task

    # -- rebalances ------------------------------------------------------------------
    async def on_revoked(self) -> None:
        """Flush what was folded (the next owner restores it); nothing is owned until assigned."""
        self.settled.clear()
        async with self._checkpointing, self.lock:
            try:
                await self._flush()
            except Exception as exc:
                # The next owner folds again from the committed offsets: slower, still exact.
                log.warning("flush at revoke failed (%r); the next owner redoes the input", exc)
                self.pending = []
            for name, store in self.stores.items():
                for partition in self.assigned[name]:
                    store.unready(partition)
                self.assigned[name] = set()

    async def on_assigned(self, assigned: dict[str, set[int]]) -> None:
        """Own the new assignment: keep what is current, recover the rest (in the background)."""
        if self._replica is not None and self._replica.done():
            self._replica = None
        for name, store in self.stores.items():
            wanted = assigned.get(name, set())
            for partition in store.partitions - wanted:
                store.drop(partition)
            self.assigned[name] = set(wanted)
        ends = await asyncio.to_thread(self._end_offsets)
        for name, store in self.stores.items():
            for partition in self.assigned[name]:
                end = ends[(store.changelog, partition)]
                current = partition in store.partitions and store.end_offsets.get(partition) == end
                if current and end > 0:
                    store.event(partition).set()  # nobody else wrote it since we flushed
                    continue
                key = (name, partition)
                task = self.recovering.get(key)
                if task is None or task.done():
                    self.recovering[key] = asyncio.get_running_loop().create_task(
                        self._recover(store, partition, end)
                    )
        self.settled.set()

    def _end_offsets(self) -> dict[tuple[str, int], int]:
        wanted = [
            (store.changelog, p) for name, store in self.stores.items() for p in self.assigned[name]
        ]
        return true_end_offsets(self.settings.kafka_client_config(), wanted)

    async def _recover(self, store: ChangelogStore, partition: int, end: int) -> None:
        try:
            recovered = await asyncio.to_thread(
                store.recover,
                partition,
                end,
                lambda start, stop: read_partition(
                    self.settings.kafka_client_config(), store.changelog, partition, start, stop
                ),
            )
            fresh = end == 0 and not recovered.lost
            if recovered.lost or (fresh and self._event_log_has_events()):
                await self._rebuild(store, partition)
                return
            if recovered.incarnation is None:
                recovered.incarnation = store.new_incarnation()
                await self._write_head(store, partition, recovered)
            if partition in self.assigned[store.name]:
                store.install(recovered)
                self.metrics.inc(
                    "tastestream_partitions_recovered_total", labels={"store": store.name}
                )
                self.metrics.inc(
                    "tastestream_recovered_from_snapshot_total",
                    recovered.from_snapshot,
                    {"store": store.name},
                )
                self.metrics.inc(
                    "tastestream_recovered_changelog_records_total",
                    recovered.from_changelog,
                    {"store": store.name},
                )
                log.info(
                    "%s p%d recovered: %d from snapshot, %d changelog records, %.2f s",
                    store.name, partition, recovered.from_snapshot,
                    recovered.from_changelog, recovered.seconds,
                )  # fmt: skip
        except Exception:
            log.exception("recovery of %s p%d failed; retrying in 2 s", store.name, partition)
            await asyncio.sleep(2.0)
            if partition in self.assigned[store.name]:
                ends = await asyncio.to_thread(
                    true_end_offsets,
                    self.settings.kafka_client_config(),
                    [(store.changelog, partition)],
                )
                self.recovering[(store.name, partition)] = asyncio.get_running_loop().create_task(
                    self._recover(store, partition, ends[(store.changelog, partition)])
                )

    async def _write_head(
        self, store: ChangelogStore, partition: int, recovered: Recovered
    ) -> None:
        """Start a changelog incarnation: the marker, then (after a rebuild) every value."""
        marker = incarnation_record(recovered.incarnation or "")
        metadata = await (await self._send(store.changelog, b"", marker, partition))
        recovered.end_offset = metadata.offset + 1

    def _event_log_has_events(self) -> bool:
        root = self.settings.eventlog_path
        return root.exists() and bool(log_directories(root))

    async def _rebuild(self, store: ChangelogStore, partition: int) -> None:
        """Rebuild a partition from the durable event log, then persist it as a new incarnation."""
        started = time.monotonic()
        values = await self._rebuilt_values(store, partition)
        recovered = Recovered(partition, {}, 0, store.new_incarnation())
        await self._write_head(store, partition, recovered)
        if partition not in self.assigned[store.name]:
            return
        recovered.values = values
        store.install(recovered)
        store.rewrite.add(partition)  # the next checkpoint writes every value
        self.rebuilds += 1
        self.metrics.inc("tastestream_rebuilds_total", labels={"store": store.name})
        log.warning(
            "%s p%d rebuilt from the event log: %d keys in %.1f s",
            store.name, partition, len(values), time.monotonic() - started,
        )  # fmt: skip

    async def _rebuilt_values(self, store: ChangelogStore, partition: int) -> dict[str, bytes]:
        rebuild = self.rebuilders.get(store.name)
        if rebuild is not None:
            return await asyncio.to_thread(rebuild, partition)
        if self._replica is None or (self._replica.done() and self._replica.exception()):
            self._replica = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._fold_event_log)
            )
        replica = await self._replica
        return await asyncio.to_thread(
            partition_values, replica, store.name, partition, self.settings.partitions
        )

    def _fold_event_log(self) -> StreamState:
        """The whole durable event log folded as the workers fold it (in a thread).

        Tokens need every user's session windows, so the whole log is folded,
        once for every partition this assignment rebuilds.
        """
        replica = StreamState(self.config)
        root = self.settings.eventlog_path
        if root.exists():
            replica.apply(read_logs(root, dedupe_window=0))
        return replica

    # -- worker-local views ------------------------------------------------------------
    def read_views(self) -> tuple[ItemCatalogue, Popularity, int]:
        """Catalogue and popularity of the durable event log (run in a thread at start)."""
        catalogue = ItemCatalogue()
        popularity = Popularity(half_life=self.settings.popularity_half_life_seconds)
        since = time.time() - 4 * self.settings.popularity_half_life_seconds
        root = self.settings.eventlog_path
        n = 0
        if root.exists():
            for event in read_logs(root, since_ts=since):
                catalogue.update(event)
                popularity.update(event)
                n += 1
        return catalogue, popularity, n

    def adopt_views(self, catalogue: ItemCatalogue, popularity: Popularity) -> None:
        """Swap in views read from the log, keeping what arrived meanwhile (it is newer)."""
        for item_id, info in self.catalogue.items.items():
            catalogue.update({"item_id": item_id, "item": info})
        popularity.merge(self.popularity)
        self.catalogue, self.popularity = catalogue, popularity


def register(app: Any, state: StateService, topic_stores: dict[str, str]) -> None:
    """Wire the state into the app's rebalances, start-up and shutdown.

    ``topic_stores`` maps each consumed topic to the store its partitions own.
    """

    @app.on_partitions_revoked.connect
    async def revoke_state(app: Any, revoked: Any, **kwargs: Any) -> None:
        await state.on_revoked()

    @app.on_partitions_assigned.connect
    async def assign_state(app: Any, assigned: Any, **kwargs: Any) -> None:
        by_store: dict[str, set[int]] = {name: set() for name in topic_stores.values()}
        for tp in assigned:
            name = topic_stores.get(tp.topic)
            if name is not None:
                by_store[name].add(tp.partition)
        while True:
            try:
                await state.on_assigned(by_store)
                return
            except Exception as exc:  # the broker may be away: keep serving, retry
                log.warning("taking the assignment failed (%r); retrying in 1 s", exc)
                await asyncio.sleep(1.0)

    @app.task
    async def warm_views() -> None:
        catalogue, popularity, n = await asyncio.to_thread(state.read_views)
        state.adopt_views(catalogue, popularity)
        log.info("catalogue and popularity warmed from %d logged events", n)

    @app.on_before_shutdown.connect
    async def finish_snapshots(app: Any, **kwargs: Any) -> None:
        await state.flush_snapshots()
