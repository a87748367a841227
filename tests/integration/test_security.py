"""Kafka over SASL_SSL (SCRAM-SHA-512) and Cassandra with a login and TLS, started by the deploy
scripts next to the plaintext stack (same address, own ports and state), with the job of the normal
Flink cluster connected through them. Plaintext and anonymous clients are refused; the job computes
exactly what the offline replay computes; its password is nowhere in the job's REST config, the Flink
logs or the `flink run` command line."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cassandra import AuthenticationFailed
from cassandra.cluster import NoHostAvailable
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from flink_jobs import submit
from flink_jobs.cassandra_store import connect
from flink_jobs.config import ROOT, Config
from tools import replay
from tools.kafka_io import client_config, collect
from udfs import schemas

from .conftest import isolated, job
from .drills import assert_exact, decode, offline

N_EVENTS = 3000
SCRIPTS = ("kafka.sh", "cassandra.sh")


def _secure_overrides(secrets: Path) -> dict[str, object]:
    """The secure servers: the plaintext stack's address, ports + 100, secrets in ``secrets``."""
    base = Config.from_env()
    host = base.kafka_bootstrap.split(",")[0].rsplit(":", 1)[0]
    return dict(
        kafka_bootstrap=f"{host}:{int(base.kafka_bootstrap.rsplit(':', 1)[1]) + 100}",
        kafka_controller_port=base.kafka_controller_port + 100,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="profile-engine",
        kafka_sasl_password_file=str(secrets / "kafka-password"),
        kafka_ssl_ca_file=str(secrets / "ca.pem"),
        cassandra_hosts=base.cassandra_contact_points[0],
        cassandra_port=base.cassandra_port + 100,
        cassandra_storage_port=base.cassandra_storage_port + 100,
        cassandra_heap_mb=512,
        cassandra_username="profile_engine",
        cassandra_password_file=str(secrets / "cassandra-password"),
        cassandra_ssl_ca_file=str(secrets / "ca.pem"),
    )


