"""The systems under test and one throughput run of each: a preloaded topic consumed as fast as the
system can, measured in the steady window (bench.stack.steady_window)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from bench.stack import CpuSampler, Watcher, drop, final_job_metrics, flink_pids, fresh, server_pids, steady_window
from flink_jobs import submit
from flink_jobs.config import ROOT, Config
from tools import replay
from udfs.profile import Event

FLOOR_JOB = ROOT / "bench" / "floor_job.py"


Layout = tuple[int, int]


@dataclass(frozen=True)
class FlinkSystem:
    """A job on a Flink cluster. ``counted``: the components whose cores count in events/s per core
    (the floor does not write to Cassandra, so Cassandra's idle CPU is shown but not counted)."""

    label: str
    conf_dir: Path  # the cluster's config dir: finds its JobManager and TaskManager processes
    submit: Callable[[Config], str]  # starts the job on a fresh config, returns the JobID
    rest: Callable[[Config], Config] = lambda cfg: cfg  # the config that reaches its REST API
    counted: tuple[str, ...] = ("taskmanager", "jobmanager", "kafka", "cassandra")
    layout: Optional[Layout] = None  # this checkout's cluster: (TaskManagers, slots each) it runs on


# The previous version's cluster (bench/previous.py): one TaskManager with two slots. Its layout is
# the one the comparison uses, so both versions pay for one JVM (JIT, GC, runtime threads) and one
# interpreter; the stack's default (PE_TASKMANAGERS x PE_TASKMANAGER_SLOTS, one GIL per slot) is
# measured as a row of its own.
PREVIOUS_LAYOUT: Layout = (1, 2)


def _this(base: Config, label: str, layout: Layout, **overrides: Any) -> FlinkSystem:
    return FlinkSystem(label, base.run_path / "flink" / "conf",
                       lambda cfg: submit.submit(dataclasses.replace(cfg, **overrides)), layout=layout)


def this_version(base: Config) -> FlinkSystem:
    return _this(base, "this version", PREVIOUS_LAYOUT)


def this_version_stack_layout(base: Config) -> FlinkSystem:
    layout = (base.taskmanagers, base.taskmanager_slots)
    return _this(base, f"this version, {layout[0]} TM x {layout[1]} slot", layout)


def this_version_no_recommendations(base: Config) -> FlinkSystem:
    """The previous version's work: no popularity stage and no recommendation lists (added since)."""
    return _this(base, "this version, recommendations off", PREVIOUS_LAYOUT, recommendations=False)


def jvm_floor(base: Config) -> FlinkSystem:
    return FlinkSystem("JVM floor", base.run_path / "flink" / "conf",
                       lambda cfg: submit.submit(cfg, module=FLOOR_JOB),
                       counted=("taskmanager", "jobmanager", "kafka"), layout=PREVIOUS_LAYOUT)


class MainCluster:
    """This checkout's cluster (deploy/flink.sh). The bench stops it while the previous version's
    cluster runs, so both get the same machine, and restarts it only when a run needs another
    layout (TaskManagers x slots; None = the configured one)."""

    def __init__(self, base: Config) -> None:
        self.configured: Layout = (base.taskmanagers, base.taskmanager_slots)
        self.layout = self.configured  # what `make bench` (make up) started it with

    def use(self, layout: Optional[Layout] = None) -> None:
        if (layout or self.configured) != self.layout:
            self.stop()
            self.start(layout)

    def stop(self) -> None:
        self._flink("stop")

    def start(self, layout: Optional[Layout] = None) -> None:
        self.layout = layout or self.configured
        self._flink("start", PE_TASKMANAGERS=str(self.layout[0]), PE_TASKMANAGER_SLOTS=str(self.layout[1]))

    @staticmethod
    def _flink(action: str, **env: str) -> None:
        subprocess.run(["bash", str(ROOT / "deploy" / "flink.sh"), action], cwd=ROOT, check=True,
                       env={**os.environ, **env})


def summarize(label: str, events: int, records: list[tuple[int, float, bytes]], cpu: CpuSampler, t_start: float,
              proc: str, counted: tuple[str, ...], metrics: Optional[dict[str, dict[str, float]]] = None,
              ) -> dict[str, Any]:
    """Rate and CPU in the steady window. ``proc``: the component that does the profile work
    (TaskManager, or the ceiling's process)."""
    append = [t for t, _, _ in records]
    t5, t95, n = steady_window(append)
    span = (t95 - t5) / 1000
    rate = n / span if span > 0 else float("nan")
    window = cpu.between(t5, t95)
    whole = cpu.between(t_start, max(append))
    cores = {k: round(v / span, 3) for k, v in window.items()}
    used = sum(cores.get(k, 0.0) for k in counted)
    out = {
        "system": label, "events": events, "events_per_s": rate, "window_s": span, "window_events": n,
        "startup_s": (min(append) - t_start) / 1000, "wall_s": (max(append) - t_start) / 1000,
        "cpu_cores": cores, "cores_counted": list(counted), "cores_used": used,
        "events_per_s_per_core": rate / used if used else float("nan"),
        "events_per_s_per_proc_core": rate / cores[proc] if cores.get(proc) else float("nan"),
        "proc_cpu_s_per_1k": window.get(proc, float("nan")) / n * 1000,
        "proc_cpu_s_per_1k_whole_run": whole.get(proc, float("nan")) / events * 1000,
        "proc": proc,
    }
    if f"{proc}_jit" in window:  # the steady-state basis (its cores are in cpu_cores["<proc>_jit"])
        out["proc_cpu_s_per_1k_excl_jit"] = (window[proc] - window[f"{proc}_jit"]) / n * 1000
    if metrics is not None:
        out["metrics"] = metrics  # counters: read "sum"; histogram statistics and gauges: "avg", "max"
        out["per_batch"] = per_batch(metrics)
    jit = (f" ({out['proc_cpu_s_per_1k_excl_jit']:.3f} without its JIT compiler threads)"
           if "proc_cpu_s_per_1k_excl_jit" in out else "")
    print(f"  {label}: {rate:,.0f} events/s, {out['proc_cpu_s_per_1k']:.3f} {proc} CPU-s per 1k events{jit}, "
          f"{out['events_per_s_per_core']:,.0f} events/s per core, cores {cores}", flush=True)
    return out


def per_batch(m: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per-batch and per-checkpoint costs from the job's counters (whatever the version has)."""
    s = {k: v["sum"] for k, v in m.items()}

    def ratio(a: str, b: str) -> Optional[float]:
        return s[a] / s[b] if s.get(a) is not None and s.get(b) else None

    out = {
        "mean_batch_size": ratio("batched_events", "batches"),
        "python_us_per_batch": ratio("python_batch_micros", "python_batches"),
        "python_us_per_event": ratio("python_batch_micros", "events_applied"),
        "python_cpu_us_per_event": ratio("python_cpu_micros", "events_applied"),
        "flush_us_per_checkpoint": ratio("state_flush_micros", "state_flushes"),
        "profiles_per_flush": ratio("profiles_flushed", "state_flushes"),
        "state_reads_per_event": ratio("state_reads", "events_applied"),
        "cassandra_rows_per_event": ratio("cassandra_rows", "events_applied"),
        "cassandra_requests_per_event": ratio("cassandra_writes", "events_applied"),
        # the previous version's operator timed these itself
        "onnx_us_per_batch": ratio("onnx_micros", "python_batches"),
        "cassandra_us_per_batch": ratio("cassandra_write_micros", "python_batches"),
    }
    if "cassandra_write_latency_us_mean" in m:
        out["cassandra_write_latency_us_mean"] = m["cassandra_write_latency_us_mean"]["avg"]
        out["cassandra_write_latency_us_p99_max"] = m.get("cassandra_write_latency_us_p99", {}).get("max")
    return {k: v for k, v in out.items() if v is not None}


def run_flink(base: Config, system: FlinkSystem, events: list[Event], parallelism: int) -> dict[str, Any]:
    cfg = fresh(base, parallelism=parallelism)
    try:
        replay.publish(cfg, events, progress=False)
        w = Watcher(cfg, cfg.topic_predictions)
        w.start()
        pids = {**flink_pids(system.conf_dir), **server_pids(base), "bench": [os.getpid()]}
        if not pids["taskmanager"]:
            raise RuntimeError(f"no live TaskManager of the cluster in {system.conf_dir}")
        with CpuSampler(pids, jit=("taskmanager",)) as cpu:
            t_start = time.time() * 1000
            job_id = system.submit(cfg)
            rest = system.rest(cfg)
            try:
                w.wait_for(len(events), timeout_s=180 + len(events) / 100, job=(rest, job_id))
                metrics = final_job_metrics(rest, job_id, len(events))
            finally:
                submit.cancel(rest, job_id)
        w.close()
        out = summarize(system.label, len(events), w.records, cpu, t_start, "taskmanager", system.counted, metrics)
        out["pids"] = pids
        return out
    finally:
        drop(cfg)


def run_ceiling(base: Config, events: list[Event]) -> dict[str, Any]:
    """bench/python_ceiling.py in its own process, measured like the jobs (its own report kept)."""
    import json

    cfg = fresh(base)
    try:
        replay.publish(cfg, events, progress=False)
        w = Watcher(cfg, cfg.topic_predictions)
        w.start()
        t_start = time.time() * 1000
        proc = subprocess.Popen([sys.executable, "-m", "bench.python_ceiling", "--expected", str(len(events)),
                                 *submit.config_flags(cfg)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        pids = {"ceiling": [proc.pid], **server_pids(base), "bench": [os.getpid()]}
        with CpuSampler(pids) as cpu:
            out, _ = proc.communicate(timeout=180 + len(events) / 100)  # it stops after the last event
            if proc.returncode != 0:
                raise RuntimeError(f"python_ceiling exited {proc.returncode}")
            stats = json.loads(out)
            w.wait_for(stats["predictions"], timeout_s=60)
        w.close()
        result = summarize("python ceiling", len(events), w.records, cpu, t_start, "ceiling",
                           ("ceiling", "kafka", "cassandra"))
        result["ceiling_report"] = stats
        return result
    finally:
        drop(cfg)
