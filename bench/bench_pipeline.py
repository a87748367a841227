"""End-to-end throughput and latency of the whole path on the local real stack, side by side with the
framework-free Python ceiling and the per-event reference design.

    make bench        # = make up model + python -m bench.bench_pipeline (~20 min; --quick: ~5 min)

What it runs (every run on fresh topics with broker append timestamps, and a fresh keyspace):
  1. throughput: a dataset is preloaded into Kafka, then consumed as fast as it can be: the Flink job
     (pipeline=micro-batch, checkpoints every checkpoint_interval_ms, exactly-once Kafka sink,
     Cassandra), the framework-free ceiling (bench/python_ceiling.py, one process), and the per-event
     job (pipeline=per-event) on a prefix. Datasets: the Taobao 2-hour slice (110k events, 66k
     users) and a synthetic stream from the real data's distributions (bench/synthetic.py: 1M events,
     ~100k users). Rate = predictions between the 5th and 95th percentile of their append times,
     divided by that time span (start-up and tail left out). CPU = each process's CPU seconds during
     the run / wall seconds (1.0 = one core).
  2. latency: the micro-batch job running idle, then events produced at 50% and 80% of its measured
     synthetic-stream rate; latency = prediction append time - event append time (same broker clock),
     p50/p95/p99, read uncommitted (the transactional sink appends at once and commits at checkpoints;
     read_committed consumers see predictions up to one checkpoint interval later).

Figures are printed, written to bench/results/pipeline.json and drawn to bench/results/pipeline.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import NewTopic

from bench import synthetic
from flink_jobs import submit
from flink_jobs.cassandra_store import connect, create_schema
from flink_jobs.config import ROOT, Config
from tools import kafka_io, replay
from udfs import schemas
from udfs.avro import AvroCodec
from udfs.profile import Event

RESULTS = Path(__file__).resolve().parent / "results"


# --- stack plumbing -------------------------------------------------------------------------------
def fresh(base: Config, **overrides: Any) -> Config:
    """Own topics (broker append timestamps, so latency uses one clock) and keyspace."""
    tag = uuid.uuid4().hex[:8]
    cfg = Config.from_env(overrides=dict(
        topic_events=f"bench-{tag}-events", topic_predictions=f"bench-{tag}-predictions",
        topic_dlq=f"bench-{tag}-dlq", topic_late=f"bench-{tag}-late", consumer_group=f"bench-{tag}",
        cassandra_keyspace=f"bench_{tag}", **overrides,
    ))
    conf = {"retention.ms": "-1", "message.timestamp.type": "LogAppendTime"}
    topics = [NewTopic(t, num_partitions=base.topic_partitions, replication_factor=1, config=conf)
              for t in kafka_io.all_topics(cfg)]
    client = kafka_io.admin(cfg)  # must outlive the futures
    for fut in client.create_topics(topics, operation_timeout=30).values():
        fut.result()
    create_schema(cfg)
    return cfg


def drop(cfg: Config) -> None:
    client = kafka_io.admin(cfg)
    for fut in client.delete_topics(kafka_io.all_topics(cfg), operation_timeout=30).values():
        fut.result()
    cluster, session = connect(cfg)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {cfg.cassandra_keyspace}", timeout=120)
    finally:
        cluster.shutdown()


def component_pids(cfg: Config) -> dict[str, int]:
    run = cfg.run_path
    files = {"kafka": run / "kafka" / "kafka.pid", "cassandra": run / "cassandra" / "cassandra.pid",
             "flink-jobmanager": run / "flink" / "flink--standalonesession.pid",
             "flink-taskmanager": run / "flink" / "flink--taskexecutor.pid"}
    out = {}
    for name, f in files.items():
        if f.exists():
            out[name] = int(f.read_text().split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (not of its children: the ceiling reports its own)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:13]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self.pids["bench (producer/consumer)"] = os.getpid()

    def __enter__(self) -> CpuMeter:
        self.t0 = time.perf_counter()
        self.c0 = {k: cpu_seconds(p) for k, p in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.t0
        self.cores = {k: round((cpu_seconds(p) - self.c0[k]) / wall, 2) for k, p in self.pids.items()}


class Watcher(threading.Thread):
    """Counts (and keeps) every record appended to a topic, uncommitted ones included."""

    def __init__(self, cfg: Config, topic: str) -> None:
        super().__init__(daemon=True)
        self.cfg, self.topic = cfg, topic
        self.records: list[tuple[int, bytes]] = []  # (append time ms, value)
        self.stop = threading.Event()

    def run(self) -> None:
        c = kafka_io.consumer(self.cfg, **{"isolation.level": "read_uncommitted"})
        meta = c.list_topics(self.topic, timeout=10).topics[self.topic]
        c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        try:
            while not self.stop.is_set():
                for m in c.consume(num_messages=10000, timeout=0.2):
                    if not m.error():
                        self.records.append((m.timestamp()[1], m.value()))
        finally:
            c.close()

    def wait_for(self, n: int, timeout_s: float, job: Optional[tuple[Config, str]] = None) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.records) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.records)} of {n} records on {self.topic} after {timeout_s:.0f} s")
            if job is not None and submit.job_state(*job) in ("FAILED", "CANCELED"):
                raise RuntimeError(f"job failed: {submit.exceptions(*job)}")
            time.sleep(0.5)


def steady_rate(append_ms: Sequence[int]) -> float:
    t = np.sort(np.asarray(append_ms, dtype=np.int64))
    lo, hi = int(len(t) * 0.05), int(len(t) * 0.95)
    span = (t[hi] - t[lo]) / 1000
    return (hi - lo) / span if span > 0 else float("nan")


# --- the systems under test --------------------------------------------------------------------------
def run_job(base: Config, events: list[Event], label: str, **overrides: Any) -> dict[str, Any]:
    cfg = fresh(base, **overrides)
    try:
        replay.publish(cfg, events, progress=False)
        w = Watcher(cfg, cfg.topic_predictions)
        w.start()
        with CpuMeter(component_pids(cfg)) as cpu:
            job_id = submit.submit(cfg)
            try:
                w.wait_for(len(events), timeout_s=120 + len(events) / 100, job=(cfg, job_id))
            finally:
                submit.cancel(cfg, job_id)
        w.stop.set()
        rate = steady_rate([t for t, _ in w.records])
        print(f"  {label}: {rate:,.0f} events/s  cpu {cpu.cores}", flush=True)
        return {"system": label, "events": len(events), "events_per_s": rate, "cpu_cores": cpu.cores}
    finally:
        drop(cfg)


def run_ceiling(base: Config, events: list[Event]) -> dict[str, Any]:
    cfg = fresh(base)
    try:
        replay.publish(cfg, events, progress=False)
        w = Watcher(cfg, cfg.topic_predictions)
        w.start()
        pids = component_pids(cfg)
        pids = {k: v for k, v in pids.items() if not k.startswith("flink")}
        flags = submit.config_flags(cfg)
        proc = subprocess.Popen([sys.executable, "-m", "bench.python_ceiling", "--expected", str(len(events)), *flags],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
        with CpuMeter(pids) as cpu:
            out, _ = proc.communicate(timeout=120 + len(events) / 100)  # it stops after the last event
        stats = json.loads(out)
        cpu.cores["python ceiling"] = round(stats["cpu_seconds"] / stats["wall_seconds"], 2)
        w.wait_for(stats["predictions"], timeout_s=30)
        w.stop.set()
        rate = steady_rate([t for t, _ in w.records])
        print(f"  python ceiling: {rate:,.0f} events/s  cpu {cpu.cores}  ({out.strip()})", flush=True)
        return {"system": "python ceiling", "events": len(events), "events_per_s": rate, "cpu_cores": cpu.cores}
    finally:
        drop(cfg)


def run_latency(base: Config, events: list[Event], rate: float, seconds: float) -> dict[str, Any]:
    cfg = fresh(base)
    n = int(rate * seconds)
    sample = events[:n]
    try:
        job_id = submit.submit(cfg)
        try:
            submit.wait_tasks_running(cfg, job_id)
            time.sleep(3)
            w = Watcher(cfg, cfg.topic_predictions)
            w.start()
            with CpuMeter(component_pids(cfg)) as cpu:
                sent = replay.publish(cfg, sample, rate=rate, progress=False)
                w.wait_for(n, timeout_s=120, job=(cfg, job_id))
            w.stop.set()
        finally:
            submit.cancel(cfg, job_id)
        pred_codec, ev_codec = AvroCodec(schemas.PREDICTION), AvroCodec(schemas.EVENT)
        appended = {}
        for m in kafka_io.read_topic(cfg, cfg.topic_events, idle_timeout_s=3):
            appended[ev_codec.decode(m.value())["event_id"]] = m.timestamp()[1]
        lat = np.array([t - appended[pred_codec.decode(v)["event_id"]] for t, v in w.records], dtype=float)
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        print(f"  latency at {rate:,.0f} ev/s (sent {sent['events_per_s']:,.0f}/s): "
              f"p50 {p50:.0f} ms  p95 {p95:.0f} ms  p99 {p99:.0f} ms  max {lat.max():.0f} ms", flush=True)
        return {"target_rate": rate, "sent_rate": sent["events_per_s"], "events": n, "p50_ms": p50, "p95_ms": p95,
                "p99_ms": p99, "max_ms": float(lat.max()), "cpu_cores": cpu.cores}
    finally:
        drop(cfg)


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    runs = result["throughput"]
    labels = [f"{r['system']}\n{r['dataset']}" for r in runs]
    a.barh(labels, [r["events_per_s"] for r in runs], color="tab:blue")
    a.set_xlabel("events/s (2 cores, whole stack on the machine)")
    a.set_title("Sustained throughput")
    for i, r in enumerate(runs):
        a.text(r["events_per_s"], i, f" {r['events_per_s']:,.0f}", va="center")
    lat = result["latency"]
    x = np.arange(3)
    for i, r in enumerate(lat):
        label = f"{r['load']} ({r['target_rate']:,.0f}/s)"
        b.bar(x + i * 0.35, [r["p50_ms"], r["p95_ms"], r["p99_ms"]], 0.35, label=label)
    b.set_xticks(x + 0.175, ["p50", "p95", "p99"])
    b.set_ylabel("ms, event append -> prediction append")
    b.set_title("Latency of the micro-batch job")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="synthetic stream size")
    ap.add_argument("--users", type=int, default=110_000, help="synthetic user population")
    ap.add_argument("--reference-events", type=int, default=30_000, help="per-event job: Taobao slice prefix")
    ap.add_argument("--latency-seconds", type=float, default=40.0)
    ap.add_argument("--quick", action="store_true", help="100k synthetic events, 20 s latency runs")
    ap.add_argument("--skip", action="append", default=[], choices=["ceiling", "reference", "latency", "synthetic"])
    args = ap.parse_args(argv)
    if args.quick:
        args.events, args.users, args.latency_seconds = 100_000, 11_000, 20.0
    base = Config.from_env()
    submit.rest(base, "/overview")  # the stack must be up: fail now, not after generating data
    RESULTS.mkdir(parents=True, exist_ok=True)
    datasets = {"taobao 2h slice": replay.load(base, "taobao-slice")}
    if "synthetic" not in args.skip:
        datasets[f"synthetic {args.events // 1000}k"] = synthetic.generate(base, args.events, args.users)
    result: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores", "checkpoint_interval_ms": base.checkpoint_interval_ms,
        "delivery_guarantee": base.delivery_guarantee, "throughput": [], "latency": [],
    }
    for name, events in datasets.items():
        print(f"{name}: {len(events):,} events, {len({e.user_id for e in events}):,} users", flush=True)
        runs = [run_job(base, events, "flink micro-batch", pipeline="micro-batch")]
        if "ceiling" not in args.skip:
            runs.append(run_ceiling(base, events))
        for r in runs:
            result["throughput"].append(dict(r, dataset=name, users=len({e.user_id for e in events})))
    if "reference" not in args.skip:
        events = datasets["taobao 2h slice"][: args.reference_events]
        print(f"per-event reference on the first {len(events):,} events of the Taobao slice", flush=True)
        r = run_job(base, events, "flink per-event", pipeline="per-event")
        result["throughput"].append(dict(r, dataset=f"taobao 2h slice, first {len(events) // 1000}k",
                                         users=len({e.user_id for e in events})))
    tp = {(r["system"], r["dataset"]): r["events_per_s"] for r in result["throughput"]}
    for name in datasets:
        if ("python ceiling", name) in tp:
            ratio = tp[("flink micro-batch", name)] / tp[("python ceiling", name)]
            result.setdefault("ratio_to_ceiling", {})[name] = ratio
    if "latency" not in args.skip:
        lat_name = list(datasets)[-1]
        max_rate = tp[("flink micro-batch", lat_name)]
        for load in (0.5, 0.8):
            print(f"latency at {load:.0%} of {max_rate:,.0f} events/s ({lat_name})", flush=True)
            r = run_latency(base, datasets[lat_name], max_rate * load, args.latency_seconds)
            result["latency"].append(dict(r, load=f"{load:.0%} load", dataset=lat_name))
    (RESULTS / "pipeline.json").write_text(json.dumps(result, indent=2))
    if result["latency"]:
        chart(result, RESULTS / "pipeline.png")
    print("\nsystem                 dataset                              events/s   cpu (cores)")
    for r in result["throughput"]:
        cores = ", ".join(f"{k} {v}" for k, v in r["cpu_cores"].items())
        print(f"{r['system']:<22} {r['dataset']:<36} {r['events_per_s']:>9,.0f}   {cores}")
    for name, ratio in result.get("ratio_to_ceiling", {}).items():
        print(f"micro-batch job / python ceiling on {name}: {ratio:.2f}")
    for r in result["latency"]:
        print(f"latency {r['load']} ({r['target_rate']:,.0f} ev/s): p50 {r['p50_ms']:.0f} ms, "
              f"p95 {r['p95_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms")
    print(f"written: {RESULTS / 'pipeline.json'}" + (f", {RESULTS / 'pipeline.png'}" if result["latency"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
