"""udfs.scorer.OnnxScorer on a tiny model trained here: loading, feature-list check, provider choice,
where the nodes run, the decision it carries, batch scoring."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from flink_jobs.config import ROOT
from model_export import export, models
from tests.unit.model_helpers import export_linear, metadata, small
from udfs import model_contract as mc
from udfs import scorer as scorer_mod
from udfs.features import FEATURE_NAMES, FEATURES_VERSION
from udfs.scorer import ModelMismatchError, OnnxScorer, ProviderUnavailableError

CUDA_PRESENT = "CUDAExecutionProvider" in ort.get_available_providers()
DECISION = mc.Decision(0.1, 0.4, tuple(np.linspace(0.1, 0.5, 9)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    ds, split = small()
    model = models.make_linear(models.LinearConfig("bounded", 0.01)).fit(ds.X[split.train], ds.y[split.train])
    d = tmp_path_factory.mktemp("scorer")
    return {"ds": ds, "X": ds.X[split.val], "model": model, "dir": d,
            "path": export_linear(model, d / "p.onnx", decision=DECISION),
            "bare": export_linear(model, d / "no_decision.onnx"), "skl2onnx": _skl2onnx(ds, split, d)}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def _skl2onnx(ds: object, split: object, d: Path) -> Path:
    """The previous trainer's kind of file: ai.onnx.ml LinearClassifier, no CUDA kernel."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = LogisticRegression(max_iter=100).fit(ds.X[split.train], ds.y[split.train])  # type: ignore[attr-defined]
    onx = convert_sklearn(lr, options={"zipmap": False},
                          initial_types=[(mc.ONNX_INPUT, FloatTensorType([None, len(FEATURE_NAMES)]))])
    return export.write_onnx(onx, d / "skl2onnx.onnx", metadata(), "old trainer")


@pytest.mark.parametrize("n", [1, 7, 64, 1000])
def test_scores_match_the_model(trained: dict, n: int) -> None:
    s = OnnxScorer(trained["path"], provider="cpu")
    X = trained["X"][:n]
    p = s.score(X)
    assert p.shape == (n,) and p.dtype == np.float64 and np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p, trained["model"].predict_proba(X)[:, 1], atol=1e-5, rtol=0)


def test_provider_and_metadata(trained: dict, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="udfs.scorer"):
        s = OnnxScorer(trained["path"])  # auto
    assert s.provider == ("CUDAExecutionProvider" if CUDA_PRESENT else "CPUExecutionProvider")
    assert s.model_version.startswith(f"propensity-v{FEATURES_VERSION}-")
    assert s.feature_names == FEATURE_NAMES and s.n_features == len(FEATURE_NAMES) and s.input_name == "features"
    assert [r for r in caplog.records if s.provider in r.getMessage() and s.runs_on in r.getMessage()]
    assert OnnxScorer(trained["path"], provider="cpu").provider == "CPUExecutionProvider"


def test_node_placement_is_derived_from_the_graph(trained: dict) -> None:
    cpu = OnnxScorer(trained["path"], provider="cpu")
    ops = [op for _, op in cpu.graph_ops()]
    assert [op for op, _ in cpu.node_placement] == ops
    assert cpu.runs_on == "CPU" and {p for _, p in cpu.node_placement} == {mc.CPU}
    # the same file in a CUDA session: every node has a CUDA kernel
    cpu.provider = mc.CUDA
    assert {p for _, p in cpu._node_placement()} == {mc.CUDA}
    # the previous trainer's file in a CUDA session: LinearClassifier stays on the CPU, so 'CPU'
    old = OnnxScorer(trained["skl2onnx"], provider="cpu")
    old.provider = mc.CUDA
    placed = dict(old._node_placement())
    assert placed["LinearClassifier"] == mc.CPU
    assert old.describe()["cpu_nodes"] and old.describe()["runs_on"] == "CPU"


def test_decision_and_deciles(trained: dict) -> None:
    s = OnnxScorer(trained["path"], provider="cpu")
    assert s.decision == DECISION
    scores = np.array([0.05, 0.39, 0.4, 0.6])
    decisions, deciles = s.decide(scores)
    assert decisions == [False, False, True, True] and deciles == [1, 7, 8, 10]  # edges 0.10, 0.15, .., 0.50
    bare = OnnxScorer(trained["bare"], provider="cpu")
    assert bare.decision is None and bare.decide(scores) == ([None] * 4, [None] * 4)


def test_decision_metadata_is_validated(trained: dict, tmp_path: Path) -> None:
    model = onnx.load(str(trained["bare"]))
    meta = {**metadata(), mc.DECISION: '{"top_fraction": 0.1, "threshold": 0.4, "decile_edges": [0.3, 0.2]}'}
    path = export.write_onnx(model, tmp_path / "bad.onnx", meta, "bad")
    with pytest.raises(ModelMismatchError, match="decision"):
        OnnxScorer(path, provider="cpu")


def test_threads_are_a_parameter(trained: dict) -> None:
    default = OnnxScorer(trained["path"], provider="cpu")
    two = OnnxScorer(trained["path"], provider="cpu", intra_op_num_threads=2)
    assert default.session.get_session_options().intra_op_num_threads == 1
    assert two.session.get_session_options().intra_op_num_threads == 2


def test_batch_shapes(trained: dict) -> None:
    s = OnnxScorer(trained["path"], provider="cpu")
    assert s.score(np.empty((0, s.n_features), dtype=np.float32)).shape == (0,)
    assert s.score(trained["X"][0]).shape == (1,)  # one vector
    assert s.score(trained["X"][:5].astype(np.float64)).shape == (5,)  # float64 is cast
    with pytest.raises(ValueError, match="shape"):
        s.score(np.zeros((3, s.n_features - 1), dtype=np.float32))


