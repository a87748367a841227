"""udfs/live_models.py: what the profile operator scores with while models are published, promoted,
rejected and shadowed, and what a restore of its checkpointed state brings back. Real ONNX models
(the registry tests' small linear graphs), real onnxruntime sessions."""

from __future__ import annotations

import base64
import dataclasses

import numpy as np
import pytest

from tests.unit.test_model_registry import pkg, propensity, segments
from udfs import model_registry as mr
from udfs.engine import replay_batches
from udfs.features import FEATURE_NAMES
from udfs.live_models import ControlRecord, LiveModels, decode_control
from udfs.prediction import SHADOW_FIELDS
from udfs.profile import Event
from udfs.settings import ProfileSettings

X = np.random.default_rng(3).uniform(0, 5, size=(6, len(FEATURE_NAMES))).tolist()


@pytest.fixture
def files(tmp_path):
    """The model files a job starts with (version propensity-test-0, segments-test)."""
    model, seg = tmp_path / "start.onnx", tmp_path / "start-segments.onnx"
    model.write_bytes(propensity(0))
    seg.write_bytes(segments())
    return model, seg


def live(files, tmp_path) -> LiveModels:
    return LiveModels.from_files(*files, tmp_path / "models", provider="cpu")


def record(p: mr.ModelPackage | None, key: str = "active", offset: int = 0) -> ControlRecord:
    return ControlRecord(key.encode(), None if p is None else mr.encode_message(p), offset)


def versions(scores) -> set[tuple[str, str]]:
    return {(s.model_version, s.segment_model_version) for s in scores}


def test_publish_switches_the_scores_between_calls(files, tmp_path):
    m = live(files, tmp_path)
    assert versions(m.score(X)) == {("propensity-test-0", "segments-test")}
    before = [s.score for s in m.score(X)]
    u = m.apply(record(pkg(1)))
    assert u.changed and [e.kind for e in u.events] == ["activated"] and u.micros > 0
    after = m.score(X)
    assert versions(after) == {("propensity-test-1", "segments-test")}
    assert [s.score for s in after] != before
    assert m.shadow is None


def test_invalid_model_is_rejected_and_the_current_one_keeps_scoring(files, tmp_path):
    m = live(files, tmp_path)
    m.apply(record(pkg(1)))
    bad = dataclasses.replace(pkg(2), checksum="sha256:" + "0" * 64)
    u = m.apply(record(bad))
    assert not u.changed
    assert [(e.kind, e.metric) for e in u.events] == [("rejected", "models_rejected")]
    assert "checksum mismatch" in u.events[0].log_line() and "keeping active model propensity-test-1" in \
        u.events[0].log_line()
    assert versions(m.score(X)) == {("propensity-test-1", "segments-test")}
    assert m.apply(record(pkg(1))).events[0].kind == "unchanged"  # a redelivery


def test_a_valid_model_that_does_not_load_is_rejected(files, tmp_path):
    m = LiveModels.from_files(*files, tmp_path / "models", provider="cpu")
    m._check = lambda p: None  # validation passed (say), but the bytes are no ONNX graph
    junk = dataclasses.replace(pkg(3), propensity_onnx=b"junk", checksum=mr.checksum(b"junk", segments()))
    u = m.apply(record(junk))
    assert not u.changed and u.events[0].kind == "rejected" and "does not load" in u.events[0].reason
    assert m.state == mr.RegistryState() and versions(m.score(X)) == {("propensity-test-0", "segments-test")}


def test_package_without_segments_uses_the_start_up_segment_model(files, tmp_path):
    m = live(files, tmp_path)
    other_seg = dataclasses.replace(pkg(1, seg=False))
    m.apply(record(other_seg))
    assert versions(m.score(X)) == {("propensity-test-1", "segments-test")}
    assert m.segmenter is m.file_segmenter


def test_shadow_scores_next_to_the_active_model_and_promote_reuses_it(files, tmp_path):
    m = live(files, tmp_path)
    m.apply(record(pkg(1)))
    u = m.apply(record(pkg(2, role="shadow", seg=False), key="shadow"))
    assert u.changed and u.versions["shadow"] == "propensity-test-2"
    shadow_scores = m.shadow(X)
    assert {s.model_version for s in shadow_scores} == {"propensity-test-2"}
    assert versions(m.score(X)) == {("propensity-test-1", "segments-test")}  # the active one is unchanged
    loaded = m.shadow_scorer
    promote = pkg(2, seg=False).as_role("active", "promote", 2_000, "test")
    u = m.apply(record(promote))
    assert [e.kind for e in u.events] == ["promoted", "shadow_cleared"]
    assert m.scorer is loaded and m.shadow is None  # no second load of the same bytes
    assert [s.score for s in m.score(X)] == [s.score for s in shadow_scores]


def test_restore_continues_with_the_checkpointed_models_not_the_files(files, tmp_path):
    m = live(files, tmp_path)
    m.apply(record(pkg(1)))
    m.apply(record(pkg(2, role="shadow"), key="shadow"))
    data = m.state_bytes()
    fresh = LiveModels.from_files(*files, tmp_path / "other-dir", provider="cpu")
    fresh.restore(data)
    assert fresh.state == m.state
    assert [s.score for s in fresh.score(X)] == [s.score for s in m.score(X)]
    assert [s.score for s in fresh.shadow(X)] == [s.score for s in m.shadow(X)]
    with pytest.raises(ValueError):
        fresh.restore(data[:-7] + b"garbage")


def test_control_records_decode_the_jvm_payload():
    value = bytes(range(256))
    body = {"key": "active", "value": base64.b64encode(value).decode(), "offset": 42}
    assert decode_control(body) == ControlRecord(b"active", value, 42)
    assert decode_control({"key": None, "value": None, "offset": 0}) == ControlRecord(None, None, 0)
    with pytest.raises(ValueError):
        decode_control({"key": "active", "value": "not base64!", "offset": 1})


def test_engine_logs_one_shadow_row_per_applied_event_whatever_the_batches(files, tmp_path):
    from tests.unit.test_engine import stream

    m = live(files, tmp_path)
    m.apply(record(pkg(2, role="shadow"), key="shadow"))
    events: list[Event] = stream()
    by_size = {}
    for size in (1, 13, 10_000):
        rows: list = []
        _, preds, _, _ = replay_batches(events, m.score, ProfileSettings(), batch_size=size, shadow=m.shadow,
                                        shadow_rows=rows)
        by_size[size] = (preds, rows)
    preds, rows = by_size[10_000]
    assert all(by_size[s] == by_size[10_000] for s in by_size)
    assert len(rows) == len(preds) > 0
    shadow = [dict(zip(SHADOW_FIELDS, r, strict=True)) for r in rows]
    assert [r["event_id"] for r in shadow] == [p[1] for p in preds]
    assert {(r["active_version"], r["shadow_version"]) for r in shadow} == {("propensity-test-0", "propensity-test-2")}
    assert [r["active_score"] for r in shadow] == [p[4] for p in preds]
    no_shadow = replay_batches(events, m.score, ProfileSettings(), batch_size=13)[1]
    assert no_shadow == preds  # the predictions carry only the active model
