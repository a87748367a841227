"""Cost of the batch engine alone (udfs.engine.process_batch with the real ONNX models and a
MemoryStore; no Flink, no Kafka, no Cassandra): time per call at batch sizes 1, 8, 64 and 512 on
the same Taobao events, and a least-squares fit  time per call = fixed + per_event * batch size.
The fixed part is what a batch costs whatever its size (the two ONNX calls, shaping); the per-event
part is the profile step, features and prediction rows. Every size processes the same events from
an empty store, so it does the same profile work; the best of ``--repeats`` runs counts. Timed in
CPU seconds of the process (ONNX threads included), which a busy machine disturbs far less than wall
time; wall time per call is shown next to it.

    python -m bench.bench_engine [--events 4096] [--sizes 1,8,64,512]    # prints a table
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flink_jobs.config import Config
from tools import replay
from udfs.engine import MemoryStore, process_batch
from udfs.prediction import score_batch
from udfs.profile import Event
from udfs.scorer import OnnxScorer
from udfs.segmenter import OnnxSegmenter

OUT = Path(__file__).resolve().parent / "results" / "engine.json"


def _one_pass(events: Sequence[Event], size: int, score: Any, settings: Any) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) for all events in batches of ``size``."""
    store = MemoryStore()
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(0, len(events), size):
        process_batch(events[i:i + size], store, score, settings, 0)
    return time.process_time() - c0, time.perf_counter() - t0


def run(cfg: Config, n_events: int = 4096, sizes: Sequence[int] = (1, 8, 64, 512), repeats: int = 3,
        dataset: str = "taobao-slice") -> dict[str, Any]:
    events = replay.load(cfg, dataset, limit=n_events)
    settings = cfg.profile_settings()
    scorer = OnnxScorer(str(cfg.model_file), provider="cpu")
    segmenter = OnnxSegmenter(str(cfg.segments_file), provider="cpu")
    score = functools.partial(score_batch, scorer, segmenter)
    _one_pass(events[:256], 64, score, settings)  # imports, ONNX sessions' first runs
    rows = []
    for size in sizes:
        cpu, wall = min(_one_pass(events, size, score, settings) for _ in range(repeats))
        calls = -(-len(events) // size)
        rows.append({"batch_size": size, "calls": calls, "us_per_call": cpu / calls * 1e6,
                     "us_per_event": cpu / len(events) * 1e6, "events_per_cpu_s": len(events) / cpu,
                     "wall_us_per_call": wall / calls * 1e6})
    # Fit us_per_call = fixed + per_event * size, each size weighted by 1/its time (relative error):
    # unweighted, the 512-event calls would decide the fixed cost alone.
    x = np.array([r["batch_size"] for r in rows], dtype=float)
    y = np.array([r["us_per_call"] for r in rows])
    a = np.vstack([np.ones_like(x), x]).T
    w = 1 / y
    (fixed, per_event), *_ = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)
    rel = (a @ np.array([fixed, per_event]) - y) / y
    return {"dataset": dataset, "events": len(events), "users": len({e.user_id for e in events}),
            "onnx_provider": scorer.provider, "sizes": rows,
            "fit": {"fixed_us_per_call": float(fixed), "us_per_event": float(per_event),
                    "max_rel_error": float(np.abs(rel).max())}}


def show(result: dict[str, Any]) -> None:
    print(f"engine alone (process_batch, {result['events']:,} {result['dataset']} events, "
          f"{result['users']:,} users, ONNX on {result['onnx_provider']}):")
    print("  batch   CPU us/call   CPU us/event   events per CPU-s   wall us/call")
    for r in result["sizes"]:
        print(f"  {r['batch_size']:>5} {r['us_per_call']:>13,.0f} {r['us_per_event']:>14,.1f} "
              f"{r['events_per_cpu_s']:>18,.0f} {r['wall_us_per_call']:>14,.0f}")
    f = result["fit"]
    print(f"  fit: {f['fixed_us_per_call']:,.0f} us fixed per call + {f['us_per_event']:,.1f} us per event "
          f"(CPU time; worst size off by {f['max_rel_error']:.0%})")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=4096)
    ap.add_argument("--sizes", default="1,8,64,512")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dataset", default="taobao-slice", choices=["taobao-slice", "taobao-head"])
    args = ap.parse_args(argv)
    result = run(Config.from_env(), args.events, [int(s) for s in args.sizes.split(",")], args.repeats, args.dataset)
    show(result)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"written: {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
