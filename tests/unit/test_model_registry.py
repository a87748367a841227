"""udfs.model_registry: validation of published models, the active/shadow state machine and the
checkpoint encoding. Models are built here with the exporter's own graph code (no training)."""

from __future__ import annotations

import dataclasses
import json
from functools import cache

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from model_export import onnx_graphs
from tests.unit.model_helpers import metadata
from udfs import model_contract as mc
from udfs import model_registry as mr
from udfs.features import FEATURE_NAMES

N = len(FEATURE_NAMES)


def _bytes(model: onnx.ModelProto, meta: dict[str, str]) -> bytes:
    onnx.helper.set_model_props(model, meta)
    return model.SerializeToString()


@cache
def propensity(seed: int = 0, names: tuple[str, ...] = tuple(FEATURE_NAMES)) -> bytes:
    """A linear propensity graph with random weights and the trainer's metadata (version differs per seed)."""
    w = np.random.default_rng(seed).normal(0, 0.05, N)
    meta = metadata(list(names)) | {mc.MODEL_VERSION: f"propensity-test-{seed}"}
    return _bytes(onnx_graphs.linear_classifier(np.zeros(N, dtype=bool), w, -0.5), meta)


@cache
def segments(k: int = 3, names_k: int = 3) -> bytes:
    rng = np.random.default_rng(1)
    model = onnx_graphs.kmeans_assigner(N, [0, 1, 2], np.zeros(3, dtype=bool), np.zeros(3), np.ones(3),
                                        rng.normal(size=(k, 3)))
    meta = {mc.MODEL_VERSION: "segments-test", mc.FEATURE_NAMES: json.dumps(FEATURE_NAMES), mc.SEGMENT_K: str(k),
            mc.SEGMENT_NAMES: json.dumps([f"s{i}" for i in range(names_k)])}
    return _bytes(model, meta)


def pkg(seed: int = 0, role: str = "active", action: str = "publish", seg: bool = True) -> mr.ModelPackage:
    return mr.package_from_onnx(propensity(seed), segments() if seg else None, role, 1_000, "test", action)


