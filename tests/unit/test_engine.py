"""The batch engine (udfs/engine.py): batch boundaries never change a result, the engine agrees with
the per-event reference (udfs.profile.replay_steps), erasures drop pending rows, and the keyed-state
store of the Flink operator keeps changed profiles until the checkpoint flush."""

from __future__ import annotations

import random

import pytest

from tools.erase_user import erase_event
from udfs.engine import MemoryStore, ProfileRow, merge_pending, process_batch, replay_batches
from udfs.prediction import PREDICTION_FIELDS, Scores
from udfs.profile import Event, Outcome, replay_steps
from udfs.profile_codec import decode_profile, encode_profile
from udfs.settings import ProfileSettings

S = ProfileSettings()
M = 60_000
T0 = 1_511_568_000_000


def fake_score(vectors):
    """Deterministic stand-in for the ONNX models: the engine only routes what scoring returns."""
    return [Scores(sum(v) % 1.0, "m-test", int(sum(v)) % 3, f"seg{int(sum(v)) % 3}", "s-test") for v in vectors]


def stream(n=600, users=12, seed=5) -> list[Event]:
    """Interleaved users, some events out of order (a few beyond the lateness), some copies."""
    rng = random.Random(seed)
    out: list[Event] = []
    for i in range(n):
        u = f"u{rng.randrange(users)}"
        t = T0 + i * 20_000 - rng.choice([0, 0, 0, 2 * M, 9 * M])
        kind = rng.choice(["view", "view", "cart", "fav", "purchase"])
        out.append(Event(f"e{i}", u, kind, f"i{rng.randrange(30)}", f"c{rng.randrange(6)}", 3.0, 1, t, None, None))
        if rng.random() < 0.05:
            out.append(out[-1])  # a producer retry
    return out


@pytest.mark.parametrize("batch_size", [1, 7, 10_000])
def test_batch_boundaries_change_nothing(batch_size):
    events = stream()
    ref_outcomes, ref_preds, ref_rows, ref_store = replay_batches(events, fake_score, S, batch_size=10_000)
    outcomes, preds, rows, store = replay_batches(events, fake_score, S, batch_size=batch_size)
    assert outcomes == ref_outcomes
    assert preds == ref_preds
    assert rows == ref_rows
    assert {u: encode_profile(p) for u, p in store.profiles.items()} == \
           {u: encode_profile(p) for u, p in ref_store.profiles.items()}


def test_engine_agrees_with_the_per_event_reference():
    events = stream()
    outcomes, preds, rows, _ = replay_batches(events, fake_score, S, batch_size=50)
    reference = list(replay_steps(events, S))
    assert outcomes == [r.outcome for r in reference]
    assert {Outcome.LATE, Outcome.DUPLICATE, Outcome.APPLIED} <= set(outcomes)  # the stream exercises all three
    applied = [r for r in reference if r.outcome is Outcome.APPLIED]
    assert [p[PREDICTION_FIELDS.index("event_id")] for p in preds] == [r.event.event_id for r in applied]
    # the profile row of each user is the one of its last applied event
    last = {r.event.user_id: r.event for r in applied}
    assert {u: row.prediction["event_id"] for u, row in rows.items()} == {u: e.event_id for u, e in last.items()}


def test_one_batch_routes_every_event_once():
    events = stream(200)
    r = process_batch(events, MemoryStore(), fake_score, S, scored_at=123)
    assert len(r.outcomes) == len(events)
    assert len(r.predictions) == r.outcomes.count(Outcome.APPLIED)
    assert len(r.late) == r.outcomes.count(Outcome.LATE)
    assert len(r.duplicates) == r.outcomes.count(Outcome.DUPLICATE)
    assert all(p[PREDICTION_FIELDS.index("scored_at")] == 123 for p in r.predictions)


