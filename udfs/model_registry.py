"""Model hot swap, the pure part: decode and validate a package from the compacted ``models`` topic
(``schemas/model_message.avsc``), a deterministic state machine over the active and shadow models, and
the versioned encoding of that state for the job's checkpoints. No pyflink.

Validation uses onnxruntime only, never the ``onnx`` package: importing ``onnx`` inside a thread-mode
Flink operator aborts the TaskManager (nanobind's PyGILState_Check), and this module runs there.

The operator's loop::

    state = decode_state(restored) if restored else RegistryState()
    state, events = apply(state, msg.key(), msg.value())   # every record of the models topic
    for e in events: log.log(e.level, e.log_line()); metrics[e.metric] += 1
    state.active  # ModelPackage or None (None: score with the file model)
    checkpoint: encode_state(state)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import onnxruntime as ort

from udfs import model_contract as mc
from udfs import schemas
from udfs.avro import AvroCodec
from udfs.features import FEATURE_NAMES, FEATURES_VERSION
from udfs.scorer import feature_mismatch

ROLES = ("active", "shadow")
ACTIONS = ("publish", "promote", "rollback")
STATE_VERSION: int = int(schemas.avro(schemas.MODEL_REGISTRY_STATE)["x-state-version"])
# Brokers refuse records over message.max.bytes (1 MiB by default); leave room for the envelope.
MAX_MODEL_BYTES = 900_000
_PROBE_TOL = 1e-4  # probabilities of one row must sum to 1 within this

_codec: Optional[AvroCodec] = None
_state_codec: Optional[AvroCodec] = None


def _message_codec() -> AvroCodec:
    global _codec
    if _codec is None:  # ints for timestamps: what the job sees, and no timezone round trip
        _codec = AvroCodec(schemas.MODEL_MESSAGE, logical_types=False)
    return _codec


def _registry_codec() -> AvroCodec:
    global _state_codec
    if _state_codec is None:
        _state_codec = AvroCodec(schemas.MODEL_REGISTRY_STATE, logical_types=False)
    return _state_codec


class InvalidModel(ValueError):
    """A model message that must not be used; the message is the reason (one line)."""


@dataclass(frozen=True)
class ModelPackage:
    """One published model: the fields of ``schemas/model_message.avsc``."""

    role: str
    action: str
    version: str
    created_at: int  # ms since the epoch
    published_at: int
    published_by: str
    features_version: int
    feature_names: tuple[str, ...]
    propensity_onnx: bytes
    segments_onnx: Optional[bytes]
    checksum: str

    def as_role(self, role: str, action: str, published_at: int, published_by: str) -> ModelPackage:
        """The same model sent again under another role/action (promote, rollback)."""
        return replace(self, role=role, action=action, published_at=published_at, published_by=published_by)

    def describe(self) -> str:
        seg = "with segments" if self.segments_onnx is not None else "no segments"
        return f"{self.version} ({self.role}, {len(self.propensity_onnx):,} B propensity, {seg}, {self.checksum[:19]})"

    def write_files(self, directory: str | Path) -> tuple[Path, Optional[Path]]:
        """The ONNX files under ``directory``, named by checksum, written atomically (a concurrent reader
        never sees half a file): (propensity path, segments path or None). For ``udfs.scorer.OnnxScorer``
        and ``udfs.segmenter.OnnxSegmenter``, which load from a path and re-check the contract."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tag = self.checksum.split(":")[-1][:16]
        paths = []
        for kind, blob in (("propensity", self.propensity_onnx), ("segments", self.segments_onnx)):
            if blob is None:
                paths.append(None)
                continue
            path = d / f"{kind}-{tag}.onnx"
            if not path.is_file() or path.read_bytes() != blob:
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_bytes(blob)
                tmp.replace(path)
            paths.append(path)
        return paths[0], paths[1]  # type: ignore[return-value]


