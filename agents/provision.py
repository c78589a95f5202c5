"""Create the topics of :class:`streams.topics.Topics` when they are missing.

The events topic is created with ``max.message.bytes`` =
:data:`streams.limits.KAFKA_MAX_MESSAGE_BYTES`, so that a batch message of up
to MAX_MESSAGE_BYTES (plus its key and framing) is accepted by any Kafka,
whose default is a few bytes over 1 MiB for the whole record batch. Topics
that exist are left as they are; one whose limit is lower is reported.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from agents.settings import Settings
from streams.limits import KAFKA_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Size configs by topic name, added to each spec's own ``config`` at creation.

    Examples
    --------
    >>> configs = topic_configs(Settings(topic_prefix="shop"))
    >>> configs["shop.events"]["max.message.bytes"] == str(KAFKA_MAX_MESSAGE_BYTES)
    True
    """
    return {settings.topics.events.name: {"max.message.bytes": str(KAFKA_MAX_MESSAGE_BYTES)}}


def ensure_topics(settings: Settings, timeout: float = 15.0) -> list[str]:
    """Create missing topics; return the names created. Existing ones are left as they are."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 3})
    existing = set(admin.list_topics(timeout=timeout).topics)
    configs = topic_configs(settings)
    wanted = [
        NewTopic(
            spec.name,
            num_partitions=settings.partitions if spec.per_user else 1,
            replication_factor=settings.replication_factor,
            config={**spec.config, **configs.get(spec.name, {})},
        )
        for spec in settings.topics.all()
        if spec.name not in existing
    ]
    _report_small_limits(admin, [n for n in configs if n in existing], configs, timeout)
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


def _report_small_limits(
    admin: AdminClient, names: list[str], configs: dict[str, dict[str, str]], timeout: float
) -> None:
    """Warn about existing topics whose max.message.bytes is below what the contract needs."""
    if not names:
        return
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        try:
            entry = future.result(timeout).get("max.message.bytes")
        except KafkaException:
            continue  # the broker cannot describe configs: nothing to compare
        wanted = int(configs[resource.name]["max.message.bytes"])
        if entry is not None and entry.value is not None and int(entry.value) < wanted:
            log.warning(
                "topic %s has max.message.bytes=%s, below the %d a full batch message needs:"
                " batches over that size are refused by the broker (raise it with"
                " kafka-configs --alter --add-config max.message.bytes=%d)",
                resource.name,
                entry.value,
                wanted,
                wanted,
            )
