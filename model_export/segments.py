"""User segments: k-means on window-normalised behaviour, with k and the feature set chosen by
stability (adjusted Rand index across bootstrap resamples of the users) and silhouette, exported as a
float64 ONNX graph of standard ops next to the propensity model (``segments.onnx``).

Candidate features are rates over the activity window (per active day, cart and purchase
conversion): counts over the window would grow with the observed history, and since every history in
the data starts on its first day, segments on counts track the calendar rather than the user."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score

from model_export import export, onnx_graphs
from model_export.dataset import DAY_MS, Dataset, Split
from udfs import model_contract as mc
from udfs.features import FEATURE_NAMES, FEATURES_VERSION

SEGMENT_FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "rates": ("purchases_per_active_day_7d", "events_per_active_day_7d", "cart_to_purchase_7d",
              "view_to_cart_7d"),
    "rates_focus": ("purchases_per_active_day_7d", "events_per_active_day_7d", "cart_to_purchase_7d",
                    "view_to_cart_7d", "interest_top_share"),
}


@dataclass(frozen=True)
class SegmentParams:
    """Everything that changes the segment model (hashed into its model_version)."""

    k: Optional[int] = None  # None: chosen among k_range; set: only this k is fitted and reported
    k_range: tuple[int, ...] = (2, 3, 4, 5, 6)
    feature_sets: tuple[str, ...] = tuple(SEGMENT_FEATURE_SETS)
    min_ari: float = 0.8  # stability bar: 10th percentile of the bootstrap ARIs
    resamples: int = 10
    sample_rows: int = 4000  # rows per stability fit and for the silhouette
    n_init: int = 4
    skew_threshold: float = 1.0
    seed: int = 0


class SegmentModel:
    """Column selection, ``log1p`` of the skewed non-negative columns, standardisation, k-means; clusters
    renumbered by training size (segment 0 = the most rows), so ids are stable across reruns."""

    def __init__(self, columns: Sequence[int], k: int, n_init: int = 4, seed: int = 0,
                 skew_threshold: float = 1.0) -> None:
        self.columns = np.asarray(columns, dtype=np.int64)
        self.k, self.n_init, self.seed, self.skew_threshold = k, n_init, seed, skew_threshold

    def fit_prep(self, X: np.ndarray) -> SegmentModel:
        Z = np.asarray(X, dtype=np.float64)[:, self.columns]
        mean, std = Z.mean(axis=0), Z.std(axis=0)
        skew = np.where(std > 0, (((Z - mean) / np.where(std > 0, std, 1.0)) ** 3).mean(axis=0), 0.0)
        binary = np.all((Z == 0) | (Z == 1), axis=0)  # log1p of a 0/1 flag is the same flag, rescaled
        self.log_mask_ = (Z.min(axis=0) >= 0) & (skew > self.skew_threshold) & ~binary
        L = self._logged(X)
        self.mean_, std = L.mean(axis=0), L.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def _logged(self, X: np.ndarray) -> np.ndarray:
        Z = np.asarray(X, dtype=np.float64)[:, self.columns]
        return np.where(self.log_mask_, np.log1p(np.maximum(Z, 0.0)), Z)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (self._logged(X) - self.mean_) / self.scale_

    def fit(self, X: np.ndarray) -> SegmentModel:
        if len(X) < self.k:
            raise ValueError(f"{len(X)} rows cannot make {self.k} segments")
        self.fit_prep(X)
        km = KMeans(n_clusters=self.k, n_init=self.n_init, random_state=self.seed).fit(self.transform(X))
        order = np.argsort(-np.bincount(km.labels_, minlength=self.k), kind="stable")
        self.centres_ = km.cluster_centers_[order]  # standardised space: z-scores vs the training rows
        self.inertia_ = float(km.inertia_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        Z = self.transform(X)
        d2 = (Z * Z).sum(axis=1, keepdims=True) - 2.0 * Z @ self.centres_.T + (self.centres_ ** 2).sum(axis=1)
        return np.argmin(d2, axis=1).astype(np.int64)

    def raw_centres(self, names: Sequence[str] = FEATURE_NAMES) -> list[dict[str, float]]:
        """Centres in feature units (log and scaling undone)."""
        raw = self.centres_ * self.scale_ + self.mean_
        raw = np.where(self.log_mask_, np.expm1(raw), raw)
        raw = np.where(np.abs(raw) < 1e-9, 0.0, raw)  # expm1(log1p(0)) round-off: print 0, not 5e-15
        return [{names[c]: float(v) for c, v in zip(self.columns, row, strict=True)} for row in raw]

    def to_onnx(self, n_features: int) -> Any:
        return onnx_graphs.kmeans_assigner(n_features, self.columns, self.log_mask_, self.mean_, self.scale_,
                                           self.centres_)


def segment_columns(names: Sequence[str], feature_set: str) -> list[int]:
    wanted = SEGMENT_FEATURE_SETS[feature_set]
    missing = [n for n in wanted if n not in names]
    if missing:
        raise ValueError(f"segment feature set {feature_set!r} needs {missing}")
    return [list(names).index(n) for n in wanted]


# --- choosing k and the features ----------------------------------------------------------------


def _kmeans_labels(Z: np.ndarray, k: int, weights: Optional[np.ndarray], ref: np.ndarray, n_init: int,
                   seed: int) -> np.ndarray:
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(Z, sample_weight=weights)
    return km.predict(ref)


def stability(X: np.ndarray, users: np.ndarray, names: Sequence[str], params: SegmentParams) -> list[dict[str, Any]]:
    """Per (feature set, k): silhouette on a fixed sample of rows and the ARIs between the labels of that
    sample under a fit on all rows and under fits on bootstrap resamples of the users (a user drawn c
    times weighs c). Preparation (log, scaling) is fitted once per feature set on all rows."""
    rng = np.random.default_rng(params.seed)
    _, inv = np.unique(users, return_inverse=True)
    n_users = int(inv.max()) + 1
    n = min(params.sample_rows, len(X))
    ref_rows = rng.choice(len(X), size=n, replace=False)
    draws = [rng.multinomial(n_users, np.full(n_users, 1.0 / n_users)) for _ in range(params.resamples)]
    rows = []
    for fs in params.feature_sets:
        prep = SegmentModel(segment_columns(names, fs), 2, skew_threshold=params.skew_threshold).fit_prep(X)
        Z = prep.transform(X)
        ref = Z[ref_rows]
        for k in ((params.k,) if params.k else params.k_range):
            sample = rng.choice(len(X), size=n, replace=False)
            base = _kmeans_labels(Z[sample], k, None, ref, params.n_init, params.seed)
            sil = float(silhouette_score(ref, base)) if len(set(base)) > 1 else float("nan")
            aris = []
            for b, counts in enumerate(draws, start=1):
                w = counts[inv].astype(np.float64)
                pick = rng.choice(len(X), size=n, replace=True, p=w / w.sum())
                aris.append(adjusted_rand_score(base, _kmeans_labels(Z[pick], k, None, ref, params.n_init, b)))
            rows.append({"features": fs, "k": k, "silhouette": sil, "ari_median": float(np.median(aris)),
                         "ari_p10": float(np.percentile(aris, 10)), "ari_min": float(np.min(aris))})
    return rows


def choose(rows: Sequence[Mapping[str, Any]], params: SegmentParams) -> tuple[Mapping[str, Any], bool]:
    """(chosen row, whether it meets the stability bar): the best silhouette among the stable ones, else
    the most stable."""
    pool = [r for r in rows if params.k is None or r["k"] == params.k] or list(rows)
    stable = [r for r in pool if r["ari_p10"] >= params.min_ari]
    if stable:
        return max(stable, key=lambda r: r["silhouette"]), True
    return max(pool, key=lambda r: r["ari_p10"]), False


# --- names ---------------------------------------------------------------------------------------

# (above average, below average): relative wording, because a centre is an average, not a rule
_PHRASES: dict[str, tuple[str, str]] = {
    "purchases_per_active_day_7d": ("more purchases per active day", "fewer purchases per active day"),
    "events_per_active_day_7d": ("more events per active day", "fewer events per active day"),
    "cart_to_purchase_7d": ("more carts turn into purchases", "fewer carts turn into purchases"),
    "view_to_cart_7d": ("cart more of what they view", "cart less of what they view"),
    "interest_top_share": ("interest concentrated on one category", "interests spread over categories"),
}
_BUYING = "purchases_per_active_day_7d"


def _phrase(name: str, high: bool) -> str:
    if name in _PHRASES:
        return _PHRASES[name][0 if high else 1]
    return f"{'above' if high else 'below'}-average {name}"


def describe(model: SegmentModel, names: Sequence[str] = FEATURE_NAMES, top: int = 2,
             min_z: float = 0.5) -> list[str]:
    """A name per segment from its centre: "no purchases in 7 days" when the centre's purchase rate is
    0, then the ``top`` features furthest from the training mean (at least ``min_z`` standard
    deviations of the transformed column), worded relative to the average. Unique."""
    raw = model.raw_centres(names)
    used = [names[c] for c in model.columns]
    out = []
    for k, z in enumerate(model.centres_):
        parts = []
        skip = set()
        if _BUYING in raw[k] and raw[k][_BUYING] < 0.005:
            parts.append("no purchases in 7 days")
            skip |= {_BUYING, "cart_to_purchase_7d"}  # both are 0 then: saying so adds nothing
        picked = 0
        for j in np.argsort(-np.abs(z), kind="stable"):
            if picked >= top or abs(z[j]) < min_z:
                break
            if used[j] in skip:
                continue
            parts.append(_phrase(used[j], bool(z[j] > 0)))
            picked += 1
        out.append(", ".join(parts) or "close to average on every feature")
    for k, d in enumerate(list(out)):  # names are labels: keep them unique
        if out.count(d) > 1:
            out[k] = f"{d} #{k}"
    return out


# --- export and report ---------------------------------------------------------------------------


def metadata(version: str, model: SegmentModel, names: Sequence[str], params: SegmentParams, feature_set: str,
             fingerprint: Mapping[str, Any], feature_names: Sequence[str] = FEATURE_NAMES) -> dict[str, str]:
    return {
        mc.MODEL_VERSION: version,
        mc.MODEL_TYPE: "kmeans",
        mc.FEATURE_NAMES: json.dumps(list(feature_names)),
        mc.FEATURES_VERSION: str(FEATURES_VERSION),
        mc.SEGMENT_K: str(model.k),
        mc.SEGMENT_NAMES: json.dumps(list(names)),
        mc.SEGMENT_FEATURES: json.dumps([feature_names[i] for i in model.columns]),
        mc.LOG_FEATURES: json.dumps([feature_names[i] for i, m in zip(model.columns, model.log_mask_, strict=True)
                                     if m]),
        mc.TRAINING_DATA_FINGERPRINT: json.dumps(fingerprint, sort_keys=True),
        "segment_params": json.dumps({**dataclasses.asdict(params), "chosen_features": feature_set,
                                      "chosen_k": model.k}, sort_keys=True),
        mc.CREATED_BY: export.created_by(),
    }


def parity(model: SegmentModel, onnx_model: str | Path | bytes, X: np.ndarray) -> int:
    """Rows whose numpy and onnxruntime segments differ (both fed the same float32 values)."""
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    (labels,) = export.cpu_session(onnx_model).run([mc.SEGMENT_LABEL], {mc.ONNX_INPUT: X32})
    return int(np.sum(np.asarray(labels).reshape(-1) != model.predict(X32)))


def _switches_per_user_day(seg: np.ndarray, users: np.ndarray, t: np.ndarray) -> float:
    """Segment changes between a user's consecutive rows, per user-day with rows (rows in time order)."""
    order = np.lexsort((t, users))
    s, u, day = seg[order], users[order], t[order] // DAY_MS
    same_user = u[1:] == u[:-1]
    changes = int(np.sum((s[1:] != s[:-1]) & same_user))
    user_days = len({(a, b) for a, b in zip(u, day, strict=True)})
    return changes / max(user_days, 1)


