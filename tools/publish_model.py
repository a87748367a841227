"""Publish a model to the running job through the compacted models topic (key = role).

    python -m tools.publish_model [PATH] [--segments PATH | --no-segments] [--shadow] [--dry-run]
    python -m tools.publish_model --promote VERSION     # a published model (the shadow, say) becomes active
    python -m tools.publish_model --rollback [VERSION]  # the previous active model (or VERSION) again
    python -m tools.publish_model --clear-shadow        # stop shadow scoring
    python -m tools.publish_model --status              # what the job will run, from the topic

PATH defaults to the config's model file; its segment model (segments.onnx next to it) goes along
unless --no-segments. Every package is validated here with the job's own checks
(``udfs.model_registry.validate``) before anything is sent: an invalid one is refused with the reason
(exit 2). Promote and rollback republish a package the topic still holds (compaction keeps every
version at least 30 days: ``tools.kafka_io.MODEL_TOPIC_CONFIG``); older ones: publish the file again.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from flink_jobs.config import Config, cli
from udfs import model_registry as mr

History = list[tuple[str, Optional[mr.ModelPackage]]]  # (key, package or None for a tombstone), topic order


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()} tools.publish_model"


def now_ms() -> int:
    return int(time.time() * 1000)


def package_from_files(path: Path, segments: Optional[Path], role: str) -> mr.ModelPackage:
    seg = segments.read_bytes() if segments is not None else None
    return mr.package_from_onnx(path.read_bytes(), seg, role, now_ms(), who())


def registry_state(history: History) -> mr.RegistryState:
    """What the job ends up with after reading ``history`` (the same state machine and checks)."""
    state = mr.RegistryState()
    for key, pkg in history:
        state, _ = mr.apply(state, key.encode(), None if pkg is None else mr.encode_message(pkg))
    return state


def promote_source(history: History, version: str) -> mr.ModelPackage:
    """The latest package of ``version`` in the topic (any role), to be republished as active."""
    for _, pkg in reversed(history):
        if pkg is not None and pkg.version == version:
            return pkg
    raise LookupError(f"version {version} is not in the topic (compacted away?): publish its file instead")


def rollback_target(history: History, version: Optional[str] = None) -> mr.ModelPackage:
    """The package to make active again: ``version`` if given, else the latest active one before the
    current active model whose version differs from it."""
    current = registry_state(history).active
    if current is None:
        raise LookupError("no active model in the topic: nothing to roll back")
    for key, pkg in reversed(history):
        if key != "active" or pkg is None or pkg.version == current.version:
            continue
        if version is None or pkg.version == version:
            return pkg
    want = f"version {version}" if version else f"an active version before {current.version}"
    raise LookupError(f"{want} is not in the topic (compacted away?): publish its file instead")


# --- Kafka ---------------------------------------------------------------------------------------


def read_history(cfg: Config, timeout_s: float = 20.0) -> History:
    """Every retained record of the models topic, in order (one partition). Undecodable values are
    kept as they would reach the job: the state machine rejects them."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from tools.kafka_io import consumer, end_offsets

    ends = end_offsets(cfg, cfg.topic_models)
    out: History = []
    if not any(ends.values()):
        return out
    c = consumer(cfg)
    try:
        c.assign([TopicPartition(cfg.topic_models, p, OFFSET_BEGINNING) for p in ends])
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends) and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            key = (msg.key() or b"").decode("utf-8", "replace")
            value = msg.value()
            try:
                out.append((key, None if value is None else mr.decode_message(value)))
            except mr.InvalidModel as exc:
                print(f"[publish] skipping offset {msg.offset()}: {exc}", file=sys.stderr)
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        if len(done) < len(ends):
            raise TimeoutError(f"{cfg.topic_models}: not read to its end within {timeout_s:.0f} s")
    finally:
        c.close()
    return out


