"""model_export.evaluation: the vectorised user bootstrap equals scikit-learn's weighted metrics on
every resample; paired differences, top-k, PSI and reliability."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from model_export import evaluation


def _data(n: int = 3_000, users: int = 200, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p = np.clip(rng.random(n) * 0.6 + 0.2 * y, 0, 1)
    p[: n // 3] = np.round(p[: n // 3], 1)  # ties, as rules produce
    return y, p, rng.integers(0, users, n)


def test_bootstrap_metrics_equal_weighted_sklearn() -> None:
    y, p, g = _data()
    boot = evaluation.UserBootstrap(y, g, 5, seed=0)
    got = boot.metrics(p)
    for b in range(5):
        w = boot.counts[b][boot.inv]
        assert got["pr_auc"][b] == pytest.approx(average_precision_score(y, p, sample_weight=w), abs=1e-5)
        assert got["roc_auc"][b] == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-6)
        assert got["brier"][b] == pytest.approx(brier_score_loss(y, p, sample_weight=w), abs=1e-12)
        pc = np.clip(p, 1e-7, 1 - 1e-7)
        assert got["log_loss"][b] == pytest.approx(log_loss(y, pc, sample_weight=w), abs=1e-9)


def test_resamples_draw_users_not_rows() -> None:
    y, _, g = _data()
    boot = evaluation.UserBootstrap(y, g, 50, seed=0)
    assert np.all(boot.counts.sum(axis=1) == len(np.unique(g)))
    assert boot.rows.tolist() == (boot.counts @ np.bincount(boot.inv)).tolist()


def test_evaluate_paired_deltas_and_cis() -> None:
    y, p, g = _data()
    noisy = np.clip(p + np.random.default_rng(2).normal(0, 0.3, len(p)), 0, 1)
    res = evaluation.evaluate(y, {"good": p, "noisy": noisy}, g, 400, seed=0, references=("noisy",))
    for m in ("good", "noisy"):
        for k in evaluation.METRICS:
            lo, hi = res["models"][m][k]["ci95"]
            assert lo <= res["models"][m][k]["value"] <= hi or abs(hi - lo) < 1e-9
    gain = res["delta"]["noisy"]["good"]["pr_auc"]
    assert gain["value"] > 0 and gain["ci95"][0] > 0  # a clearly better model is clearly better
    assert res["delta"]["noisy"]["good"]["brier"]["ci95"][1] < 0
    assert res["bootstrap"]["resamples"] == 400
    assert evaluation.evaluate(np.zeros(5), {"m": np.ones(5)}, np.arange(5), 10, 0)["note"]


def test_top_k_precision_and_lift() -> None:
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    p = np.linspace(1, 0.1, 10)
    (row,) = evaluation.top_k(y, p, np.arange(10), 100, 0, fractions=(0.2,))
    assert row["flagged_share"] == pytest.approx(0.2) and row["precision"] == 1.0
    assert row["lift"] == pytest.approx(1.0 / 0.3)
    (fixed,) = evaluation.top_k(y, p, np.arange(10), 100, 0, fractions=(0.2,), thresholds={0.2: 0.65})
    assert fixed["flagged_share"] == pytest.approx(0.4) and fixed["precision"] == pytest.approx(0.75)


def test_choose_top_k_prefers_the_best_lower_bound() -> None:
    rows = [{"k": 0.05, "lift_ci95": [0.9, 3.0]}, {"k": 0.2, "lift_ci95": [1.3, 1.6]}, {"k": 0.3, "lift_ci95": None}]
    assert evaluation.choose_top_k(rows)["k"] == 0.2


def test_psi() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 20_000)
    assert evaluation.psi(a, rng.normal(0, 1, 20_000)) < 0.01
    assert evaluation.psi(a, rng.normal(1, 1, 20_000)) > 0.25
    d = evaluation.drift(np.column_stack([a, a]), np.column_stack([a, a + 5]), ["same", "moved"])
    assert d["same"]["above_train_p99"] == pytest.approx(0.01, abs=0.002) and d["moved"]["above_train_p99"] > 0.9


def test_reliability_bins() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(10_000)
    y = (rng.random(10_000) < p).astype(int)
    bins = evaluation.reliability(y, p)
    assert len(bins) == 10 and sum(b["rows"] for b in bins) == 10_000
    for b in bins:
        assert b["observed_rate"] == pytest.approx(b["mean_prediction"], abs=0.05)
