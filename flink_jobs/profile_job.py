"""The profile job: per-user profiles in Flink keyed state, scored inline by an ONNX model.

Operator chain of the default ``pipeline=micro-batch`` (JVM parts in [brackets], Python in (parens))::

    [KafkaSource user-events: Avro decode + validate, event-time watermarks]   uid source-user-events
        |
    [state guard: fails a restore of state from an incompatible job]           uid state-guard
        |
    [validate: split rejected records, extract key]  --side output-->  [KafkaSink user-events-dlq]
        |  valid (user_id, event)                               ^ union (duplicates)       uid sink-dlq
    [micro-batch: JSON batch per state bucket; flushed at size,  |              uid micro-batch
     after a delay and before every checkpoint barrier]         |
        |  keyBy(bucket)                                        |
    (profile: per event udfs.profile.step -> features;          |              uid profile-batched
     per batch ONNX score + concurrent Cassandra upserts;        |
     MapState user -> profile, state TTL)  --duplicates---------+
        |   --late events-->  [KafkaSink user-events-late]                     uid sink-late
        |
    [KafkaSink user-predictions: Avro, exactly-once or at-least-once]          uid sink-predictions

``pipeline=per-event`` (the reference design, one Python call per event) keys by user instead:
[validate] -> keyBy(user_id) -> (profile: ValueState, event-time timers; uid profile) ->
(cassandra: uid cassandra-writer) -> [KafkaSink]. The two keep state under different uids, so a
savepoint of one does not silently restore into the other.

Submit with ``flink run -py flink_jobs/profile_job.py [config flags]`` (see ``--help``); every flag
also has a PE_* environment variable (flink_jobs/config.py). ``build(env, source, sinks, cfg)``
wires the same pipeline for any source and sinks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyflink.common import Configuration
from pyflink.datastream import CheckpointingMode, DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors import Sink

from flink_jobs import connectors, state_guard
from flink_jobs.config import Config
from flink_jobs.operators import (
    DUPLICATE_TAG,
    LATE_TAG,
    BatchProfileFunction,
    CassandraWriter,
    ProfileFunction,
)
from flink_jobs.types import prediction_type, scored_type
from udfs import schemas
from udfs.features import FEATURE_NAMES

JOB_NAME = "profile-engine"


@dataclass(frozen=True)
class Sinks:
    predictions: Sink
    dead_letters: Sink
    late: Sink


def build(
    env: StreamExecutionEnvironment,
    source: Callable[[StreamExecutionEnvironment], DataStream],
    sinks: Sinks,
    cfg: Config,
) -> DataStream:
    """Wire the pipeline; returns the prediction stream."""
    raw = state_guard.guard(source(env), cfg)  # fails a restore of incompatible state
    if cfg.pipeline == "micro-batch":
        batches, dead = connectors.split_and_batch(raw, cfg)
        scored = (
            batches.process(BatchProfileFunction(cfg), output_type=prediction_type())
            .name("profile")
            .uid("profile-batched")
        )
        predictions = scored
    elif cfg.pipeline == "per-event":
        by_user, dead = connectors.split_and_key(raw)
        scored = by_user.process(ProfileFunction(cfg), output_type=scored_type()).name("profile").uid("profile")
        predictions = scored.map(CassandraWriter(cfg), output_type=prediction_type()).name("cassandra").uid(
            "cassandra-writer"
        )
    else:
        raise ValueError(f"pipeline must be micro-batch or per-event, not {cfg.pipeline!r}")
    dead.union(scored.get_side_output(DUPLICATE_TAG)).sink_to(sinks.dead_letters).name(
        "kafka: " + cfg.topic_dlq
    ).uid("sink-dlq")
    scored.get_side_output(LATE_TAG).sink_to(sinks.late).name("kafka: " + cfg.topic_late).uid("sink-late")
    predictions.sink_to(sinks.predictions).name("kafka: " + cfg.topic_predictions).uid("sink-predictions")
    return predictions


def environment(cfg: Config) -> StreamExecutionEnvironment:
    conf = Configuration()
    # Pinned: a checkpoint taken in one mode restores as EMPTY state in the other (measured).
    conf.set_string("python.execution-mode", cfg.execution_mode)
    conf.set_string("state.backend.type", "rocksdb")
    conf.set_string("execution.checkpointing.incremental", "true")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(cfg.parallelism)
    env.enable_checkpointing(cfg.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    env.get_checkpoint_config().set_min_pause_between_checkpoints(min(1000, cfg.checkpoint_interval_ms))
    connectors.add_job_jars(env, cfg)
    return env


def check_model(cfg: Config) -> None:
    """Fail at submission, not in the TaskManager, when the model does not fit the job."""
    from udfs.scorer import OnnxScorer
    from udfs.segmenter import OnnxSegmenter

    for path in (cfg.model_file, cfg.segments_file):
        if not path.exists():
            raise SystemExit(f"model {path} not found: run `python -m model_export.train`")
    scorer = OnnxScorer(str(cfg.model_file), provider="cpu")  # raises ModelMismatchError on drift
    segmenter = OnnxSegmenter(str(cfg.segments_file), provider="cpu")
    logging.info("models %s and %s match the %d features of the job", scorer.model_version,
                 segmenter.model_version, len(FEATURE_NAMES))


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    Config.add_arguments(parser)
    cfg = Config.from_args(parser.parse_args(argv))
    check_model(cfg)
    env = environment(cfg)
    exactly_once = cfg.delivery_guarantee == "exactly-once"
    sinks = Sinks(
        predictions=connectors.avro_kafka_sink(
            cfg, cfg.topic_predictions, schemas.PREDICTION, "user_id", exactly_once
        ),
        # DLQ records are keyed by nothing we trust; key by the source topic for ordering per topic.
        dead_letters=connectors.avro_kafka_sink(cfg, cfg.topic_dlq, schemas.DEAD_LETTER, "source_topic", exactly_once),
        late=connectors.avro_kafka_sink(cfg, cfg.topic_late, schemas.EVENT, "user_id", exactly_once),
    )
    build(env, lambda e: connectors.event_source(e, cfg), sinks, cfg)
    env.execute(JOB_NAME)  # with `flink run -d` this returns once the job is submitted


if __name__ == "__main__":
    main(sys.argv[1:])
