"""Kafka source and sinks of the job, built on the JVM glue in jvm/ (Avro decode, validation,
event-time timestamps and Avro encode all run in the JVM; Python sees decoded rows only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyflink.common import WatermarkStrategy
from pyflink.common.serialization import SerializationSchema
from pyflink.common.typeinfo import TypeInformation, Types
from pyflink.datastream import DataStream, KeyedStream, StreamExecutionEnvironment
from pyflink.datastream.connectors import Sink
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (
    KafkaRecordSerializationSchema,
    KafkaSink,
    KafkaSource,
)
from pyflink.java_gateway import get_gateway

from flink_jobs.config import Config
from flink_jobs.security import ENV_PREFIX, kafka_java_properties
from udfs import schemas

GLUE = "dev.profileengine.glue"


def job_jars(cfg: Config) -> list[Path]:
    """The glue jar and the Kafka connector jars (built by `make jars` into the run dir)."""
    lib = cfg.run_path / "lib" / "flink"
    jars = sorted(lib.glob("*.jar"))
    if not any(j.name.startswith("profile-engine-glue") for j in jars):
        raise FileNotFoundError(f"no profile-engine-glue jar in {lib}: run `make jars`")
    return jars


def add_job_jars(env: StreamExecutionEnvironment, cfg: Config) -> None:
    env.add_jars(*[j.as_uri() for j in job_jars(cfg)])


def _glue():  # noqa: ANN202 - a py4j package proxy
    return getattr(get_gateway().jvm, GLUE)


def event_deserializer(cfg: Config, event_avsc: str) -> Any:
    """The JVM decoder of user-events values: plain Avro, or the Confluent wire format whose writer
    schemas come from the registry (user_event.avsc stays the reader schema either way)."""
    glue = _glue()
    if cfg.event_format == "confluent":
        return glue.EventDeserializer.confluent(event_avsc, cfg.schema_registry_url, cfg.schema_registry_timeout_ms)
    return glue.EventDeserializer(event_avsc)


def event_source(env: StreamExecutionEnvironment, cfg: Config) -> DataStream:
    """user-events -> rows of (event fields, dlq_reason, provenance, raw bytes if rejected), with
    event-time timestamps and per-partition bounded-out-of-orderness watermarks."""
    glue = _glue()
    event_avsc = schemas.avro_text(schemas.EVENT)
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(cfg.kafka_bootstrap)
        .set_topics(cfg.topic_events)
        .set_group_id(cfg.consumer_group)
        .set_property("partition.discovery.interval.ms", "60000")
    )
    for key, value in kafka_java_properties(cfg).items():  # TLS/SASL: holds no secret, see security.py
        builder = builder.set_property(key, value)
    # First start: from the beginning; restarts resume from the checkpointed offsets. Built in Java:
    # pyflink's wrapper names the shaded Kafka classes of the SQL connector jar, we ship the plain one.
    jvm = get_gateway().jvm
    builder._j_builder.setStartingOffsets(
        jvm.org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer.committedOffsets(
            jvm.org.apache.kafka.clients.consumer.OffsetResetStrategy.EARLIEST
        )
    )
    builder._j_builder.setDeserializer(event_deserializer(cfg, event_avsc))
    watermarks = WatermarkStrategy(
        glue.EventTimeAssigner.strategy(
            event_avsc, cfg.max_out_of_orderness_ms, cfg.idle_source_timeout_ms
        )
    )
    return env.from_source(builder.build(), watermarks, "kafka: " + cfg.topic_events).uid("source-user-events")


def model_source(env: StreamExecutionEnvironment, cfg: Config) -> DataStream:
    """Records of the compacted models topic as control rows (jvm/.../ControlRecordDeserializer):
    Row(payload) = {"model": {"key", "value" (base64), "offset"}}. One partition, parallelism 1, no
    watermarks (they carry no event time). First start: from the earliest retained record (the
    compacted topic holds the latest package per role); a restore resumes from the checkpointed
    offset, and the checkpointed model registry holds what the records before it did."""
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(cfg.kafka_bootstrap)
        .set_topics(cfg.topic_models)
        # only to show the job's progress on the topic in Kafka's tools: offsets come from checkpoints
        .set_group_id(f"{cfg.consumer_group}-models")
    )
    for key, value in kafka_java_properties(cfg).items():  # the same TLS/SASL as the events source
        builder = builder.set_property(key, value)
    jvm = get_gateway().jvm  # built in Java, as event_source (pyflink's wrapper names shaded classes)
    builder._j_builder.setStartingOffsets(
        jvm.org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer.earliest()
    )
    builder._j_builder.setDeserializer(_glue().ControlRecordDeserializer("model"))
    stream = env.from_source(builder.build(), WatermarkStrategy.no_watermarks(), "kafka: " + cfg.topic_models)
    return stream.uid("source-models").set_parallelism(1)


def split(raw: DataStream) -> tuple[Any, DataStream]:
    """(Java stream of valid (user_id, event) rows, rejected records as rows of dead_letter.avsc)."""
    glue = _glue()
    event_avsc = schemas.avro_text(schemas.EVENT)
    dlq_avsc = schemas.avro_text(schemas.DEAD_LETTER)
    glue.SplitInvalid.checkDeadLetterSchema(dlq_avsc)
    fn = glue.SplitInvalid(event_avsc, dlq_avsc)
    j_valid = raw._j_data_stream.process(fn, glue.SplitInvalid.keyedEventType(event_avsc))
    j_valid.name("validate").uid("validate")
    return j_valid, DataStream(j_valid.getSideOutput(fn.getDlqTag()))


def _key_by_field0(j_stream: Any, value_type: TypeInformation) -> KeyedStream:
    """Key a Java stream of (key, value) rows the way pyflink's key_by does, minus its Python map.
    The key is Row(field0): jvm/.../UserKeys.java and operators.key_switcher build the same Row."""
    key_selector = get_gateway().jvm.org.apache.flink.streaming.api.functions.python.KeyByKeySelector()
    j_keyed = j_stream.keyBy(key_selector, Types.ROW([Types.STRING()]).get_java_type_info())
    return KeyedStream(j_keyed, value_type, DataStream(j_stream))


BATCH_TYPE = Types.ROW_NAMED(["payload"], [Types.STRING()])


def split_and_batch(
    raw: DataStream, cfg: Config, controls: Sequence[DataStream] = ()
) -> tuple[KeyedStream, DataStream]:
    """(micro-batches of valid events keyed by route key, rejected records): ``split`` + ``batch``."""
    j_valid, dead = split(raw)
    return batch(j_valid, cfg, controls), dead


def batch(j_valid: Any, cfg: Config, controls: Sequence[DataStream] = ()) -> KeyedStream:
    """Micro-batches of valid events keyed by route key.

    A batch is one row whose ``payload`` is a JSON array of events for one profile subtask, or a
    commit marker (see jvm/.../MicroBatcher.java): one JVM->Python crossing per batch instead of per
    event. The batcher runs at the job's parallelism, like the profile operator it routes to.
    ``controls``: streams of Row(payload) with JSON-object payloads (new models, popularity
    updates) that every profile subtask must see; they join the batch channel through
    jvm/.../ControlFanout."""
    j_batches = _micro_batches(j_valid, cfg, "micro-batch")
    if controls:
        # py4j cannot call Java's varargs union: go through PyFlink's wrapper
        j_batches = DataStream(j_batches).union(DataStream(control_fanout(controls, cfg)))._j_data_stream
    return _key_by_field0(j_batches, BATCH_TYPE)


def _micro_batches(j_keyed: Any, cfg: Config, uid: str, metric_group: str = "profile_engine") -> Any:
    batcher = _glue().MicroBatcher(cfg.batch_max_events, cfg.batch_max_delay_ms, metric_group)
    j_batches = j_keyed.transform(uid, _glue().MicroBatcher.batchType(), batcher)
    # stateless (flushes before every barrier); a uid keeps savepoints mappable
    return j_batches.uid(uid)


def popularity_batches(j_valid: Any, cfg: Config) -> KeyedStream:
    """Valid events re-keyed by category (each also under the all-categories key, see
    jvm/.../CategoryKeys.java), micro-batched for the popularity subtask owning the key."""
    glue = _glue()
    names = schemas.field_names(schemas.EVENT)
    keys = glue.CategoryKeys(names.index("item_id"), names.index("category_id"))
    keyed_type = glue.SplitInvalid.keyedEventType(schemas.avro_text(schemas.EVENT))
    j_keyed = j_valid.flatMap(keys, keyed_type).name("category keys").uid("category-keys")
    return _key_by_field0(_micro_batches(j_keyed, cfg, "popularity-micro-batch", "popular_now"), BATCH_TYPE)


def control_fanout(controls: Sequence[DataStream], cfg: Config) -> Any:
    """One copy of every control record per profile subtask (Java stream of batchType rows), sent by
    a single subtask so that all profile subtasks see the control records in one order."""
    j_all = controls[0].union(*controls[1:])._j_data_stream if len(controls) > 1 else controls[0]._j_data_stream
    fanout = _glue().ControlFanout(cfg.parallelism, cfg.max_parallelism)
    j_out = j_all.transform("control fan-out", _glue().MicroBatcher.batchType(), fanout)
    return j_out.setParallelism(1).uid("control-fanout")


def avro_kafka_sink(
    cfg: Config, topic: str, avsc: str, key_field: str, exactly_once: bool, confluent: bool = False
) -> KafkaSink:
    """Kafka sink writing rows of ``avsc`` as Avro binary, keyed by ``key_field`` (UTF-8); with
    ``confluent`` in the Confluent wire format, the schema registered as subject ``<topic>-value``."""
    glue = _glue()
    key_index = schemas.field_names(avsc).index(key_field)
    if confluent:
        value = glue.AvroRowSerializer.confluent(
            schemas.avro_text(avsc), cfg.schema_registry_url, cfg.schema_registry_timeout_ms, f"{topic}-value"
        )
    else:
        value = glue.AvroRowSerializer(schemas.avro_text(avsc))
    serializer = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(topic)
        .set_key_serialization_schema(SerializationSchema(glue.RowFieldKey(key_index)))
        .set_value_serialization_schema(SerializationSchema(value))
        .build()
    )
    builder = (
        KafkaSink.builder()
        .set_bootstrap_servers(cfg.kafka_bootstrap)
        .set_record_serializer(serializer)
        # must stay below the broker's transaction.max.timeout.ms (15 min by default)
        .set_property("transaction.timeout.ms", "600000")
        .set_property("linger.ms", "5")
    )
    for key, value in kafka_java_properties(cfg).items():
        builder = builder.set_property(key, value)
    if exactly_once:
        builder = builder.set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE).set_transactional_id_prefix(
            f"{cfg.consumer_group}-{topic}"
        )
    else:
        builder = builder.set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
    return builder.build()


def prediction_rows(batches: DataStream) -> DataStream:
    """The profile operator's output (one JSON array of predictions per batch) as one typed row of
    prediction.avsc per prediction (jvm/.../PredictionRows)."""
    avsc = schemas.avro_text(schemas.PREDICTION)
    j = batches._j_data_stream.flatMap(_glue().PredictionRows(avsc), _glue().PredictionRows.rowType(avsc))
    return DataStream(j.name("prediction rows").uid("prediction-rows"))


def prediction_writes(predictions: DataStream) -> DataStream:
    """The Cassandra write request of every prediction, built in the JVM (jvm/.../PredictionWrites)."""
    from udfs.cassandra_rows import PREDICTION_COLUMNS
    from udfs.prediction import PREDICTION_FIELDS

    glue = _glue()
    fn = glue.PredictionWrites(_java_list(PREDICTION_FIELDS), _java_list(PREDICTION_COLUMNS))
    j = predictions._j_data_stream.map(fn, glue.CassandraSink.elementType())
    return DataStream(j.name("cassandra requests").uid("prediction-writes"))


def _java_list(values: list[str]) -> Any:
    out = get_gateway().jvm.java.util.ArrayList()
    for v in values:
        out.add(v)
    return out


def cassandra_sink(cfg: Config) -> Sink:
    """The JVM Cassandra sink (jvm/.../CassandraSink.java) for the profile operator's write requests
    (udfs.cassandra_rows): prepared idempotent upserts, token- and DC-aware, bounded in flight, all
    acknowledged before each checkpoint completes. Columns come from schemas/cassandra.cql; the
    password stays a reference (file path or env:NAME) resolved on the TaskManager."""
    from udfs.cassandra_rows import PREDICTION_COLUMNS, PROFILE_COLUMNS, RECOMMENDATION_COLUMNS

    glue = _glue()
    settings = glue.CassandraSinkSettings(
        cfg.cassandra_hosts, cfg.cassandra_port, cfg.cassandra_local_dc, cfg.cassandra_keyspace,
        _java_list(PROFILE_COLUMNS), _java_list(PREDICTION_COLUMNS),
    ).withConsistency(cfg.cassandra_consistency, cfg.cassandra_prediction_consistency) \
        .withMaxInFlight(cfg.cassandra_max_in_flight) \
        .withGrouping(cfg.cassandra_write_grouping, cfg.cassandra_batch_max_rows, cfg.cassandra_batch_linger_ms) \
        .withRecommendationColumns(_java_list(RECOMMENDATION_COLUMNS))
    if cfg.cassandra_username:
        ref = cfg.cassandra_password_file
        if not ref.startswith(ENV_PREFIX):
            ref = str(cfg.path(ref))  # the TaskManager's working directory is not the repository
        settings = settings.withCredentials(cfg.cassandra_username, ref)
    if cfg.cassandra_ssl_ca_file:
        settings = settings.withTls(str(cfg.path(cfg.cassandra_ssl_ca_file)), cfg.cassandra_ssl_check_hostname)
    return Sink(glue.CassandraSink(settings))
