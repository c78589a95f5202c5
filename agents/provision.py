"""Create the topics of :class:`streams.topics.Topics` when they are missing.

Each topic is created with the configs its :class:`~streams.topics.TopicSpec`
declares: the events topic and the changelogs with ``max.message.bytes`` =
:data:`streams.limits.KAFKA_MAX_MESSAGE_BYTES`, so that a message of up to
MAX_MESSAGE_BYTES (plus its key and framing) is accepted by any Kafka, whose
default is a few bytes over 1 MiB for the whole record batch. Topics that
exist are left as they are; one whose limit is lower is reported.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from agents.settings import Settings

log = logging.getLogger(__name__)

#: Seconds to wait for a broker's first answer before saying it cannot be reached.
REACH_SECONDS = 5.0


class BrokerUnreachable(ConnectionError):
    """No broker answered at the configured address; the message says where and what to do."""


def broker_topics(settings: Settings, timeout: float = REACH_SECONDS) -> set[str]:
    """The broker's topic names, or :class:`BrokerUnreachable` after ``timeout`` seconds."""
    # log_level 0: librdkafka's own "connection refused" lines would repeat what we say once
    admin = AdminClient({**settings.kafka_client_config(), "log_level": 0})
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
    admin = AdminClient({**settings.kafka_client_config(), "log_level": 3})
    configs = {spec.name: spec.config for spec in settings.topics.all()}
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
    sized = [n for n, c in configs.items() if n in existing and "max.message.bytes" in c]
    _report_small_limits(admin, sized, configs, timeout)
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
