"""Shared by the model tests: the first 8,000 lines of the Taobao head file replayed once per test
session, split as the trainer splits, and a helper that exports a linear model the way the trainer
does."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Optional

from flink_jobs.config import Config
from model_export import export, onnx_graphs
from model_export.dataset import (
    DAY_MS,
    HOUR_MS,
    WINDOW_START_MS,
    Dataset,
    Split,
    build_dataset,
    load_events,
    split_rows,
)
from model_export.models import LinearPropensity
from udfs.features import FEATURE_NAMES
from udfs.model_contract import Decision
from udfs.profile import Event

HEAD = Config().taobao_dir / "UserBehavior_head_84k.csv"
SMALL = 8_000
HORIZON = 24 * HOUR_MS
CUTOFF = WINDOW_START_MS + 6 * DAY_MS


@cache
def small_events() -> tuple[Event, ...]:
    events, _ = load_events(HEAD, limit=SMALL)
    return tuple(events)


@cache
def small() -> tuple[Dataset, Split]:
    ds = build_dataset(small_events(), HORIZON)
    return ds, split_rows(ds, CUTOFF, HORIZON)


def metadata(names: list[str] = FEATURE_NAMES, decision: Optional[Decision] = None) -> dict[str, str]:
    fp = {"file": "test.csv", "sha256": "0" * 64, "rows": 1}
    return export.model_metadata(export.model_version(fp, {"test": 1}, "logreg"), 24.0, fp, {}, "logreg", decision,
                                 feature_names=names)


def export_linear(model: LinearPropensity, path: Path, names: list[str] = FEATURE_NAMES,
                  decision: Optional[Decision] = None) -> Path:
    mask, w, b = model.linear_form(len(names))
    return export.write_onnx(onnx_graphs.linear_classifier(mask, w, b), path, metadata(names, decision), "test")
