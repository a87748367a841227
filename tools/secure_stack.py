"""Helpers of the secure local stack (README "Security").

    python -m tools.secure_stack env               # `export PE_...` lines: TLS + SASL/login, secrets in .run/secrets
    python -m tools.secure_stack cassandra-ready   # deploy/cassandra.sh health check; first start: create the role

``cassandra-ready`` logs in as the configured role over TLS; on a fresh node (only the default
cassandra/cassandra superuser exists) it creates the role as a superuser with the password from its
file or environment variable and disables the default login. Prints the release version.
"""

from __future__ import annotations

import secrets
import shlex
import sys
from collections.abc import Sequence

from flink_jobs.config import Config


def secure_env(cfg: Config) -> dict[str, str]:
    """Security settings of the local secure stack; secrets under <run_dir>/secrets (created by the deploy
    scripts when missing)."""
    secrets_dir = f"{cfg.run_dir}/secrets"
    return {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "profile-engine",
        "kafka_sasl_password_file": f"{secrets_dir}/kafka-password",
        "kafka_ssl_ca_file": f"{secrets_dir}/ca.pem",
        "cassandra_username": "profile_engine",
        "cassandra_password_file": f"{secrets_dir}/cassandra-password",
        "cassandra_ssl_ca_file": f"{secrets_dir}/ca.pem",
    }


def _cql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def cassandra_ready(cfg: Config) -> str:
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    from flink_jobs.cassandra_store import connect
    from flink_jobs.security import cassandra_credentials

    def version(c: Config) -> str:
        cluster, session = connect(c, timeout_s=5)
        try:
            return session.execute("SELECT release_version FROM system.local", timeout=5).one().release_version
        finally:
            cluster.shutdown()

    try:
        return version(cfg)
    except NoHostAvailable as exc:
        refused = any(isinstance(e, AuthenticationFailed) for e in exc.errors.values())
        if not (refused and cfg.cassandra_username):
            raise
    # a fresh node: only the default superuser can log in
    user, password = cassandra_credentials(cfg) or ("", "")
    cluster, session = connect(cfg, timeout_s=10, credentials=("cassandra", "cassandra"))  # the documented default
    try:
        session.execute(
            f'CREATE ROLE IF NOT EXISTS "{user}" WITH PASSWORD = {_cql_literal(password)} '
            "AND LOGIN = true AND SUPERUSER = true",
            timeout=30,
        )
    finally:
        cluster.shutdown()
    cluster, session = connect(cfg, timeout_s=10)
    try:  # nobody keeps the well-known default login
        session.execute(
            f"ALTER ROLE cassandra WITH PASSWORD = {_cql_literal(secrets.token_hex(24))} AND LOGIN = false",
            timeout=30,
        )
    finally:
        cluster.shutdown()
    return version(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["env"]:
        for name, value in secure_env(Config.from_env()).items():
            print(f"export {Config.env_var(name)}={shlex.quote(value)}")
        return 0
    if args == ["cassandra-ready"]:
        print(cassandra_ready(Config.from_env()))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
