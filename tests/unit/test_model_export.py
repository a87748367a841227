"""model_export.train end to end on a slice (the first 8,000 lines of the Taobao head file, the first
12,000 lines of Online Retail): artifacts, report, model card, --if-missing; and the Online Retail
evaluation on its own."""

from __future__ import annotations

import json

import pytest

from flink_jobs.config import Config
from model_export import export, models, retail, train
from tests.unit.model_helpers import SMALL
from udfs import model_contract as mc
from udfs.scorer import OnnxScorer

ARGS = ["--limit", str(SMALL), "--bootstrap", "200", "--segments-k", "2", "--online-retail-limit", "12000",
        "--online-retail-cutoff", "2010-12-05", "--online-retail-horizons-days", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("m") / "propensity.onnx"
    assert train.main(["--out", str(out), *ARGS]) == 0
    return {"out": out, "report": json.loads((out.parent / "metrics.json").read_text()),
            "card": (out.parent / "MODEL_CARD.md").read_text()}


def test_artifacts_and_report(run: dict) -> None:
    out, rep = run["out"], run["report"]
    for name in ("MODEL_CARD.md", "metrics.json", "roc.png", "pr.png", "reliability.png", "segments.onnx"):
        assert (out.parent / name).is_file(), name
    assert rep["parity_max_abs_diff"] <= export.PARITY_TOL
    assert set(rep["graph_ops"]) <= mc.CUDA_OPS
    expected = {"constant", "cart", "recency", "logreg_landed", "logreg_uncalibrated", "logreg"}
    for s in ("validation", "final"):
        assert set(rep[s]["models"]) == expected
        assert set(rep[s]["delta"]["recency"]) == expected - {"recency"}
        boot = rep[s]["bootstrap"]  # a resample of a few final users can hold one class only: skipped
        assert boot["resamples"] + boot["skipped"] == 200 and boot["resamples"] > 150
    assert rep["selection"]["best"] in [r["config"] for r in rep["selection"]["table"]]
    assert not set(rep["used_features"]) & set(models.FEATURE_SETS["all"](rep["used_features"])) - set(
        models.FEATURE_SETS["bounded"](rep["used_features"]))
    assert {r["group"] for r in rep["new_signals"]} == set(models.NEW_SIGNALS)
    assert set(rep["drift"]) == set(json.loads(OnnxScorer(out, provider="cpu").metadata[mc.FEATURE_NAMES]))


def test_decision_is_chosen_on_validation_and_travels_with_the_model(run: dict) -> None:
    rep = run["report"]
    tk = rep["top_k"]
    chosen = next(r for r in tk["validation"] if r["k"] == tk["chosen_k"])
    assert rep["decision"]["top_fraction"] == tk["chosen_k"] and rep["decision"]["threshold"] == chosen["threshold"]
    # the final check reuses validation's thresholds
    assert [r["threshold"] for r in tk["final"]] == [r["threshold"] for r in tk["validation"]]
    scorer = OnnxScorer(run["out"], provider="cpu")
    assert scorer.decision is not None and scorer.decision.threshold == pytest.approx(chosen["threshold"])
    assert scorer.runs_on == "CPU" and scorer.describe()["cpu_nodes"]  # no GPU here: every node on the CPU


def test_model_card(run: dict) -> None:
    card, rep = run["card"], run["report"]
    for text in (rep["model_version"], "## Verdict", "### Final check", "## Calibration", "reliability.png",
                 "## Decision: top-k targeting", "Feature drift", "## Segments", "Online Retail",
                 "### Horizon 1 day", "Paired user-bootstrap CIs of model minus `recency`"):
        assert text in card, text
    assert rep["segments"]["model_version"] in card


def test_if_missing_keeps_a_current_model_and_rebuilds_a_missing_one(run: dict) -> None:
    out = run["out"]
    mtime = out.stat().st_mtime_ns
    assert train.main(["--out", str(out), *ARGS, "--if-missing"]) == 0
    assert out.stat().st_mtime_ns == mtime  # existing, current model: not retrained
    assert train.ensure_model(Config(model_path=str(out))) == out and out.stat().st_mtime_ns == mtime
    segments = export.segments_path(out)
    segments.unlink()
    assert train.main(["--out", str(out), *ARGS, "--if-missing", "--no-online-retail"]) == 0
    assert segments.is_file() and export.stale_reason(segments, segments=True) is None
    assert "skipped" in json.loads((out.parent / "metrics.json").read_text())["online_retail"]


def test_evaluate_shop_on_an_online_retail_slice() -> None:
    """The first week of Online Retail (12,000 lines, 632 invoices), two horizons."""
    from tools.datasets import read_online_retail

    events = read_online_retail(retail.online_retail_path(Config()), limit=12_000)
    rp = retail.RetailParams(horizons_days=(2.0, 1.0), cutoff="2010-12-05")
    res = retail.evaluate_shop(events, rp, [models.LinearConfig("bounded", 0.01)], n_boot=50)
    assert res["sessions"] == 632 and res["rule"] == "frequency"
    assert [h["horizon_days"] for h in res["horizons"]] == [1.0, 2.0]
    for h in res["horizons"]:
        assert h["rows"] + h["censored"] == res["sessions"]  # one row per invoice
        assert set(h["validation"]["models"]) == {"constant", "rule", "logreg"}
        assert h["train_rows"] > 100 and h["val_rows"] > 100
    assert res["horizons"][1]["rows"] < res["horizons"][0]["rows"]
