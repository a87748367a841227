"""flink_jobs.interpreter: the TaskManager interpreter's collector settings."""

import gc

import pytest

from flink_jobs.config import Config, ConfigError
from flink_jobs.interpreter import release_gc, tune_gc


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_threshold_is_set_and_loaded_objects_are_frozen(restore_gc):
    gc.unfreeze()
    tune_gc(12_345)
    assert gc.get_threshold()[0] == 12_345
    assert gc.get_freeze_count() > 0  # what was loaded before open() is out of later collections
    cyclic = []
    cyclic.append(cyclic)
    del cyclic
    assert gc.collect() >= 1  # cycles made after open() are still collected


def test_an_earlier_jobs_frozen_cycles_are_collected_at_the_next_open_and_after_close(restore_gc):
    import weakref

    class Operator:  # stands for an operator object of a finished job, in a reference cycle
        pass

    def leave_a_frozen_cycle() -> weakref.ref:
        op = Operator()
        op.self = op
        tune_gc(10_000)  # the finished job's open(): its cycle gets frozen
        return weakref.ref(op)

    gone = leave_a_frozen_cycle()
    gc.collect()
    assert gone() is not None  # frozen: a full collection does not see it (the leak)
    tune_gc(10_000)  # the next job's open()
    assert gone() is None

    gone = leave_a_frozen_cycle()
    release_gc()  # the job's close()
    gc.collect()
    assert gone() is None


def test_zero_leaves_the_interpreter_defaults(restore_gc):
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    tune_gc(0)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_the_setting_is_validated():
    assert Config.from_env().python_gc_threshold == 10_000
    with pytest.raises(ConfigError, match="python_gc_threshold"):
        Config.from_env({"PE_PYTHON_GC_THRESHOLD": "-1"})
