"""The framework's floor: the profile job's JVM path with no Python operator in it.

    [KafkaSource: Avro decode + validation] -> [validate] -> [micro-batch] -> keyBy(route key)
        -> [PassThrough: JSON batch -> one prediction-shaped row per event] -> [KafkaSink predictions]

Same source, validation, MicroBatcher, keyBy, checkpointing and exactly-once Kafka sink as
flink_jobs/profile_job.py (built with the same functions), but the Python profile operator is
replaced by jvm/.../PassThrough.java and there is no Cassandra sink and no state. What it sustains
is what the framework costs by itself: the ceiling the job could reach if Python were free.

Submitted by bench/systems.py with ``flink_jobs.submit.submit(cfg, module=<this file>)``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pyflink.datastream import DataStream

from flink_jobs import connectors, profile_job
from flink_jobs.config import Config
from udfs import schemas

JOB_NAME = "profile-engine-floor"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    Config.add_arguments(parser)
    cfg = Config.from_args(parser.parse_args(argv))
    env = profile_job.environment(cfg)  # same parallelism, key groups, checkpoints, jars
    batches, dead = connectors.split_and_batch(connectors.event_source(env, cfg), cfg)
    glue = connectors._glue()
    prediction_avsc = schemas.avro_text(schemas.PREDICTION)
    # the keyed batch stream in Java (KeyedStream subclasses DataStream in pyflink and in Java)
    j_rows = batches._j_data_stream.flatMap(
        glue.PassThrough(schemas.avro_text(schemas.EVENT), prediction_avsc),
        glue.PassThrough.outputType(prediction_avsc),
    )
    j_rows.name("pass-through").uid("pass-through")
    exactly_once = cfg.delivery_guarantee == "exactly-once"
    DataStream(j_rows).sink_to(
        connectors.avro_kafka_sink(cfg, cfg.topic_predictions, schemas.PREDICTION, "user_id", exactly_once)
    ).name("kafka: " + cfg.topic_predictions).uid("sink-predictions")
    dead.sink_to(
        connectors.avro_kafka_sink(cfg, cfg.topic_dlq, schemas.DEAD_LETTER, "source_topic", exactly_once)
    ).name("kafka: " + cfg.topic_dlq).uid("sink-dlq")
    env.execute(JOB_NAME)


if __name__ == "__main__":
    main(sys.argv[1:])
