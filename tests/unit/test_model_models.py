"""model_export.models: the reference rules, the linear model (its one-linear-map form, calibration)
and the selection on the inner folds."""

from __future__ import annotations

import numpy as np
import pytest

from model_export import models
from tests.unit.model_helpers import small
from udfs.features import FEATURE_NAMES, UNBOUNDED_FEATURES


def test_cart_rule_buckets() -> None:
    X = np.zeros((4, len(FEATURE_NAMES)), dtype=np.float32)
    n_cart, ev_cart = FEATURE_NAMES.index("n_cart"), FEATURE_NAMES.index("ev_cart")
    X[1, n_cart] = 2
    X[2, n_cart], X[2, ev_cart] = 1, 1
    X[3, n_cart] = 5
    rule = models.CartRule().fit(X, np.array([0, 1, 1, 0]))
    assert rule.buckets(X).tolist() == [0, 1, 2, 1]
    # Laplace-smoothed bucket rates: (0+1)/(1+2), (1+1)/(2+2), (1+1)/(1+2)
    np.testing.assert_allclose(rule.predict_proba(X)[:, 1], [1 / 3, 0.5, 2 / 3, 0.5])


def test_cart_rule_degrades_without_cart_features() -> None:
    names = [n for n in FEATURE_NAMES if n not in ("n_cart", "ev_cart")]
    X = np.ones((3, len(names)), dtype=np.float32)
    rule = models.CartRule(names).fit(X, np.array([0, 1, 1]))
    assert rule.buckets(X).tolist() == [0, 0, 0]
    np.testing.assert_allclose(rule.predict_proba(X)[:, 1], [0.6] * 3)  # (2+1)/(3+2)


def test_recency_rule_buckets_purchases_in_7_days() -> None:
    X = np.zeros((6, len(FEATURE_NAMES)), dtype=np.float32)
    X[:, FEATURE_NAMES.index("n_purchase_7d")] = [0, 1, 2, 3, 4, 9]
    y = np.array([0, 0, 1, 1, 1, 0])
    rule = models.RecencyRule().fit(X, y)
    assert rule.buckets(X).tolist() == [0, 1, 2, 3, 4, 4]
    np.testing.assert_allclose(rule.predict_proba(X)[:, 1], [1 / 3, 1 / 3, 2 / 3, 2 / 3, 0.5, 0.5])


def test_constant_is_the_training_rate() -> None:
    X = np.zeros((4, 2))
    np.testing.assert_allclose(models.ConstantRate().fit(X, np.array([1, 0, 0, 0])).predict_proba(X)[:, 1],
                               [(1 + 1) / (4 + 2)] * 4)


def test_frequency_rule_buckets_by_training_quartiles() -> None:
    X = np.zeros((8, len(FEATURE_NAMES)), dtype=np.float32)
    X[:, FEATURE_NAMES.index("n_purchase")] = [1, 1, 2, 2, 3, 3, 9, 9]
    rule = models.FrequencyRule().fit(X, np.array([0, 0, 0, 1, 1, 1, 1, 1]))
    assert rule.buckets(X).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    p = rule.predict_proba(X)[:, 1]
    assert p[0] < p[2] < p[4] == pytest.approx(0.75) and np.all(np.diff(p) >= 0)


def test_feature_sets_leave_out_lifetime_features() -> None:
    bounded = models.FEATURE_SETS["bounded"](FEATURE_NAMES)
    normalised = models.FEATURE_SETS["bounded_normalised"](FEATURE_NAMES)
    assert UNBOUNDED_FEATURES and not UNBOUNDED_FEATURES & set(bounded)
    assert set(normalised) < set(bounded) and "n_purchase_7d" in bounded and "n_purchase_7d" not in normalised
    unread = {f for fs, used in models.NEW_SIGNALS.values() if not used for f in fs}
    assert unread and not unread & set(bounded)
    assert models.FEATURE_SETS["all"](FEATURE_NAMES) == FEATURE_NAMES


def _fitted(C: float = 0.01) -> tuple[models.LinearPropensity, np.ndarray, np.ndarray]:
    ds, split = small()
    m = models.make_linear(models.LinearConfig("bounded", C)).fit(ds.X[split.train], ds.y[split.train])
    return m, ds.X[split.val], ds.y[split.val]


def test_linear_form_is_the_model() -> None:
    """The exported form (log mask, weights over all columns, bias) gives the model's probabilities."""
    m, X, _ = _fitted()
    m.platt = (0.7, -0.2)
    mask, w, b = m.linear_form(len(FEATURE_NAMES))
    Xd = X.astype(np.float64)
    z = np.where(mask, np.log1p(np.maximum(Xd, 0)), Xd) @ w + b
    np.testing.assert_allclose(1 / (1 + np.exp(-z)), m.predict_proba(X)[:, 1], rtol=0, atol=1e-12)
    unused = np.setdiff1d(np.arange(len(FEATURE_NAMES)), m.columns)
    assert np.all(w[unused] == 0) and not mask[unused].any()
    assert mask.any()  # the skewed counts are logged


def test_calibration_fixes_a_shifted_logit() -> None:
    """Platt scaling learns slope and intercept of a known miscalibration."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, 50_000)
    y = (rng.random(len(z)) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))).astype(int)
    m, _, _ = _fitted()
    m.calibrate(z, y)
    assert m.platt == pytest.approx((0.5, -1.0), abs=0.05) and m.calibrated


def test_selection_picks_the_best_mean_inner_pr_auc() -> None:
    ds, split = small()
    grid = [models.LinearConfig("bounded_normalised", 0.001), models.LinearConfig("bounded", 0.1)]
    sel = models.select_linear(ds.X, ds.y, split.inner, grid)
    assert [r["config"] for r in sel.table] == grid
    assert all(len(r["fold_pr_auc"]) == len(split.inner) for r in sel.table)
    assert sel.best == max(sel.table, key=lambda r: r["mean_pr_auc"])["config"]
    assert len(sel.oot_logits) == len(sel.oot_y) == sum(len(c) for _, c in split.inner)
    with pytest.raises(ValueError, match="inner folds"):
        models.select_linear(ds.X, ds.y, [], grid)


def test_fit_propensity_calibrates_on_the_held_out_logits() -> None:
    ds, split = small()
    sel = models.select_linear(ds.X, ds.y, split.inner, [models.LinearConfig("bounded", 0.01)])
    cal = models.fit_propensity(ds.X[split.train], ds.y[split.train], sel)
    raw = models.fit_propensity(ds.X[split.train], ds.y[split.train], sel, calibrate=False)
    assert cal.calibrated and not raw.calibrated and raw.platt == (1.0, 0.0)
    np.testing.assert_allclose(cal.logit(ds.X[split.val]), raw.logit(ds.X[split.val]))  # same fit
    assert cal.platt != raw.platt
