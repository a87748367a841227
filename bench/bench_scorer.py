"""Inference throughput of udfs.scorer.OnnxScorer on the exported propensity model.

    python -m bench.bench_scorer [--seconds 1.5] [--threads 1] [--out bench/results/scorer.json]
                                 [--model FILE] [config flags]

Scores real feature rows (the Taobao head file replayed through the job's feature code) at batch sizes
1, 64, 1024 and 8192, for about ``--seconds`` each, on CPU -- and on CUDA too when
``OnnxScorer(provider='auto')`` picks it. Prints rows/s and per-call latency percentiles and writes
them as JSON. Trains the model first if ``cfg.model_file`` is missing (``model_export.train``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from flink_jobs.config import ROOT, Config  # noqa: E402
from model_export.train import HOUR_MS, build_dataset, ensure_model, load_events  # noqa: E402
from tools.datasets import TAOBAO_HEAD  # noqa: E402
from udfs.scorer import OnnxScorer  # noqa: E402

BATCH_SIZES = (1, 64, 1024, 8192)
MIN_ROWS = 16_384


def feature_rows(cfg: Config, n_events: int = 20_000) -> np.ndarray:
    """Real feature vectors (first ``n_events`` lines of the head file), tiled to >= MIN_ROWS rows."""
    events, _ = load_events(cfg.taobao_dir / TAOBAO_HEAD, limit=n_events)
    X = build_dataset(events, 24 * HOUR_MS, end_ms=events[-1].event_time + 24 * HOUR_MS).X
    reps = -(-MIN_ROWS // len(X))
    return np.ascontiguousarray(np.tile(X, (reps, 1)), dtype=np.float32)


def measure(scorer: OnnxScorer, X: np.ndarray, batch: int, seconds: float) -> dict[str, float]:
    """Rows/s and per-call latency for one batch size. Batches are slices of real rows that move on
    every call (a fixed row would let the CPU caches flatter the tree model)."""
    n = len(X) - batch
    for i in range(3):  # warm-up: first runs allocate
        scorer.score(X[i: i + batch])
    lat: list[float] = []
    i = 0
    start = time.perf_counter()
    while True:
        off = (i * batch) % max(n, 1)
        t0 = time.perf_counter()
        scorer.score(X[off: off + batch])
        t1 = time.perf_counter()
        lat.append(t1 - t0)
        i += 1
        if t1 - start >= seconds and i >= 5:
            break
    elapsed = time.perf_counter() - start
    arr = np.asarray(lat) * 1e6
    return {
        "batch": batch,
        "calls": i,
        "rows_per_s": i * batch / elapsed,
        "call_p50_us": float(np.percentile(arr, 50)),
        "call_p99_us": float(np.percentile(arr, 99)),
        "row_us": float(np.median(arr) / batch),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (the job uses 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scorer.json")
    parser.add_argument("--model", type=Path, default=None,
                        help="ONNX model to bench (default: the config's model file, trained if missing)")
    Config.add_arguments(parser)
    args = parser.parse_args(argv)
    cfg = Config.from_args(args)

    model = args.model if args.model is not None else ensure_model(cfg)
    X = feature_rows(cfg)
    providers = ["cpu"]
    auto = OnnxScorer(model, provider="auto", intra_op_num_threads=args.threads)
    if auto.provider == "CUDAExecutionProvider":
        providers.append("auto")
    results: list[dict[str, Any]] = []
    for prov in providers:
        scorer = (auto if prov == "auto"
                  else OnnxScorer(model, provider=prov, intra_op_num_threads=args.threads))
        for batch in BATCH_SIZES:
            r = {"provider": scorer.provider, **measure(scorer, X, batch, args.seconds)}
            results.append(r)
            print(f"{scorer.provider:24} batch {batch:5d}: {r['rows_per_s']:>14,.0f} rows/s   "
                  f"call p50 {r['call_p50_us']:9.1f} us  p99 {r['call_p99_us']:9.1f} us", flush=True)

    doc = {
        "bench": "scorer",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": auto.describe() | {"type": auto.metadata.get("model_type")},
        "threads": args.threads,
        "seconds_per_measurement": args.seconds,
        "input": f"{len(X)} real feature rows (Taobao head file, replayed)",
        "environment": {
            "python": platform.python_version(), "onnxruntime": ort.__version__,
            "available_providers": ort.get_available_providers(), "cpus": os.cpu_count(),
            "machine": platform.machine(), "processor": platform.processor(),
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
