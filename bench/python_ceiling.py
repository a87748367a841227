"""The framework-free ceiling: the job's work in one plain Python process, no Flink.

A Kafka consumer loop (confluent-kafka) decodes Avro events, checks them, steps the same udfs/ core
with profiles in a dict (no state backend, no checkpoints), scores each poll's events in one ONNX
call per model, writes Cassandra with the same concurrent prepared upserts as the job and produces
Avro predictions. What it does not do, and Flink does: full validation and a DLQ, exactly-once
state and output, recovery. It is what Python can reach on one core for this work.

    python -m bench.python_ceiling --expected N [config flags]    # prints JSON stats
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from flink_jobs.cassandra_store import CassandraStore
from flink_jobs.config import Config
from tools import kafka_io
from udfs import features as feats
from udfs import schemas
from udfs.avro import AvroCodec
from udfs.prediction import PREDICTION_FIELDS, prediction_row, score_batch
from udfs.profile import NO_WATERMARK, Event, Outcome, Profile, step
from udfs.scorer import OnnxScorer
from udfs.segmenter import OnnxSegmenter

EVENT_TYPES = set(schemas.event_types())


def run(cfg: Config, expected: int, poll_batch: int = 500, timeout_s: float = 900.0) -> dict[str, Any]:
    settings = cfg.profile_settings()
    c = kafka_io.consumer(cfg, group=cfg.consumer_group + "-ceiling")
    c.subscribe([cfg.topic_events])
    producer = kafka_io.producer(cfg, **{"linger.ms": 5})
    events_codec, pred_codec = AvroCodec(schemas.EVENT, logical_types=False), AvroCodec(schemas.PREDICTION)
    scorer = OnnxScorer(str(cfg.model_file), provider=cfg.onnx_provider)
    segmenter = OnnxSegmenter(str(cfg.segments_file), provider=cfg.onnx_provider)
    store = CassandraStore(cfg)
    profiles: dict[str, Profile] = {}
    # the job's watermark: per partition max event time seen - lateness - 1, the minimum over partitions
    n_partitions = len(c.list_topics(cfg.topic_events, timeout=10).topics[cfg.topic_events].partitions)
    max_seen: dict[int, int] = {}
    n_in = n_out = n_bad = 0
    start = time.perf_counter()
    cpu0 = time.process_time()
    first = None
    try:
        while n_in < expected and time.perf_counter() - start < timeout_s:
            msgs = c.consume(num_messages=poll_batch, timeout=0.5)
            applied: list[tuple[Event, list[float], dict[str, Any]]] = []
            dirty: dict[str, tuple[Profile, int]] = {}
            for m in msgs:
                if m.error():
                    continue
                n_in += 1
                first = first or time.perf_counter()
                try:
                    ev = Event(**events_codec.decode(m.value()))
                except Exception:
                    n_bad += 1
                    continue
                if ev.event_type not in EVENT_TYPES or not ev.user_id or not ev.event_id:
                    n_bad += 1
                    continue
                wm = (min(max_seen.values()) - settings.lateness_ms - 1
                      if len(max_seen) == n_partitions else NO_WATERMARK)
                max_seen[m.partition()] = max(max_seen.get(m.partition(), NO_WATERMARK), ev.event_time)
                r = step(profiles.get(ev.user_id), ev, wm, settings)
                if r.outcome is not Outcome.APPLIED:
                    continue
                profiles[ev.user_id] = r.state
                vector, view = feats.vector_and_view(r.before, r.state, ev, settings)
                dirty[ev.user_id] = (r.state, len(applied))
                applied.append((ev, vector, view))
            if not applied:
                continue
            scores = score_batch(scorer, segmenter, [a[1] for a in applied])
            scored_at = int(time.time() * 1000)
            preds = [
                dict(zip(PREDICTION_FIELDS, prediction_row(ev, s, view, scored_at, []), strict=True))
                for (ev, _, view), s in zip(applied, scores, strict=True)
            ]
            store.write_many(
                [store.profile_values(applied[i][2], p.version, preds[i], applied[i][1]) for p, i in dirty.values()],
                [store.prediction_values(pred) for pred in preds],
            )
            for pred in preds:
                producer.produce(cfg.topic_predictions, key=pred["user_id"].encode(), value=pred_codec.encode(pred))
            producer.poll(0)
            c.commit(asynchronous=True)
            n_out += len(preds)
        producer.flush(60)
    finally:
        c.close()
        store.close()
    busy = time.perf_counter() - (first or start)
    return {"events_in": n_in, "predictions": n_out, "rejected": n_bad, "seconds": busy,
            "events_per_s": n_in / busy if busy else 0.0,
            "cpu_seconds": time.process_time() - cpu0, "wall_seconds": time.perf_counter() - start}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--expected", type=int, required=True, help="stop after this many input records")
    ap.add_argument("--poll-batch", type=int, default=500)
    Config.add_arguments(ap)
    args = ap.parse_args(argv)
    print(json.dumps(run(Config.from_args(args), args.expected, args.poll_batch)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
