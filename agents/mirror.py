"""Reading a topic in every worker, without a consumer group.

A consumer group splits a topic's partitions among its members; some topics
must reach every worker whole: model announcements, the running experiments,
per-variant sums. :class:`TopicReader` assigns itself every partition of one
topic (no group join, no commits) in a background thread with confluent-kafka,
from the beginning (a worker learns the current state of a compacted topic)
or from the end (only what is announced from now on), and hands each record
to a callback in that thread.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

log = logging.getLogger(__name__)


class TopicReader:
    """Every record of ``topic``, read in a thread; see the module docstring.

    Parameters
    ----------
    bootstrap
        ``host:port`` list.
    topic
        The topic (waited for until it exists).
    on_record
        Called in the reader's thread with each record's key and value.
    from_beginning
        Start at each partition's first offset; else at its true end.
    name
        The thread's name.
    """

    def __init__(
        self,
        bootstrap: str | dict[str, str],
        topic: str,
        on_record: Callable[[bytes | None, bytes], None],
        from_beginning: bool = True,
        name: str = "topic-reader",
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.on_record = on_record
        self.from_beginning = from_beginning
        self.assigned = threading.Event()
        #: Set once every record present at assignment time was handed over.
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: str | None = None

    def start(self) -> TopicReader:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        from agents.offsets import client_config, true_end_offsets

        consumer = Consumer(
            {
                **client_config(self.bootstrap),
                # never joined nor committed: assign() needs no group, but the client wants an id
                "group.id": f"tastestream-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 100,
                "log_level": 3,
            }
        )
        try:
            while not self._stop.is_set():
                try:
                    meta = consumer.list_topics(self.topic, timeout=5)
                    partitions = sorted(meta.topics[self.topic].partitions)
                    if partitions:
                        break
                except Exception as exc:  # broker not up yet: retry until stopped
                    self.error = str(exc)
                self._stop.wait(1.0)
            else:
                return
            # The true end (from a fetch response): ListOffsets(latest) is wrong on Tansu.
            ends = true_end_offsets(self.bootstrap, [(self.topic, p) for p in partitions])
            start = {p: OFFSET_BEGINNING if self.from_beginning else ends[(self.topic, p)]
                     for p in partitions}  # fmt: skip
            consumer.assign([TopicPartition(self.topic, p, start[p]) for p in partitions])
            self.assigned.set()
            behind = {p for p in partitions if self.from_beginning and ends[(self.topic, p)] > 0}
            if not behind:
                self.caught_up.set()
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    log.warning("%s: %s", self.topic, msg.error())
                    continue
                try:
                    self.on_record(msg.key(), msg.value())
                except Exception:
                    log.exception("%s: a record could not be applied; skipped", self.topic)
                if behind and msg.offset() + 1 >= ends[(self.topic, msg.partition())]:
                    behind.discard(msg.partition())
                    if not behind:
                        self.caught_up.set()
        except Exception:
            log.exception("%s reader stopped", self.topic)
        finally:
            consumer.close()
