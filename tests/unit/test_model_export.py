"""model_export.train: labels, point-in-time features, split, ONNX export and parity, end to end.
A tiny model on the first 8,000 lines of the Taobao head file keeps this to a few seconds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from flink_jobs.config import Config
from model_export import train
from model_export.train import (
    DAY_MS,
    HOUR_MS,
    WINDOW_START_MS,
    RuleBaseline,
    TrainParams,
    build_dataset,
    export_onnx,
    label_events,
    split_rows,
    train_models,
)
from udfs.features import FEATURE_NAMES
from udfs.profile import Event

HEAD = Config().taobao_dir / "UserBehavior_head_84k.csv"
SMALL = 8_000
H = HOUR_MS


def ev(user: str, kind: str, t_ms: int, n: int = 0) -> Event:
    return Event(f"e{user}-{t_ms}-{kind}-{n}", user, kind, "i1", "c1", None, None, t_ms, None, None)


# --- labels: one table ---------------------------------------------------------------------------

# (case, events as (user, type, time ms), horizon ms, end ms or None, expected label per event)
LABEL_CASES = [
    ("purchase exactly at the horizon edge counts",
     [("u", "view", 0), ("u", "purchase", 24 * H), ("u", "view", 48 * H)], 24 * H, None, [1, 0, None]),
    ("purchase 1 ms past the horizon does not",
     [("u", "view", 0), ("u", "purchase", 24 * H + 1), ("u", "view", 49 * H)], 24 * H, None, [0, 0, None]),
    ("purchase at the same timestamp does not count",
     [("u", "view", 5 * H), ("u", "purchase", 5 * H), ("u", "view", 40 * H)], 24 * H, None, [0, 0, None]),
    ("purchase 1 ms later counts",
     [("u", "view", 5 * H), ("u", "purchase", 5 * H + 1), ("u", "view", 40 * H)], 24 * H, None, [1, 0, None]),
    ("another user's purchase does not count",
     [("a", "view", 0), ("b", "purchase", H), ("b", "view", 30 * H)], 24 * H, None, [0, 0, None]),
    ("a purchase row looks at later purchases only",
     [("u", "purchase", 0), ("u", "purchase", H), ("u", "view", 30 * H)], 24 * H, None, [1, 0, None]),
    ("rows whose window passes the data end are censored",
     [("u", "view", 0), ("u", "view", 10 * H), ("u", "purchase", 20 * H)], 24 * H, None, [None, None, None]),
    ("a given end uncensors them",
     [("u", "view", 0), ("u", "view", 10 * H), ("u", "purchase", 20 * H)], 24 * H, 48 * H, [1, 1, 0]),
    ("window ending exactly at the data end is kept",
     [("u", "view", 0), ("u", "purchase", 2 * H)], 2 * H, None, [1, None]),
    ("input order is kept (not sorted)",
     [("u", "view", 30 * H), ("u", "purchase", 2 * H), ("u", "view", 0)], 24 * H, None, [None, 0, 1]),
    ("shorter horizon",
     [("u", "view", 0), ("u", "purchase", 2 * H), ("u", "view", 5 * H)], 1 * H, None, [0, 0, None]),
]


@pytest.mark.parametrize("case,rows,horizon,end,expected", LABEL_CASES, ids=[c[0] for c in LABEL_CASES])
def test_label_events(case: str, rows: list, horizon: int, end: int | None, expected: list) -> None:
    events = [ev(u, k, t, n) for n, (u, k, t) in enumerate(rows)]
    assert label_events(events, horizon, end) == expected


def test_build_dataset_drops_censored_rows_but_replays_them() -> None:
    events = [ev("u", "view", 0), ev("u", "purchase", 2 * H), ev("u", "view", 20 * H),
              ev("u", "cart", 23 * H)]
    ds = build_dataset(events, 12 * H)
    # end = 23h: rows at 20h and 23h are censored; 0h and 2h are kept.
    assert ds.n_censored == 2 and len(ds) == 2
    assert ds.y.tolist() == [1, 0]
    assert ds.X.dtype == np.float32 and ds.X.shape == (2, len(FEATURE_NAMES))
    n_events = FEATURE_NAMES.index("n_events")
    assert ds.X[:, n_events].tolist() == [1.0, 2.0]


# --- point in time -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_events() -> list[Event]:
    events, _ = train.load_events(HEAD, limit=SMALL)
    return events


def test_load_events_drops_outliers_and_sorts(small_events: list[Event]) -> None:
    times = [e.event_time for e in small_events]
    assert times == sorted(times)
    assert min(times) >= WINDOW_START_MS
    assert len(small_events) > 7_000


def _rows_by_id(ds: train.Dataset) -> dict[str, np.ndarray]:
    return dict(zip(ds.event_ids, ds.X, strict=True))


def test_features_do_not_see_the_future(small_events: list[Event]) -> None:
    """Rewrite every event after time T (type, timing, extra events); rows up to T must not change."""
    horizon = 24 * H
    t_split = WINDOW_START_MS + 4 * DAY_MS
    base = _rows_by_id(build_dataset(small_events, horizon, end_ms=small_events[-1].event_time + horizon))

    def rewrite(e: Event) -> Event:
        if e.event_time <= t_split:
            return e
        return e._replace(event_type="purchase", event_time=e.event_time + 3 * H)

    users = sorted({e.user_id for e in small_events})
    extra = [ev(u, "purchase", t_split + 1, n) for n, u in enumerate(users)]
    changed = [rewrite(e) for e in small_events] + extra
    assert any(e.event_type != c.event_type for e, c in zip(small_events, changed, strict=False))
    other = _rows_by_id(build_dataset(changed, horizon, end_ms=max(e.event_time for e in changed) + horizon))
    early = [e.event_id for e in small_events if e.event_time <= t_split]
    assert len(early) > 1_000
    for eid in early:
        np.testing.assert_array_equal(base[eid], other[eid], err_msg=eid)
    # And the rewrite did reach the later rows (the comparison above is not vacuous).
    late = [e.event_id for e in small_events if e.event_time > t_split]
    assert any(not np.array_equal(base[i], other[i]) for i in late)


def test_features_do_not_depend_on_later_users_or_truncation(small_events: list[Event]) -> None:
    horizon = 24 * H
    t_split = WINDOW_START_MS + 3 * DAY_MS
    end = small_events[-1].event_time
    full = _rows_by_id(build_dataset(small_events, horizon, end_ms=end))
    head = [e for e in small_events if e.event_time <= t_split]
    cut = _rows_by_id(build_dataset(head, horizon, end_ms=end))
    assert cut
    for eid, row in cut.items():
        np.testing.assert_array_equal(full[eid], row)


# --- split ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> dict:
    params = TrainParams(hgb_max_iter=15, n_bootstrap=20, importance_rows=500, limit=SMALL)
    events, _ = train.load_events(HEAD, limit=SMALL)
    ds = build_dataset(events, params.horizon_ms)
    cutoff = WINDOW_START_MS + params.train_days * DAY_MS
    split = split_rows(ds, cutoff, params.horizon_ms, params.holdout_frac, params.purge, params.seed)
    models, _ = train_models(ds.X[split.train], ds.y[split.train], params)
    return {"params": params, "ds": ds, "split": split, "models": models, "cutoff": cutoff}


def test_split_is_purged_and_holds_users_out(small: dict) -> None:
    ds, split, cutoff, horizon = small["ds"], small["split"], small["cutoff"], small["params"].horizon_ms
    assert len(split.train) and len(split.val)
    assert np.all(ds.t[split.train] + horizon <= cutoff)  # no training label reads the validation days
    assert np.all(ds.t[split.val] >= cutoff)
    train_users = set(ds.users[split.train])
    assert not train_users & set(ds.users[split.val_unseen])
    assert len(split.val_unseen) > 0 and split.holdout_users > 0
    held = {u for u in set(ds.users) if train.in_holdout(u, 0.2)}
    assert held and not held & train_users


def test_no_purge_keeps_rows_up_to_the_cutoff(small: dict) -> None:
    ds, cutoff, horizon = small["ds"], small["cutoff"], small["params"].horizon_ms
    loose = split_rows(ds, cutoff, horizon, 0.2, purge=False)
    assert len(loose.train) > len(small["split"].train)
    assert np.any(ds.t[loose.train] + horizon > cutoff)


def test_rule_baseline_buckets() -> None:
    X = np.zeros((4, len(FEATURE_NAMES)), dtype=np.float32)
    n_cart, ev_cart = FEATURE_NAMES.index("n_cart"), FEATURE_NAMES.index("ev_cart")
    X[1, n_cart] = 2
    X[2, n_cart], X[2, ev_cart] = 1, 1
    X[3, n_cart] = 5
    rule = RuleBaseline().fit(X, np.array([0, 1, 1, 0]))
    assert rule.buckets(X).tolist() == [0, 1, 2, 1]
    # Laplace-smoothed bucket rates: (0+1)/(1+2), (1+1)/(2+2), (1+1)/(1+2)
    np.testing.assert_allclose(rule.predict_proba(X)[:, 1], [1 / 3, 0.5, 2 / 3, 0.5])


def test_max_f1_threshold() -> None:
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert train.max_f1_threshold(y, p) == pytest.approx(0.3)


def test_bootstrap_cis_bracket_the_point_estimate(small: dict) -> None:
    ds, split, models = small["ds"], small["split"], small["models"]
    X, y, users = ds.X[split.val], ds.y[split.val], ds.users[split.val]
    preds = {m: train.positive_proba(mod, X) for m, mod in models.items()}
    res = train.evaluate(y, preds, {m: 0.5 for m in preds}, users, small["params"], reference="logreg")
    assert res["bootstrap"]["resamples"] > 10
    for m in preds:
        for k in train.METRICS:
            entry = res["models"][m][k]
            lo, hi = entry["ci95"]
            assert lo <= hi
            assert lo - 0.05 <= entry["value"] <= hi + 0.05, (m, k, entry)
    assert res["pr_auc_delta_vs_logreg"]["logreg"] == [0.0, 0.0]


# --- export --------------------------------------------------------------------------------------


def _meta(names: list[str] = FEATURE_NAMES) -> dict[str, str]:
    params = TrainParams()
    fp = {"file": "x.csv", "sha256": "0" * 64, "rows": 1}
    return train.model_metadata(train.model_version(fp, params, "hgb"), params, fp, {}, "hgb", 0.5, names)


@pytest.mark.parametrize("name", ["logreg", "hgb"])
def test_onnx_parity_and_metadata(small: dict, tmp_path: Path, name: str) -> None:
    ds, split, model = small["ds"], small["split"], small["models"][name]
    path = export_onnx(model, tmp_path / f"{name}.onnx", _meta())
    X = ds.X[split.val]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "features" and inp.type == "tensor(float)" and inp.shape[1] == len(FEATURE_NAMES)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"features": X}), strict=True))
    assert got["probabilities"].shape == (len(X), 2)  # ZipMap off: a tensor, not a list of dicts
    want = model.predict_proba(X)[:, 1]
    assert np.max(np.abs(got["probabilities"][:, 1] - want)) <= 1e-5
    assert train.parity(model, path, X) <= 1e-5

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["feature_names"]) == FEATURE_NAMES
    for key in ("model_version", "features_version", "horizon_hours", "label_definition",
                "training_data_fingerprint", "metrics", "created_by"):
        assert props.get(key), key
    assert props["model_version"].startswith("propensity-v1-")


def test_model_version_is_stable_and_tracks_params() -> None:
    fp = {"sha256": "ab", "rows": 10}
    v = train.model_version(fp, TrainParams(), "hgb")
    assert v == train.model_version(dict(fp), TrainParams(), "hgb")
    assert v != train.model_version(fp, replace(TrainParams(), horizon_hours=6), "hgb")
    assert v != train.model_version({**fp, "rows": 11}, TrainParams(), "hgb")
    assert v != train.model_version(fp, TrainParams(), "logreg")
    est = train.make_models(TrainParams())["hgb"]
    with_est = train.model_version(fp, TrainParams(), "hgb", est)
    assert with_est == train.model_version(fp, TrainParams(), "hgb", train.make_models(TrainParams())["hgb"])
    assert with_est != train.model_version(fp, TrainParams(), "hgb", est.set_params(max_leaf_nodes=7))


def test_end_to_end_cli_and_if_missing(tmp_path: Path) -> None:
    out = tmp_path / "m" / "propensity.onnx"
    args = ["--out", str(out), "--limit", str(SMALL), "--hgb-max-iter", "10", "--bootstrap", "20"]
    assert train.main(args) == 0
    for name in ("MODEL_CARD.md", "metrics.json", "roc.png", "pr.png", "calibration.png", "importance.png"):
        assert (out.parent / name).is_file(), name
    report = json.loads((out.parent / "metrics.json").read_text())
    assert report["parity_max_abs_diff"] <= 1e-5
    assert report["chosen"] in ("logreg", "hgb")
    assert set(report["validation"]["models"]) == {"rule", "logreg", "hgb"}
    card = (out.parent / "MODEL_CARD.md").read_text()
    assert report["model_version"] in card and "censored" in card

    mtime = out.stat().st_mtime_ns
    assert train.main(args + ["--if-missing"]) == 0
    assert out.stat().st_mtime_ns == mtime  # existing, matching model: not retrained
    assert train.stale_reason(out) is None
    assert train.ensure_model(Config(model_path=str(out))) == out
    assert out.stat().st_mtime_ns == mtime


def test_stale_reason_flags_other_features(small: dict, tmp_path: Path) -> None:
    names = [*FEATURE_NAMES[:-1], "hour_of_day_local"]
    path = export_onnx(small["models"]["logreg"], tmp_path / "old.onnx", _meta(names))
    assert "other features" in (train.stale_reason(path) or "")
    assert "does not exist" in (train.stale_reason(tmp_path / "none.onnx") or "")
