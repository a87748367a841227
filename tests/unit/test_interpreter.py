"""flink_jobs.interpreter: the TaskManager interpreter's collector settings."""

import gc

import pytest

from flink_jobs.config import Config, ConfigError
from flink_jobs.interpreter import tune_gc


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
