"""Inference throughput of udfs.scorer.OnnxScorer on the exported propensity model and of
udfs.segmenter.OnnxSegmenter on the segment model next to it.

    python -m bench.bench_scorer [--seconds 1.5] [--threads 1] [--out bench/results/scorer.json]
                                 [--model FILE] [--segments FILE] [--provider cpu|cuda|auto ...]
                                 [--batches 1,64,1024,8192] [--rows FILE.npy] [config flags]

Scores / assigns real feature rows (the Taobao head file replayed through the job's feature code, or
``--rows``: a saved ``[n, n_features]`` float32 array) at batch sizes 1, 64, 1024 and 8192, for about
``--seconds`` each, on CPU -- and on CUDA too when ``provider='auto'`` picks it; ``--provider`` (repeatable)
names the providers instead (``cuda`` fails where no CUDA session starts). Prints rows/s and per-call
latency percentiles and writes them as JSON. Trains both models first if ``cfg.model_file`` or the
segments next to it are missing (``model_export.train``). The training stack and the data are imported
only when needed, so ``measure`` and a run with ``--model``, ``--segments`` and ``--rows`` need only
numpy, onnxruntime and ``udfs`` (``bench/gpu_check.py`` uses them on a GPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from udfs.scorer import PROVIDER_CHOICES, OnnxModel, OnnxScorer  # noqa: E402
from udfs.segmenter import OnnxSegmenter  # noqa: E402

if TYPE_CHECKING:
    from flink_jobs.config import Config

ROOT = Path(__file__).resolve().parent.parent
BATCH_SIZES = (1, 64, 1024, 8192)
MIN_ROWS = 16_384


def feature_rows(cfg: Config, n_events: int = 20_000) -> np.ndarray:
    """Real feature vectors (first ``n_events`` lines of the head file), untiled."""
    from model_export.train import HOUR_MS, build_dataset, load_events
    from tools.datasets import TAOBAO_HEAD

    events, _ = load_events(cfg.taobao_dir / TAOBAO_HEAD, limit=n_events)
    X = build_dataset(events, 24 * HOUR_MS, end_ms=events[-1].event_time + 24 * HOUR_MS).X
    return np.ascontiguousarray(X, dtype=np.float32)


def tile_rows(X: np.ndarray, min_rows: int = MIN_ROWS) -> np.ndarray:
    """``X`` repeated to at least ``min_rows`` rows (float32, C-contiguous)."""
    reps = -(-min_rows // len(X))
    return np.ascontiguousarray(np.tile(X, (reps, 1)), dtype=np.float32)


def measure(fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray, batch: int, seconds: float) -> dict[str, float]:
    """Rows/s and per-call latency of ``fn`` (``scorer.score`` / ``segmenter.assign``) for one batch size.
    Batches are slices of real rows that move on every call (a fixed row would let the CPU caches
    flatter the tree model)."""
    n = len(X) - batch
    for i in range(3):  # warm-up: first runs allocate
        fn(X[i: i + batch])
    lat: list[float] = []
    i = 0
    start = time.perf_counter()
    while True:
        off = (i * batch) % max(n, 1)
        t0 = time.perf_counter()
        fn(X[off: off + batch])
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
    parser.add_argument("--provider", action="append", choices=PROVIDER_CHOICES, default=None,
                        help="provider to bench, repeatable (default: cpu, plus auto when it picks CUDA)")
    parser.add_argument("--batches", default=",".join(map(str, BATCH_SIZES)),
                        help="comma-separated batch sizes")
    parser.add_argument("--rows", type=Path, default=None,
                        help="feature rows to score (.npy, [n, n_features] float32) instead of the Taobao replay")
    parser.add_argument("--model", type=Path, default=None,
                        help="ONNX model to bench (default: the config's model file, trained if missing)")
    parser.add_argument("--segments", type=Path, default=None,
                        help="segment model to bench (default: segments.onnx next to the model; skipped if absent)")
    from flink_jobs.config import Config

    Config.add_arguments(parser)
    args = parser.parse_args(argv)
    cfg = Config.from_args(args)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]

    if args.model is None or args.segments is None:
        from model_export.train import ensure_model, segments_path
    model = args.model if args.model is not None else ensure_model(cfg)
    seg_path = args.segments if args.segments is not None else segments_path(model)
    X = tile_rows(np.load(args.rows) if args.rows is not None else feature_rows(cfg),
                  max(MIN_ROWS, 2 * max(batches)))
    kinds: list[tuple[str, type[OnnxModel], Path]] = [("propensity", OnnxScorer, model)]
    if seg_path.is_file():
        kinds.append(("segments", OnnxSegmenter, seg_path))
    else:
        print(f"no segment model at {seg_path}: segments not benched", flush=True)
    results: list[dict[str, Any]] = []
    described: dict[str, dict[str, Any]] = {}
    for kind, cls, path in kinds:
        auto = cls(path, provider="auto", intra_op_num_threads=args.threads)
        described[kind] = auto.describe() | {"type": auto.metadata.get("model_type")}
        providers = args.provider or (["cpu"] + (["auto"] if auto.provider == "CUDAExecutionProvider" else []))
        for prov in providers:
            m = auto if prov == "auto" else cls(path, provider=prov, intra_op_num_threads=args.threads)
            fn = m.score if isinstance(m, OnnxScorer) else m.assign  # type: ignore[attr-defined]
            for batch in batches:
                r = {"model": kind, "provider": m.provider, **measure(fn, X, batch, args.seconds)}
                results.append(r)
                print(f"{kind:10} {m.provider:24} batch {batch:5d}: {r['rows_per_s']:>14,.0f} rows/s   "
                      f"call p50 {r['call_p50_us']:9.1f} us  p99 {r['call_p99_us']:9.1f} us", flush=True)

    doc = {
        "bench": "scorer",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": described["propensity"],
        "segments": described.get("segments"),
        "threads": args.threads,
        "seconds_per_measurement": args.seconds,
        "input": f"{len(X)} real feature rows ({args.rows or 'Taobao head file, replayed'})",
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