def send(cfg: Config, key: str, pkg: Optional[mr.ModelPackage]) -> str:
    """Produce one record and wait for the broker's ack; returns 'topic[partition]@offset'."""
    from tools.kafka_io import producer

    result: dict[str, object] = {}

    def on_delivery(err: object, msg: object) -> None:
        result["err"], result["msg"] = err, msg

    p = producer(cfg, **{"linger.ms": 0, "compression.type": "none"})
    p.produce(cfg.topic_models, key=key.encode(), value=None if pkg is None else mr.encode_message(pkg),
              on_delivery=on_delivery)
    p.flush(30)
    if result.get("err") is not None or "msg" not in result:
        raise RuntimeError(f"not delivered to {cfg.topic_models}: {result.get('err', 'no ack within 30 s')}")
    msg = result["msg"]
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"


# --- CLI -----------------------------------------------------------------------------------------


def _args(argv: Optional[Sequence[str]]) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", type=Path, help="propensity ONNX (default: the config's model file)")
    parser.add_argument("--segments", type=Path, default=None,
                        help="segment ONNX (default: segments.onnx next to the model, if there)")
    parser.add_argument("--no-segments", action="store_true", help="publish without a segment model")
    parser.add_argument("--shadow", action="store_true", help="publish as the shadow model (scored, not served)")
    parser.add_argument("--promote", metavar="VERSION", help="make a published VERSION the active model")
    parser.add_argument("--rollback", nargs="?", const="", metavar="VERSION",
                        help="make the previous active model (or VERSION) active again")
    parser.add_argument("--clear-shadow", action="store_true", help="stop shadow scoring (tombstone under 'shadow')")
    parser.add_argument("--status", action="store_true", help="print the active and shadow models the topic defines")
    parser.add_argument("--dry-run", action="store_true", help="validate and print; send nothing")
    return cli(parser, argv, groups=("kafka", "topics", "model"))


def _plan(cfg: Config, a: argparse.Namespace) -> list[tuple[str, Optional[mr.ModelPackage]]]:
    """The records to send, validated; raises InvalidModel / LookupError with the reason."""
    if a.promote or a.rollback is not None:
        history = read_history(cfg)
        if a.promote:
            src = promote_source(history, a.promote)
            pkg = src.as_role("active", "promote", now_ms(), who())
        else:
            src = rollback_target(history, a.rollback or None)
            pkg = src.as_role("active", "rollback", now_ms(), who())
        mr.validate(pkg)
        plan: list[tuple[str, Optional[mr.ModelPackage]]] = [("active", pkg)]
        shadow = registry_state(history).shadow
        if shadow is not None and shadow.version == pkg.version:
            plan.append(("shadow", None))  # the shadow is now active: stop comparing it with itself
        return plan
    if a.clear_shadow:
        return [("shadow", None)]
    path = a.path or cfg.model_file
    seg = None if a.no_segments else (a.segments or cfg.segments_file)
    if seg is not None and a.segments is None and not Path(seg).is_file():
        seg = None
    role = "shadow" if a.shadow else "active"
    pkg = package_from_files(Path(path), None if seg is None else Path(seg), role)
    mr.validate(pkg)
    return [(role, pkg)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    cfg, args = _args(argv)
    if args.status:
        state = registry_state(read_history(cfg))
        for role in mr.ROLES:
            pkg = getattr(state, role)
            print(f"{role:<7} {pkg.describe() if pkg else '(none: the job scores with its model file)'}")
        return 0
    try:
        plan = _plan(cfg, args)
    except (mr.InvalidModel, LookupError, OSError) as exc:
        print(f"[publish] REFUSED: {exc}", file=sys.stderr)
        return 2
    for key, pkg in plan:
        what = f"tombstone (clear {key})" if pkg is None else f"{pkg.action} {pkg.describe()}"
        if args.dry_run:
            print(f"[publish] dry run, valid: would send {what} to {cfg.topic_models} key={key}")
            continue
        print(f"[publish] sent {what} -> {send(cfg, key, pkg)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
