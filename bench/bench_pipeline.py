"""End-to-end benchmark on the local real stack (issue 12): this version against the landed version
before it, the framework's floor and the framework-free ceiling, on the same data and machine.

    make bench        # = make up model + python -m bench.bench_pipeline (~35 min; --quick: 7-15 min)

In one run:
  0. the batch engine alone (bench/bench_engine.py): CPU per process_batch call at batch sizes 1, 8,
     64, 512, fitted as fixed cost per call + cost per event;
  1. throughput, each system on the same preloaded data (Taobao 2-hour slice; synthetic stream of
     bench/synthetic.py), fresh topics (broker append timestamps) and keyspace per run:
       - this version (flink_jobs/profile_job.py);
       - the previous version (commit c3a087c), rebuilt in a git worktree under the run dir with its
         own venv, jars and Flink cluster (bench/previous.py), same Kafka and Cassandra;
       - the JVM-only floor (bench/floor_job.py): decode -> batch -> encode to Kafka, no Python;
       - the framework-free Python loop (bench/python_ceiling.py).
     The two Flink clusters run one at a time (this checkout's is stopped meanwhile and started
     again at the end), the ceiling with no cluster up. Both versions run in the previous
     version's cluster layout, one TaskManager with two slots (one JVM, one interpreter); two
     context rows on the first dataset, not targets: this version in the stack's default layout
     (PE_TASKMANAGERS x PE_TASKMANAGER_SLOTS) and with recommendations off (the work the previous
     version did: it had no popularity stage and no recommendation lists). Rate = outputs in the
     steady window (5th to 95th percentile of their append times) / its span. CPU of every component (TaskManager and
     JobManager found afresh per run by their config dir, Kafka, Cassandra, the ceiling's process)
     is sampled through the run and read for the same window: CPU-s per 1,000 events of the process
     doing the profile work, cores per component, events/s per core. Job metrics at the end of each
     run give the per-batch costs (batch size, Python time per batch, state flush per checkpoint).
  2. latency of this version at parallelism 2 and 128 key groups (bench/latency.py): warm-up
     excluded and reported, zero backlog before each burst, 50% and 80% of its measured rate,
     3 repeats each, first seconds of each burst dropped, spread of p99 over the repeats.

Printed, written to bench/results/pipeline.json and drawn to bench/results/pipeline.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import bench_engine, report, synthetic
from bench.latency import events_needed, run_latency
from bench.previous import COMMIT, Previous
from bench.systems import (
    MainCluster,
    jvm_floor,
    run_ceiling,
    run_flink,
    this_version,
    this_version_no_recommendations,
    this_version_stack_layout,
)
from flink_jobs import submit
from flink_jobs.config import Config
from tools import replay

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS = ("this", "previous", "floor", "ceiling", "stack-layout", "no-recommendations")
SKIPPABLE = (*SYSTEMS, "latency", "engine", "taobao", "synthetic")


def _args(argv: Sequence[str] | None, base: Config) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="synthetic stream size")
    ap.add_argument("--users", type=int, default=110_000, help="synthetic user population")
    ap.add_argument("--parallelism", type=int, default=2, help="of every Flink job (2 = both local slots)")
    ap.add_argument("--max-parallelism", type=int, default=base.max_parallelism, help="key groups (latency runs)")
    ap.add_argument("--latency-seconds", type=float, default=40.0, help="length of one burst")
    ap.add_argument("--latency-repeats", type=int, default=3)
    ap.add_argument("--latency-loads", default="0.5,0.8", help="fractions of this version's measured rate")
    ap.add_argument("--latency-drop-s", type=float, default=5.0, help="first seconds of a burst left out")
    ap.add_argument("--latency-warmup", type=int, default=2000, help="events predicted before measuring")
    ap.add_argument("--latency-rate", type=float, default=None,
                    help="100%% load in events/s (default: this version's rate on the last dataset)")
    ap.add_argument("--previous-commit", default=COMMIT)
    ap.add_argument("--previous-rest-host", default=None,
                    help="REST host of the previous version's cluster (default: the same as this one's)")
    ap.add_argument("--quick", action="store_true",
                    help="20k synthetic events only, 15 s bursts, 1 repeat, small warm-up")
    ap.add_argument("--skip", action="append", default=[], choices=SKIPPABLE)
    args = ap.parse_args(argv)
    if args.quick:
        args.events, args.users = 20_000, 2_500
        args.latency_seconds, args.latency_repeats, args.latency_drop_s, args.latency_warmup = 15.0, 1, 3.0, 500
        args.skip.append("taobao")
    return args


def _other_jobs(base: Config) -> list[str]:
    live = ("RUNNING", "CREATED", "RESTARTING")
    return [f"{j['name']} ({j['jid']})" for j in submit.jobs(base) if j["state"] in live]


def main(argv: Sequence[str] | None = None) -> int:
    base = Config.from_env()
    args = _args(argv, base)
    skip = set(args.skip)
    submit.rest(base, "/overview")  # the stack must be up: fail now, not after generating data
    if busy := _other_jobs(base):
        raise SystemExit(f"jobs are running on {base.flink_rest_url}: {busy}; cancel them first (they would "
                         "share the machine, and the bench stops this cluster while the previous version runs)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    loads = tuple(float(x) for x in args.latency_loads.split(","))
    result: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}",
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "parallelism": args.parallelism,
        "checkpoint_interval_ms": base.checkpoint_interval_ms, "delivery_guarantee": base.delivery_guarantee,
        "previous_commit": args.previous_commit, "throughput": [], "ratios": {}, "latency": None,
    }
    if "engine" not in skip:
        result["engine"] = bench_engine.run(base)
        bench_engine.show(result["engine"])
    previous = None
    if "previous" not in skip:
        previous = Previous(base, args.previous_commit, args.previous_rest_host)
        previous.prepare()  # before anything is measured: building it loads the machine

    datasets: dict[str, list] = {}
    if "taobao" not in skip:
        datasets["taobao 2h slice"] = replay.load(base, "taobao-slice")
    if "synthetic" not in skip:
        datasets[f"synthetic {args.events // 1000}k"] = synthetic.generate(base, args.events, args.users)
    for name, events in datasets.items():
        print(f"{name}: {len(events):,} events, {len({e.user_id for e in events}):,} users", flush=True)

    def record(run: dict[str, Any], name: str) -> None:
        result["throughput"].append(dict(run, dataset=name, users=len({e.user_id for e in datasets[name]})))

    # this checkout's cluster: this version and the floor in the previous version's layout, then
    # the context rows (runs grouped by layout: a layout change restarts the cluster)
    cluster = MainCluster(base)
    compared = this_version(base).layout  # the layout of the target comparison (and of the latency runs)
    runs = [(key, system, name) for name in datasets for key, system in (
        ("this", this_version(base)), ("floor", jvm_floor(base)))]
    first = next(iter(datasets), None)
    runs += [(key, system, first) for key, system in (
        ("no-recommendations", this_version_no_recommendations(base)),
        ("stack-layout", this_version_stack_layout(base))) if first is not None]
    runs.sort(key=lambda r: r[1].layout != compared)
    for key, system, name in runs:
        if key not in skip:
            cluster.use(system.layout)
            print(f"{system.label} on {name}", flush=True)
            record(run_flink(base, system, datasets[name], args.parallelism), name)
    # the previous version's cluster, then the ceiling, with this checkout's cluster stopped
    if previous is not None or "ceiling" not in skip:
        cluster.stop()
        try:
            if previous is not None:
                previous.cluster("start")
                try:
                    for name, events in datasets.items():
                        print(f"previous version ({args.previous_commit}) on {name}", flush=True)
                        record(run_flink(base, previous.system(), events, args.parallelism), name)
                finally:
                    previous.cluster("stop")
            if "ceiling" not in skip:
                for name, events in datasets.items():
                    print(f"python ceiling on {name}", flush=True)
                    record(run_ceiling(base, events), name)
        finally:
            cluster.start()

    by = {(r["system"], r["dataset"]): r for r in result["throughput"]}
    for name in datasets:
        this = by.get(("this version", name))
        prev = by.get((f"previous ({args.previous_commit})", name))
        if this is None:
            continue
        ratios = {}
        if prev:
            ratios["events/s this/previous"] = this["events_per_s"] / prev["events_per_s"]
            ratios["TaskManager CPU-s per 1k events this/previous"] = (
                this["proc_cpu_s_per_1k"] / prev["proc_cpu_s_per_1k"])
            if "proc_cpu_s_per_1k_excl_jit" in this and "proc_cpu_s_per_1k_excl_jit" in prev:
                # context, not the target: the same ratio without JIT compilation (warm-up)
                ratios["TaskManager CPU-s per 1k events without JIT this/previous"] = (
                    this["proc_cpu_s_per_1k_excl_jit"] / prev["proc_cpu_s_per_1k_excl_jit"])
        same_work = by.get(("this version, recommendations off", name))
        if prev and same_work:  # context: the work the previous version did, not a target
            ratios["events/s recommendations-off/previous"] = same_work["events_per_s"] / prev["events_per_s"]
            ratios["TaskManager CPU-s per 1k events recommendations-off/previous"] = (
                same_work["proc_cpu_s_per_1k"] / prev["proc_cpu_s_per_1k"])
        for label, key in (("floor", "JVM floor"), ("ceiling", "python ceiling")):
            if (key, name) in by:
                ratios[f"events/s this/{label}"] = this["events_per_s"] / by[(key, name)]["events_per_s"]
        result["ratios"][name] = ratios

    if "latency" not in skip:
        lat_name = list(datasets)[-1] if datasets else None
        max_rate = args.latency_rate or (by[("this version", lat_name)]["events_per_s"]
                                         if ("this version", lat_name) in by else None)
        if max_rate is None:
            raise SystemExit("latency: no measured rate of this version; pass --latency-rate")
        need = events_needed(max_rate, loads, args.latency_repeats, args.latency_seconds, args.latency_warmup)
        # a stream of its own, sized to the bursts, from the same distributions (and user population)
        stream = synthetic.generate(base, need, args.users, seed=11)
        cluster.use(compared)  # the layout its 100% rate was measured in
        print(f"latency at {', '.join(f'{x:.0%}' for x in loads)} of {max_rate:,.0f} events/s, "
              f"{args.latency_repeats} repeat(s) of {args.latency_seconds:g} s", flush=True)
        lat = run_latency(base, stream, max_rate, loads, args.latency_repeats, args.latency_seconds,
                          args.latency_drop_s, args.latency_warmup, args.parallelism, args.max_parallelism)
        result["latency"] = dict(lat, max_rate=max_rate, dataset=f"synthetic {len(stream) // 1000}k (seed 11)")

    cluster.use()  # the configured layout again
    (RESULTS / "pipeline.json").write_text(json.dumps(result, indent=2, default=str))
    drawn = bool(result["throughput"] or result["latency"])
    if drawn:
        report.chart(result, RESULTS / "pipeline.png")
    if result.get("engine"):
        print()
        bench_engine.show(result["engine"])
    report.table(result)
    print(f"written: {RESULTS / 'pipeline.json'}" + (f", {RESULTS / 'pipeline.png'}" if drawn else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
