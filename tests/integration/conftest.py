"""Integration fixtures: the real local stack must be up (`make test` starts it; `make up` by hand).
Each test module gets its own topics, consumer group and keyspace, so runs never see each other's
data, and its own job, cancelled afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flink_jobs import submit
from flink_jobs.cassandra_store import create_schema
from flink_jobs.config import Config
from tools.kafka_io import admin, all_topics, create_model_topics, create_topics

DATA = Path(__file__).resolve().parents[1] / "data"


def _stack_up(cfg: Config) -> None:
    try:
        submit.rest(cfg, "/overview")
        admin(cfg).list_topics(timeout=5)
    except Exception as exc:  # a missing stack is a failure, never a skip
        pytest.fail(f"the local stack is not up ({exc}); run `make test` or `make up` first")


@contextlib.contextmanager
def isolated(**overrides: object) -> Iterator[Config]:
    """A config with its own topics, consumer group and keyspace, created now, dropped after."""
    base = Config.from_env()
    _stack_up(base)
    tag = uuid.uuid4().hex[:8]
    values: dict[str, object] = dict(
        topic_events=f"it-{tag}-user-events",
        topic_predictions=f"it-{tag}-user-predictions",
        topic_dlq=f"it-{tag}-user-events-dlq",
        topic_late=f"it-{tag}-user-events-late",
        topic_models=f"it-{tag}-models",
        topic_shadow_scores=f"it-{tag}-shadow-scores",
        consumer_group=f"it-{tag}",
        cassandra_keyspace=f"it_{tag}",
        checkpoint_interval_ms=2000,
    )
    values.update(overrides)
    cfg = Config.from_env(overrides=values)
    create_topics(cfg)
    create_model_topics(cfg)  # the job reads its models topic: each test module gets its own
    create_schema(cfg)
    try:
        yield cfg
    finally:
        # wait for the deletion: an unawaited request can die with its client, leaking the topics
        client = admin(cfg)
        topics = [*all_topics(cfg), cfg.topic_models, cfg.topic_shadow_scores]
        for fut in client.delete_topics(topics, operation_timeout=30).values():
            fut.result()


@contextlib.contextmanager
def job(cfg: Config) -> Iterator[str]:
    """The profile job submitted with ``cfg``; cancelled afterwards."""
    job_id = submit.submit(cfg)
    try:
        yield job_id
    finally:
        try:
            submit.cancel(cfg, job_id)
        except Exception as exc:  # report, but let the test result stand
            print(f"cancel of {job_id} failed: {exc}")


@pytest.fixture(scope="module")
def isolated_cfg() -> Iterator[Config]:
    with isolated() as cfg:
        yield cfg


@pytest.fixture(scope="module")
def running_job(isolated_cfg: Config) -> Iterator[str]:
    with job(isolated_cfg) as job_id:
        yield job_id
