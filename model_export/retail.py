"""The same pipeline on a second shop, UCI Online Retail: replay, purged time split, customer holdout,
rules and the linear model chosen on inner folds, user-bootstrap CIs. Evaluation only: nothing here
goes into the exported model, so these settings are not part of any model_version."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Optional

from flink_jobs.config import Config
from model_export import evaluation, models
from model_export.dataset import DAY_MS, build_dataset, relabel, split_rows
from model_export.export import file_sha256
from tools.datasets import read_online_retail
from udfs.profile import Event

ONLINE_RETAIL_DIR = "online_retail_uci"
ONLINE_RETAIL_FILE = "online_retail.csv.gz"


@dataclass(frozen=True)
class RetailParams:
    # A wholesaler's customers reorder every few weeks: 1 day is the Taobao-like horizon, 30 days the
    # one that means something here.
    horizons_days: tuple[float, ...] = (1.0, 30.0)
    cutoff: str = "2011-09-01"  # UTC date: training rows before it (purged), validation rows from it
    rows: str = "session_end"  # one row per invoice: its last line, the profile after the whole basket
    limit: Optional[int] = None  # first N purchase lines of the file only (the file is in time order)

    @property
    def cutoff_ms(self) -> int:
        return int(datetime.fromisoformat(self.cutoff).replace(tzinfo=UTC).timestamp() * 1000)


def online_retail_path(cfg: Config) -> Path:
    return cfg.path(cfg.data_dir) / ONLINE_RETAIL_DIR / ONLINE_RETAIL_FILE


def _iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _horizon(ds: Any, days: float, rp: RetailParams, grid: Sequence[models.LinearConfig], n_boot: int,
             seed: int) -> dict[str, Any]:
    h_ms = int(round(days * DAY_MS))
    # a wholesaler's day can hold no reorder at all (weekends, bank holidays): check weeks, not days
    split = split_rows(ds, rp.cutoff_ms, h_ms, min_step_ms=7 * DAY_MS)
    entry: dict[str, Any] = {
        "horizon_days": days, "rows": len(ds), "censored": ds.n_censored, "train_rows": int(len(split.train)),
        "val_rows": int(len(split.val)), "label_window_end": _iso_utc(ds.end_ms - h_ms),
    }
    ytr = ds.y[split.train]
    if len(split.train) == 0 or len(split.val) == 0 or ytr.min() == ytr.max():
        return {**entry, "note": "empty split or one class in training: not evaluated"}
    Xtr = ds.X[split.train]
    try:
        sel = models.select_linear(ds.X, ds.y, split.inner, grid)
        logreg, selected = models.fit_propensity(Xtr, ytr, sel), sel.best.label()
    except ValueError:  # a slice too short for inner folds: the first grid entry, neither selected nor calibrated
        logreg = models.make_linear(grid[0]).fit(Xtr, ytr)
        selected = f"{grid[0].label()} (no inner fold: not selected, not calibrated)"
    fitted: dict[str, Any] = {
        "constant": models.ConstantRate().fit(Xtr, ytr),
        "rule": models.FrequencyRule().fit(Xtr, ytr),
        "logreg": logreg,
    }
    out = {**entry, "train_positive_rate": float(ytr.mean()), "selected": selected}
    for key, idx in (("validation", split.val), ("held_out_customers", split.final)):
        preds = {m: models.positive_proba(mod, ds.X[idx]) for m, mod in fitted.items()}
        out[key] = evaluation.evaluate(ds.y[idx], preds, ds.users[idx], n_boot, seed, references=("rule",))
    return out


def evaluate_shop(events: Sequence[Event], rp: RetailParams, grid: Sequence[models.LinearConfig], n_boot: int,
                  seed: int = 0) -> dict[str, Any]:
    """Replay once (rows labelled with the shortest horizon), then per horizon: relabel, split at
    ``rp.cutoff`` (purged, 20% of customers held out), choose the linear model on the inner folds, and
    evaluate it against the frequency rule and the constant with user-bootstrap CIs."""
    horizons = sorted(rp.horizons_days)
    if not horizons:
        raise ValueError("no horizons")
    t0 = time.perf_counter()
    base = build_dataset(events, int(round(horizons[0] * DAY_MS)), rows=rp.rows)
    replay_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "events": len(events), "users": len({e.user_id for e in events}),
        "sessions": len({(e.user_id, e.session_id) for e in events}), "rows_per": rp.rows,
        "first_event": _iso_utc(min(e.event_time for e in events)), "end_time": _iso_utc(base.end_ms),
        "cutoff": _iso_utc(rp.cutoff_ms), "rule": "frequency", "replay_s": replay_s, "horizons": [],
    }
    for days in horizons:
        ds = base if days == horizons[0] else relabel(base, events, int(round(days * DAY_MS)))
        out["horizons"].append(_horizon(ds, days, rp, grid, n_boot, seed))
    return out


def evaluate_online_retail(path: Path, rp: RetailParams, grid: Sequence[models.LinearConfig], n_boot: int,
                           seed: int = 0) -> dict[str, Any]:
    t0 = time.perf_counter()
    events = read_online_retail(path, limit=rp.limit)
    load_s = time.perf_counter() - t0
    if not events:
        raise SystemExit(f"no usable purchase lines in {path}")
    res = evaluate_shop(events, rp, grid, n_boot, seed)
    return {"file": path.name, "sha256": file_sha256(path), "params": dataclasses.asdict(rp), "load_s": load_s,
            **res}
