"""model_export.segments: the numpy model and its ONNX graph agree, stability and silhouette drive the
choice of k, names read the centres, ids are ordered by size."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from model_export import export, segments
from model_export.dataset import WINDOW_START_MS
from model_export.segments import SegmentModel, SegmentParams
from tests.unit.model_helpers import small
from udfs import model_contract as mc
from udfs.features import FEATURE_NAMES, FEATURES_VERSION

FAST = SegmentParams(k_range=(2, 3), resamples=3, sample_rows=800, n_init=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    ds, split = small()
    out = tmp_path_factory.mktemp("seg") / "propensity.onnx"
    rep = segments.train_segments(ds, split, out, FAST, {"file": "x"}, WINDOW_START_MS)
    return {"rep": rep, "path": export.segments_path(out), "out": out}


def test_export_parity_and_metadata(trained: dict) -> None:
    ds, split = small()
    rep, path = trained["rep"], trained["path"]
    assert rep["parity_mismatches"] == 0 and rep["k"] in FAST.k_range
    sess = ort.InferenceSession(str(path), providers=[mc.CPU])
    X = ds.X[split.val]
    label, scores = sess.run([mc.SEGMENT_LABEL, mc.SEGMENT_SCORES], {mc.ONNX_INPUT: X})
    assert scores.shape == (len(X), rep["k"]) and set(np.unique(label)) <= set(range(rep["k"]))
    np.testing.assert_array_equal(label, np.argmin(scores, axis=1))
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props[mc.MODEL_VERSION].startswith(f"segments-v{FEATURES_VERSION}-")
    assert json.loads(props[mc.FEATURE_NAMES]) == FEATURE_NAMES and props[mc.SEGMENT_K] == str(rep["k"])
    names = json.loads(props[mc.SEGMENT_NAMES])
    assert names == [s["name"] for s in rep["segments"]] and len(set(names)) == rep["k"]
    assert json.loads(props[mc.SEGMENT_FEATURES]) == rep["features"]
    assert export.stale_reason(path, segments=True) is None


def test_choice_follows_stability_then_silhouette(trained: dict) -> None:
    rep = trained["rep"]
    table = rep["selection"]
    assert {(r["features"], r["k"]) for r in table} == {(f, k) for f in FAST.feature_sets for k in FAST.k_range}
    stable = [r for r in table if r["ari_p10"] >= FAST.min_ari]
    if stable:
        assert rep["chosen"] == max(stable, key=lambda r: r["silhouette"]) and rep["meets_stability_bar"]
    else:
        assert rep["chosen"] == max(table, key=lambda r: r["ari_p10"]) and not rep["meets_stability_bar"]


def test_choose_rules() -> None:
    rows = [{"features": "a", "k": 2, "silhouette": 0.2, "ari_p10": 0.95},
            {"features": "a", "k": 3, "silhouette": 0.4, "ari_p10": 0.85},
            {"features": "a", "k": 4, "silhouette": 0.5, "ari_p10": 0.6}]
    assert segments.choose(rows, SegmentParams()) == (rows[1], True)
    assert segments.choose(rows, SegmentParams(min_ari=0.99)) == (rows[0], False)
    assert segments.choose(rows, SegmentParams(k=4)) == (rows[2], False)
    ds, split = small()
    fixed = segments.stability(ds.X[split.train], ds.users[split.train], FEATURE_NAMES, replace(FAST, k=2))
    assert {r["k"] for r in fixed} == {2}


def test_stability_sees_structure() -> None:
    """Two well separated groups are stable at k=2; k=5 on the same data is not better by silhouette."""
    rng = np.random.default_rng(0)
    names = list(segments.SEGMENT_FEATURE_SETS["rates"])
    X = np.vstack([rng.normal(0, 0.3, (600, 4)), rng.normal(4, 0.3, (400, 4))]) + 10
    users = np.arange(len(X)) // 2
    params = SegmentParams(k_range=(2, 5), feature_sets=("rates",), resamples=4, sample_rows=500, n_init=2)
    table = {r["k"]: r for r in segments.stability(X, users, names, params)}
    assert table[2]["ari_p10"] > 0.95 and table[2]["silhouette"] > table[5]["silhouette"]


def test_parity_check_can_fail(trained: dict) -> None:
    ds, split = small()
    other = SegmentModel(segments.segment_columns(FEATURE_NAMES, "rates_focus"), trained["rep"]["k"] + 2,
                         n_init=2, seed=3).fit(ds.X[split.train])
    assert segments.parity(other, trained["path"], ds.X[split.val]) > 0


def test_train_segments_refuses_a_model_that_disagrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds, split = small()
    out = tmp_path / "propensity.onnx"
    monkeypatch.setattr(segments, "parity", lambda *a: 3)
    with pytest.raises(SystemExit, match="parity"):
        segments.train_segments(ds, split, out, replace(FAST, k=2, k_range=(2,)), {"file": "x"}, WINDOW_START_MS)
    assert not export.segments_path(out).exists()  # never leave a disagreeing model behind


def test_segments_are_numbered_by_size() -> None:
    ds, split = small()
    m = SegmentModel(segments.segment_columns(FEATURE_NAMES, "rates"), 3, n_init=2).fit(ds.X[split.train])
    sizes = np.bincount(m.predict(ds.X[split.train]), minlength=3)
    assert np.all(np.diff(sizes) <= 0), sizes


def test_names_read_the_centres() -> None:
    """Buyers with high rates and non-buyers: the names say so, relative to the average."""
    names = list(segments.SEGMENT_FEATURE_SETS["rates"])
    rng = np.random.default_rng(0)
    buyers = np.column_stack([rng.uniform(0.5, 1.5, 300), rng.uniform(20, 40, 300), rng.uniform(0.5, 1, 300),
                              rng.uniform(0.02, 0.05, 300)])
    lurkers = np.column_stack([np.zeros(700), rng.uniform(2, 10, 700), np.zeros(700), rng.uniform(0.02, 0.05, 700)])
    X = np.vstack([buyers, lurkers])
    m = SegmentModel(range(4), 2, n_init=2).fit(X)
    described = dict(zip(m.predict(X[[0, -1]]), ["buyers", "lurkers"], strict=True))
    d = {described[k]: n for k, n in enumerate(segments.describe(m, names))}
    assert d["lurkers"].startswith("no purchases in 7 days") and "fewer events per active day" in d["lurkers"]
    assert "more purchases per active day" in d["buyers"]
    assert all(set(c) == set(names) for c in m.raw_centres(names))


def test_report_counts_rows_and_calendar(trained: dict) -> None:
    ds, split = small()
    rep = trained["rep"]
    assert sum(s["train_rows"] for s in rep["segments"]) == len(split.train)
    assert sum(s["val_rows"] for s in rep["segments"]) == len(split.val)
    for d in rep["daily_shares"]:
        assert sum(d["shares"]) == pytest.approx(1.0)
    assert 0 <= rep["max_daily_share_range"] <= 1 and rep["switches_per_user_day"] >= 0