def checksum(propensity: bytes, segments: Optional[bytes]) -> str:
    """``sha256:<hex>`` over each blob's 8-byte big-endian length and bytes (segments: empty when None);
    the lengths keep (a+b, c) and (a, b+c) apart."""
    h = hashlib.sha256()
    for blob in (propensity, segments or b""):
        h.update(len(blob).to_bytes(8, "big"))
        h.update(blob)
    return "sha256:" + h.hexdigest()


# --- encoding ------------------------------------------------------------------------------------


def encode_message(pkg: ModelPackage) -> bytes:
    return _message_codec().encode({
        "role": pkg.role, "action": pkg.action, "version": pkg.version, "created_at": pkg.created_at,
        "published_at": pkg.published_at, "published_by": pkg.published_by,
        "features_version": pkg.features_version, "feature_names": list(pkg.feature_names),
        "propensity_onnx": pkg.propensity_onnx, "segments_onnx": pkg.segments_onnx, "checksum": pkg.checksum,
    })


def decode_message(value: bytes) -> ModelPackage:
    """The package in ``value``; ``InvalidModel`` if it is no ModelMessage."""
    try:
        r = _message_codec().decode(value)
    except Exception as exc:  # fastavro raises EOFError, UnicodeDecodeError, SchemaResolutionError, ...
        raise InvalidModel(f"not a ModelMessage (schemas/{schemas.MODEL_MESSAGE}): "
                           f"{type(exc).__name__}: {exc}") from exc
    return ModelPackage(
        role=r["role"], action=r["action"], version=r["version"], created_at=int(r["created_at"]),
        published_at=int(r["published_at"]), published_by=r["published_by"],
        features_version=int(r["features_version"]), feature_names=tuple(r["feature_names"]),
        propensity_onnx=bytes(r["propensity_onnx"]),
        segments_onnx=None if r["segments_onnx"] is None else bytes(r["segments_onnx"]), checksum=r["checksum"],
    )


# --- validation ----------------------------------------------------------------------------------


