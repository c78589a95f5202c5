"""Typed settings: defaults < config file < ``TASTESTREAM_*`` environment variables.

Every key of :class:`Settings` can be set in the commented config file
(``deploy/tastestream.toml`` documents them all; point ``TASTESTREAM_CONFIG``
at your own copy) and overridden by the environment variable
``TASTESTREAM_<KEY>`` (upper case), e.g. ``TASTESTREAM_WEB_PORT=7000``.

Examples
--------
>>> s = Settings.load(env={"TASTESTREAM_WEB_PORT": "7000"}, config_path=None)
>>> s.web_port, s.topic_prefix
(7000, 'tastestream')
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "TASTESTREAM_"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "tastestream.toml"


class SettingsError(ValueError):
    """A setting has a value of the wrong kind; the message names the key."""


@dataclass(frozen=True)
class Settings:
    # -- where things are (empty url: start the embedded broker / Redis) --
    kafka_url: str = ""
    redis_url: str = ""
    web_host: str = "127.0.0.1"
    web_bind: str = ""
    web_port: int = 6066
    data_dir: str = "tastestream-data"
    # -- topics --
    topic_prefix: str = "tastestream"
    partitions: int = 4
    replication_factor: int = 1
    # -- ingest --
    history_length: int = 200
    dedupe_window: int = 1000
    ingest_batch_size: int = 1000
    ingest_batch_seconds: float = 0.05
    producer_linger_seconds: float = 0.02
    #: Longest a fetch waits for data. The embedded broker (Tansu) answers a fetch only
    #: when this runs out, so it is the floor of freshness there (Faust sets 1.5 s;
    #: at 0.1 s /state p50 fell from 0.54 s to 0.11 s). Kafka answers as data arrives.
    fetch_max_wait_seconds: float = 0.1
    session_timeout_seconds: float = 10.0
    worker_id: str = ""
    # -- streaming state --
    #: Seconds between checkpoints: changed state reaches its changelog, then offsets commit.
    commit_interval_seconds: float = 1.0
    #: Seconds between snapshots of each partition's state (0: never).
    snapshot_seconds: float = 60.0
    #: Where packed states live: "memory" (a dict, plus snapshot files) or "rocksdb"
    #: (on local disk, off the Python heap: for millions of users).
    state_store: str = "memory"
    #: Live (decoded) state objects kept per store; the rest stay packed.
    state_cache_keys: int = 50_000
    #: Bytes of encoded events kept in a user's history at most.
    history_max_bytes: int = 128 * 1024
    session_gap_seconds: float = 1800.0
    state_half_life_seconds: float = 7 * 86400.0
    cooccurrence_window: int = 20
    cooccurrence_capacity: int = 200
    impression_window_seconds: float = 1800.0
    popularity_half_life_seconds: float = 86400.0
    # -- recommendations --
    recs_k: int = 20
    recs_ttl_seconds: int = 3600
    recs_refresh_seconds: float = 0.2
    recs_refresh_budget_seconds: float = 0.05
    recs_per_source: int = 50
    recs_cache_users: int = 100_000
    #: surface -> {source: weight}; merged over models.surfaces.DEFAULT_SURFACES.
    surfaces: dict = field(default_factory=dict)
    # -- experiments and outcomes --
    #: experiment name -> definition (models.experiments); started with `tastestream experiment`.
    experiments: dict = field(default_factory=dict)
    #: Seconds a served list waits for engagements before its outcomes are emitted.
    outcome_window_seconds: float = 1800.0
    #: How often each partition's due lists are closed (seconds).
    outcome_tick_seconds: float = 1.0
    #: How often each partition's per-variant sums are published (seconds).
    experiment_metrics_seconds: float = 2.0
    #: One JSON line per served list (request id, user hash, surface, variant) on stderr.
    log_requests: bool = True
    # -- the second pass (learned ranker, models/ranking) --
    #: Rank the surfaces of ``ranker_weights`` with the learned ranker.
    ranker_enabled: bool = True
    #: A ranker file to start from (``tastestream rank-bootstrap``), unless this
    #: worker has its own checkpoint; empty: start cold.
    ranker_path: str = ""
    #: Examples learned before the ranker reorders lists (before: first-pass order).
    ranker_min_examples: int = 2000
    #: Engagement type -> share of negatives learned from (stored with the model).
    ranker_alpha: dict = field(default_factory=dict)
    #: Surface -> {engagement type: utility weight}; over models.ranking.utility.DEFAULT_WEIGHTS
    #: for home. Only the surfaces named here (home by default) are ranked.
    ranker_weights: dict = field(default_factory=dict)
    #: Seconds between checkpoints of the learned ranker (data_dir/ranker/<worker_id>.npz).
    ranker_checkpoint_seconds: float = 60.0
    # -- models --
    model_publish_dirs: str = ""
    model_poll_seconds: float = 30.0
    # -- durable event log --
    log_segment_bytes: int = 64 * 1024 * 1024
    log_fsync: str = "interval"
    log_fsync_seconds: float = 1.0
    # -- security --
    #: When set, POST /events, model/admin actions and /internal/* need
    #: ``Authorization: Bearer <api_token>`` (workers share it).
    api_token: str = field(default="", repr=False)
    #: Kafka: PLAINTEXT (empty), SSL, SASL_PLAINTEXT or SASL_SSL, passed to every client.
    kafka_security_protocol: str = ""
    #: Kafka SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    #: CA certificate file for Kafka TLS (empty: the system's).
    kafka_ssl_cafile: str = ""
    #: Reads (GET) need the token too.
    api_token_reads: bool = False
    # -- misc --
    log_level: str = "info"

    @property
    def topics(self):
        from streams.topics import Topics

        return Topics(self.topic_prefix)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def eventlog_path(self) -> Path:
        return self.data_path / "eventlog"

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port`` list from ``kafka://host:port[;host:port]``."""
        url = self.kafka_url
        for scheme in ("kafka://", "aiokafka://"):
            if url.startswith(scheme):
                url = url[len(scheme) :]
        return url.replace(";", ",").rstrip("/")

    def kafka_client_config(self) -> dict[str, str]:
        """confluent-kafka (librdkafka) settings every client of ours starts from.

        >>> s = Settings(kafka_url="kafka://k:9093", kafka_security_protocol="SASL_SSL",
        ...              kafka_sasl_mechanism="PLAIN", kafka_sasl_username="u",
        ...              kafka_sasl_password="p")
        >>> sorted(s.kafka_client_config())  # doctest: +NORMALIZE_WHITESPACE
        ['bootstrap.servers', 'sasl.mechanism', 'sasl.password', 'sasl.username',
         'security.protocol']
        """
        config = {"bootstrap.servers": self.kafka_bootstrap}
        if self.kafka_security_protocol:
            config["security.protocol"] = self.kafka_security_protocol
        if self.kafka_sasl_mechanism:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_sasl_username
            config["sasl.password"] = self.kafka_sasl_password
        if self.kafka_ssl_cafile:
            config["ssl.ca.location"] = self.kafka_ssl_cafile
        return config

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        config_path: str | Path | None = DEFAULT_CONFIG,
    ) -> Settings:
        """Defaults, then the config file, then the environment."""
        env = os.environ if env is None else env
        path = env.get(ENV_PREFIX + "CONFIG") or config_path
        values: dict[str, Any] = {}
        if path:
            path = Path(path)
            if not path.exists():
                if path != DEFAULT_CONFIG:
                    raise SettingsError(f"config file {path} does not exist")
            else:
                with path.open("rb") as fh:
                    values.update(tomllib.load(fh))
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise SettingsError(f"unknown keys in {path}: {', '.join(sorted(unknown))}")
        for name in known:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = raw
        typed = {name: _coerce(name, known[name].type, value) for name, value in values.items()}
        settings = cls(**typed)
        settings.check()
        return settings

    def check(self) -> None:
        if self.partitions < 1:
            raise SettingsError("partitions must be at least 1")
        if not 0 < self.fetch_max_wait_seconds <= 30:
            raise SettingsError("fetch_max_wait_seconds must be above 0 and at most 30")
        protocols = ("", "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        if self.kafka_security_protocol.upper() not in protocols:
            raise SettingsError(
                f"kafka_security_protocol must be one of {', '.join(protocols[1:])}"
            )
        if self.kafka_sasl_mechanism and not self.kafka_sasl_username:
            raise SettingsError("kafka_sasl_mechanism needs kafka_sasl_username and _password")
        if self.state_store not in ("memory", "rocksdb"):
            raise SettingsError("state_store must be memory or rocksdb")
        if self.log_fsync not in ("always", "interval", "never"):
            raise SettingsError("log_fsync must be one of always, interval, never")
        if self.history_length < 1 or self.dedupe_window < 1:
            raise SettingsError("history_length and dedupe_window must be at least 1")
        if self.kafka_url and not self.kafka_url.startswith("kafka://"):
            raise SettingsError(
                f"kafka_url must look like kafka://host:port, got {self.kafka_url!r}"
            )
        if self.ranker_min_examples < 0 or not self.ranker_checkpoint_seconds > 0:
            raise SettingsError(
                "ranker_min_examples must be >= 0 and ranker_checkpoint_seconds above 0"
            )
        if not self.outcome_window_seconds > 0 or not self.outcome_tick_seconds > 0:
            raise SettingsError("outcome_window_seconds and outcome_tick_seconds must be above 0")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(
                f"redis_url must look like redis://host:port, got {self.redis_url!r}"
            )


def _coerce(name: str, kind: Any, value: Any) -> Any:
    kind = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict}.get(kind, kind)
    try:
        if kind is dict:
            value = json.loads(value) if isinstance(value, str) else value
            if not isinstance(value, dict):
                raise ValueError(value)
            return value
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        if kind in (int, float, str):
            return kind(value)
    except (TypeError, ValueError):
        raise SettingsError(
            f"{name} (env {ENV_PREFIX}{name.upper()}) must be {kind.__name__}, got {value!r}"
        ) from None
    return value
