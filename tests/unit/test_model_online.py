"""model_export.online: labels reach the learner only when they are known in event time, and the
learners learn."""

from __future__ import annotations

import numpy as np

from model_export import online


class Recorder:
    """Scores with the number of labels seen; records which rows updated it."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def score(self, z: np.ndarray) -> float:
        return float(len(self.seen))

    def update(self, z: np.ndarray, y: int) -> None:
        self.seen.append(int(z[0]))


def test_labels_are_released_at_t_plus_horizon_only():
    t = np.array([0, 5, 10, 14, 15, 30])
    Z = np.arange(len(t), dtype=float).reshape(-1, 1)
    rec = Recorder()
    learn = np.array([True, True, True, True, False, True])
    p = online.prequential(rec, Z, np.zeros(len(t), dtype=np.int8), t, 10, learn, np.ones(len(t), dtype=bool))
    # row 2 (t=10) sees row 0's label (released at 10); row 3 (t=14) not row 1's (15); row 4 (t=15) does
    assert p.tolist() == [0, 0, 1, 1, 2, 4]
    assert rec.seen == [0, 1, 2, 3]  # row 4 is not a learning row; row 5's label is never released


def test_online_logistic_and_pa_learn_a_separable_stream():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(2000, 3))
    y = (Z[:, 0] > 0).astype(np.int8)
    t = np.arange(len(y))
    ones = np.ones(len(y), dtype=bool)
    for learner in (online.OnlineLogistic(np.zeros(3), 0.0, eta=0.1), online.PassiveAggressive(3, C=0.1)):
        p = online.prequential(learner, Z, y, t, 1, ones, ones)
        late = slice(1000, None)
        assert np.mean((p[late] > (0.5 if isinstance(learner, online.OnlineLogistic) else 0)) == y[late]) > 0.9


def test_warm_start_reproduces_the_batch_model():
    from model_export import models
    from tests.unit.model_helpers import small

    ds, split = small()
    m = models.make_linear(models.LinearConfig("bounded", 0.01)).fit(ds.X[split.train], ds.y[split.train])
    m.calibrate(m.logit(ds.X[split.train]), ds.y[split.train])
    w, b = online.warm_weights(m)
    learner = online.OnlineLogistic(w, b, eta=0.0)
    z = online.standardised(m, ds.X[:50])
    np.testing.assert_allclose([learner.score(r) for r in z], models.positive_proba(m, ds.X[:50]), atol=1e-9)