def _session(blob: bytes, what: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 4  # the reason goes into InvalidModel, not a second log line
    try:
        return ort.InferenceSession(blob, sess_options=opts, providers=[mc.CPU])
    except Exception as exc:  # onnxruntime raises InvalidProtobuf, Fail, ... for corrupt graphs
        raise InvalidModel(f"{what} does not load in onnxruntime: {str(exc).splitlines()[0][:300]}") from exc


def probe_batch(n_features: int) -> np.ndarray:
    """Rows every model must score sanely: all zeros, all ones, and a mixed row with large counts (as
    late in a busy user's history)."""
    mixed = np.where(np.arange(n_features) % 3 == 0, 50.0, np.arange(n_features) % 2).astype(np.float32)
    return np.vstack([np.zeros(n_features), np.ones(n_features), mixed]).astype(np.float32)


def _check_metadata(sess: ort.InferenceSession, pkg: ModelPackage, what: str,
                    required: Sequence[str]) -> dict[str, str]:
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    missing = [k for k in required if k not in meta]
    if missing:
        raise InvalidModel(f"{what} metadata lacks {missing} (not exported by model_export)")
    try:
        names = json.loads(meta[mc.FEATURE_NAMES])
    except (KeyError, ValueError) as exc:
        raise InvalidModel(f"{what} metadata 'feature_names' is missing or not JSON") from exc
    diff = feature_mismatch(list(pkg.feature_names), names)
    if diff is not None:
        raise InvalidModel(f"{what} metadata feature_names differ from the message's: {diff}")
    inputs = sess.get_inputs()
    if len(inputs) != 1 or inputs[0].type != "tensor(float)":
        raise InvalidModel(f"{what} must take one float32 input, has {[(i.name, i.type) for i in inputs]}")
    width = inputs[0].shape[-1] if inputs[0].shape else None
    if isinstance(width, int) and width != len(FEATURE_NAMES):
        raise InvalidModel(f"{what} input takes {width} columns, the features are {len(FEATURE_NAMES)}")
    return meta


def _check_propensity(pkg: ModelPackage) -> None:
    sess = _session(pkg.propensity_onnx, "propensity model")
    meta = _check_metadata(sess, pkg, "propensity model", mc.PROPENSITY_REQUIRED)
    if meta[mc.MODEL_VERSION] != pkg.version:
        raise InvalidModel(f"message version {pkg.version!r} but the model says {meta[mc.MODEL_VERSION]!r}")
    try:
        mc.Decision.from_metadata(meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidModel(f"propensity model metadata 'decision' is unreadable: {exc}") from exc
    x = probe_batch(len(FEATURE_NAMES))
    names = [o.name for o in sess.get_outputs()]
    if mc.PROBABILITIES not in names:
        raise InvalidModel(f"propensity model has no '{mc.PROBABILITIES}' output: {names}")
    try:
        (p,) = sess.run([mc.PROBABILITIES], {sess.get_inputs()[0].name: x})
    except Exception as exc:
        raise InvalidModel(f"propensity model fails on the probe rows: {str(exc).splitlines()[0][:300]}") from exc
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (len(x), 2):
        raise InvalidModel(f"propensity model returns shape {p.shape} for {len(x)} probe rows, expected ({len(x)}, 2)")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1 or np.max(np.abs(p.sum(axis=1) - 1)) > _PROBE_TOL:
        raise InvalidModel(f"propensity model returns no probabilities on the probe rows: {p.round(4).tolist()}")


def _check_segments(pkg: ModelPackage) -> None:
    assert pkg.segments_onnx is not None
    sess = _session(pkg.segments_onnx, "segment model")
    meta = _check_metadata(sess, pkg, "segment model", (mc.MODEL_VERSION, mc.FEATURE_NAMES, mc.SEGMENT_K,
                                                        mc.SEGMENT_NAMES))
    try:
        k = int(meta[mc.SEGMENT_K])
        if k < 1 or len(json.loads(meta[mc.SEGMENT_NAMES])) != k:
            raise ValueError(f"k={k} and the segment names disagree")
    except (TypeError, ValueError) as exc:
        raise InvalidModel(f"segment model metadata is unreadable: {exc}") from exc
    x = probe_batch(len(FEATURE_NAMES))
    try:
        label, scores = sess.run([mc.SEGMENT_LABEL, mc.SEGMENT_SCORES], {sess.get_inputs()[0].name: x})
    except Exception as exc:
        raise InvalidModel(f"segment model fails on the probe rows: {str(exc).splitlines()[0][:300]}") from exc
    label = np.asarray(label).reshape(-1)
    if label.shape != (len(x),) or np.asarray(scores).shape != (len(x), k) or label.min() < 0 or label.max() >= k:
        raise InvalidModel(f"segment model returns labels {label.tolist()} / scores {np.asarray(scores).shape} "
                           f"for {len(x)} probe rows, expected labels in [0, {k}) and ({len(x)}, {k})")


def validate(pkg: ModelPackage) -> None:
    """Raise ``InvalidModel`` with the reason unless the package can replace the running model: checksum,
    size, the feature contract of ``schemas/features.json``, both graphs load in onnxruntime, and their
    outputs have the contract's shapes and ranges on probe rows. Cheapest checks first."""
    if pkg.role not in ROLES or pkg.action not in ACTIONS:
        raise InvalidModel(f"unknown role/action {pkg.role!r}/{pkg.action!r}")
    if not pkg.version:
        raise InvalidModel("empty version")
    size = len(pkg.propensity_onnx) + len(pkg.segments_onnx or b"")
    if size > MAX_MODEL_BYTES:
        raise InvalidModel(f"{size:,} bytes of ONNX is over the {MAX_MODEL_BYTES:,} the topic accepts")
    actual = checksum(pkg.propensity_onnx, pkg.segments_onnx)
    if actual != pkg.checksum:
        raise InvalidModel(f"checksum mismatch: message says {pkg.checksum}, bytes hash to {actual} (corrupted)")
    if pkg.features_version != FEATURES_VERSION:
        raise InvalidModel(f"features_version {pkg.features_version}, this job computes version {FEATURES_VERSION} "
                           "(schemas/features.json): retrain")
    diff = feature_mismatch(FEATURE_NAMES, list(pkg.feature_names))
    if diff is not None:
        raise InvalidModel(f"feature contract differs from schemas/features.json: {diff}")
    _check_propensity(pkg)
    if pkg.segments_onnx is not None:
        _check_segments(pkg)


def package_from_onnx(propensity: bytes, segments: Optional[bytes], role: str, published_at: int,
                      published_by: str, action: str = "publish") -> ModelPackage:
    """A package around exported ONNX bytes; version, contract and created_at come from the propensity
    model's metadata (read with onnxruntime). Not validated: call ``validate``."""
    meta = dict(_session(propensity, "propensity model").get_modelmeta().custom_metadata_map)
    try:
        names = tuple(json.loads(meta[mc.FEATURE_NAMES]))
        fv = int(meta[mc.FEATURES_VERSION])
        version = meta[mc.MODEL_VERSION]
    except (KeyError, ValueError) as exc:
        raise InvalidModel(f"propensity model metadata lacks the contract (model_version, feature_names, "
                           f"features_version): {exc}") from exc
    return ModelPackage(role, action, version, _iso_ms(meta.get(mc.CREATED_AT), published_at), published_at,
                        published_by, fv, names, propensity, segments, checksum(propensity, segments))


def _iso_ms(text: Optional[str], default: int) -> int:
    from datetime import datetime  # noqa: PLC0415 - only the publisher needs it

    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000) if text else default
    except ValueError:
        return default


# --- the state machine ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryState:
    """The active and the shadow model; None = none published (active None: the job keeps the model file
    it started with)."""

    active: Optional[ModelPackage] = None
    shadow: Optional[ModelPackage] = None


@dataclass(frozen=True)
class RegistryEvent:
    """What a message did. ``metric``: the counter the operator increments; ``log_line``: what it logs."""

    kind: str  # activated | promoted | rolled_back | shadow_set | shadow_cleared | unchanged | rejected
    role: str
    version: str
    previous: Optional[str] = None
    reason: str = ""

    @property
    def metric(self) -> str:
        return {"rejected": "models_rejected", "unchanged": "models_unchanged"}.get(self.kind, "model_swaps")

    @property
    def level(self) -> int:
        return logging.ERROR if self.kind == "rejected" else logging.INFO

    def log_line(self) -> str:
        if self.kind == "rejected":
            return (f"model REJECTED role={self.role} version={self.version}: {self.reason}; "
                    f"keeping {self.role} model {self.previous or '(none)'}")
        return f"model {self.kind} role={self.role} version={self.version} previous={self.previous or '(none)'}"


def _version(p: Optional[ModelPackage]) -> Optional[str]:
    return None if p is None else p.version


def transition(state: RegistryState, key: str, pkg: Optional[ModelPackage]) -> tuple[RegistryState,
                                                                                        list[RegistryEvent]]:
    """The next state for an already validated package (``pkg`` None: a tombstone under ``key``).
    Idempotent: a replayed message (restart, or a fresh job reading the compacted topic) changes nothing."""
    if pkg is None:
        if key == "shadow":
            if state.shadow is None:
                return state, [RegistryEvent("unchanged", "shadow", "(none)")]
            return replace(state, shadow=None), [RegistryEvent("shadow_cleared", "shadow", "(none)",
                                                               _version(state.shadow))]
        return state, [_rejected(state, key, "(none)", "a tombstone cannot remove the active model")]
    current = state.active if pkg.role == "active" else state.shadow
    if current is not None and current.version == pkg.version:
        if current.checksum != pkg.checksum:
            why = f"version reused with other bytes ({pkg.checksum[:19]} vs {current.checksum[:19]})"
            return state, [_rejected(state, pkg.role, pkg.version, why)]
        return state, [RegistryEvent("unchanged", pkg.role, pkg.version, pkg.version)]
    if pkg.role == "shadow":
        if _version(state.active) == pkg.version:
            return state, [_rejected(state, "shadow", pkg.version, "it is the active model: nothing to compare")]
        return replace(state, shadow=pkg), [RegistryEvent("shadow_set", "shadow", pkg.version, _version(state.shadow))]
    kind = {"publish": "activated", "promote": "promoted", "rollback": "rolled_back"}[pkg.action]
    events = [RegistryEvent(kind, "active", pkg.version, _version(state.active))]
    shadow = state.shadow
    if shadow is not None and shadow.version == pkg.version:  # promoted: the shadow is now the active one
        events.append(RegistryEvent("shadow_cleared", "shadow", "(none)", shadow.version))
        shadow = None
    return RegistryState(active=pkg, shadow=shadow), events


def _rejected(state: RegistryState, role: str, version: str, reason: str) -> RegistryEvent:
    return RegistryEvent("rejected", role, version, _version(state.active if role == "active" else state.shadow),
                         reason)


def apply(state: RegistryState, key: Optional[bytes], value: Optional[bytes],
          check: Callable[[ModelPackage], None] = validate) -> tuple[RegistryState, list[RegistryEvent]]:
    """One record of the models topic: decode, validate (``check``), transition. A message that fails
    anywhere leaves ``state`` as it was and yields one 'rejected' event with the reason."""
    role = (key or b"").decode("utf-8", "replace")
    if role not in ROLES:
        return state, [RegistryEvent("rejected", role or "(no key)", "?", None, f"key must be one of {ROLES}")]
    if value is None:
        return transition(state, role, None)
    try:
        pkg = decode_message(value)
        if pkg.role != role:
            raise InvalidModel(f"key {role!r} but the message's role is {pkg.role!r}")
        check(pkg)
    except InvalidModel as exc:
        version = _safe_version(value)
        return state, [_rejected(state, role, version, str(exc))]
    return transition(state, role, pkg)


def _safe_version(value: bytes) -> str:
    try:
        return decode_message(value).version
    except InvalidModel:
        return "?"


# --- checkpointed state --------------------------------------------------------------------------


def encode_state(state: RegistryState) -> bytes:
    """Versioned Avro (``schemas/model_registry_state.avsc``): each role's whole message, bytes included.
    About the size of the ONNX files plus ~300 bytes per role (12 KB per role for today's models)."""
    return _registry_codec().encode({
        "state_version": STATE_VERSION,
        "active": None if state.active is None else encode_message(state.active),
        "shadow": None if state.shadow is None else encode_message(state.shadow),
    })


def decode_state(data: bytes) -> RegistryState:
    """The state ``encode_state`` wrote. Raises ``ValueError`` for another state version or a corrupted
    checksum: a restore must never silently fall back to the file on disk."""
    r: dict[str, Any] = _registry_codec().decode(data)
    if r["state_version"] != STATE_VERSION:
        raise ValueError(f"model registry state version {r['state_version']}, this code reads {STATE_VERSION}")
    out: dict[str, Optional[ModelPackage]] = {}
    for role in ROLES:
        pkg = None if r[role] is None else decode_message(r[role])
        if pkg is not None and checksum(pkg.propensity_onnx, pkg.segments_onnx) != pkg.checksum:
            raise ValueError(f"checkpointed {role} model {pkg.version} fails its checksum")
        out[role] = pkg
    return RegistryState(active=out["active"], shadow=out["shadow"])
