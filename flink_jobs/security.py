"""Client security settings derived from the config: Kafka (Java clients in the job, librdkafka in
the tools) and the Cassandra driver.

Secrets are never config values (``submit.config_flags`` passes every config value on the ``flink
run`` command line). The config says only where a secret is: a file path, or ``env:NAME``. It is read
where the client is built:

- librdkafka and the Cassandra driver (tools, tests, the Python operator in the TaskManager) read it
  with :func:`read_secret` when they connect.
- The Java Kafka clients of the job get ``sasl.jaas.config`` with a Kafka config-provider reference
  (``${dir:/secrets:kafka-password}`` or ``${env:NAME}``) instead of the password. The client resolves
  it when it starts (kafka-clients ``AbstractConfig``, KIP-297/KIP-421), so the job graph, the web UI
  and the logs only ever hold the path or the variable name.

A password file holds exactly the password: the Java ``DirectoryConfigProvider`` takes the file's
bytes verbatim, so a trailing newline would become part of the password there. :func:`read_secret`
rejects such a file instead of guessing. Stdlib only (the deploy scripts and tools use it too).
"""

from __future__ import annotations

import os
from typing import Any

from flink_jobs.config import Config

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}
ENV_PREFIX = "env:"


class SecretError(ValueError):
    """A secret reference that cannot be used (never carries the secret itself)."""


def read_secret(ref: str, cfg: Config | None = None) -> str:
    """The secret behind ``ref``: ``env:NAME`` or a file path (relative to the repository root)."""
    if not ref:
        raise SecretError("no secret configured")
    if ref.startswith(ENV_PREFIX):
        name = ref[len(ENV_PREFIX):]
        value = os.environ.get(name)
        if not value:
            raise SecretError(f"environment variable {name} is not set or empty")
        return value
    path = (cfg or Config()).path(ref)
    try:
        value = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from None
    if not value:
        raise SecretError(f"secret file {path} is empty")
    if value != value.strip():
        # the Java clients read the file verbatim: a newline would be part of the password there
        raise SecretError(f"secret file {path} has leading/trailing whitespace (write it with printf '%s')")
    return value


def _check_kafka(cfg: Config) -> None:
    if cfg.kafka_security_protocol not in PROTOCOLS:
        raise ValueError(f"kafka_security_protocol must be one of {PROTOCOLS}, not {cfg.kafka_security_protocol!r}")
    if cfg.kafka_security_protocol.startswith("SASL"):
        if cfg.kafka_sasl_mechanism not in MECHANISMS:
            raise ValueError(f"kafka_sasl_mechanism must be one of {sorted(MECHANISMS)}")
        if not (cfg.kafka_sasl_username and cfg.kafka_sasl_password_file):
            raise ValueError("SASL needs kafka_sasl_username and kafka_sasl_password_file")
        if any(c in cfg.kafka_sasl_username for c in '"\\;'):
            raise ValueError("kafka_sasl_username must not contain quotes, backslashes or ';' (JAAS syntax)")


def _uses_tls(cfg: Config) -> bool:
    return cfg.kafka_security_protocol in ("SSL", "SASL_SSL")


def _jaas_reference(cfg: Config) -> tuple[str, dict[str, str]]:
    """(placeholder the Java client resolves to the password, the config provider it needs)."""
    ref = cfg.kafka_sasl_password_file
    if ref.startswith(ENV_PREFIX):
        provider = "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
        placeholder = "${env:" + ref[len(ENV_PREFIX):] + "}"
        return placeholder, {"config.providers": "env", "config.providers.env.class": provider}
    path = cfg.path(ref)
    read_secret(ref, cfg)  # fail at build time, not in every task: the file must exist and be clean
    provider = "org.apache.kafka.common.config.provider.DirectoryConfigProvider"
    return (
        "${dir:" + str(path.parent) + ":" + path.name + "}",
        {"config.providers": "dir", "config.providers.dir.class": provider},
    )


def kafka_java_properties(cfg: Config) -> dict[str, str]:
    """Security properties of the Java Kafka clients (the job's source and sinks). No secret in them."""
    _check_kafka(cfg)
    props: dict[str, str] = {}
    if cfg.kafka_security_protocol == "PLAINTEXT":
        return props
    props["security.protocol"] = cfg.kafka_security_protocol
    if _uses_tls(cfg):
        if cfg.kafka_ssl_ca_file:
            props["ssl.truststore.type"] = "PEM"  # Kafka Java clients read PEM trust stores (KIP-651)
            props["ssl.truststore.location"] = str(cfg.path(cfg.kafka_ssl_ca_file))
        props["ssl.endpoint.identification.algorithm"] = "https" if cfg.kafka_ssl_check_hostname else ""
    if cfg.kafka_security_protocol.startswith("SASL"):
        placeholder, providers = _jaas_reference(cfg)
        props.update(providers)
        props["sasl.mechanism"] = cfg.kafka_sasl_mechanism
        props["sasl.jaas.config"] = (
            f'{MECHANISMS[cfg.kafka_sasl_mechanism]} required username="{cfg.kafka_sasl_username}" '
            f'password="{placeholder}";'
        )
    return props


def kafka_librdkafka_config(cfg: Config) -> dict[str, Any]:
    """Security settings of confluent-kafka clients (tools, tests); reads the password now."""
    _check_kafka(cfg)
    conf: dict[str, Any] = {}
    if cfg.kafka_security_protocol == "PLAINTEXT":
        return conf
    conf["security.protocol"] = cfg.kafka_security_protocol.lower()
    if _uses_tls(cfg):
        if cfg.kafka_ssl_ca_file:
            conf["ssl.ca.location"] = str(cfg.path(cfg.kafka_ssl_ca_file))
        conf["ssl.endpoint.identification.algorithm"] = "https" if cfg.kafka_ssl_check_hostname else "none"
    if cfg.kafka_security_protocol.startswith("SASL"):
        conf["sasl.mechanism"] = cfg.kafka_sasl_mechanism
        conf["sasl.username"] = cfg.kafka_sasl_username
        conf["sasl.password"] = read_secret(cfg.kafka_sasl_password_file, cfg)
    return conf


def cassandra_ssl_context(cfg: Config) -> Any:
    """An ``ssl.SSLContext`` trusting ``cassandra_ssl_ca_file``, or None when TLS is off."""
    if not cfg.cassandra_ssl_ca_file:
        return None
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate chain
    ctx.load_verify_locations(cafile=str(cfg.path(cfg.cassandra_ssl_ca_file)))
    # the driver passes the contact point as server_hostname when check_hostname is on
    ctx.check_hostname = cfg.cassandra_ssl_check_hostname
    return ctx


def cassandra_credentials(cfg: Config) -> tuple[str, str] | None:
    """(user, password) for the driver's PlainTextAuthProvider, or None without a login."""
    if not cfg.cassandra_username:
        return None
    if not cfg.cassandra_password_file:
        raise ValueError("cassandra_username needs cassandra_password_file")
    return cfg.cassandra_username, read_secret(cfg.cassandra_password_file, cfg)

