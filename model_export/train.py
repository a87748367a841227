"""Train, evaluate and export the purchase-propensity model and the user-segment model.

    python -m model_export.train [--out artifacts/propensity.onnx] [--horizon-hours 24] [--if-missing]
                                 [--data CSV] [--limit N] [--train-days 6] [--final-frac 0.2]
                                 [--bootstrap 1000] [--seed 0] [--segments-k K]
                                 [--online-retail | --no-online-retail] [--online-retail-data CSV.GZ]
                                 [--online-retail-horizons-days 1,30] [--online-retail-cutoff 2011-09-01]
                                 [--online-retail-limit N] [config flags]

Stages (each prints its wall time):
1. load + replay (``model_export.dataset``): the Taobao head file through ``udfs.profile.replay`` and
   ``udfs.features`` -- the job's own code -- labelled "purchases within the horizon".
2. split: training days before the cutoff (purged), validation after it; 20% of users (a fixed hash)
   are held out of everything but the final check; two inner time folds inside the training period.
3. models (``model_export.models``): the constant base rate, the cart rule, the recency rule, and the
   linear model whose feature set and regularisation are chosen on the inner folds, Platt-calibrated on
   their held-out predictions; the landed recipe (raw counts, C=1) as a reference.
4. evaluation (``model_export.evaluation``): ROC-AUC, PR-AUC, Brier, log loss with user-bootstrap CIs
   and paired CIs against the recency rule; top-k targeting chosen on validation; feature drift.
5. export (``model_export.onnx_graphs``, ``model_export.export``): the calibrated linear model as
   standard ONNX ops (CUDA-executable) + metadata, parity with the numpy model <= 1e-5.
6. segments (``model_export.segments``), the Online Retail evaluation (``model_export.retail``),
   and the model card (``model_export.report``).

``ensure_model(cfg)`` trains only when either model is missing, was trained on other features or uses
ops without CUDA kernels; ``--if-missing`` does the same from the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
from threadpoolctl import threadpool_limits

from flink_jobs.config import Config
from model_export import ablation, evaluation, export, models, onnx_graphs, report
from model_export.dataset import (
    DAY_MS,
    HOUR_MS,
    WINDOW_START_MS,
    Dataset,
    Split,
    build_dataset,
    load_events,
    split_rows,
)
from model_export.export import artifacts_stale_reason, segments_path, stale_reason
from model_export.retail import RetailParams, evaluate_online_retail, online_retail_path
from model_export.segments import SegmentParams, train_segments
from tools.datasets import TAOBAO_HEAD
from udfs import model_contract as mc
from udfs.features import FEATURE_NAMES

__all__ = ["TrainParams", "ensure_model", "main", "segments_path", "stale_reason", "train_and_export"]

CHOSEN = "logreg"
REFERENCE = "recency"
DEFAULT_RETAIL = RetailParams()


@dataclass(frozen=True)
class TrainParams:
    """Everything that changes the trained model (hashed into model_version)."""

    horizon_hours: float = 24.0
    train_days: int = 6
    final_frac: float = 0.2
    purge: bool = True
    inner_folds: int = 2
    # selection grid, simplest first (ties go to the earlier entry)
    grid_features: tuple[str, ...] = ("bounded_normalised", "bounded")
    grid_c: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1)
    n_bootstrap: int = 1000
    top_fractions: tuple[float, ...] = evaluation.TOP_FRACTIONS
    seed: int = 0
    limit: Optional[int] = None

    @property
    def horizon_ms(self) -> int:
        return int(round(self.horizon_hours * HOUR_MS))

    def grid(self) -> list[models.LinearConfig]:
        return [models.LinearConfig(f, c) for f in self.grid_features for c in self.grid_c]


class _Stages:
    """Prints and records the wall time of each stage."""

    def __init__(self) -> None:
        self.secs: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.secs[name] = time.perf_counter() - t0
        print(f"[train] {name:<22} {self.secs[name]:6.2f} s", flush=True)
        return out

    def total(self) -> float:
        return time.perf_counter() - self._t0


def fit_models(ds: Dataset, split: Split, params: TrainParams) -> tuple[dict[str, Any], models.Selection]:
    """Every compared model, fitted on the training rows only; the selection on the inner folds."""
    Xtr, ytr = ds.X[split.train], ds.y[split.train]
    sel = models.select_linear(ds.X, ds.y, split.inner, params.grid())
    chosen = models.fit_propensity(Xtr, ytr, sel)
    uncalibrated = models.fit_propensity(Xtr, ytr, sel, calibrate=False)
    landed = models.make_linear(models.LinearConfig("all", 1.0, log=False)).fit(Xtr, ytr)
    fitted: dict[str, Any] = {
        "constant": models.ConstantRate().fit(Xtr, ytr),
        "cart": models.CartRule().fit(Xtr, ytr),
        REFERENCE: models.RecencyRule().fit(Xtr, ytr),
        "logreg_landed": landed,
        "logreg_uncalibrated": uncalibrated,
        CHOSEN: chosen,
    }
    return fitted, sel


def evaluate_all(ds: Dataset, split: Split, fitted: dict[str, Any], params: TrainParams) -> dict[str, Any]:
    """Validation and final-check metrics, top-k targeting (chosen on validation, checked on the final
    rows with validation's thresholds), reliability and the decision the model carries."""
    out: dict[str, Any] = {}
    preds: dict[str, dict[str, np.ndarray]] = {}
    for name, idx in (("validation", split.val), ("final", split.final)):
        preds[name] = {m: models.positive_proba(mod, ds.X[idx]) for m, mod in fitted.items()}
        out[name] = evaluation.evaluate(ds.y[idx], preds[name], ds.users[idx], params.n_bootstrap, params.seed,
                                        references=(REFERENCE, "constant"))
    pv = preds["validation"][CHOSEN]
    rows_v = evaluation.top_k(ds.y[split.val], pv, ds.users[split.val], params.n_bootstrap, params.seed,
                              params.top_fractions)
    pick = evaluation.choose_top_k(rows_v)
    thresholds = {r["k"]: r["threshold"] for r in rows_v}
    rows_f = evaluation.top_k(ds.y[split.final], preds["final"][CHOSEN], ds.users[split.final],
                              params.n_bootstrap, params.seed, params.top_fractions, thresholds)
    edges = tuple(float(q) for q in np.quantile(pv, np.linspace(0.1, 0.9, 9)))
    decision = mc.Decision(float(pick["k"]), float(pick["threshold"]), edges)
    out["top_k"] = {"validation": rows_v, "final": rows_f, "chosen_k": pick["k"]}
    out["reliability"] = {s: {m: evaluation.reliability(ds.y[idx], preds[s][m])
                              for m in (CHOSEN, "logreg_uncalibrated", "constant")}
                          for s, idx in (("validation", split.val), ("final", split.final))}
    out["decision"] = json.loads(decision.to_json())
    out["_preds"] = preds
    out["_decision"] = decision
    return out


def _fingerprint(data_path: Path, events: int, dropped: int, ds: Dataset, split: Split) -> dict[str, Any]:
    return {
        "file": data_path.name, "sha256": export.file_sha256(data_path), "events_read": events + dropped,
        "events_used": events, "dropped_before_window": dropped, "labelled_rows": len(ds),
        "censored_rows": ds.n_censored, "train_rows": int(len(split.train)), "val_rows": int(len(split.val)),
        "final_rows": int(len(split.final)),
    }


def export_chosen(model: models.LinearPropensity, out: Path, meta: dict[str, str],
                  X_check: np.ndarray) -> tuple[float, list[str]]:
    """Write the calibrated linear model as an ONNX graph and check it against the numpy model; a model
    that scores differently is deleted, never left behind. Returns (max |diff|, the graph's ops)."""
    mask, w, bias = model.linear_form(len(FEATURE_NAMES))
    graph = onnx_graphs.linear_classifier(mask, w, bias)
    ops = [op for _, op in onnx_graphs.graph_ops(graph)]
    export.write_onnx(graph, out, meta, f"Purchase propensity. {meta.get(mc.LABEL_DEFINITION, '')}".strip())
    diff = export.parity(model, out, X_check)
    print(f"[train] parity: max |numpy - onnxruntime| = {diff:.2e} on {len(X_check):,} validation rows")
    if not diff <= export.PARITY_TOL:
        out.unlink(missing_ok=True)
        raise SystemExit(f"parity check failed: {diff:.3e} > {export.PARITY_TOL}")
    return diff, ops


@dataclass
class _Run:
    """What the stages hand each other."""

    data_path: Path
    params: TrainParams
    events: int
    dropped: int
    ds: Dataset
    split: Split
    day0: int
    fingerprint: dict[str, Any]


def _prepare(st: _Stages, data_path: Path, params: TrainParams) -> _Run:
    events, dropped = st.run("load", lambda: load_events(data_path, params.limit))
    ds = st.run("replay+label", lambda: build_dataset(events, params.horizon_ms))
    day0 = WINDOW_START_MS if events[0].event_time >= WINDOW_START_MS else events[0].event_time
    cutoff = day0 + params.train_days * DAY_MS
    split = st.run("split", lambda: split_rows(ds, cutoff, params.horizon_ms, params.final_frac, params.purge,
                                               folds=params.inner_folds))
    ytr = ds.y[split.train]
    if len(split.train) == 0 or len(split.val) == 0 or ytr.min() == ytr.max():
        raise SystemExit(f"unusable split: {len(split.train)} training rows ({ytr.sum()} positive), "
                         f"{len(split.val)} validation rows")
    return _Run(data_path, params, len(events), dropped, ds, split, day0,
                _fingerprint(data_path, len(events), dropped, ds, split))


def _metadata(run: _Run, ev: dict[str, Any], sel: models.Selection, chosen: models.LinearPropensity,
              version: str) -> dict[str, str]:
    metrics = {s: {k: ev[s]["models"][CHOSEN][k]["value"] for k in evaluation.METRICS}
               for s in ("validation", "final") if "models" in ev[s]}
    return export.model_metadata(
        version, run.params.horizon_hours, run.fingerprint, metrics, CHOSEN, ev["_decision"],
        used_features=[FEATURE_NAMES[i] for i in chosen.columns],
        extra={mc.CALIBRATION: {"method": "platt", "slope_intercept": list(chosen.platt),
                                "fitted_on": "held-out logits of the inner folds"},
               "selected": dataclasses.asdict(sel.best), "train_params": dataclasses.asdict(run.params),
               # refresh compares candidates with this model on a recent period: it must know whether
               # this model's labels (all closed by the cutoff: purged split) reach into that period
               "trained_until_ms": str(run.split.cutoff_ms)})


def _report(run: _Run, version: str, meta: dict[str, str], out: Path, sel: models.Selection,
            chosen: models.LinearPropensity, ev: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    ds, split = run.ds, run.split
    used = [FEATURE_NAMES[i] for i in chosen.columns]
    return {
        "model_version": version, "created_at": meta[mc.CREATED_AT], "onnx_file": out.name, "chosen": CHOSEN,
        "reference": REFERENCE, "params": dataclasses.asdict(run.params),
        "selection": {"best": dataclasses.asdict(sel.best), "label": sel.best.label(),
                      "table": [{**r, "config": dataclasses.asdict(r["config"])} for r in sel.table],
                      "inner_folds": [{"fit_rows": len(f), "check_rows": len(c)} for f, c in split.inner]},
        "calibration": {"slope": chosen.platt[0], "intercept": chosen.platt[1]},
        "used_features": used, "log_features": [used[j] for j, m in enumerate(chosen.log_mask_) if m],
        "coefficients": chosen.standardised_coefficients(FEATURE_NAMES),
        "data": {**run.fingerprint, "users": int(len(set(ds.users))), "end_time": report.iso(ds.end_ms),
                 "positive_rate": float(ds.y.mean()), "daily": report.daily(ds, run.day0)},
        "split": {"cutoff": report.iso(split.cutoff_ms), "cutoff_ms": split.cutoff_ms,
                  "train_rows": int(len(split.train)), "train_positive_rate": float(ds.y[split.train].mean()),
                  "purged_rows": split.purged_rows, "final_users": split.final_users,
                  "users_first_seen_after_cutoff": split.users_first_seen_after_cutoff},
        **ev, **extra,
        "environment": {"python": platform.python_version(), "sklearn": sklearn.__version__,
                        "onnx": onnx.__version__, "onnxruntime": ort.__version__, "cpus": os.cpu_count()},
    }


def train_and_export(
    data_path: Path, out: Path, params: TrainParams, segments: Optional[SegmentParams] = None,
    retail: Optional[RetailParams] = None, retail_path: Optional[Path] = None,
) -> dict[str, Any]:
    """The whole pipeline; returns the report that is also written to ``metrics.json``. BLAS and OpenMP
    run single-threaded: the fits are small, and on a shared 2-core machine their threads only fight
    (a logistic regression fit took 2-6x the CPU time with the default thread pools)."""
    if retail is not None and retail_path is None:
        raise ValueError("retail_path is needed with retail")
    with threadpool_limits(limits=1):
        return _train_and_export(data_path, out, params, segments, retail, retail_path)


def _train_and_export(
    data_path: Path, out: Path, params: TrainParams, segments: Optional[SegmentParams],
    retail: Optional[RetailParams], retail_path: Optional[Path],
) -> dict[str, Any]:
    st = _Stages()
    run = _prepare(st, data_path, params)
    ds, split = run.ds, run.split
    fitted, sel = st.run("select+fit", lambda: fit_models(ds, split, params))
    print(f"[train]   selected on the inner folds: {sel.best.label()}")
    ev = st.run("evaluate+bootstrap", lambda: evaluate_all(ds, split, fitted, params))
    chosen: models.LinearPropensity = fitted[CHOSEN]
    version = export.model_version(run.fingerprint, params, CHOSEN, sel.best)
    meta = _metadata(run, ev, sel, chosen, version)
    out = out.resolve()
    diff, ops = st.run("export+parity", lambda: export_chosen(chosen, out, meta, ds.X[split.val]))
    extra: dict[str, Any] = {"graph_ops": ops, "parity_max_abs_diff": diff,
                             "latency": export.onnx_latency(out.read_bytes(), ds.X[split.val])}
    extra["drift"] = st.run("drift", lambda: evaluation.drift(ds.X[split.train], ds.X[split.val], FEATURE_NAMES))
    extra["new_signals"] = st.run("ablation", lambda: ablation.ablate(
        ds.X, ds.y, split.train, split.val, ds.users, sel.best, FEATURE_NAMES, params.n_bootstrap, params.seed))
    extra["segments"] = st.run("segments", lambda: train_segments(
        ds, split, out, segments if segments is not None else SegmentParams(), run.fingerprint, run.day0))
    extra["online_retail"] = {"skipped": "not run (--no-online-retail)"}
    if retail is not None and retail_path is not None:
        extra["online_retail"] = st.run("online retail (eval)", lambda: evaluate_online_retail(
            retail_path, retail, params.grid(), params.n_bootstrap, params.seed))
    preds = ev.pop("_preds")
    ev.pop("_decision")
    rep = _report(run, version, meta, out, sel, chosen, ev, extra)
    plots = st.run("plots", lambda: report.write_plots(out.parent, ds.y[split.val], preds["validation"],
                                                       ds.y[split.final], preds["final"]))
    st.secs["total"] = st.total()
    rep["timings_s"] = st.secs
    report.write_model_card(out.parent, rep, plots)
    (out.parent / "metrics.json").write_text(json.dumps(rep, indent=2, default=float), encoding="utf-8")
    print(f"[train] total {st.secs['total']:.2f} s; wrote {out}, {segments_path(out)}, "
          f"{out.parent / 'MODEL_CARD.md'}, {out.parent / 'metrics.json'}")
    return rep


def ensure_model(
    cfg: Config, params: Optional[TrainParams] = None, segments: Optional[SegmentParams] = None,
    retail: Optional[RetailParams] = DEFAULT_RETAIL,
) -> Path:
    """``cfg.model_file``, trained first (with the segment model next to it) if either is missing, was
    built for another feature list or uses CPU-only ops. ``retail=None`` skips Online Retail."""
    path = cfg.model_file
    reason = artifacts_stale_reason(path)
    if reason is not None:
        print(f"[train] training: {reason}", flush=True)
        train_and_export(cfg.taobao_dir / TAOBAO_HEAD, path, params or TrainParams(), segments, retail,
                         online_retail_path(cfg))
    return path


def _days(text: str) -> tuple[float, ...]:
    try:
        days = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"comma-separated numbers of days expected: {text!r}") from exc
    if not days or min(days) <= 0:
        raise argparse.ArgumentTypeError(f"positive numbers of days expected: {text!r}")
    return days


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    d, rd = TrainParams(), RetailParams()
    parser.add_argument("--out", type=Path, default=None,
                        help="ONNX output (default: the config's model file); segments.onnx goes next to it")
    parser.add_argument("--data", type=Path, default=None, help=f"Taobao CSV (default: <taobao_dir>/{TAOBAO_HEAD})")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing if both models exist, match the feature list and run on CUDA ops")
    parser.add_argument("--horizon-hours", type=float, default=d.horizon_hours)
    parser.add_argument("--train-days", type=int, default=d.train_days)
    parser.add_argument("--final-frac", type=float, default=d.final_frac,
                        help="share of users held out for the final check")
    parser.add_argument("--bootstrap", type=int, default=d.n_bootstrap, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--limit", type=int, default=None, help="first N lines of the data file only")
    parser.add_argument("--segments-k", type=int, default=None,
                        help="number of segments (default: chosen by stability and silhouette)")
    parser.add_argument("--online-retail", action=argparse.BooleanOptionalAction, default=True,
                        help="also evaluate the pipeline on UCI Online Retail (evaluation only)")
    parser.add_argument("--online-retail-data", type=Path, default=None, help="Online Retail CSV (.csv.gz)")
    parser.add_argument("--online-retail-horizons-days", type=_days, default=rd.horizons_days,
                        help="label horizons in days, comma-separated (default: %(default)s)")
    parser.add_argument("--online-retail-cutoff", default=rd.cutoff,
                        help="UTC date splitting training from validation rows (default: %(default)s)")
    parser.add_argument("--online-retail-limit", type=int, default=None,
                        help="first N purchase lines of the Online Retail file only")
    Config.add_arguments(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    cfg = Config.from_args(args)
    out = args.out if args.out is not None else cfg.model_file
    if args.if_missing:
        reason = artifacts_stale_reason(out)
        if reason is None:
            print(f"[train] {out} and {segments_path(out).name} exist and are current; nothing to do")
            return 0
        print(f"[train] training: {reason}")
    params = TrainParams(horizon_hours=args.horizon_hours, train_days=args.train_days, final_frac=args.final_frac,
                         n_bootstrap=args.bootstrap, seed=args.seed, limit=args.limit)
    segments = SegmentParams(k=args.segments_k, seed=args.seed)
    retail = (RetailParams(horizons_days=args.online_retail_horizons_days, cutoff=args.online_retail_cutoff,
                           limit=args.online_retail_limit) if args.online_retail else None)
    data = args.data if args.data is not None else cfg.taobao_dir / TAOBAO_HEAD
    retail_data = args.online_retail_data if args.online_retail_data is not None else online_retail_path(cfg)
    train_and_export(data, out, params, segments, retail, retail_data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
