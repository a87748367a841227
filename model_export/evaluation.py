"""Metrics with user-bootstrap confidence intervals, paired differences, top-k targeting, feature
drift and reliability. Everything is vectorised over the resamples: a resample is a vector of user
counts, and each metric is a matrix product of those counts with per-user (or per-user-and-score-level)
sums, so 2,000 resamples of every model cost well under a second.

Users, not rows, are resampled: one user's rows share the label window and the history, so a row
bootstrap would give intervals that are far too narrow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
from scipy import sparse
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

METRICS = ("roc_auc", "pr_auc", "brier", "log_loss")
LOWER_IS_BETTER = {"brier", "log_loss"}
TOP_FRACTIONS = (0.05, 0.1, 0.2, 0.3)
_EPS = 1e-7


def point_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    pc = np.clip(p, _EPS, 1 - _EPS)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, pc, labels=[0, 1])),
        "mean_prediction": float(np.mean(p)),
    }


def _ci(v: np.ndarray) -> list[float]:
    return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]


class UserBootstrap:
    """``n`` resamples of the users of one row set, shared by every model scored on it (paired)."""

    def __init__(self, y: np.ndarray, groups: np.ndarray, n: int, seed: int) -> None:
        _, self.inv = np.unique(groups, return_inverse=True)
        self.n_users = int(self.inv.max()) + 1
        self.y = np.asarray(y, dtype=np.float64)
        rng = np.random.default_rng(seed)
        # counts[b, u]: how often user u is drawn in resample b
        self.counts = rng.multinomial(self.n_users, np.full(self.n_users, 1.0 / self.n_users), size=n).astype(
            np.float64)
        self._ranking_cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self.rows = self._per_user(np.ones_like(self.y))  # rows per resample
        self.pos = self._per_user(self.y)

    def _per_user(self, v: np.ndarray) -> np.ndarray:
        """Per resample: sum of the row values ``v`` (each row weighted by its user's count)."""
        return self.counts @ np.bincount(self.inv, weights=v, minlength=self.n_users)

    def ranking(self, p: np.ndarray, block: int = 250) -> tuple[np.ndarray, np.ndarray]:
        """(PR-AUC, ROC-AUC) per resample, with ties handled as scikit-learn does (one threshold per
        distinct score). Works on [score level, resample] blocks, cumulating down the levels."""
        _, level = np.unique(-np.asarray(p), return_inverse=True)  # level 0 = highest score
        key = level.tobytes()  # a monotone recalibration keeps the levels: reuse, do not recompute
        if key in self._ranking_cache:
            return self._ranking_cache[key]
        shape = (int(level.max()) + 1, self.n_users)
        # float32: every count and cumulative count is an integer below 2**24, so exact
        pos = sparse.csr_matrix((self.y.astype(np.float32), (level, self.inv)), shape=shape)
        tot = sparse.csr_matrix((np.ones(len(self.y), dtype=np.float32), (level, self.inv)), shape=shape)
        ap, auc = np.empty(len(self.counts)), np.empty(len(self.counts))
        for lo in range(0, len(self.counts), block):
            c = np.ascontiguousarray(self.counts[lo:lo + block].T, dtype=np.float32)  # [users, resamples]
            P, T = pos @ c, tot @ c  # [levels, resamples]: weighted positives and rows per score level
            cum_p, cum_t = np.cumsum(P, axis=0), np.cumsum(T, axis=0)
            n_pos, n_neg = cum_p[-1], cum_t[-1] - cum_p[-1]
            with np.errstate(invalid="ignore", divide="ignore"):
                precision = cum_p / np.where(cum_t > 0, cum_t, 1.0)
                ap[lo:lo + block] = np.einsum("ij,ij->j", P, precision) / n_pos
                # a negative at level g beats none of the positives above it and ties half of its own
                auc[lo:lo + block] = np.einsum("ij,ij->j", T - P, cum_p - 0.5 * P) / (n_pos * n_neg)
        self._ranking_cache[key] = (ap, auc)
        return ap, auc

    def losses(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Brier, log loss) per resample."""
        pc = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
        sq = (pc - self.y) ** 2
        ll = -(self.y * np.log(pc) + (1 - self.y) * np.log(1 - pc))
        return self._per_user(sq) / self.rows, self._per_user(ll) / self.rows

    def metrics(self, p: np.ndarray) -> dict[str, np.ndarray]:
        ap, auc = self.ranking(p)
        brier, ll = self.losses(p)
        return {"roc_auc": auc, "pr_auc": ap, "brier": brier, "log_loss": ll}

    def precision_at(self, flagged: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(precision, lift) of a fixed set of flagged rows, per resample."""
        f = np.asarray(flagged, dtype=np.float64)
        hits, n = self._per_user(f * self.y), self._per_user(f)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = hits / n
            return precision, precision / (self.pos / self.rows)

    def valid(self) -> np.ndarray:
        """Resamples with both classes (AUCs are undefined otherwise)."""
        return (self.pos > 0) & (self.pos < self.rows)


def evaluate(
    y: np.ndarray, preds: Mapping[str, np.ndarray], groups: np.ndarray, n_boot: int, seed: int,
    references: Sequence[str] = (),
) -> dict[str, Any]:
    """Point metrics and 95% CIs of every model on one row set, and paired CIs of each model's metric
    minus each reference's (positive = higher; for Brier and log loss lower is better)."""
    y = np.asarray(y)
    if len(y) == 0 or y.min() == y.max():
        return {"rows": int(len(y)), "positives": int(y.sum()), "note": "one class only: not evaluated"}
    boot = UserBootstrap(y, groups, n_boot, seed)
    ok = boot.valid()
    samples = {m: {k: v[ok] for k, v in boot.metrics(p).items()} for m, p in preds.items()}
    out: dict[str, Any] = {
        "rows": int(len(y)), "users": int(boot.n_users), "positives": int(y.sum()), "positive_rate": float(y.mean()),
        "models": {m: {k: {"value": v, "ci95": _ci(samples[m][k]) if k in samples[m] else None}
                       for k, v in point_metrics(y, p).items()} for m, p in preds.items()},
        "bootstrap": {"unit": "user", "resamples": int(ok.sum()), "skipped": int((~ok).sum())},
        "delta": {},
    }
    for ref in references:
        out["delta"][ref] = {
            m: {k: {"value": out["models"][m][k]["value"] - out["models"][ref][k]["value"],
                    "ci95": _ci(samples[m][k] - samples[ref][k])} for k in METRICS}
            for m in preds if m != ref
        }
    return out


def top_k(
    y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_boot: int, seed: int,
    fractions: Sequence[float] = TOP_FRACTIONS, thresholds: Optional[Mapping[float, float]] = None,
) -> list[dict[str, Any]]:
    """Precision and lift when the rows scoring at least the threshold are flagged, for each target
    share k. Thresholds default to this row set's own (1 - k) score quantile (use on the set where k is
    chosen); pass the chosen ones to check them elsewhere."""
    boot = UserBootstrap(y, groups, n_boot, seed)
    base = float(np.mean(y))
    rows = []
    for k in fractions:
        thr = float(np.quantile(p, 1.0 - k)) if thresholds is None else float(thresholds[k])
        flagged = p >= thr
        prec, lift = boot.precision_at(flagged)
        ok = np.isfinite(lift)
        precision = float(y[flagged].mean()) if flagged.any() else float("nan")
        rows.append({
            "k": k, "threshold": thr, "flagged_share": float(flagged.mean()), "precision": precision,
            "precision_ci95": _ci(prec[ok]) if ok.any() else None, "lift": precision / base if base else float("nan"),
            "lift_ci95": _ci(lift[ok]) if ok.any() else None, "base_rate": base,
        })
    return rows


def choose_top_k(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The target share whose lift is highest at the lower end of its CI: a small k has the highest
    point lift but the least evidence behind it, a large k the reverse."""
    return max(rows, key=lambda r: (r["lift_ci95"] or [float("-inf")])[0])


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` over the deciles of ``expected``
    (ties merged; empty bins floored at 1e-4). Rule of thumb: < 0.1 stable, > 0.25 a real shift."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1) / len(expected)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1) / len(actual)
    e, a = np.maximum(e, 1e-4), np.maximum(a, 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def drift(X_from: np.ndarray, X_to: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per feature: PSI from the training rows to another row set, and the share of that set above the
    training 99th percentile (extrapolation)."""
    out = {}
    for j, n in enumerate(names):
        a, b = X_from[:, j], X_to[:, j]
        out[n] = {"psi": psi(a, b), "above_train_p99": float(np.mean(b > np.quantile(a, 0.99)))}
    return out


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Mean prediction vs observed rate in score deciles (the data of the reliability plot)."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1]))
    b = np.searchsorted(edges, p, side="right")
    return [{"rows": int((b == k).sum()), "mean_prediction": float(p[b == k].mean()),
             "observed_rate": float(y[b == k].mean())} for k in np.unique(b)]
