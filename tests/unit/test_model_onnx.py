"""The exported graphs (model_export.onnx_graphs, model_export.export): only ops that onnxruntime's
CUDA provider implements, no ai.onnx.ml domain, parity with the numpy model, metadata and the
staleness check. CPU only: the op check reads the graph, it does not need a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from model_export import export, models, onnx_graphs
from model_export.segments import SegmentModel, segment_columns
from tests.unit.model_helpers import export_linear, metadata, small
from udfs import model_contract as mc
from udfs.features import FEATURE_NAMES, FEATURES_VERSION


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> dict:
    ds, split = small()
    sel = models.select_linear(ds.X, ds.y, split.inner, [models.LinearConfig("bounded", 0.01)])
    m = models.fit_propensity(ds.X[split.train], ds.y[split.train], sel)
    path = export_linear(m, tmp_path_factory.mktemp("onnx") / "propensity.onnx")
    return {"model": m, "path": path, "X": ds.X[split.val]}


def _ops(path: Path) -> list[tuple[str, str]]:
    return onnx_graphs.graph_ops(onnx.load(str(path)))


def test_linear_graph_uses_only_cuda_ops(linear: dict) -> None:
    ops = _ops(linear["path"])
    assert ops and all(domain == "" for domain, _ in ops)  # no ai.onnx.ml
    assert {op for _, op in ops} <= mc.CUDA_OPS
    assert mc.ops_without_cuda(ops) == []
    assert [o.domain for o in onnx.load(str(linear["path"])).opset_import] == [""]


def test_segment_graph_uses_only_cuda_ops() -> None:
    ds, split = small()
    seg = SegmentModel(segment_columns(FEATURE_NAMES, "rates"), 3, n_init=2).fit(ds.X[split.train])
    ops = onnx_graphs.graph_ops(seg.to_onnx(len(FEATURE_NAMES)))
    assert {op for _, op in ops} <= mc.CUDA_OPS and all(d == "" for d, _ in ops)


def test_the_op_check_can_fail() -> None:
    """What skl2onnx emits for the same kind of model is flagged: LinearClassifier, Scaler, ZipMap."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ds, split = small()
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(ds.X[split.train], ds.y[split.train])
    onx = convert_sklearn(pipe, initial_types=[("features", FloatTensorType([None, len(FEATURE_NAMES)]))])
    bad = mc.ops_without_cuda(onnx_graphs.graph_ops(onx))
    assert "ai.onnx.ml:LinearClassifier" in bad and "ai.onnx.ml:Scaler" in bad


def test_linear_graph_parity_and_shapes(linear: dict) -> None:
    X = linear["X"]
    sess = ort.InferenceSession(str(linear["path"]), providers=[mc.CPU])
    (inp,) = sess.get_inputs()
    assert inp.name == mc.ONNX_INPUT and inp.type == "tensor(float)" and inp.shape[1] == len(FEATURE_NAMES)
    (proba,) = sess.run([mc.PROBABILITIES], {mc.ONNX_INPUT: X})
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert np.max(np.abs(proba[:, 1] - linear["model"].predict_proba(X)[:, 1])) <= export.PARITY_TOL
    assert export.parity(linear["model"], linear["path"], X) <= export.PARITY_TOL


def test_parity_check_can_fail(linear: dict) -> None:
    other = models.make_linear(models.LinearConfig("bounded", 10.0)).fit(*_train())
    assert export.parity(other, linear["path"], linear["X"]) > export.PARITY_TOL


def _train() -> tuple[np.ndarray, np.ndarray]:
    ds, split = small()
    return ds.X[split.train], ds.y[split.train]


def test_metadata(linear: dict) -> None:
    props = {p.key: p.value for p in onnx.load(str(linear["path"])).metadata_props}
    assert json.loads(props[mc.FEATURE_NAMES]) == FEATURE_NAMES
    for key in mc.PROPENSITY_REQUIRED:
        assert props.get(key), key
    assert props[mc.MODEL_VERSION].startswith(f"propensity-v{FEATURES_VERSION}-")


def test_model_version_is_stable_and_tracks_inputs() -> None:
    fp = {"sha256": "ab", "rows": 10}
    cfg = models.LinearConfig("bounded", 0.01)
    v = export.model_version(fp, {"h": 24}, "logreg", cfg)
    assert v == export.model_version(dict(fp), {"h": 24}, "logreg", models.LinearConfig("bounded", 0.01))
    assert v != export.model_version(fp, {"h": 6}, "logreg", cfg)
    assert v != export.model_version({**fp, "rows": 11}, {"h": 24}, "logreg", cfg)
    assert v != export.model_version(fp, {"h": 24}, "logreg", models.LinearConfig("bounded", 0.1))


def test_stale_reason(linear: dict, tmp_path: Path) -> None:
    assert export.stale_reason(linear["path"]) is None
    assert "does not exist" in (export.stale_reason(tmp_path / "none.onnx") or "")
    names = [*FEATURE_NAMES[:-1], "hour_of_day_local"]
    other = export.write_onnx(onnx.load(str(linear["path"])), tmp_path / "old.onnx", metadata(names), "old")
    assert "other features" in (export.stale_reason(other) or "")
    assert export.stale_reason(linear["path"], segments=True) is not None  # not a segment model


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_stale_reason_flags_cpu_only_ops(tmp_path: Path) -> None:
    """A model from the previous trainer (skl2onnx, ai.onnx.ml ops) is retrained by --if-missing."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    X, y = _train()
    onx = convert_sklearn(LogisticRegression(max_iter=500).fit(X, y), options={"zipmap": False},
                          initial_types=[("features", FloatTensorType([None, len(FEATURE_NAMES)]))])
    path = export.write_onnx(onx, tmp_path / "skl2onnx.onnx", metadata(), "old trainer")
    assert "CUDA" in (export.stale_reason(path) or "")