RENAMED, EXTRA = f"{FEATURE_NAMES[2]}_legacy", "zz_not_a_feature"


def _renamed() -> list[str]:
    return [(RENAMED if i == 2 else f) for i, f in enumerate(FEATURE_NAMES)]


def _swapped() -> list[str]:
    names = list(FEATURE_NAMES)
    names[0], names[1] = names[1], names[0]
    return names


@pytest.mark.parametrize(
    "names,must_name",
    [
        (_renamed(), [RENAMED, FEATURE_NAMES[2]]),
        (FEATURE_NAMES[:-1], [FEATURE_NAMES[-1]]),
        ([*FEATURE_NAMES, EXTRA], [EXTRA]),
        (_swapped(), [FEATURE_NAMES[0], FEATURE_NAMES[1], "order"]),
    ],
    ids=["renamed", "missing", "extra", "reordered"],
)
def test_feature_mismatch_is_refused(trained: dict, tmp_path: Path, names: list[str], must_name: list[str]) -> None:
    ds = trained["ds"]
    X = ds.X[:, : len(names)] if len(names) <= ds.X.shape[1] else np.column_stack([ds.X, np.zeros(len(ds.X))])
    model = models.LinearPropensity(range(len(names)), C=0.01).fit(X, ds.y)
    path = export_linear(model, tmp_path / "other.onnx", names=names)
    with pytest.raises(ModelMismatchError) as err:
        OnnxScorer(path, provider="cpu")
    assert isinstance(err.value, ValueError)
    for word in must_name:
        assert word in str(err.value)


def test_model_without_feature_metadata_is_refused(trained: dict, tmp_path: Path) -> None:
    model = onnx.load(str(trained["bare"]))
    del model.metadata_props[:]
    path = tmp_path / "bare.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelMismatchError, match="feature_names"):
        OnnxScorer(path, provider="cpu")


class _FakeSession:
    """Records what a CUDA session was asked with, then fails as a host without a GPU does."""

    calls: list[tuple[list[str], ort.SessionOptions]] = []

    def __init__(self, path: str, sess_options: ort.SessionOptions, providers: list[str]) -> None:
        _FakeSession.calls.append((providers, sess_options))
        raise RuntimeError("no CUDA device")


def test_cuda_sessions_disable_the_cpu_fallback(trained: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA session is asked for CUDA alone with session.disable_cpu_ep_fallback=1: a node without a
    CUDA kernel makes onnxruntime refuse the session instead of quietly running it on the CPU."""
    monkeypatch.setattr(scorer_mod.ort, "get_available_providers", lambda: [mc.CUDA, mc.CPU])
    real = scorer_mod.ort.InferenceSession
    _FakeSession.calls = []

    def fake(path: str, sess_options: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
        if mc.CUDA in providers:
            return _FakeSession(path, sess_options, providers)  # type: ignore[return-value]
        return real(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(scorer_mod.ort, "InferenceSession", fake)
    with pytest.raises(ProviderUnavailableError, match="no CUDA device"):
        OnnxScorer(trained["path"], provider="cuda")
    assert OnnxScorer(trained["path"], provider="auto").provider == mc.CPU  # auto falls back to the CPU
    assert len(_FakeSession.calls) == 2
    for providers, opts in _FakeSession.calls:
        assert providers == [mc.CUDA]
        assert opts.get_session_config_entry(scorer_mod.NO_CPU_FALLBACK) == "1"
    # a graph with CPU-only ops never gets a CUDA session: 'cuda' names the ops, 'auto' goes to the CPU
    with pytest.raises(ProviderUnavailableError, match="LinearClassifier"):
        OnnxScorer(trained["skl2onnx"], provider="cuda")
    assert OnnxScorer(trained["skl2onnx"], provider="auto").runs_on == "CPU"
    assert len(_FakeSession.calls) == 2


def test_cuda_listed_but_unusable_falls_back(trained: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """What onnxruntime-gpu does on a host without a GPU: it lists CUDA, then cannot use it."""
    if CUDA_PRESENT:
        pytest.skip("a real CUDA provider is present")
    monkeypatch.setattr(scorer_mod.ort, "get_available_providers", lambda: [mc.CUDA, mc.CPU])
    with pytest.warns(UserWarning):  # onnxruntime's own "not in available provider names"
        s = OnnxScorer(trained["path"], provider="auto")
    assert s.provider == mc.CPU and s.runs_on == "CPU"
    # onnxruntime assigns the nodes to its default CPU provider, which the disabled fallback refuses
    with pytest.warns(UserWarning), pytest.raises(ProviderUnavailableError, match="fallback to CPU EP"):
        OnnxScorer(trained["path"], provider="cuda")


def test_cuda_required_but_absent(trained: dict) -> None:
    if CUDA_PRESENT:
        pytest.skip("a real CUDA provider is present")
    with pytest.raises(ProviderUnavailableError, match="cuda"):
        OnnxScorer(trained["path"], provider="cuda")


def test_bad_arguments(trained: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="provider"):
        OnnxScorer(trained["path"], provider="gpu")
    with pytest.raises(FileNotFoundError):
        OnnxScorer(tmp_path / "missing.onnx")


def test_scorer_module_does_not_import_pyflink_or_the_trainer() -> None:
    code = ("import sys, udfs.scorer, udfs.model_contract; "
            "sys.exit(any(m.startswith(('pyflink', 'model_export', 'sklearn', 'skl2onnx')) for m in sys.modules))")
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
