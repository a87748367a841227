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
    SegmentParams,
    TrainParams,
    build_dataset,
    export_onnx,
    label_events,
    split_rows,
    train_models,
)
from udfs.features import FEATURE_NAMES, FEATURES_VERSION
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
    assert props["model_version"].startswith(f"propensity-v{FEATURES_VERSION}-")


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
    args = ["--out", str(out), "--limit", str(SMALL), "--hgb-max-iter", "10", "--bootstrap", "20",
            "--segments-k", "3", "--online-retail-limit", "12000", "--online-retail-cutoff", "2010-12-05",
            "--online-retail-horizons-days", "1"]
    assert train.main(args) == 0
    for name in ("MODEL_CARD.md", "metrics.json", "roc.png", "pr.png", "calibration.png", "importance.png"):
        assert (out.parent / name).is_file(), name
    report = json.loads((out.parent / "metrics.json").read_text())
    assert report["parity_max_abs_diff"] <= 1e-5
    assert report["chosen"] in ("logreg", "hgb")
    assert set(report["validation"]["models"]) == {"rule", "logreg", "hgb"}
    card = (out.parent / "MODEL_CARD.md").read_text()
    assert report["model_version"] in card and "censored" in card
    segments = out.parent / "segments.onnx"
    assert report["segments"]["parity_mismatches"] == 0 and len(report["segments"]["segments"]) == 3
    assert report["segments"]["model_version"] in card and "## Segments" in card
    (h1,) = report["online_retail"]["horizons"]
    assert h1["horizon_days"] == 1.0 and set(h1["validation"]["models"]) == {"rule", "logreg", "hgb"}
    assert "Online Retail" in card and "### Horizon 1 day" in card

    mtime = out.stat().st_mtime_ns
    assert train.main(args + ["--if-missing"]) == 0
    assert out.stat().st_mtime_ns == mtime  # existing, matching model: not retrained
    assert train.stale_reason(out) is None
    assert train.ensure_model(Config(model_path=str(out))) == out
    assert out.stat().st_mtime_ns == mtime

    segments.unlink()  # --if-missing rebuilds a missing segment model (with the propensity model)
    assert train.main(args + ["--if-missing", "--no-online-retail"]) == 0
    assert segments.is_file() and train.stale_reason(segments, segments=True) is None
    report = json.loads((out.parent / "metrics.json").read_text())
    assert "skipped" in report["online_retail"]


def test_stale_reason_flags_other_features(small: dict, tmp_path: Path) -> None:
    names = [*FEATURE_NAMES[:-1], "hour_of_day_local"]
    path = export_onnx(small["models"]["logreg"], tmp_path / "old.onnx", _meta(names))
    assert "other features" in (train.stale_reason(path) or "")
    assert "does not exist" in (train.stale_reason(tmp_path / "none.onnx") or "")


# --- one row per session, relabelling, rules for shops without carts ----------------------------

# (case, (user, session_id) per event in stream order, expected: is the last event of its run)
SESSION_CASES = [
    ("one run per invoice", [("u", "A"), ("u", "A"), ("u", "B")], [False, True, True]),
    ("users interleave, runs are per user", [("a", "A"), ("b", "Z"), ("a", "A"), ("b", "Z")],
     [False, False, True, True]),
    ("no session id: every event is a row", [("u", None), ("u", None)], [True, True]),
    ("an id that comes back starts a new run", [("u", "A"), ("u", "B"), ("u", "A")], [True, True, True]),
]


@pytest.mark.parametrize("case,rows,expected", SESSION_CASES, ids=[c[0] for c in SESSION_CASES])
def test_session_ends(case: str, rows: list, expected: list) -> None:
    events = [ev(u, "purchase", n * 1000, n)._replace(session_id=s) for n, (u, s) in enumerate(rows)]
    assert train.session_ends(events).tolist() == expected


def test_build_dataset_one_row_per_invoice() -> None:
    """Invoice A (3 lines at 0h) and B (2 lines at 10h): one row each, the profile after the basket."""
    lines = [("A", 0), ("A", 0), ("A", 0), ("B", 10 * H), ("B", 10 * H)]
    events = [ev("u", "purchase", t, n)._replace(session_id=s) for n, (s, t) in enumerate(lines)]
    ds = build_dataset(events, 24 * H, end_ms=48 * H, rows="session_end")
    assert len(ds) == 2 and ds.n_censored == 0
    assert ds.y.tolist() == [1, 0]  # A: B follows within 24h; B: nothing after it
    assert ds.X[:, FEATURE_NAMES.index("n_events")].tolist() == [3.0, 5.0]
    every = build_dataset(events, 24 * H, end_ms=48 * H)
    assert len(every) == 5 and every.y.tolist() == [1, 1, 1, 0, 0]  # same-time lines never label each other
    with pytest.raises(ValueError, match="rows"):
        build_dataset(events, 24 * H, rows="invoice")


