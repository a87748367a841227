"""The models a running profile operator scores with, and how a record of the models topic changes
them (issue 14). Pure: no pyflink. The operator (flink_jobs/model_control.py) only feeds records in,
logs and counts the events, and keeps ``state_bytes()`` in checkpointed keyed state.

- The registry state (active and shadow package, ``udfs.model_registry``) decides which models run;
  with no active package the job scores with the model files it started with.
- A package is written to ``model_dir`` (content-addressed files) and loaded into onnxruntime before
  the state moves on: a package that validates but does not load is rejected like an invalid one,
  and the models in use stay.
- The segment model is the active package's, or the start-up file's when the package carries none.
  That depends on the registry state alone, so a restore rebuilds exactly the models that ran.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from udfs import model_registry as mr
from udfs.engine import Score
from udfs.prediction import score_batch, score_only
from udfs.scorer import OnnxScorer
from udfs.segmenter import OnnxSegmenter


@dataclass(frozen=True)
class ControlRecord:
    """One record of the models topic as jvm/.../ControlRecordDeserializer hands it over."""

    key: Optional[bytes]
    value: Optional[bytes]  # None: a tombstone
    offset: int


def decode_control(body: Mapping[str, Any]) -> ControlRecord:
    """``{"key": text or null, "value": base64 or null, "offset": n}`` -> the record's bytes."""
    key, value = body["key"], body["value"]
    return ControlRecord(None if key is None else key.encode("utf-8"),
                         None if value is None else base64.b64decode(value, validate=True), int(body["offset"]))


@dataclass
class Update:
    """What one record did: the events to log and count, whether the registry state changed (write it
    to checkpointed state), and the time taken (validation and loading), in microseconds."""

    events: list[mr.RegistryEvent]
    changed: bool
    micros: int = 0
    versions: dict[str, Optional[str]] = field(default_factory=dict)


class LiveModels:
    """The active models (propensity + segments), the optional shadow propensity model, and the
    registry state they come from. ``score`` and ``shadow`` are what ``udfs.engine.process_batch``
    takes; they change only inside ``apply``/``restore``, i.e. between two batches."""

    def __init__(self, file_scorer: OnnxScorer, file_segmenter: OnnxSegmenter, model_dir: str | Path,
                 provider: str = "auto", check: Callable[[mr.ModelPackage], None] = mr.validate) -> None:
        self.file_scorer = file_scorer
        self.file_segmenter = file_segmenter
        self.model_dir = Path(model_dir)
        self.provider = provider
        self._check = check
        self._scorers: dict[str, OnnxScorer] = {}  # checksum -> loaded, for the packages in use
        self._segmenters: dict[str, OnnxSegmenter] = {}
        self.state = mr.RegistryState()
        self.scorer, self.segmenter, self.shadow_scorer = file_scorer, file_segmenter, None
        self.score: Score = functools.partial(score_batch, file_scorer, file_segmenter)
        self.shadow: Optional[Score] = None

    @classmethod
    def from_files(cls, model_file: str | Path, segments_file: str | Path, model_dir: str | Path,
                   provider: str = "auto") -> LiveModels:
        return cls(OnnxScorer(str(model_file), provider=provider), OnnxSegmenter(str(segments_file), provider=provider),
                   model_dir, provider)

    # --- records and restores ------------------------------------------------------------------

    def apply(self, record: ControlRecord) -> Update:
        """One record of the models topic (validated here: 10-20 ms for a valid model)."""
        t0 = time.perf_counter()
        new, events = mr.apply(self.state, record.key, record.value, self._check)
        changed = new is not self.state
        if changed:
            try:
                self._use(new)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises bare Fail/RuntimeError variants
                events = [self._load_failure(events[0], exc)]
                changed = False
        return Update(events, changed, int((time.perf_counter() - t0) * 1e6), self.versions())

    def restore(self, data: bytes) -> None:
        """The registry state of a checkpoint (``state_bytes`` of the job that wrote it). Raises if it
        cannot be read or its models do not load: a restore must never fall back to the files."""
        self._use(mr.decode_state(data))

    def state_bytes(self) -> bytes:
        return mr.encode_state(self.state)

    def versions(self) -> dict[str, Optional[str]]:
        """The versions in use (logged after a change)."""
        return {"active": self.scorer.model_version, "segments": self.segmenter.model_version,
                "shadow": None if self.shadow_scorer is None else self.shadow_scorer.model_version}

    # --- loading -------------------------------------------------------------------------------

    def _use(self, state: mr.RegistryState) -> None:
        """Load the models of ``state``, then switch to them (all or nothing)."""
        scorer, segmenter = self.file_scorer, self.file_segmenter
        if state.active is not None:
            scorer = self._scorer(state.active)
            if state.active.segments_onnx is not None:
                segmenter = self._segmenter(state.active)
        shadow = None if state.shadow is None else self._scorer(state.shadow)
        self.state, self.scorer, self.segmenter, self.shadow_scorer = state, scorer, segmenter, shadow
        self.score = functools.partial(score_batch, scorer, segmenter)
        self.shadow = None if shadow is None else functools.partial(score_only, shadow)
        in_use = {p.checksum for p in (state.active, state.shadow) if p is not None}
        self._scorers = {c: s for c, s in self._scorers.items() if c in in_use}
        self._segmenters = {c: s for c, s in self._segmenters.items() if c in in_use}

    def _scorer(self, pkg: mr.ModelPackage) -> OnnxScorer:
        if pkg.checksum not in self._scorers:  # a promoted shadow is loaded already
            path, _ = pkg.write_files(self.model_dir)
            self._scorers[pkg.checksum] = OnnxScorer(str(path), provider=self.provider)
        return self._scorers[pkg.checksum]

    def _segmenter(self, pkg: mr.ModelPackage) -> OnnxSegmenter:
        if pkg.checksum not in self._segmenters:
            _, path = pkg.write_files(self.model_dir)
            self._segmenters[pkg.checksum] = OnnxSegmenter(str(path), provider=self.provider)
        return self._segmenters[pkg.checksum]

    def _load_failure(self, event: mr.RegistryEvent, exc: Exception) -> mr.RegistryEvent:
        current = self.state.active if event.role == "active" else self.state.shadow
        reason = f"valid, but it does not load here: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return mr.RegistryEvent("rejected", event.role, event.version,
                                None if current is None else current.version, reason)
