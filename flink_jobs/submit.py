"""Submit the profile job to the Flink cluster with the `flink` CLI, and manage it over REST.

    python -m flink_jobs.submit [--replace] [config flags]   # prints the JobID

Config flags are passed through to the job, so the job runs with exactly this configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

from flink_jobs.config import ROOT, Config

JOB_MODULE = ROOT / "flink_jobs" / "profile_job.py"


def flink_home() -> Path:
    import pyflink  # the runtime shipped in the apache-flink wheel

    return Path(pyflink.__file__).parent


def flink_env(cfg: Config) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FLINK_HOME=str(flink_home()),
        FLINK_CONF_DIR=str(cfg.run_path / "flink" / "conf"),
        FLINK_LOG_DIR=str(cfg.run_path / "flink" / "log"),
    )
    return env


def config_flags(cfg: Config) -> list[str]:
    """Every config value as a CLI flag, so the job sees the submitter's effective config."""
    out: list[str] = []
    for f in fields(Config):
        out += ["--" + f.name.replace("_", "-"), str(getattr(cfg, f.name))]
    return out


def rest(cfg: Config, path: str, method: str = "GET", body: Optional[dict] = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(cfg.flink_rest_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


def jobs(cfg: Config) -> list[dict[str, Any]]:
    return rest(cfg, "/jobs/overview")["jobs"]


def running_jobs(cfg: Config, name: str = "profile-engine") -> list[str]:
    return [j["jid"] for j in jobs(cfg) if j["name"] == name and j["state"] in ("RUNNING", "CREATED", "RESTARTING")]


def job_metrics(cfg: Config, job_id: str, group: str = "profile_engine") -> dict[str, float]:
    """The job's own metrics (``group``) through the REST API, as the web UI shows them: summed over
    subtasks for counters; histograms as <name>_<stat> (mean, p50, p99, ...) of subtask 0."""
    out: dict[str, float] = {}
    for v in rest(cfg, f"/jobs/{job_id}")["vertices"]:
        base = f"/jobs/{job_id}/vertices/{v['id']}"
        # vertex metric ids are "<subtask>.<operator>.<group>.<name>"; the aggregate takes them without
        # the subtask index
        ids = sorted({m["id"].split(".", 1)[1] for m in rest(cfg, base + "/metrics") if f".{group}." in m["id"]})
        if not ids:
            continue
        for m in rest(cfg, base + "/subtasks/metrics?get=" + ",".join(ids)):
            name = m["id"].split(f".{group}.", 1)[1]
            out[name] = out.get(name, 0.0) + float(m["sum"])
    return out


def cancel(cfg: Config, job_id: str, timeout_s: float = 60.0) -> None:
    rest(cfg, f"/jobs/{job_id}?mode=cancel", method="PATCH")
    wait_state(cfg, job_id, ("CANCELED", "FAILED", "FINISHED"), timeout_s)


def job_state(cfg: Config, job_id: str) -> str:
    return rest(cfg, f"/jobs/{job_id}")["state"]


def wait_state(cfg: Config, job_id: str, states: Sequence[str], timeout_s: float = 120.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        state = job_state(cfg, job_id)
        if state in states:
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} is {state}, not in {states} after {timeout_s:.0f} s")
        time.sleep(0.5)


def wait_tasks_running(cfg: Config, job_id: str, timeout_s: float = 120.0) -> None:
    """Until every vertex of the job runs (sources are reading)."""
    deadline = time.monotonic() + timeout_s
    while True:
        detail = rest(cfg, f"/jobs/{job_id}")
        if detail["state"] in ("FAILED", "CANCELED", "FINISHED"):
            raise RuntimeError(f"job {job_id} ended: {detail['state']}: {exceptions(cfg, job_id)}")
        if detail["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in detail["vertices"]):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} not fully running after {timeout_s:.0f} s: {exceptions(cfg, job_id)}")
        time.sleep(0.5)


def exceptions(cfg: Config, job_id: str) -> str:
    try:
        entries = rest(cfg, f"/jobs/{job_id}/exceptions").get("exceptionHistory", {}).get("entries", [])
        return entries[0]["stacktrace"][:3000] if entries else "(no exception)"
    except Exception as exc:  # the report is best effort
        return f"(no exception report: {exc})"


def submit(
    cfg: Config,
    replace: bool = False,
    timeout_s: float = 300.0,
    savepoint: Optional[str] = None,
    module: Path = JOB_MODULE,
    wait_running: bool = True,
) -> str:
    """Submit detached, restored from ``savepoint`` if given (never with --allowNonRestoredState:
    state the new job cannot place must fail the submission); returns the JobID once all tasks run
    (or at once with ``wait_running=False``)."""
    if replace:
        for jid in running_jobs(cfg):
            cancel(cfg, jid)
    restore = ["-s", savepoint] if savepoint else []
    cmd = [str(flink_home() / "bin" / "flink"), "run", "-d", *restore, "-py", str(module), *config_flags(cfg)]
    proc = subprocess.run(cmd, env=flink_env(cfg), cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    out = proc.stdout + proc.stderr
    m = re.search(r"JobID ([0-9a-f]{32})", out)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"flink run failed (exit {proc.returncode}):\n{out[-4000:]}")
    job_id = m.group(1)
    if wait_running:
        wait_tasks_running(cfg, job_id)
    return job_id


def stop_with_savepoint(cfg: Config, job_id: str, timeout_s: float = 180.0) -> str:
    """Stop the job with a canonical savepoint (REST; PyFlink's JobClient.stop_with_savepoint is
    broken); returns the savepoint's path."""
    target = (cfg.run_path / "flink" / "savepoints").as_uri()
    trigger = rest(cfg, f"/jobs/{job_id}/stop", method="POST",
                   body={"targetDirectory": target, "drain": False, "formatType": "CANONICAL"})["request-id"]
    deadline = time.monotonic() + timeout_s
    while True:
        status = rest(cfg, f"/jobs/{job_id}/savepoints/{trigger}")
        if status["status"]["id"] == "COMPLETED":
            op = status["operation"]
            if "failure-cause" in op:
                raise RuntimeError(f"stop with savepoint failed: {op['failure-cause'].get('stack-trace', op)[:3000]}")
            wait_state(cfg, job_id, ("FINISHED", "CANCELED", "FAILED"), timeout_s)
            return op["location"]
        if time.monotonic() > deadline:
            raise TimeoutError(f"savepoint of {job_id} not done after {timeout_s:.0f} s")
        time.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replace", action="store_true", help="cancel running profile-engine jobs first")
    Config.add_arguments(parser)
    args = parser.parse_args(argv)
    cfg = Config.from_args(args)
    job_id = submit(cfg, replace=args.replace)
    print(job_id)
    print(f"job {job_id} running: {cfg.flink_rest_url}/#/job/running/{job_id}/overview", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
