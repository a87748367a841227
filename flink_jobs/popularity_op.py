"""The "popular now" stage: a thin adapter over udfs/popularity.py, keyed by category.

Its input is micro-batches of events re-keyed by category (connectors.popularity_batches), its
state one sliding event-time window per category (Flink keyed state: it rescales with the key
groups like the profiles), its output control records {"popularity": tops} that
jvm/.../ControlFanout delivers to every profile subtask, where they form the bounded snapshot the
recommendations read locally (no per-event lookup anywhere).

A category's top is sent at the commit marker that precedes each checkpoint barrier, when the
category counted an event since the last one; after a restore, every category this subtask holds is
sent once again (the profile subtasks' snapshots are memory only and start empty).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from flink_jobs.config import Config
from flink_jobs.interpreter import release_gc, tune_gc
from flink_jobs.keyed_store import KeyedStore
from flink_jobs.operators import keyed_state_access
from udfs import popularity
from udfs.profile import Event

log = logging.getLogger(__name__)

POPULARITY_STATE = "popularity"  # the bytes carry their own version (udfs.popularity.WINDOW_VERSION)


class PopularityFunction(KeyedProcessFunction):
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext) -> None:
        tune_gc(self.cfg.python_gc_threshold)
        self.s = self.cfg.popularity_settings()
        state = runtime_context.get_state(ValueStateDescriptor(POPULARITY_STATE, Types.STRING()))
        access = keyed_state_access(runtime_context, state, self.cfg.max_parallelism)
        self.store = KeyedStore(access, self.cfg.profile_cache_users, popularity.decode_window,
                                popularity.encode_window)
        # restored windows: re-sent at the first commit (see the module comment)
        self.changed: set[str] = {str(k) for k in access.keys(POPULARITY_STATE)}
        group = runtime_context.get_metrics_group().add_group("popular_now")
        self.m_events = group.counter("events_counted")
        self.m_tops = group.counter("tops_sent")
        self.m_cpu_us = group.counter("python_cpu_micros")
        log.info("popularity stage: %d categories restored", len(self.changed))

    def close(self) -> None:
        release_gc()  # this job's objects must be collectable once it ends (flink_jobs/interpreter.py)

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        payload: str = value[0]
        c0 = time.thread_time()
        if payload.startswith("{"):  # commit marker: state, then the changed tops, before the barrier
            yield from self._commit()
        else:
            events = [Event(*fields) for fields in orjson.loads(payload)]
            self.store.prefetch(ev.category_id for ev in events)
            self.changed |= popularity.count_batch(events, self.store, self.s)
            self.m_events.inc(len(events))
        self.m_cpu_us.inc(int((time.thread_time() - c0) * 1e6))

    def _commit(self) -> Iterable[Any]:
        tops = []
        for key in sorted(self.changed):
            w = self.store.get(key)
            if w is not None:
                t = popularity.top(w, w.clock, self.s)
                tops.append(t)  # an empty top removes the category from the snapshots
                if not t.items:  # nothing left in any window to come: drop the state until it counts again
                    self.store.remove(key)
        self.store.flush()
        self.changed.clear()
        if tops:
            self.m_tops.inc(len(tops))
            yield Row(orjson.dumps({"popularity": popularity.tops_message(tops)}).decode())
