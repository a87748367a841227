"""Train, evaluate and export the purchase-propensity model.

    python -m model_export.train [--out artifacts/propensity.onnx] [--horizon-hours 24] [--if-missing]
                                 [--data CSV] [--limit N] [--train-days 6] [--holdout-frac 0.2]
                                 [--hgb-max-iter 100] [--bootstrap 200] [--seed 0] [config flags]

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

``ensure_model(cfg)`` trains only when the model is missing (or was trained on other features).
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import hashlib
import json
import os
import platform
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
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
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
from tools.datasets import TAOBAO_HEAD, read_taobao
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


def build_dataset(events: Iterable[Event], horizon_ms: int, end_ms: Optional[int] = None) -> Dataset:
    """Replay ``events`` (stable-sorted by time) through the job's profile and feature code and label
    each event. Every event updates the profile; only uncensored ones become rows."""
    ordered = sorted(events, key=lambda e: e.event_time)
    if not ordered:
        raise ValueError("no events")
    end = ordered[-1].event_time if end_ms is None else end_ms
    labels = label_events(ordered, horizon_ms, end)
    rows: list[list[float]] = []
    ys: list[int] = []
    ts: list[int] = []
    users: list[str] = []
    ids: list[str] = []
    for (before, after, ev), label in zip(replay(ordered), labels, strict=True):
        if label is None:
            continue
        rows.append(feature_vector(before, after, ev))
        ys.append(label)
        ts.append(ev.event_time)
        users.append(ev.user_id)
        ids.append(ev.event_id)
    n_feat = len(FEATURE_NAMES)
    return Dataset(
        X=np.asarray(rows, dtype=np.float32).reshape(-1, n_feat),
        y=np.asarray(ys, dtype=np.int8),
        t=np.asarray(ts, dtype=np.int64),
        users=np.asarray(users, dtype=object),
        event_ids=ids,
        n_events=len(ordered),
        n_censored=len(ordered) - len(ys),
        end_ms=end,
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


class RuleBaseline:
    """Hand-written rule: bucket 2 = this event is an add-to-cart (``ev_cart``), 1 = the user carted
    before (``n_cart > 0``), 0 = never carted. Probability = the bucket's purchase rate on the training
    rows (Laplace-smoothed), so log loss and Brier compare fairly with the learned models."""

    def __init__(self, feature_names: Sequence[str] = FEATURE_NAMES) -> None:
        self._ev_cart = list(feature_names).index("ev_cart")
        self._n_cart = list(feature_names).index("n_cart")
        self.rates_ = np.full(3, np.nan)

    def buckets(self, X: np.ndarray) -> np.ndarray:
        return np.where(X[:, self._ev_cart] > 0, 2, np.where(X[:, self._n_cart] > 0, 1, 0))

    def fit(self, X: np.ndarray, y: np.ndarray) -> RuleBaseline:
        b = self.buckets(X)
        self.rates_ = np.array([(y[b == k].sum() + 1.0) / ((b == k).sum() + 2.0) for k in range(3)])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = self.rates_[self.buckets(X)]
        return np.column_stack([1.0 - p, p])


def make_models(params: TrainParams) -> dict[str, Any]:
    return {
        "rule": RuleBaseline(),
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
    X: np.ndarray, y: np.ndarray, params: TrainParams
) -> tuple[dict[str, Any], dict[str, float]]:
    """(fitted models by name, fit seconds by name)."""
    models = make_models(params)
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


def _table(ev: Mapping[str, Any], latency: Mapping[str, Mapping[str, float]], chosen: str) -> list[str]:
    head = "| model | " + " | ".join(METRICS) + " | batch-1 µs | rows/s @1024 |"
    lines = [head, "|" + "---|" * (len(METRICS) + 3)]
    for m, vals in ev["models"].items():
        lat = latency.get(m)
        lat_cols = (f"{lat['batch1_median_us']:.0f} | {lat['batch1024_rows_per_s']:,.0f}" if lat
                    else "n/a (2 lookups) | n/a")
        name = f"**{m}** (chosen)" if m == chosen else m
        lines.append(f"| {name} | " + " | ".join(_fmt(vals[k]) for k in METRICS) + f" | {lat_cols} |")
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
        "- `rule`: bucket 2 = this event is an add-to-cart, 1 = the user has carted before "
        "(`n_cart > 0`), 0 = never carted; probability = the bucket's training purchase rate "
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
            f"of version {FEATURES_VERSION} (lifetime counts, recency, event type, hour) separate buyers "
            "from non-buyers only slightly at this horizon. Treat the scores as a ranking hint, not a "
            "decision; windowed features (events/carts in the last hour/day) are the obvious next step.",
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
        "## Limits",
        "",
        "- 815 users and 9 days: CIs are wide; the unseen-user estimate rests on the holdout users only.",
        "- One shop, no prices, no item/category features; the time features use UTC hours.",
        "- The label is any purchase by the user, not of the item in the event.",
        "- The base rate drifts by day (table below), so scores are not calibrated probabilities for "
        "another period; recalibrate on recent data before reading them as such.",
        "- Everyone's history starts at the window start, so lifetime counts and time since first seen "
        "grow with the calendar: validation rows sit above the training range of those features "
        "(trees cannot extrapolate; this is one reason the boosted trees trail the linear model).",
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


def train_and_export(data_path: Path, out: Path, params: TrainParams) -> dict[str, Any]:
    """The whole pipeline; returns the report that is also written to ``metrics.json``."""
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
    print(f"[train] total {st.secs['total']:.2f} s; wrote {out}, {out.parent / 'MODEL_CARD.md'}, "
          f"{out.parent / 'metrics.json'}")
    return report


def stale_reason(path: Path) -> Optional[str]:
    """Why the model at ``path`` must be (re)trained, or None if it can be used as is."""
    if not path.is_file():
        return f"{path} does not exist"
    try:
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        names = json.loads(props["feature_names"])
    except Exception as exc:  # any unreadable file means: rebuild it
        return f"{path} is unreadable ({exc})"
    if names != FEATURE_NAMES:
        return f"{path} was trained on other features than schemas/features.json lists"
    return None


def ensure_model(cfg: Config, params: Optional[TrainParams] = None) -> Path:
    """``cfg.model_file``, trained first if it is missing (or built for another feature list)."""
    path = cfg.model_file
    reason = stale_reason(path)
    if reason is not None:
        print(f"[train] training: {reason}", flush=True)
        train_and_export(cfg.taobao_dir / TAOBAO_HEAD, path, params or TrainParams())
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    d = TrainParams()
    parser.add_argument("--out", type=Path, default=None,
                        help="ONNX output (default: the config's model file)")
    parser.add_argument("--data", type=Path, default=None,
                        help=f"Taobao CSV (default: <taobao_dir>/{TAOBAO_HEAD})")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing if the model exists and matches the current feature list")
    parser.add_argument("--horizon-hours", type=float, default=d.horizon_hours)
    parser.add_argument("--train-days", type=int, default=d.train_days)
    parser.add_argument("--holdout-frac", type=float, default=d.holdout_frac)
    parser.add_argument("--hgb-max-iter", type=int, default=d.hgb_max_iter)
    parser.add_argument("--bootstrap", type=int, default=d.n_bootstrap, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--limit", type=int, default=None, help="first N lines of the data file only")
    Config.add_arguments(parser)
    args = parser.parse_args(argv)
    cfg = Config.from_args(args)
    out = args.out if args.out is not None else cfg.model_file
    if args.if_missing:
        reason = stale_reason(out)
        if reason is None:
            print(f"[train] {out} exists and matches the feature list; nothing to do")
            return 0
        print(f"[train] training: {reason}")
    params = TrainParams(
        horizon_hours=args.horizon_hours, train_days=args.train_days, holdout_frac=args.holdout_frac,
        hgb_max_iter=args.hgb_max_iter, n_bootstrap=args.bootstrap, seed=args.seed, limit=args.limit,
    )
    data = args.data if args.data is not None else cfg.taobao_dir / TAOBAO_HEAD
    train_and_export(data, out, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
