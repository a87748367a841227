"""Does a model updated online, per labelled example, beat the batch model on the time split?

    python -m model_export.online [--data CSV] [--limit N] [--bootstrap 1000] [--seed 0] [--out JSON]

The stream is the trainer's dataset (``model_export.dataset``: the job's core, Taobao head file) in
event-time order. A row is scored when it happens, with the weights of that moment; its label reaches
the learner only at ``t + horizon`` in event time (a 0 is only known when the window has closed; a
positive is released at the same time, conservatively), so the learner never sees a label the live
job could not have had. Learners, all on the batch model's features and standardisation (fitted on
training rows only):

- ``online_warm``: logistic SGD started from the batch model's calibrated weights, updated from the
  first label that closes after the training rows' (purged) end;
- ``online_scratch``: the same from zero weights, over the whole stream;
- ``pa_scratch``: Passive-Aggressive (PA-I, Crammer et al. 2006), hinge loss, from zero weights
  (a margin, not a probability: only its ranking metrics mean something).

Step sizes are chosen on the training period only: the latest inner fold (``Split.inner[0]``),
warm-started from that fold's own batch model. The verdict compares each learner with the frozen
batch model on the validation rows, with paired user-bootstrap 95% CIs.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np
from sklearn.metrics import average_precision_score
from threadpoolctl import threadpool_limits

from flink_jobs.config import Config
from model_export import evaluation, models
from model_export.dataset import DAY_MS, WINDOW_START_MS, Dataset, build_dataset, load_events, split_rows
from model_export.train import TrainParams
from tools.datasets import TAOBAO_HEAD

ETAS = (0.0003, 0.001, 0.003, 0.01)
PA_CS = (0.001, 0.01, 0.1)


class Learner(Protocol):
    def score(self, z: np.ndarray) -> float: ...

    def update(self, z: np.ndarray, y: int) -> None: ...


class OnlineLogistic:
    """p = sigmoid(z @ w + b); one SGD step on the log loss per label, with L2 towards the start
    weights (so a warm start drifts only as far as the new labels push it)."""

    def __init__(self, w: np.ndarray, b: float, eta: float, l2: float = 1e-4) -> None:
        self.w, self.b, self.eta, self.l2 = np.array(w, dtype=np.float64), float(b), eta, l2
        self.w0 = self.w.copy()

    def score(self, z: np.ndarray) -> float:
        return 1.0 / (1.0 + np.exp(-(float(z @ self.w) + self.b)))

    def update(self, z: np.ndarray, y: int) -> None:
        g = self.score(z) - y
        self.w -= self.eta * (g * z + self.l2 * (self.w - self.w0))
        self.b -= self.eta * g


class PassiveAggressive:
    """PA-I: w += tau * y * x with tau = min(C, hinge / |x|^2), y in {-1, +1}; a constant 1 feature
    stands in for the bias."""

    def __init__(self, n: int, C: float) -> None:
        self.w, self.C = np.zeros(n + 1), C

    def score(self, z: np.ndarray) -> float:
        return float(self.w[:-1] @ z + self.w[-1])

    def update(self, z: np.ndarray, y: int) -> None:
        s = 1.0 if y else -1.0
        loss = max(0.0, 1.0 - s * self.score(z))
        if loss > 0.0:
            tau = min(self.C, loss / (float(z @ z) + 1.0))
            self.w[:-1] += tau * s * z
            self.w[-1] += tau * s


def prequential(learner: Learner, Z: np.ndarray, y: np.ndarray, t: np.ndarray, horizon_ms: int,
                learn: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Scores of the rows in ``score`` (bool mask), each made before any label released after its time;
    the rows in ``learn`` feed their label back at ``t + horizon``. Rows must be in event-time order."""
    out = np.full(len(y), np.nan)
    pending: list[tuple[int, int]] = []  # (release time, row)
    for i in range(len(y)):
        while pending and pending[0][0] <= t[i]:
            _, j = heapq.heappop(pending)
            learner.update(Z[j], int(y[j]))
        if score[i]:
            out[i] = learner.score(Z[i])
        if learn[i]:
            heapq.heappush(pending, (int(t[i]) + horizon_ms, i))
    return out


def standardised(model: models.LinearPropensity, X: np.ndarray) -> np.ndarray:
    return (model._logged(X) - model.mean_) / model.scale_


def warm_weights(model: models.LinearPropensity) -> tuple[np.ndarray, float]:
    """The batch model's calibrated logit in its standardised space: a * (coef @ z + intercept) + b."""
    a, b = model.platt
    return a * model.clf_.coef_[0], a * float(model.clf_.intercept_[0]) + b


@dataclass
class Stream:
    Z: np.ndarray
    y: np.ndarray
    t: np.ndarray


def _learners(model: models.LinearPropensity, eta: float, c: float, n: int) -> dict[str, Learner]:
    w, b = warm_weights(model)
    return {"online_warm": OnlineLogistic(w, b, eta), "online_scratch": OnlineLogistic(np.zeros(n), 0.0, eta),
            "pa_scratch": PassiveAggressive(n, c)}


