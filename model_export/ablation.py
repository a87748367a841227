"""Evidence for the signals added with features version 3 (``models.NEW_SIGNALS``): the chosen config
refitted on the training rows without each read group, or with each unread group added, and scored
on validation with paired user-bootstrap CIs. Reported, never used to choose anything in the run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, log_loss

from model_export import models
from model_export.evaluation import UserBootstrap


def _ci(v: np.ndarray) -> list[float]:
    return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]


def ablate(X: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, users: np.ndarray,
           config: models.LinearConfig, names: Sequence[str], n_boot: int, seed: int) -> list[dict[str, Any]]:
    """Per group: PR-AUC and log loss on validation with the group minus without it (uncalibrated
    models, so only the features differ), and the paired CI of the PR-AUC difference."""
    boot = UserBootstrap(y[val], users[val], n_boot, seed)
    yv = y[val]

    def scores(drop: Sequence[str] = (), add: Sequence[str] = ()) -> np.ndarray:
        m = models.make_linear(config, names, drop=drop, add=add).fit(X[train], y[train])
        return models.positive_proba(m, X[val])

    base = scores()
    base_ap = boot.ranking(base)[0]
    rows = []
    for group, (features, used) in models.NEW_SIGNALS.items():
        present = [f for f in features if f in names]
        if not present:
            continue
        other = scores(drop=present) if used else scores(add=present)
        other_ap = boot.ranking(other)[0]
        with_p, without_p = (base, other) if used else (other, base)
        with_b, without_b = (base_ap, other_ap) if used else (other_ap, base_ap)
        rows.append({
            "group": group, "features": present, "read_by_model": used,
            "pr_auc_gain": float(average_precision_score(yv, with_p) - average_precision_score(yv, without_p)),
            "pr_auc_gain_ci95": _ci(with_b - without_b),
            "log_loss_gain": float(log_loss(yv, without_p) - log_loss(yv, with_p)),
        })
    return rows
