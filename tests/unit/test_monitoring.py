"""Offline checks of tools.monitoring and deploy/monitoring/ (the live ones: tests/integration/test_monitoring.py)."""

import json
import re

import pytest

from flink_jobs.config import Config
from tools import monitoring
from tools.monitoring import Selector, selectors

SELECTOR_CASES = [
    ('increase(flink_jobmanager_job_numRestarts{job_name="profile_engine"}[15m]) > 0',
     ['flink_jobmanager_job_numRestarts{job_name="profile_engine"}']),
    ('sum by (task_name) (rate(a_total{x=~"y.*", z!="}"}[5m])) / clamp_min(sum(b), 1) and on (job) c offset 5m',
     ['a_total{x=~"y.*", z!="}"}', "b", "c"]),
    ("max(m1) * 1e3 > bool 0.5 unless m2{a=\"b\"}", ["m1", 'm2{a="b"}']),
    ('histogram_quantile(0.99, sum(rate(x_bucket[$__rate_interval])) by (le))'.replace("$__rate_interval", "1m"),
     ["x_bucket"]),
]


@pytest.mark.parametrize("expr,expected", SELECTOR_CASES)
def test_selectors_of_promql(expr, expected):
    assert [s.text for s in selectors(expr)] == expected


def test_a_selector_without_a_name_is_refused():
    with pytest.raises(ValueError, match="without a metric name"):
        selectors('{job_name="x"}')


def flink_selectors() -> list[tuple[str, Selector]]:
    exprs = [(f"alert {n}", e) for n, e in monitoring.alert_exprs()]
    exprs += [(f"panel {t}", e) for t, e in monitoring.dashboard_exprs()]
    return [(where, s) for where, e in exprs for s in selectors(e) if s.name.startswith("flink_")]


def test_flink_label_values_are_written_as_the_reporter_sanitizes_them():
    """Flink's Prometheus reporter replaces [^a-zA-Z0-9:_] in label values by '_' (job profile-engine is
    job_name="profile_engine"); an exact matcher with another character can never match."""
    bad = []
    for where, sel in flink_selectors():
        for label, op, value in re.findall(r'(\w+)\s*(=|!=)\s*"([^"]*)"', sel.labels):
            if re.search(r"[^a-zA-Z0-9:_]", value):
                bad.append(f"{where}: {label}{op}{value!r}")
    assert bad == []


def test_job_selectors_are_limited_to_the_profile_job():
    unscoped = [f"{w}: {s.text}" for w, s in flink_selectors()
                if "_job_" in s.name and 'job_name="profile_engine"' not in s.labels]
    assert unscoped == []


def test_the_dashboard_is_importable_grafana_json():
    doc = json.loads(monitoring.DASHBOARD.read_text())
    panels = list(monitoring._panels(doc["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert doc["uid"] and doc["title"] and doc["schemaVersion"] >= 30
    assert any(v["type"] == "datasource" and v["name"] == "datasource" for v in doc["templating"]["list"])
    for p in panels:
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]), p["title"]
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]
            assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]
    assert len(monitoring.dashboard_exprs()) >= 15
    assert not any("$" in e for _, e in monitoring.dashboard_exprs()), "a Grafana variable is left unfilled"


def test_local_prometheus_config_follows_the_shipped_one():
    cfg = Config.from_env({"PE_FLINK_REST_HOST": "127.0.0.9", "PE_METRICS_PORT": "9449"})
    doc = monitoring.render_prometheus(cfg, "7s")
    [job] = doc["scrape_configs"]
    assert job["job_name"] == "flink-local"
    targets = job["static_configs"][0]["targets"]
    assert targets[0] == "127.0.0.9:9449" and targets[-1] == "127.0.0.9:9457" and len(targets) == 9
    assert doc["rule_files"] == [str(monitoring.ALERTS)]
    assert doc["global"]["scrape_interval"] == doc["global"]["evaluation_interval"] == "7s"


def test_flink_reporter_port_is_the_configured_one():
    template = (monitoring.ROOT / "deploy" / "conf" / "flink" / "config.yaml.template").read_text()
    assert "metrics.reporter.prom.port: ${PE_METRICS_PORT}" in template
    assert "org.apache.flink.metrics.prometheus.PrometheusReporterFactory" in template
    flink_sh = (monitoring.ROOT / "deploy" / "flink.sh").read_text()
    assert 'metrics.reporter.prom.port=$(tm_metrics_ports)' in flink_sh
