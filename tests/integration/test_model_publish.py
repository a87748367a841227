"""tools.publish_model against the real broker (Kafka only): topic setup, publish, shadow, promote,
rollback and refusal, read back as the job's state machine will read them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import ConfigResource

from flink_jobs.config import Config
from tests.unit.test_model_registry import propensity
from tools import publish_model
from tools.kafka_io import admin, create_model_topics, end_offsets

pytestmark = pytest.mark.integration


@pytest.fixture
def cfg() -> Iterator[Config]:
    tag = uuid.uuid4().hex[:8]
    cfg = Config.from_env(overrides={"topic_models": f"it-{tag}-models", "topic_shadow_scores": f"it-{tag}-shadow"})
    try:
        admin(cfg).list_topics(timeout=5)
    except Exception as exc:  # a missing stack is a failure, never a skip
        pytest.fail(f"Kafka is not up ({exc}); run `make up` first")
    assert sorted(create_model_topics(cfg)) == sorted([cfg.topic_models, cfg.topic_shadow_scores])
    yield cfg
    client = admin(cfg)  # must outlive its futures
    for fut in client.delete_topics([cfg.topic_models, cfg.topic_shadow_scores], operation_timeout=30).values():
        fut.result()


def _run(cfg: Config, *argv: str) -> int:
    return publish_model.main([*argv, "--topic-models", cfg.topic_models, "--kafka-bootstrap", cfg.kafka_bootstrap])


def test_models_topic_is_compacted_single_partition(cfg):
    res = ConfigResource(ConfigResource.Type.TOPIC, cfg.topic_models)
    client = admin(cfg)  # must outlive its futures
    conf = client.describe_configs([res])[res].result()
    assert conf["cleanup.policy"].value == "compact"
    assert list(end_offsets(cfg, cfg.topic_models)) == [0]


def test_publish_shadow_promote_rollback(cfg, tmp_path):
    other = tmp_path / "other.onnx"
    other.write_bytes(propensity(7))
    assert _run(cfg, str(cfg.model_file)) == 0
    first = publish_model.registry_state(publish_model.read_history(cfg)).active.version
    assert _run(cfg, str(other), "--shadow", "--no-segments") == 0
    state = publish_model.registry_state(publish_model.read_history(cfg))
    assert (state.active.version, state.shadow.version) == (first, "propensity-test-7")

    assert _run(cfg, "--promote", "propensity-test-7") == 0
    state = publish_model.registry_state(publish_model.read_history(cfg))
    assert state.active.version == "propensity-test-7" and state.shadow is None

    assert _run(cfg, "--rollback") == 0
    history = publish_model.read_history(cfg)
    assert publish_model.registry_state(history).active.version == first
    assert [(k, p.action if p else None) for k, p in history] == [
        ("active", "publish"), ("shadow", "publish"), ("active", "promote"), ("shadow", None), ("active", "rollback")]


def test_invalid_model_is_refused_and_nothing_is_sent(cfg, tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert _run(cfg, str(bad), "--no-segments") == 2
    assert "REFUSED" in capsys.readouterr().err
    assert sum(end_offsets(cfg, cfg.topic_models).values()) == 0
