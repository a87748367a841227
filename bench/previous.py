"""The landed version before issue 12, rebuilt from its commit and run on its own Flink cluster.

The TaskManager imports the job's Python package from the venv it was started with (deploy/flink.sh
puts that venv's site-packages, where the checkout is an editable install, on its PYTHONPATH), so
the previous version needs its own checkout, venv, jars and cluster. The checkout is a git worktree
under the run dir (git-ignored: never committed), reused by later runs. Its cluster uses the same
Kafka and Cassandra and, by default, the same REST address as this checkout's cluster: the two
clusters run one at a time, so both get the same machine.
"""

from __future__ import annotations

import dataclasses
import filecmp
import os
import re
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Optional

from bench.systems import FlinkSystem
from flink_jobs.config import ROOT, Config

COMMIT = "c3a087c"  # "the landed version before this issue"
# left out of the previous version's environment: they describe this checkout
_OWN_ENV = ("FLINK_HOME", "FLINK_CONF_DIR", "FLINK_LOG_DIR", "FLINK_LIB_DIR", "VIRTUAL_ENV")


class Previous:
    def __init__(self, base: Config, commit: str = COMMIT, rest_host: Optional[str] = None) -> None:
        self.base = base
        self.commit = commit
        self.rest_host = rest_host or base.flink_rest_host
        self.root = base.run_path / "bench-prev"
        self.run_path = self.root / ".run"  # its own run dir: Flink config, logs, checkpoints, jars
        self.python = self.root / ".venv" / "bin" / "python"
        self.model_dir = ROOT / "artifacts"

    @property
    def conf_dir(self) -> Path:
        return self.run_path / "flink" / "conf"

    def env(self, cfg: Optional[Config] = None) -> dict[str, str]:
        """The environment of its commands: the run's settings as PE_* variables (fields it does not
        know are ignored by its config), its own run dir, the shared data and models. Nothing of this
        checkout's venv or Flink leaks in (lib.sh would otherwise take PE_VENV_PYTHON, PE_RUN_PATH)."""
        cfg = cfg or self.base
        own_bin = str(ROOT / ".venv" / "bin")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PE_") and k not in _OWN_ENV}
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != own_bin)
        for f in fields(Config):
            value = getattr(cfg, f.name)
            # a setting that became a float since (value_mid_spend) is still an int to it: "100", not "100.0"
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            env[Config.env_var(f.name)] = str(value)
        env.update(
            PE_RUN_DIR=str(self.run_path), PE_DATA_DIR=str(cfg.path(cfg.data_dir)),
            PE_MODEL_PATH=str(self.model_dir / "propensity.onnx"),
            PE_SEGMENTS_PATH=str(self.model_dir / "segments.onnx"),
            PE_FLINK_REST_HOST=self.rest_host,
            PE_PIPELINE="micro-batch", PE_STATE_BUCKETS="4",  # its defaults, named for the record
            PE_TASKMANAGER_SLOTS="2",  # its cluster: one TaskManager with two slots
        )
        return env

    def _run(self, *cmd: str, cfg: Optional[Config] = None, capture: bool = False) -> str:
        proc = subprocess.run(cmd, cwd=self.root, env=self.env(cfg), text=True,
                              capture_output=capture, check=False)
        if proc.returncode != 0:
            detail = (proc.stdout or "")[-3000:] + (proc.stderr or "")[-3000:] if capture else ""
            raise RuntimeError(f"previous version: {' '.join(cmd)} failed (exit {proc.returncode}) {detail}")
        return proc.stdout or ""

    def prepare(self) -> None:
        """Worktree at the commit (reused when present), its venv and jars, and a model it can load:
        this checkout's when the feature contract is unchanged, else one trained in its worktree."""
        want = subprocess.run(["git", "-C", str(ROOT), "rev-parse", self.commit + "^{commit}"],
                              capture_output=True, text=True, check=True).stdout.strip()
        if not (self.root / ".git").exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(self.root), want], check=True)
        have = subprocess.run(["git", "-C", str(self.root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        if have != want:
            raise RuntimeError(f"{self.root} is at {have[:12]}, not {self.commit}: remove it (git worktree remove)")
        print(f"previous version {self.commit}: make venv jars in {self.root}", flush=True)
        self._run("make", "venv", "jars")
        same = filecmp.cmp(ROOT / "schemas" / "features.json", self.root / "schemas" / "features.json", shallow=False)
        if not same:  # its features differ: it needs a model of its own (kept short)
            self.model_dir = self.root / "artifacts"
            self._run(str(self.python), "-m", "model_export.train", "--if-missing", "--no-online-retail",
                      "--out", str(self.model_dir / "propensity.onnx"))

    def cluster(self, action: str) -> None:
        self._run("bash", "deploy/flink.sh", action)

    def submit(self, cfg: Config) -> str:
        out = self._run(str(self.python), "-m", "flink_jobs.submit", cfg=cfg, capture=True)
        m = re.search(r"\b([0-9a-f]{32})\b", out)
        if not m:
            raise RuntimeError(f"previous version: no JobID in the submit output: {out[-2000:]}")
        return m.group(1)

    def system(self) -> FlinkSystem:
        return FlinkSystem(f"previous ({self.commit})", self.conf_dir, self.submit,
                           rest=lambda cfg: dataclasses.replace(cfg, flink_rest_host=self.rest_host))
