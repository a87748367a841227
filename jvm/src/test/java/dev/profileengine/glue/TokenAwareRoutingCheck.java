package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.datastax.oss.driver.api.core.CqlIdentifier;
import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.config.DefaultDriverOption;
import com.datastax.oss.driver.api.core.config.DriverExecutionProfile;
import com.datastax.oss.driver.api.core.cql.BoundStatement;
import com.datastax.oss.driver.api.core.cql.ExecutionInfo;
import com.datastax.oss.driver.api.core.cql.SimpleStatement;
import com.datastax.oss.driver.api.core.loadbalancing.LoadBalancingPolicy;
import com.datastax.oss.driver.api.core.loadbalancing.NodeDistance;
import com.datastax.oss.driver.api.core.metadata.Node;
import com.datastax.oss.driver.api.core.metadata.TokenMap;
import com.datastax.oss.driver.internal.core.context.InternalDriverContext;
import com.datastax.oss.driver.internal.core.loadbalancing.DefaultLoadBalancingPolicy;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/**
 * Token-aware, DC-aware routing of the sink's writes, proven on a real cluster: every statement that
 * {@link WriteStatements} builds is executed on a session of {@link CassandraSessions} (the sink's own
 * code), and for every write the coordinator that answered ({@link ExecutionInfo#getCoordinator()}) and
 * the first node of the policy's query plan are a replica of the row's partition per the driver's token
 * map. The keyspace has RF 1, so on a multi-node ring exactly one node of N owns each partition: a
 * policy that is not token-aware would hit it about 1/N of the time. As a control, the same rows are
 * written as unprepared statements (no routing key): their replica hit rate is printed, and on a ring
 * of 3+ nodes it must stay well below 100%, which shows the check can fail.
 *
 * <p>Not a surefire default (its name does not end in Test): run it with -Dtest=TokenAwareRoutingCheck
 * -Dcassandra.host=h1[,h2,...] [-Dcassandra.port=...], skipped without a host. {@link #main} runs the
 * same from the shaded jar: tests/integration/test_cassandra_routing.py on the single-node stack,
 * `make ring-check` on a local 3-node ring (deploy/cassandra_ring.sh).
 */
class TokenAwareRoutingCheck {
  static final int DEFAULT_USERS = 600;

  /** What one run saw; printed as one line. */
  record Result(int nodes, int writes, int replicaCoordinators, int replicaPlanHeads, int controlWrites,
      int controlReplicaHits, Map<String, Integer> perCoordinator) {
    @Override
    public String toString() {
      return String.format("nodes %d, sink writes %d, coordinator a replica %d/%d, query plan led by a replica %d/%d,"
          + " control (unprepared, no routing key) coordinator a replica %d/%d, writes per coordinator %s",
          nodes, writes, replicaCoordinators, writes, replicaPlanHeads, writes, controlReplicaHits,
          controlWrites, perCoordinator);
    }
  }

  static Result check(String hosts, int port, Path schema, int users) throws Exception {
    try (LiveCassandra db = new LiveCassandra(hosts, port, "routing_check", schema)) {
      CassandraSinkSettings settings = db.settings();
      try (CqlSession session = CassandraSessions.open(settings)) {
        assertPolicyIsTokenAndDcAware(session, settings.localDatacenter());
        WriteStatements statements = new WriteStatements(session, settings);
        TokenMap tokens = session.getMetadata().getTokenMap()
            .orElseThrow(() -> new AssertionError("the driver built no token map (token metadata disabled?)"));
        CqlIdentifier ks = CqlIdentifier.fromInternal(db.keyspace);
        LoadBalancingPolicy policy = policy(session);
        int writes = 0;
        int replicaCoordinators = 0;
        int replicaPlanHeads = 0;
        Map<String, Integer> perCoordinator = new TreeMap<>();
        for (int u = 0; u < users; u++) {
          for (BoundStatement st : statements.statements(request(u))) {
            ByteBuffer key = st.getRoutingKey();
            assertNotNull(key, "a sink statement without a routing key: the driver cannot route it by token");
            assertEquals(ks, st.getRoutingKeyspace(), "routing keyspace");
            Set<Node> replicas = tokens.getReplicas(ks, key);
            assertEquals(1, replicas.size(), "RF 1: one replica per partition");
            Node head = policy.newQueryPlan(st, session).poll();  // QueryPlan has no peek()
            replicaPlanHeads += replicas.contains(head) ? 1 : 0;
            ExecutionInfo info = session.execute(st).getExecutionInfo();
            Node coordinator = info.getCoordinator();
            replicaCoordinators += replicas.contains(coordinator) ? 1 : 0;
            perCoordinator.merge(coordinator.getEndPoint().toString(), 1, Integer::sum);
            writes++;
          }
        }
        int controlHits = 0;
        int controlWrites = Math.min(users, 300);
        for (int u = 0; u < controlWrites; u++) {
          String user = "user-" + u;
          SimpleStatement plain = SimpleStatement.newInstance("INSERT INTO " + db.keyspace
              + ".profiles (user_id, n_events) VALUES (?, ?)", user, (long) u);
          Node coordinator = session.execute(plain).getExecutionInfo().getCoordinator();
          Set<Node> replicas = tokens.getReplicas(ks, textKey(user));
          controlHits += replicas.contains(coordinator) ? 1 : 0;
        }
        return new Result(session.getMetadata().getNodes().size(), writes, replicaCoordinators, replicaPlanHeads,
            controlWrites, controlHits, perCoordinator);
      }
    }
  }

