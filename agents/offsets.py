"""End offsets read from fetch responses, correct on Tansu and on Apache Kafka.

Tansu answers ListOffsets(latest) with the first offset of a partition's last
produced *batch* + 1 (250 messages in one batch: it answers 1), while fetch
responses carry the right high watermark. Faust's table recovery reads the
changelog up to ListOffsets' answer, so on Tansu it restores too little.

:func:`true_end_offsets` asks ListOffsets first, then fetches from one before
that answer (which is inside the last batch on Tansu, the last record on
Kafka) and takes the high watermark the fetch response carries. On Apache Kafka
both agree, so the same code is right on both.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition


def client_config(kafka: str | Mapping[str, str]) -> dict[str, str]:
    """librdkafka settings from a bootstrap string or a full client config (security included).

    >>> client_config("k:9092")
    {'bootstrap.servers': 'k:9092'}
    """
    return {"bootstrap.servers": kafka} if isinstance(kafka, str) else dict(kafka)


def true_end_offsets(
    kafka: str | Mapping[str, str], partitions: Iterable[tuple[str, int]], timeout: float = 10.0
) -> dict[tuple[str, int], int]:
    """High watermark per (topic, partition), read from fetch responses.

    ``kafka`` is a bootstrap string or :meth:`Settings.kafka_client_config
    <agents.settings.Settings.kafka_client_config>`.
    """
    wanted = list(dict.fromkeys(partitions))
    if not wanted:
        return {}
    consumer = Consumer(
        {
            **client_config(kafka),
            "group.id": "tastestream-end-offsets",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
            "log_level": 3,
        }
    )
    try:
        listed: dict[tuple[str, int], int] = {}
        for topic, partition in wanted:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout
            )
            listed[(topic, partition)] = high
        result = {tp: 0 for tp, high in listed.items() if high <= 0}
        pending = {tp: high for tp, high in listed.items() if high > 0}
        if not pending:
            return result
        consumer.assign(
            [TopicPartition(t, p, max(high - 1, 0)) for (t, p), high in pending.items()]
        )
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(err)
            tp = (msg.topic(), msg.partition())
            if tp in pending:
                # A fetch answered for this partition: its high watermark is the truth.
                _, fetched_high = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
                result[tp] = max(fetched_high, pending.pop(tp))
        if pending:
            raise TimeoutError(f"no fetch answered within {timeout:.0f} s for {sorted(pending)}")
        return result
    finally:
        consumer.close()


def read_partition(
    kafka: str | Mapping[str, str],
    topic: str,
    partition: int,
    start: int,
    end: int,
    timeout: float = 30.0,
) -> Iterator[bytes]:
    """The values of ``topic``/``partition`` at offsets ``[start, end)``, in order.

    Reads with a group-less confluent-kafka consumer (no commit, no group join);
    raises ``TimeoutError`` if the broker stops answering before ``end``.
    """
    if start >= end:
        return
    consumer = Consumer(
        {
            **client_config(kafka),
            "group.id": "tastestream-recovery",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # Recovery reads whole partitions: big fetches, few round trips.
            "queued.min.messages": 100_000,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "log_level": 3,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        position = start
        deadline = time.monotonic() + timeout
        while position < end:
            # No more than are left: consume() returns as soon as it has that many.
            batch = consumer.consume(min(10_000, end - position), 0.5)
            if not batch:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{topic}[{partition}]: read up to {position} of {end} "
                        f"within {timeout:.0f} s"
                    )
                continue
            deadline = time.monotonic() + timeout
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                offset = msg.offset()
                if offset >= end:
                    return
                position = offset + 1
                yield msg.value()
    finally:
        consumer.close()
