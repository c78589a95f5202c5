"""Create the topics of :class:`streams.topics.Topics` when they are missing."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from agents.settings import Settings

log = logging.getLogger(__name__)

#: Seconds to wait for a broker's first answer before saying it cannot be reached.
REACH_SECONDS = 5.0


class BrokerUnreachable(ConnectionError):
    """No broker answered at the configured address; the message says where and what to do."""


def broker_topics(settings: Settings, timeout: float = REACH_SECONDS) -> set[str]:
    """The broker's topic names, or :class:`BrokerUnreachable` after ``timeout`` seconds."""
    # log_level 0: librdkafka's own "connection refused" lines would repeat what we say once
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0})
    try:
        return set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise BrokerUnreachable(
            f"no Kafka broker answered at {settings.kafka_bootstrap} within {timeout:g} s "
            f"({exc.args[0].str()}): is it running? Start one with `tastestream broker` "
            "or point TASTESTREAM_KAFKA_URL at yours"
        ) from None


def ensure_topics(settings: Settings, timeout: float = 15.0) -> list[str]:
    """Create missing topics; return the names created. Existing ones are left as they are."""
    existing = broker_topics(settings, min(timeout, REACH_SECONDS))
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 3})
    wanted = [
        NewTopic(
            spec.name,
            num_partitions=settings.partitions if spec.per_user else 1,
            replication_factor=settings.replication_factor,
            config=dict(spec.config),
        )
        for spec in settings.topics.all()
        if spec.name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    log.info("created topics: %s", ", ".join(created))
    return created