def test_erasure_in_a_batch_drops_the_profile_and_its_pending_row():
    evs = [Event(f"e{i}", "u", "view", "i", "c", None, None, T0 + i * M, None, None) for i in range(3)]
    other = Event("o1", "v", "cart", "i", "c", None, None, T0, None, None)
    store = MemoryStore()
    pending: dict[str, ProfileRow] = {}
    merge_pending(pending, process_batch([*evs, other], store, fake_score, S, 0))
    assert set(pending) == {"u", "v"}
    r = process_batch([erase_event("u", T0 + 10 * M)], store, fake_score, S, 0)
    merge_pending(pending, r)
    assert set(pending) == {"v"} and store.get("u") is None
    assert r.outcomes == [Outcome.ERASED] and r.erasures[0][0] == "u"
    assert r.erasures[0][1] > max(e.event_time for e in evs) * 1000  # above every write of the profile
    # erase and new events in one batch: only what follows the erasure counts
    r = process_batch([evs[0], erase_event("u", T0 + 20 * M),
                       Event("n1", "u", "cart", "i", "c", None, None, T0 + 21 * M, None, None)],
                      MemoryStore(), fake_score, S, 0)
    assert r.profiles["u"].view["n_events"] == 1 and r.profiles["u"].view["n_cart"] == 1


