"""Inference throughput of udfs.scorer.OnnxScorer on the exported propensity model and of
udfs.segmenter.OnnxSegmenter on the segment model next to it: one CPU thread against the GPU.

    python -m bench.bench_scorer [--seconds 1.5] [--threads 1] [--out bench/results/scorer.json]
                                 [--model FILE] [--segments FILE] [--provider cpu|cuda|auto ...]
                                 [--batches 1,64,1024,8192] [--rows FILE.npy] [config flags]

Scores / assigns real feature rows (the Taobao head file replayed through the job's feature code, or
``--rows``: a saved ``[n, n_features]`` float32 array) at batch sizes 1, 64, 1024 and 8192, for about
``--seconds`` each: on the CPU with ``--threads`` (1, as in the job), and with ``provider='cuda'`` when
onnxruntime lists CUDA. A CUDA session is created without CPU fallback
(``session.disable_cpu_ep_fallback``), so its figures are for a graph that runs wholly on the GPU; a
graph with a CPU-only op is recorded as refused, not measured. Each model's ``runs_on`` and CPU-only ops
are recorded, and ``speedup`` gives CUDA rows/s over one CPU thread per batch size. ``--provider``
(repeatable) names the providers instead. Trains both models first if ``cfg.model_file`` or the
segments next to it are missing. The training stack and the data are imported only when needed, so
``measure`` and a run with ``--model``, ``--segments`` and ``--rows`` need only numpy, onnxruntime and
``udfs`` (``bench/gpu_check.py`` uses them on a GPU machine).
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

from udfs.scorer import CUDA, PROVIDER_CHOICES, OnnxModel, OnnxScorer, ProviderUnavailableError  # noqa: E402
from udfs.segmenter import OnnxSegmenter  # noqa: E402

if TYPE_CHECKING:
    from flink_jobs.config import Config

ROOT = Path(__file__).resolve().parent.parent
BATCH_SIZES = (1, 64, 1024, 8192)
MIN_ROWS = 16_384


def feature_rows(cfg: Config, n_events: int = 20_000) -> np.ndarray:
    """Real feature vectors (first ``n_events`` lines of the head file), untiled."""
    from model_export.dataset import HOUR_MS, build_dataset, load_events
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


def speedup(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """CUDA rows/s over CPU rows/s, per model and batch size, where both were measured."""
    rate = {(r["model"], r["provider"], r["batch"]): r["rows_per_s"] for r in results}
    out = []
    for (model, provider, batch), cuda in rate.items():
        cpu = rate.get((model, "CPUExecutionProvider", batch))
        if provider == CUDA and cpu:
            out.append({"model": model, "batch": batch, "cuda_over_cpu": cuda / cpu})
    return out


def bench(
    kinds: Sequence[tuple[str, type[OnnxModel], Path]], asked: Optional[Sequence[str]], threads: int, X: np.ndarray,
    batches: Sequence[int], seconds: float,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], list[dict[str, str]]]:
    """(results, model descriptions, refused sessions) for every model x provider x batch size."""
    results: list[dict[str, Any]] = []
    described: dict[str, dict[str, Any]] = {}
    refused: list[dict[str, str]] = []
    cuda_listed = CUDA in ort.get_available_providers()
    if not cuda_listed:
        print(f"no CUDA provider in this onnxruntime build ({ort.get_available_providers()}): CPU only", flush=True)
    for kind, cls, path in kinds:
        for prov in asked or (["cpu"] + (["cuda"] if cuda_listed else [])):
            try:
                m = cls(path, provider=prov, intra_op_num_threads=threads)
            except ProviderUnavailableError as exc:
                refused.append({"model": kind, "provider": prov, "error": str(exc)})
                print(f"{kind:10} {prov}: refused ({exc})", flush=True)
                continue
            described.setdefault(kind, m.describe() | {"type": m.metadata.get("model_type")})
            fn = m.score if isinstance(m, OnnxScorer) else m.assign  # type: ignore[attr-defined]
            for batch in batches:
                r = {"model": kind, "provider": m.provider, "runs_on": m.runs_on, **measure(fn, X, batch, seconds)}
                results.append(r)
                print(f"{kind:10} {m.provider:24} {m.runs_on:4} batch {batch:5d}: {r['rows_per_s']:>14,.0f} rows/s   "
                      f"call p50 {r['call_p50_us']:9.1f} us  p99 {r['call_p99_us']:9.1f} us", flush=True)
    return results, described, refused


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (the job uses 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scorer.json")
    parser.add_argument("--provider", action="append", choices=PROVIDER_CHOICES, default=None,
                        help="provider to bench, repeatable (default: cpu, plus cuda when onnxruntime lists it)")
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
        from model_export.export import segments_path
        from model_export.train import ensure_model
    model = args.model if args.model is not None else ensure_model(cfg)
    seg_path = args.segments if args.segments is not None else segments_path(model)
    X = tile_rows(np.load(args.rows) if args.rows is not None else feature_rows(cfg),
                  max(MIN_ROWS, 2 * max(batches)))
    kinds: list[tuple[str, type[OnnxModel], Path]] = [("propensity", OnnxScorer, model)]
    if seg_path.is_file():
        kinds.append(("segments", OnnxSegmenter, seg_path))
    else:
        print(f"no segment model at {seg_path}: segments not benched", flush=True)
    results, described, refused = bench(kinds, args.provider, args.threads, X, batches, args.seconds)
    doc = {
        "bench": "scorer",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": described.get("propensity"),
        "segments": described.get("segments"),
        "gpu": "measured" if any(r["provider"] == CUDA for r in results) else "not measured: no usable CUDA provider",
        "speedup": speedup(results),
        "refused": refused,
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
