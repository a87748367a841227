"""udfs.scorer.OnnxScorer on a tiny model trained here: loading, feature-list check, provider choice,
batch scoring."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from flink_jobs.config import ROOT, Config
from model_export import train
from model_export.train import DAY_MS, WINDOW_START_MS, TrainParams
from udfs import scorer as scorer_mod
from udfs.features import FEATURE_NAMES, FEATURES_VERSION
from udfs.scorer import ModelMismatchError, OnnxScorer, ProviderUnavailableError

HEAD = Config().taobao_dir / "UserBehavior_head_84k.csv"
CUDA_PRESENT = "CUDAExecutionProvider" in ort.get_available_providers()


def _meta(names: list[str]) -> dict[str, str]:
    params = TrainParams()
    fp = {"file": "test", "rows": 0}
    return train.model_metadata(train.model_version(fp, params, "t"), params, fp, {}, "t", 0.5, names)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    params = TrainParams(hgb_max_iter=10)
    events, _ = train.load_events(HEAD, limit=8_000)
    ds = train.build_dataset(events, params.horizon_ms)
    split = train.split_rows(ds, WINDOW_START_MS + 6 * DAY_MS, params.horizon_ms)
    models, _ = train.train_models(ds.X[split.train], ds.y[split.train], params)
    d = tmp_path_factory.mktemp("scorer")
    paths = {m: train.export_onnx(models[m], d / f"{m}.onnx", _meta(FEATURE_NAMES))
             for m in ("logreg", "hgb")}
    return {"ds": ds, "X": ds.X[split.val], "models": models, "paths": paths, "dir": d}


@pytest.mark.parametrize("name", ["hgb", "logreg"])
@pytest.mark.parametrize("n", [1, 7, 64, 1000])
def test_scores_match_sklearn(trained: dict, name: str, n: int) -> None:
    s = OnnxScorer(trained["paths"][name], provider="cpu")
    X = trained["X"][:n]
    assert len(X) == n
    p = s.score(X)
    assert p.shape == (n,) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p, trained["models"][name].predict_proba(X)[:, 1], atol=1e-5, rtol=0)


def test_provider_and_metadata(trained: dict, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="udfs.scorer"):
        s = OnnxScorer(trained["paths"]["hgb"])  # auto
    assert s.provider == ("CUDAExecutionProvider" if CUDA_PRESENT else "CPUExecutionProvider")
    assert s.model_version.startswith(f"propensity-v{FEATURES_VERSION}-")
    assert s.feature_names == FEATURE_NAMES and s.n_features == len(FEATURE_NAMES)
    assert s.input_name == "features"
    assert [r for r in caplog.records if s.provider in r.getMessage()], "no load line naming the provider"
    assert OnnxScorer(trained["paths"]["hgb"], provider="cpu").provider == "CPUExecutionProvider"


def test_threads_are_a_parameter(trained: dict) -> None:
    default = OnnxScorer(trained["paths"]["logreg"], provider="cpu")
    two = OnnxScorer(trained["paths"]["logreg"], provider="cpu", intra_op_num_threads=2)
    assert default.session.get_session_options().intra_op_num_threads == 1
    assert two.session.get_session_options().intra_op_num_threads == 2


def test_batch_shapes(trained: dict) -> None:
    s = OnnxScorer(trained["paths"]["logreg"], provider="cpu")
    assert s.score(np.empty((0, s.n_features), dtype=np.float32)).shape == (0,)
    assert s.score(trained["X"][0]).shape == (1,)  # one vector
    assert s.score(trained["X"][:5].astype(np.float64)).shape == (5,)  # float64 is cast
    with pytest.raises(ValueError, match="shape"):
        s.score(np.zeros((3, s.n_features - 1), dtype=np.float32))


# Names no feature list will hold (n_cart_7d, spend_7d became real features in version 2), so these
# cases stay a rename and an extra feature whatever is added.
RENAMED, EXTRA = f"{FEATURE_NAMES[2]}_legacy", "zz_not_a_feature"


def _renamed() -> list[str]:
    return [(RENAMED if i == 2 else f) for i, f in enumerate(FEATURE_NAMES)]


def _swapped() -> list[str]:
    names = list(FEATURE_NAMES)
    names[0], names[1] = names[1], names[0]
    return names


@pytest.mark.parametrize(
    "names,cols,must_name",
    [
        (_renamed(), None, [RENAMED, FEATURE_NAMES[2]]),
        (FEATURE_NAMES[:-1], slice(0, -1), [FEATURE_NAMES[-1]]),
        ([*FEATURE_NAMES, EXTRA], None, [EXTRA]),
        (_swapped(), None, [FEATURE_NAMES[0], FEATURE_NAMES[1], "order"]),
    ],
    ids=["renamed", "missing", "extra", "reordered"],
)
def test_feature_mismatch_is_refused(trained: dict, tmp_path: Path, names: list[str], cols: slice | None,
                                     must_name: list[str]) -> None:
    ds = trained["ds"]
    X = ds.X if cols is None else ds.X[:, cols]
    if len(names) > X.shape[1]:
        X = np.column_stack([X, np.zeros(len(X), dtype=np.float32)])
    model = train.make_models(TrainParams())["logreg"].fit(X, ds.y)
    path = train.export_onnx(model, tmp_path / "other.onnx", _meta(names))
    with pytest.raises(ModelMismatchError) as err:
        OnnxScorer(path, provider="cpu")
    assert isinstance(err.value, ValueError)
    for word in must_name:
        assert word in str(err.value)


def test_model_without_feature_metadata_is_refused(trained: dict, tmp_path: Path) -> None:
    onx = train.to_onnx(trained["models"]["logreg"], len(FEATURE_NAMES))
    path = tmp_path / "bare.onnx"
    path.write_bytes(onx.SerializeToString())
    with pytest.raises(ModelMismatchError, match="feature_names"):
        OnnxScorer(path, provider="cpu")


def test_cuda_listed_but_unusable_falls_back(trained: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """What onnxruntime-gpu does on a host without a GPU: it lists CUDA, then cannot use it."""
    if CUDA_PRESENT:
        pytest.skip("a real CUDA provider is present")
    monkeypatch.setattr(scorer_mod.ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.warns(UserWarning):  # onnxruntime's own "not in available provider names"
        s = OnnxScorer(trained["paths"]["hgb"], provider="auto")
    assert s.provider == "CPUExecutionProvider"
    with pytest.warns(UserWarning), pytest.raises(ProviderUnavailableError, match="fell back"):
        OnnxScorer(trained["paths"]["hgb"], provider="cuda")


def test_cuda_required_but_absent(trained: dict) -> None:
    if CUDA_PRESENT:
        pytest.skip("a real CUDA provider is present")
    with pytest.raises(ProviderUnavailableError, match="cuda"):
        OnnxScorer(trained["paths"]["hgb"], provider="cuda")


def test_bad_arguments(trained: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="provider"):
        OnnxScorer(trained["paths"]["hgb"], provider="gpu")
    with pytest.raises(FileNotFoundError):
        OnnxScorer(tmp_path / "missing.onnx")


def test_scorer_module_does_not_import_pyflink() -> None:
    code = "import sys, udfs.scorer; sys.exit(any(m.startswith('pyflink') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.parametrize("actual,must", [
    (["a", "a", "c"], ["'b'", "more than once", "'a'"]),
    (["a", "b", "c", "c"], ["more than once", "'c'", "4 features in the model, 3"]),
    (["a", "c", "b"], ["another order"]),
])
def test_feature_mismatch_descriptions(actual: list[str], must: list[str]) -> None:
    text = scorer_mod.feature_mismatch(["a", "b", "c"], actual) or ""
    for word in must:
        assert word in text, text
    assert scorer_mod.feature_mismatch(["a", "b"], ["a", "b"]) is None
