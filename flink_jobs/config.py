"""The one configuration object of the project.

Every setting has a default, an environment variable (``PE_`` + upper-case field name) and a CLI flag
(``--field-name``). Precedence: CLI flag > environment > default. No other module holds a hostname,
a port, a topic name or a path default.

Shell scripts read the same values with ``python3 -m flink_jobs.config --shell`` (stdlib only, so it
runs before the virtual environment exists).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from udfs.settings import ProfileSettings

ROOT = Path(__file__).resolve().parent.parent


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
    topic_partitions: int = _doc("partitions of the topics the stack creates", default=2)
    consumer_group: str = _doc("Kafka consumer group of the job", default="profile-engine")
    delivery_guarantee: str = _doc(
        "predictions sink: exactly-once (transactional) or at-least-once", default="exactly-once"
    )
    # Security (README "Security"). Secrets are never config values: only where to read them from, a
    # file path or env:NAME, resolved where each client is built (TaskManager, tools). See flink_jobs/security.py.
    kafka_security_protocol: str = _doc(
        "PLAINTEXT, SSL, SASL_SSL or SASL_PLAINTEXT (all Kafka clients: job, tools, tests)", default="PLAINTEXT"
    )
    kafka_sasl_mechanism: str = _doc("SASL mechanism: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", default="SCRAM-SHA-512")
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
    # --- Cassandra -------------------------------------------------------------------------------
    cassandra_hosts: str = _doc("Cassandra contact points, comma separated", default="127.0.0.1")
    cassandra_port: int = _doc("Cassandra native protocol port", default=9042)
    cassandra_storage_port: int = _doc("Cassandra inter-node port of the local node", default=7000)
    cassandra_keyspace: str = _doc("keyspace of profiles and predictions", default="profile_engine")
    cassandra_replication: int = _doc("replication factor used when creating the keyspace", default=1)
    cassandra_consistency: str = _doc("write consistency level of the profiles table", default="LOCAL_QUORUM")
    cassandra_prediction_consistency: str = _doc(
        "write consistency level of the predictions table (append-only history)", default="LOCAL_QUORUM"
    )
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
    taskmanager_slots: int = _doc("task slots of the local TaskManager", default=2)
    execution_mode: str = _doc(
        "python.execution-mode; pinned: state does not survive a switch", default="thread"
    )
    checkpoint_interval_ms: int = _doc("checkpoint interval", default=5000)
    max_out_of_orderness_ms: int = _doc("watermark bound = allowed lateness", default=300_000)
    idle_source_timeout_ms: int = _doc("a partition with no data is idle after this", default=10_000)
    # --- Profile (feature-shaping parameters live in schemas/features.json: part of the model) ----
    idle_expiry_ms: int = _doc("state of a user idle this long (event time) is cleared", default=30 * 86_400_000)
    top_k_categories: int = _doc("categories in a profile's top_categories", default=5)
    lifecycle_new_ms: int = _doc("a user first seen less than this ago is 'new'", default=7 * 86_400_000)
    lifecycle_at_risk_ms: int = _doc("quiet this long: 'at-risk'", default=7 * 86_400_000)
    lifecycle_dormant_ms: int = _doc("quiet this long: 'dormant'", default=30 * 86_400_000)
    value_mid_purchases: int = _doc("purchases for value tier 'medium' (recent buyers)", default=2)
    value_high_purchases: int = _doc("purchases for value tier 'high' (recent buyers)", default=5)
    value_mid_spend: int = _doc("spend for value tier 'medium' (where prices exist)", default=100)
    value_high_spend: int = _doc("spend for value tier 'high' (where prices exist)", default=500)
    value_recent_ms: int = _doc("a buyer is recent if the last purchase is this fresh", default=30 * 86_400_000)
    profile_cache_users: int = _doc("decoded profiles cached per operator (saves state decoding)", default=20_000)
    # --- Micro-batching and scale-out (README "Throughput") -----------------------------------
    max_parallelism: int = _doc(
        "Flink max parallelism = key groups of the profile state: the job rescales to any parallelism "
        "from 1 to this without a config change (fixed for the life of the state, like in any Flink job)",
        default=128,
    )
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
    onnx_provider: str = _doc("auto (CUDA when usable, else CPU), cuda or cpu", default="auto")
    # --- Paths -----------------------------------------------------------------------------------
    run_dir: str = _doc("all runtime state, logs and downloads (git-ignored)", default=".run")
    data_dir: str = _doc("bundled datasets", default="data")

    # Derived values: computed, never configured separately.
    @property
    def flink_rest_url(self) -> str:
        return f"http://{self.flink_rest_host}:{self.flink_rest_port}"

    def profile_settings(self) -> ProfileSettings:
        """The core's settings: feature parameters from schemas/, the rest from this config."""
        from udfs.settings import ProfileSettings

        return ProfileSettings(
            lateness_ms=self.max_out_of_orderness_ms,
            idle_expiry_ms=self.idle_expiry_ms,
            top_k=self.top_k_categories,
            lifecycle_new_ms=self.lifecycle_new_ms,
            lifecycle_at_risk_ms=self.lifecycle_at_risk_ms,
            lifecycle_dormant_ms=self.lifecycle_dormant_ms,
            value_mid_purchases=self.value_mid_purchases,
            value_high_purchases=self.value_high_purchases,
            value_mid_spend=float(self.value_mid_spend),
            value_high_spend=float(self.value_high_spend),
            value_recent_ms=self.value_recent_ms,
        )

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
    def from_env(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Config:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(cls.env_var(f.name))
            if raw is not None and raw != "":
                values[f.name] = _coerce(f, raw)
        by_name = {f.name: f for f in fields(cls)}
        for k, v in (overrides or {}).items():
            if v is not None:
                values[k] = _coerce(by_name[k], v)
        return cls(**values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add one ``--flag`` per field (default None, so the environment still applies)."""
        group = parser.add_argument_group("configuration (flag > env var > default)")
        for f in fields(cls):
            kind = int if f.type in ("int", int) else str  # bools parse from "true"/"false"
            group.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                type=kind,
                default=None,
                help=f"{f.metadata['doc']} [env {cls.env_var(f.name)}, default {f.default!r}]",
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Config:
        names = {f.name for f in fields(cls)}
        return cls.from_env(overrides={k: v for k, v in vars(args).items() if k in names})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(f: dataclasses.Field, raw: Any) -> Any:
    if f.type in ("bool", bool):
        return raw if isinstance(raw, bool) else str(raw).strip().lower() in ("1", "true", "yes", "on")
    return int(raw) if f.type in ("int", int) else raw


def parse(argv: Sequence[str] | None = None, description: str = "") -> tuple[Config, argparse.Namespace]:
    """Parse only config flags (for tools with no flags of their own)."""
    parser = argparse.ArgumentParser(description=description)
    Config.add_arguments(parser)
    args = parser.parse_args(argv)
    return Config.from_args(args), args


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the effective configuration.")
    parser.add_argument("--shell", action="store_true", help="print `export PE_X=...` lines")
    Config.add_arguments(parser)
    args = parser.parse_args(argv)
    cfg = Config.from_args(args)
    for f in fields(Config):
        value = getattr(cfg, f.name)
        if args.shell:
            print(f"export {Config.env_var(f.name)}={shlex.quote(str(value))}")
        else:
            print(f"{f.name:26} {value!s:32} {Config.env_var(f.name)}")
    if args.shell:
        print(f"export PE_RUN_PATH={shlex.quote(str(cfg.run_path))}")
        print(f"export PE_FLINK_REST_URL={shlex.quote(cfg.flink_rest_url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
