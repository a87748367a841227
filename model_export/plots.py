"""The model card's figures: ROC and precision-recall on validation, reliability on validation and on
the final check."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from model_export import evaluation

# rules and the chosen model; the references would only crowd the figures
PLOTTED = ("constant", "cart", "recency", "logreg_landed", "logreg")


def write_plots(out_dir: Path, y_val: np.ndarray, preds_val: Mapping[str, np.ndarray], y_final: np.ndarray,
                preds_final: Mapping[str, np.ndarray]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # headless (CI, containers)
    import matplotlib.pyplot as plt

    files: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        files.append(name)

    shown = {m: p for m, p in preds_val.items() if m in PLOTTED}
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for m, p in shown.items():
        fpr, tpr, _ = roc_curve(y_val, p)
        ax.plot(fpr, tpr, label=f"{m} (AUC {roc_auc_score(y_val, p):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, validation")
    ax.legend(loc="lower right", fontsize=8)
    save(fig, "roc.png")

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for m, p in shown.items():
        prec, rec, _ = precision_recall_curve(y_val, p)
        # steps, as average precision is computed: a straight line would invent points between levels
        ax.plot(rec, prec, drawstyle="steps-post", label=f"{m} (AP {average_precision_score(y_val, p):.3f})")
    ax.axhline(y_val.mean(), color="k", ls=":", lw=0.8, label=f"base rate {y_val.mean():.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, validation")
    ax.legend(loc="upper right", fontsize=8)
    save(fig, "pr.png")

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), sharey=True)
    for ax, (title, y, preds) in zip(axes, (("validation", y_val, preds_val), ("final check", y_final, preds_final)),
                                     strict=True):
        for m in ("logreg", "logreg_uncalibrated", "logreg_landed"):
            if m in preds and len(y) and 0 < y.mean() < 1:
                pts = evaluation.reliability(y, preds[m])
                ax.plot([r["mean_prediction"] for r in pts], [r["observed_rate"] for r in pts], "o-", ms=3, label=m)
        if len(y):
            ax.axhline(y.mean(), color="grey", ls="--", lw=0.8, label=f"observed rate {y.mean():.3f}")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel="mean predicted probability (score decile)", title=f"Reliability, {title}",
               xlim=(0, 0.8), ylim=(0, 0.8))
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("observed purchase rate")
    save(fig, "reliability.png")
    return files
