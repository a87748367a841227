"""The profile job: per-user profiles in Flink keyed state, scored inline by an ONNX model.

Operator chain (JVM parts in [brackets], Python in (parens))::

    [KafkaSource user-events: Avro decode + validate, event-time watermarks]   uid source-user-events
        |
    [state guard: fails a restore of state from an incompatible job]           uid state-guard
        |
    [validate: split rejected records, extract key]  --side output-->  [KafkaSink user-events-dlq]
        |  valid (user_id, event)                               ^ union (duplicates)       uid sink-dlq
    [micro-batch: one JSON batch per profile subtask; flushed   |              uid micro-batch
     at size, after a delay, before watermarks and barriers]     |
        |   + [category keys -> micro-batch] -> (popularity: "popular now" uids category-keys,
        |     per category, keyed state) --+                               popularity-micro-batch, popularity
        |   [KafkaSource models: compacted, 1 partition] --+               uid source-models
        |                                                  v
        |  keyBy(route key) <-- union -- [control fan-out: one copy per profile subtask,
        |                                 parallelism 1]                   uid control-fanout
    (profile: udfs.engine.process_batch per batch; keyed state  |              uid profile
     one entry per user (key groups: rescalable); changed        |
     profiles and recommendation lists written at the commit     |
     marker, or after a batch while the job keeps up (policy:    |
     udfs.engine.FlushPolicy); model records swap the models     |
     between batches)                                            |
     --duplicates------------------------------------------------+
        |   --late events-->  [KafkaSink user-events-late]                     uid sink-late
        |   --Cassandra writes--> [Cassandra sink: async, idempotent,          uid sink-cassandra
        |                          flushed before every checkpoint completes]
        |   --shadow scores (a shadow model set)--> [KafkaSink model-shadow-scores]  uid sink-shadow-scores
    [KafkaSink user-predictions: Avro, exactly-once or at-least-once]          uid sink-predictions

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
from pathlib import Path

# `flink run -py` puts this file's folder on sys.path, not the checkout: without this the packages
# come from wherever the venv's editable install points, which may be another checkout sharing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyflink.common import Configuration
from pyflink.datastream import CheckpointingMode, DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors import Sink

from flink_jobs import connectors, state_guard
from flink_jobs.config import Config
from flink_jobs.model_control import SHADOW_TAG
from flink_jobs.operators import CASSANDRA_TAG, DUPLICATE_TAG, LATE_TAG, ProfileFunction
from flink_jobs.popularity_op import PopularityFunction
from udfs import schemas
from udfs.features import FEATURE_NAMES

JOB_NAME = "profile-engine"


@dataclass(frozen=True)
class Sinks:
    predictions: Sink
    dead_letters: Sink
    late: Sink
    cassandra: Sink
    shadow_scores: Sink


def build(
    env: StreamExecutionEnvironment,
    source: Callable[[StreamExecutionEnvironment], DataStream],
    sinks: Sinks,
    cfg: Config,
    models: Callable[[StreamExecutionEnvironment, Config], DataStream] = connectors.model_source,
) -> DataStream:
    """Wire the pipeline; returns the prediction stream. ``models``: the stream of model records
    (control rows, see connectors.model_source) that every profile subtask applies."""
    raw = state_guard.guard(source(env), cfg)  # fails a restore of incompatible state
    j_valid, dead = connectors.split(raw)
    controls = [models(env, cfg)]
    if cfg.recommendations:  # "popular now" per category, sent to every profile subtask
        controls.append(connectors.popularity_batches(j_valid, cfg).process(
            PopularityFunction(cfg), output_type=connectors.BATCH_TYPE).name("popularity").uid("popularity"))
    batches = connectors.batch(j_valid, cfg, controls)
    profiles = batches.process(ProfileFunction(cfg), output_type=connectors.BATCH_TYPE).name("profile").uid("profile")
    predictions = connectors.prediction_rows(profiles)
    dead.union(profiles.get_side_output(DUPLICATE_TAG)).sink_to(sinks.dead_letters).name(
        "kafka: " + cfg.topic_dlq
    ).uid("sink-dlq")
    profiles.get_side_output(LATE_TAG).sink_to(sinks.late).name("kafka: " + cfg.topic_late).uid("sink-late")
    # prediction rows become Cassandra requests in the JVM; profiles and erasures come from Python
    connectors.prediction_writes(predictions).union(profiles.get_side_output(CASSANDRA_TAG)).sink_to(
        sinks.cassandra
    ).name("cassandra").uid("sink-cassandra")
    predictions.sink_to(sinks.predictions).name("kafka: " + cfg.topic_predictions).uid("sink-predictions")
    # only while a shadow model is set: its score next to the active one's, never in the predictions
    profiles.get_side_output(SHADOW_TAG).sink_to(sinks.shadow_scores).name(
        "kafka: " + cfg.topic_shadow_scores
    ).uid("sink-shadow-scores")
    return predictions


def environment(cfg: Config) -> StreamExecutionEnvironment:
    conf = Configuration()
    # Pinned: a checkpoint taken in one mode restores as EMPTY state in the other (measured).
    conf.set_string("python.execution-mode", cfg.execution_mode)
    conf.set_string("state.backend.type", "rocksdb")
    conf.set_string("execution.checkpointing.incremental", "true")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(cfg.parallelism)
    # key groups of the profile state: any parallelism up to this restores and rescales it
    env.set_max_parallelism(cfg.max_parallelism)
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
            cfg, cfg.topic_predictions, schemas.PREDICTION, "user_id", exactly_once,
            confluent=cfg.prediction_format == "confluent",
        ),
        # DLQ records are keyed by nothing we trust; key by the source topic for ordering per topic.
        dead_letters=connectors.avro_kafka_sink(cfg, cfg.topic_dlq, schemas.DEAD_LETTER, "source_topic", exactly_once),
        late=connectors.avro_kafka_sink(cfg, cfg.topic_late, schemas.EVENT, "user_id", exactly_once),
        cassandra=connectors.cassandra_sink(cfg),
        shadow_scores=connectors.avro_kafka_sink(cfg, cfg.topic_shadow_scores, schemas.SHADOW_SCORE, "user_id",
                                                 exactly_once),
    )
    build(env, lambda e: connectors.event_source(e, cfg), sinks, cfg)
    env.execute(JOB_NAME)  # with `flink run -d` this returns once the job is submitted


if __name__ == "__main__":
    main(sys.argv[1:])
