"""Create the topics of :class:`streams.topics.Topics` when they are missing."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from agents.settings import Settings

log = logging.getLogger(__name__)


def ensure_topics(settings: Settings, timeout: float = 15.0) -> list[str]:
    """Create missing topics; return the names created. Existing ones are left as they are."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 3})
    existing = set(admin.list_topics(timeout=timeout).topics)
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
