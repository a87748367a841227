"""The one configuration object of the project.

Every setting has a default, an environment variable (``PE_`` + upper-case field name), a key in an
optional YAML file (``--config FILE`` or ``PE_CONFIG_FILE``) and a CLI flag (``--field-name``).
Precedence: CLI flag > environment > config file > default. No other module holds a hostname, a
port, a topic name or a path default; the operational defaults of the profile core are
``udfs.settings.ProfileSettings``' own (one source, read below).

Every value is checked when a ``Config`` is built: choices are ``Literal`` types, numbers have
ranges, and cross-field rules hold (``ConfigError`` names the setting, where the value came from and
what is allowed), so a typo stops a program at start-up instead of changing its behaviour.

Shell scripts read the same values with ``python3 -m flink_jobs.config --shell`` (stdlib only, so it
runs before the virtual environment exists; only a config file needs PyYAML).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin, get_type_hints

# udfs.settings is pure Python on the standard library (it reads schemas/features.json), so this
# import keeps `python3 -m flink_jobs.config --shell` working without the venv.
from udfs.settings import PopularitySettings as _PopSettings
from udfs.settings import ProfileSettings as _CoreSettings
from udfs.settings import RecommendSettings as _RecSettings

if TYPE_CHECKING:
    from udfs.settings import PopularitySettings, ProfileSettings, RecommendSettings

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE_ENV = "PE_CONFIG_FILE"

# Choices. Literal types, so the annotation is the one list of allowed values (argparse metavars,
# validation, the README table all read it).
DeliveryGuarantee = Literal["exactly-once", "at-least-once"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
# write consistency levels only: SERIAL/LOCAL_SERIAL are for lightweight transactions, ANY gives up durability
Consistency = Literal["ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_ONE", "LOCAL_QUORUM", "EACH_QUORUM"]
ExecutionMode = Literal["thread", "process"]
OnnxProvider = Literal["auto", "cuda", "cpu"]
WriteGrouping = Literal["replica_set", "partition", "none"]
# avro: plain Avro binary of user_event.avsc; confluent: the Confluent wire format (magic byte 0, 4-byte
# schema id, Avro) whose writer schemas come from a schema registry
EventFormat = Literal["avro", "confluent"]

# The profile core's operational defaults (lateness, expiry, tag thresholds): the config fields below
# take them from here, so training (udfs.profile.DEFAULT_SETTINGS) and serving (Config.profile_settings())
# start from the same numbers. tests/unit/test_config.py ties the two together.
_CORE: dict[str, Any] = {f.name: f.default for f in fields(_CoreSettings) if f.default is not dataclasses.MISSING}
# ProfileSettings field -> Config field (the operational part of the core's settings)
PROFILE_FIELDS: dict[str, str] = {
    "lateness_ms": "max_out_of_orderness_ms",
    "idle_expiry_ms": "idle_expiry_ms",
    "top_k": "top_k_categories",
    "lifecycle_new_ms": "lifecycle_new_ms",
    "lifecycle_at_risk_ms": "lifecycle_at_risk_ms",
    "lifecycle_dormant_ms": "lifecycle_dormant_ms",
    "value_mid_purchases": "value_mid_purchases",
    "value_high_purchases": "value_high_purchases",
    "value_mid_spend": "value_mid_spend",
    "value_high_spend": "value_high_spend",
    "value_recent_ms": "value_recent_ms",
    "recent_items_max": "recent_items_max",
    "bought_items_max": "bought_items_max",
    "bought_exclude_ms": "bought_exclude_ms",
}
_POP: dict[str, Any] = {f.name: f.default for f in fields(_PopSettings) if f.default is not dataclasses.MISSING}
_REC: dict[str, Any] = {f.name: f.default for f in fields(_RecSettings) if f.default is not dataclasses.MISSING}
# PopularitySettings / RecommendSettings field -> Config field (the popularity lateness is the job's)
POPULARITY_FIELDS: dict[str, str] = {
    "window_ms": "popular_window_ms",
    "slide_ms": "popular_slide_ms",
    "emit_ms": "popular_emit_ms",
    "lateness_ms": "max_out_of_orderness_ms",
    "bucket_items": "popular_bucket_items",
    "top_items": "popular_top_items",
    "max_categories": "popular_max_categories",
}
RECOMMEND_FIELDS: dict[str, str] = {"n": "recommend_n", "popular_weight": "recommend_popular_weight"}

DAY_MS = 86_400_000
PORT = (1, 65_535)
# Inclusive (min, max) of numeric settings; None = unbounded. A name that is no field is ignored, so
# this table survives a field's removal.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "kafka_controller_port": PORT,
    "topic_partitions": (1, 10_000),
    "cassandra_port": PORT,
    "cassandra_storage_port": PORT,
    "cassandra_replication": (1, 100),
    "cassandra_max_in_flight": (1, 65_536),
    "cassandra_batch_max_rows": (1, 1_000),
    "cassandra_batch_linger_ms": (1, 10_000),
    "cassandra_heap_mb": (256, 65_536),
    "flink_rest_port": PORT,
    "parallelism": (1, 32_768),
    # Flink's own bounds of pipeline.max-parallelism
    "max_parallelism": (1, 32_768),
    "taskmanager_slots": (1, 1024),
    "taskmanagers": (1, 8),  # each takes one of the 8 metrics ports after metrics_port
    "metrics_port": (1, 65_535 - 8),
    "prometheus_port": PORT,
    "schema_registry_port": PORT,
    # one request; 3 tries, so a dead registry fails the source task within ~3x this (+ 0.6 s backoff)
    "schema_registry_timeout_ms": (100, 600_000),
    # Flink refuses checkpoint intervals under 10 ms
    "checkpoint_interval_ms": (10, None),
    "max_out_of_orderness_ms": (0, None),
    # withIdleness() needs a positive timeout
    "idle_source_timeout_ms": (1, None),
    "idle_expiry_ms": (1, None),
    "top_k_categories": (1, 1000),
    "lifecycle_new_ms": (1, None),
    "lifecycle_at_risk_ms": (1, None),
    "lifecycle_dormant_ms": (1, None),
    "value_mid_purchases": (1, None),
    "value_high_purchases": (1, None),
    "value_mid_spend": (0, None),
    "value_high_spend": (0, None),
    "value_recent_ms": (1, None),
    "profile_cache_users": (0, None),
    "flush_max_pending": (0, None),
    "flush_live_pending": (0, None),
    "python_gc_threshold": (0, 10_000_000),
    "batch_max_events": (1, 1_000_000),
    "batch_max_delay_ms": (1, None),
    "state_ttl_ms": (0, None),
    "recent_items_max": (1, 10_000),
    "bought_items_max": (0, 10_000),
    "bought_exclude_ms": (0, None),
    "popular_window_ms": (1, None),
    "popular_slide_ms": (1, None),
    "popular_emit_ms": (1, None),
    "popular_bucket_items": (1, 100_000),
    "popular_top_items": (1, 10_000),
    "popular_max_categories": (1, 1_000_000),
    "recommend_n": (1, 1000),
    "recommend_popular_weight": (0, None),
}
# Settings that must not be empty (a blank topic or host fails far from its cause).
REQUIRED = (
    "kafka_bootstrap", "topic_events", "topic_predictions", "topic_dlq", "topic_late", "topic_models",
    "topic_shadow_scores", "consumer_group",
    "cassandra_hosts", "cassandra_keyspace", "cassandra_local_dc", "flink_rest_host", "model_path", "run_dir",
    "data_dir",
)
TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's legal topic names
KEYSPACE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")  # unquoted CQL keyspace names

# Option groups, in --help order: each CLI shows only the groups it uses. Every field is in one group
# (a unit test checks); a name that is no field is ignored.
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "kafka": ("Kafka connection", (
        "kafka_bootstrap", "kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username",
        "kafka_sasl_password_file", "kafka_ssl_ca_file", "kafka_ssl_check_hostname",
    )),
    "topics": ("Kafka topics", ("topic_events", "topic_predictions", "topic_dlq", "topic_late", "topic_models",
                                "topic_shadow_scores", "topic_partitions")),
    "cassandra": ("Cassandra", (
        "cassandra_hosts", "cassandra_port", "cassandra_keyspace", "cassandra_replication", "cassandra_consistency",
        "cassandra_prediction_consistency", "cassandra_local_dc", "cassandra_max_in_flight", "cassandra_write_grouping",
        "cassandra_batch_max_rows", "cassandra_batch_linger_ms", "cassandra_username",
        "cassandra_password_file", "cassandra_ssl_ca_file",
        "cassandra_ssl_check_hostname",
    )),
    "registry": ("schema registry (Confluent wire format)", (
        "event_format", "prediction_format", "schema_registry_host", "schema_registry_port", "schema_registry_path",
        "schema_registry_timeout_ms",
    )),
    "flink": ("Flink cluster", ("flink_rest_host", "flink_rest_port")),
    "job": ("job runtime (fixed for the life of the state: execution_mode, max_parallelism)", (
        "parallelism", "max_parallelism", "execution_mode", "checkpoint_interval_ms", "consumer_group",
        "delivery_guarantee", "max_out_of_orderness_ms", "idle_source_timeout_ms",
        "batch_max_events", "batch_max_delay_ms", "state_ttl_ms", "profile_cache_users", "flush_max_pending",
        "flush_live_pending",
        "python_gc_threshold",
    )),
    "profile": ("profile core (tags, expiry)", (
        "idle_expiry_ms", "top_k_categories", "lifecycle_new_ms", "lifecycle_at_risk_ms", "lifecycle_dormant_ms",
        "value_mid_purchases", "value_high_purchases", "value_mid_spend", "value_high_spend", "value_recent_ms",
        "recent_items_max", "bought_items_max", "bought_exclude_ms",
    )),
    "recommend": ("recommendations (popular-now window, blend)", (
        "popular_window_ms", "popular_slide_ms", "popular_emit_ms", "popular_bucket_items", "popular_top_items",
        "popular_max_categories", "recommend_n", "recommend_popular_weight", "recommendations",
    )),
    "model": ("model", ("model_path", "segments_path", "onnx_provider", "emit_features")),
    "stack": ("local stack (deploy/*.sh)", (
        "kafka_controller_port", "cassandra_storage_port", "cassandra_heap_mb", "taskmanagers", "taskmanager_slots",
        "metrics_port", "prometheus_port",
    )),
    "paths": ("paths", ("run_dir", "data_dir")),
}
ALL_GROUPS = tuple(GROUPS)
# What the job needs: submit passes all of these to `flink run`.
JOB_GROUPS = ("kafka", "topics", "registry", "cassandra", "flink", "job", "profile", "recommend", "model", "paths")


class ConfigError(ValueError):
    """One or more settings are invalid; the message names each setting, its source and what is allowed."""

    def __init__(self, problems: Iterable[str], items: Sequence[tuple[tuple[str, ...], str]] = ()) -> None:
        self.problems = list(problems)
        self.items = list(items)  # (settings, message) before the values' sources were known
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


def _doc(text: str, **kw: Any) -> Any:
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class Config:
    # --- Kafka -----------------------------------------------------------------------------------
    kafka_bootstrap: str = _doc("Kafka bootstrap servers (host:port,...)", default="127.0.0.1:9092")
    kafka_controller_port: int = _doc("KRaft controller port of the local broker", default=9093)
    topic_events: str = _doc("input topic of Avro user events", default="user-events")
    topic_predictions: str = _doc("output topic of Avro predictions", default="user-predictions")
    topic_dlq: str = _doc("dead-letter topic: raw bytes + reason", default="user-events-dlq")
    topic_late: str = _doc("events later than the allowed lateness", default="user-events-late")
    topic_models: str = _doc(
        "compacted topic of model packages, key = role (active|shadow); tools.publish_model writes it", default="models"
    )
    topic_shadow_scores: str = _doc("shadow model's scores next to the active one's (schemas/shadow_score.avsc)",
                                    default="model-shadow-scores")
    topic_partitions: int = _doc("partitions of the topics the stack creates", default=2)
    consumer_group: str = _doc("Kafka consumer group of the job", default="profile-engine")
    delivery_guarantee: DeliveryGuarantee = _doc(
        "predictions sink: exactly-once (transactional) or at-least-once", default="exactly-once"
    )
    # Security (README "Security"). Secrets are never config values: only where to read them from, a
    # file path or env:NAME, resolved where each client is built (TaskManager, tools). See flink_jobs/security.py.
    kafka_security_protocol: SecurityProtocol = _doc(
        "PLAINTEXT, SSL, SASL_SSL or SASL_PLAINTEXT (all Kafka clients: job, tools, tests)", default="PLAINTEXT"
    )
    kafka_sasl_mechanism: SaslMechanism = _doc(
        "SASL mechanism: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", default="SCRAM-SHA-512"
    )
    kafka_sasl_username: str = _doc("SASL user name (SASL_* protocols)", default="")
    kafka_sasl_password_file: str = _doc(
        "where the SASL password is: a file holding exactly the password (no trailing newline), or env:NAME "
        "for environment variable NAME where the client runs", default=""
    )
    kafka_ssl_ca_file: str = _doc(
        "PEM file of the CA(s) that signed the brokers' certificates (SSL, SASL_SSL); empty: system trust",
        default="",
    )
    kafka_ssl_check_hostname: bool = _doc("verify that the broker certificate names the host", default=True)
    # --- Schema registry (README "Schema registry") ------------------------------------------------
    event_format: EventFormat = _doc(
        "user-events values: avro (plain Avro binary of user_event.avsc) or confluent (Confluent wire format: "
        "magic byte 0 + 4-byte schema id + Avro, writer schema resolved from the schema registry)", default="avro"
    )
    prediction_format: EventFormat = _doc(
        "predictions topic values: avro (plain) or confluent (wire format, prediction.avsc registered as "
        "<topic_predictions>-value when the job starts)", default="avro"
    )
    schema_registry_host: str = _doc(
        "schema registry host (for the confluent formats; deploy/registry.sh listens here)", default="127.0.0.1"
    )
    schema_registry_port: int = _doc("schema registry port", default=8085)
    schema_registry_path: str = _doc(
        "path of the registry's Confluent-compatible API: /apis/ccompat/v7 (Apicurio), '' (Confluent's own)",
        default="/apis/ccompat/v7",
    )
    schema_registry_timeout_ms: int = _doc(
        "timeout of one registry request; after 3 failed tries the source task fails and Flink restarts it",
        default=5000,
    )
    # --- Cassandra -------------------------------------------------------------------------------
    cassandra_hosts: str = _doc("Cassandra contact points, comma separated", default="127.0.0.1")
    cassandra_port: int = _doc("Cassandra native protocol port", default=9042)
    cassandra_storage_port: int = _doc("Cassandra inter-node port of the local node", default=7000)
    cassandra_keyspace: str = _doc("keyspace of profiles and predictions", default="profile_engine")
    cassandra_replication: int = _doc("replication factor used when creating the keyspace", default=1)
    cassandra_consistency: Consistency = _doc("write consistency level of the profiles table", default="LOCAL_QUORUM")
    cassandra_prediction_consistency: Consistency = _doc(
        "write consistency level of the predictions table (append-only history)", default="LOCAL_QUORUM"
    )
    cassandra_write_grouping: WriteGrouping = _doc(
        "rows sharing one unlogged batch: replica_set (partitions owned by the same replicas, so the "
        "coordinator writes them all locally), partition, or none (one request per row)", default="replica_set"
    )
    cassandra_batch_max_rows: int = _doc(
        "most rows in one grouped write (also capped at 20,000 payload bytes)", default=64
    )
    cassandra_batch_linger_ms: int = _doc("most time a row waits for others to share its write", default=10)
    cassandra_local_dc: str = _doc(
        "the job's local datacenter: the Cassandra sink routes token-aware to replicas in it", default="datacenter1"
    )
    cassandra_max_in_flight: int = _doc(
        "Cassandra sink: requests in flight per subtask; a full window backpressures the job", default=512
    )
    cassandra_heap_mb: int = _doc("heap of the local Cassandra node", default=1024)
    cassandra_username: str = _doc("Cassandra role to log in as (PasswordAuthenticator); empty: no login", default="")
    cassandra_password_file: str = _doc(
        "where the Cassandra password is: a file holding exactly the password, or env:NAME", default=""
    )
    cassandra_ssl_ca_file: str = _doc(
        "PEM file of the CA that signed the nodes' certificates; set: client connections use TLS", default=""
    )
    cassandra_ssl_check_hostname: bool = _doc("verify that the node certificate names the host", default=True)
    # --- Flink -----------------------------------------------------------------------------------
    flink_rest_host: str = _doc("Flink JobManager REST / web UI host", default="127.0.0.1")
    flink_rest_port: int = _doc("Flink JobManager REST / web UI port", default=8081)
    parallelism: int = _doc("job parallelism", default=1)
    max_parallelism: int = _doc(
        "key groups (Flink max parallelism) of the profile state, one entry per user: the job rescales to any "
        "parallelism from 1 to this without a config change. Fixed for the life of the state: a savepoint "
        "cannot be restored with another value",
        default=128,
    )
    # thread-mode Python runs in the TaskManager's JVM, and all Python operators of one process share
    # one GIL: a second slot in the same TaskManager adds no Python throughput (docs/OPERATIONS.md)
    taskmanagers: int = _doc("TaskManager processes of the local stack (one GIL each)", default=2)
    taskmanager_slots: int = _doc("task slots per local TaskManager", default=1)
    metrics_port: int = _doc(
        "Flink Prometheus reporter of the local stack: the JobManager serves /metrics on this port, "
        "TaskManagers on the next 8. It binds every interface: a second stack needs other ports",
        default=9249,
    )
    prometheus_port: int = _doc("port of the local Prometheus (deploy/prometheus.sh, make monitor)", default=9090)
    execution_mode: ExecutionMode = _doc(
        "python.execution-mode; pinned: state does not survive a switch", default="thread"
    )
    checkpoint_interval_ms: int = _doc("checkpoint interval", default=5000)
    max_out_of_orderness_ms: int = _doc("watermark bound = allowed lateness", default=_CORE["lateness_ms"])
    idle_source_timeout_ms: int = _doc("a partition with no data is idle after this", default=10_000)
    # --- Profile (feature-shaping parameters live in schemas/features.json: part of the model) ----
    idle_expiry_ms: int = _doc(
        "state of a user idle this long (event time) is cleared", default=_CORE["idle_expiry_ms"]
    )
    top_k_categories: int = _doc("categories in a profile's top_categories", default=_CORE["top_k"])
    lifecycle_new_ms: int = _doc("a user first seen less than this ago is 'new'", default=_CORE["lifecycle_new_ms"])
    lifecycle_at_risk_ms: int = _doc("quiet this long: 'at-risk'", default=_CORE["lifecycle_at_risk_ms"])
    lifecycle_dormant_ms: int = _doc("quiet this long: 'dormant'", default=_CORE["lifecycle_dormant_ms"])
    value_mid_purchases: int = _doc(
        "purchases for value tier 'medium' (recent buyers)", default=_CORE["value_mid_purchases"]
    )
    value_high_purchases: int = _doc(
        "purchases for value tier 'high' (recent buyers)", default=_CORE["value_high_purchases"]
    )
    value_mid_spend: float = _doc(
        "spend for value tier 'medium' (where prices exist)", default=_CORE["value_mid_spend"]
    )
    value_high_spend: float = _doc(
        "spend for value tier 'high' (where prices exist)", default=_CORE["value_high_spend"]
    )
    value_recent_ms: int = _doc(
        "a buyer is recent if the last purchase is this fresh", default=_CORE["value_recent_ms"]
    )
    recent_items_max: int = _doc(
        "items a profile remembers for recommendations (strongest decayed affinity kept)",
        default=_CORE["recent_items_max"],
    )
    bought_items_max: int = _doc("purchased items a profile remembers (to exclude them)",
                                 default=_CORE["bought_items_max"])
    bought_exclude_ms: int = _doc("an item bought this recently is not recommended", default=_CORE["bought_exclude_ms"])
    # --- Recommendations (docs/RECOMMENDATIONS.md) -------------------------------------------------
    popular_window_ms: int = _doc("'popular now' sliding event-time window (a multiple of popular_slide_ms)",
                                  default=_POP["window_ms"])
    popular_slide_ms: int = _doc("slide of the 'popular now' window (a multiple of popular_emit_ms)",
                                 default=_POP["slide_ms"])
    popular_emit_ms: int = _doc("a category's changed top items are broadcast once per this much event time",
                                default=_POP["emit_ms"])
    popular_bucket_items: int = _doc("Space-Saving item counters per category and slide", default=_POP["bucket_items"])
    popular_top_items: int = _doc("popular items per category in the broadcast snapshot", default=_POP["top_items"])
    popular_max_categories: int = _doc("categories in the broadcast snapshot (most active kept)",
                                       default=_POP["max_categories"])
    recommend_n: int = _doc("items per recommendation list", default=_REC["n"])
    recommend_popular_weight: float = _doc("weight of popular-in-category items against the user's own items",
                                           default=_REC["popular_weight"])
    recommendations: bool = _doc("count 'popular now' in a second keyed stage and write each touched user's list "
                                 "once per checkpoint (off: neither)", default=True)
    profile_cache_users: int = _doc("decoded profiles cached per operator (saves state decoding)", default=20_000)
    flush_max_pending: int = _doc(
        "changed profiles a subtask holds back until the checkpoint; above it, the least recently touched "
        "are written after a batch (bounds memory and the checkpoint's pause; 0 = write after every batch)",
        default=20_000,
    )
    flush_live_pending: int = _doc(
        "while a subtask keeps up with its input (its batches average under half of batch_max_events), changed "
        "profiles beyond this many are written after each batch, so a checkpoint's write burst stays small "
        "(p99 latency); during a backlog only flush_max_pending applies (udfs.engine.FlushPolicy)",
        default=200,
    )
    python_gc_threshold: int = _doc(
        "allocations between the TaskManager interpreter's young-generation collections (Python's default "
        "is 700, which cost ~25% of the profile operator's CPU); objects loaded before the operators open "
        "are frozen out of collection. 0 = leave the interpreter's defaults",
        default=10_000,
    )
    # --- Micro-batching (README "Throughput") ---------------------------------------------------
    batch_max_events: int = _doc("micro-batch: a subtask's batch is handed to Python at this size", default=500)
    batch_max_delay_ms: int = _doc("micro-batch: ... or after this much processing time", default=100)
    state_ttl_ms: int = _doc(
        "a profile untouched this long (processing time) is dropped from state; 0 = never. "
        "Keep it above idle_expiry_ms: an event that late starts a fresh profile anyway",
        default=60 * 86_400_000,
    )
    # --- Model -----------------------------------------------------------------------------------
    emit_features: bool = _doc("put each prediction's feature vector into it (feature logging)", default=False)
    model_path: str = _doc("ONNX model the job scores with", default="artifacts/propensity.onnx")
    segments_path: str = _doc("ONNX k-means segment model; empty: segments.onnx next to model_path", default="")
    onnx_provider: OnnxProvider = _doc("auto (CUDA when usable, else CPU), cuda or cpu", default="auto")
    # --- Paths -----------------------------------------------------------------------------------
    run_dir: str = _doc("all runtime state, logs and downloads (git-ignored)", default=".run")
    data_dir: str = _doc("bundled datasets", default="data")

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError([_describe(names, msg, self) for names, msg in problems], items=problems)

    # Derived values: computed, never configured separately.
    @property
    def flink_rest_url(self) -> str:
        return f"http://{self.flink_rest_host}:{self.flink_rest_port}"

    def job_url(self, job_id: str, running: bool = True) -> str:
        """The job's page in the Flink web UI."""
        return f"{self.flink_rest_url}/#/job/{'running' if running else 'completed'}/{job_id}/overview"

    def profile_settings(self) -> ProfileSettings:
        """The core's settings: feature parameters from schemas/, the rest from this config."""
        from udfs.settings import ProfileSettings

        return ProfileSettings(**{core: getattr(self, name) for core, name in PROFILE_FIELDS.items()})

    def popularity_settings(self) -> PopularitySettings:
        from udfs.settings import PopularitySettings

        return PopularitySettings(**{core: getattr(self, name) for core, name in POPULARITY_FIELDS.items()})

    def recommend_settings(self) -> RecommendSettings:
        from udfs.settings import RecommendSettings

        return RecommendSettings(**{core: getattr(self, name) for core, name in RECOMMEND_FIELDS.items()})

    @property
    def schema_registry_url(self) -> str:
        """Base URL of the Confluent-compatible API (what a Confluent serializer's ``url`` takes)."""
        return f"http://{self.schema_registry_host}:{self.schema_registry_port}{self.schema_registry_path}"

    @property
    def cassandra_contact_points(self) -> list[str]:
        return [h.strip() for h in self.cassandra_hosts.split(",") if h.strip()]

    def path(self, value: str) -> Path:
        """Resolve a configured path relative to the repository root."""
        p = Path(value)
        return p if p.is_absolute() else (ROOT / p).resolve()

    @property
    def run_path(self) -> Path:
        return self.path(self.run_dir)

    @property
    def model_file(self) -> Path:
        return self.path(self.model_path)

    @property
    def segments_file(self) -> Path:
        return self.path(self.segments_path) if self.segments_path else self.model_file.parent / "segments.onnx"

    @property
    def taobao_dir(self) -> Path:
        return self.path(self.data_dir) / "taobao_userbehavior"

    @classmethod
    def env_var(cls, name: str) -> str:
        return "PE_" + name.upper()

    @classmethod
    def flag(cls, name: str) -> str:
        return "--" + name.replace("_", "-")

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        config_file: str | os.PathLike[str] | None = None,
    ) -> Config:
        """Flag values (``overrides``) > ``env`` (default os.environ) > ``config_file`` (default: the file
        named by PE_CONFIG_FILE in ``env``) > defaults. Raises ConfigError naming every bad setting."""
        return cls.resolve(env, overrides, config_file)[0]

    @classmethod
    def resolve(
        cls,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        config_file: str | os.PathLike[str] | None = None,
    ) -> tuple[Config, dict[str, str]]:
        """(config, {field: where its value came from}) as from_env."""
        env = os.environ if env is None else env
        by_name = {f.name: f for f in fields(cls)}
        raw: dict[str, tuple[Any, str]] = {}
        problems: list[str] = []
        if config_file is None and env.get(CONFIG_FILE_ENV):
            config_file = env[CONFIG_FILE_ENV]
        if config_file is not None:
            file_values, file_problems = _read_config_file(Path(config_file), by_name)
            problems += file_problems
            raw.update({k: (v, f"file {config_file}") for k, v in file_values.items()})
        for f in fields(cls):
            value = env.get(cls.env_var(f.name))
            if value is not None and value != "":
                raw[f.name] = (value, f"env {cls.env_var(f.name)}")
        for k, v in (overrides or {}).items():
            if v is None:
                continue
            if k not in by_name:
                raise TypeError(f"{k!r} is no Config field")  # a programming error, not a user's
            raw[k] = (v, f"flag {cls.flag(k)}")
        values: dict[str, Any] = {}
        sources = {f.name: "default" for f in fields(cls)}
        hints = _hints()
        for name, (value, source) in raw.items():
            sources[name] = source
            try:
                values[name] = _coerce(hints[name], value)
            except ValueError as exc:
                problems.append(f"{name} = {value!r} ({source}): {exc}")
        try:
            cfg = cls(**values)
        except ConfigError as exc:
            # also the rules of the values that did parse: one run shows every mistake
            problems += [_describe(names, msg, values, sources) for names, msg in exc.items]
        if problems:
            raise ConfigError(problems)
        return cfg, sources

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, groups: Sequence[str] | None = None) -> None:
        """``--config FILE`` plus one ``--flag`` per field of ``groups`` (default: all), grouped in --help.
        Flags default to None, so the environment, the file and the defaults still apply; settings of
        other groups still take their environment/file/default values."""
        chosen = ALL_GROUPS if groups is None else tuple(groups)
        unknown = [g for g in chosen if g not in GROUPS]
        if unknown:
            raise ValueError(f"unknown option groups {unknown}; known: {list(GROUPS)}")
        by_name = {f.name: f for f in fields(cls)}
        hints = _hints()
        source = parser.add_argument_group(
            "configuration source",
            "precedence: flag > environment PE_<SETTING> > --config file > default. Settings without a flag "
            "here still apply from the environment or the file (all of them: python -m flink_jobs.config --help)",
        )
        source.add_argument(
            "--config", metavar="FILE", default=None,
            help=f"YAML file of settings (keys as the flags, with _ or -) [env {CONFIG_FILE_ENV}]",
        )
        for g in chosen:
            title, names = GROUPS[g]
            group = parser.add_argument_group(title)
            for name in names:
                if name not in by_name:
                    continue
                f = by_name[name]
                group.add_argument(
                    cls.flag(name), dest=name, default=None, metavar=_metavar(name, hints[name]),
                    help=_help(f, hints[name]).replace("%", "%%"),
                )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Config:
        names = {f.name for f in fields(cls)}
        overrides = {k: v for k, v in vars(args).items() if k in names}
        return cls.from_env(overrides=overrides, config_file=getattr(args, "config", None))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@cache
