"""udfs.segmenter.OnnxSegmenter on a tiny segment model trained here: agreement with the numpy model,
shapes and range of ``assign``, metadata, feature-list check, provider choice, node placement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from flink_jobs.config import ROOT
from model_export import export, models, segments
from model_export.segments import SegmentModel, SegmentParams
from tests.unit.model_helpers import export_linear, small
from udfs import model_contract as mc
from udfs.features import FEATURE_NAMES, FEATURES_VERSION
from udfs.scorer import ModelMismatchError
from udfs.segmenter import OnnxSegmenter

CUDA_PRESENT = "CUDAExecutionProvider" in ort.get_available_providers()
K = 4
PARAMS = SegmentParams(k=K, n_init=2)


def _export(model: SegmentModel, names: list[str], path: Path, feature_names: list[str] = FEATURE_NAMES) -> Path:
    meta = segments.metadata("segments-test", model, names, PARAMS, "rates_focus", {"file": "test"}, feature_names)
    return export.write_onnx(model.to_onnx(len(feature_names)), path, meta, "test")


@pytest.fixture(scope="module")
def seg(tmp_path_factory: pytest.TempPathFactory) -> dict:
    ds, split = small()
    model = SegmentModel(segments.segment_columns(FEATURE_NAMES, "rates_focus"), K, n_init=2).fit(ds.X[split.train])
    names = segments.describe(model)
    d = tmp_path_factory.mktemp("segmenter")
    return {"model": model, "names": names, "path": _export(model, names, d / "segments.onnx"), "X": ds.X[split.val],
            "ds": ds, "dir": d}


@pytest.mark.parametrize("n", [1, 7, 64, 1000])
def test_assign_matches_the_model(seg: dict, n: int) -> None:
    s = OnnxSegmenter(seg["path"], provider="cpu")
    X = seg["X"][:n]
    got = s.assign(X)
    assert got.shape == (n,) and got.dtype == np.int64 and np.all((got >= 0) & (got < s.k))
    np.testing.assert_array_equal(got, seg["model"].predict(X))


def test_assign_all_validation_rows_uses_every_segment(seg: dict) -> None:
    got = OnnxSegmenter(seg["path"], provider="cpu").assign(seg["X"])
    np.testing.assert_array_equal(got, seg["model"].predict(seg["X"]))
    assert set(np.unique(got)) == set(range(K))


def test_metadata_and_placement(seg: dict) -> None:
    s = OnnxSegmenter(seg["path"])  # auto
    assert s.provider == ("CUDAExecutionProvider" if CUDA_PRESENT else "CPUExecutionProvider")
    assert s.model_version == "segments-test" and s.k == K
    assert s.segment_names == seg["names"] and len(set(s.segment_names)) == s.k and all(s.segment_names)
    assert s.feature_names == FEATURE_NAMES and s.input_name == "features" and s.name_of(0) == s.segment_names[0]
    info = s.describe()
    assert info["k"] == K and info["model_version"] == s.model_version
    assert info["runs_on"] == ("CUDA" if CUDA_PRESENT else "CPU")
    s.provider = mc.CUDA
    assert {p for _, p in s._node_placement()} == {mc.CUDA}  # every node of the graph has a CUDA kernel


def test_batch_shapes(seg: dict) -> None:
    s = OnnxSegmenter(seg["path"], provider="cpu")
    assert s.assign(np.empty((0, s.n_features), dtype=np.float32)).shape == (0,)
    assert s.assign(seg["X"][0]).shape == (1,)  # one vector
    np.testing.assert_array_equal(s.assign(seg["X"][:5].astype(np.float64)), s.assign(seg["X"][:5]))
    with pytest.raises(ValueError, match="shape"):
        s.assign(np.zeros((3, s.n_features - 1), dtype=np.float32))


def _renamed() -> list[str]:
    return [(f"{f}_legacy" if i == 3 else f) for i, f in enumerate(FEATURE_NAMES)]


def _swapped() -> list[str]:
    names = list(FEATURE_NAMES)
    names[0], names[1] = names[1], names[0]
    return names


@pytest.mark.parametrize(
    "names,must_name",
    [
        (_renamed(), [f"{FEATURE_NAMES[3]}_legacy", FEATURE_NAMES[3]]),
        (FEATURE_NAMES[:-1], [FEATURE_NAMES[-1]]),
        ([*FEATURE_NAMES, "zz_not_a_feature"], ["zz_not_a_feature"]),
        (_swapped(), [FEATURE_NAMES[0], FEATURE_NAMES[1], "order"]),
    ],
    ids=["renamed", "missing", "extra", "reordered"],
)
def test_feature_mismatch_is_refused(seg: dict, tmp_path: Path, names: list[str], must_name: list[str]) -> None:
    ds = seg["ds"]
    X = ds.X[:, : len(names)] if len(names) <= ds.X.shape[1] else np.column_stack([ds.X, np.zeros(len(ds.X))])
    model = SegmentModel([0, 1, 2], K, n_init=2).fit(X)
    path = _export(model, [f"s{i}" for i in range(K)], tmp_path / "other.onnx", feature_names=names)
    with pytest.raises(ModelMismatchError) as err:
        OnnxSegmenter(path, provider="cpu")
    for word in must_name:
        assert word in str(err.value)
    # The same file is accepted when the caller computes exactly that feature list.
    assert OnnxSegmenter(path, provider="cpu", expected_features=names).n_features == len(names)


def test_propensity_model_is_not_a_segment_model(seg: dict, tmp_path: Path) -> None:
    ds = seg["ds"]
    model = models.make_linear(models.LinearConfig("bounded", 0.01)).fit(ds.X, ds.y)
    path = export_linear(model, tmp_path / "propensity.onnx")
    with pytest.raises(ModelMismatchError, match="label|segment"):
        OnnxSegmenter(path, provider="cpu")


def test_names_must_match_k(seg: dict, tmp_path: Path) -> None:
    path = _export(seg["model"], seg["names"][:-1], tmp_path / "short.onnx")
    with pytest.raises(ModelMismatchError, match="segment names"):
        OnnxSegmenter(path, provider="cpu")


def test_bad_arguments(seg: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="provider"):
        OnnxSegmenter(seg["path"], provider="gpu")
    with pytest.raises(FileNotFoundError):
        OnnxSegmenter(tmp_path / "missing.onnx")


def test_metadata_names_are_json(seg: dict) -> None:
    s = OnnxSegmenter(seg["path"], provider="cpu")
    assert json.loads(s.metadata["segment_names"]) == s.segment_names
    assert set(json.loads(s.metadata["segment_features"])) < set(FEATURE_NAMES)
    assert s.metadata[mc.FEATURES_VERSION] == str(FEATURES_VERSION)


def test_segmenter_module_does_not_import_pyflink() -> None:
    code = "import sys, udfs.segmenter; sys.exit(any(m.startswith('pyflink') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
