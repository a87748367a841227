"""The benchmark's printed table and chart (bench/results/pipeline.png) from its result dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _f(v: Any, fmt: str = ",.0f") -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)


def table(result: dict[str, Any]) -> None:
    print(f"\nthroughput (parallelism {result['parallelism']}, checkpoints every {result['checkpoint_interval_ms']} "
          f"ms, {result['delivery_guarantee']}; steady window = 5th..95th percentile of output append times)")
    print(f"{'system':<34} {'dataset':<18} {'events/s':>9} {'proc CPU-s':>10} {'w/o JIT':>8} {'ev/s per':>9} "
          f"{'ev/s per':>9}   cores in the steady window")
    print(f"{'':<34} {'':<18} {'':>9} {'per 1k ev':>10} {'':>8} {'core':>9} {'proc core':>9}")
    for r in result["throughput"]:
        cores = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_cores"].items())
        print(f"{r['system']:<34} {r['dataset']:<18} {_f(r['events_per_s']):>9} "
              f"{_f(r['proc_cpu_s_per_1k'], '.3f'):>10} {_f(r.get('proc_cpu_s_per_1k_excl_jit'), '.3f'):>8} "
              f"{_f(r['events_per_s_per_core']):>9} {_f(r['events_per_s_per_proc_core']):>9}   {cores}")
    print("  proc = the process doing the profile work: the TaskManager (Flink) or the ceiling's process;\n"
          "  w/o JIT = proc CPU less its JVM's JIT compiler threads (taskmanager_jit cores; warm-up that a\n"
          "  job running for days does not keep paying; not a target, the basis for sizing);\n"
          "  per core = events/s / cores of all counted components (Flink: TaskManager, JobManager, Kafka,\n"
          "  Cassandra; floor: no Cassandra; ceiling: its process, Kafka, Cassandra). The bench's own\n"
          "  producer/consumer is shown, not counted.")
    for name, r in result.get("ratios", {}).items():
        parts = [f"{k} {v:.2f}" for k, v in r.items() if v is not None]
        print(f"ratios on {name}: " + ", ".join(parts))
    print("  targets: events/s this/previous >= 1.5; TaskManager CPU-s per 1k events this/previous <= 0.6")
    print("\nper-batch cost (job metrics at the end of each run)")
    for r in result["throughput"]:
        if r.get("per_batch"):
            pb = ", ".join(f"{k} {v:,.1f}" for k, v in r["per_batch"].items())
            print(f"  {r['system']} / {r['dataset']}: {pb}")
    lat = result.get("latency")
    if lat:
        print(f"\nlatency of this version (parallelism {lat['parallelism']}, max parallelism {lat['max_parallelism']}, "
              f"{lat['dataset']}, {lat['max_rate']:,.0f} events/s = 100%)")
        print(f"  warm-up (excluded): {lat['warmup_events']:,} events predicted {lat['warmup_predicted_s']:.1f} s "
              f"after RUNNING (their p99 {_f(lat['warmup_latency'].get('p99_ms'))} ms), then 2 checkpoints: "
              f"{lat['warmup_s']:.1f} s in all; consumer lag after it: {lat['consumer_lag_after_warmup']}")
        idle = ", ".join(f"{k} {v:.2f}" for k, v in lat["idle_cpu_cores"].items())
        print(f"  cores with the job running and no input: {idle}")
        print("  load  repeat  target/s  sent/s   p50   p95   p99   max   committed p50/p99   TM CPU ms/event   "
              f"dropped (first {lat['drop_first_s']:g} s)")
        for b in lat["bursts"]:
            u, c, d = b["uncommitted"], b["committed"], b["dropped"]
            print(f"  {b['load']:>4.0%} {b['repeat']:>7} {b['target_rate']:>9,.0f} {b['sent_rate']:>7,.0f} "
                  f"{_f(u.get('p50_ms')):>5} {_f(u.get('p95_ms')):>5} {_f(u.get('p99_ms')):>5} {_f(u.get('max_ms')):>5}"
                  f"   {_f(c.get('p50_ms')):>6} / {_f(c.get('p99_ms')):<6}    "
                  f"{_f(b['taskmanager_cpu_ms_per_event'], '.2f'):>14}    {d['n']} events, "
                  f"p99 {_f(d.get('p99_ms'))} ms")
        for load, s in lat["p99_spread"].items():
            print(f"  p99 at {load} load over {s['repeats']} repeats: min {s['p99_min_ms']:.0f} / median "
                  f"{s['p99_median_ms']:.0f} / max {s['p99_max_ms']:.0f} ms (read_committed median "
                  f"{s['committed_p99_median_ms']:.0f} ms)")
        print("  target: p99 < 500 ms at 50% load")


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["throughput"]
    lat = result.get("latency")
    fig, grid = plt.subplots(2 if lat else 1, 2, figsize=(14, 9 if lat else 4.8), squeeze=False)
    axes = grid.ravel()
    labels = [f"{r['system']}\n{r['dataset']}" for r in runs]
    for ax, key, title in ((axes[0], "events_per_s", "Sustained throughput, events/s"),
                           (axes[1], "events_per_s_per_core", "events/s per core (all counted components)")):
        values = [r[key] for r in runs]
        if not runs:
            ax.axis("off")
            ax.text(0.5, 0.5, "throughput skipped", ha="center")
            continue
        ax.barh(labels, values, color=["tab:green" if r["system"] == "this version" else "tab:gray" for r in runs])
        ax.set_title(title)
        ax.invert_yaxis()
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:,.0f}", va="center")
    if lat:
        ax = axes[2]
        for load, color in zip(sorted({b["load"] for b in lat["bursts"]}), ("tab:blue", "tab:orange", "tab:red"),
                               strict=False):
            bs = [b for b in lat["bursts"] if b["load"] == load]
            for q, marker in (("p50_ms", "o"), ("p99_ms", "^")):
                ax.scatter([b["repeat"] for b in bs], [b["uncommitted"][q] for b in bs], color=color, marker=marker,
                           label=f"{load:.0%} load {q[:3]}")
        ax.axhline(500, color="black", linestyle=":", linewidth=1, label="target p99 500 ms")
        ax.set_xlabel("repeat")
        ax.set_xticks(sorted({b["repeat"] for b in lat["bursts"]}))
        ax.set_ylim(bottom=0)
        ax.set_ylabel("ms, event append -> prediction append")
        ax.set_title(f"Latency, parallelism {lat['parallelism']} (warm-up excluded)")
        ax.legend(fontsize=8)
        ax = axes[3]
        for b in lat["bursts"]:
            t = np.array(b["timeline"])
            ax.plot(t[:, 0], t[:, 3], linewidth=1, label=f"{b['load']:.0%} load, repeat {b['repeat']}")
        ax.axvline(lat["drop_first_s"], color="black", linestyle=":", linewidth=1, label="dropped before this")
        ax.set_xlabel("seconds since the burst's first event")
        ax.set_ylabel("max latency in that second, ms")
        ax.set_title("Latency over each burst")
        ax.legend(fontsize=7)
    fig.suptitle(result.get("machine", ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
