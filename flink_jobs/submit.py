"""Run the profile job on the Flink cluster: submit it with the `flink` CLI, manage it over REST.

    python -m flink_jobs.submit start [--replace] [--from-savepoint PATH]   # also: no command = start
    python -m flink_jobs.submit stop [--savepoint] [--job-id ID]
    python -m flink_jobs.submit rescale N [--job-id ID]                    # savepoint, restart at N
    python -m flink_jobs.submit status [--job-id ID]                       # state, counters, last exception

Each command prints the job id, the savepoint path (stop --savepoint, rescale) and the web UI link as
`key: value` lines on stdout. Config flags are passed through to the job, so the job runs with exactly
this configuration: give `start --from-savepoint` and `rescale` the settings the job ran with
(flags, PE_* environment or --config file), changing only what may change across a savepoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

from flink_jobs.config import JOB_GROUPS, ROOT, Config, ConfigError

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
    # every job module run by `flink run -py` (tests/integration/jobs/ too) imports this checkout's
    # packages, not those of whichever checkout a shared venv's editable install names
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
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


def cluster_slots(cfg: Config) -> int:
    """Task slots of all registered TaskManagers."""
    return int(rest(cfg, "/overview")["slots-total"])


def job_parallelism(cfg: Config, job_id: str) -> int:
    return max(v["parallelism"] for v in rest(cfg, f"/jobs/{job_id}")["vertices"])


class OperationError(RuntimeError):
    """An operation was refused before it changed anything (no job, several jobs, too few slots)."""


def the_job(cfg: Config, job_id: Optional[str]) -> str:
    """``job_id``, or the one running profile-engine job."""
    if job_id:
        return job_id
    found = running_jobs(cfg)
    if len(found) != 1:
        what = f"{len(found)} profile-engine jobs run ({', '.join(found)})" if found else "no profile-engine job runs"
        raise OperationError(f"{what} on {cfg.flink_rest_url}; name one with --job-id")
    return found[0]


def rescale(cfg: Config, parallelism: int, job_id: Optional[str] = None) -> dict[str, str]:
    """Stop the job with a savepoint and start it again from there at ``parallelism`` (keyed state is
    redistributed by key group). Refuses before stopping anything when the cluster has too few slots
    or ``parallelism`` is not valid for ``cfg`` (e.g. above max_parallelism). If the restart fails,
    the savepoint stays and the error says how to start from it."""
    target = dataclasses.replace(cfg, parallelism=parallelism)  # validates: ConfigError before any change
    jid = the_job(cfg, job_id)
    slots = cluster_slots(cfg)
    if parallelism > slots:
        raise OperationError(
            f"parallelism {parallelism} needs {parallelism} task slots, the cluster has {slots}: add TaskManagers "
            "(local stack: PE_TASKMANAGER_SLOTS, then restart Flink) first"
        )
    before = job_parallelism(cfg, jid)
    savepoint = stop_with_savepoint(cfg, jid)
    try:
        new = submit(target, savepoint=savepoint)
    except Exception as exc:
        raise RuntimeError(
            f"job {jid} stopped with savepoint {savepoint}, but the restart at parallelism {parallelism} failed; "
            f"start it with: python -m flink_jobs.submit start --from-savepoint {savepoint}\n{exc}"
        ) from exc
    return {"stopped job": jid, "savepoint": savepoint, "job id": new,
            "parallelism": f"{before} -> {job_parallelism(cfg, new)}", "web UI": cfg.job_url(new)}


def _print(result: dict[str, str]) -> None:
    width = max(len(k) for k in result) + 1
    for key, value in result.items():
        print(f"{key + ':':{width}} {value}")


def status(cfg: Config, job_id: Optional[str] = None) -> dict[str, str]:
    """The job's state, parallelism, link, its own counters (group profile_engine) and, when it has
    failed or restarted, the first line of the latest exception."""
    jid = the_job(cfg, job_id)
    state = job_state(cfg, jid)
    running = state in ("RUNNING", "CREATED", "RESTARTING", "INITIALIZING")
    out = {"job id": jid, "state": state, "parallelism": str(job_parallelism(cfg, jid)),
           "web UI": cfg.job_url(jid, running=running)}
    if running:
        out.update({f"metric {k}": f"{v:g}" for k, v in sorted(job_metrics(cfg, jid).items())})
    entries = rest(cfg, f"/jobs/{jid}/exceptions").get("exceptionHistory", {}).get("entries", [])
    if entries:
        out["last exception"] = str(entries[0]["stacktrace"]).split("\n")[0]  # the full one: the web UI
    return out


COMMANDS = ("start", "stop", "rescale", "status")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `python -m flink_jobs.submit [--replace] [flags]` (Makefile, older runbooks) means start
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "start")
    parser = argparse.ArgumentParser(
        prog="python -m flink_jobs.submit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{start,stop,rescale,status}")
    start_p = commands.add_parser("start", help="submit the job (detached) and wait until all its tasks run")
    start_p.add_argument("--replace", action="store_true",
                         help="cancel running profile-engine jobs first (no savepoint)")
    start_p.add_argument("--from-savepoint", metavar="PATH", default=None,
                         help="restore this savepoint or retained checkpoint (never with allowNonRestoredState)")
    stop_p = commands.add_parser("stop", help="stop the job; with --savepoint its state is kept for a later start")
    stop_p.add_argument("--savepoint", action="store_true",
                        help="stop with a canonical savepoint (else cancel: the last retained checkpoint stays)")
    stop_p.add_argument("--job-id", default=None, help="default: the one running profile-engine job")
    rescale_p = commands.add_parser("rescale", help="stop with a savepoint, start from it at parallelism N")
    rescale_p.add_argument("target_parallelism", type=int, metavar="N",
                           help="the new parallelism (wins over --parallelism)")
    rescale_p.add_argument("--job-id", default=None, help="default: the one running profile-engine job")
    status_p = commands.add_parser("status", help="state, parallelism, the job's counters, the latest exception")
    status_p.add_argument("--job-id", default=None, help="default: the one running profile-engine job")
    # stop needs the cluster and where savepoints go; start and rescale submit, so they take all the job's settings
    groups = {"start": JOB_GROUPS, "stop": ("flink", "paths"), "rescale": JOB_GROUPS, "status": ("flink",)}
    sub = {"start": start_p, "stop": stop_p, "rescale": rescale_p, "status": status_p}
    for name, p in sub.items():
        p.usage = p.format_usage().strip().removeprefix("usage: ") + " [--config FILE] [config options]"
        Config.add_arguments(p, groups[name])
    args = parser.parse_args(argv)
    sub = sub[args.command]
    try:
        cfg = Config.from_args(args)
    except ConfigError as exc:
        sub.error(str(exc))
    try:
        if args.command == "start":
            if not args.replace and running_jobs(cfg):
                raise OperationError(
                    f"a profile-engine job already runs ({', '.join(running_jobs(cfg))}): stop it first "
                    "(stop --savepoint keeps its state) or start with --replace"
                )
            job_id = submit(cfg, replace=args.replace, savepoint=args.from_savepoint)
            result = {"job id": job_id}
            if args.from_savepoint:
                result["savepoint"] = args.from_savepoint
            result.update({"parallelism": str(job_parallelism(cfg, job_id)), "web UI": cfg.job_url(job_id)})
        elif args.command == "stop":
            job_id = the_job(cfg, args.job_id)
            if args.savepoint:
                result = {"job id": job_id, "savepoint": stop_with_savepoint(cfg, job_id)}
            else:
                cancel(cfg, job_id)
                result = {"job id": job_id, "savepoint": "none (cancelled; the last checkpoint is retained under "
                          f"{cfg.run_path / 'flink' / 'checkpoints' / job_id})"}
            result.update({"state": job_state(cfg, job_id), "web UI": cfg.job_url(job_id, running=False)})
        elif args.command == "rescale":
            result = rescale(cfg, args.target_parallelism, args.job_id)
        else:
            result = status(cfg, args.job_id)
    except (OperationError, ConfigError) as exc:
        print(f"{parser.prog} {args.command}: {exc}", file=sys.stderr)
        return 2
    except urllib.error.URLError as exc:
        print(f"{parser.prog} {args.command}: no Flink REST API at {cfg.flink_rest_url} ({exc.reason}); "
              "is the cluster up (make up)?", file=sys.stderr)
        return 1
    _print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
