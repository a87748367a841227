"""model_export.refresh: the publish decision from paired CIs, and the evaluation period."""

from __future__ import annotations

import numpy as np
import pytest

from model_export import refresh


def delta(primary: tuple[float, float], guard: tuple[float, float] = (-0.01, 0.01)) -> dict:
    return {refresh.PRIMARY: {"value": sum(primary) / 2, "ci95": list(primary)},
            refresh.GUARD: {"value": sum(guard) / 2, "ci95": list(guard)}}


@pytest.mark.parametrize("primary, guard, min_gain, expected", [
    ((0.01, 0.05), (-0.02, 0.01), 0.0, "publish-active"),  # better, calibration not proven worse
    ((0.01, 0.05), (0.001, 0.02), 0.0, "publish-shadow"),  # better ranking, proven worse log loss
    ((0.01, 0.05), (-0.02, 0.01), 0.02, "publish-shadow"),  # gain not proven above the margin
    ((-0.02, 0.03), (-0.02, 0.01), 0.0, "publish-shadow"),  # CI includes 0: not proven
    ((-0.05, -0.01), (-0.02, 0.01), 0.0, "nothing"),  # proven worse
])
def test_decide(primary, guard, min_gain, expected):
    v = refresh.decide(delta(primary, guard), min_gain)
    assert v.decision == expected and refresh.PRIMARY in v.reason


def test_same_model_is_never_republished():
    assert refresh.decide(delta((0.01, 0.05)), same_model=True).decision == "nothing"


def test_eval_period_ends_where_labels_close():
    class Ds:
        end_ms = 10 * refresh.DAY_MS

    assert refresh.eval_start(Ds(), refresh.DAY_MS, 2.0) == 7 * refresh.DAY_MS  # type: ignore[arg-type]


def test_candidate_decision_uses_held_out_scores():
    class Sel:
        oot_logits = np.linspace(-3, 3, 1001)

    class Model:
        platt = (1.0, 0.0)

    d = refresh.candidate_decision(Model(), Sel(), 0.1)  # type: ignore[arg-type]
    assert d.top_fraction == 0.1 and d.threshold == pytest.approx(1 / (1 + np.exp(-2.4)), abs=1e-3)
    assert list(d.decile_edges) == sorted(d.decile_edges)
