"""Training rows: events in time order, labels, the replay through the job's own feature code, and
the split into training (with inner folds), validation and the final check.

Every row holds only what was known at its event (``udfs.profile.replay`` + ``udfs.features``, the
functions the Flink job runs). Label: the user purchases in (t, t + horizon]; rows whose label window
runs past the data end are censored (they still update the profile)."""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import numpy as np

from tools.datasets import read_taobao
from udfs.features import FEATURE_NAMES, feature_vector
from udfs.profile import Event, replay

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
BEIJING = timezone(timedelta(hours=8))
# The dataset's documented collection window starts here; the ~35 earlier rows are known bad clocks.
WINDOW_START_MS = int(datetime(2017, 11, 25, tzinfo=BEIJING).timestamp() * 1000)
ROW_CHOICES = ("event", "session_end")
FINAL_SALT = "final-check"  # fixed before any result on this group was seen; never tune on it


def load_events(
    path: Path, limit: Optional[int] = None, window_start_ms: int = WINDOW_START_MS
) -> tuple[list[Event], int]:
    """(events in stable time order, number dropped as before the collection window).
    ``limit`` keeps the first N lines of the file: whole user histories, since the file is grouped by user."""
    events = read_taobao(path, limit=limit)
    kept = [e for e in events if e.event_time >= window_start_ms]
    kept.sort(key=lambda e: e.event_time)  # stable: same-millisecond events keep file (= stream) order
    return kept, len(events) - len(kept)


def label_events(
    events: Sequence[Event], horizon_ms: int, end_ms: Optional[int] = None
) -> list[Optional[int]]:
    """Per event (input order): 1 if the same user has a purchase with event_time in (t, t + horizon],
    0 if not, None if censored (t + horizon > ``end_ms``, default the last event time of ``events``),
    because a purchase after the end of the data could still turn a 0 into a 1."""
    if not events:
        return []
    end = max(e.event_time for e in events) if end_ms is None else end_ms
    purchases: dict[str, list[int]] = defaultdict(list)
    for e in events:
        if e.event_type == "purchase":
            purchases[e.user_id].append(e.event_time)
    for times in purchases.values():
        times.sort()
    labels: list[Optional[int]] = []
    for e in events:
        t = e.event_time
        if t + horizon_ms > end:
            labels.append(None)
            continue
        times = purchases.get(e.user_id, [])
        i = bisect.bisect_right(times, t)  # first purchase strictly after t
        labels.append(int(i < len(times) and times[i] <= t + horizon_ms))
    return labels


@dataclass
class Dataset:
    """Labelled, uncensored rows in event-time order."""

    X: np.ndarray  # float32 [n, n_features]: exactly what the job hands the scorer
    y: np.ndarray  # int8 [n]
    t: np.ndarray  # int64 [n] event time, ms
    users: np.ndarray  # object [n]
    event_ids: list[str]
    n_events: int  # events replayed (censored ones included: they still build history)
    n_censored: int
    end_ms: int
    feature_names: list[str] = field(default_factory=lambda: list(FEATURE_NAMES))

    def __len__(self) -> int:
        return len(self.y)


def session_ends(events: Sequence[Event]) -> np.ndarray:
    """Per event: True if it is the last event of its user's run of events with one ``session_id`` (the
    complete basket of an invoice, say). Events without a session_id are runs of one."""
    keep = np.ones(len(events), dtype=bool)
    later: dict[str, Optional[str]] = {}  # user -> session_id of that user's next event
    for i in range(len(events) - 1, -1, -1):
        e = events[i]
        if e.user_id in later and e.session_id is not None and later[e.user_id] == e.session_id:
            keep[i] = False
        later[e.user_id] = e.session_id
    return keep


def build_dataset(
    events: Iterable[Event], horizon_ms: int, end_ms: Optional[int] = None, rows: str = "event"
) -> Dataset:
    """Replay ``events`` (stable-sorted by time) through the job's profile and feature code and label
    each event. Every event updates the profile; only uncensored ones become rows. ``rows='session_end'``
    keeps one row per session run (``session_ends``): the profile after a whole invoice, for shops
    whose events are invoice lines sharing one timestamp."""
    if rows not in ROW_CHOICES:
        raise ValueError(f"rows must be one of {ROW_CHOICES}, got {rows!r}")
    ordered = sorted(events, key=lambda e: e.event_time)
    if not ordered:
        raise ValueError("no events")
    end = ordered[-1].event_time if end_ms is None else end_ms
    labels = label_events(ordered, horizon_ms, end)
    wanted = session_ends(ordered) if rows == "session_end" else np.ones(len(ordered), dtype=bool)
    # The replay skips duplicate (and late) events, so rows are matched to events by id, not by zip; a
    # duplicate id keeps its first occurrence's label, as the replay keeps the first occurrence.
    label_of: dict[str, Optional[int]] = {}
    for e, lab, w in zip(ordered, labels, wanted, strict=True):
        label_of.setdefault(e.event_id, lab if w else None)
    out: list[list[float]] = []
    ys: list[int] = []
    ts: list[int] = []
    users: list[str] = []
    ids: list[str] = []
    for before, after, ev in replay(ordered):
        label = label_of.pop(ev.event_id, None)
        if label is None:
            continue
        out.append(feature_vector(before, after, ev))  # now: ``after`` is the live state
        ys.append(label)
        ts.append(ev.event_time)
        users.append(ev.user_id)
        ids.append(ev.event_id)
    return Dataset(
        X=np.asarray(out, dtype=np.float32).reshape(-1, len(FEATURE_NAMES)),
        y=np.asarray(ys, dtype=np.int8),
        t=np.asarray(ts, dtype=np.int64),
        users=np.asarray(users, dtype=object),
        event_ids=ids,
        n_events=len(ordered),
        n_censored=int(sum(1 for lab, w in zip(labels, wanted, strict=True) if w and lab is None)),
        end_ms=end,
    )