def test_relabel_matches_a_fresh_replay(small_events: list[Event]) -> None:
    short = build_dataset(small_events, 6 * H)
    long = build_dataset(small_events, 24 * H)
    got = train.relabel(short, small_events, 24 * H)
    assert got.event_ids == long.event_ids
    np.testing.assert_array_equal(got.y, long.y)
    np.testing.assert_array_equal(got.X, long.X)
    assert got.n_censored == long.n_censored
    assert len(got) < len(short)  # the longer horizon censors more rows


def test_rule_baseline_degrades_without_cart_features() -> None:
    names = [n for n in FEATURE_NAMES if n not in ("n_cart", "ev_cart")]
    X = np.ones((3, len(names)), dtype=np.float32)
    rule = RuleBaseline(names).fit(X, np.array([0, 1, 1]))
    assert rule.buckets(X).tolist() == [0, 0, 0]
    np.testing.assert_allclose(rule.predict_proba(X)[:, 1], [0.6] * 3)  # (2+1)/(3+2)


def test_frequency_rule_buckets_by_training_quartiles() -> None:
    col = FEATURE_NAMES.index("n_purchase")
    X = np.zeros((8, len(FEATURE_NAMES)), dtype=np.float32)
    X[:, col] = [1, 1, 2, 2, 3, 3, 9, 9]
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    rule = train.FrequencyRule().fit(X, y)
    assert rule.buckets(X).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    p = rule.predict_proba(X)[:, 1]
    assert p[0] < p[2] < p[4] == pytest.approx(0.75)  # (2+1)/(2+2)
    assert np.all(np.diff(p) >= 0)


OR_FILE = Config().path(Config().data_dir) / "online_retail_uci" / "online_retail.csv.gz"


def test_evaluate_shop_on_an_online_retail_slice() -> None:
    """The first week of Online Retail (12,000 lines, 632 invoices), two horizons."""
    from tools.datasets import read_online_retail

    events = read_online_retail(OR_FILE, limit=12_000)
    rp = train.RetailParams(horizons_days=(2.0, 1.0), cutoff="2010-12-05")
    res = train.evaluate_shop(events, rp, TrainParams(hgb_max_iter=10, n_bootstrap=20))
    assert res["sessions"] == 632 and res["rule"] == "frequency"
    assert [h["horizon_days"] for h in res["horizons"]] == [1.0, 2.0]
    for h in res["horizons"]:
        assert h["rows"] + h["censored"] == res["sessions"]  # one row per invoice
        assert set(h["validation"]["models"]) == {"rule", "logreg", "hgb"}
        assert h["best"] in ("logreg", "hgb")
        assert h["train_rows"] > 100 and h["val_rows"] > 100
    assert res["horizons"][1]["rows"] < res["horizons"][0]["rows"]


# --- segments ------------------------------------------------------------------------------------

SEG = SegmentParams(k=4, n_init=2, silhouette_rows=500)


