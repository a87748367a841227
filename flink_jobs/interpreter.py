"""Settings of the TaskManager's embedded CPython that the Python operators share.

In thread mode one interpreter per TaskManager runs every Python operator of its slots, so these are
process-wide; each operator applies them in open() (idempotent)."""

from __future__ import annotations

import gc


def tune_gc(threshold: int) -> None:
    """Collect the young generation every ``threshold`` allocations instead of Python's 700.

    Why: the profile operator allocates millions of short-lived, acyclic objects (events, feature
    dicts, rows) that reference counting frees anyway; at the default threshold the cyclic collector
    ran ~37 times per 1,000 events and took ~25% of the operator's CPU while finding almost nothing
    (590 objects in 60,000 events of the Taobao slice). The modules, models and schemas loaded
    before open() live as long as the interpreter: gc.freeze() takes them out of every later full
    collection. Cycles are still collected, only in larger steps. 0 leaves the defaults."""
    if threshold <= 0:
        return
    gc.freeze()
    gc.set_threshold(threshold, 10, 10)
