"""model_export.dataset: labels, point-in-time features, one row per invoice, relabelling, and the split
into training (with purged inner folds), validation and the untouched final check."""

from __future__ import annotations

import numpy as np
import pytest

from model_export import dataset
from model_export.dataset import DAY_MS, HOUR_MS, WINDOW_START_MS, build_dataset, label_events, split_rows
from tests.unit.model_helpers import CUTOFF, HORIZON, small, small_events
from udfs.features import FEATURE_NAMES
from udfs.profile import Event

H = HOUR_MS


def ev(user: str, kind: str, t_ms: int, n: int = 0) -> Event:
    return Event(f"e{user}-{t_ms}-{kind}-{n}", user, kind, "i1", "c1", None, None, t_ms, None, None)


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
    events = [ev("u", "view", 0), ev("u", "purchase", 2 * H), ev("u", "view", 20 * H), ev("u", "cart", 23 * H)]
    ds = build_dataset(events, 12 * H)
    assert ds.n_censored == 2 and len(ds) == 2  # end = 23h: rows at 20h and 23h are censored
    assert ds.y.tolist() == [1, 0]
    assert ds.X.dtype == np.float32 and ds.X.shape == (2, len(FEATURE_NAMES))
    assert ds.X[:, FEATURE_NAMES.index("n_events")].tolist() == [1.0, 2.0]


def test_load_events_drops_outliers_and_sorts() -> None:
    times = [e.event_time for e in small_events()]
    assert times == sorted(times) and min(times) >= WINDOW_START_MS and len(times) > 7_000


def _rows_by_id(ds: dataset.Dataset) -> dict[str, np.ndarray]:
    return dict(zip(ds.event_ids, ds.X, strict=True))


def test_features_do_not_see_the_future() -> None:
    """Rewrite every event after time T (type, timing, extra events); rows up to T must not change."""
    events = list(small_events())
    t_split = WINDOW_START_MS + 4 * DAY_MS
    base = _rows_by_id(build_dataset(events, HORIZON, end_ms=events[-1].event_time + HORIZON))

    def rewrite(e: Event) -> Event:
        return e if e.event_time <= t_split else e._replace(event_type="purchase", event_time=e.event_time + 3 * H)

    extra = [ev(u, "purchase", t_split + 1, n) for n, u in enumerate(sorted({e.user_id for e in events}))]
    changed = [rewrite(e) for e in events] + extra
    other = _rows_by_id(build_dataset(changed, HORIZON, end_ms=max(e.event_time for e in changed) + HORIZON))
    early = [e.event_id for e in events if e.event_time <= t_split]
    assert len(early) > 1_000
    for eid in early:
        np.testing.assert_array_equal(base[eid], other[eid], err_msg=eid)
    late = [e.event_id for e in events if e.event_time > t_split]
    assert any(not np.array_equal(base[i], other[i]) for i in late)  # the comparison is not vacuous


def test_features_do_not_depend_on_truncation() -> None:
    events = list(small_events())
    t_split = WINDOW_START_MS + 3 * DAY_MS
    full = _rows_by_id(build_dataset(events, HORIZON, end_ms=events[-1].event_time))
    cut = _rows_by_id(build_dataset([e for e in events if e.event_time <= t_split], HORIZON,
                                    end_ms=events[-1].event_time))
    assert cut
    for eid, row in cut.items():
        np.testing.assert_array_equal(full[eid], row)


def test_split_is_purged_and_keeps_the_final_users_out() -> None:
    ds, split = small()
    assert len(split.train) and len(split.val) and len(split.final)
    assert np.all(ds.t[split.train] + HORIZON <= CUTOFF)  # no training label reads the validation days
    assert np.all(ds.t[split.val] >= CUTOFF) and np.all(ds.t[split.final] >= CUTOFF)
    final_users = set(ds.users[split.final])
    assert final_users and not final_users & set(ds.users[split.train]) and not final_users & set(ds.users[split.val])
    assert final_users == {u for u in set(ds.users[ds.t >= CUTOFF]) if dataset.in_group(u, 0.2)}
    assert len(split.val) + len(split.final) == int((ds.t >= CUTOFF).sum())


def test_inner_folds_are_purged_inside_the_training_rows() -> None:
    ds, split = small()
    assert len(split.inner) == 2
    train = set(split.train.tolist())
    cutoffs = dataset.inner_cutoffs(CUTOFF, HORIZON)
    assert cutoffs == [CUTOFF - 2 * DAY_MS, CUTOFF - 3 * DAY_MS]
    for (fit, check), c in zip(split.inner, cutoffs, strict=True):
        assert set(fit.tolist()) <= train and set(check.tolist()) <= train
        assert np.all(ds.t[fit] + HORIZON <= c)  # a fit label never reads the check day
        assert np.all((ds.t[check] >= c) & (ds.t[check] < c + DAY_MS))


def test_no_purge_keeps_rows_up_to_the_cutoff() -> None:
    ds, split = small()
    loose = split_rows(ds, CUTOFF, HORIZON, purge=False)
    assert len(loose.train) > len(split.train) and np.any(ds.t[loose.train] + HORIZON > CUTOFF)


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
    assert dataset.session_ends(events).tolist() == expected


def test_build_dataset_one_row_per_invoice() -> None:
    """Invoice A (3 lines at 0h) and B (2 lines at 10h): one row each, the profile after the basket."""
    lines = [("A", 0), ("A", 0), ("A", 0), ("B", 10 * H), ("B", 10 * H)]
    events = [ev("u", "purchase", t, n)._replace(session_id=s) for n, (s, t) in enumerate(lines)]
    ds = build_dataset(events, 24 * H, end_ms=48 * H, rows="session_end")
    assert len(ds) == 2 and ds.n_censored == 0 and ds.y.tolist() == [1, 0]
    assert ds.X[:, FEATURE_NAMES.index("n_events")].tolist() == [3.0, 5.0]
    every = build_dataset(events, 24 * H, end_ms=48 * H)
    assert len(every) == 5 and every.y.tolist() == [1, 1, 1, 0, 0]  # same-time lines never label each other
    with pytest.raises(ValueError, match="rows"):
        build_dataset(events, 24 * H, rows="invoice")


def test_relabel_matches_a_fresh_replay() -> None:
    events = list(small_events())
    short = build_dataset(events, 6 * H)
    long = build_dataset(events, 24 * H)
    got = dataset.relabel(short, events, 24 * H)
    assert got.event_ids == long.event_ids and got.n_censored == long.n_censored
    np.testing.assert_array_equal(got.y, long.y)
    np.testing.assert_array_equal(got.X, long.X)
    assert len(got) < len(short)  # the longer horizon censors more rows
