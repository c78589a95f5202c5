"""Every topic tastestream reads or writes, declared in one place.

Names are ``{prefix}.{suffix}`` with a configurable prefix (default
``tastestream``). Keys are user ids wherever a topic is per-user, and every
producer must partition them as Faust does (murmur2 of the UTF-8 key, the Java
client's default), so that a user's events, state and requests meet on one
worker: :func:`partition_for` computes it.

Examples
--------
>>> t = Topics("shop")
>>> t.events.name, t.dead_letter.name
('shop.events', 'shop.dead-letter')
>>> partition_for("user-1", 4) == partition_for("user-1", 4)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2

from streams.limits import KAFKA_MAX_MESSAGE_BYTES


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic: its name, what it is keyed by, what its values are."""

    name: str
    key: str
    value: str
    doc: str
    #: True when the topic shares the events topic's partition count (co-partitioned by user).
    per_user: bool = True
    #: Written and read only by the workers.
    internal: bool = False
    #: Topic configs set at creation (e.g. retention).
    config: dict[str, str] = field(default_factory=dict)


class Topics:
    """The topic names for one prefix."""

    def __init__(self, prefix: str = "tastestream") -> None:
        if not prefix or any(c in prefix for c in " /\\"):
            raise ValueError(
                f"topic prefix {prefix!r} must be non-empty, without spaces or slashes"
            )
        self.prefix = prefix
        self.events = TopicSpec(
            f"{prefix}.events",
            "user_id",
            "event or batch (JSON or msgpack)",
            "clickstream in: one event or an array of events per message",
            config={"max.message.bytes": str(KAFKA_MAX_MESSAGE_BYTES)},
        )
        self.dead_letter = TopicSpec(
            f"{prefix}.dead-letter",
            "user_id when known",
            "JSON dead-letter record",
            "rejected input with the original bytes, the reason and the source",
            per_user=False,
        )
        self.recommendation_requests = TopicSpec(
            f"{prefix}.recommendation-requests",
            "user_id",
            "JSON or msgpack request",
            "{request_id, user_id, surface, k, context}",
        )
        self.recommendations = TopicSpec(
            f"{prefix}.recommendations",
            "user_id",
            "JSON recommendation list",
            "answers to recommendation requests",
        )
        self.model_updates = TopicSpec(
            f"{prefix}.model-updates",
            "model name",
            "JSON model-version announcement",
            "a new model version was published",
            per_user=False,
        )

        # -- internal: written and read only by the workers --
        self.cooccurrence_pairs = TopicSpec(
            f"{prefix}.cooccurrence-pairs",
            "none (partitioned by source token)",
            "msgpack array of pair records",
            "co-occurrence pair records counted by users' events, to the token's owner",
            internal=True,
        )
        # Changelogs hold checkpoint groups (many keys per record), which cannot
        # be compacted by key: keep them; snapshots bound what recovery reads.
        keep = {
            "cleanup.policy": "delete",
            "retention.ms": "-1",
            # A checkpoint group's record is split at 512 KiB, plus one state of at most 512 KiB.
            "max.message.bytes": str(KAFKA_MAX_MESSAGE_BYTES),
        }
        self.user_changelog = TopicSpec(
            f"{prefix}.user-state-changelog",
            "none (partition = the users' partition)",
            "msgpack checkpoint group {user: state}",
            "write-behind changelog of the user states",
            internal=True,
            config=keep,
        )
        self.token_changelog = TopicSpec(
            f"{prefix}.token-state-changelog",
            "none (partition = the tokens' partition)",
            "msgpack checkpoint group {token: state}",
            "write-behind changelog of the token states",
            internal=True,
            config=keep,
        )

        self.join_changelog = TopicSpec(
            f"{prefix}.join-state-changelog",
            "none (partition = the impressions' partition)",
            "msgpack checkpoint group {key: state}",
            "write-behind changelog of the impression join (pending lists, per-variant sums)",
            internal=True,
            config=keep,
        )

        # -- experiments and outcomes (agents/experiments.py, agents/impressions.py) --
        # Broadcast topics: every worker reads all of it from the beginning and keeps the
        # latest value per key, so compaction keeps what a new worker needs.
        compact = {"cleanup.policy": "compact"}
        self.experiments = TopicSpec(
            f"{prefix}.experiments",
            "experiment name",
            "JSON experiment record (definition, status, shares, stopped variants)",
            "the running experiments: written by `tastestream experiment` and the guard",
            per_user=False,
            internal=True,
            config=compact,
        )
        self.impressions = TopicSpec(
            f"{prefix}.impressions",
            "user_id",
            "msgpack array of join records: served lists, engagements, ticks",
            "every served list (its items are impressions) and what the join needs to label it",
            internal=True,
        )
        self.outcomes = TopicSpec(
            f"{prefix}.outcomes",
            "user_id",
            "msgpack array of outcomes (one per impression, y_click ... y_purchase, value)",
            "labelled impressions, once their window closed (the ranker's training examples)",
            internal=True,
        )
        self.experiment_metrics = TopicSpec(
            f"{prefix}.experiment-metrics",
            "partition of the impressions topic",
            "JSON per-variant sums of one partition",
            "per-variant sums by partition: any worker adds them up for GET /experiments/{name}",
            per_user=False,
            internal=True,
            config=compact,
        )

    def all(self) -> list[TopicSpec]:
        return [
            self.events,
            self.dead_letter,
            self.recommendation_requests,
            self.recommendations,
            self.model_updates,
            self.cooccurrence_pairs,
            self.user_changelog,
            self.token_changelog,
            self.join_changelog,
            self.experiments,
            self.impressions,
            self.outcomes,
            self.experiment_metrics,
        ]


def partition_for(user_id: str, partitions: int) -> int:
    """The partition Faust and the Java client pick for key ``user_id``."""
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions
