"""Train, evaluate and export the purchase-propensity model and the user-segment model.

    python -m model_export.train [--out artifacts/propensity.onnx] [--horizon-hours 24] [--if-missing]
                                 [--data CSV] [--limit N] [--train-days 6] [--holdout-frac 0.2]
                                 [--hgb-max-iter 100] [--bootstrap 200] [--seed 0] [--segments-k 6]
                                 [--online-retail | --no-online-retail] [--online-retail-data CSV.GZ]
                                 [--online-retail-horizons-days 1,30] [--online-retail-cutoff 2011-09-01]
                                 [--online-retail-limit N] [config flags]

Stages (each prints its wall time):
1. load: the Taobao head file, events before 2017-11-25 00:00 Beijing time (known outliers) dropped,
   stable time sort.
2. dataset: replay through ``udfs.profile.replay`` + ``udfs.features.feature_vector`` -- the functions the
   Flink job runs -- so every row holds only what was known at its event (point-in-time correct).
   Label: the user purchases in (t, t + horizon]. Rows whose window runs past the data end are censored.
3. split: by time (train days before the cutoff, validation after), training rows purged so that their
   label window closes before the cutoff, and 20% of users held out of training entirely.
4. train: a rule baseline, LogisticRegression (scaled), HistGradientBoosting.
5. evaluate: ROC-AUC, PR-AUC, log loss, Brier, P/R/F1 at the max-F1 threshold of the training rows,
   95% CIs from a bootstrap over users; ONNX latency of the learned models. Pick by validation PR-AUC.
6. export: skl2onnx (ZipMap off, float32 input ``features``) + metadata; parity with sklearn <= 1e-5.
7. report: MODEL_CARD.md, metrics.json and plots next to the model.
8. segments: k-means (log1p of skewed columns, standardised, in one pipeline) on the training rows,
   exported as ``segments.onnx`` next to the model with a description per segment; the sklearn and
   onnxruntime segments must agree on every validation row.
9. second shop (``--online-retail``, on by default, ~20 s): the same replay / split / models / CIs on UCI
   Online Retail, one row per invoice, at 1 and 30 days; evaluation only, reported in the card.

``ensure_model(cfg)`` trains only when either model is missing (or was trained on other features);
``--if-missing`` does the same from the command line. Both models are always rebuilt together.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import fnmatch
import hashlib
import json
import os
import platform
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np
import onnx
import onnxruntime as ort
import skl2onnx
import sklearn
from skl2onnx import convert_sklearn, update_registered_converter
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from flink_jobs.config import Config
from tools.datasets import TAOBAO_HEAD, read_online_retail, read_taobao
from udfs.features import FEATURE_NAMES, FEATURES_VERSION, feature_vector
from udfs.profile import Event, replay

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
BEIJING = timezone(timedelta(hours=8))
# The dataset's documented collection window starts here; the ~35 earlier rows are known bad clocks.
WINDOW_START_MS = int(datetime(2017, 11, 25, tzinfo=BEIJING).timestamp() * 1000)
ONNX_INPUT = "features"
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}  # pinned: the exported graph must not change with skl2onnx
PARITY_TOL = 1e-5
METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "precision", "recall", "f1")
LEARNED = ("logreg", "hgb")


@dataclass(frozen=True)
class TrainParams:
    """Everything that changes the trained model (hashed into model_version)."""

    horizon_hours: float = 24.0
    train_days: int = 6
    holdout_frac: float = 0.2
    purge: bool = True
    hgb_max_iter: int = 100
    logreg_c: float = 1.0
    n_bootstrap: int = 200
    importance_rows: int = 5000
    seed: int = 0
    limit: Optional[int] = None

    @property
    def horizon_ms(self) -> int:
        return int(round(self.horizon_hours * HOUR_MS))


# --- 1-2. data and labels ------------------------------------------------------------------------


def load_events(
    path: Path, limit: Optional[int] = None, window_start_ms: int = WINDOW_START_MS
) -> tuple[list[Event], int]:
    """(events in stable time order, number dropped as before the collection window).
    ``limit`` keeps the first N lines of the file: whole user histories, since the file is grouped by user."""
    events = read_taobao(path, limit=limit)
    kept = [e for e in events if e.event_time >= window_start_ms]
    kept.sort(key=lambda e: e.event_time)  # stable: same-millisecond events keep file (= stream) order
    return kept, len(events) - len(kept)


def label_events(
    events: Sequence[Event], horizon_ms: int, end_ms: Optional[int] = None
) -> list[Optional[int]]:
    """Per event (input order): 1 if the same user has a purchase with event_time in (t, t + horizon],
    0 if not, None if censored (t + horizon > ``end_ms``, default the last event time of ``events``),
    because a purchase after the end of the data could still turn a 0 into a 1."""
    if not events:
        return []
    end = max(e.event_time for e in events) if end_ms is None else end_ms
    purchases: dict[str, list[int]] = defaultdict(list)
    for e in events:
        if e.event_type == "purchase":
            purchases[e.user_id].append(e.event_time)
    for times in purchases.values():
        times.sort()
    labels: list[Optional[int]] = []
    for e in events:
        t = e.event_time
        if t + horizon_ms > end:
            labels.append(None)
            continue
        times = purchases.get(e.user_id, [])
        i = bisect.bisect_right(times, t)  # first purchase strictly after t
        labels.append(int(i < len(times) and times[i] <= t + horizon_ms))
    return labels


@dataclass
class Dataset:
    """Labelled, uncensored rows in event-time order."""

    X: np.ndarray  # float32 [n, n_features]: exactly what the job hands the scorer
    y: np.ndarray  # int8 [n]
    t: np.ndarray  # int64 [n] event time, ms
    users: np.ndarray  # object [n]
    event_ids: list[str]
    n_events: int  # events replayed (censored ones included: they still build history)
    n_censored: int
    end_ms: int
    feature_names: list[str] = field(default_factory=lambda: list(FEATURE_NAMES))

    def __len__(self) -> int:
        return len(self.y)


ROW_CHOICES = ("event", "session_end")


def session_ends(events: Sequence[Event]) -> np.ndarray:
    """Per event: True if it is the last event of its user's run of events with one ``session_id`` (the
    complete basket of an invoice, say). Events without a session_id are runs of one."""
    keep = np.ones(len(events), dtype=bool)
    later: dict[str, Optional[str]] = {}  # user -> session_id of that user's next event
    for i in range(len(events) - 1, -1, -1):
        e = events[i]
        if e.user_id in later and e.session_id is not None and later[e.user_id] == e.session_id:
            keep[i] = False
        later[e.user_id] = e.session_id
    return keep


def build_dataset(
    events: Iterable[Event], horizon_ms: int, end_ms: Optional[int] = None, rows: str = "event"
) -> Dataset:
    """Replay ``events`` (stable-sorted by time) through the job's profile and feature code and label
    each event. Every event updates the profile; only uncensored ones become rows. ``rows='session_end'``
    keeps one row per session run (``session_ends``): the profile after a whole invoice, for shops
    whose events are invoice lines sharing one timestamp."""
    if rows not in ROW_CHOICES:
        raise ValueError(f"rows must be one of {ROW_CHOICES}, got {rows!r}")
    ordered = sorted(events, key=lambda e: e.event_time)
    if not ordered:
        raise ValueError("no events")
    end = ordered[-1].event_time if end_ms is None else end_ms
    labels = label_events(ordered, horizon_ms, end)
    wanted = session_ends(ordered) if rows == "session_end" else np.ones(len(ordered), dtype=bool)
    # The replay skips duplicate (and late) events, so rows are matched to events by id, not by zip; a
    # duplicate id keeps its first occurrence's label, as the replay keeps the first occurrence.
    label_of: dict[str, Optional[int]] = {}
    for e, lab, w in zip(ordered, labels, wanted, strict=True):
        label_of.setdefault(e.event_id, lab if w else None)
    out: list[list[float]] = []
    ys: list[int] = []
    ts: list[int] = []
    users: list[str] = []
    ids: list[str] = []
    for before, after, ev in replay(ordered):
        label = label_of.pop(ev.event_id, None)
        if label is None:
            continue
        out.append(feature_vector(before, after, ev))  # now: ``after`` is the live state
        ys.append(label)
        ts.append(ev.event_time)
        users.append(ev.user_id)
        ids.append(ev.event_id)
    n_feat = len(FEATURE_NAMES)
    return Dataset(
        X=np.asarray(out, dtype=np.float32).reshape(-1, n_feat),
        y=np.asarray(ys, dtype=np.int8),
        t=np.asarray(ts, dtype=np.int64),
        users=np.asarray(users, dtype=object),
        event_ids=ids,
        n_events=len(ordered),
        n_censored=int(sum(1 for lab, w in zip(labels, wanted, strict=True) if w and lab is None)),
        end_ms=end,
    )


def relabel(ds: Dataset, events: Sequence[Event], horizon_ms: int) -> Dataset:
    """The rows of ``ds`` labelled for another horizon (no second replay: features do not depend on the
    horizon). Rows censored under the new horizon are dropped, so build ``ds`` with the shortest one."""
    ordered = sorted(events, key=lambda e: e.event_time)
    label_of: dict[str, Optional[int]] = {}
    for e, lab in zip(ordered, label_events(ordered, horizon_ms, ds.end_ms), strict=True):
        label_of.setdefault(e.event_id, lab)
    labels = [label_of.get(i) for i in ds.event_ids]
    keep = np.fromiter((lab is not None for lab in labels), dtype=bool, count=len(labels))
    idx = np.flatnonzero(keep)
    return dataclasses.replace(
        ds,
        X=ds.X[idx],
        y=np.asarray([labels[i] for i in idx], dtype=np.int8),
        t=ds.t[idx],
        users=ds.users[idx],
        event_ids=[ds.event_ids[i] for i in idx],
        n_censored=ds.n_censored + int((~keep).sum()),
    )


# --- 3. split ------------------------------------------------------------------------------------


def in_holdout(user_id: str, frac: float, seed: int = 0) -> bool:
    """Stable user-level holdout: a hash, so it does not depend on row order or on other users."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{user_id}".encode()).digest()[:8], "big")
    return h / 2**64 < frac


@dataclass
class Split:
    train: np.ndarray  # row indices
    val: np.ndarray  # every validation-period row
    val_unseen: np.ndarray  # validation rows of users with no training row
    cutoff_ms: int
    holdout_users: int
    users_first_seen_after_cutoff: int
    purged_rows: int


def split_rows(
    ds: Dataset, cutoff_ms: int, horizon_ms: int, holdout_frac: float = 0.2, purge: bool = True, seed: int = 0
) -> Split:
    """Time split at ``cutoff_ms``. With ``purge``, a training row's label window must close before the
    cutoff, otherwise its label would be read from the validation period. Held-out users give no
    training rows at all (the unseen-user estimate: new users have short histories, known ones not)."""
    holdout = {u for u in set(ds.users) if in_holdout(u, holdout_frac, seed)}
    is_holdout = np.fromiter((u in holdout for u in ds.users), dtype=bool, count=len(ds))
    before = ds.t < cutoff_ms
    closed = ds.t + horizon_ms <= cutoff_ms if purge else before
    train = np.flatnonzero(before & closed & ~is_holdout)
    val = np.flatnonzero(~before)
    train_users = set(ds.users[train])
    unseen = np.fromiter((u not in train_users for u in ds.users[val]), dtype=bool, count=len(val))
    first_seen: dict[str, int] = {}
    for u, t in zip(ds.users, ds.t, strict=True):
        first_seen.setdefault(u, int(t))
    return Split(
        train=train,
        val=val,
        val_unseen=val[unseen],
        cutoff_ms=cutoff_ms,
        holdout_users=len(holdout),
        users_first_seen_after_cutoff=sum(1 for t in first_seen.values() if t >= cutoff_ms),
        purged_rows=int((before & ~closed & ~is_holdout).sum()),
    )


# --- 4. models -----------------------------------------------------------------------------------


def _index(names: Sequence[str], *candidates: str) -> Optional[int]:
    """Column of the first candidate name present in ``names``; None if none is (features change)."""
    for c in candidates:
        if c in names:
            return list(names).index(c)
    return None


class _BucketRule:
    """Probability = the bucket's purchase rate on the training rows (Laplace-smoothed), so log loss and
    Brier compare fairly with the learned models."""

    n_buckets = 1

    def buckets(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, X: np.ndarray, y: np.ndarray) -> _BucketRule:
        b = self.buckets(X)
        self.rates_ = np.array([(y[b == k].sum() + 1.0) / ((b == k).sum() + 2.0) for k in range(self.n_buckets)])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = self.rates_[self.buckets(X)]
        return np.column_stack([1.0 - p, p])


class RuleBaseline(_BucketRule):
    """Hand-written rule: bucket 2 = this event is an add-to-cart (``ev_cart``), 1 = the user carted
    before (``n_cart > 0``), 0 = never carted. A feature missing from the list counts as 0."""

    n_buckets = 3
    description = ("bucket 2 = this event is an add-to-cart, 1 = the user has carted before (`n_cart > 0`), "
                   "0 = never carted")

    def __init__(self, feature_names: Sequence[str] = FEATURE_NAMES) -> None:
        self._ev_cart = _index(feature_names, "ev_cart")
        self._n_cart = _index(feature_names, "n_cart")
        self.rates_ = np.full(3, np.nan)

    def _col(self, X: np.ndarray, i: Optional[int]) -> np.ndarray:
        return X[:, i] if i is not None else np.zeros(len(X), dtype=X.dtype)

    def buckets(self, X: np.ndarray) -> np.ndarray:
        return np.where(self._col(X, self._ev_cart) > 0, 2, np.where(self._col(X, self._n_cart) > 0, 1, 0))


class FrequencyRule(_BucketRule):
    """For shops without carts (Online Retail): bucket = quartile of the user's lifetime purchase count
    (``n_purchase``, else ``n_events``) on the training rows, i.e. "frequent buyers buy again"."""

    n_buckets = 4
    description = ("bucket = quartile (on training rows) of the lifetime purchase count `n_purchase` (purchase "
                   "events, i.e. invoice lines in Online Retail): \"frequent buyers buy again\"")

    def __init__(self, feature_names: Sequence[str] = FEATURE_NAMES) -> None:
        self._col = _index(feature_names, "n_purchase", "n_events")
        self.edges_ = np.zeros(0)
        self.rates_ = np.full(4, np.nan)

    def buckets(self, X: np.ndarray) -> np.ndarray:
        if self._col is None:
            return np.zeros(len(X), dtype=np.int64)
        return np.searchsorted(self.edges_, X[:, self._col], side="right")

    def fit(self, X: np.ndarray, y: np.ndarray) -> FrequencyRule:
        if self._col is not None:
            self.edges_ = np.unique(np.quantile(X[:, self._col], [0.25, 0.5, 0.75]))
        return super().fit(X, y)  # type: ignore[return-value]


RULES: dict[str, type[_BucketRule]] = {"cart": RuleBaseline, "frequency": FrequencyRule}


def make_models(params: TrainParams, rule: str = "cart") -> dict[str, Any]:
    return {
        "rule": RULES[rule](),
        # Scaling matters: counts run to hundreds while the flags are 0/1.
        "logreg": Pipeline(
            [("scale", StandardScaler()), ("clf", LogisticRegression(C=params.logreg_c, max_iter=2000))]
        ),
        # early_stopping off: a fixed number of trees, no internal random validation split
        # (reproducible). Large leaves: one user's rows are near-duplicates with shared labels, and small
        # leaves memorise users (an inner time split of the training days preferred 15 leaves / 200 rows
        # to 31 / 40).
        "hgb": HistGradientBoostingClassifier(
            max_iter=params.hgb_max_iter, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=200,
            l2_regularization=1.0, early_stopping=False, random_state=params.seed,
        ),
    }


def train_models(
    X: np.ndarray, y: np.ndarray, params: TrainParams, rule: str = "cart"
) -> tuple[dict[str, Any], dict[str, float]]:
    """(fitted models by name, fit seconds by name)."""
    models = make_models(params, rule)
    secs: dict[str, float] = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        model.fit(X, y)
        secs[name] = time.perf_counter() - t0
    return models, secs


def positive_proba(model: Any, X: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_proba(X)[:, 1], dtype=np.float64)


# --- 5. metrics ----------------------------------------------------------------------------------


def max_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The score threshold with the best F1 (chosen on training rows, applied to validation)."""
    prec, rec, thr = precision_recall_curve(y, p)
    f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
    return float(thr[int(np.argmax(f1))])


def point_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    pred = p >= threshold
    tp = float(np.sum(pred & (y == 1)))
    precision = tp / max(float(pred.sum()), 1.0)
    recall = tp / max(float((y == 1).sum()), 1.0)
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, pc, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(precision + recall, 1e-12),
    }


def bootstrap(
    y: np.ndarray,
    preds: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    groups: np.ndarray,
    n_boot: int,
    seed: int,
    reference: Optional[str] = None,
) -> dict[str, Any]:
    """95% percentile CIs by resampling users (rows of one user are strongly correlated, so a row
    bootstrap would give CIs that are too narrow). All models share each resample, which also gives a
    paired CI of the PR-AUC difference to ``reference``."""
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(inverse.max() + 2))
    members = [order[bounds[g]:bounds[g + 1]] for g in range(len(bounds) - 1)]
    rng = np.random.default_rng(seed)
    samples: dict[str, dict[str, list[float]]] = {m: {k: [] for k in METRICS} for m in preds}
    deltas: dict[str, list[float]] = {m: [] for m in preds}
    skipped = 0
    for _ in range(n_boot):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        yb = y[idx]
        if yb.min() == yb.max():  # one class only: AUCs undefined
            skipped += 1
            continue
        ref_ap = None
        per_model = {m: point_metrics(yb, p[idx], thresholds[m]) for m, p in preds.items()}
        if reference is not None:
            ref_ap = per_model[reference]["pr_auc"]
        for m, vals in per_model.items():
            for k in METRICS:
                samples[m][k].append(vals[k])
            if ref_ap is not None:
                deltas[m].append(vals["pr_auc"] - ref_ap)
    ci = {
        m: {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in ks.items() if v}
        for m, ks in samples.items()
    }
    delta_ci = {
        m: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for m, v in deltas.items() if v
    }
    return {"ci": ci, "pr_auc_delta_ci": delta_ci, "resamples": n_boot - skipped, "skipped": skipped}


def evaluate(
    y: np.ndarray,
    preds: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    groups: np.ndarray,
    params: TrainParams,
    reference: Optional[str] = None,
) -> dict[str, Any]:
    """Point metrics + bootstrap CIs of every model on one set of rows."""
    if len(y) == 0 or y.min() == y.max():
        return {"rows": int(len(y)), "positives": int(y.sum()), "note": "one class only: not evaluated"}
    boot = bootstrap(y, preds, thresholds, groups, params.n_bootstrap, params.seed, reference)
    return {
        "rows": int(len(y)),
        "users": int(len(set(groups))),
        "positives": int(y.sum()),
        "positive_rate": float(y.mean()),
        "models": {
            m: {k: {"value": v, "ci95": boot["ci"].get(m, {}).get(k)}
                for k, v in point_metrics(y, p, thresholds[m]).items()}
            for m, p in preds.items()
        },
        "pr_auc_delta_vs_" + str(reference): boot["pr_auc_delta_ci"],
        "bootstrap": {"unit": "user", "resamples": boot["resamples"], "skipped": boot["skipped"]},
    }


# --- 6. ONNX export ------------------------------------------------------------------------------


def to_onnx(model: Any, n_features: int) -> onnx.ModelProto:
    """skl2onnx graph: float32 ``features`` [None, n] -> ``label``, ``probabilities`` [n, 2] (no ZipMap)."""
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    return convert_sklearn(
        model,
        initial_types=[(ONNX_INPUT, FloatTensorType([None, n_features]))],
        options={id(final): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )


def export_onnx(
    model: Any, path: Path, metadata: Mapping[str, str], n_features: Optional[int] = None
) -> Path:
    """Convert, attach ``metadata`` as metadata_props and write atomically (a running job or a test may
    be reading the old file)."""
    feature_names = json.loads(metadata["feature_names"])
    onx = to_onnx(model, n_features if n_features is not None else len(feature_names))
    onnx.helper.set_model_props(onx, {k: str(v) for k, v in metadata.items()})
    onx.doc_string = f"Purchase propensity. {metadata.get('label_definition', '')}".strip()
    onnx.checker.check_model(onx)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(onx.SerializeToString())
    os.replace(tmp, path)
    return path


def cpu_session(model: str | Path | bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_proba(session: ort.InferenceSession, X: np.ndarray) -> np.ndarray:
    (proba,) = session.run(["probabilities"], {ONNX_INPUT: np.ascontiguousarray(X, dtype=np.float32)})
    return np.asarray(proba[:, 1], dtype=np.float64)


def parity(model: Any, onnx_model: str | Path | bytes, X: np.ndarray) -> float:
    """max |sklearn predict_proba - onnxruntime| on ``X`` (both fed the same float32 values)."""
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    return float(np.max(np.abs(positive_proba(model, X32) - onnx_proba(cpu_session(onnx_model), X32))))


def onnx_latency(onnx_bytes: bytes, X: np.ndarray, budget_s: float = 0.3) -> dict[str, float]:
    """Single-thread CPU serving cost: median microseconds of a batch-1 call, rows/s at batch 1024."""
    sess = cpu_session(onnx_bytes)
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    one: list[float] = []
    t_end = time.perf_counter() + budget_s / 2
    i = 0
    while time.perf_counter() < t_end or len(one) < 20:
        row = X32[i % len(X32): i % len(X32) + 1]
        t0 = time.perf_counter()
        sess.run(["probabilities"], {ONNX_INPUT: row})
        one.append(time.perf_counter() - t0)
        i += 1
    big = np.resize(X32, (1024, X32.shape[1]))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < budget_s / 2 or n == 0:
        sess.run(["probabilities"], {ONNX_INPUT: big})
        n += 1
    return {
        "batch1_median_us": float(np.median(one) * 1e6),
        "batch1_p99_us": float(np.percentile(one, 99) * 1e6),
        "batch1024_rows_per_s": float(n * 1024 / (time.perf_counter() - t0)),
        "onnx_bytes": len(onnx_bytes),
    }


# --- provenance ----------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def label_definition(horizon_hours: float) -> str:
    return (
        f"1 if the same user has a purchase event with event_time in (t, t + {horizon_hours:g}h], "
        f"t = the scored event's time (a purchase at t itself does not count), else 0. Rows with "
        f"t + {horizon_hours:g}h after the last event time of the training data are censored (excluded)."
    )


def model_version(
    fingerprint: Mapping[str, Any], params: TrainParams, chosen: str, estimator: Any = None
) -> str:
    """``propensity-v<features version>-<hash>``: the same data, settings, estimator and library version
    give the same id; any change gives a new one."""
    blob = json.dumps(
        {"data": fingerprint, "params": dataclasses.asdict(params), "model": chosen,
         "estimator": None if estimator is None else estimator.get_params(deep=True),
         "sklearn": sklearn.__version__, "features": FEATURE_NAMES},
        sort_keys=True, default=repr,
    )
    return f"propensity-v{FEATURES_VERSION}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def model_metadata(
    version: str, params: TrainParams, fingerprint: Mapping[str, Any], metrics: Mapping[str, Any],
    chosen: str, threshold: float, feature_names: Sequence[str] = FEATURE_NAMES,
) -> dict[str, str]:
    return {
        "model_version": version,
        "model_type": chosen,
        "feature_names": json.dumps(list(feature_names)),
        "features_version": str(FEATURES_VERSION),
        "horizon_hours": f"{params.horizon_hours:g}",
        "label_definition": label_definition(params.horizon_hours),
        "decision_threshold": repr(threshold),
        "training_data_fingerprint": json.dumps(fingerprint, sort_keys=True),
        "metrics": json.dumps(metrics, sort_keys=True),
        "train_params": json.dumps(dataclasses.asdict(params), sort_keys=True),
        "created_by": (
            f"model_export.train (scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__})"
        ),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --- 7. report -----------------------------------------------------------------------------------


def permutation_importance_ap(model: Any, X: np.ndarray, y: np.ndarray, seed: int) -> dict[str, list[float]]:
    """PR-AUC drop when one feature is shuffled, on a validation sample: {feature: [mean, std]}."""
    from sklearn.inspection import permutation_importance

    r = permutation_importance(model, X, y, scoring="average_precision", n_repeats=5, random_state=seed)
    stats = zip(FEATURE_NAMES, r.importances_mean, r.importances_std, strict=True)
    return {n: [float(m), float(s)] for n, m, s in stats}


def write_plots(
    out_dir: Path, y: np.ndarray, preds: Mapping[str, np.ndarray], importance: Mapping[str, list[float]],
    chosen: str,
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # headless (CI, containers)
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_curve

    files: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        files.append(name)

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for m, p in preds.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{m} (AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, validation")
    ax.legend(loc="lower right")
    save(fig, "roc.png")

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for m, p in preds.items():
        prec, rec, _ = precision_recall_curve(y, p)
        # steps, as average precision is computed: a straight line would invent points between levels
        ax.plot(rec, prec, drawstyle="steps-post", label=f"{m} (AP {average_precision_score(y, p):.3f})")
    ax.axhline(y.mean(), color="k", ls=":", lw=0.8, label=f"base rate {y.mean():.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, validation")
    ax.legend(loc="upper right")
    save(fig, "pr.png")

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for m, p in preds.items():
        frac, mean_p = calibration_curve(y, p, n_bins=10, strategy="quantile")
        ax.plot(mean_p, frac, "o-", ms=3, label=m)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="mean predicted probability", ylabel="observed purchase rate",
           title="Calibration (deciles), validation")
    ax.legend(loc="upper left")
    save(fig, "calibration.png")

    items = sorted(importance.items(), key=lambda kv: kv[1][0])
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.barh([k for k, _ in items], [v[0] for _, v in items], xerr=[v[1] for _, v in items], color="tab:blue")
    ax.set(xlabel="PR-AUC drop when shuffled", title=f"Permutation importance, {chosen}\n(validation sample)")
    save(fig, "importance.png")
    return files


def _fmt(entry: Mapping[str, Any]) -> str:
    ci = entry.get("ci95")
    return f"{entry['value']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{entry['value']:.3f}"


def _table(ev: Mapping[str, Any], latency: Optional[Mapping[str, Mapping[str, float]]], chosen: str,
           mark: str = "chosen") -> list[str]:
    """One row per model: metrics with CIs, plus serving latency columns unless ``latency`` is None."""
    head = "| model | " + " | ".join(METRICS) + (" | batch-1 µs | rows/s @1024 |" if latency is not None else " |")
    lines = [head, "|" + "---|" * (len(METRICS) + (3 if latency is not None else 1))]
    for m, vals in ev["models"].items():
        name = f"**{m}** ({mark})" if m == chosen else m
        row = f"| {name} | " + " | ".join(_fmt(vals[k]) for k in METRICS) + " |"
        if latency is not None:
            lat = latency.get(m)
            row += (f" {lat['batch1_median_us']:.0f} | {lat['batch1024_rows_per_s']:,.0f} |" if lat
                    else " n/a (2 lookups) | n/a |")
        lines.append(row)
    return lines


def _pct(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _segment_lines(seg: Optional[Mapping[str, Any]], horizon_hours: float) -> list[str]:
    if not seg:
        return []
    segs = seg["segments"]
    lines = [
        f"## Segments: {seg['model_version']}",
        "",
        f"`{seg['onnx_file']}`: k-means, k={seg['k']}, on the training rows' features after "
        f"`log(max(x, 0) + 1)` of the {len(seg['log_features'])} skewed non-negative columns and "
        "standardisation, all inside the ONNX graph (input: the same float32 `features` vector as the "
        "propensity model; outputs `label` = segment id, `scores` = distances to the centres). "
        f"{len(seg['features'])} of {len(FEATURE_NAMES)} features are used; left out as describing the event "
        f"rather than the user: {', '.join(f'`{n}`' for n in FEATURE_NAMES if n not in seg['features']) or 'none'}. "
        "Segment ids are ordered by training size. Descriptions are generated from the centres: the "
        "purchase history when it is clear-cut, then the two features furthest from the training mean "
        "(in standard deviations, at least 0.5).",
        "",
        f"Silhouette (sample of {min(seg['params']['silhouette_rows'], sum(s['train_rows'] for s in segs)):,} "
        f"training rows): {seg['silhouette_sample']:.3f}; inertia per row {seg['inertia_per_row']:.2f}. "
        f"ONNX vs scikit-learn segment on {seg['parity_rows']:,} validation rows: {seg['parity_mismatches']} "
        "differ (must be 0).",
        "",
        f"| segment | description | training rows | share | validation rows | validation users* | "
        f"purchase rate ({horizon_hours:g}h), training | purchase rate, validation |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {s['id']} | {s['name']} | {s['train_rows']:,} | {s['train_share']:.1%} | {s['val_rows']:,} | "
          f"{s['val_users']:,} | {_pct(s['train_purchase_rate'])} | {_pct(s['val_purchase_rate'])} |"
          for s in segs],
        "",
        "\\* a user counted once, in the segment of the user's latest validation row. Purchase rate = share "
        "of rows whose user purchases within the horizon (the propensity label).",
        "",
        "<details><summary>Segment centres (feature units)</summary>",
        "",
        "| feature | " + " | ".join(str(s["id"]) for s in segs) + " |",
        "|---|" + "---|" * len(segs),
        *[f"| `{n}` | " + " | ".join(f"{s['centre'][n]:.3g}" for s in segs) + " |" for n in seg["features"]],
        "",
        "</details>",
        "",
    ]
    return lines


def _retail_lines(rr: Optional[Mapping[str, Any]]) -> list[str]:
    if not rr:
        return []
    if "skipped" in rr:
        return ["## Second shop: UCI Online Retail", "", f"Not evaluated in this run: {rr['skipped']}.", ""]
    rp = rr["params"]
    lines = [
        "## Second shop: UCI Online Retail (evaluation only)",
        "",
        "The same pipeline -- replay through `udfs.profile.replay` + `udfs.features.feature_vector`, "
        "purged time split, user holdout, rule / LR / HGB, user-bootstrap CIs -- on a different shop. "
        "Models are fitted here on this shop's rows; nothing of this goes into the exported model.",
        "",
        f"- `{rr['file']}` (sha256 `{rr['sha256'][:16]}...`): UCI Online Retail (CC BY 4.0), a UK gift "
        f"wholesaler; {rr['events']:,} purchase lines with a customer id"
        + (f" (first {rp['limit']:,} lines only)" if rp.get("limit") else "")
        + f", {rr['users']:,} customers, {rr['sessions']:,} invoices, {rr['first_event']} to {rr['end_time']}. "
        "Cancellations and lines without a customer are left out (`tools.datasets.read_online_retail`).",
        "- Only purchase events, with price and quantity: view/cart/fav features are 0 throughout.",
        "- Rows: one per invoice -- its last line, i.e. the profile after the whole basket (all lines are "
        "replayed; scoring every line would weight big baskets by their line count). Label: the customer "
        "has another purchase strictly after the invoice time, within the horizon.",
        f"- Split: training rows before {rr['cutoff']} whose label window closes before it; validation "
        "rows from the cutoff to the last uncensored row; 20% of customers (by hash) held out of training.",
        f"- `rule` here: {FrequencyRule.description} (the cart rule has nothing to work on without carts).",
        "- Why two horizons: wholesale customers reorder every few weeks, so a 24 h label mostly marks "
        "split or amended orders of the same day; 30 days is the horizon a retention team would use.",
        "",
    ]
    for h in rr["horizons"]:
        title = f"### Horizon {h['horizon_days']:g} day{'s' if h['horizon_days'] != 1 else ''}"
        if "validation" not in h:
            lines += [title, "", f"Not evaluated: {h.get('note')}.", ""]
            continue
        val, unseen = h["validation"], h["validation_unseen_users"]
        lines += [
            title,
            "",
            f"{h['rows']:,} labelled rows (invoices up to {h['label_window_end']}); train {h['train_rows']:,} "
            f"({h['train_positive_rate']:.3f} positive), validation {val['rows']:,} "
            f"({val['positive_rate']:.3f} positive, {val['users']:,} customers).",
            "",
            *_table(val, None, h["best"], mark="best learned"),
            "",
        ]
        key = f"pr_auc_delta_vs_{h['best']}"
        if key in val:
            lines += [
                f"Paired bootstrap CI of PR-AUC(model) - PR-AUC({h['best']}): "
                + ", ".join(f"{m}: [{lo:+.3f}, {hi:+.3f}]" for m, (lo, hi) in val[key].items() if m != h["best"]),
                "",
            ]
        if "models" in unseen:
            lines += [
                f"Unseen (held-out) customers, {unseen['rows']:,} rows, ROC-AUC / PR-AUC: "
                + "; ".join(f"{m} {_fmt(v['roc_auc'])} / {_fmt(v['pr_auc'])}" for m, v in unseen["models"].items())
                + ".",
                "",
            ]
    lines += [f"Load {rr['load_s']:.1f} s, replay {rr['replay_s']:.1f} s.", ""]
    return lines


def write_model_card(out_dir: Path, report: Mapping[str, Any], plots: Sequence[str]) -> Path:
    p = report["params"]
    split = report["split"]
    chosen = report["chosen"]
    val, unseen = report["validation"], report["validation_unseen_users"]
    lines = [
        f"# Model card: {report['model_version']}",
        "",
        f"Generated by `python -m model_export.train` at {report['created_at']}; the ONNX file is "
        f"`{report['onnx_file']}`. Numbers below are computed, not edited.",
        "",
        "## What it predicts",
        "",
        f"Purchase propensity for every incoming user event. Label: {label_definition(p['horizon_hours'])}",
        "",
        f"Input: float32 `{ONNX_INPUT}` [n, {len(FEATURE_NAMES)}], features version {FEATURES_VERSION} "
        f"(`schemas/features.json`), computed by `udfs.features.feature_vector` -- the same function the "
        "Flink job runs, so training and serving features are identical by construction. Output: "
        "`probabilities` [n, 2]; column 1 is P(purchase within the horizon).",
        "",
        "## Data",
        "",
        f"- `{report['data']['file']}` (sha256 `{report['data']['sha256'][:16]}...`): Taobao UserBehavior, "
        f"complete 9-day histories of {report['data']['users']} users (research-use licence, see SOURCE.md).",
        f"- {report['data']['events_read']:,} events read; {report['data']['dropped_before_window']} dropped "
        "as before 2017-11-25 00:00 Beijing time (known bad timestamps of the original data); the rest "
        "stable-sorted by time and replayed through `udfs.profile.replay` (point-in-time correct: each row "
        "sees only its own and earlier events of its user).",
        f"- Censoring: {report['data']['censored_rows']:,} events within {p['horizon_hours']:g}h of the last "
        f"event ({report['data']['end_time']}) have an incomplete label window and are not rows (they "
        f"still update the profile). {report['data']['labelled_rows']:,} labelled rows, positive rate "
        f"{report['data']['positive_rate']:.3f}.",
        "- Taobao has no prices, so spend-based signals are absent; events are pv/cart/fav/buy only.",
        "",
        "## Split",
        "",
        f"- Time: training rows before the cutoff {split['cutoff']} (first {p['train_days']} days); "
        f"validation rows from the cutoff on. Purge: {p['purge']} -- a training row must have its whole "
        f"label window before the cutoff ({split['purged_rows']:,} rows dropped), so no training label reads "
        "the validation period.",
        f"- Users: {split['users_first_seen_after_cutoff']} users are first seen after the cutoff (the head "
        "file holds complete histories of users active from the first day), so new users are simulated by "
        f"a user-level holdout: {split['holdout_users']} users ({p['holdout_frac']:.0%}, by a hash of "
        "user_id) give no training rows at all.",
        f"- Rows: train {split['train_rows']:,} ({split['train_positive_rate']:.3f} positive), validation "
        f"{val['rows']:,} ({val['positive_rate']:.3f} positive, {val['users']} users), of which unseen "
        f"users {unseen.get('rows', 0):,}.",
        "- Validation features come from the full-history replay (a validation row knows the user's "
        "training-period history, as the live job would).",
        "",
        "## Models compared",
        "",
        f"- `rule`: {RuleBaseline.description}; probability = the bucket's training purchase rate "
        "(Laplace-smoothed). Reference only, not exported.",
        f"- `logreg`: StandardScaler + LogisticRegression(C={p['logreg_c']}).",
        f"- `hgb`: HistGradientBoostingClassifier({p['hgb_max_iter']} iterations, learning rate 0.05, 15 "
        "leaves, min_samples_leaf 200, l2 1.0, no early stopping).",
        "",
        "Precision/recall/F1 use each model's threshold that maximises F1 on its own training-row "
        "predictions (in-sample), applied unchanged to validation. 95% CIs: percentile bootstrap over "
        f"users ({val['bootstrap']['resamples']} resamples; users, not rows, because one user's rows are "
        "correlated). Latency: onnxruntime, CPU, 1 thread, this machine.",
        "",
        f"### Validation, all users ({val['rows']:,} rows)",
        "",
        *_table(val, report["latency"], chosen),
        "",
    ]
    delta_key = f"pr_auc_delta_vs_{chosen}"
    if delta_key in val:
        lines += [
            f"Paired bootstrap CI of PR-AUC(model) - PR-AUC({chosen}): "
            + ", ".join(f"{m}: [{lo:+.3f}, {hi:+.3f}]"
                        for m, (lo, hi) in val[delta_key].items() if m != chosen),
            "",
        ]
    lines += [f"### Validation, unseen (held-out) users ({unseen.get('rows', 0):,} rows)", ""]
    if "models" in unseen:
        lines += [*_table(unseen, report["latency"], chosen), ""]
    else:
        lines += [f"Not evaluated: {unseen.get('note', 'no rows')}.", ""]
    roc = val["models"][chosen]["roc_auc"]
    if roc["ci95"] and roc["ci95"][0] < 0.65:
        lines += [
            f"**Weak signal.** The chosen model's validation ROC-AUC is {_fmt(roc)}: the profile features "
            f"of version {FEATURES_VERSION} separate buyers from non-buyers only slightly at this horizon. "
            "Treat the scores as a ranking hint, not a decision.",
            "",
        ]
    lines += [
        "## Chosen model",
        "",
        f"`{chosen}`: the best validation PR-AUC among the learned models ({report['choice_reason']}). "
        f"Decision threshold (max training F1): {report['thresholds'][chosen]:.4f}. It is the model fitted "
        "on the training rows only (not refitted on all data), so the numbers above describe the exported "
        f"file. ONNX vs scikit-learn on all {val['rows']:,} validation rows: max |diff| = "
        f"{report['parity_max_abs_diff']:.2e} (limit {PARITY_TOL:g}).",
        "",
        *[f"![{Path(f).stem}]({f})" for f in plots],
        "",
        *_segment_lines(report.get("segments"), p["horizon_hours"]),
        *_retail_lines(report.get("online_retail")),
        "## Limits",
        "",
        f"- {report['data']['users']} users and 9 days: CIs are wide; the unseen-user estimate rests on the "
        "holdout users only.",
        "- Trained on one shop without prices; the second shop above is evaluated, not trained into the "
        "exported model. The time features use UTC hours.",
        "- The label is any purchase by the user, not of the item in the event.",
        "- The base rate drifts by day (table below), so scores are not calibrated probabilities for "
        "another period; recalibrate on recent data before reading them as such.",
        "- Everyone's history starts at the window start, so lifetime counts and time since first seen "
        "grow with the calendar: validation rows sit above the training range of those features "
        "(trees cannot extrapolate).",
        "",
        "| day (Beijing) | labelled rows | positive rate |",
        "|---|---|---|",
        *[f"| {d['day']} | {d['rows']:,} | {d['positive_rate']:.3f} |" for d in report["data"]["daily"]],
        "",
        "## Timings (this machine, seconds)",
        "",
        "| stage | s |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in report["timings_s"].items()],
        "",
    ]
    path = out_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# --- 8. segments ---------------------------------------------------------------------------------

SEGMENTS_FILE = "segments.onnx"
SEGMENT_PARITY_ROWS = "all validation rows"


@dataclass(frozen=True)
class SegmentParams:
    """Everything that changes the segment model (hashed into its model_version)."""

    k: int = 6
    # Event-context features (this event's type, hour, category) describe the event, not the user: left
    # out, so a user's segment does not flip with every event. fnmatch patterns on feature names.
    exclude: tuple[str, ...] = ("ev_*", "hour_of_day*", "*event_category*")
    log: str = "auto"  # 'auto': log1p of non-negative columns with skewness > skew_threshold; 'none'
    skew_threshold: float = 1.0
    n_init: int = 10
    silhouette_rows: int = 5000
    seed: int = 0


def segments_path(model_path: Path) -> Path:
    """The segment model lives next to the propensity model."""
    return Path(model_path).parent / SEGMENTS_FILE


def segment_columns(names: Sequence[str], exclude: Sequence[str]) -> list[int]:
    """Columns the segments are built on: every feature not matched by an ``exclude`` pattern (all of
    them if the patterns would leave none)."""
    cols = [i for i, n in enumerate(names) if not any(fnmatch.fnmatchcase(n, pat) for pat in exclude)]
    return cols or list(range(len(names)))


class SegmentPrep(BaseEstimator, TransformerMixin):
    """Column selection + ``log(max(x, 0) + 1)`` of the skewed non-negative columns, in float64. A
    registered skl2onnx converter (``_convert_segment_prep``) emits the same operations, so the whole
    pipeline exports to one ONNX graph and the k-means distances are computed in float64 on both sides
    (float32 distances flip near-tie labels between scikit-learn and onnxruntime)."""

    def __init__(self, columns: Sequence[int] = (), log: str = "auto", skew_threshold: float = 1.0) -> None:
        self.columns = columns
        self.log = log
        self.skew_threshold = skew_threshold

    def fit(self, X: np.ndarray, y: Any = None) -> SegmentPrep:
        X = np.asarray(X, dtype=np.float64)
        self.n_features_in_ = X.shape[1]
        self.columns_ = np.asarray(list(self.columns) or range(X.shape[1]), dtype=np.int64)
        Z = X[:, self.columns_]
        if self.log == "none":
            self.log_mask_ = np.zeros(Z.shape[1], dtype=bool)
        elif self.log == "auto":
            mean, std = Z.mean(axis=0), Z.std(axis=0)
            safe = np.where(std > 0, std, 1.0)
            skew = np.where(std > 0, (((Z - mean) / safe) ** 3).mean(axis=0), 0.0)
            self.log_mask_ = (Z.min(axis=0) >= 0) & (skew > self.skew_threshold)
        else:
            raise ValueError(f"log must be 'auto' or 'none', got {self.log!r}")
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        Z = np.asarray(X, dtype=np.float64)[:, self.columns_]
        return np.where(self.log_mask_, np.log(np.maximum(Z, 0.0) + 1.0), Z)


def _segment_prep_shape(operator: Any) -> None:
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = DoubleTensorType([n, len(operator.raw_operator.columns_)])


def _convert_segment_prep(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.algebra.onnx_ops import OnnxAdd, OnnxCast, OnnxGather, OnnxLog, OnnxMax, OnnxWhere

    op, opv = operator.raw_operator, container.target_opset
    picked = OnnxCast(OnnxGather(operator.inputs[0], op.columns_, axis=1, op_version=opv),
                      to=onnx.TensorProto.DOUBLE, op_version=opv)
    logged = OnnxLog(OnnxAdd(OnnxMax(picked, np.array([0.0]), op_version=opv), np.array([1.0]), op_version=opv),
                     op_version=opv)
    out = OnnxWhere(op.log_mask_.reshape(1, -1), logged, picked, op_version=opv,
                    output_names=operator.outputs[:1])
    out.add_to(scope, container)


def _parse_segment_prep(scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None) -> list[Any]:
    """Declares the output float64 at parse time: the steps after it (scaler, k-means) take their
    types from it then, and run in float64 too."""
    from skl2onnx._supported_operators import get_model_alias

    op = scope.declare_local_operator(get_model_alias(type(model)), model)
    op.inputs.append(inputs[0])
    op.outputs.append(scope.declare_local_variable("segment_input", DoubleTensorType()))
    return op.outputs


update_registered_converter(SegmentPrep, "ProfileEngineSegmentPrep", _segment_prep_shape, _convert_segment_prep,
                            parser=_parse_segment_prep)


def make_segmenter(params: SegmentParams, feature_names: Sequence[str] = FEATURE_NAMES) -> Pipeline:
    return Pipeline([
        ("prep", SegmentPrep(segment_columns(feature_names, params.exclude), params.log, params.skew_threshold)),
        ("scale", StandardScaler()),
        ("kmeans", KMeans(n_clusters=params.k, n_init=params.n_init, random_state=params.seed)),
    ])


def fit_segmenter(X: np.ndarray, params: SegmentParams) -> Pipeline:
    """Fit, then renumber the clusters by size (segment 0 = the most training rows), so ids are stable
    across reruns of the same data and readable in the card."""
    if len(X) < params.k:
        raise ValueError(f"{len(X)} rows cannot make {params.k} segments")
    pipe = make_segmenter(params).fit(X)
    km: KMeans = pipe.named_steps["kmeans"]
    order = np.argsort(-np.bincount(km.labels_, minlength=params.k), kind="stable")
    km.cluster_centers_ = km.cluster_centers_[order]
    km.labels_ = np.argsort(order)[km.labels_]
    return pipe


# Readable phrases for known feature names: (high, low). Unknown names fall back to "high/low <name>",
# so a new feature list still gets descriptions, only plainer ones.
_PHRASES: dict[str, tuple[str, str]] = {
    "n_events": ("very active", "few events"),
    "n_view": ("heavy viewers", "light viewers"),
    "n_cart": ("frequent carters", "rarely cart"),
    "n_fav": ("frequent favouriters", "rarely favourite"),
    "n_purchase": ("frequent buyers", "few purchases"),
    "spend": ("big spenders", "low spend"),
    "log_spend": ("big spenders", "low spend"),
    "items": ("many units bought", "few units bought"),
    "distinct_categories": ("broad category range", "narrow category range"),
    "distinct_items": ("many distinct items", "few distinct items"),
    "has_purchased_before": ("past buyers", "never purchased"),
    "log_secs_since_first_seen": ("long-standing users", "new users"),
    "log_secs_since_prev_event": ("long gaps between events", "rapid-fire events"),
    "log_secs_since_last_purchase": ("last purchase long ago", "recent or no purchase"),
    "cart_to_purchase": ("carts convert to purchases", "carts do not convert"),
    "view_to_cart": ("cart much of what they view", "browse without carting"),
    "session_events": ("long sessions", "short sessions"),
    "log_session_secs": ("long sessions", "short sessions"),
    "session_distinct_items": ("many items per session", "few items per session"),
    "interest_top_share": ("focused on one category", "interests spread out"),
    "interest_n_categories": ("many interest categories", "few interest categories"),
}
_PURCHASE_FAMILY = {"n_purchase", "has_purchased_before", "log_secs_since_last_purchase", "cart_to_purchase",
                    "items", "spend", "log_spend"}
# Features that would repeat each other's phrase (units bought tracks purchases where there is no quantity).
_SAME = {"items": "n_purchase", "log_spend": "spend", "log_session_secs": "session_events",
         "interest_n_categories": "distinct_categories"}
_WINDOW = re.compile(r"^(.*)_(\d+(?:ms|s|m|h|d|w))$")


def _split_window(name: str) -> tuple[str, Optional[str]]:
    """('n_view', '7d') for 'n_view_7d'; (name, None) for a lifetime feature or an unknown pattern."""
    m = _WINDOW.match(name)
    return (m.group(1), m.group(2)) if m and m.group(1) in _PHRASES else (name, None)


def _phrase(name: str, high: bool) -> str:
    base, window = _split_window(name)
    text = _PHRASES[base][0 if high else 1] if base in _PHRASES else f"{'high' if high else 'low'} {name}"
    return f"{text} (last {window})" if window else text


def describe_segments(pipe: Pipeline, feature_names: Sequence[str] = FEATURE_NAMES, top: int = 2,
                      min_z: float = 0.5) -> tuple[list[str], list[dict[str, float]]]:
    """(description per segment, centre per segment in feature units). A description names the purchase
    history when it is clear-cut ("no purchases" / "all past buyers"), then the ``top`` features whose
    centre lies furthest from the training mean (in standard deviations of the scaled, log-transformed
    column; at least ``min_z``; one phrase per feature whatever its window), e.g. "no purchases, heavy
    viewers (last 7d), long sessions"."""
    prep: SegmentPrep = pipe.named_steps["prep"]
    scale: StandardScaler = pipe.named_steps["scale"]
    z = pipe.named_steps["kmeans"].cluster_centers_  # scaled space: z-scores vs the training rows
    names = [feature_names[i] for i in prep.columns_]
    raw = scale.inverse_transform(z)
    raw = np.where(prep.log_mask_, np.expm1(raw), raw)
    raw = np.where(np.abs(raw) < 1e-9, 0.0, raw)  # expm1(log1p(0)) round-off: print 0, not 5e-15
    centres = [{n: float(v) for n, v in zip(names, row, strict=True)} for row in raw]
    bought = next((n for n in ("has_purchased_before", "n_purchase") if n in names), None)
    descriptions: list[str] = []
    for k in range(len(z)):
        parts: list[str] = []
        skip: set[str] = set()
        if bought is not None and centres[k][bought] < 0.05:
            parts.append("no purchases")
            skip |= _PURCHASE_FAMILY  # "few purchases (7d)" would only repeat it
        elif bought == "has_purchased_before" and centres[k][bought] > 0.95:
            parts.append("all past buyers")
            # these are 0 for never-buyers, so they stand out for any group of buyers: not informative
            skip |= {bought, "log_secs_since_last_purchase", "cart_to_purchase"}
        n_status = len(parts)
        for j in np.argsort(-np.abs(z[k]), kind="stable"):
            if len(parts) - n_status >= top or abs(z[k, j]) < min_z:
                break
            base, _ = _split_window(names[j])
            base = _SAME.get(base, base)
            if base in skip:
                continue
            skip.add(base)
            parts.append(_phrase(names[j], bool(z[k, j] > 0)))
        descriptions.append(", ".join(parts) or "average on every feature")
    for k, d in enumerate(descriptions):  # names are labels: keep them unique
        if descriptions.count(d) > 1:
            descriptions[k] = f"{d} #{k}"
    return descriptions, centres


def segments_version(fingerprint: Mapping[str, Any], params: SegmentParams, pipe: Pipeline) -> str:
    blob = json.dumps(
        {"data": fingerprint, "params": dataclasses.asdict(params), "estimator": pipe.get_params(deep=True),
         "sklearn": sklearn.__version__, "features": FEATURE_NAMES},
        sort_keys=True, default=repr,
    )
    return f"segments-v{FEATURES_VERSION}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def segments_metadata(
    version: str, pipe: Pipeline, names: Sequence[str], params: SegmentParams, fingerprint: Mapping[str, Any],
    feature_names: Sequence[str] = FEATURE_NAMES,
) -> dict[str, str]:
    prep: SegmentPrep = pipe.named_steps["prep"]
    return {
        "model_version": version,
        "model_type": "kmeans",
        "feature_names": json.dumps(list(feature_names)),
        "features_version": str(FEATURES_VERSION),
        "k": str(params.k),
        "segment_names": json.dumps(list(names)),
        "segment_features": json.dumps([feature_names[i] for i in prep.columns_]),
        "log_features": json.dumps([feature_names[i] for i, m in zip(prep.columns_, prep.log_mask_, strict=True)
                                    if m]),
        "training_data_fingerprint": json.dumps(fingerprint, sort_keys=True),
        "segment_params": json.dumps(dataclasses.asdict(params), sort_keys=True),
        "created_by": (
            f"model_export.train (scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__})"
        ),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def export_segments(pipe: Pipeline, path: Path, metadata: Mapping[str, str]) -> Path:
    """float32 ``features`` [None, n] -> ``label`` (int64 segment) + ``scores`` (distances), with
    ``metadata`` as metadata_props; written atomically."""
    n = len(json.loads(metadata["feature_names"]))
    onx = convert_sklearn(pipe, initial_types=[(ONNX_INPUT, FloatTensorType([None, n]))],
                          target_opset=TARGET_OPSET)
    onnx.helper.set_model_props(onx, {k: str(v) for k, v in metadata.items()})
    onx.doc_string = f"User segments: k-means, k={metadata.get('k')}."
    onnx.checker.check_model(onx)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(onx.SerializeToString())
    os.replace(tmp, path)
    return path


def segment_parity(pipe: Pipeline, onnx_model: str | Path | bytes, X: np.ndarray) -> int:
    """Rows whose scikit-learn and onnxruntime segments differ (both fed the same float32 values)."""
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    (labels, _) = cpu_session(onnx_model).run(["label", "scores"], {ONNX_INPUT: X32})
    return int(np.sum(np.asarray(labels).reshape(-1) != pipe.predict(X32)))


def segment_report(
    pipe: Pipeline, names: Sequence[str], centres: Sequence[Mapping[str, float]], ds: Dataset, split: Split,
    params: SegmentParams,
) -> dict[str, Any]:
    """Size and purchase rate of each segment, on training and validation rows; silhouette on a sample."""
    from sklearn.metrics import silhouette_score

    tr, va = pipe.predict(ds.X[split.train]), pipe.predict(ds.X[split.val])
    yt, yv, uv = ds.y[split.train], ds.y[split.val], ds.users[split.val]
    last: dict[str, int] = {}  # a user's segment = the segment of the user's latest validation row
    for u, s in zip(uv, va, strict=True):
        last[u] = int(s)
    users = np.bincount(np.fromiter(last.values(), dtype=np.int64, count=len(last)), minlength=params.k)
    rng = np.random.default_rng(params.seed)
    sample = rng.choice(len(split.train), size=min(params.silhouette_rows, len(split.train)), replace=False)
    Z = pipe[:-1].transform(ds.X[split.train][sample])
    sil = float(silhouette_score(Z, tr[sample])) if len(set(tr[sample])) > 1 else float("nan")
    segs = []
    for k in range(params.k):
        segs.append({
            "id": k, "name": names[k],
            "train_rows": int((tr == k).sum()), "train_share": float((tr == k).mean()),
            "train_purchase_rate": float(yt[tr == k].mean()) if (tr == k).any() else None,
            "val_rows": int((va == k).sum()), "val_share": float((va == k).mean()) if len(va) else None,
            "val_users": int(users[k]),
            "val_purchase_rate": float(yv[va == k].mean()) if (va == k).any() else None,
            "centre": dict(centres[k]),
        })
    prep: SegmentPrep = pipe.named_steps["prep"]
    return {
        "k": params.k,
        "params": dataclasses.asdict(params),
        "features": [FEATURE_NAMES[i] for i in prep.columns_],
        "log_features": [FEATURE_NAMES[i] for i, m in zip(prep.columns_, prep.log_mask_, strict=True) if m],
        "inertia_per_row": float(pipe.named_steps["kmeans"].inertia_ / max(len(split.train), 1)),
        "silhouette_sample": sil,
        "segments": segs,
    }


def train_segments(ds: Dataset, split: Split, out: Path, params: SegmentParams,
                   fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """Fit on the training rows, describe, export next to ``out``, check parity on the validation rows
    (exit non-zero on any disagreement) and return the card's segment section."""
    pipe = fit_segmenter(ds.X[split.train], params)
    names, centres = describe_segments(pipe)
    version = segments_version(fingerprint, params, pipe)
    path = export_segments(pipe, segments_path(out),
                           segments_metadata(version, pipe, names, params, fingerprint))
    X = ds.X[split.val] if len(split.val) else ds.X[split.train]
    mismatches = segment_parity(pipe, path, X)
    print(f"[train] segment parity: {mismatches} of {len(X):,} validation rows differ (sklearn vs onnxruntime)")
    if mismatches:
        path.unlink(missing_ok=True)
        raise SystemExit(f"segment parity check failed: {mismatches} rows assigned differently")
    return {"model_version": version, "onnx_file": path.name, "parity_mismatches": mismatches,
            "parity_rows": len(X), **segment_report(pipe, names, centres, ds, split, params)}


# --- 9. a second shop: Online Retail (evaluation only) ------------------------------------------

ONLINE_RETAIL_DIR = "online_retail_uci"
ONLINE_RETAIL_FILE = "online_retail.csv.gz"


@dataclass(frozen=True)
class RetailParams:
    """Evaluation of the same pipeline on UCI Online Retail. Nothing here changes the exported model
    (that stays the Taobao one), so these are not part of any model_version."""

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


def evaluate_shop(
    events: Sequence[Event], rp: RetailParams, params: TrainParams, rule: str = "frequency"
) -> dict[str, Any]:
    """Replay once (rows labelled with the shortest horizon), then per horizon: relabel, time split at
    ``rp.cutoff`` (purged, user holdout as for Taobao), fit rule / LR / HGB on the training rows and
    evaluate them with user-bootstrap CIs on the validation rows."""
    horizons = sorted(rp.horizons_days)
    if not horizons:
        raise ValueError("no horizons")
    t0 = time.perf_counter()
    base = build_dataset(events, int(round(horizons[0] * DAY_MS)), rows=rp.rows)
    replay_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "events": len(events),
        "users": len({e.user_id for e in events}),
        "sessions": len({(e.user_id, e.session_id) for e in events}),
        "rows_per": rp.rows,
        "first_event": _iso_utc(min(e.event_time for e in events)),
        "end_time": _iso_utc(base.end_ms),
        "cutoff": _iso_utc(rp.cutoff_ms),
        "rule": rule,
        "replay_s": replay_s,
        "horizons": [],
    }
    for days in horizons:
        h_ms = int(round(days * DAY_MS))
        ds = base if days == horizons[0] else relabel(base, events, h_ms)
        split = split_rows(ds, rp.cutoff_ms, h_ms, params.holdout_frac, params.purge, params.seed)
        entry: dict[str, Any] = {
            "horizon_days": days, "rows": len(ds), "censored": ds.n_censored,
            "train_rows": int(len(split.train)), "val_rows": int(len(split.val)),
            "label_window_end": _iso_utc(ds.end_ms - h_ms),
        }
        ytr = ds.y[split.train]
        if len(split.train) == 0 or len(split.val) == 0 or ytr.min() == ytr.max():
            out["horizons"].append({**entry, "note": "empty split or one class in training: not evaluated"})
            continue
        Xtr = ds.X[split.train]
        models, _ = train_models(Xtr, ytr, params, rule=rule)
        thresholds = {m: max_f1_threshold(ytr, positive_proba(mod, Xtr)) for m, mod in models.items()}
        Xv, yv, uv = ds.X[split.val], ds.y[split.val], ds.users[split.val]
        preds = {m: positive_proba(mod, Xv) for m, mod in models.items()}
        best = max(LEARNED, key=lambda m: average_precision_score(yv, preds[m]) if yv.min() != yv.max() else 0)
        mask = np.isin(split.val, split.val_unseen)
        entry.update(
            train_positive_rate=float(ytr.mean()),
            holdout_users=split.holdout_users,
            best=best,
            validation=evaluate(yv, preds, thresholds, uv, params, reference=best),
            validation_unseen_users=evaluate(yv[mask], {m: p[mask] for m, p in preds.items()}, thresholds,
                                             uv[mask], params, reference=best),
        )
        out["horizons"].append(entry)
    return out


def evaluate_online_retail(path: Path, rp: RetailParams, params: TrainParams) -> dict[str, Any]:
    t0 = time.perf_counter()
    events = read_online_retail(path, limit=rp.limit)
    load_s = time.perf_counter() - t0
    if not events:
        raise SystemExit(f"no usable purchase lines in {path}")
    res = evaluate_shop(events, rp, params)
    return {"file": path.name, "sha256": file_sha256(path), "params": dataclasses.asdict(rp), "load_s": load_s,
            **res}


# --- orchestration -------------------------------------------------------------------------------


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


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, BEIJING).isoformat(timespec="seconds")