def relabel(ds: Dataset, events: Sequence[Event], horizon_ms: int) -> Dataset:
    """The rows of ``ds`` labelled for another horizon (no second replay: features do not depend on the
    horizon). Rows censored under the new horizon are dropped, so build ``ds`` with the shortest one."""
    ordered = sorted(events, key=lambda e: e.event_time)
    label_of: dict[str, Optional[int]] = {}
    for e, lab in zip(ordered, label_events(ordered, horizon_ms, ds.end_ms), strict=True):
        label_of.setdefault(e.event_id, lab)
    labels = [label_of.get(i) for i in ds.event_ids]
    keep = np.fromiter((lab is not None for lab in labels), dtype=bool, count=len(labels))
    idx = np.flatnonzero(keep)
    return dataclasses.replace(
        ds,
        X=ds.X[idx],
        y=np.asarray([labels[i] for i in idx], dtype=np.int8),
        t=ds.t[idx],
        users=ds.users[idx],
        event_ids=[ds.event_ids[i] for i in idx],
        n_censored=ds.n_censored + int((~keep).sum()),
    )


# --- split ---------------------------------------------------------------------------------------


def in_group(user_id: str, frac: float, salt: str | int = FINAL_SALT) -> bool:
    """Stable user-level group: a hash, so it does not depend on row order or on other users."""
    h = int.from_bytes(hashlib.sha256(f"{salt}:{user_id}".encode()).digest()[:8], "big")
    return h / 2**64 < frac


@dataclass
class Split:
    """Row indices. ``final`` rows (held-out users, validation period) are for the last check only:
    nothing is fitted, selected or thresholded on them."""

    train: np.ndarray  # development users, label window closed before the cutoff
    val: np.ndarray  # development users, from the cutoff on
    final: np.ndarray  # final-check users, from the cutoff on
    inner: list[tuple[np.ndarray, np.ndarray]]  # (fit, check) inside ``train``, each purged
    cutoff_ms: int
    final_users: int
    users_first_seen_after_cutoff: int
    purged_rows: int


def inner_cutoffs(cutoff_ms: int, horizon_ms: int, folds: int = 2, min_step_ms: int = DAY_MS) -> list[int]:
    """Cutoffs of the inner time folds, latest first: each check window is ``max(horizon, min_step)``
    long and closes by the end of the training rows (``cutoff - horizon``)."""
    step = max(horizon_ms, min_step_ms)
    return [cutoff_ms - horizon_ms - k * step for k in range(1, folds + 1)]


def split_rows(
    ds: Dataset, cutoff_ms: int, horizon_ms: int, final_frac: float = 0.2, purge: bool = True,
    salt: str | int = FINAL_SALT, folds: int = 2, min_step_ms: int = DAY_MS,
) -> Split:
    """Time split at ``cutoff_ms`` plus a user group held out of everything but the final check. With
    ``purge``, a training row's label window must close before the cutoff (otherwise its label would be
    read from the validation period), and the same holds for every inner fold's fit rows."""
    final_users = {u for u in set(ds.users) if in_group(u, final_frac, salt)}
    is_final = np.fromiter((u in final_users for u in ds.users), dtype=bool, count=len(ds))
    before = ds.t < cutoff_ms
    closed = ds.t + horizon_ms <= cutoff_ms if purge else before
    train_mask = before & closed & ~is_final
    inner = []
    step = max(horizon_ms, min_step_ms)
    for c in inner_cutoffs(cutoff_ms, horizon_ms, folds, min_step_ms):
        fit = train_mask & ((ds.t + horizon_ms <= c) if purge else (ds.t < c))
        check = train_mask & (ds.t >= c) & (ds.t < c + step)
        if fit.any() and check.any():
            inner.append((np.flatnonzero(fit), np.flatnonzero(check)))
    first_seen: dict[str, int] = {}
    for u, t in zip(ds.users, ds.t, strict=True):
        first_seen.setdefault(u, int(t))
    return Split(
        train=np.flatnonzero(train_mask),
        val=np.flatnonzero(~before & ~is_final),
        final=np.flatnonzero(~before & is_final),
        inner=inner,
        cutoff_ms=cutoff_ms,
        final_users=len(final_users),
        users_first_seen_after_cutoff=sum(1 for t in first_seen.values() if t >= cutoff_ms),
        purged_rows=int((before & ~closed & ~is_final).sum()),
    )
