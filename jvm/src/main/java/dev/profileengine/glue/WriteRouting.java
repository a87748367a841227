package dev.profileengine.glue;

import com.datastax.oss.driver.api.core.CqlIdentifier;
import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.cql.BoundStatement;
import com.datastax.oss.driver.api.core.metadata.Node;
import com.datastax.oss.driver.api.core.metadata.TokenMap;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.Set;

/**
 * Which statements may share one request (see {@link WriteGrouper}): the grouping key of a bound
 * statement, or null for "send it alone".
 *
 * <ul>
 *   <li>{@code replica_set}: statements whose partitions have the same replicas in the driver's
 *       token map. The driver routes the batch by its first statement's routing key, so the
 *       coordinator is a replica of every row in it and writes them locally (what the Spark
 *       Cassandra connector calls grouping by replica set). On one node or RF = node count every
 *       row shares one replica set, which is where grouping saves the most.</li>
 *   <li>{@code partition}: statements of the same partition only (always safe, smaller groups).</li>
 *   <li>{@code none}: one request per statement.</li>
 * </ul>
 * The consistency level is part of the key: a batch has one.
 */
final class WriteRouting {
  enum Grouping {
    REPLICA_SET, PARTITION, NONE;

    static Grouping parse(String s) {
      try {
        return valueOf(s.strip().toUpperCase(Locale.ROOT));
      } catch (IllegalArgumentException | NullPointerException e) {
        throw new IllegalArgumentException("grouping must be replica_set, partition or none, got '" + s + "'");
      }
    }
  }

  private final CqlSession session;
  private final CqlIdentifier keyspace;
  private final Grouping grouping;

  WriteRouting(CqlSession session, String keyspace, Grouping grouping) {
    this.session = session;
    this.keyspace = CqlIdentifier.fromInternal(keyspace);
    this.grouping = grouping;
  }

  Object groupKey(BoundStatement st) {
    if (grouping == Grouping.NONE) {
      return null;
    }
    ByteBuffer partition = st.getRoutingKey();
    if (partition == null) {
      return null; // cannot tell where it goes: send it alone
    }
    if (grouping == Grouping.REPLICA_SET) {
      // the token map is refreshed by the driver on topology changes; read it per statement
      Optional<TokenMap> map = session.getMetadata().getTokenMap();
      if (map.isPresent()) {
        Set<Node> replicas = map.get().getReplicas(keyspace, partition);
        if (!replicas.isEmpty()) {
          return List.of(st.getConsistencyLevel(), replicas);
        }
      }
    }
    return List.of(st.getConsistencyLevel(), partition);
  }
}