def report(model: SegmentModel, seg_names: Sequence[str], ds: Dataset, split: Split, day0: int) -> dict[str, Any]:
    """Size and purchase rate per segment on training and validation rows, segment shares per day
    (a segment that tracks the calendar shows here) and how often a user changes segment."""
    tr, va = model.predict(ds.X[split.train]), model.predict(ds.X[split.val])
    yt, yv = ds.y[split.train], ds.y[split.val]
    last: dict[str, int] = {}  # a user's segment = the segment of the user's latest validation row
    for u, s in zip(ds.users[split.val], va, strict=True):
        last[u] = int(s)
    users = np.bincount(np.fromiter(last.values(), dtype=np.int64, count=len(last)), minlength=model.k)
    both = np.concatenate([split.train, split.val])
    seg_all = np.concatenate([tr, va])
    day = (ds.t[both] - day0) // DAY_MS
    daily = [{"day": int(d), "rows": int((day == d).sum()),
              "shares": [float(np.mean(seg_all[day == d] == k)) for k in range(model.k)]} for d in np.unique(day)]
    segs = []
    for k in range(model.k):
        segs.append({
            "id": k, "name": seg_names[k],
            "train_rows": int((tr == k).sum()), "train_share": float((tr == k).mean()),
            "train_purchase_rate": float(yt[tr == k].mean()) if (tr == k).any() else None,
            "val_rows": int((va == k).sum()), "val_share": float((va == k).mean()) if len(va) else None,
            "val_users": int(users[k]),
            "val_purchase_rate": float(yv[va == k].mean()) if (va == k).any() else None,
        })
    shares = np.array([d["shares"] for d in daily])
    later = shares[1:] if len(shares) > 1 else shares

    def spread(a: np.ndarray) -> Optional[float]:
        return float(np.max(a.max(axis=0) - a.min(axis=0))) if len(a) else None

    return {
        "segments": segs,
        "daily_shares": daily,
        "max_daily_share_range": spread(shares),
        "max_daily_share_range_after_day0": spread(later),
        "switches_per_user_day": _switches_per_user_day(seg_all, ds.users[both], ds.t[both]),
        "inertia_per_row": model.inertia_ / max(len(split.train), 1),
    }


