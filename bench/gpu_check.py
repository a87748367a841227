"""CUDA path of ``udfs.scorer`` on a GPU machine: which providers the scorer and the segmenter pick, where
onnxruntime places each graph node, whether CUDA and CPU agree, and rows/s on both.

    python bench/gpu_check.py --rows ROWS.npy [--out gpu_check.json] [--seconds 0.5]
                              [--batches 1,64,1024,8192,65536] [--cpu-threads 1,16]

Run through ``bench/gpu_check.sh`` (unpacks the onnxruntime-gpu build packed by ``bench/gpu_pack.py``
and points the loader at the CUDA 13 libraries). Needs only numpy, onnxruntime(-gpu) and ``udfs``.
Exit status 0 only if ``provider='cuda'`` and ``provider='auto'`` both start a CUDA session for both
models.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from bench.bench_scorer import measure, tile_rows  # noqa: E402
from udfs.scorer import CPU, CUDA, OnnxModel, OnnxScorer, ProviderUnavailableError  # noqa: E402
from udfs.segmenter import OnnxSegmenter  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi failed: {exc}"


def placement(path: Path, providers: list[str], x: np.ndarray) -> list[dict[str, str]]:
    """Each graph node with its op type and the provider that ran it (from onnxruntime's profile)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "placement")
    sess = ort.InferenceSession(str(path), sess_options=so, providers=providers)
    sess.run(None, {sess.get_inputs()[0].name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    nodes: dict[str, dict[str, str]] = {}
    for e in events:
        args = e.get("args") or {}
        if e.get("cat") == "Node" and "provider" in args:
            name = e["name"].removesuffix("_kernel_time")
            nodes[name] = {"node": name, "op": args.get("op_name", "?"), "provider": args["provider"]}
    return list(nodes.values())


def cuda_probe(path: Path) -> list[dict[str, Any]]:
    """Start a bare CUDA session, and when it fails (the loader found no CUDA 13 / cuDNN libraries),
    try again after ``onnxruntime.preload_dlls()`` and then after ``import torch`` (which loads the same
    CUDA 13 libraries); each try is recorded, the first success ends the probe."""
    tries: list[dict[str, Any]] = []
    for how in ("LD_LIBRARY_PATH", "preload_dlls", "import torch"):
        try:
            if how == "preload_dlls":
                ort.preload_dlls()
            elif how == "import torch":
                import torch  # noqa: F401, PLC0415

            so = ort.SessionOptions()
            so.log_severity_level = 2 if not tries else 3
            sess = ort.InferenceSession(str(path), sess_options=so, providers=[CUDA])
            tries.append({"how": how, "session_providers": sess.get_providers()})
        except Exception as exc:  # noqa: BLE001 - recorded, the next way is tried
            tries.append({"how": how, "error": f"{type(exc).__name__}: {exc}"[:2000]})
        print(f"cuda probe: {tries[-1]}", flush=True)
        if tries[-1].get("session_providers", [None])[0] == CUDA:
            break
    return tries


def load(cls: type[OnnxModel], path: Path, provider: str, threads: int = 1) -> tuple[OnnxModel | None, dict[str, Any]]:
    t0 = time.perf_counter()
    try:
        m = cls(path, provider=provider, intra_op_num_threads=threads)
    except ProviderUnavailableError as exc:
        return None, {"asked": provider, "error": str(exc)}
    return m, {"asked": provider, "provider": m.provider, "session_providers": m.session.get_providers(),
               "runs_on": m.runs_on, "cpu_nodes": m.describe()["cpu_nodes"],
               "load_s": round(time.perf_counter() - t0, 3)}


def outputs(m: OnnxModel, x: np.ndarray) -> dict[str, np.ndarray]:
    names = [o.name for o in m.session.get_outputs()]
    return dict(zip(names, m.session.run(names, {m.input_name: x}), strict=True))


def agreement(kind: str, cpu: OnnxModel, cuda: OnnxModel, X: np.ndarray) -> dict[str, Any]:
    """CUDA vs CPU on every real row, through the scorer's own calls and on every output tensor."""
    r: dict[str, Any] = {"rows": len(X)}
    if kind == "propensity":
        a, b = cpu.score(X), cuda.score(X)  # type: ignore[attr-defined]
        r["score_max_abs_diff"] = float(np.max(np.abs(a - b)))
    else:
        a, b = cpu.assign(X), cuda.assign(X)  # type: ignore[attr-defined]
        r["labels_equal_fraction"] = float(np.mean(a == b))
        r["labels_differing"] = int(np.sum(a != b))
    oc, og = outputs(cpu, X), outputs(cuda, X)
    for name in oc:
        if np.issubdtype(oc[name].dtype, np.floating):
            r[f"{name}_max_abs_diff"] = float(np.max(np.abs(oc[name].astype(np.float64) - og[name])))
            r[f"{name}_max_rel_diff"] = float(np.max(np.abs(oc[name].astype(np.float64) - og[name])
                                                     / np.maximum(np.abs(oc[name].astype(np.float64)), 1e-12)))
        else:
            r[f"{name}_equal_fraction"] = float(np.mean(oc[name] == og[name]))
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=Path, required=True, help="real feature rows, .npy [n, n_features]")
    ap.add_argument("--model", type=Path, default=ROOT / "artifacts" / "propensity.onnx")
    ap.add_argument("--segments", type=Path, default=ROOT / "artifacts" / "segments.onnx")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_check.json")
    ap.add_argument("--seconds", type=float, default=0.5, help="time per throughput measurement")
    ap.add_argument("--batches", default="1,64,1024,8192,65536")
    ap.add_argument("--cpu-threads", default="1,16", help="intra-op threads of the CPU runs (the job uses 1)")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    cpu_threads = [int(t) for t in args.cpu_threads.split(",")]

    X_real = np.ascontiguousarray(np.load(args.rows), dtype=np.float32)
    X = tile_rows(X_real, 2 * max(batches))
    doc: dict[str, Any] = {
        "check": "gpu_check",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": gpu_name(),
        "environment": {
            "python": platform.python_version(), "numpy": np.__version__, "onnxruntime": ort.__version__,
            "onnxruntime_file": ort.__file__, "build_info": ort.get_build_info(),
            "available_providers": ort.get_available_providers(), "cpus": os.cpu_count(),
        },
        "input": f"{len(X_real)} real feature rows, tiled to {len(X)}",
        "seconds_per_measurement": args.seconds,
        "models": {}, "results": [],
    }
    print(json.dumps(doc["environment"], indent=1), "\ndevice:", doc["device"], flush=True)
    doc["cuda_probe"] = cuda_probe(args.segments)
    ok = True
    for kind, cls, path in (("propensity", OnnxScorer, args.model), ("segments", OnnxSegmenter, args.segments)):
        cuda, info_cuda = load(cls, path, "cuda")
        auto, info_auto = load(cls, path, "auto")
        cpu, info_cpu = load(cls, path, "cpu")
        assert cpu is not None
        rec: dict[str, Any] = {"path": str(path), "sessions": [info_cuda, info_auto, info_cpu]}
        ok &= info_cuda.get("provider") == CUDA and info_auto.get("provider") == CUDA
        print(f"{kind}: cuda -> {info_cuda}\n{kind}: auto -> {info_auto}\n{kind}: cpu  -> {info_cpu}", flush=True)
        if cuda is not None:
            rec["placement_cuda"] = placement(path, [CUDA, CPU], X_real[:64])
            print(f"{kind}: node placement in a [CUDA, CPU] session: "
                  + ", ".join(f"{n['op']}->{n['provider']}" for n in rec["placement_cuda"]), flush=True)
            rec["agreement"] = agreement(kind, cpu, cuda, X_real)
            print(f"{kind}: CUDA vs CPU: {rec['agreement']}", flush=True)
        doc["models"][kind] = rec

        runs: list[tuple[str, OnnxModel]] = []
        for t in cpu_threads:
            runs.append((f"CPU x{t}", cpu if t == 1 else cls(path, provider="cpu", intra_op_num_threads=t)))
        if cuda is not None:
            runs.append(("CUDA", cuda))
        for label, m in runs:
            fn = m.score if isinstance(m, OnnxScorer) else m.assign  # type: ignore[attr-defined]
            for batch in batches:
                r = {"model": kind, "run": label, "provider": m.provider, **measure(fn, X, batch, args.seconds)}
                doc["results"].append(r)
                print(f"{kind:10} {label:8} batch {batch:6d}: {r['rows_per_s']:>14,.0f} rows/s   "
                      f"call p50 {r['call_p50_us']:9.1f} us  p99 {r['call_p99_us']:9.1f} us", flush=True)
    doc["cuda_path_ok"] = ok
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    print(f"cuda_path_ok={ok}; wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
