"""The model card's segment section (``model_export.report`` assembles the card)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional


def _rate(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _selection(seg: Mapping[str, Any]) -> list[str]:
    bar = seg["params"]["min_ari"]
    lines = [
        f"k and the feature set are chosen on the training rows: for each candidate, the adjusted Rand index "
        f"between a fit on all rows and fits on {seg['params']['resamples']} bootstrap resamples of the users "
        f"(labels compared on a fixed sample of {seg['params']['sample_rows']:,} rows), and the silhouette on that "
        f"sample. Stable = 10th percentile of the ARIs >= {bar}; among the stable candidates the best silhouette "
        "wins.", "",
        "| features | k | silhouette | ARI median | ARI p10 | ARI min |", "|---|---|---|---|---|---|",
    ]
    for r in seg["selection"]:
        mark = " **(chosen)**" if (r["features"], r["k"]) == (seg["chosen"]["features"], seg["chosen"]["k"]) else ""
        lines.append(f"| {r['features']} | {r['k']} | {r['silhouette']:.3f} | {r['ari_median']:.2f} | "
                     f"{r['ari_p10']:.2f} | {r['ari_min']:.2f}{mark} |")
    if not seg["meets_stability_bar"]:
        lines += ["", f"**No candidate meets the stability bar ({bar}).** The most stable one is used; treat the "
                  "segment names as descriptive only."]
    return lines


def segment_lines(seg: Optional[Mapping[str, Any]], horizon_hours: float) -> list[str]:
    if not seg:
        return []
    segs = seg["segments"]
    lines = [
        f"## Segments: {seg['model_version']}", "",
        f"`{seg['onnx_file']}`: k-means, k={seg['k']}, on {', '.join(f'`{n}`' for n in seg['features'])} "
        f"(`log1p` of {', '.join(f'`{n}`' for n in seg['log_features']) or 'none'}), standardised; the same float32 "
        "`features` input as the propensity model, computed in float64 inside the graph "
        f"({', '.join(sorted(set(seg['ops'])))}; all CUDA-executable). ONNX vs numpy on {seg['parity_rows']:,} "
        f"validation rows: {seg['parity_mismatches']} differ (must be 0). Features are rates over the 7-day "
        "window: counts grow with the observed history and made the old segments follow the calendar.", "",
        *_selection(seg), "",
        "Names come from the centres: the features furthest from the training mean (at least 0.5 standard "
        "deviations), worded relative to the average. Ids are ordered by training size.", "",
        f"| segment | name | training rows | share | purchase rate ({horizon_hours:g}h), training | validation "
        "rows | share | validation users* | purchase rate, validation |", "|---|---|---|---|---|---|---|---|---|",
        *[f"| {s['id']} | {s['name']} | {s['train_rows']:,} | {s['train_share']:.1%} | "
          f"{_rate(s['train_purchase_rate'])} | {s['val_rows']:,} | {(s['val_share'] or 0):.1%} | {s['val_users']:,} | "
          f"{_rate(s['val_purchase_rate'])} |" for s in segs],
        "", "\\* a user counted once, in the segment of the user's latest validation row.", "",
        f"Calendar check: the largest change of a segment's share between days is "
        f"{seg['max_daily_share_range']:.1%} ({seg['max_daily_share_range_after_day0']:.1%} without day 0, whose "
        "histories are hours long); a user changes segment "
        f"{seg['switches_per_user_day']:.2f} times per user-day with events (training and validation rows).", "",
        "| day | rows | " + " | ".join(f"segment {s['id']}" for s in segs) + " |",
        "|---|---|" + "---|" * len(segs),
        *[f"| {d['day']} | {d['rows']:,} | " + " | ".join(f"{x:.1%}" for x in d["shares"]) + " |"
          for d in seg["daily_shares"]],
        "", "<details><summary>Segment centres (feature units)</summary>", "",
        "| feature | " + " | ".join(str(s["id"]) for s in segs) + " |", "|---|" + "---|" * len(segs),
        *[f"| `{n}` | " + " | ".join(f"{c[n]:.3g}" for c in seg["centres"]) + " |" for n in seg["features"]],
        "", "</details>", "",
    ]
    return lines
