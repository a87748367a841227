"""Refuse to restore keyed state written by an incompatible job (jvm/.../StateGuard.java).

A thread-mode snapshot restored in process mode gives EMPTY Python keyed state without an error, a
profile state written with another layout version cannot be read, and state keyed another way (the
state buckets of releases before per-user keys) would look each user up under the wrong key (an
empty profile). The guard stores a fingerprint of these in every checkpoint and fails the job for
good when a restore's fingerprint differs. Parallelism is not part of it: state rescales.
"""

from __future__ import annotations

from pyflink.datastream import DataStream
from pyflink.java_gateway import get_gateway

from flink_jobs.config import Config

UID = "state-guard"


def fingerprint(cfg: Config) -> str:
    """What the keyed state's readability depends on. Read at call time, so a release with a new
    state version changes it."""
    from udfs import profile

    # key=user: one keyed-state entry per user (the key groups themselves are Flink's business)
    return f"python.execution-mode={cfg.execution_mode};profile-state=v{profile.STATE_VERSION};key=user"


def guard(stream: DataStream, cfg: Config) -> DataStream:
    """``stream`` unchanged, through the guard (chained to its producer: no extra hop)."""
    j_stream = stream._j_data_stream
    fn = get_gateway().jvm.dev.profileengine.glue.StateGuard(fingerprint(cfg))
    j_out = j_stream.process(fn, j_stream.getType())
    j_out.name("state guard").uid(UID)
    return DataStream(j_out)
