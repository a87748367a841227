#!/usr/bin/env bash
# CUDA path of udfs/scorer.py on a GPU machine with Python 3.12 + CUDA 13 libraries (the torch venv's
# nvidia-* wheels) but no onnxruntime-gpu and no network. From the repo root, after
# `python -m bench.gpu_pack` (fills .git-ignored .whl/) and with `artifacts` and `.whl` carried:
#     bash bench/gpu_check.sh [gpu_check.py flags]     -> $OUT/gpu_check.json, $OUT/gpu_check.log
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
SITE=${SITE:-/tmp/site}
PY=${PY:-python3}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
echo "== $(date -u +%FT%TZ) $(uname -m) $($PY -V 2>&1) $(command -v $PY)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
if [ ! -f "$SITE/.unpacked" ]; then
    mkdir -p "$SITE"
    $PY - "$SITE" .whl/*.tar.xz <<'PYEOF' || exit 1
import lzma, sys, tarfile
site = sys.argv[1]
for t in sys.argv[2:]:
    with tarfile.open(t) as tf:
        tf.extractall(site, filter="fully_trusted")
with lzma.open(".whl/rows.npy.xz") as src, open(f"{site}/rows.npy", "wb") as dst:
    dst.write(src.read())
print("unpacked", sys.argv[2:], "into", site)
PYEOF
    touch "$SITE/.unpacked"
fi
# CUDA 13 / cuDNN 9 libraries: the nvidia-* wheels next to the interpreter, then a system CUDA
NV=$($PY -c "import glob, os, sysconfig
print(':'.join(sorted({os.path.dirname(p) for p in glob.glob(os.path.join(sysconfig.get_paths()['purelib'], 'nvidia', '**', 'lib*.so*'), recursive=True)})))")
export LD_LIBRARY_PATH="${NV:+$NV:}/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
ldd "$SITE/onnxruntime/capi/libonnxruntime_providers_cuda.so" | grep -E "not found|cublas|cudart|curand|libcuda\." || true
$PY bench/gpu_check.py --rows "$SITE/rows.npy" --out "$OUT/gpu_check.json" "$@"
rc=$?
echo "== gpu_check.py exit $rc, $(date -u +%FT%TZ)"
exit $rc