def _env(overrides: dict[str, object]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({Config.env_var(k): str(v) for k, v in overrides.items()})
    return env


def _deploy(script: str, action: str, env: dict[str, str], errors: list[str]) -> None:
    proc = subprocess.run(["bash", str(ROOT / "deploy" / script), action], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        errors.append(f"deploy/{script} {action} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def _all(action: str, env: dict[str, str]) -> None:
    """Both scripts side by side (Cassandra is the slow one)."""
    errors: list[str] = []
    threads = [threading.Thread(target=_deploy, args=(s, action, env, errors)) for s in SCRIPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Fresh secure Kafka + Cassandra (new CA, generated passwords); stopped and deleted afterwards."""
    secrets = tmp_path_factory.mktemp("secrets")
    overrides = _secure_overrides(secrets)
    env = _env(overrides)
    run = Config.from_env().run_path
    for d in ("kafka-secure", "cassandra-secure"):
        shutil.rmtree(run / d, ignore_errors=True)
    t0 = time.monotonic()
    try:
        _all("start", env)
        print(f"\nsecure Kafka + Cassandra up in {time.monotonic() - t0:.0f} s")
        yield overrides
    finally:
        _all("stop", env)
        for d in ("kafka-secure", "cassandra-secure"):
            shutil.rmtree(run / d, ignore_errors=True)


@pytest.fixture(scope="module")
def secure_cfg(secure: dict[str, object]) -> Iterator[Config]:
    with isolated(**secure) as cfg:
        yield cfg


def _password(cfg: Config) -> str:
    return Path(cfg.kafka_sasl_password_file).read_text()


def test_plaintext_and_wrong_credentials_are_refused_by_kafka(secure_cfg: Config):
    delivered: list[object] = []
    quiet = {"log_level": 0}  # these clients fail on purpose: keep their retry lines out of the output
    plain = Producer({"bootstrap.servers": secure_cfg.kafka_bootstrap, "message.timeout.ms": 5000, **quiet})
    plain.produce(secure_cfg.topic_events, b"plaintext", on_delivery=lambda err, msg: delivered.append(err))
    plain.flush(10)
    assert len(delivered) == 1 and delivered[0] is not None, "a plaintext producer could write"
    wrong = Path(secure_cfg.kafka_sasl_password_file).with_name("wrong-password")
    wrong.write_text("not-the-password")
    bad = Config.from_env(overrides={**secure_cfg.as_dict(), "kafka_sasl_password_file": str(wrong)})
    with pytest.raises(KafkaException):
        AdminClient({**client_config(bad), "socket.timeout.ms": 3000, **quiet}).list_topics(timeout=8)


def test_kraft_controller_listener_wants_a_client_certificate(secure_cfg: Config):
    """Brokers cannot use SCRAM towards controllers: the controller listener is mutual TLS instead."""
    ctx = ssl.create_default_context(cafile=secure_cfg.kafka_ssl_ca_file)  # trusts the server, has no cert
    host = secure_cfg.kafka_bootstrap.rsplit(":", 1)[0]
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with ctx.wrap_socket(socket.create_connection((host, secure_cfg.kafka_controller_port), timeout=5),
                             server_hostname=host) as tls:
            tls.sendall(b"\x00\x00\x00\x10" + b"\x00" * 16)  # TLS 1.3 reports the refusal on first use
            if not tls.recv(16):
                raise ConnectionError("closed")
    with socket.create_connection((host, secure_cfg.kafka_controller_port), timeout=5) as plain:
        plain.sendall(b"\x00\x00\x00\x10" + b"\x00" * 16)
        try:
            answer = plain.recv(16)
        except ConnectionError:
            answer = b""
        assert answer == b"" or answer.startswith(b"\x15"), "the controller answered a plaintext request"


def test_anonymous_plaintext_and_default_logins_are_refused_by_cassandra(secure_cfg: Config):
    def refused(cfg: Config, credentials: tuple[str, str] | None = None) -> bool:
        try:
            cluster, _ = connect(cfg, timeout_s=5, credentials=credentials)
        except NoHostAvailable:
            return True
        cluster.shutdown()
        return False

    anonymous = Config.from_env(overrides={**secure_cfg.as_dict(), "cassandra_username": ""})
    with pytest.raises(NoHostAvailable) as err:
        connect(anonymous, timeout_s=5)
    assert any(isinstance(e, AuthenticationFailed) for e in err.value.errors.values())
    assert refused(secure_cfg, credentials=("cassandra", "cassandra")), "the default superuser can log in"
    no_tls = Config.from_env(overrides={**secure_cfg.as_dict(), "cassandra_ssl_ca_file": ""})
    assert refused(no_tls), "a plaintext connection was accepted"
    cluster, session = connect(secure_cfg, timeout_s=10)  # and the configured login works
    cluster.shutdown()


def test_job_runs_through_tls_and_sasl_and_its_password_leaks_nowhere(secure_cfg: Config):
    cfg = secure_cfg
    events = replay.load(cfg, "taobao-head", N_EVENTS)
    with job(cfg) as job_id:
        replay.publish(cfg, events, progress=False)
        preds = collect(cfg, cfg.topic_predictions, len(events), timeout_s=180, settle_s=3)
        job_config = submit.rest(cfg, f"/jobs/{job_id}/config")
        plan = submit.rest(cfg, f"/jobs/{job_id}/plan")
    assert len(preds) == len(events)
    assert_exact(cfg, offline(cfg, events), decode(preds, schemas.PREDICTION))  # Cassandra rows too

    secrets = {_password(cfg), Path(cfg.cassandra_password_file).read_text()}
    visible = {
        "REST /jobs/<id>/config": repr(job_config),
        "REST /jobs/<id>/plan": repr(plan),
        "flink run command line": " ".join(submit.config_flags(cfg)),
    }
    # the Flink logs, and the secure servers' own logs (their storage format, startup config dumps)
    for d in ("flink/log", "kafka-secure/logs", "cassandra-secure/logs"):
        for f in (cfg.run_path / d).glob("*"):
            if f.is_file():
                visible[f"{d}/{f.name}"] = f.read_text(errors="replace")
    for where, text in visible.items():
        for secret in secrets:
            assert secret not in text, f"a password is in {where}"
    # the job's Kafka clients did authenticate with SCRAM: a config-provider reference, resolved by them
    tm_logs = "".join(v for k, v in visible.items() if "taskexecutor" in k)
    assert "sasl.mechanism = SCRAM-SHA-512" in tm_logs and "sasl.jaas.config = [hidden]" in tm_logs