  private static LoadBalancingPolicy policy(CqlSession session) {
    return ((InternalDriverContext) session.getContext()).getLoadBalancingPolicy(DriverExecutionProfile.DEFAULT_NAME);
  }

  /** The driver's default policy (token-aware + DC-aware), pinned to the configured local DC. */
  static void assertPolicyIsTokenAndDcAware(CqlSession session, String localDc) {
    LoadBalancingPolicy policy = policy(session);
    assertTrue(policy instanceof DefaultLoadBalancingPolicy, "load balancing policy " + policy.getClass());
    assertEquals(localDc, ((DefaultLoadBalancingPolicy) policy).getLocalDatacenter(), "policy's local DC");
    assertEquals(localDc, session.getContext().getConfig().getDefaultProfile()
        .getString(DefaultDriverOption.LOAD_BALANCING_LOCAL_DATACENTER));
    for (Node n : session.getMetadata().getNodes().values()) {
      // the local DC's nodes are LOCAL; a node of another DC would be IGNORED (no remote DC failover)
      NodeDistance want = localDc.equals(n.getDatacenter()) ? NodeDistance.LOCAL : NodeDistance.IGNORED;
      assertEquals(want, n.getDistance(), n + " in DC " + n.getDatacenter());
    }
  }

  /** A profile, a prediction or (every 7th user) an erase: every statement kind the sink sends. */
  private static Row request(int u) {
    String user = "user-" + u;
    if (u % 7 == 6) {
      return Row.of(WriteStatements.ERASE, user, 2_000_000L + u, "");
    }
    if (u % 2 == 0) {
      return Row.of(WriteStatements.PROFILE, user, 1_000_000L + u, "{\"n_events\":" + u + "}");
    }
    return Row.of(WriteStatements.PREDICTION, user, 1_000_000L + u, "{\"event_time\":1,\"event_id\":\"e" + u + "\"}");
  }

  /** The routing key of a single text partition key: its UTF-8 bytes, as the driver serializes it. */
  private static ByteBuffer textKey(String s) {
    return ByteBuffer.wrap(s.getBytes(StandardCharsets.UTF_8));
  }

  @Test
  void everyWriteIsCoordinatedByAReplicaOfItsPartition() throws Exception {
    String hosts = System.getProperty("cassandra.host", "");
    assumeTrue(!hosts.isEmpty(), "set -Dcassandra.host=h1[,h2,...] to run against a real Cassandra");
    Result r = check(hosts, Integer.getInteger("cassandra.port", 9042), CassandraSinkLiveTest.schema(), DEFAULT_USERS);
    System.out.println(r);
    verify(r);
  }

  static void verify(Result r) {
    assertEquals(r.writes(), r.replicaCoordinators(), "writes coordinated by a non-replica: " + r);
    assertEquals(r.writes(), r.replicaPlanHeads(), "query plans not led by a replica: " + r);
    if (r.nodes() >= 3) {
      // the control routes blindly: about 1/N of its writes land on the replica
      assertTrue(r.controlReplicaHits() < r.controlWrites() * 0.75, "the control hit the replica too often: " + r);
      assertTrue(r.perCoordinator().size() == r.nodes(), "not every node coordinated writes: " + r);
    }
  }

  /** args: hosts (comma separated) [port] [schema path] [users]. Exit status 0 = routing verified. */
  public static void main(String[] args) throws Exception {
    Result r = check(args[0], args.length > 1 ? Integer.parseInt(args[1]) : 9042,
        args.length > 2 ? Paths.get(args[2]) : CassandraSinkLiveTest.schema(),
        args.length > 3 ? Integer.parseInt(args[3]) : DEFAULT_USERS);
    System.out.println("ROUTING " + r);
    verify(r);
    System.out.println("OK: token-aware, DC-aware routing verified");
  }
}
