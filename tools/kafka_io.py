"""Kafka clients (confluent-kafka) and Avro (fastavro) helpers shared by the CLIs and tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from flink_jobs.config import Config
from flink_jobs.security import kafka_librdkafka_config
from udfs.avro import AvroCodec  # noqa: F401 - re-exported for the CLIs and tests


def client_config(cfg: Config) -> dict[str, Any]:
    """Connection settings every client here starts from: bootstrap servers plus TLS/SASL."""
    return {"bootstrap.servers": cfg.kafka_bootstrap, **kafka_librdkafka_config(cfg)}


def admin(cfg: Config, **extra: Any) -> AdminClient:
    return AdminClient({**client_config(cfg), **extra})


def all_topics(cfg: Config) -> list[str]:
    return [cfg.topic_events, cfg.topic_predictions, cfg.topic_dlq, cfg.topic_late]


# The models topic: one partition, so 'active' and 'shadow' messages keep their relative order (two
# partitions would let a promote overtake the shadow message it promotes); compacted, so a fresh job
# reads the latest package per role however old; earlier versions stay at least 30 days before
# compaction may drop them, so `publish_model --rollback` can find the previous active one.
MODEL_TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": str(30 * 86_400_000),
                      "retention.ms": "-1"}


def model_topics(cfg: Config) -> dict[str, tuple[int, dict[str, str]]]:
    """{topic: (partitions, config)} of the model lifecycle: the compacted models topic and the shadow
    scores (an ordinary, time-unlimited topic). Kept apart from ``all_topics``, which tests create and
    delete per run: the models topic outlives any one job."""
    return {cfg.topic_models: (1, dict(MODEL_TOPIC_CONFIG)),
            cfg.topic_shadow_scores: (cfg.topic_partitions, {"retention.ms": "-1"})}


def create_topics(cfg: Config, timeout_s: float = 30.0) -> list[str]:
    """Create the job's topics if missing; returns the ones created. Retention is unlimited by time:
    replayed historical data would otherwise be deleted at once by time-based retention."""
    return _create(cfg, {t: (cfg.topic_partitions, {"retention.ms": "-1"}) for t in all_topics(cfg)}, timeout_s)


def create_model_topics(cfg: Config, timeout_s: float = 30.0) -> list[str]:
    """Create the topics of ``model_topics`` if missing; returns the ones created."""
    return _create(cfg, model_topics(cfg), timeout_s)


def _create(cfg: Config, specs: dict[str, tuple[int, dict[str, str]]], timeout_s: float) -> list[str]:
    client = admin(cfg)
    existing = set(client.list_topics(timeout=timeout_s).topics)
    wanted = [NewTopic(t, num_partitions=n, replication_factor=1, config=conf)
              for t, (n, conf) in specs.items() if t not in existing]
    if not wanted:
        return []
    for fut in client.create_topics(wanted, operation_timeout=timeout_s).values():
        try:
            fut.result()
        except Exception as exc:  # already exists after a race is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return [t.topic for t in wanted]


def producer(cfg: Config, **extra: Any) -> Producer:
    conf = {
        **client_config(cfg),
        "enable.idempotence": True,  # broker-side dedup of producer retries
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
    }
    conf.update(extra)
    return Producer(conf)


def consumer(cfg: Config, group: Optional[str] = None, from_beginning: bool = True, **extra: Any) -> Consumer:
    conf = {
        **client_config(cfg),
        "group.id": group or f"pe-cli-{id(object())}",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",  # only predictions of committed Flink transactions
    }
    conf.update(extra)
    return Consumer(conf)


def read_topic(
    cfg: Config, topic: str, idle_timeout_s: float = 5.0, max_records: Optional[int] = None
) -> Iterator[Any]:
    """Every message of ``topic`` from the beginning until nothing new arrives for idle_timeout_s."""
    c = consumer(cfg)
    c.subscribe([topic])
    n = 0
    try:
        while max_records is None or n < max_records:
            msg = c.poll(idle_timeout_s)
            if msg is None:
                return
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(msg.error())
            n += 1
            yield msg
    finally:
        c.close()


def end_offsets(cfg: Config, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """{partition: offset after the last committed record} (read_committed view)."""
    from confluent_kafka import TopicPartition

    c = consumer(cfg)
    try:
        meta = c.list_topics(topic, timeout=timeout_s).topics[topic]
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1] for p in meta.partitions}
    finally:
        c.close()


def collect(
    cfg: Config,
    topic: str,
    expected: int,
    timeout_s: float,
    start: Optional[dict[int, int]] = None,
    settle_s: float = 0.0,
) -> list[Any]:
    """Messages of ``topic`` after ``start`` offsets (default: the beginning) until ``expected`` arrived
    or ``timeout_s`` passed; then keeps reading ``settle_s`` more seconds to catch surplus records."""
    import time

    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    c = consumer(cfg)
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        start = start or {}
        c.assign([TopicPartition(topic, p, start.get(p, OFFSET_BEGINNING)) for p in meta.partitions])
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        settle_until: Optional[float] = None
        while True:
            now = time.monotonic()
            if settle_until is None and len(out) >= expected:
                settle_until = now + settle_s
            if (settle_until is not None and now >= settle_until) or now >= deadline:
                return out
            for msg in c.consume(num_messages=5000, timeout=0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(msg.error())
                out.append(msg)
    finally:
        c.close()


def json_default(value: Any) -> Any:
    """JSON for what Avro decodes to: timestamps (logical types) as ISO-8601, bytes as base64."""
    import base64
    import datetime

    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
