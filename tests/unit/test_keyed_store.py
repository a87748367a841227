"""flink_jobs.keyed_store over a dict: the popularity stage's windows (the profiles are tested in
test_engine.py) are written once per flush and read back equal after a restart."""

from flink_jobs.keyed_store import KeyedStore
from tests.unit.test_engine import FakeStateAccess
from udfs import popularity
from udfs.profile import Event

T0 = 1_511_568_000_000


def test_windows_survive_a_restart_through_state():
    state = FakeStateAccess()
    store = KeyedStore(state, 2, popularity.decode_window, popularity.encode_window)
    events = [Event(f"e{i}", "u", "view", f"i{i % 5}", f"c{i % 3}", None, None, T0 + i * 1000, None, None)
              for i in range(60)]
    changed = popularity.count_batch(events[:30], store, popularity.DEFAULT_POPULARITY)
    assert state.writes == 0 and store.flush() == len(changed) == 3
    popularity.count_batch(events[30:], store, popularity.DEFAULT_POPULARITY)
    store.flush()
    restarted = KeyedStore(state, 2, popularity.decode_window, popularity.encode_window)
    restarted.prefetch(["c0", "c1", "c2", "nope"])
    assert restarted.get("nope") is None
    reference: dict = {}

    class Ref(dict):
        def put(self, k, v):
            self[k] = v

    reference = Ref()
    popularity.count_batch(events, reference, popularity.DEFAULT_POPULARITY)
    for c in ("c0", "c1", "c2"):
        assert popularity.encode_window(restarted.get(c)) == popularity.encode_window(reference[c])