def three_column_output() -> bytes:
    """A graph with the contract's input and metadata, but [n, 3] 'probabilities'."""
    x = helper.make_tensor_value_info(mc.ONNX_INPUT, TensorProto.FLOAT, [None, N])
    y = helper.make_tensor_value_info(mc.PROBABILITIES, TensorProto.FLOAT, [None, 3])
    w = onnx.numpy_helper.from_array(np.full((N, 3), 0.0, dtype=np.float32), "W")
    nodes = [helper.make_node("MatMul", [mc.ONNX_INPUT, "W"], ["z"]),
             helper.make_node("Sigmoid", ["z"], [mc.PROBABILITIES])]
    model = helper.make_model(helper.make_graph(nodes, "bad", [x], [y], initializer=[w]),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return _bytes(model, metadata() | {mc.MODEL_VERSION: "propensity-bad-shape"})


# --- validation ----------------------------------------------------------------------------------


def test_valid_package_passes_and_round_trips():
    p = pkg()
    mr.validate(p)
    assert mr.decode_message(mr.encode_message(p)) == p
    assert p.version == "propensity-test-0" and p.feature_names == tuple(FEATURE_NAMES)


def test_artifacts_package_passes_if_trained():
    from flink_jobs.config import Config

    cfg = Config()
    if not cfg.model_file.is_file():
        pytest.skip("no trained model (python -m model_export.train)")
    mr.validate(mr.package_from_onnx(cfg.model_file.read_bytes(), cfg.segments_file.read_bytes(), "active", 0, "t"))


def _reason(p: mr.ModelPackage) -> str:
    with pytest.raises(mr.InvalidModel) as err:
        mr.validate(p)
    return str(err.value)


def test_bad_checksum_is_rejected():
    p = pkg()
    flipped = bytearray(p.propensity_onnx)
    flipped[-1] ^= 0xFF
    assert "checksum mismatch" in _reason(dataclasses.replace(p, propensity_onnx=bytes(flipped)))


def test_corrupt_onnx_is_rejected_with_the_runtime_reason():
    blob = b"\x08\x07garbage" * 10
    p = dataclasses.replace(pkg(seg=False), propensity_onnx=blob, checksum=mr.checksum(blob, None))
    assert "does not load in onnxruntime" in _reason(p)


def test_wrong_feature_contract_is_rejected():
    names = list(FEATURE_NAMES)
    names[0], names[1] = names[1], names[0]
    p = dataclasses.replace(pkg(), feature_names=tuple(names))
    assert "feature contract differs" in _reason(p) and "another order" in _reason(p)
    assert "features_version" in _reason(dataclasses.replace(pkg(), features_version=99))


def test_model_metadata_must_agree_with_the_message():
    renamed = tuple(FEATURE_NAMES[:-1]) + ("not_a_feature",)
    blob = propensity(0, renamed)
    p = dataclasses.replace(pkg(), propensity_onnx=blob, checksum=mr.checksum(blob, segments()))
    assert "metadata feature_names differ" in _reason(p)
    assert "but the model says" in _reason(dataclasses.replace(pkg(), version="propensity-other"))


def test_wrong_output_shape_is_rejected():
    blob = three_column_output()
    p = mr.package_from_onnx(blob, None, "active", 0, "t")
    assert "shape (3, 3)" in _reason(p)


def test_segment_model_with_wrong_names_is_rejected():
    blob = segments(3, names_k=2)
    p = dataclasses.replace(pkg(), segments_onnx=blob, checksum=mr.checksum(propensity(0), blob))
    assert "segment model metadata" in _reason(p)


def test_not_a_message_is_rejected():
    state, events = mr.apply(mr.RegistryState(), b"active", b"\x00\x01not avro")
    assert state == mr.RegistryState() and events[0].kind == "rejected" and "ModelMessage" in events[0].reason


# --- state machine -------------------------------------------------------------------------------


def send(state: mr.RegistryState, p: mr.ModelPackage | None, key: str | None = None):
    key = key or (p.role if p else "shadow")
    return mr.apply(state, key.encode(), None if p is None else mr.encode_message(p))


def test_publish_shadow_promote_rollback():
    s0 = mr.RegistryState()
    s1, ev = send(s0, pkg(0))
    assert s1.active.version == "propensity-test-0" and [e.kind for e in ev] == ["activated"]
    s2, ev = send(s1, pkg(1, role="shadow"))
    assert s2.shadow.version == "propensity-test-1" and s2.active == s1.active and ev[0].kind == "shadow_set"
    s3, ev = send(s2, pkg(1, role="active", action="promote"))
    assert s3.active.version == "propensity-test-1" and s3.shadow is None
    assert [e.kind for e in ev] == ["promoted", "shadow_cleared"] and ev[0].previous == "propensity-test-0"
    s4, ev = send(s3, pkg(0, action="rollback"))
    assert s4.active.version == "propensity-test-0" and ev[0].kind == "rolled_back"
    assert ev[0].previous == "propensity-test-1" and ev[0].metric == "model_swaps"


def test_rejection_keeps_the_current_models_and_says_why():
    s1, _ = send(mr.RegistryState(), pkg(0))
    s1, _ = send(s1, pkg(1, role="shadow"))
    bad = dataclasses.replace(pkg(2), checksum="sha256:" + "0" * 64)
    s2, ev = send(s1, bad)
    assert s2 == s1 and ev[0].kind == "rejected" and ev[0].metric == "models_rejected"
    assert "checksum mismatch" in ev[0].log_line() and "keeping active model propensity-test-0" in ev[0].log_line()
    s3, ev = send(s1, pkg(2), key="shadow")  # role/key disagree
    assert s3 == s1 and "role is 'active'" in ev[0].reason
    s4, ev = send(s1, None, key="active")  # a tombstone must not remove the active model
    assert s4 == s1 and ev[0].kind == "rejected"
    s5, ev = send(s1, pkg(0, role="shadow"))  # shadow = the active one
    assert s5 == s1 and "nothing to compare" in ev[0].reason


def test_redelivery_is_idempotent_and_reused_versions_are_refused():
    s1, _ = send(mr.RegistryState(), pkg(0))
    s2, ev = send(s1, pkg(0))
    assert s2 is s1 and ev[0].kind == "unchanged" and ev[0].metric == "models_unchanged"
    other = dataclasses.replace(pkg(1), version="propensity-test-0")
    s3, ev = mr.transition(s1, "active", other)  # validated elsewhere: same version, other bytes
    assert s3 is s1 and "version reused" in ev[0].reason


def test_shadow_tombstone_clears_the_shadow():
    s1, _ = send(mr.RegistryState(), pkg(1, role="shadow"))
    s2, ev = send(s1, None, key="shadow")
    assert s2.shadow is None and ev[0].kind == "shadow_cleared" and ev[0].previous == "propensity-test-1"


def test_unknown_key_is_rejected():
    s, ev = mr.apply(mr.RegistryState(), b"canary", mr.encode_message(pkg(0)))
    assert s == mr.RegistryState() and ev[0].kind == "rejected"


def test_replaying_the_compacted_topic_gives_the_same_state():
    """A fresh job reads whatever the topic retained, in order; the end state is the live job's."""
    log = [pkg(0), pkg(1, role="shadow"), pkg(1, action="promote"), pkg(2, role="shadow")]
    live = mr.RegistryState()
    for p in log:
        live, _ = send(live, p)
    compacted = [log[2], log[3]]  # only the latest per key survives compaction
    fresh = mr.RegistryState()
    for p in compacted:
        fresh, _ = send(fresh, p)
    assert (fresh.active.version, fresh.shadow.version) == (live.active.version, live.shadow.version)


# --- checkpoint encoding -------------------------------------------------------------------------


def test_state_round_trip_carries_the_bytes():
    s, _ = send(mr.RegistryState(), pkg(0))
    s, _ = send(s, pkg(1, role="shadow", seg=False))
    data = mr.encode_state(s)
    assert mr.decode_state(data) == s
    assert mr.decode_state(mr.encode_state(mr.RegistryState())) == mr.RegistryState()
    ours = len(s.active.propensity_onnx) + len(s.active.segments_onnx) + len(s.shadow.propensity_onnx)
    assert ours < len(data) < ours + 4_000  # the bytes themselves plus small envelopes


def test_state_of_another_version_or_corrupted_is_refused():
    from udfs import schemas
    from udfs.avro import AvroCodec

    codec = AvroCodec(schemas.MODEL_REGISTRY_STATE, logical_types=False)
    with pytest.raises(ValueError, match="state version"):
        mr.decode_state(codec.encode({"state_version": 99, "active": None, "shadow": None}))
    bad = dataclasses.replace(pkg(0), checksum="sha256:" + "1" * 64)
    with pytest.raises(ValueError, match="checksum"):
        mr.decode_state(codec.encode({"state_version": mr.STATE_VERSION, "active": mr.encode_message(bad),
                                      "shadow": None}))


def test_write_files_gives_loadable_models(tmp_path):
    from udfs.scorer import OnnxScorer
    from udfs.segmenter import OnnxSegmenter

    p = pkg(0)
    prop, seg = p.write_files(tmp_path)
    assert prop.read_bytes() == p.propensity_onnx and p.write_files(tmp_path) == (prop, seg)
    scorer, segmenter = OnnxScorer(prop, provider="cpu"), OnnxSegmenter(seg, provider="cpu")
    x = mr.probe_batch(N)
    assert scorer.model_version == p.version and scorer.score(x).shape == (3,)
    assert set(segmenter.assign(x)) <= {0, 1, 2}


def test_registry_does_not_import_onnx():
    """The operator imports this module in thread mode, where `import onnx` aborts the TaskManager."""
    import subprocess
    import sys

    code = ("import sys, udfs.model_registry as m; m.validate; "
            "sys.exit(1 if 'onnx' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- publish_model's choices (no Kafka) ----------------------------------------------------------


def test_rollback_and_promote_pick_from_the_topic_history():
    from tools.publish_model import promote_source, registry_state, rollback_target

    history = [("active", pkg(0)), ("active", pkg(1)), ("shadow", pkg(2, role="shadow")), ("active", pkg(1))]
    assert registry_state(history).active.version == "propensity-test-1"
    assert rollback_target(history).version == "propensity-test-0"
    assert promote_source(history, "propensity-test-2").role == "shadow"
    with pytest.raises(LookupError, match="compacted away"):
        rollback_target([("active", pkg(1))])
    with pytest.raises(LookupError, match="not in the topic"):
        promote_source(history, "propensity-test-9")
    promoted = promote_source(history, "propensity-test-2").as_role("active", "promote", 5, "t")
    state, ev = mr.transition(registry_state(history), "active", promoted)
    assert state.active.version == "propensity-test-2" and state.shadow is None and ev[0].kind == "promoted"
