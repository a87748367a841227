"""Refresh from the stream: build a candidate propensity model from recent history and publish it only
if it measures better than the active one.

    python -m model_export.refresh [--data CSV] [--active PATH] [--history-days D] [--eval-days 1]
                                   [--bootstrap 1000] [--seed 0] [--min-gain 0] [--out DIR] [--dry-run]
                                   [config flags]

1. Replay the recent history (``--history-days`` before the last event) through the job's own core
   (``model_export.dataset.build_dataset``: ``udfs.profile`` + ``udfs.features``); each row's label is
   read from the events that followed it (a purchase within the active model's horizon); rows whose
   label window is still open are censored.
2. Evaluation period: the most recent ``--eval-days`` of rows with a closed label. The candidate is
   fitted on the rows whose label window closed before that period (purged), with the trainer's
   recipe: feature set and C chosen on inner time folds, Platt-calibrated on their held-out logits.
3. Both models, as ONNX (what the job would serve), score the evaluation rows; paired user-bootstrap
   95% CIs of (candidate - active) for PR-AUC, ROC-AUC, Brier and log loss.
4. ``decide``: publish as active if the PR-AUC gain's CI is above ``--min-gain`` and log loss is not
   proven worse; nothing if the candidate is proven worse; otherwise publish as shadow (not proven
   either way: let live traffic decide). ``--dry-run`` prints the decision and sends nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from threadpoolctl import threadpool_limits

from flink_jobs.config import Config
from model_export import evaluation, export, models
from model_export.dataset import DAY_MS, HOUR_MS, Dataset, build_dataset, load_events, split_rows
from model_export.train import CHOSEN, TrainParams, export_chosen
from tools.datasets import TAOBAO_HEAD
from udfs import model_contract as mc
from udfs import model_registry as mr
from udfs.features import FEATURE_NAMES

PRIMARY = "pr_auc"  # the ranking the targeting uses (top-k% of scores)
GUARD = "log_loss"  # calibration: the score itself is served, so it must not get worse
DECISIONS = ("publish-active", "publish-shadow", "nothing")


@dataclass(frozen=True)
class Verdict:
    decision: str  # one of DECISIONS
    reason: str


def decide(delta: Mapping[str, Mapping[str, Any]], min_gain: float = 0.0, same_model: bool = False) -> Verdict:
    """``delta``: per metric ``{"value", "ci95"}`` of candidate - active (``evaluation.evaluate``'s
    paired deltas). Better = the primary metric's whole CI above ``min_gain`` and the guard not proven
    worse; proven worse = the primary's whole CI below 0; anything else is not proven: shadow."""
    if same_model:
        return Verdict("nothing", "the candidate is the active model (same version)")
    lo, hi = delta[PRIMARY]["ci95"]
    g_lo = delta[GUARD]["ci95"][0]  # lower is better for the guard: proven worse if its CI is above 0
    fig = f"{PRIMARY} {delta[PRIMARY]['value']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
    if hi < 0:
        return Verdict("nothing", f"candidate proven worse: {fig}")
    if lo > min_gain and g_lo <= 0:
        return Verdict("publish-active", f"candidate better: {fig} > {min_gain:+.4f}, {GUARD} not worse")
    if lo > min_gain:
        return Verdict("publish-shadow", f"{fig} better but {GUARD} proven worse "
                                         f"({delta[GUARD]['value']:+.4f}, CI low {g_lo:+.4f})")
    return Verdict("publish-shadow", f"not proven: {fig} includes {min_gain:+.4f}")


@dataclass(frozen=True)
class RefreshParams:
    history_days: Optional[float] = None  # None: all of the file
    eval_days: float = 1.0
    n_bootstrap: int = 1000
    seed: int = 0
    min_gain: float = 0.0
    limit: Optional[int] = None


def eval_start(ds: Dataset, horizon_ms: int, eval_days: float) -> int:
    """Start of the evaluation period: ``eval_days`` before the last row whose label window closed."""
    return int(ds.end_ms - horizon_ms - eval_days * DAY_MS)