def choose_steps(ds: Dataset, split: Any, sel: models.Selection, horizon_ms: int) -> dict[str, float]:
    """Step size per learner by PR-AUC on the latest inner fold's check rows (training period only)."""
    fit, check = split.inner[0]
    fold_model = models.fit_propensity(ds.X[fit], ds.y[fit], sel)
    s = Stream(standardised(fold_model, ds.X), ds.y, ds.t)
    fit_end = int(ds.t[fit].max()) + horizon_ms  # the fold model saw labels closing up to here
    dev = np.zeros(len(ds.y), dtype=bool)
    dev[split.train] = True
    score = np.zeros_like(dev)
    score[check] = True
    best: dict[str, tuple[float, float]] = {}
    for kind, grid in (("online_warm", ETAS), ("online_scratch", ETAS), ("pa_scratch", PA_CS)):
        for step in grid:
            learner = _learners(fold_model, step, step, s.Z.shape[1])[kind]
            learn = dev & ((s.t + horizon_ms > fit_end) if kind == "online_warm" else True)
            p = prequential(learner, s.Z, s.y, s.t, horizon_ms, learn, score)
            ap = float(average_precision_score(s.y[score], p[score]))
            if kind not in best or ap > best[kind][1]:
                best[kind] = (step, ap)
    return {k: v[0] for k, v in best.items()}


def evaluate_online(data: Path, limit: Optional[int], n_boot: int, seed: int) -> dict[str, Any]:
    tp = TrainParams(n_bootstrap=n_boot, seed=seed, limit=limit)
    events, _ = load_events(data, limit)
    ds = build_dataset(events, tp.horizon_ms)
    day0 = WINDOW_START_MS if events[0].event_time >= WINDOW_START_MS else events[0].event_time
    split = split_rows(ds, day0 + tp.train_days * DAY_MS, tp.horizon_ms, tp.final_frac, folds=tp.inner_folds)
    sel = models.select_linear(ds.X, ds.y, split.inner, tp.grid())
    batch = models.fit_propensity(ds.X[split.train], ds.y[split.train], sel)
    steps = choose_steps(ds, split, sel, tp.horizon_ms)
    Z = standardised(batch, ds.X)
    score = np.zeros(len(ds.y), dtype=bool)
    score[np.concatenate([split.val, split.final])] = True
    closed = ds.t + tp.horizon_ms > split.cutoff_ms  # labels the batch model never saw (training: purged)
    learners = _learners(batch, steps["online_warm"], steps["pa_scratch"], Z.shape[1])
    learners["online_scratch"] = OnlineLogistic(np.zeros(Z.shape[1]), 0.0, steps["online_scratch"])
    preds = {"batch": models.positive_proba(batch, ds.X)}
    for name, learner in learners.items():
        learn = closed if name == "online_warm" else np.ones(len(ds.y), dtype=bool)
        preds[name] = prequential(learner, Z, ds.y, ds.t, tp.horizon_ms, learn, score)
    preds["pa_scratch"] = 1.0 / (1.0 + np.exp(-preds["pa_scratch"]))  # monotone: ranking metrics unchanged
    out: dict[str, Any] = {"steps": steps, "selected": sel.best.label(), "horizon_hours": tp.horizon_hours,
                           "cutoff_ms": split.cutoff_ms}
    for name, idx in (("validation", split.val), ("final", split.final)):
        out[name] = evaluation.evaluate(ds.y[idx], {m: p[idx] for m, p in preds.items()}, ds.users[idx], n_boot,
                                        seed, references=("batch",))
    return out


def print_report(rep: dict[str, Any]) -> None:
    print(f"[online] batch model {rep['selected']}; steps chosen on the training period: {rep['steps']}")
    for part in ("validation", "final"):
        ev = rep[part]
        print(f"[online] {part}: {ev['rows']:,} rows, {ev['users']} users; delta vs batch, paired user bootstrap")
        for m, metrics in ev["models"].items():
            d = ev["delta"]["batch"].get(m)
            cells = [f"{k} {metrics[k]['value']:.4f}" + (f" ({d[k]['value']:+.4f} [{d[k]['ci95'][0]:+.4f}, "
                                                         f"{d[k]['ci95'][1]:+.4f}])" if d else "")
                     for k in ("pr_auc", "roc_auc", "log_loss")]
            print(f"[online]   {m:<15} " + "  ".join(cells))
    print("[online] pa_scratch's log loss is of sigmoid(margin), not of a probability: read only its ranking")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help=f"Taobao CSV (default: <taobao_dir>/{TAOBAO_HEAD})")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="report JSON (default: <run_dir>/online_eval.json)")
    Config.add_arguments(p, ("paths",))
    args = p.parse_args(argv)
    cfg = Config.from_args(args)
    with threadpool_limits(limits=1):
        rep = evaluate_online(args.data or cfg.taobao_dir / TAOBAO_HEAD, args.limit, args.bootstrap, args.seed)
    print_report(rep)
    out = args.out or cfg.run_path / "online_eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rep, indent=2, default=float))
    print(f"[online] wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
