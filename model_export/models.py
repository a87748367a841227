"""Reference rules and the linear propensity model: ``log1p`` of the skewed counts, standardisation,
logistic regression, Platt calibration -- all of it one linear map after the ``log1p``, so the
exporter writes it as a handful of standard ONNX ops (``model_export.onnx_graphs``).

Hyper-parameters (feature set, regularisation) are chosen on the inner time folds of the training
period (``model_export.dataset.Split.inner``), never on validation; the calibration is fitted on the
same folds' held-out predictions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from udfs.features import FEATURE_NAMES, UNBOUNDED_FEATURES


def _index(names: Sequence[str], *candidates: str) -> Optional[int]:
    """Column of the first candidate name present in ``names``; None if none is (features change)."""
    for c in candidates:
        if c in names:
            return list(names).index(c)
    return None


def positive_proba(model: Any, X: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_proba(X)[:, 1], dtype=np.float64)


# --- reference rules -----------------------------------------------------------------------------


class BucketRule:
    """Probability = the bucket's purchase rate on the training rows (Laplace-smoothed), so log loss and
    Brier compare fairly with the learned models."""

    n_buckets = 1
    description = ""

    def buckets(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, X: np.ndarray, y: np.ndarray) -> BucketRule:
        b = self.buckets(X)
        self.rates_ = np.array([(y[b == k].sum() + 1.0) / ((b == k).sum() + 2.0) for k in range(self.n_buckets)])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = self.rates_[self.buckets(X)]
        return np.column_stack([1.0 - p, p])


class ConstantRate(BucketRule):
    """The training base rate for every row: what a model must beat to be worth its features."""

    description = "the training rows' purchase rate for every row"

    def buckets(self, X: np.ndarray) -> np.ndarray:
        return np.zeros(len(X), dtype=np.int64)


class CartRule(BucketRule):
    """The rule a shop writes first: bucket 2 = this event is an add-to-cart (``ev_cart``), 1 = the user
    carted before (``n_cart > 0``), 0 = never carted. A feature missing from the list counts as 0."""

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


RuleBaseline = CartRule  # the name of the landed code


class RecencyRule(BucketRule):
    """"Recent buyers buy again": bucket = purchases in the last 7 days (``n_purchase_7d``), 0..4, the
    last bucket holding 4 or more."""

    n_buckets = 5
    description = "bucket = purchases in the last 7 days (`n_purchase_7d`): 0, 1, 2, 3, 4 or more"

    def __init__(self, feature_names: Sequence[str] = FEATURE_NAMES) -> None:
        self._col = _index(feature_names, "n_purchase_7d")
        self.rates_ = np.full(self.n_buckets, np.nan)

    def buckets(self, X: np.ndarray) -> np.ndarray:
        if self._col is None:
            return np.zeros(len(X), dtype=np.int64)
        return np.clip(X[:, self._col], 0, self.n_buckets - 1).astype(np.int64)


class FrequencyRule(BucketRule):
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


RULES: dict[str, Callable[[], BucketRule]] = {"cart": CartRule, "recency": RecencyRule, "frequency": FrequencyRule}


# --- the linear model ----------------------------------------------------------------------------

# Raw 7-day counts: in this data every history starts on the first day, so a 7-day window is full only
# on the last days; a training row's count then covers fewer days than a serving row's. Ratios and
# capped recencies over the same window are normalised and may stay in.
_RAW_7D = ("n_view_7d", "n_cart_7d", "n_fav_7d", "n_purchase_7d", "spend_7d", "items_7d",
           "distinct_categories_7d", "distinct_items_7d", "active_days_7d", "item_tiles_7d")

# The signals added with features version 3, in groups, and whether the propensity model reads them.
# Decided once on validation (a new signal stays only where it helps there); the card's ablation table
# recomputes that evidence on every run. The unread ones stay in the vector: the segments use the rates
# per active day, and the feature log keeps the rest for the next model.
NEW_SIGNALS: dict[str, tuple[tuple[str, ...], bool]] = {
    "time since the last cart": (("log_secs_since_cart_7d",), True),
    "session counts per type": (("session_n_view", "session_n_cart", "session_n_fav", "session_n_purchase"), True),
    "7-day conversion ratios": (("cart_to_purchase_7d", "view_to_cart_7d"), True),
    "rates per active day": (("events_per_active_day_7d", "purchases_per_active_day_7d"), False),
    "capped time since the last purchase": (("log_secs_since_purchase_7d",), False),
    "repeated attention to the item": (("session_item_events",), False),
}
_UNREAD = {n for group, used in NEW_SIGNALS.values() if not used for n in group}


def _bounded(names: Sequence[str]) -> list[str]:
    return [n for n in names if n not in UNBOUNDED_FEATURES and n not in _UNREAD]


FEATURE_SETS: dict[str, Callable[[Sequence[str]], list[str]]] = {
    # every read feature whose value does not grow with the length of the observed history
    "bounded": _bounded,
    # ... and without the raw 7-day counts (see _RAW_7D)
    "bounded_normalised": lambda names: [n for n in _bounded(names) if n not in _RAW_7D],
    # the landed model's inputs: everything, lifetime counts included (reference only)
    "all": list,
}


@dataclass(frozen=True)
class LinearConfig:
    """One point of the selection grid (hashed into model_version through ``TrainParams``)."""

    features: str = "bounded"
    C: float = 0.01
    log: bool = True

    def label(self) -> str:
        return f"{self.features}, C={self.C:g}, {'log1p' if self.log else 'raw'}"


class LinearPropensity:
    """``log1p(max(x, 0))`` of the used columns whose training distribution is non-negative and skewed,
    standardisation, L2 logistic regression; then, once ``calibrate`` ran, Platt scaling of the logit.
    Only the ``columns`` of the input are read; the others get no weight."""

    def __init__(self, columns: Sequence[int], C: float = 0.01, log: bool = True, skew_threshold: float = 1.0,
                 max_iter: int = 2000) -> None:
        self.columns = np.asarray(columns, dtype=np.int64)
        self.C, self.log, self.skew_threshold, self.max_iter = C, log, skew_threshold, max_iter
        self.platt: tuple[float, float] = (1.0, 0.0)  # (slope, intercept) on the logit
        self.calibrated = False

    def _logged(self, X: np.ndarray) -> np.ndarray:
        Z = np.asarray(X, dtype=np.float64)[:, self.columns]
        return np.where(self.log_mask_, np.log1p(np.maximum(Z, 0.0)), Z)

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearPropensity:
        Z = np.asarray(X, dtype=np.float64)[:, self.columns]
        if self.log:
            mean, std = Z.mean(axis=0), Z.std(axis=0)
            skew = np.where(std > 0, (((Z - mean) / np.where(std > 0, std, 1.0)) ** 3).mean(axis=0), 0.0)
            binary = np.all((Z == 0) | (Z == 1), axis=0)  # log1p of a 0/1 flag is the same flag, rescaled
            self.log_mask_ = (Z.min(axis=0) >= 0) & (skew > self.skew_threshold) & ~binary
        else:
            self.log_mask_ = np.zeros(len(self.columns), dtype=bool)
        L = self._logged(X)
        self.mean_ = L.mean(axis=0)
        std = L.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)  # a constant column gets weight ~0 anyway
        self.clf_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit((L - self.mean_) / self.scale_, y)
        return self

    def logit(self, X: np.ndarray) -> np.ndarray:
        """The uncalibrated logit."""
        return self.clf_.decision_function((self._logged(X) - self.mean_) / self.scale_)

    def calibrate(self, logits: np.ndarray, y: np.ndarray) -> LinearPropensity:
        """Platt scaling fitted on held-out (logit, label) pairs: p = sigmoid(a * logit + b)."""
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(logits, dtype=np.float64).reshape(-1, 1), y)
        self.platt = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        self.calibrated = True
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        a, b = self.platt
        p = expit(a * self.logit(X) + b)
        return np.column_stack([1.0 - p, p])

    def linear_form(self, n_features: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(log mask, weights, bias) over the whole input vector: the calibrated logit is
        ``x' @ weights + bias`` with ``x' = where(mask, log1p(max(x, 0)), x)``."""
        a, b = self.platt
        coef = self.clf_.coef_[0] / self.scale_
        mask = np.zeros(n_features, dtype=bool)
        w = np.zeros(n_features, dtype=np.float64)
        mask[self.columns] = self.log_mask_
        w[self.columns] = a * coef
        bias = a * (float(self.clf_.intercept_[0]) - float(coef @ self.mean_)) + b
        return mask, w, bias

    def standardised_coefficients(self, names: Sequence[str]) -> dict[str, float]:
        """Logit change per training standard deviation of each used (transformed) feature, calibrated."""
        a = self.platt[0]
        return {names[c]: float(a * w) for c, w in zip(self.columns, self.clf_.coef_[0], strict=True)}


