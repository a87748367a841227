"""The pins of issue 11 agree wherever they are written: the broker feature levels (local format,
Kubernetes Job), the GPU runtime version (requirements-gpu.txt, job image), the CUDA library path of
the GPU image, and the connector's transactional-id strategy the Kafka 4 proof rests on."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from flink_jobs.config import ROOT
from tools.kafka_admin import pinned_features

K8S_KAFKA = ROOT / "deploy" / "k8s" / "kafka"
DOCKERFILE = ROOT / "deploy" / "image" / "Dockerfile"


def _features_job_env() -> dict[str, str]:
    doc = yaml.safe_load((K8S_KAFKA / "kafka-features-job.yaml").read_text(encoding="utf-8"))
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def test_pinned_features_parse_and_pin_transaction_version(tmp_path: Path) -> None:
    assert pinned_features() == {"transaction.version": 2}
    other = tmp_path / "f.properties"
    other.write_text("# comment\n\n  group.version = 1  # trailing\ntransaction.version=1\n")
    assert pinned_features(other) == {"group.version": 1, "transaction.version": 1}


def test_kubernetes_sets_the_same_transaction_version_as_the_local_broker() -> None:
    env = _features_job_env()
    assert pinned_features() == {env["FEATURE"]: int(env["LEVEL"])}
    (kafka,) = [d for d in yaml.safe_load_all((K8S_KAFKA / "kafka-cluster.yaml").read_text()) if d["kind"] == "Kafka"]
    spec = kafka["spec"]["kafka"]
    # the metadata version decides a new cluster's default feature levels: pinned to the broker's minor
    assert spec["metadataVersion"].startswith(".".join(spec["version"].split(".")[:2]) + "-IV")
    # the Job's image is the broker version
    job = (K8S_KAFKA / "kafka-features-job.yaml").read_text(encoding="utf-8")
    assert f"image: apache/kafka:{spec['version']}" in job


def test_the_job_keeps_the_connectors_incrementing_transactional_ids() -> None:
    """The proof that apache/flink-connector-kafka#321 cannot hit this job (README) assumes the default
    naming strategy (INCREMENTING: a new transactional id per checkpoint). POOLING reuses ids, whose
    epochs then grow by one per commit under transaction.version 2: choosing it reopens the risk."""
    src = (ROOT / "flink_jobs" / "connectors.py").read_text(encoding="utf-8")
    assert "set_transactional_id_prefix" in src
    assert not re.search(r"naming_strategy|NamingStrategy|POOLING", src)


def test_gpu_runtime_version_is_one_pin() -> None:
    req = (ROOT / "requirements-gpu.txt").read_text(encoding="utf-8")
    (pin,) = re.findall(r"^onnxruntime-gpu\[cuda,cudnn\]==([\d.]+)$", req, re.M)
    arg = re.search(r"^ARG ONNXRUNTIME_GPU_VERSION=([\d.]+)$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert arg and arg.group(1) == pin
    # the default venv stays CPU-only: onnxruntime-gpu would list CUDA on CPU hosts and make the
    # scorer read the graph with `onnx` inside the operator (README: aborts a thread-mode TaskManager)
    for name in ("requirements.txt", "requirements.lock"):
        text = (ROOT / name).read_text(encoding="utf-8")
        assert re.search(r"^onnxruntime==", text, re.M) and "onnxruntime-gpu" not in text, name


def test_gpu_image_library_path_is_the_cuda13_wheel_layout() -> None:
    env = re.search(r"^ENV LD_LIBRARY_PATH=(\S+)$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert env
    site = "/usr/local/lib/python3.11/site-packages/nvidia"
    # measured: onnxruntime-gpu 1.31.1[cuda,cudnn] installs nvidia/cu13/lib (cudart, cublas(Lt), cufft,
    # curand, nvrtc, nvJitLink) and nvidia/cudnn/lib; nothing else
    assert env.group(1).split(":") == [f"{site}/cu13/lib", f"{site}/cudnn/lib"]
