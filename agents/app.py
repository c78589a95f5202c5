"""The Faust application: built by :func:`create_app` from :class:`Settings`.

There is no module-level app: building it reads settings, and Faust's
autodiscovery imports every module, so import stays free of I/O. The CLI (and
the tests) call ``create_app(settings)``, which builds the domain services
(state, ingest, co-occurrence, models, recommendations, Redis), hands each
what it needs, and registers their agents, timers and web routes.

Offsets are committed only through :meth:`StateService.checkpoint
<agents.state.StateService.checkpoint>`: the consumer's commit (periodic, at
shutdown, after an agent error) first makes every effect durable.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from agents.metrics import Metrics
from agents.offsets import true_end_offsets
from agents.settings import Settings


class CheckpointedConsumer(faust_aiokafka.Consumer):
    """Faust's consumer with two changes.

    * ``commit`` runs inside the state's checkpoint: the offsets it commits
      are of messages whose effects were made durable first.
    * High watermarks come from fetch responses (:mod:`agents.offsets`): the
      embedded broker answers ListOffsets wrongly.
    """

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        services: Services | None = getattr(self.app, "services", None)
        if services is None:  # pragma: no cover - only before create_app finished
            return await super().commit(topics, start_new_transaction)
        if self.app.client_only:
            return False

        def capture() -> dict[TP, int]:
            # Under the state's lock: the offsets of what the checkpoint's states cover.
            pending = list(self._filter_tps_with_pending_acks(topics))
            return self._filter_committable_offsets(pending)

        async def commit_offsets(offsets: dict[TP, int]) -> bool:
            # Faust's commit (``_commit_tps``) for exactly the captured offsets, after the
            # checkpoint made their effects and states durable.
            if not offsets:
                return False
            await self._handle_attached(offsets)
            return await self._commit_offsets(offsets, start_new_transaction=start_new_transaction)

        return await services.state.checkpoint(commit_offsets, capture)

    def _new_consumer_thread(self) -> FetchWaitConsumerThread:
        return FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        bootstrap = ",".join(
            f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker_consumer
        )
        ends = await asyncio.to_thread(
            true_end_offsets, bootstrap, [(tp.topic, tp.partition) for tp in partitions]
        )
        return {tp: ends[(tp.topic, tp.partition)] for tp in partitions}


class FetchWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with the fetch wait from our settings (Faust fixes 1.5 s)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        settings: Settings = self.app.settings
        # aiokafka hands this to its fetcher when the consumer starts.
        consumer._fetch_max_wait_ms = max(1, int(settings.fetch_max_wait_seconds * 1000))
        return consumer


class CheckpointedTransport(faust_aiokafka.Transport):
    Consumer = CheckpointedConsumer


@dataclass
class Services:
    """The worker's domain services, built once by :func:`create_app`."""

    settings: Settings
    metrics: Metrics
    state: Any  # agents.state.StateService
    ingest: Any  # agents.ingest.Ingest
    cooccurrence: Any  # agents.cooccurrence.Cooccurrence
    models: Any  # agents.serving.ModelServer
    recommender: Any  # agents.recommend.Recommender
    redis: Any  # agents.redis_client.RedisClient
    broker: Any  # agents.broker.BrokerWatch
    experiments: Any  # agents.experiments.ExperimentService
    impressions: Any  # agents.impressions.Impressions
    ranking: Any = None  # agents.ranking.RankerService


class TastestreamApp(faust.App):
    """A Faust app whose offsets are committed after the state they stand for."""

    settings: Settings
    worker_id: str
    services: Services

    def _new_transport(self) -> CheckpointedTransport:
        return CheckpointedTransport(self.conf.broker_consumer, self)