# --- the Flink operator's store, without Flink -------------------------------------------------------
class FakeStateAccess:
    """flink_jobs.operators.KeyedStateAccess in memory: one ValueState under many users' keys."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.writes = 0
        self.calls = 0

    def getAll(self, users):  # noqa: N802, ANN001, ANN201 - the JVM's names
        self.calls += 1
        return [self.data.get(u) for u in users]

    def putAll(self, users, values) -> None:  # noqa: N802, ANN001
        self.calls += 1
        self.writes += len(users)
        self.data.update(zip(users, values, strict=True))

    def clear(self, user: str) -> None:
        self.calls += 1
        self.data.pop(user, None)


def test_keyed_store_writes_each_changed_profile_once_per_flush_and_never_loses_one():
    from flink_jobs.keyed_store import KeyedProfileStore

    state = FakeStateAccess()
    store = KeyedProfileStore(state, cache_size=2)  # a tiny cache: dirty entries must survive
    events = stream(300, users=9)
    reference_store = MemoryStore()
    changed: set[str] = set()
    for i in range(0, len(events), 25):
        r = process_batch(events[i:i + 25], store, fake_score, S, 0)
        process_batch(events[i:i + 25], reference_store, fake_score, S, 0)
        changed |= set(r.profiles)
        if i % 100 == 75:  # a checkpoint every 4 batches
            assert store.flush() == len(changed)
            changed.clear()
    store.flush()
    assert not store.dirty
    decoded = {u: encode_profile(decode_profile(v.encode("latin-1"))) for u, v in state.data.items()}
    assert decoded == {u: encode_profile(p) for u, p in reference_store.profiles.items()}
    # fewer state writes than batches x users: one per changed user and flush
    assert state.writes <= 9 * (len(events) // 100 + 2)


def test_keyed_store_reads_state_after_a_restart_and_removes_on_erasure():
    from flink_jobs.keyed_store import KeyedProfileStore

    state = FakeStateAccess()
    events = stream(100, users=3)
    first = KeyedProfileStore(state, cache_size=10)
    process_batch(events, first, fake_score, S, 0)
    first.flush()
    restarted = KeyedProfileStore(state, cache_size=10)  # open() after a restore: empty cache
    assert restarted.get("u0") == first.get("u0")
    assert restarted.state_reads == 1
    restarted.remove("u0")
    assert "u0" not in state.data and restarted.get("u0") is None


def test_keyed_store_reads_a_batchs_users_in_one_call_and_flushes_in_one():
    from flink_jobs.keyed_store import KeyedProfileStore

    state = FakeStateAccess()
    events = stream(200, users=20)
    KeyedProfileStore(state, cache_size=100).flush()
    writer = KeyedProfileStore(state, cache_size=100)
    first_users = {ev.user_id for ev in events[:100]}
    process_batch(events[:100], writer, fake_score, S, 0)  # no prefetch: one read per new user
    assert state.calls == len(first_users)
    state.calls = 0
    writer.flush()
    assert state.calls == 1 and state.writes == len(first_users)  # one putAll for every changed user
    store = KeyedProfileStore(state, cache_size=100)  # after a restart
    state.calls = 0
    store.prefetch(ev.user_id for ev in events[100:])
    r = process_batch(events[100:], store, fake_score, S, 0)
    # each user read once, all in one call
    assert state.calls == 1 and store.state_reads == len({ev.user_id for ev in events[100:]})
    reference = MemoryStore()
    process_batch(events[:100], reference, fake_score, S, 0)
    assert r.predictions == process_batch(events[100:], reference, fake_score, S, 0).predictions


def test_keyed_store_keeps_the_batchs_no_entry_answers_when_it_reads_one_more_user():
    from flink_jobs.keyed_store import KeyedProfileStore

    state = FakeStateAccess()
    store = KeyedProfileStore(state, cache_size=10)
    store.prefetch(["new1", "new2"])  # neither has state
    assert state.calls == 1
    assert store.get("other") is None  # not prefetched: one read of its own
    assert state.calls == 2
    assert store.get("new1") is None and store.get("new2") is None  # still known absent: no read
    assert state.calls == 2 and store.state_reads == 3
    store.prefetch(["new1"])  # the next batch asks the state again
    assert state.calls == 3


def test_flush_policy_writes_early_only_while_the_subtask_keeps_up():
    """Small batches (the batcher's delay or a watermark flushed them): hold back only the live bound.
    Mostly full batches (a backlog): hold back up to the memory bound. One batch does not flip it."""
    from udfs.engine import FlushPolicy

    policy = FlushPolicy(batch_max_events=500, keep_live=200, keep_max=20_000)
    assert [policy.keep(30) for _ in range(20)] == [200] * 20  # live traffic
    assert policy.keep(500) == 200  # one full batch after a pause: still live
    assert [policy.keep(500) for _ in range(6)][-1] == 20_000  # a backlog
    assert policy.keep(1) == 20_000  # a partial batch inside the backlog (watermark flush)
    assert [policy.keep(20) for _ in range(10)][-1] == 200  # caught up: live again
    assert policy.keep(10**6) == 200 and policy.fill <= 1.0  # a batch over the size counts as full


@pytest.mark.parametrize("keep", [0, 3, 100])
def test_bounded_deferral_writes_the_least_recently_touched_early_and_loses_nothing(keep):
    """The operator's flush_max_pending: after each batch the pending users beyond the ``keep``
    most recently touched are written (state and rows); at the checkpoint the rest. Every changed
    profile reaches state equal to the reference, every user's last row is the one written last."""
    from flink_jobs.keyed_store import KeyedProfileStore
    from udfs.engine import oldest_pending

    state = FakeStateAccess()
    store = KeyedProfileStore(state, cache_size=4)
    events = stream(400, users=12)
    reference = MemoryStore()
    pending: dict[str, ProfileRow] = {}
    written: dict[str, ProfileRow] = {}  # what the profiles table ends with
    applied: list[str] = []  # users of the applied events, in order
    for i in range(0, len(events), 20):
        r = process_batch(events[i:i + 20], store, fake_score, S, 0)
        process_batch(events[i:i + 20], reference, fake_score, S, 0)
        merge_pending(pending, r)
        applied += [p[0] for p in r.predictions]  # prediction.avsc: user_id first
        touched_last = list(dict.fromkeys(reversed(applied)))[:keep]
        early = oldest_pending(pending, keep)
        assert not set(early) & set(touched_last)  # the most recently touched are held back
        store.flush(early)
        written.update((u, pending.pop(u)) for u in early)
        assert len(pending) <= keep
        if i % 100 == 80:  # a checkpoint every 5 batches
            store.flush()
            written.update(pending)
            pending.clear()
            assert not store.dirty
    store.flush()
    written.update(pending)
    decoded = {u: encode_profile(decode_profile(v.encode("latin-1"))) for u, v in state.data.items()}
    assert decoded == {u: encode_profile(p) for u, p in reference.profiles.items()}
    assert {u: row.version for u, row in written.items()} == {u: p.version for u, p in reference.profiles.items()}
