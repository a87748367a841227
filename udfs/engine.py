"""The batch engine: one pure function that takes a batch of events and a profile store and returns
everything the job emits for them. The Flink operator (flink_jobs/operators.py), the offline replay
(training, parity tests) and the framework-free benchmark all call ``process_batch``, so they cannot
drift apart.

Per event, in the order given (per user, the order Kafka holds): ``udfs.profile.step`` decides
applied / late / duplicate / erased on the user's own clock, then the features. Per batch: one
scoring call for every applied event. Batch boundaries never change an outcome or a value: a test
runs the same events in batches of 1, 7 and all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional, Protocol

from udfs import features as feats
from udfs.prediction import PREDICTION_FIELDS, Scores, prediction_row, shadow_row
from udfs.profile import Event, Outcome, Profile, erasure_timestamp, step
from udfs.settings import ProfileSettings

# Both models over a batch of feature vectors (udfs.prediction.score_batch with its models bound).
# A shadow model is a Score too (udfs.prediction.score_only): only its score and version are used.
Score = Callable[[Sequence[Sequence[float]]], list[Scores]]


class ProfileStore(Protocol):
    """Where profiles live between batches: a dict offline, Flink keyed state in the job."""

    def get(self, user_id: str) -> Optional[Profile]: ...

    def put(self, user_id: str, profile: Profile) -> None: ...

    def remove(self, user_id: str) -> None: ...


class MemoryStore:
    """The in-memory store of the offline replay and the benchmark."""

    def __init__(self) -> None:
        self.profiles: dict[str, Profile] = {}

    def get(self, user_id: str) -> Optional[Profile]:
        return self.profiles.get(user_id)

    def put(self, user_id: str, profile: Profile) -> None:
        self.profiles[user_id] = profile

    def remove(self, user_id: str) -> None:
        self.profiles.pop(user_id, None)


class ProfileRow(NamedTuple):
    """What the profiles table holds for a user: the profile as of its latest applied event, with
    that event's features and prediction. ``version`` is the Cassandra write time (µs). A NamedTuple:
    one is built per applied event, and a frozen dataclass's __init__ cost ~1 µs more."""

    view: dict[str, Any]
    version: int
    # prediction.avsc values; the dict is built only for the rows that get written (once per user
    # and checkpoint), not for every applied event
    prediction_values: Sequence[Any]
    features: list[float]

    @property
    def prediction(self) -> dict[str, Any]:
        return dict(zip(PREDICTION_FIELDS, self.prediction_values, strict=True))


@dataclass
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)  # one per input event, in order
    predictions: list[list[Any]] = field(default_factory=list)  # prediction.avsc order, one per applied event
    late: list[Event] = field(default_factory=list)
    duplicates: list[Event] = field(default_factory=list)
    profiles: dict[str, ProfileRow] = field(default_factory=dict)  # touched users, latest row each
    erasures: list[tuple[str, int]] = field(default_factory=list)  # (user, tombstone write time µs)
    # shadow_score.avsc rows, one per applied event, when a shadow model scored the batch too
    shadow: list[list[Any]] = field(default_factory=list)


def process_batch(
    events: Iterable[Event],
    store: ProfileStore,
    score: Score,
    settings: ProfileSettings,
    scored_at: int,
    emit_features: bool = False,
    shadow: Optional[Score] = None,
) -> BatchResult:
    """Step every event against ``store`` (which is updated), score the applied ones in one call and
    shape the rows. ``scored_at``: epoch ms stamped on the predictions (the caller's clock).
    ``shadow``: a second model that scores the same vectors; its scores go to ``BatchResult.shadow``
    next to the active model's, never into the predictions."""
    out = BatchResult()
    applied: list[tuple[Event, list[float], dict[str, Any], int]] = []  # (event, vector, view, version)
    for ev in events:
        current = store.get(ev.user_id)
        r = step(current, ev, settings)
        out.outcomes.append(r.outcome)
        if r.outcome is Outcome.ERASED:
            # rows of this user written earlier (this batch or before) sit below the tombstones
            store.remove(ev.user_id)
            out.profiles.pop(ev.user_id, None)
            out.erasures.append((ev.user_id, erasure_timestamp(current, ev)))
        elif r.outcome is Outcome.DUPLICATE:
            out.duplicates.append(ev)
        elif r.outcome is Outcome.LATE:
            out.late.append(ev)
        else:
            p = r.state
            vector, view = feats.vector_and_view(r.before, p, ev, settings)
            store.put(ev.user_id, p)
            applied.append((ev, vector, view, p.version))
    if not applied:
        return out
    vectors = [a[1] for a in applied]
    scores = score(vectors)
    if shadow is not None:
        out.shadow = [shadow_row(a[0], s, sh) for a, s, sh in zip(applied, scores, shadow(vectors), strict=True)]
    for (ev, vector, view, version), s in zip(applied, scores, strict=True):
        values = prediction_row(ev, s, view, scored_at, vector if emit_features else [])
        out.predictions.append(values)
        # later events of the same user overwrite: the row is as of the user's latest applied event
        # (re-inserted: users in order of their latest applied event, see merge_pending)
        out.profiles.pop(ev.user_id, None)
        out.profiles[ev.user_id] = ProfileRow(view, version, values, vector)
    return out