def bytes_topic(app: faust.App, name: str, partitions: int, internal: bool = False) -> Any:
    """A topic of raw bytes: our codecs (JSON or msgpack, event or batch) do the decoding."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=internal,
    )


def kafka_credentials(settings: Settings) -> Any:
    """Faust's (aiokafka's) credentials from the same settings the confluent-kafka clients use."""
    protocol = settings.kafka_security_protocol.upper()
    if protocol in ("", "PLAINTEXT"):
        return None
    import ssl

    context = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


def create_app(settings: Settings) -> TastestreamApp:
    """The configured app with every service, agent, timer and view registered."""
    if not settings.kafka_url:
        raise ValueError("create_app needs settings.kafka_url (start the stack first)")
    from agents import (
        cooccurrence,
        experiments,
        impressions,
        ingest,
        ranking,
        recommend,
        serving,
        state,
        ui,
        views,
    )
    from agents.broker import BrokerWatch
    from agents.redis_client import RedisClient
    from streams.limits import KAFKA_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES

    worker_id = settings.worker_id or f"{socket.gethostname()}-{settings.web_port}"
    faust_dir = settings.data_path / "faust" / worker_id
    faust_dir.mkdir(parents=True, exist_ok=True)
    app = TastestreamApp(
        settings.topic_prefix,
        broker=settings.kafka_url,
        broker_credentials=kafka_credentials(settings),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_linger=settings.producer_linger_seconds,
        # Forwarded batches and changelog records may be as large as an input message.
        producer_max_request_size=KAFKA_MAX_MESSAGE_BYTES,
        consumer_max_fetch_size=max(KAFKA_MAX_MESSAGE_BYTES, 4 * 1024 * 1024),
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=max(settings.session_timeout_seconds / 4, 0.5),
        broker_commit_interval=settings.commit_interval_seconds,
        broker_commit_every=1_000_000,
        web_bind=settings.web_bind or settings.web_host,
        web_port=settings.web_port,
        web_application_options={"client_max_size": MAX_MESSAGE_BYTES},
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        datadir=str(faust_dir),
        # Faust keeps its own assignor (co-partitioned topics, and the host of
        # every partition for request routing) only with tables or standbys;
        # we keep no Faust tables, and standbys of no tables cost nothing.
        table_standby_replicas=1,
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
    )
    app.settings = settings
    app.worker_id = worker_id
    metrics = Metrics()

    async def send(topic: str, key: bytes | None, value: bytes, partition: int) -> Any:
        return await app.producer.send(topic, key, value, partition, None, None)

    state_service = state.StateService(settings, send, metrics)
    redis = RedisClient(settings.redis_url, metrics)
    models = serving.ModelServer(settings, metrics)
    impressions_service = impressions.Impressions(settings, worker_id, state_service, metrics, send)
    experiment_service = experiments.ExperimentService(settings, metrics, models)
    ingest_service = ingest.Ingest(
        settings, worker_id, state_service, metrics, impressions_service.forward_engagements
    )
    cooccurrence_service = cooccurrence.Cooccurrence(settings, state_service, metrics)
    ranking_service = ranking.RankerService(settings, worker_id, metrics)
    recommender = recommend.Recommender(
        settings,
        state_service,
        models,
        redis,
        metrics,
        experiment_service,
        impressions_service,
        ranking_service,
    )

    async def learn(outcomes: list[dict[str, Any]]) -> Any:
        # In the list-building thread: no list is built while the weights change.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(recommender.executor, ranking_service.learn, outcomes)

    impressions_service.on_outcomes = learn
    app.services = Services(
        settings=settings,
        metrics=metrics,
        state=state_service,
        ingest=ingest_service,
        cooccurrence=cooccurrence_service,
        models=models,
        recommender=recommender,
        redis=redis,
        broker=BrokerWatch(settings, metrics),
        experiments=experiment_service,
        impressions=impressions_service,
        ranking=ranking_service,
    )
    events_topic = bytes_topic(app, settings.topics.events.name, settings.partitions)
    pairs_topic = bytes_topic(
        app, settings.topics.cooccurrence_pairs.name, settings.partitions, internal=True
    )
    impressions_topic = bytes_topic(
        app, settings.topics.impressions.name, settings.partitions, internal=True
    )
    topic_stores = {
        events_topic.get_topic_name(): "users",
        pairs_topic.get_topic_name(): "tokens",
        impressions_topic.get_topic_name(): impressions.STORE,
    }
    state.register(app, state_service, topic_stores)
    ingest.register(app, ingest_service, events_topic)
    cooccurrence.register(app, cooccurrence_service, pairs_topic)
    serving.register(app, models)
    recommend.register(app, recommender, events_topic, pairs_topic)
    views.register(app, app.services, events_topic, pairs_topic)
    impressions.register(app, impressions_service, impressions_topic)
    experiments.register(app, experiment_service)
    ranking.register(app, ranking_service, recommender.executor)

    @app.task
    async def watch_broker() -> None:
        await app.services.broker.run(lambda: app.should_stop)

    ui.register(app, events_topic)
    from agents import state_routes

    state_routes.register(app, app.services)
    return app