@pytest.fixture(scope="module")
def seg(small: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    ds, split = small["ds"], small["split"]
    pipe = train.fit_segmenter(ds.X[split.train], SEG)
    names, centres = train.describe_segments(pipe)
    version = train.segments_version({"file": "x"}, SEG, pipe)
    path = train.export_segments(pipe, tmp_path_factory.mktemp("seg") / "segments.onnx",
                                 train.segments_metadata(version, pipe, names, SEG, {"file": "x"}))
    return {"pipe": pipe, "names": names, "centres": centres, "path": path, "X": ds.X[split.val]}


def test_segment_export_parity_and_metadata(seg: dict) -> None:
    sess = ort.InferenceSession(str(seg["path"]), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "features" and inp.type == "tensor(float)" and inp.shape[1] == len(FEATURE_NAMES)
    X = seg["X"]
    label, scores = sess.run(["label", "scores"], {"features": X})
    assert scores.shape == (len(X), SEG.k)
    np.testing.assert_array_equal(label, seg["pipe"].predict(X))
    assert train.segment_parity(seg["pipe"], seg["path"], X) == 0
    assert set(np.unique(label)) <= set(range(SEG.k)) and len(np.unique(label)) > 1

    props = {p.key: p.value for p in onnx.load(str(seg["path"])).metadata_props}
    assert props["model_version"].startswith(f"segments-v{FEATURES_VERSION}-")
    assert json.loads(props["feature_names"]) == FEATURE_NAMES
    assert props["k"] == str(SEG.k)
    names = json.loads(props["segment_names"])
    assert names == seg["names"] and len(names) == SEG.k and len(set(names)) == SEG.k
    used = json.loads(props["segment_features"])
    assert used and set(used) <= set(FEATURE_NAMES)
    assert not [n for n in used if n.startswith("ev_") or n.startswith("hour_of_day")]
    assert set(json.loads(props["log_features"])) <= set(used)
    assert train.stale_reason(seg["path"], segments=True) is None


def test_segment_parity_can_fail(seg: dict) -> None:
    """Another model's segments differ from the exported file's: the check sees it."""
    other = train.fit_segmenter(seg["X"], replace(SEG, seed=1, k=SEG.k + 1))
    assert train.segment_parity(other, seg["path"], seg["X"]) > 0


def test_train_segments_refuses_a_model_that_disagrees(small: dict, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "propensity.onnx"
    rep = train.train_segments(small["ds"], small["split"], out, SEG, {"file": "x"})
    assert rep["parity_mismatches"] == 0 and len(rep["segments"]) == SEG.k
    assert sum(s["train_rows"] for s in rep["segments"]) == len(small["split"].train)
    assert [s["name"] for s in rep["segments"]] == json.loads(
        {p.key: p.value for p in onnx.load(str(train.segments_path(out))).metadata_props}["segment_names"])
    monkeypatch.setattr(train, "segment_parity", lambda *a: 3)
    with pytest.raises(SystemExit, match="parity"):
        train.train_segments(small["ds"], small["split"], out, SEG, {"file": "x"})
    assert not train.segments_path(out).exists()  # never leave a disagreeing model behind


def test_segments_are_numbered_by_size(seg: dict, small: dict) -> None:
    sizes = np.bincount(seg["pipe"].predict(small["ds"].X[small["split"].train]), minlength=SEG.k)
    assert np.all(np.diff(sizes) <= 0), sizes


def test_segment_prep_logs_skewed_non_negative_columns() -> None:
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.exponential(5, 2000) ** 2,  # skewed, >= 0: logged
                         rng.uniform(0, 24, 2000),  # flat: kept
                         -(rng.exponential(5, 2000) ** 2),  # skewed but negative: kept
                         np.zeros(2000)])  # constant: kept
    prep = train.SegmentPrep(columns=[0, 1, 2, 3]).fit(X)
    assert prep.log_mask_.tolist() == [True, False, False, False]
    np.testing.assert_allclose(prep.transform(X)[:, 0], np.log1p(X[:, 0]))
    assert train.SegmentPrep(columns=[0], log="none").fit(X).log_mask_.tolist() == [False]
    assert train.segment_columns(["ev_view", "n_view", "hour_of_day_utc"], SEG.exclude) == [1]
    assert train.segment_columns(["ev_view"], SEG.exclude) == [0]  # never empty


@pytest.mark.parametrize("name,high,want", [
    ("n_view_7d", True, "heavy viewers (last 7d)"),
    ("n_view", False, "light viewers"),
    ("session_events", True, "long sessions"),
    ("some_new_feature_1h", False, "low some_new_feature_1h"),
])
def test_segment_phrases(name: str, high: bool, want: str) -> None:
    assert train._phrase(name, high) == want


def test_segment_descriptions_read_the_centres() -> None:
    """Two obvious groups: buyers with many views, and non-buyers with few."""
    names = ["n_view", "n_purchase", "has_purchased_before"]
    rng = np.random.default_rng(0)
    buyers = np.column_stack([rng.poisson(80, 300), rng.poisson(5, 300) + 1, np.ones(300)])
    lurkers = np.column_stack([rng.poisson(3, 700), np.zeros(700), np.zeros(700)])
    X = np.vstack([buyers, lurkers]).astype(np.float32)
    pipe = train.make_segmenter(SegmentParams(k=2, n_init=2), names).fit(X)
    descriptions, centres = train.describe_segments(pipe, names)
    by_group = dict(zip(pipe.predict(X[[0, -1]]), ["buyers", "lurkers"], strict=True))
    d = {by_group[k]: descriptions[k] for k in range(2)}
    assert d["lurkers"].startswith("no purchases") and "light viewers" in d["lurkers"]
    assert d["buyers"].startswith("all past buyers") and "heavy viewers" in d["buyers"]
    assert all(set(c) == set(names) for c in centres)


def test_stale_reason_for_segments(seg: dict, small: dict, tmp_path: Path) -> None:
    pipe = seg["pipe"]
    names = [*FEATURE_NAMES[:-1], "hour_of_day_local"]
    meta = train.segments_metadata("segments-test", pipe, seg["names"], SEG, {}, feature_names=names)
    old = train.export_segments(pipe, tmp_path / "old.onnx", meta)
    assert "other features" in (train.stale_reason(old, segments=True) or "")
    propensity = export_onnx(small["models"]["logreg"], tmp_path / "p.onnx", _meta())
    assert train.stale_reason(propensity) is None
    assert train.stale_reason(propensity, segments=True) is not None  # not a segment model
