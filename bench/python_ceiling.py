"""The framework-free ceiling: the job's work in one plain Python process, no Flink.

A Kafka consumer loop (confluent-kafka) decodes Avro events, checks them, and hands each poll's events
to the same batch engine as the job (udfs.engine.process_batch, profiles in a dict: no state backend,
no checkpoints), writes the same Cassandra requests with the Python driver (profiles once per
commit interval, like the job once per checkpoint) and produces Avro predictions. What it does
not do, and Flink does: full validation and a DLQ, exactly-once state and output, recovery. It is
what Python can reach on one core for this work.

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
from udfs import cassandra_rows, schemas
from udfs.avro import AvroCodec
from udfs.engine import MemoryStore, ProfileRow, merge_pending, process_batch
from udfs.prediction import PREDICTION_FIELDS, score_batch
from udfs.profile import Event
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
    cassandra = CassandraStore(cfg)
    store = MemoryStore()
    pending: dict[str, ProfileRow] = {}
    n_in = n_out = n_bad = 0
    start = time.perf_counter()
    cpu0 = time.process_time()
    first = None
    last_commit = start

    def write_profiles() -> None:
        cassandra.write_requests([cassandra_rows.profile_request(u, row) for u, row in pending.items()])
        pending.clear()

    try:
        while n_in < expected and time.perf_counter() - start < timeout_s:
            msgs = c.consume(num_messages=poll_batch, timeout=0.5)
            events: list[Event] = []
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
                events.append(ev)
            r = process_batch(events, store, lambda v: score_batch(scorer, segmenter, v), settings,
                              int(time.time() * 1000))
            merge_pending(pending, r)
            requests = [cassandra_rows.erase_request(u, ts) for u, ts in r.erasures]
            cassandra.write_requests(requests + cassandra_rows.prediction_requests(r.predictions))
            for values in r.predictions:
                pred = dict(zip(PREDICTION_FIELDS, values, strict=True))
                producer.produce(cfg.topic_predictions, key=pred["user_id"].encode(), value=pred_codec.encode(pred))
            producer.poll(0)
            if time.perf_counter() - last_commit >= cfg.checkpoint_interval_ms / 1000:
                write_profiles()
                c.commit(asynchronous=True)
                last_commit = time.perf_counter()
            n_out += len(r.predictions)
        write_profiles()
        producer.flush(60)
    finally:
        c.close()
        cassandra.close()
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
