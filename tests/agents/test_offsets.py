"""End offsets from fetch responses, against the real broker."""

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from support import consume_all

from agents.offsets import true_end_offsets


def test_end_offsets_count_every_message_of_a_single_batch(settings):
    bootstrap = settings.kafka_bootstrap
    topic = settings.topic_prefix + ".offsets"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 100, "log_level": 3})
    # 250 messages in one produce batch: Tansu's ListOffsets answers 1 here.
    for i in range(250):
        producer.produce(topic, b"m%d" % i, partition=0)
    producer.flush(10)
    for i in range(7):
        producer.produce(topic, b"n%d" % i, partition=1)
        producer.flush(10)  # seven batches of one
    ends = true_end_offsets(bootstrap, [(topic, 0), (topic, 1), (topic, 2)])
    assert ends == {(topic, 0): 250, (topic, 1): 7, (topic, 2): 0}
    # ... and that is what a consumer really reads.
    assert len(consume_all(bootstrap, topic, expect=257)) == 257


def test_no_partitions_asks_nothing(settings):
    assert true_end_offsets(settings.kafka_bootstrap, []) == {}
