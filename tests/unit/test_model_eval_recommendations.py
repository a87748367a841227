"""model_export.eval_recommendations on a small slice of the head file: the metrics are proportions,
the CIs bracket the estimates, and the point-in-time targets are right."""

import pytest

from model_export import eval_recommendations as E
from model_export.dataset import DAY_MS, load_events
from udfs.profile import Event


def test_bootstrap_ci_brackets_the_mean_and_weights_points_by_user():
    users = ["a"] * 8 + ["b"] * 2 + ["c"] * 5
    values = [1.0] * 8 + [0.0] * 2 + [0.0, 1.0, 0.0, 1.0, None]
    est, lo, hi, n = E.bootstrap_ci(users, values, n_boot=500)
    assert n == 14 and est == pytest.approx(10 / 14)
    assert 0.0 <= lo <= est <= hi <= 1.0 and hi > lo


def test_targets_are_the_next_24h_carts_and_purchases_only():
    def e(t, kind, item):
        return Event(f"{t}", "u", kind, item, "c", None, None, t, None, None)

    tg = E.Targets([e(0, "view", "v"), e(10, "cart", "a"), e(20, "purchase", "b"), e(DAY_MS + 11, "cart", "late")],
                   DAY_MS)
    assert tg.after("u", 0) == {"a", "b"}
    assert tg.after("u", 10) == {"b"}  # strictly after the point
    assert tg.after("u", 20) == {"late"}
    assert tg.after("nobody", 0) == set()


def test_evaluation_on_a_slice_gives_proportions_with_ci_around_them():
    events, _ = load_events(E.HEAD, limit=3000)
    results = E.evaluate(events)
    summary = E.summarise(results, n_boot=200)
    assert set(summary) == {"tune", "test"}
    for period, methods in summary.items():
        assert set(E.BLENDS) | set(E.BASELINES) <= set(methods)
        for name, metrics in methods.items():
            for metric, (est, lo, hi, n) in metrics.items():
                if n == 0:
                    continue
                assert 0.0 <= lo <= est <= hi <= 1.0, (period, name, metric)
            assert metrics["hit"][3] > 20, (period, name)
            assert metrics["recall"][0] <= metrics["hit"][0] + 1e-12  # recall <= hit-rate per point
    # the user's own items are far better than global popularity on Taobao (a signal, not noise)
    assert summary["test"]["own only"]["hit"][0] > summary["test"]["global popular 24h"]["hit"][0]
    assert E.best_blend(summary) in E.BLENDS
    assert "| method |" in E.table(summary, "test", E.best_blend(summary))
    assert E.paired(results, "test", 100).count("\n") == len(E.PAIRS) + 1