def _daily(ds: Dataset, day0: int) -> list[dict[str, Any]]:
    """Rows and positive rate per Beijing calendar day (label drift shows up here)."""
    day = (ds.t - day0) // DAY_MS
    return [
        {"day": datetime.fromtimestamp((day0 + int(d) * DAY_MS) / 1000, BEIJING).date().isoformat(),
         "rows": int((day == d).sum()), "positive_rate": float(ds.y[day == d].mean())}
        for d in np.unique(day)
    ]


def train_and_export(
    data_path: Path,
    out: Path,
    params: TrainParams,
    segments: Optional[SegmentParams] = None,
    retail: Optional[RetailParams] = None,
    retail_path: Optional[Path] = None,
) -> dict[str, Any]:
    """The whole pipeline; returns the report that is also written to ``metrics.json``. Also fits and
    exports the segment model next to ``out`` (``segments`` default: ``SegmentParams()``) and, when
    ``retail`` is given, evaluates the same pipeline on the Online Retail file at ``retail_path``."""
    segments = segments if segments is not None else SegmentParams()
    st = _Stages()
    events, dropped = st.run("load", lambda: load_events(data_path, params.limit))
    ds = st.run("replay+label", lambda: build_dataset(events, params.horizon_ms))
    day0 = WINDOW_START_MS if events[0].event_time >= WINDOW_START_MS else events[0].event_time
    cutoff = day0 + params.train_days * DAY_MS
    split = st.run("split", lambda: split_rows(ds, cutoff, params.horizon_ms, params.holdout_frac,
                                               params.purge, params.seed))
    if len(split.train) == 0 or len(split.val) == 0:
        raise SystemExit(f"empty split: {len(split.train)} training, {len(split.val)} validation rows")
    Xtr, ytr = ds.X[split.train], ds.y[split.train]
    if ytr.min() == ytr.max():
        raise SystemExit("training rows hold one class only: more data needed")
    models, fit_secs = st.run("train", lambda: train_models(Xtr, ytr, params))
    for m, s in fit_secs.items():
        print(f"[train]   fit {m:<16} {s:6.2f} s")

    def _evaluate() -> tuple[dict[str, Any], ...]:
        thresholds = {m: max_f1_threshold(ytr, positive_proba(mod, Xtr)) for m, mod in models.items()}
        preds = {m: positive_proba(mod, ds.X[split.val]) for m, mod in models.items()}
        yv, uv = ds.y[split.val], ds.users[split.val]
        ap = {m: average_precision_score(yv, p) for m, p in preds.items()}
        chosen = max(LEARNED, key=lambda m: ap[m])
        val = evaluate(yv, preds, thresholds, uv, params, reference=chosen)
        mask = np.isin(split.val, split.val_unseen)
        unseen = evaluate(yv[mask], {m: p[mask] for m, p in preds.items()}, thresholds, uv[mask], params,
                          reference=chosen)
        return thresholds, preds, val, unseen, chosen

    thresholds, preds, val, unseen, chosen = st.run("evaluate+bootstrap", _evaluate)
    rule_ap = val["models"]["rule"]["pr_auc"]["value"]
    best_ap = val["models"][chosen]["pr_auc"]["value"]
    other = [m for m in LEARNED if m != chosen][0]
    choice_reason = (f"PR-AUC {best_ap:.3f} vs {other} {val['models'][other]['pr_auc']['value']:.3f} "
                     f"and rule {rule_ap:.3f}")
    if rule_ap > best_ap:
        print(f"[train] WARNING: the rule baseline beats every learned model ({choice_reason})")

    latency = st.run("latency (onnx)", lambda: {
        m: onnx_latency(to_onnx(models[m], ds.X.shape[1]).SerializeToString(), ds.X[split.val])
        for m in LEARNED
    })

    fingerprint = {
        "file": data_path.name,
        "sha256": file_sha256(data_path),
        "events_read": len(events) + dropped,
        "events_used": len(events),
        "dropped_before_window": dropped,
        "labelled_rows": len(ds),
        "censored_rows": ds.n_censored,
        "train_rows": int(len(split.train)),
        "val_rows": int(len(split.val)),
    }
    version = model_version(fingerprint, params, chosen, models[chosen])
    chosen_metrics = {k: v for k, v in val["models"][chosen].items()}
    meta = model_metadata(version, params, fingerprint, {"validation": chosen_metrics}, chosen,
                          thresholds[chosen])
    out = out.resolve()
    st.run("export", lambda: export_onnx(models[chosen], out, meta))
    diff = st.run("parity", lambda: parity(models[chosen], out, ds.X[split.val]))
    print(f"[train] parity: max |sklearn - onnxruntime| = {diff:.2e} on {len(split.val):,} validation rows")
    if not diff <= PARITY_TOL:
        out.unlink(missing_ok=True)  # never leave a model behind that scores differently from sklearn
        raise SystemExit(f"parity check failed: {diff:.3e} > {PARITY_TOL}")

    def _importance() -> dict[str, list[float]]:
        rng = np.random.default_rng(params.seed)
        n = min(params.importance_rows, len(split.val))
        idx = np.sort(rng.choice(split.val, size=n, replace=False))
        return permutation_importance_ap(models[chosen], ds.X[idx], ds.y[idx], params.seed)

    importance = st.run("importance", _importance)
    plots = st.run("plots", lambda: write_plots(out.parent, ds.y[split.val], preds, importance, chosen))
    seg_report = st.run("segments", lambda: train_segments(ds, split, out, segments, fingerprint))
    retail_report: dict[str, Any] = {"skipped": "not run (--no-online-retail)"}
    if retail is not None:
        if retail_path is None:
            raise ValueError("retail_path is needed with retail")
        retail_report = st.run("online retail (eval)", lambda: evaluate_online_retail(retail_path, retail, params))

    report: dict[str, Any] = {
        "model_version": version,
        "created_at": meta["created_at"],
        "onnx_file": out.name,
        "chosen": chosen,
        "choice_reason": choice_reason,
        "params": dataclasses.asdict(params),
        "data": {
            **fingerprint,
            "users": int(len(set(ds.users))),
            "end_time": _iso(ds.end_ms),
            "positive_rate": float(ds.y.mean()),
            "daily": _daily(ds, day0),
        },
        "split": {
            "cutoff": _iso(cutoff),
            "cutoff_ms": cutoff,
            "train_rows": int(len(split.train)),
            "train_positive_rate": float(ytr.mean()),
            "purged_rows": split.purged_rows,
            "holdout_users": split.holdout_users,
            "users_first_seen_after_cutoff": split.users_first_seen_after_cutoff,
        },
        "thresholds": thresholds,
        "validation": val,
        "validation_unseen_users": unseen,
        "latency": latency,
        "parity_max_abs_diff": diff,
        "permutation_importance_pr_auc": importance,
        "segments": seg_report,
        "online_retail": retail_report,
        "environment": {
            "python": platform.python_version(), "sklearn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__, "onnxruntime": ort.__version__, "cpus": os.cpu_count(),
        },
        "timings_s": st.secs,
    }
    st.secs["total"] = st.total()
    st.run("report", lambda: write_model_card(out.parent, report, plots))
    st.secs["total"] = st.total()
    (out.parent / "metrics.json").write_text(json.dumps(report, indent=2, default=float), encoding="utf-8")
    print(f"[train] total {st.secs['total']:.2f} s; wrote {out}, {segments_path(out)}, "
          f"{out.parent / 'MODEL_CARD.md'}, {out.parent / 'metrics.json'}")
    return report


