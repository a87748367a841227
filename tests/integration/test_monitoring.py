"""Monitoring seen working: a real Prometheus (Debian's package; deploy/prometheus.sh installs it when
missing) scrapes the Flink reporters of the running stack while the profile job runs. Every metric name
and every selector of deploy/monitoring/alerts.yml and of the Grafana dashboard must exist in that scrape,
each alert rule must evaluate without error, and promtool must accept the rules and the rendered config.
The names are read from the files, so a renamed metric or a changed label fails here."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from flink_jobs.config import ROOT, Config
from tools import monitoring, replay
from tools.kafka_io import collect

from .conftest import isolated, job

N_EVENTS = 300


def prometheus_sh(*args: str, timeout_s: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "deploy" / "prometheus.sh"), *args], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture(scope="module")
def cfg() -> Iterator[Config]:
    with isolated() as c:
        yield c


@pytest.fixture(scope="module")
def running(cfg: Config) -> Iterator[str]:
    """The profile job with events through it, so its operators have registered and moved their metrics."""
    with job(cfg) as job_id:
        replay.publish(cfg, replay.load(cfg, "taobao-head", N_EVENTS), progress=False)
        assert len(collect(cfg, cfg.topic_predictions, N_EVENTS, timeout_s=300)) >= N_EVENTS
        yield job_id


@pytest.fixture(scope="module")
def prom(running: str) -> Iterator[monitoring.Prometheus]:
    """The local Prometheus, started (and installed, on a fresh machine) for this module unless it ran."""
    was_running = prometheus_sh("status").returncode == 0
    started = prometheus_sh("start")
    assert started.returncode == 0, started.stderr[-3000:]
    base = Config.from_env()
    yield monitoring.Prometheus(f"http://{base.flink_rest_host}:{base.prometheus_port}")
    if not was_running:
        prometheus_sh("stop")


def eventually(check: Callable[[], list[Any]], timeout_s: float = 120.0) -> list[Any]:
    """``check()`` until it returns no problems or the time is up; the last problems."""
    deadline = time.monotonic() + timeout_s
    while True:
        problems = check()
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(3)


def test_promtool_accepts_the_rules_and_the_rendered_config(prom):
    proc = prometheus_sh("check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_prometheus_scrapes_the_jobmanager_and_the_taskmanager(prom, cfg):
    def down() -> list[str]:
        health = {t["labels"]["instance"]: t["health"] for t in prom.targets()}
        wanted = monitoring.local_targets(cfg)[:2]  # the JobManager, the first TaskManager
        return [f"{t}: {health.get(t, 'not a target')}" for t in wanted if health.get(t) != "up"]

    assert eventually(down) == []


def test_every_metric_the_alerts_use_is_in_the_scrape(prom):
    exprs = monitoring.alert_exprs()
    assert len(exprs) >= 10
    assert eventually(lambda: monitoring.problems(prom, exprs)) == []
    # the one exemption is exported outside the local stack, never by Flink
    assert all(not name.startswith("flink_") for name in monitoring.EXTERNAL)


def test_the_check_finds_a_misspelled_name_and_an_unsanitized_label(prom):
    """Flink's reporter writes the job name profile-engine as profile_engine: a rule with the name as
    written in the job would match nothing. The check must say so (the rules had exactly this bug)."""
    found = monitoring.problems(prom, [
        ("misspelled", 'flink_jobmanager_job_numRestart{job_name="profile_engine"}'),
        ("raw label", 'flink_jobmanager_job_numRestarts{job_name="profile-engine"}'),
        ("syntax", "sum(rate(flink_jobmanager_job_numRestarts[5m])"),
    ])
    assert len(found) == 3, found
    assert "not in the scrape" in found[0] and "matches no series" in found[1] and "refuses" in found[2]


def test_every_alert_rule_evaluates(prom):
    names = {n for n, _ in monitoring.alert_exprs()}

    def unhealthy() -> list[str]:
        rules = prom.rules()
        missing = names - {r["name"] for r in rules}
        return [f"{m}: not loaded" for m in missing] + [
            f"{r['name']}: {r.get('health')} {r.get('lastError', '')}" for r in rules if r.get("health") != "ok"
        ]

    assert eventually(unhealthy) == []


def test_the_dashboard_queries_only_scraped_names(prom):
    exprs = monitoring.dashboard_exprs()
    assert len(exprs) >= 15
    assert eventually(lambda: monitoring.problems(prom, exprs)) == []
    # and it shows the job's work, not just series that exist
    applied = prom.query(
        'sum(flink_taskmanager_job_task_operator_profile_engine_events_applied{job_name="profile_engine"})'
    )
    assert applied and float(applied[0]["value"][1]) >= N_EVENTS


def test_the_local_config_is_the_shipped_one(prom, cfg):
    rendered = yaml.safe_load((cfg.run_path / "prometheus" / "prometheus.yml").read_text())
    assert rendered == monitoring.render_prometheus(Config.from_env())
    assert rendered["rule_files"] == [str(monitoring.ALERTS)]
