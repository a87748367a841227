"""Settings of the TaskManager's embedded CPython that the Python operators share.

In thread mode one interpreter per TaskManager runs every Python operator of its slots, and it
outlives jobs: these settings are process-wide, applied by each operator's open() and undone by its
close() (both idempotent)."""

from __future__ import annotations

import gc


def tune_gc(threshold: int) -> None:
    """Collect the young generation every ``threshold`` allocations instead of Python's 700.

    Why: the profile operator allocates millions of short-lived, acyclic objects (events, feature
    dicts, rows) that reference counting frees anyway; at the default threshold the cyclic collector
    ran ~37 times per 1,000 events and took ~25% of the operator's CPU while finding almost nothing
    (590 objects in 60,000 events of the Taobao slice). The modules, models and schemas loaded
    before open() are then frozen out of every later full collection.

    Frozen objects are never collected, and the interpreter outlives the job: an earlier job's
    operator objects in a reference cycle hold Java references (pemja) to that job's class loader.
    Frozen, they leaked one class loader per job until the TaskManager died of a Metaspace
    OutOfMemoryError (seen in CI after ~20 jobs on one TaskManager). So every open() first unfreezes
    and collects what earlier jobs left, and close() unfreezes. 0 leaves the defaults."""
    if threshold <= 0:
        return
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 10, 10)


def release_gc() -> None:
    """At an operator's close(): make everything frozen collectable again (see ``tune_gc``)."""
    gc.unfreeze()