def train_segments(ds: Dataset, split: Split, out: Path, params: SegmentParams, fingerprint: Mapping[str, Any],
                   day0: int) -> dict[str, Any]:
    """Choose (features, k), fit on the training rows, name, export next to ``out``, check parity on the
    validation rows (exit non-zero on any disagreement) and return the card's segment section."""
    X, users = ds.X[split.train], ds.users[split.train]
    table = stability(X, users, ds.feature_names, params)
    chosen, stable = choose(table, params)
    model = SegmentModel(segment_columns(ds.feature_names, chosen["features"]), chosen["k"], params.n_init,
                         params.seed, params.skew_threshold).fit(X)
    seg_names = describe(model, ds.feature_names)
    version = export.version_id("segments", {"data": fingerprint, "params": dataclasses.asdict(params),
                                             "chosen": [chosen["features"], chosen["k"]],
                                             "centres": model.centres_.round(12).tolist()})
    graph = model.to_onnx(len(ds.feature_names))
    ops = [op for _, op in onnx_graphs.graph_ops(graph)]
    path = export.write_onnx(graph, export.segments_path(out),
                             metadata(version, model, seg_names, params, chosen["features"], fingerprint,
                                      ds.feature_names),
                             f"User segments: k-means, k={model.k}.")
    Xp = ds.X[split.val] if len(split.val) else X
    mismatches = parity(model, path, Xp)
    print(f"[train] segment parity: {mismatches} of {len(Xp):,} validation rows differ (numpy vs onnxruntime)")
    if mismatches:
        path.unlink(missing_ok=True)
        raise SystemExit(f"segment parity check failed: {mismatches} rows assigned differently")
    return {
        "model_version": version, "onnx_file": path.name, "parity_mismatches": mismatches, "parity_rows": len(Xp),
        "k": model.k, "features": [ds.feature_names[i] for i in model.columns], "feature_set": chosen["features"],
        "log_features": [ds.feature_names[i] for i, m in zip(model.columns, model.log_mask_, strict=True) if m],
        "params": dataclasses.asdict(params), "selection": table, "chosen": dict(chosen), "meets_stability_bar": stable,
        "centres": model.raw_centres(ds.feature_names), "ops": ops,
        **report(model, seg_names, ds, split, day0),
    }
