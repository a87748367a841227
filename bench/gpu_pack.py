"""Pack what ``bench/gpu_check.sh`` needs on a GPU machine that has Python 3.12 and CUDA 13 but no
onnxruntime-gpu and no network, into ``.whl/`` (git-ignored through ``.git/info/exclude``):

- ``ort-gpu-<version>-sm90.tar.xz``: the ``onnxruntime`` package of the onnxruntime-gpu wheel (PyPI,
  built for CUDA 13 since 1.31), cut to fit a 64 MiB transfer: the CUDA provider's fat binary keeps only
  the entries for one GPU architecture (``--arch 90``: H100/H200, whose entries are all sm_90a), the rest
  of each fat-binary container is zeroed (it then compresses to nothing); ``libonnxruntime.so`` (C API,
  not loaded by the Python module), the TensorRT provider and the ``transformers`` / ``quantization`` /
  ``tools`` / ``datasets`` Python helpers are left out. 250 MB wheel -> about 60 MB.
- ``fastavro-<version>-cp312.tar.xz``: ``udfs.profile`` imports fastavro.
- ``rows.npy.xz``: real feature rows (the Taobao head file through the job's feature code).

    python -m bench.gpu_pack [--ort 1.31.1] [--arch 90] [--cache /tmp/gpu_pack]

Needs pip, network to PyPI and the project's venv (for the feature rows). ``cuobjdump -lelf`` on the cut
library lists the kept cubins (all of them, byte for byte, were checked against the original).
"""

from __future__ import annotations

import argparse
import io
import lzma
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FATBIN_MAGIC = 0xBA55ED50
LIMIT = 64 * 2**20
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
DROP_DIRS = ("transformers", "quantization", "tools", "datasets")


def elf_section(data: bytes, name: str) -> tuple[int, int]:
    """File offset and size of the ELF64 section ``name``."""
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i: int) -> tuple[int, ...]:
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)

    strtab = header(shstrndx)[4]
    for i in range(shnum):
        h = header(i)
        start = strtab + h[0]
        if data[start: data.index(b"\0", start)].decode() == name:
            return h[4], h[5]
    raise KeyError(name)


def fatbin_containers(data: bytes, off: int, size: int):
    """Yield ``(pos, header_size, fat_size, entries)`` for each fat-binary container in the section;
    an entry is ``(pos, kind, header_size, size, arch, flags)`` (kind 1 = PTX, 2 = cubin)."""
    pos, end = off, off + size
    while pos < end:
        magic, _version, hsz, fsz = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # alignment padding between containers
            continue
        entries = []
        p = pos + hsz
        while p < pos + hsz + fsz:
            kind, _unknown, ehsz, esz = struct.unpack_from("<HHIQ", data, p)
            (arch,) = struct.unpack_from("<I", data, p + 28)
            (flags,) = struct.unpack_from("<Q", data, p + 40)
            entries.append((p, kind, ehsz, esz, arch, flags))
            p += ehsz + esz
        if p != pos + hsz + fsz:
            raise ValueError(f"fat binary container at {pos:#x}: entries overrun its size")
        yield pos, hsz, fsz, entries
        pos += hsz + fsz


def keep_arch(data: bytes, arch: int) -> tuple[bytes, dict[str, int]]:
    """``data`` with every fat-binary container cut to its entries for ``arch`` (cubins for that SM,
    PTX at or below it), moved to the container's front, its size field lowered and the freed tail
    zeroed. Containers without such an entry are left as they are (they have no code for this GPU
    either way). Nothing outside ``.nv_fatbin`` changes, so the ELF layout stays valid."""
    out = bytearray(data)
    off, size = elf_section(data, ".nv_fatbin")
    stats = {"containers": 0, "untouched": 0, "kept_bytes": 0, "zeroed_bytes": 0}
    for pos, hsz, fsz, entries in fatbin_containers(data, off, size):
        stats["containers"] += 1
        sel = [e for e in entries if (e[1] == 2 and e[4] == arch) or (e[1] == 1 and e[4] <= arch)]
        if not sel:
            stats["untouched"] += 1
            continue
        w = pos + hsz
        for p, _kind, ehsz, esz, _arch, _flags in sel:
            out[w: w + ehsz + esz] = data[p: p + ehsz + esz]
            w += ehsz + esz
        end = pos + hsz + fsz
        out[w:end] = bytes(end - w)
        struct.pack_into("<Q", out, pos + 8, w - pos - hsz)
        stats["kept_bytes"] += w - pos - hsz
        stats["zeroed_bytes"] += end - w
    return bytes(out), stats


def download(name: str, version: str, dest: Path) -> Path:
    found = sorted(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if not found:
        plat = [a for p in PLATFORMS for a in ("--platform", p)]
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", *plat, "-d", str(dest),
                        f"{name}=={version}"], check=True)
        found = sorted(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    return found[0]


def write_xz(members: dict[str, bytes], path: Path) -> None:
    """A tar.xz of ``members`` (name -> bytes), strongest preset, 256 MiB dictionary."""
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 256 * 2**20}]
    with lzma.open(path, "wb", format=lzma.FORMAT_XZ, filters=filters) as xz, \
            tarfile.open(fileobj=xz, mode="w") as tar:
        for name, blob in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(blob), 0o755 if name.endswith(".so") or ".so." in name else 0o644
            tar.addfile(info, io.BytesIO(blob))


def pack_ort(wheel: Path, arch: int, out: Path) -> None:
    members: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.endswith("/"):  # directory entries: tar makes the folders of the files
                continue
            parts = name.split("/")
            if parts[0] == "onnxruntime" and len(parts) > 2 and parts[1] in DROP_DIRS:
                continue
            base = parts[-1]
            if base.startswith("libonnxruntime.so") or base == "libonnxruntime_providers_tensorrt.so":
                continue
            members[name] = zf.read(name)
    cuda = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
    members[cuda], stats = keep_arch(members[cuda], arch)
    print(f"{cuda}: {stats}", flush=True)
    write_xz(members, out)


def pack_wheel(wheel: Path, out: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        write_xz({n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ort", default="1.31.1", help="onnxruntime-gpu version (PyPI, CUDA 13 build)")
    ap.add_argument("--fastavro", default="1.13.1")
    ap.add_argument("--arch", type=int, default=90, help="SM to keep: 90 = H100/H200")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/gpu_pack"), help="where wheels are downloaded")
    ap.add_argument("--dest", type=Path, default=ROOT / ".whl")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.dest.exists():
        shutil.rmtree(args.dest)
    args.dest.mkdir(parents=True)

    pack_ort(download("onnxruntime-gpu", args.ort, args.cache), args.arch,
             args.dest / f"ort-gpu-{args.ort}-sm{args.arch}.tar.xz")
    pack_wheel(download("fastavro", args.fastavro, args.cache), args.dest / f"fastavro-{args.fastavro}-cp312.tar.xz")

    import numpy as np  # noqa: PLC0415  (the project's venv)

    from bench.bench_scorer import feature_rows  # noqa: PLC0415
    from flink_jobs.config import Config  # noqa: PLC0415

    buf = io.BytesIO()
    np.save(buf, feature_rows(Config()))
    (args.dest / "rows.npy.xz").write_bytes(lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME))

    total = 0
    for f in sorted(args.dest.iterdir()):
        total += f.stat().st_size
        print(f"{f.stat().st_size:>12,}  {f.relative_to(ROOT)}")
    print(f"{total:>12,}  total ({total / LIMIT:.0%} of the 64 MiB a device call carries, working tree not counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
