"""Token-aware, DC-aware routing of the Cassandra sink (issue 11), on the stack's Cassandra: the sink's
own session and statement code (jvm/.../TokenAwareRoutingCheck.java, from the shaded glue jar `make
jars` built, on a TaskManager's classpath) checks that the driver runs its default policy with the
configured local DC, that every bound statement carries a routing key, and that the query plan's first
node and the coordinator of every write are the token map's replica of the row's partition.

One node makes the replica check trivially true; what it proves here is the policy, the local DC and
the routing keys. The replica check with teeth runs on a 3-node ring: `make ring-check` (opt-in,
figures in docs/OPERATIONS.md "Cassandra client conventions")."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from flink_jobs.config import ROOT, Config

from .conftest import _stack_up

JVM = ROOT / "jvm"
M2 = Path.home() / ".m2" / "repository"
RING_PORT_OFFSET = 100  # deploy/cassandra_ring.sh: the ring's CQL port is PE_CASSANDRA_PORT + 100


def routing_check_cmd(cfg: Config, hosts: str, port: int) -> list[str]:
    """java running TokenAwareRoutingCheck.main from the shaded glue jar + the test classes, with the
    JUnit assertion jars and PyFlink's lib/ (flink-dist), as a TaskManager would see the glue."""
    glue = sorted((JVM / "target").glob("profile-engine-glue-*.jar"))
    glue = [j for j in glue if not j.name.startswith("original-")]
    assert glue and (JVM / "target" / "test-classes").is_dir(), "run `make jars` first"
    junit = sorted(M2.glob("org/junit/jupiter/junit-jupiter-api/*/*.jar")) + sorted(
        M2.glob("org/opentest4j/opentest4j/*/*.jar"))
    assert junit, "JUnit jars missing from ~/.m2: `make jars` downloads them"
    import pyflink  # noqa: PLC0415 - only for the path of its lib/

    pylib = Path(pyflink.__file__).parent / "lib"
    cp = ":".join([str(glue[-1]), str(JVM / "target" / "test-classes"), *map(str, junit), f"{pylib}/*"])
    return ["java", "-cp", cp, "dev.profileengine.glue.TokenAwareRoutingCheck", hosts, str(port),
            str(ROOT / "schemas" / "cassandra.cql")]


def test_sink_statements_are_routed_token_aware_to_the_local_dc() -> None:
    cfg = Config.from_env()
    _stack_up(cfg)
    proc = subprocess.run(routing_check_cmd(cfg, cfg.cassandra_hosts, cfg.cassandra_port),
                          capture_output=True, text=True, timeout=300)
    report = next((ln for ln in proc.stdout.splitlines() if ln.startswith("ROUTING ")), "")
    print(f"\n[routing] {report}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = re.search(r"sink writes (\d+), coordinator a replica (\d+)/\d+, query plan led by a replica (\d+)", report)
    assert m, report
    writes, coordinated, planned = map(int, m.groups())
    assert writes > 0 and writes == coordinated == planned


def main() -> int:
    """`make ring-check`: the same check on the ring of deploy/cassandra_ring.sh (must be up)."""
    import sys  # noqa: PLC0415

    if sys.argv[1:] != ["--ring"]:
        print("usage: python -m tests.integration.test_cassandra_routing --ring", file=sys.stderr)
        return 2
    cfg = Config.from_env()
    hosts = subprocess.run(["bash", str(ROOT / "deploy" / "cassandra_ring.sh"), "hosts"], check=True,
                           capture_output=True, text=True).stdout.strip()
    t0 = time.monotonic()
    proc = subprocess.run(routing_check_cmd(cfg, hosts, cfg.cassandra_port + RING_PORT_OFFSET), text=True,
                          timeout=600)
    print(f"ring check on {hosts}: exit {proc.returncode} after {time.monotonic() - t0:.0f} s")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