def candidate_decision(model: models.LinearPropensity, sel: models.Selection, top_fraction: float) -> mc.Decision:
    """The active model's targeting share, with the candidate's threshold and deciles taken from its
    held-out inner-fold scores (never from the evaluation rows the decision is judged on)."""
    a, b = model.platt
    p = 1.0 / (1.0 + np.exp(-(a * sel.oot_logits + b)))
    edges = tuple(float(q) for q in np.quantile(p, np.linspace(0.1, 0.9, 9)))
    return mc.Decision(top_fraction, float(np.quantile(p, 1.0 - top_fraction)), edges)


def _active_meta(active: bytes) -> dict[str, str]:
    return dict(export.cpu_session(active).get_modelmeta().custom_metadata_map)


def build_candidate(ds: Dataset, start: int, horizon_ms: int, params: RefreshParams, top_fraction: float,
                    out: Path, fingerprint: dict[str, Any]) -> tuple[bytes, np.ndarray, dict[str, Any]]:
    """(candidate ONNX bytes, evaluation row indices, facts for the report)."""
    split = split_rows(ds, start, horizon_ms, final_frac=0.0)
    y_tr = ds.y[split.train]
    if len(split.train) == 0 or len(split.val) == 0 or y_tr.min() == y_tr.max():
        raise SystemExit(f"unusable history: {len(split.train)} training rows, {len(split.val)} evaluation rows")
    tp = TrainParams(horizon_hours=horizon_ms / HOUR_MS, n_bootstrap=params.n_bootstrap, seed=params.seed)
    sel = models.select_linear(ds.X, ds.y, split.inner, tp.grid())
    chosen = models.fit_propensity(ds.X[split.train], y_tr, sel)
    decision = candidate_decision(chosen, sel, top_fraction)
    version = export.model_version(fingerprint, asdict(params) | {"horizon_ms": horizon_ms}, CHOSEN, sel.best)
    meta = export.model_metadata(
        version, horizon_ms / HOUR_MS, fingerprint, {}, CHOSEN, decision,
        used_features=[FEATURE_NAMES[i] for i in chosen.columns],
        extra={"trained_until_ms": str(start), "selected": asdict(sel.best), "refresh_params": asdict(params),
               mc.CALIBRATION: {"method": "platt", "slope_intercept": list(chosen.platt)}})
    path = out / f"{version}.onnx"
    export_chosen(chosen, path, meta, ds.X[split.train][:5000])
    facts = {"train_rows": int(len(split.train)), "eval_rows": int(len(split.val)), "selected": sel.best.label(),
             "purged_rows": split.purged_rows, "candidate_file": str(path), "candidate_version": version}
    return path.read_bytes(), split.val, facts


def refresh(data: Path, active_path: Path, out: Path, params: RefreshParams) -> dict[str, Any]:
    """Steps 1-4 of the module doc; returns the report (also written next to the candidate)."""
    t0 = time.perf_counter()
    active = active_path.read_bytes()
    meta = _active_meta(active)
    horizon_ms = int(round(float(meta[mc.HORIZON_HOURS]) * HOUR_MS))  # the label the active model predicts
    events, _ = load_events(data, params.limit)
    if params.history_days is not None:
        events = [e for e in events if e.event_time >= events[-1].event_time - params.history_days * DAY_MS]
    ds = build_dataset(events, horizon_ms)
    start = eval_start(ds, horizon_ms, params.eval_days)
    fingerprint = {"file": data.name, "sha256": export.file_sha256(data), "events": len(events),
                   "history_days": params.history_days, "eval_start_ms": start}
    active_decision = mc.Decision.from_metadata(meta)
    top = active_decision.top_fraction if active_decision else evaluation.TOP_FRACTIONS[1]
    cand, rows, facts = build_candidate(ds, start, horizon_ms, params, top, out, fingerprint)
    X, y, users = ds.X[rows], ds.y[rows], ds.users[rows]
    preds = {"candidate": export.onnx_proba(export.cpu_session(cand), X),
             "active": export.onnx_proba(export.cpu_session(active), X)}
    ev = evaluation.evaluate(y, preds, users, params.n_bootstrap, params.seed, references=("active",))
    delta = ev["delta"]["active"]["candidate"]
    trained_until = meta.get("trained_until_ms")
    leak = ("unknown: the active model does not record trained_until_ms; if its training rows reach into "
            "the evaluation period, the comparison favours it" if trained_until is None else
            ("none" if int(trained_until) <= start else "the active model was trained on part of the evaluation "
             "period: the comparison favours it"))
    verdict = decide(delta, params.min_gain, same_model=facts["candidate_version"] == meta.get(mc.MODEL_VERSION))
    rep = {"decision": verdict.decision, "reason": verdict.reason, "active_version": meta.get(mc.MODEL_VERSION),
           **facts, "eval_period": [start, int(ds.end_ms - horizon_ms)], "eval_users": ev.get("users"),
           "eval_positive_rate": ev.get("positive_rate"), "horizon_hours": horizon_ms / HOUR_MS,
           "models": ev.get("models"), "delta": delta, "active_training_overlap": leak,
           "params": asdict(params), "wall_s": time.perf_counter() - t0}
    (out / f"{facts['candidate_version']}.refresh.json").write_text(json.dumps(rep, indent=2, default=float))
    return rep


