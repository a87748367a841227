"""A clone of the repository alone must be able to run the demo and the tests: the data lives in
data/, nothing refers to a sibling folder, and the bundled files are the ones SOURCE.md describes."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flink_jobs.config import ROOT, Config

DATASETS = {
    "taobao_userbehavior": ["UserBehavior_head_84k.csv", "UserBehavior_timeslice_2h.csv"],
    "online_retail_uci": ["online_retail.csv.gz"],
}


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True)
    return out.stdout.splitlines()


def test_default_data_dir_is_inside_the_repository() -> None:
    data = Config().path(Config().data_dir)
    assert data.is_relative_to(ROOT), f"default data_dir {data} is outside the repository {ROOT}"
    for folder, files in DATASETS.items():
        assert (data / folder / "SOURCE.md").is_file(), f"{folder}/SOURCE.md missing"
        for name in files:
            assert (data / folder / name).is_file(), f"{folder}/{name} missing"


@pytest.mark.parametrize("folder", sorted(DATASETS))
def test_bundled_files_match_the_checksums_in_source_md(folder: str) -> None:
    base = Config().path(Config().data_dir) / folder
    text = (base / "SOURCE.md").read_text(encoding="utf-8")
    for name in DATASETS[folder]:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}`"))
        expected = re.findall(r"\b[0-9a-f]{64}\b", row)[-1]
        assert hashlib.sha256((base / name).read_bytes()).hexdigest() == expected, name


def test_nothing_tracked_refers_to_a_sibling_shared_folder() -> None:
    offenders = []
    for rel in _tracked_files():
        path = ROOT / rel
        if rel.startswith("data/") or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if "../shared" in text and path.resolve() != Path(__file__).resolve():
            offenders.append(rel)
    assert not offenders, f"files referring to ../shared: {offenders}"


def test_a_lone_clone_loads_every_dataset(tmp_path: Path) -> None:
    """Clone HEAD into a folder with no siblings and load the demo's and the trainer's data there,
    with the clone's own default config (the working tree's data must be committed to pass)."""
    clone = tmp_path / "lone" / "repo"
    clone.parent.mkdir()
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    assert [p.name for p in clone.parent.iterdir()] == ["repo"]
    code = (
        "from flink_jobs.config import Config\n"
        "from tools.replay import load\n"
        "cfg = Config()\n"
        f"assert str(cfg.taobao_dir).startswith({str(clone)!r}), cfg.taobao_dir\n"
        "print(len(load(cfg, 'taobao-head')), len(load(cfg, 'taobao-slice')), len(load(cfg, 'online-retail')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=clone, check=True, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(clone)})
    head, slice_, retail = map(int, out.stdout.split())
    assert head == 84_475
    assert slice_ == 110_300
    assert retail > 390_000