def make_linear(config: LinearConfig, names: Sequence[str] = FEATURE_NAMES, drop: Sequence[str] = (),
                add: Sequence[str] = ()) -> LinearPropensity:
    """The config's model; ``drop``/``add`` change its feature set (the ablation)."""
    used = (set(FEATURE_SETS[config.features](names)) - set(drop)) | set(add)
    return LinearPropensity([i for i, n in enumerate(names) if n in used], C=config.C, log=config.log)


# --- selection on the inner folds ----------------------------------------------------------------


@dataclass
class Selection:
    best: LinearConfig
    table: list[dict[str, Any]]  # per config: inner PR-AUC per fold and their mean
    oot_logits: np.ndarray  # the best config's held-out logits on every fold's check rows
    oot_y: np.ndarray


def select_linear(
    X: np.ndarray, y: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]], grid: Sequence[LinearConfig],
    names: Sequence[str] = FEATURE_NAMES,
) -> Selection:
    """The config with the best mean PR-AUC over the inner folds (fit on each fold's fit rows, scored
    on its check rows). Ties go to the earlier grid entry (put the simpler ones first)."""
    if not folds:
        raise ValueError("no inner folds: the training period is too short to choose hyper-parameters")
    table: list[dict[str, Any]] = []
    held: dict[LinearConfig, tuple[np.ndarray, np.ndarray]] = {}
    for cfg in grid:
        scores, logits, labels = [], [], []
        for fit, check in folds:
            if y[fit].min() == y[fit].max() or y[check].min() == y[check].max():
                continue
            m = make_linear(cfg, names).fit(X[fit], y[fit])
            z = m.logit(X[check])
            scores.append(float(average_precision_score(y[check], z)))
            logits.append(z)
            labels.append(y[check])
        if not scores:
            continue
        table.append({"config": cfg, "fold_pr_auc": scores, "mean_pr_auc": float(np.mean(scores))})
        held[cfg] = (np.concatenate(logits), np.concatenate(labels))
    if not table:
        raise ValueError("every inner fold holds one class only")
    best = max(table, key=lambda r: r["mean_pr_auc"])["config"]  # max keeps the first of equals
    return Selection(best, table, *held[best])


def fit_propensity(X: np.ndarray, y: np.ndarray, sel: Selection, names: Sequence[str] = FEATURE_NAMES,
                   calibrate: bool = True) -> LinearPropensity:
    """The selected config fitted on all training rows, Platt-calibrated on the inner folds' held-out
    logits. That assumes the final model's logits are on the scale of the fold models' (same config,
    more rows); the reliability plot on validation is the check."""
    model = make_linear(sel.best, names).fit(X, y)
    if calibrate and sel.oot_y.min() != sel.oot_y.max():
        model.calibrate(sel.oot_logits, sel.oot_y)
    return model