def print_report(rep: Mapping[str, Any]) -> None:
    print(f"[refresh] active {rep['active_version']} vs candidate {rep['candidate_version']} "
          f"({rep['selected']}; {rep['train_rows']:,} training rows)")
    print(f"[refresh] evaluation: {rep['eval_rows']:,} rows, {rep['eval_users']} users, positive rate "
          f"{rep['eval_positive_rate']:.3f}; paired user bootstrap, candidate - active:")
    for m in evaluation.METRICS:
        d, a, c = rep["delta"][m], rep["models"]["active"][m]["value"], rep["models"]["candidate"][m]["value"]
        better = "lower" if m in evaluation.LOWER_IS_BETTER else "higher"
        print(f"[refresh]   {m:<9} active {a:.4f}  candidate {c:.4f}  delta {d['value']:+.4f} "
              f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] ({better} is better)")
    print(f"[refresh] active model's training vs evaluation period: {rep['active_training_overlap']}")
    print(f"[refresh] DECISION: {rep['decision']} -- {rep['reason']}")


def publish(cfg: Config, rep: Mapping[str, Any]) -> Optional[str]:
    """Send the candidate as the decision says (validated first, as the job will); None for 'nothing'."""
    from tools.publish_model import package_from_files, send  # noqa: PLC0415 - Kafka only when publishing

    if rep["decision"] == "nothing":
        return None
    role = "active" if rep["decision"] == "publish-active" else "shadow"
    pkg = package_from_files(Path(rep["candidate_file"]), None, role)  # segments: the job keeps its own
    mr.validate(pkg)
    return send(cfg, role, pkg)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = RefreshParams()
    p.add_argument("--data", type=Path, default=None, help=f"Taobao CSV (default: <taobao_dir>/{TAOBAO_HEAD})")
    p.add_argument("--active", type=Path, default=None, help="the active model's ONNX (default: the config's)")
    p.add_argument("--history-days", type=float, default=None, help="replay only the last D days (default: all)")
    p.add_argument("--eval-days", type=float, default=d.eval_days, help="length of the evaluation period")
    p.add_argument("--bootstrap", type=int, default=d.n_bootstrap)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--min-gain", type=float, default=d.min_gain, help=f"{PRIMARY} gain the CI must clear")
    p.add_argument("--limit", type=int, default=None, help="first N lines of the data file only")
    p.add_argument("--out", type=Path, default=None, help="candidate directory (default: <run_dir>/candidates)")
    p.add_argument("--dry-run", action="store_true", help="print the decision; publish nothing")
    Config.add_arguments(p, ("kafka", "topics", "model", "paths"))
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    cfg = Config.from_args(args)
    out = args.out or cfg.run_path / "candidates"
    out.mkdir(parents=True, exist_ok=True)
    params = RefreshParams(args.history_days, args.eval_days, args.bootstrap, args.seed, args.min_gain, args.limit)
    with threadpool_limits(limits=1):  # small fits on a shared machine: threads only fight (see train.py)
        rep = refresh(args.data or cfg.taobao_dir / TAOBAO_HEAD, args.active or cfg.model_file, out, params)
    print_report(rep)
    if args.dry_run:
        print("[refresh] dry run: nothing published")
        return 0
    where = publish(cfg, rep)
    print(f"[refresh] published as {rep['decision'].split('-')[1]} -> {where}" if where else "[refresh] nothing sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