def merge_pending(pending: dict[str, ProfileRow], result: BatchResult) -> None:
    """Fold a batch's profile rows into rows not yet written (the job writes each touched profile
    once per checkpoint, not once per batch). An erasure drops the user's pending row: the
    tombstones written for it are above any write time the row could have."""
    for user, _ in result.erasures:
        pending.pop(user, None)
    for user, row in result.profiles.items():
        pending.pop(user, None)  # re-inserted: pending users stay in order of their latest event
        pending[user] = row


FILL_WEIGHT = 0.2  # weight of the latest batch in FlushPolicy.fill: ~5 batches of memory


@dataclass
class FlushPolicy:
    """How many changed profiles the operator holds back after each batch, by how busy it is.

    Keeping up with its input (batches flushed by the batcher's delay or a watermark long before they
    fill), the profiles beyond ``keep_live`` are written after the batch, so a checkpoint finds few
    left to write: that write burst, on two cores shared with Kafka and Cassandra, was the latency
    bench's p99 (0.8-1.2 s with every profile written at the checkpoint, 0.31-0.56 s holding back 200).
    Catching up (batches mostly full), latency is the backlog's, and holding profiles until the
    checkpoint (up to ``keep_max``, the memory bound) writes each once per checkpoint: the least CPU
    (early writes cost ~10% more Python CPU and Cassandra rows per event in a replay, README
    "Throughput"). Busy = the moving average of batch fill (size / batch_max_events) is at least
    half: a single full batch after a pause, or a partial one in a backlog, does not flip it."""

    batch_max_events: int
    keep_live: int
    keep_max: int
    fill: float = 0.0  # moving average of batch size / batch_max_events (memory only; 0 after a restore)

    def keep(self, batch_events: int) -> int:
        self.fill += FILL_WEIGHT * (min(batch_events / self.batch_max_events, 1.0) - self.fill)
        return self.keep_max if self.fill >= 0.5 else self.keep_live


def oldest_pending(pending: dict[str, ProfileRow], keep: int) -> list[str]:
    """The users beyond the ``keep`` most recently touched ones (``merge_pending`` keeps that order):
    the ones to write now, so that a checkpoint finds at most ``keep`` to write. The users touched
    last are held back because they are the likeliest to change again before the checkpoint."""
    excess = len(pending) - keep
    if excess <= 0:
        return []
    out = []
    for user in pending:
        out.append(user)
        if len(out) == excess:
            break
    return out


def replay_batches(
    events: Sequence[Event], score: Score, settings: ProfileSettings, batch_size: int = 1000,
    store: Optional[ProfileStore] = None, scored_at: int = 0, emit_features: bool = False,
    shadow: Optional[Score] = None, shadow_rows: Optional[list[list[Any]]] = None,
) -> tuple[list[Outcome], list[list[Any]], dict[str, ProfileRow], MemoryStore | ProfileStore]:
    """Offline replay through the engine: (outcome per event, predictions, final profile rows, store).
    The final rows are the ones the job's profiles table ends with (erased users have none). With
    ``shadow``, the shadow rows the job would log are appended to ``shadow_rows``."""
    store = store if store is not None else MemoryStore()
    outcomes: list[Outcome] = []
    predictions: list[list[Any]] = []
    pending: dict[str, ProfileRow] = {}
    for i in range(0, len(events), batch_size):
        r = process_batch(events[i:i + batch_size], store, score, settings, scored_at, emit_features, shadow)
        if shadow_rows is not None:
            shadow_rows += r.shadow
        outcomes += r.outcomes
        predictions += r.predictions
        merge_pending(pending, r)
    return outcomes, predictions, pending, store
