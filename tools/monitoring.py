"""The monitoring files of deploy/monitoring/ against a live Prometheus: the metric names and series the
alert rules and the Grafana dashboard query must exist in what Prometheus scraped from Flink.

    python -m tools.monitoring render-prometheus --out FILE   # the local stack's Prometheus config
    python -m tools.monitoring check [--prometheus URL]       # every alert/dashboard query vs. the live data

The local config is the shipped deploy/monitoring/prometheus.yml reduced to its `flink-local` job, with the
stack's own address and ports, so the test and `make monitor` run the file that is shipped.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flink_jobs.config import ROOT, Config, cli

MONITORING = ROOT / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yml"
PROMETHEUS = MONITORING / "prometheus.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
LOCAL_JOB = "flink-local"
# Metrics the rules use that no part of the local stack exports, with who does in production.
EXTERNAL = {"kafka_consumergroup_lag": "Strimzi Kafka Exporter (deploy/k8s/kafka), not in the local stack"}
# Grafana's built-in variables, replaced by what they would be on a short dashboard range.
GRAFANA_VARS = {"$__rate_interval": "1m", "${__rate_interval}": "1m", "$__interval": "30s", "$__range": "1h"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
            "offset", "inf", "nan"}
_LABELS = r'\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\}'
_TOKEN = re.compile(
    rf'"(?:[^"\\]|\\.)*"|(?<![A-Za-z0-9_:.])(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)\s*(?P<labels>{_LABELS})?'
    rf"|(?P<only>{_LABELS})"
)


@dataclass(frozen=True)
class Selector:
    name: str
    labels: str  # "{...}" or ""

    @property
    def text(self) -> str:
        return self.name + self.labels


def selectors(expr: str) -> list[Selector]:
    """The vector selectors of a PromQL expression (metric name + label matchers), in order."""
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    out: list[Selector] = []
    for m in _TOKEN.finditer(expr):
        name = m.group("name")
        if m.group("only"):
            raise ValueError(f"selector without a metric name: {m.group('only')} in {expr!r}")
        if not name or name in KEYWORDS:
            continue
        if not m.group("labels") and expr[m.end():].lstrip().startswith("("):
            continue  # a function call
        out.append(Selector(name, m.group("labels") or ""))
    return out


def metric_names(expr: str) -> set[str]:
    return {s.name for s in selectors(expr)}


def alert_exprs(path: Path = ALERTS) -> list[tuple[str, str]]:
    """(rule name, expression) of every rule of a Prometheus rule file."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [(r.get("alert") or r.get("record"), r["expr"]) for g in doc["groups"] for r in g["rules"]]


def _panels(panels: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))  # collapsed rows hold their panels


def dashboard_exprs(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables filled in) of every query of a dashboard."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for panel in _panels(doc.get("panels", [])):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                for var, value in GRAFANA_VARS.items():
                    expr = expr.replace(var, value)
                out.append((panel.get("title", "?"), expr))
    return out


def local_targets(cfg: Config) -> list[str]:
    """The Flink reporters of the local stack: the JobManager, then the TaskManagers' port range."""
    return [f"{cfg.flink_rest_host}:{cfg.metrics_port + i}" for i in range(9)]


def render_prometheus(cfg: Config, interval: str = "5s") -> dict[str, Any]:
    """deploy/monitoring/prometheus.yml for the local stack: its flink-local job on this stack's
    reporters, the shipped alert rules by absolute path, a short interval (a test waits for it)."""
    doc = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    jobs = [j for j in doc["scrape_configs"] if j["job_name"] == LOCAL_JOB]
    if len(jobs) != 1:
        raise ValueError(f"{PROMETHEUS} has no scrape job {LOCAL_JOB!r}")
    job = dict(jobs[0], static_configs=[{"targets": local_targets(cfg)}])
    rules = [str((PROMETHEUS.parent / f).resolve()) for f in doc.get("rule_files", [])]
    return {
        "global": {**doc.get("global", {}), "scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": rules,
        "scrape_configs": [job],
    }


class Prometheus:
    """The few HTTP API calls the checks need."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def get(self, path: str, **params: str) -> Any:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        with urllib.request.urlopen(self.url + path + query, timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.get("/api/v1/query", query=expr)["result"]

    def names(self) -> set[str]:
        return set(self.get("/api/v1/label/__name__/values"))

    def targets(self) -> list[dict[str, Any]]:
        return self.get("/api/v1/targets")["activeTargets"]

    def rules(self) -> list[dict[str, Any]]:
        return [r for g in self.get("/api/v1/rules")["groups"] for r in g["rules"]]


def problems(prom: Prometheus, exprs: Sequence[tuple[str, str]]) -> list[str]:
    """What of ``exprs`` does not hold against the scraped data: a query Prometheus refuses, a metric
    name it never scraped, a selector (name + labels) that matches no series."""
    out: list[str] = []
    names = prom.names()
    for where, expr in exprs:
        try:
            prom.query(expr)
        except Exception as exc:  # urllib's HTTPError carries Prometheus' parse error
            detail = exc.read().decode() if hasattr(exc, "read") else str(exc)
            out.append(f"{where}: Prometheus refuses the query: {detail[:300]}")
            continue
        for sel in selectors(expr):
            if sel.name in EXTERNAL:
                continue
            if sel.name not in names:
                out.append(f"{where}: metric {sel.name} is not in the scrape")
            elif not prom.query(f"count({sel.text})"):
                out.append(f"{where}: {sel.text} matches no series")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.monitoring", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render-prometheus", help="write the local stack's Prometheus config")
    render.add_argument("--out", required=True, type=Path)
    render.add_argument("--interval", default="5s", help="scrape and rule evaluation interval")
    check = commands.add_parser("check", help="alert rules and dashboard queries against a live Prometheus")
    check.add_argument("--prometheus", default=None, help="default: the local one (flink_rest_host:prometheus_port)")
    cfg, args = cli(parser, argv, ("flink", "stack"))
    if args.command == "render-prometheus":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            "# Rendered by tools.monitoring from deploy/monitoring/prometheus.yml; do not edit.\n"
            + yaml.safe_dump(render_prometheus(cfg, args.interval), sort_keys=False)
        )
        return 0
    prom = Prometheus(args.prometheus or f"http://{cfg.flink_rest_host}:{cfg.prometheus_port}")
    found = problems(prom, [(f"alert {n}", e) for n, e in alert_exprs()] +
                     [(f"dashboard panel {t!r}", e) for t, e in dashboard_exprs()])
    for p in found:
        print(p)
    print(f"{len(found)} problems", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
