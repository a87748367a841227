"""MODEL_CARD.md: every number is read from the report that ``model_export.train`` also writes to
metrics.json; nothing here is typed by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import numpy as np

from model_export import models
from model_export.dataset import BEIJING, DAY_MS, Dataset
from model_export.evaluation import METRICS
from model_export.export import PARITY_TOL, label_definition
from model_export.plots import write_plots
from model_export.segment_card import segment_lines
from udfs import model_contract as mc
from udfs.features import FEATURE_NAMES, FEATURES_VERSION, UNBOUNDED_FEATURES

__all__ = ["daily", "iso", "write_model_card", "write_plots"]

TARGET_PR_AUC = 0.37
DESCRIPTIONS = {
    "constant": models.ConstantRate.description,
    "cart": models.CartRule.description + " (the model card's old baseline)",
    "recency": models.RecencyRule.description,
    "logreg_landed": "the landed recipe: every feature (lifetime counts included), raw, standardised, "
                     "logistic regression C=1, uncalibrated",
    "logreg_uncalibrated": "the chosen model before Platt scaling",
    "logreg": "the chosen model: selected on the inner folds, Platt-calibrated (exported)",
}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, BEIJING).isoformat(timespec="seconds")


def daily(ds: Dataset, day0: int) -> list[dict[str, Any]]:
    """Rows and positive rate per Beijing calendar day (label drift shows up here)."""
    day = (ds.t - day0) // DAY_MS
    return [{"day": datetime.fromtimestamp((day0 + int(d) * DAY_MS) / 1000, BEIJING).date().isoformat(),
             "rows": int((day == d).sum()), "positive_rate": float(ds.y[day == d].mean())} for d in np.unique(day)]


def fmt(entry: Optional[Mapping[str, Any]], signed: bool = False) -> str:
    if not entry:
        return "n/a"
    f = "{:+.3f}" if signed else "{:.3f}"
    ci = entry.get("ci95")
    v = f.format(entry["value"])
    return f"{v} [{f.format(ci[0])}, {f.format(ci[1])}]" if ci else v


def metric_table(ev: Mapping[str, Any], mark: str = "logreg") -> list[str]:
    lines = ["| model | ROC-AUC | PR-AUC | Brier | log loss | mean prediction |", "|---|---|---|---|---|---|"]
    for m, vals in ev["models"].items():
        name = f"**{m}**" if m == mark else m
        lines.append(f"| {name} | " + " | ".join(fmt(vals[k]) for k in METRICS)
                     + f" | {vals['mean_prediction']['value']:.3f} |")
    lines.append(f"| *observed* | | {ev['positive_rate']:.3f} (base rate) | | | {ev['positive_rate']:.3f} |")
    return lines


def delta_lines(ev: Mapping[str, Any], ref: str) -> list[str]:
    d = ev.get("delta", {}).get(ref)
    if not d:
        return []
    lines = [f"Paired user-bootstrap CIs of model minus `{ref}` (same resamples; for Brier and log loss "
             "negative = better):", "", "| model | ROC-AUC | PR-AUC | Brier | log loss |", "|---|---|---|---|---|"]
    for m, vals in d.items():
        lines.append(f"| {m} | " + " | ".join(fmt(vals[k], signed=True) for k in METRICS) + " |")
    return lines + [""]


def verdict(rep: Mapping[str, Any]) -> list[str]:
    """The targets of the issue, met or not, on validation and on the final check."""
    lines = ["| target | validation | final check |", "|---|---|---|"]
    checks = []
    for s in ("validation", "final"):
        ev = rep[s]
        if "models" not in ev:
            checks.append(None)
            continue
        m, d = ev["models"]["logreg"], ev["delta"]
        gain = d["recency"]["logreg"]["pr_auc"]
        checks.append({
            "pr": (m["pr_auc"]["value"] >= TARGET_PR_AUC, fmt(m["pr_auc"])),
            "delta": (gain["ci95"][0] > 0, fmt(gain, signed=True)),
            "brier": (m["brier"]["value"] < ev["models"]["constant"]["brier"]["value"],
                      f"{m['brier']['value']:.4f} vs {ev['models']['constant']['brier']['value']:.4f}; paired "
                      f"{fmt(d['constant']['logreg']['brier'], signed=True)}"),
        })

    def cell(c: Optional[Mapping[str, Any]], key: str) -> str:
        if c is None:
            return "not evaluated"
        ok, text = c[key]
        return f"{'met' if ok else '**not met**'}: {text}"

    for key, title in (("pr", f"PR-AUC >= {TARGET_PR_AUC}"),
                       ("delta", "paired CI of PR-AUC(logreg) - PR-AUC(recency) above 0"),
                       ("brier", "Brier below the constant (training base rate)")):
        lines.append(f"| {title} | {cell(checks[0], key)} | {cell(checks[1], key)} |")
    return lines


def evidence(rep: Mapping[str, Any]) -> list[str]:
    """The numbers behind the verdict, in words: where the signal is and where it is not."""
    val, fin = rep["validation"], rep["final"]
    if "models" not in fin:
        return []
    m_v, m_f = val["models"], fin["models"]
    inner = [r["mean_pr_auc"] for r in rep["selection"]["table"]]
    gain_v, gain_f = val["delta"]["recency"]["logreg"]["pr_auc"], fin["delta"]["recency"]["logreg"]["pr_auc"]
    tied = [name for name, g in (("validation", gain_v), ("final check", gain_f)) if g["ci95"][0] <= 0 <= g["ci95"][1]]
    verdict_gain = (f"The interval includes 0 on {' and '.join(tied)}: with {val['users']} + {fin['users']} users, "
                    "the data cannot tell the model from the rule there." if tied else
                    "Both intervals exclude 0.")
    train_rate = rep["split"]["train_positive_rate"]
    return [
        "What the numbers say:", "",
        f"- Base rate: training {train_rate:.3f}, validation {val['positive_rate']:.3f}, final check "
        f"{fin['positive_rate']:.3f}. The constant predicts the training rate; a model calibrated to the training "
        "period carries the same offset where the rate has moved.",
        f"- The recency rule alone (purchases in the last 7 days) reaches PR-AUC {fmt(m_v['recency']['pr_auc'])} on "
        f"validation and {fmt(m_f['recency']['pr_auc'])} on the final check. The model's gain over it: "
        f"{fmt(gain_v, signed=True)} and {fmt(gain_f, signed=True)}. {verdict_gain}",
        f"- The inner folds' mean PR-AUC ranges {min(inner):.3f} to {max(inner):.3f} over the whole grid, narrower "
        "than any validation CI: the choice of C and feature set matters less than which users are in the set.",
        f"- Calibration: Platt slope {rep['calibration']['slope']:.2f} fitted on held-out training days. Brier, "
        f"uncalibrated vs calibrated: validation {m_v['logreg_uncalibrated']['brier']['value']:.4f} vs "
        f"{m_v['logreg']['brier']['value']:.4f}, final check {m_f['logreg_uncalibrated']['brier']['value']:.4f} vs "
        f"{m_f['logreg']['brier']['value']:.4f}. Scores are close to the base rate either way (reliability plot).",
        "- The strongest single signal, purchases over the past week, is the one the data truncates: histories start "
        "on the first day, so training rows see fewer days of it than validation rows (drift table). The model "
        "reads no raw 7-day count for that reason.", "",
    ]


def _selection_lines(rep: Mapping[str, Any]) -> list[str]:
    sel = rep["selection"]
    lines = ["Inner folds (fit rows / check rows): "
             + "; ".join(f"{f['fit_rows']:,} / {f['check_rows']:,}" for f in sel["inner_folds"])
             + ". Each fold fits on the training rows whose label window closes before the fold's cutoff and "
             "scores the next day of training rows; the config with the best mean PR-AUC wins.", "",
             "| feature set | C | inner PR-AUC per fold | mean |", "|---|---|---|---|"]
    for r in sel["table"]:
        c = r["config"]
        mark = " **(chosen)**" if c == sel["best"] else ""
        lines.append(f"| {c['features']} | {c['C']:g} | " + ", ".join(f"{v:.3f}" for v in r["fold_pr_auc"])
                     + f" | {r['mean_pr_auc']:.3f}{mark} |")
    return lines


def _feature_lines(rep: Mapping[str, Any]) -> list[str]:
    used, logged = set(rep["used_features"]), set(rep["log_features"])
    rows = sorted(rep["drift"].items(), key=lambda kv: -kv[1]["psi"])
    lines = [
        f"The model reads {len(used)} of the {len(FEATURE_NAMES)} features (`{mc.USED_FEATURES}` in the ONNX "
        f"metadata); `log1p` is applied inside the graph to {len(logged)} of them. Left out always: the "
        f"{len(UNBOUNDED_FEATURES)} lifetime features marked `\"bounded\": false` in `schemas/features.json` "
        "(they grow with the observed history; histories here start at the data's first day, in serving they "
        "do not).", "",
        "Drift from the training rows to the validation rows: PSI over the training deciles (< 0.1 stable, "
        "> 0.25 a real shift) and the share of validation rows above the training 99th percentile. Raw 7-day "
        "counts drift because the 7-day window fills up during the 9 days of data.", "",
        "<details><summary>Feature drift, training -> validation</summary>", "",
        "| feature | used | PSI | above training p99 |", "|---|---|---|---|",
    ]
    for n, d in rows:
        tag = "log1p" if n in logged else ("yes" if n in used else ("lifetime" if n in UNBOUNDED_FEATURES else ""))
        lines.append(f"| `{n}` | {tag} | {d['psi']:.3f} | {d['above_train_p99']:.1%} |")
    lines += ["", "</details>", "", "Signals added in features version 3 (`model_export.models.NEW_SIGNALS`). "
              "Whether the model reads a group was decided once on validation (a new signal stays where it "
              "helps there); this table recomputes the evidence: the chosen config refitted with and without the "
              "group, uncalibrated, scored on validation.", "",
              "| signal | features | read by the model | PR-AUC with - without [paired CI] | log loss without - with |",
              "|---|---|---|---|---|"]
    for r in rep["new_signals"]:
        lo, hi = r["pr_auc_gain_ci95"]
        lines.append(f"| {r['group']} | {', '.join(f'`{f}`' for f in r['features'])} | "
                     f"{'yes' if r['read_by_model'] else 'no'} | {r['pr_auc_gain']:+.4f} [{lo:+.4f}, {hi:+.4f}] | "
                     f"{r['log_loss_gain']:+.4f} |")
    coef = sorted(rep["coefficients"].items(), key=lambda kv: -abs(kv[1]))
    lines += ["", "<details><summary>Coefficients (calibrated logit per training standard "
              "deviation of the transformed feature)</summary>", "", "| feature | coefficient |", "|---|---|",
              *[f"| `{n}` | {v:+.3f} |" for n, v in coef], "", "</details>", ""]
    return lines


def _topk_lines(rep: Mapping[str, Any]) -> list[str]:
    tk = rep["top_k"]
    dec = rep["decision"]
    lines = [
        "Every prediction carries `decision` (true when the score is at least the threshold below) and "
        "`score_decile` (1..10 against the validation score deciles; 10 = highest). k is chosen on validation: "
        "the share whose lift has the highest lower CI bound. The final check applies validation's thresholds "
        "unchanged.", "",
        "| k | threshold | validation: flagged | precision | lift | final check: flagged | precision | lift |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v, f in zip(tk["validation"], tk["final"], strict=True):
        mark = " **(chosen)**" if v["k"] == tk["chosen_k"] else ""

        def pl(r: Mapping[str, Any]) -> str:
            pc, lc = r["precision_ci95"], r["lift_ci95"]
            p = f"{r['precision']:.3f}" + (f" [{pc[0]:.3f}, {pc[1]:.3f}]" if pc else "")
            return p + f" | {r['lift']:.2f}" + (f" [{lc[0]:.2f}, {lc[1]:.2f}]" if lc else "")

        lines.append(f"| {v['k']:.0%}{mark} | {v['threshold']:.4f} | {v['flagged_share']:.1%} | {pl(v)} | "
                     f"{f['flagged_share']:.1%} | {pl(f)} |")
    lines += ["", f"Chosen: top {dec['top_fraction']:.0%}, threshold {dec['threshold']:.4f}. Decile edges: "
              + ", ".join(f"{e:.3f}" for e in dec["decile_edges"]) + ".", ""]
    return lines


def _export_lines(rep: Mapping[str, Any]) -> list[str]:
    lat = rep["latency"]
    return [
        f"`{rep['onnx_file']}`: the calibrated model as one graph of standard ONNX ops "
        f"({', '.join(sorted(set(rep['graph_ops'])))}), built with `onnx.helper` (`model_export.onnx_graphs`): "
        "`log1p` of the skewed columns, one MatMul with the standardisation, the coefficients and the Platt "
        "scaling folded into its weights, Sigmoid. No `ai.onnx.ml` op, so onnxruntime's CUDA provider can run "
        "every node (`udfs.scorer.OnnxScorer.runs_on` says where they do run). ONNX vs the numpy model on all "
        f"validation rows: max |diff| = {rep['parity_max_abs_diff']:.2e} (limit {PARITY_TOL:g}).",
        "",
        f"CPU, 1 thread, this machine (shared): batch 1 median {lat['batch1_median_us']:.0f} µs, "
        f"{lat['batch1024_rows_per_s']:,.0f} rows/s at batch 1024. Not measured on a GPU in this run: "
        "`bench/bench_scorer.py --provider cuda` does that where one exists.",
        "",
    ]


def _split_lines(rep: Mapping[str, Any]) -> list[str]:
    p, split, val, fin = rep["params"], rep["split"], rep["validation"], rep["final"]
    return [
        f"- Training: rows before {split['cutoff']} (the first {p['train_days']} days) whose label window closes "
        f"before it ({split['purged_rows']:,} rows purged), {split['train_rows']:,} rows, "
        f"{split['train_positive_rate']:.3f} positive.",
        f"- Inner folds: {p['inner_folds']} time folds inside the training rows choose the feature set and C "
        "and give the held-out predictions the calibration is fitted on.",
        f"- Validation: development users' rows from the cutoff on: {val['rows']:,} rows, {val['users']} users, "
        f"{val['positive_rate']:.3f} positive. Reported here; k of the decision is chosen here.",
        f"- Final check: {split['final_users']} users ({p['final_frac']:.0%}, by a hash of user_id with a salt fixed "
        "before any of their results was looked at) give no training, selection or validation rows; their rows "
        f"from the cutoff on ({fin.get('rows', 0):,} rows) are scored after everything else is fixed, and no "
        "step of the run reads them to decide anything. They are also the unseen-user estimate.",
        f"- {split['users_first_seen_after_cutoff']} users are first seen after the cutoff: the head file holds "
        "complete histories of users active from the first day.",
    ]


def _header(rep: Mapping[str, Any]) -> list[str]:
    p, data = rep["params"], rep["data"]
    return [
        f"# Model card: {rep['model_version']}", "",
        f"Generated by `python -m model_export.train` at {rep['created_at']}; the ONNX file is `{rep['onnx_file']}`. "
        "Numbers below are computed, not edited.", "",
        "## Verdict", "", *verdict(rep), "",
        f"Selected on the inner folds: {rep['selection']['label']}.", "", *evidence(rep),
        "## What it predicts", "",
        f"Purchase propensity for every incoming user event. Label: {label_definition(p['horizon_hours'])}", "",
        f"Input: float32 `{mc.ONNX_INPUT}` [n, {len(FEATURE_NAMES)}], features version {FEATURES_VERSION} "
        "(`schemas/features.json`), computed by `udfs.features.feature_vector`, the function the Flink job runs. "
        f"Output: `{mc.PROBABILITIES}` [n, 2]; column 1 is the calibrated P(purchase within the horizon).", "",
        "## Data", "",
        f"- `{data['file']}` (sha256 `{data['sha256'][:16]}...`): Taobao UserBehavior, complete 9-day histories of "
        f"{data['users']} users (research-use licence, see SOURCE.md). {data['events_read']:,} events read; "
        f"{data['dropped_before_window']} dropped as before 2017-11-25 00:00 Beijing time (bad clocks).",
        f"- Censoring: {data['censored_rows']:,} events within {p['horizon_hours']:g}h of the last event "
        f"({data['end_time']}) are not rows (they still update the profile). {data['labelled_rows']:,} labelled "
        f"rows, positive rate {data['positive_rate']:.3f}. Taobao has no prices: spend features are 0.", "",
    ]


def write_model_card(out_dir: Path, rep: Mapping[str, Any], plots: Sequence[str]) -> Path:
    val, fin = rep["validation"], rep["final"]
    cal = rep["calibration"]
    lines = [
        *_header(rep),
        "## Split", "", *_split_lines(rep), "",
        "## Features", "", *_feature_lines(rep),
        "## Models compared", "", *[f"- `{m}`: {DESCRIPTIONS.get(m, m)}." for m in val["models"]], "",
        "Rules and the constant predict their bucket's training purchase rate (Laplace-smoothed), so Brier and "
        "log loss compare fairly. 95% CIs: percentile bootstrap over users "
        f"({val['bootstrap']['resamples']:,} resamples, shared by all models, so differences are paired).", "",
        "### Selection on the inner folds", "", *_selection_lines(rep), "",
        f"### Validation ({val['rows']:,} rows)", "", *metric_table(val), "", *delta_lines(val, "recency"),
        *delta_lines(val, "constant"),
        f"### Final check ({fin.get('rows', 0):,} rows, held-out users, run once)", "",
        *(metric_table(fin) + [""] + delta_lines(fin, "recency") + delta_lines(fin, "constant")
          if "models" in fin else [f"Not evaluated: {fin.get('note')}.", ""]),
        "## Calibration", "",
        f"Platt scaling p = sigmoid({cal['slope']:.3f} * logit {'+' if cal['intercept'] >= 0 else '-'} "
        f"{abs(cal['intercept']):.3f}), fitted on the inner folds' held-out logits and folded into the exported "
        "weights. The base rate moves from day to day (table under Limits), which no calibration fitted on earlier "
        "days can know. The plot shows mean prediction against observed rate per score decile.", "",
        *[f"![{Path(f).stem}]({f})" for f in plots], "",
        "## Decision: top-k targeting", "", *_topk_lines(rep),
        "## Export", "", *_export_lines(rep),
        *segment_lines(rep.get("segments"), rep["params"]["horizon_hours"]),
        *_retail_lines(rep.get("online_retail")),
        *_limits(rep),
    ]
    path = out_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _retail_lines(rr: Optional[Mapping[str, Any]]) -> list[str]:
    if not rr:
        return []
    if "skipped" in rr:
        return ["## Second shop: UCI Online Retail", "", f"Not evaluated in this run: {rr['skipped']}.", ""]
    lines = [
        "## Second shop: UCI Online Retail (evaluation only)", "",
        f"The same pipeline on `{rr['file']}` (UCI Online Retail, CC BY 4.0, sha256 `{rr['sha256'][:16]}...`): "
        f"{rr['events']:,} purchase lines, {rr['users']:,} customers, {rr['sessions']:,} invoices, "
        f"{rr['first_event']} to {rr['end_time']}; one row per invoice (the profile after the basket); split at "
        f"{rr['cutoff']}, 20% of customers held out. `rule` = {models.FrequencyRule.description}. Only purchase "
        "events: view/cart/fav features are 0. Nothing of this goes into the exported model.", "",
    ]
    for h in rr["horizons"]:
        title = f"### Horizon {h['horizon_days']:g} day{'s' if h['horizon_days'] != 1 else ''}"
        if "validation" not in h or "models" not in h["validation"]:
            lines += [title, "", f"Not evaluated: {h.get('note', h.get('validation', {}).get('note'))}.", ""]
            continue
        val, held = h["validation"], h["held_out_customers"]
        lines += [title, "", f"Train {h['train_rows']:,} rows ({h['train_positive_rate']:.3f} positive); selected "
                  f"{h['selected']}. Validation {val['rows']:,} rows ({val['positive_rate']:.3f} positive):", "",
                  *metric_table(val), "", *delta_lines(val, "rule")]
        if "models" in held:
            lines += [f"Held-out customers ({held['rows']:,} rows), PR-AUC: "
                      + "; ".join(f"{m} {fmt(v['pr_auc'])}" for m, v in held["models"].items()) + ".", ""]
    return lines + [f"Load {rr['load_s']:.1f} s, replay {rr['replay_s']:.1f} s.", ""]


def _limits(rep: Mapping[str, Any]) -> list[str]:
    return [
        "## Limits", "",
        f"- {rep['data']['users']} users and 9 days: CIs are wide, and the final check rests on "
        f"{rep['split']['final_users']} users.",
        "- Every history starts on the data's first day, so 7-day windows are full only at the end: the model "
        "reads 7-day ratios and capped recencies but no raw 7-day count, and the drift table shows what remains.",
        "- Signals that would need new profile state are missing, e.g. items carted and not bought since.",
        "- The label is any purchase by the user, not of the item in the event. Hours are UTC.",
        "- The base rate moves by day: probabilities are calibrated to the training period.", "",
        "| day (Beijing) | labelled rows | positive rate |", "|---|---|---|",
        *[f"| {d['day']} | {d['rows']:,} | {d['positive_rate']:.3f} |" for d in rep["data"]["daily"]], "",
        "## Timings (this machine, seconds)", "", "| stage | s |", "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in rep["timings_s"].items()], "",
    ]
