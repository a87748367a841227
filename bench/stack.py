"""Stack plumbing of the benchmarks: fresh topics and keyspaces, the processes of each component and
their CPU time, watchers of output topics, job metrics and consumer lag."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import NewTopic

from flink_jobs import submit
from flink_jobs.cassandra_store import connect, create_schema
from flink_jobs.config import Config
from tools import kafka_io


# --- topics and keyspaces ------------------------------------------------------------------------
def fresh(base: Config, **overrides: Any) -> Config:
    """A config with its own topics (broker append timestamps, so latency uses one clock), consumer
    group and keyspace: every run starts with empty input, output and state."""
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


# --- processes and their CPU time ----------------------------------------------------------------
def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pid_file(path: Path) -> list[int]:
    """The pid recorded in a server's pid file if it runs and names the file's directory (so a
    recycled pid of someone else's process is never measured), as deploy/lib.sh pid_of checks."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [pid] if str(path.parent) in " ".join(_cmdline(pid)) else []


def flink_pids(conf_dir: Path) -> dict[str, list[int]]:
    """Live JobManager and TaskManager pids of the cluster whose config dir is ``conf_dir``, found
    by scanning /proc at each call: Flink's pid file keeps pids of TaskManagers replaced long ago
    (the stale pid that once made the TaskManager's CPU read 0.0)."""
    conf = str(conf_dir)
    out: dict[str, list[int]] = {"taskmanager": [], "jobmanager": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        cmd = _cmdline(int(entry.name))
        if not any(tok == conf or tok.endswith("=" + conf) for tok in cmd):
            continue
        joined = " ".join(cmd)
        if "TaskManagerRunner" in joined:
            out["taskmanager"].append(int(entry.name))
        elif "StandaloneSessionClusterEntrypoint" in joined:
            out["jobmanager"].append(int(entry.name))
    return out


def server_pids(base: Config) -> dict[str, list[int]]:
    run = base.run_path
    return {"kafka": _pid_file(run / "kafka" / "kafka.pid"),
            "cassandra": _pid_file(run / "cassandra" / "cassandra.pid")}


def cpu_seconds(pid: int) -> Optional[float]:
    """utime + stime of a process, all its threads (None once it is gone)."""
    return cpu_seconds_of(f"/proc/{pid}/stat")


def cpu_seconds_of(stat_path: str) -> Optional[float]:
    """utime + stime from a /proc stat file (a process's or one thread's); None once it is gone."""
    try:
        fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(x) for x in fields[11:13]) / os.sysconf("SC_CLK_TCK")


# HotSpot's JIT compiler threads ("C2 CompilerThread0", truncated to 15 characters in /proc comm)
JIT_THREADS = ("C1 CompilerThre", "C2 CompilerThre")


def jit_cpu_seconds(pid: int, last: dict[tuple[int, int], float]) -> float:
    """CPU seconds of a JVM's JIT compiler threads. HotSpot starts and stops compiler threads as the
    compile queue grows and shrinks, so ``last`` keeps every compiler thread ever seen with its last
    value: an exited thread's CPU still counts (per-thread, it would vanish from /proc)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = []
    for tid in tids:
        try:
            if Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip() not in JIT_THREADS:
                continue
            c = cpu_seconds_of(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue
        if c is not None:
            last[(pid, int(tid))] = c
    return sum(v for (p, _), v in last.items() if p == pid)


class CpuSampler(threading.Thread):
    """Samples the CPU seconds of each component (the sum over its pids) every ``period_s``, so the
    CPU of any time window, e.g. the steady window of a run, can be read afterwards. A pid that
    disappears keeps its last value (its CPU until then still counts). For each component in
    ``jit``, a component ``<name>_jit`` holds the part spent in its JVMs' JIT compiler threads: a
    warm-up cost every short benchmark run pays in full and a job running for days does not."""

    def __init__(self, pids: dict[str, list[int]], period_s: float = 0.25, jit: tuple[str, ...] = ()) -> None:
        super().__init__(daemon=True)
        self.pids = {k: list(v) for k, v in pids.items() if v}
        self.jit = tuple(k for k in jit if k in self.pids)
        self.period_s = period_s
        self.last: dict[int, float] = {}
        self.last_jit: dict[tuple[int, int], float] = {}
        self.samples: list[tuple[float, dict[str, float]]] = []  # (epoch ms, cpu s per component)
        self.stop = threading.Event()

    @property
    def components(self) -> list[str]:
        return [*self.pids, *(f"{k}_jit" for k in self.jit)]

    def sample(self) -> None:
        row = {}
        for name, pids in self.pids.items():
            total = 0.0
            for p in pids:
                c = cpu_seconds(p)
                if c is not None:
                    self.last[p] = c
                total += self.last.get(p, 0.0)
            row[name] = total
        for name in self.jit:
            row[f"{name}_jit"] = sum(jit_cpu_seconds(p, self.last_jit) for p in self.pids[name])
        self.samples.append((time.time() * 1000, row))

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.period_s)

    def __enter__(self) -> CpuSampler:
        self.sample()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()
        self.sample()

    def between(self, t0_ms: float, t1_ms: float) -> dict[str, float]:
        """CPU seconds per component from t0 to t1 (epoch ms), interpolated between samples."""
        ts = np.array([t for t, _ in self.samples])
        return {name: float(np.interp(t1_ms, ts, [s[name] for _, s in self.samples])
                            - np.interp(t0_ms, ts, [s[name] for _, s in self.samples]))
                for name in self.components}


# --- output topics -------------------------------------------------------------------------------
class Watcher(threading.Thread):
    """Keeps every record appended to a topic: (broker append time ms, local receipt time ms, value).
    read_uncommitted sees a transactional sink's records when appended; read_committed when their
    transaction commits (at checkpoints), which is what a downstream consumer sees."""

    def __init__(self, cfg: Config, topic: str, isolation: str = "read_uncommitted") -> None:
        super().__init__(daemon=True)
        self.cfg, self.topic, self.isolation = cfg, topic, isolation
        self.records: list[tuple[int, float, bytes]] = []
        self.stop = threading.Event()
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            c = kafka_io.consumer(self.cfg, **{"isolation.level": self.isolation})
            meta = c.list_topics(self.topic, timeout=10).topics[self.topic]
            c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions])
            try:
                while not self.stop.is_set():
                    msgs = c.consume(num_messages=10000, timeout=0.1)
                    now = time.time() * 1000
                    self.records.extend((m.timestamp()[1], now, m.value()) for m in msgs if not m.error())
            finally:
                c.close()
        except BaseException as exc:  # reported by wait_for instead of dying silently
            self.error = exc

    def wait_for(self, n: int, timeout_s: float, job: Optional[tuple[Config, str]] = None) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.records) < n:
            if self.error is not None:
                raise RuntimeError(f"watcher of {self.topic} failed: {self.error}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.records)} of {n} records on {self.topic} after {timeout_s:.0f} s")
            if job is not None and submit.job_state(*job) in ("FAILED", "CANCELED"):
                raise RuntimeError(f"job failed: {submit.exceptions(*job)}")
            time.sleep(0.25)

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=10)


def steady_window(append_ms: Sequence[int]) -> tuple[float, float, int]:
    """(t5, t95, records between): the window between the 5th and 95th percentile of the output
    append times, which leaves out start-up and the tail."""
    t = np.sort(np.asarray(append_ms, dtype=np.int64))
    lo, hi = int(len(t) * 0.05), int(len(t) * 0.95)
    return float(t[lo]), float(t[min(hi, len(t) - 1)]), hi - lo


# --- job metrics and consumer lag ----------------------------------------------------------------
def job_metrics(cfg: Config, job_id: str, group: str = "profile_engine") -> dict[str, dict[str, float]]:
    """The job's metrics of ``group`` over all subtasks: {name: {sum, avg, max}} (a counter's total
    is its sum; a histogram statistic such as batch_size_mean is best read as avg). Like
    flink_jobs.submit.job_metrics, which keeps only the sum."""
    out: dict[str, dict[str, float]] = {}
    for v in submit.rest(cfg, f"/jobs/{job_id}")["vertices"]:
        base = f"/jobs/{job_id}/vertices/{v['id']}"
        ids = sorted({m["id"].split(".", 1)[1] for m in submit.rest(cfg, base + "/metrics") if f".{group}." in m["id"]})
        if not ids:
            continue
        for m in submit.rest(cfg, base + "/subtasks/metrics?get=" + ",".join(ids)):
            name = m["id"].split(f".{group}.", 1)[1]
            agg = out.setdefault(name, {"sum": 0.0, "avg": 0.0, "max": float("-inf")})
            agg["sum"] += float(m.get("sum", 0.0))
            agg["avg"] = max(agg["avg"], float(m.get("avg", 0.0)))  # one vertex per metric name here
            agg["max"] = max(agg["max"], float(m.get("max", 0.0)))
    return out


def final_job_metrics(
    cfg: Config, job_id: str, records_in: int, timeout_s: float = 15.0
) -> dict[str, dict[str, float]]:
    """Job metrics once they cover all ``records_in`` input records: the JobManager refreshes its
    metric view only every few seconds (metrics.fetcher.update-interval)."""
    deadline = time.monotonic() + timeout_s
    while True:
        m = job_metrics(cfg, job_id)
        if m.get("records_in", {}).get("sum", 0) >= records_in or time.monotonic() > deadline:
            return m
        time.sleep(1.0)


def consumer_lag(cfg: Config) -> Optional[int]:
    """Records of the events topic not yet committed by the job's consumer group (Flink commits its
    source offsets when a checkpoint completes); None while nothing is committed."""
    c = kafka_io.consumer(cfg, group=cfg.consumer_group)
    try:
        meta = c.list_topics(cfg.topic_events, timeout=10).topics[cfg.topic_events]
        parts = [TopicPartition(cfg.topic_events, p) for p in meta.partitions]
        lag = 0
        for tp in c.committed(parts, timeout=10):
            high = c.get_watermark_offsets(tp, timeout=10)[1]
            if tp.offset < 0:
                if high > 0:
                    return None
                continue
            lag += high - tp.offset
        return lag
    finally:
        c.close()
