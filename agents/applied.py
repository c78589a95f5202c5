"""How far the workers have applied the events topic (``produce --wait``, ``train --wait-...``).

The workers' consumer group (its id is the topic prefix, the Faust app id)
commits an offset on ``<prefix>.events`` only after the events before it were
applied, so "applied up to here" is "the group's committed offset reached
here". The targets are end offsets known to be right: the producer's delivery
reports (``produce --wait``), or :func:`agents.offsets.true_end_offsets`,
which reads them from fetch responses (the embedded broker's ListOffsets
answers too little, see that module).

Examples
--------
>>> applied_events({0: 3, 1: 0}, {0: [(0, 100), (1, 100), (2, 50)], 1: [(0, 10)]})
250
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from agents.settings import Settings

#: Seconds between two looks at the committed offsets.
POLL_SECONDS = 0.5


def committed_offsets(
    settings: Settings, partitions: list[int], timeout: float = 10.0
) -> dict[int, int]:
    """The workers' committed offset per partition of ``<prefix>.events`` (0 when none yet).

    Asked with the admin API (OffsetFetch), so this process never joins the group.
    """
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    topic = settings.topics.events.name
    admin = AdminClient({**settings.kafka_client_config(), "log_level": 0})
    request = ConsumerGroupTopicPartitions(
        settings.topic_prefix, [TopicPartition(topic, p) for p in partitions]
    )
    futures = admin.list_consumer_group_offsets([request], request_timeout=timeout)
    answer = futures[settings.topic_prefix].result(timeout)
    return {tp.partition: max(tp.offset, 0) for tp in answer.topic_partitions}


def events_end_offsets(settings: Settings, timeout: float = 10.0) -> dict[int, int]:
    """The true end offset of every partition of ``<prefix>.events`` (from fetch responses)."""
    from confluent_kafka.admin import AdminClient

    from agents.offsets import true_end_offsets

    topic = settings.topics.events.name
    admin = AdminClient({**settings.kafka_client_config(), "log_level": 0})
    metadata = admin.list_topics(topic, timeout=timeout).topics[topic]
    if metadata.error is not None:
        raise RuntimeError(f"topic {topic}: {metadata.error.str()}")
    ends = true_end_offsets(
        settings.kafka_client_config(), [(topic, p) for p in metadata.partitions]
    )
    return {partition: end for (_, partition), end in ends.items()}


def applied_events(committed: Mapping[int, int], messages: Mapping[int, list]) -> int:
    """Events of ``messages`` (partition -> ``[(offset, events)]``) below the committed offsets."""
    return sum(
        count
        for partition, sent in messages.items()
        for offset, count in sent
        if offset < committed.get(partition, 0)
    )


def wait_until_applied(
    settings: Settings,
    ends: Mapping[int, int],
    timeout: float,
    on_poll: Callable[[dict[int, int]], None] | None = None,
) -> dict[int, int]:
    """Poll the committed offsets until each partition reaches ``ends`` or ``timeout`` passes.

    Parameters
    ----------
    settings
        Which broker, topic prefix (the group id) and topic.
    ends
        partition -> the offset after the last message to wait for.
    timeout
        Seconds to wait at most.
    on_poll
        Called with the committed offsets after every look (a progress bar).

    Returns
    -------
    dict
        The last committed offsets seen; compare with ``ends`` to know whether
        everything was applied (:func:`reached`).
    """
    wanted = {p: end for p, end in ends.items() if end > 0}
    deadline = time.monotonic() + timeout
    committed: dict[int, int] = {}
    while True:
        if wanted:
            committed = committed_offsets(settings, sorted(wanted))
        if on_poll is not None:
            on_poll(committed)
        if reached(committed, wanted) or time.monotonic() >= deadline:
            return committed
        time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))


def reached(committed: Mapping[int, int], ends: Mapping[int, int]) -> bool:
    """Whether every partition's committed offset is at or past its end.

    Examples
    --------
    >>> reached({0: 5, 1: 2}, {0: 5, 1: 3}), reached({0: 5}, {0: 5, 1: 0})
    (False, True)
    """
    return all(committed.get(p, 0) >= end for p, end in ends.items() if end > 0)
