"""Security settings: secrets stay out of config values, CLI flags, reprs and the Java properties."""

from pathlib import Path

import pytest

from flink_jobs.config import Config
from flink_jobs.security import (
    SecretError,
    cassandra_credentials,
    cassandra_ssl_context,
    kafka_java_properties,
    kafka_librdkafka_config,
    read_secret,
)
from flink_jobs.submit import config_flags

PASSWORD = "pw-Zq81-not-in-any-flag"


def secure_cfg(tmp_path: Path) -> Config:
    (tmp_path / "kafka-password").write_text(PASSWORD)
    (tmp_path / "cassandra-password").write_text(PASSWORD + "-c")
    (tmp_path / "ca.pem").write_text("not used by these tests")
    return Config.from_env({}, overrides=dict(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="pe",
        kafka_sasl_password_file=str(tmp_path / "kafka-password"),
        kafka_ssl_ca_file=str(tmp_path / "ca.pem"),
        cassandra_username="pe",
        cassandra_password_file=str(tmp_path / "cassandra-password"),
    ))


def test_plaintext_defaults_add_nothing():
    cfg = Config()
    assert kafka_java_properties(cfg) == {}
    assert kafka_librdkafka_config(cfg) == {}
    assert cassandra_credentials(cfg) is None and cassandra_ssl_context(cfg) is None


def test_secrets_are_in_no_config_value_flag_or_java_property(tmp_path):
    cfg = secure_cfg(tmp_path)
    visible = " ".join([repr(cfg), *config_flags(cfg), repr(kafka_java_properties(cfg))])
    assert PASSWORD not in visible
    # the clients that run here get the password itself, read from the file now
    assert kafka_librdkafka_config(cfg)["sasl.password"] == PASSWORD
    assert cassandra_credentials(cfg) == ("pe", PASSWORD + "-c")


def test_java_jaas_config_is_a_config_provider_reference_resolved_by_the_client(tmp_path):
    props = kafka_java_properties(secure_cfg(tmp_path))
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["config.providers.dir.class"].endswith("DirectoryConfigProvider")
    assert f'password="${{dir:{tmp_path}:kafka-password}}"' in props["sasl.jaas.config"]
    assert props["ssl.truststore.type"] == "PEM" and props["ssl.truststore.location"] == str(tmp_path / "ca.pem")


def test_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("PE_TEST_KAFKA_PW", PASSWORD)
    cfg = Config.from_env({}, overrides=dict(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="pe",
        kafka_sasl_password_file="env:PE_TEST_KAFKA_PW",
    ))
    assert "${env:PE_TEST_KAFKA_PW}" in kafka_java_properties(cfg)["sasl.jaas.config"]
    assert kafka_librdkafka_config(cfg)["sasl.password"] == PASSWORD


@pytest.mark.parametrize("content", ["pw\n", "", " pw"])
def test_a_secret_file_the_java_client_would_read_differently_is_rejected(tmp_path, content):
    f = tmp_path / "secret"
    f.write_text(content)
    with pytest.raises(SecretError) as err:
        read_secret(str(f))
    assert "pw" not in str(err.value).replace(str(tmp_path), "")


def test_unknown_protocol_and_missing_credentials_fail_early():
    with pytest.raises(ValueError):
        kafka_java_properties(Config(kafka_security_protocol="TLS"))
    with pytest.raises(ValueError):
        kafka_librdkafka_config(Config(kafka_security_protocol="SASL_SSL"))
    with pytest.raises(ValueError):
        kafka_java_properties(Config(kafka_security_protocol="SASL_SSL", kafka_sasl_username='x" y="z',
                                     kafka_sasl_password_file="env:X"))