def _hints() -> dict[str, Any]:
    return get_type_hints(Config)


def choices(name: str) -> tuple[str, ...]:
    """Allowed values of a Literal-typed setting; () for the others."""
    hint = _hints()[name]
    return tuple(get_args(hint)) if get_origin(hint) is Literal else ()


def _coerce(hint: Any, raw: Any) -> Any:
    """A value from a flag, the environment (strings) or the file (YAML types) as the field's type."""
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError("not a boolean (true/false, yes/no, on/off, 1/0)")
    if hint is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError("not a whole number")
        if isinstance(raw, (int, float)):
            return int(raw)
        try:
            return int(str(raw).strip())
        except ValueError:
            raise ValueError("not a whole number") from None
    if hint is float:
        if isinstance(raw, bool):
            raise ValueError("not a number")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ValueError("not a number") from None
    if isinstance(raw, (dict, list)) or raw is None:
        raise ValueError("not a single value")
    return str(raw)  # str and Literal fields; a Literal's choices are checked with the other rules


def _read_config_file(path: Path, by_name: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """({field: value}, problems) of a YAML mapping of settings."""
    try:
        import yaml  # only here: --shell without a file must run on a bare python3
    except ImportError:
        return {}, [f"config file {path}: reading it needs PyYAML (run with .venv/bin/python; make venv)"]
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return {}, [f"config file {path}: cannot read it ({exc.strerror})"]
    except yaml.YAMLError as exc:
        return {}, [f"config file {path}: not valid YAML ({exc})"]
    if doc is None:
        return {}, []
    if not isinstance(doc, dict):
        return {}, [f"config file {path}: must be a mapping of setting: value, not {type(doc).__name__}"]
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in doc.items():
        name = str(key).strip().replace("-", "_").lower()
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            problems.append(f"config file {path}: unknown setting {key!r}{hint}")
        elif value is None:
            problems.append(f"config file {path}: {key} has no value (write '' for an empty one)")
        else:
            values[name] = value
    return values, problems


def _span(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo:g}..{hi:g}"
    return f">= {lo:g}" if lo is not None else f"<= {hi:g}"


def _loopback(host: str) -> bool:
    host = host.strip().lower()
    return host in ("localhost", "[::1]") or host.startswith("127.")


def _local_ports(cfg: Config) -> dict[str, list[int]]:
    """Ports the local stack listens on, by setting (the broker port from kafka_bootstrap)."""
    out: dict[str, list[int]] = {
        "kafka_controller_port": [cfg.kafka_controller_port],
        "cassandra_port": [cfg.cassandra_port],
        "cassandra_storage_port": [cfg.cassandra_storage_port],
        "flink_rest_port": [cfg.flink_rest_port],
        "metrics_port": list(range(cfg.metrics_port, cfg.metrics_port + 9)),
        "prometheus_port": [cfg.prometheus_port],
    }
    # Confluent's registry listens on 8081 by default, as Flink's REST does: a remote one may
    if _loopback(cfg.schema_registry_host):
        out["schema_registry_port"] = [cfg.schema_registry_port]
    first = cfg.kafka_bootstrap.split(",")[0].strip()
    if first.rpartition(":")[2].isdigit():
        out["kafka_bootstrap"] = [int(first.rpartition(":")[2])]
    return out


def _problems(cfg: Config) -> list[tuple[tuple[str, ...], str]]:
    """[(settings involved, what is wrong)] of a built config: types, choices, ranges, cross-field rules."""
    out: list[tuple[tuple[str, ...], str]] = []
    hints = _hints()
    mistyped = False
    for f in fields(cfg):
        value, hint = getattr(cfg, f.name), hints[f.name]
        allowed = choices(f.name)
        if allowed:
            if value not in allowed:
                out.append(((f.name,), f"not one of {', '.join(allowed)}"))
            continue
        expected = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(hint, (object,))
        if not isinstance(value, expected) or (hint in (int, float) and isinstance(value, bool)):
            out.append(((f.name,), f"must be a {hint.__name__}, not {type(value).__name__}"))
            mistyped = True
            continue
        lo, hi = RANGES.get(f.name, (None, None))
        if hint in (int, float) and ((lo is not None and value < lo) or (hi is not None and value > hi)):
            out.append(((f.name,), f"out of range {_span(lo, hi)}"))
        if f.name in REQUIRED and not str(value).strip():
            out.append(((f.name,), "must not be empty"))
    if mistyped:
        return out  # the rules below assume well-typed values
    for name in ("topic_events", "topic_predictions", "topic_dlq", "topic_late", "topic_models",
                 "topic_shadow_scores"):
        if not TOPIC_RE.fullmatch(getattr(cfg, name)):
            out.append(((name,), "not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)"))
    if not KEYSPACE_RE.fullmatch(cfg.cassandra_keyspace):
        out.append((("cassandra_keyspace",), "not a CQL keyspace name (a letter, then letters, digits, _; <= 48)"))
    for entry in cfg.kafka_bootstrap.split(","):
        host, _, port = entry.strip().rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65_535:
            out.append((("kafka_bootstrap",), f"{entry.strip()!r} is not host:port"))
    out += _registry_problems(cfg)
    if cfg.parallelism > cfg.max_parallelism:
        out.append((("parallelism", "max_parallelism"), "parallelism cannot exceed max_parallelism (key groups)"))
    if 0 < cfg.state_ttl_ms < cfg.idle_expiry_ms:
        out.append((("state_ttl_ms", "idle_expiry_ms"),
                    "state_ttl_ms must be 0 (off) or >= idle_expiry_ms: the TTL would drop profiles that are "
                    "still live in event time"))
    if cfg.flush_live_pending > cfg.flush_max_pending:
        out.append((("flush_live_pending", "flush_max_pending"),
                    "the live bound cannot hold back more profiles than the overall bound"))
    if cfg.lifecycle_at_risk_ms > cfg.lifecycle_dormant_ms:
        out.append((("lifecycle_at_risk_ms", "lifecycle_dormant_ms"),
                    "at-risk must come before dormant (lifecycle_at_risk_ms <= lifecycle_dormant_ms)"))
    if cfg.value_mid_purchases > cfg.value_high_purchases:
        out.append((("value_mid_purchases", "value_high_purchases"), "the 'medium' tier needs <= the 'high' tier"))
    if cfg.popular_window_ms % cfg.popular_slide_ms or cfg.popular_slide_ms % cfg.popular_emit_ms:
        out.append((("popular_window_ms", "popular_slide_ms", "popular_emit_ms"),
                    "the window must be a multiple of the slide, and the slide of the emit interval"))
    if cfg.popular_top_items > cfg.popular_bucket_items:
        out.append((("popular_top_items", "popular_bucket_items"), "cannot show more items than are counted"))
    if cfg.value_mid_spend > cfg.value_high_spend:
        out.append((("value_mid_spend", "value_high_spend"), "the 'medium' tier needs <= the 'high' tier"))
    # The local stack binds all of these on one address (the reporter on every address): two equal
    # ports fail one server at start-up, late and far from the cause. 6123: jobmanager.rpc.port.
    taken: dict[int, str] = {6123: "jobmanager.rpc.port (deploy/conf/flink)"}
    for name, ports in _local_ports(cfg).items():
        for port in ports:
            if port in taken and taken[port] != name:
                other = taken[port]
                names = (name,) if other.startswith("jobmanager") else (other, name)
                out.append((names, f"port {port} is used twice in the local stack ({other} and {name})"))
                break
            taken.setdefault(port, name)
    return out


def _registry_problems(cfg: Config) -> list[tuple[tuple[str, ...], str]]:
    out: list[tuple[tuple[str, ...], str]] = []
    host = cfg.schema_registry_host.strip()
    for name in ("event_format", "prediction_format"):
        if getattr(cfg, name) == "confluent" and not host:
            out.append(((name, "schema_registry_host"), f"{name}=confluent needs a schema registry host"))
    if host and not re.fullmatch(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]", host):
        out.append((("schema_registry_host",), "a host name or address only (no scheme, port or path)"))
    if cfg.schema_registry_path and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", cfg.schema_registry_path):
        out.append((("schema_registry_path",), "empty or an absolute URL path like /apis/ccompat/v7 (no trailing /)"))
    return out


def _describe(
    names: Sequence[str], msg: str, values: Any, sources: Mapping[str, str] | None = None
) -> str:
    """'name = value (source), ...: msg' for one problem."""
    parts = []
    for n in names:
        if isinstance(values, Config):
            value = getattr(values, n)
        else:
            value = values.get(n, Config.__dataclass_fields__[n].default)
        where = (sources or {}).get(n, "")
        parts.append(f"{n} = {value!r}" + (f" ({where})" if where else ""))
    return f"{', '.join(parts)}: {msg}"


def _metavar(name: str, hint: Any) -> str:
    if get_origin(hint) is Literal:
        return "{" + ",".join(get_args(hint)) + "}"
    if hint is bool:
        return "{true,false}"
    if hint in (int, float):
        return "MS" if name.endswith("_ms") else "N"
    if name.endswith(("_file", "_path", "_dir")):
        return "PATH"
    return "TEXT"


def _human_ms(ms: int) -> str:
    for unit, size in (("d", DAY_MS), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


def _help(f: dataclasses.Field, hint: Any) -> str:
    default = f.default
    shown = repr(default) if isinstance(default, str) else str(default)
    if f.name.endswith("_ms") and isinstance(default, int) and default:
        shown += f" = {_human_ms(default)}"
    lo, hi = RANGES.get(f.name, (None, None))
    span = f", range {_span(lo, hi)}" if hint in (int, float) and (lo is not None or hi is not None) else ""
    return f"{f.metadata['doc']} [{Config.env_var(f.name)}; default {shown}{span}]"


def cli(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None, groups: Sequence[str] | None = None
) -> tuple[Config, argparse.Namespace]:
    """Add the config options of ``groups`` to ``parser``, parse ``argv`` and build the Config; a bad
    setting ends the program with the parser's usage and exit status 2, like a bad flag."""
    if parser.usage is None:
        # the tool's own arguments, then one placeholder: dozens of config flags would bury them
        own = parser.format_usage().strip().removeprefix("usage: ")
        parser.usage = f"{own} [--config FILE] [config options]"
    Config.add_arguments(parser, groups)
    args = parser.parse_args(argv)
    try:
        return Config.from_args(args), args
    except ConfigError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def parse(
    argv: Sequence[str] | None = None, description: str = "", groups: Sequence[str] | None = None
) -> tuple[Config, argparse.Namespace]:
    """Parse only config flags (for tools with no flags of their own)."""
    return cli(argparse.ArgumentParser(description=description), argv, groups)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flink_jobs.config",
        description="Print the effective configuration (value and where it came from), or check it.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--shell", action="store_true", help="print `export PE_X=...` lines (deploy scripts)")
    mode.add_argument("--check", action="store_true", help="only validate; exit 2 with the problems if invalid")
    parser.usage = parser.format_usage().strip().removeprefix("usage: ") + " [--config FILE] [config options]"
    Config.add_arguments(parser)
    args = parser.parse_args(argv)
    names = {f.name for f in fields(Config)}
    try:
        cfg, sources = Config.resolve(
            overrides={k: v for k, v in vars(args).items() if k in names}, config_file=args.config
        )
    except ConfigError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print("configuration is valid")
        return 0
    for f in fields(Config):
        value = getattr(cfg, f.name)
        if args.shell:
            print(f"export {Config.env_var(f.name)}={shlex.quote(str(value))}")
        else:
            print(f"{f.name:28} {value!s:32} {sources[f.name]}")
    if args.shell:
        print(f"export PE_RUN_PATH={shlex.quote(str(cfg.run_path))}")
        print(f"export PE_FLINK_REST_URL={shlex.quote(cfg.flink_rest_url)}")
        print(f"export PE_SCHEMA_REGISTRY_URL={shlex.quote(cfg.schema_registry_url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