def stale_reason(path: Path, segments: bool = False) -> Optional[str]:
    """Why the model at ``path`` must be (re)trained, or None if it can be used as is. ``segments``: it
    must also be a segment model (k and one name per segment in its metadata)."""
    if not path.is_file():
        return f"{path} does not exist"
    try:
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        names = json.loads(props["feature_names"])
        if segments and len(json.loads(props["segment_names"])) != int(props["k"]):
            return f"{path} has a segment name count other than k"
    except Exception as exc:  # any unreadable file means: rebuild it
        return f"{path} is unreadable ({exc})"
    if names != FEATURE_NAMES:
        return f"{path} was trained on other features than schemas/features.json lists"
    return None


def artifacts_stale_reason(out: Path) -> Optional[str]:
    """Why the propensity model ``out`` or the segment model next to it must be rebuilt; None if neither.
    Both are rebuilt together (one replay; the model card describes both)."""
    return stale_reason(out) or stale_reason(segments_path(out), segments=True)


def ensure_model(
    cfg: Config,
    params: Optional[TrainParams] = None,
    segments: Optional[SegmentParams] = None,
    retail: Optional[RetailParams] = RetailParams(),
) -> Path:
    """``cfg.model_file``, trained first (with the segment model next to it) if either is missing or was
    built for another feature list. ``retail=None`` skips the Online Retail evaluation."""
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    d, sd, rd = TrainParams(), SegmentParams(), RetailParams()
    parser.add_argument("--out", type=Path, default=None,
                        help="ONNX output (default: the config's model file); segments.onnx goes next to it")
    parser.add_argument("--data", type=Path, default=None,
                        help=f"Taobao CSV (default: <taobao_dir>/{TAOBAO_HEAD})")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing if both models exist and match the current feature list")
    parser.add_argument("--horizon-hours", type=float, default=d.horizon_hours)
    parser.add_argument("--train-days", type=int, default=d.train_days)
    parser.add_argument("--holdout-frac", type=float, default=d.holdout_frac)
    parser.add_argument("--hgb-max-iter", type=int, default=d.hgb_max_iter)
    parser.add_argument("--bootstrap", type=int, default=d.n_bootstrap, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--limit", type=int, default=None, help="first N lines of the data file only")
    parser.add_argument("--segments-k", type=int, default=sd.k, help="number of k-means segments")
    parser.add_argument("--online-retail", action=argparse.BooleanOptionalAction, default=True,
                        help="also evaluate the pipeline on UCI Online Retail (evaluation only; ~20 s)")
    parser.add_argument("--online-retail-data", type=Path, default=None,
                        help=f"Online Retail CSV (default: <data_dir>/{ONLINE_RETAIL_DIR}/{ONLINE_RETAIL_FILE})")
    parser.add_argument("--online-retail-horizons-days", type=_days, default=rd.horizons_days,
                        help="label horizons in days, comma-separated (default: %(default)s)")
    parser.add_argument("--online-retail-cutoff", default=rd.cutoff,
                        help="UTC date splitting training from validation rows (default: %(default)s)")
    parser.add_argument("--online-retail-limit", type=int, default=None,
                        help="first N purchase lines of the Online Retail file only")
    Config.add_arguments(parser)
    args = parser.parse_args(argv)
    cfg = Config.from_args(args)
    out = args.out if args.out is not None else cfg.model_file
    if args.if_missing:
        reason = artifacts_stale_reason(out)
        if reason is None:
            print(f"[train] {out} and {segments_path(out).name} exist and match the feature list; nothing to do")
            return 0
        print(f"[train] training: {reason}")
    params = TrainParams(
        horizon_hours=args.horizon_hours, train_days=args.train_days, holdout_frac=args.holdout_frac,
        hgb_max_iter=args.hgb_max_iter, n_bootstrap=args.bootstrap, seed=args.seed, limit=args.limit,
    )
    segments = SegmentParams(k=args.segments_k, seed=args.seed)
    retail = (RetailParams(horizons_days=args.online_retail_horizons_days, cutoff=args.online_retail_cutoff,
                           limit=args.online_retail_limit) if args.online_retail else None)
    data = args.data if args.data is not None else cfg.taobao_dir / TAOBAO_HEAD
    retail_data = args.online_retail_data if args.online_retail_data is not None else online_retail_path(cfg)
    train_and_export(data, out, params, segments, retail, retail_data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
