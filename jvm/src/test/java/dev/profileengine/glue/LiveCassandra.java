package dev.profileengine.glue;

import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.cql.SimpleStatement;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.flink.metrics.groups.SinkWriterMetricGroup;
import org.apache.flink.runtime.metrics.groups.InternalSinkWriterMetricGroup;
import org.apache.flink.runtime.metrics.groups.UnregisteredMetricGroups;

/** A keyspace with the project's real tables (schemas/cassandra.cql) on a running Cassandra. */
final class LiveCassandra implements AutoCloseable {
  static final String DC = "datacenter1";
  final String host;
  final int port;
  final String keyspace;
  final CqlSession session;
  final Map<String, List<String>> columns;

  LiveCassandra(String host, int port, String keyspace, Path schema) throws IOException {
    this.host = host;
    this.port = port;
    this.keyspace = keyspace;
    String cql = new String(Files.readAllBytes(schema), StandardCharsets.UTF_8)
        .replaceAll("(?m)^--.*$", "").replace("{keyspace}", keyspace).replace("{replication}", "1")
        .replace("{{", "{").replace("}}", "}");
    this.columns = tableColumns(cql);
    // the sink's own session factory: login and TLS exactly as the writers will use them
    this.session = CassandraSessions.open(settings());
    ddl("DROP KEYSPACE IF EXISTS " + keyspace);
    for (String stmt : cql.split(";")) {
      if (!stmt.isBlank()) {
        ddl(stmt);
      }
    }
  }

  private void ddl(String cql) {
    // schema changes wait for the schema agreement, slow on a busy two-core machine
    session.execute(SimpleStatement.newInstance(cql).setTimeout(Duration.ofSeconds(60)));
  }

  /** Column names per table in declaration order, parsed as udfs/schemas.py cql_columns does. */
  static Map<String, List<String>> tableColumns(String cql) {
    Map<String, List<String>> out = new LinkedHashMap<>();
    Matcher m = Pattern.compile("CREATE TABLE IF NOT EXISTS \\w+\\.(\\w+) \\((.*?)\\n\\)", Pattern.DOTALL)
        .matcher(cql);
    while (m.find()) {
      List<String> cols = new ArrayList<>();
      for (String part : m.group(2).split(",\\s*\\n")) {
        String p = part.strip();
        if (!p.isEmpty() && !p.toUpperCase().startsWith("PRIMARY KEY")) {
          cols.add(p.split("\\s+")[0]);
        }
      }
      out.put(m.group(1), cols);
    }
    return out;
  }

  /**
   * Settings of a sink writing to this keyspace; a secured node takes -Dcassandra.username,
   * -Dcassandra.password (a reference: env:NAME or an absolute file path) and -Dcassandra.ca (PEM).
   */
  CassandraSinkSettings settings() {
    return new CassandraSinkSettings(host, port, DC, keyspace, columns.get("profiles"), columns.get("predictions"))
        .withRecommendationColumns(columns.get("recommendations"))
        .withCredentials(System.getProperty("cassandra.username", ""), System.getProperty("cassandra.password", ""))
        .withTls(System.getProperty("cassandra.ca", ""), true);
  }

  /** Timers that never fire: the tests' flush() sends pending groups. */
  static org.apache.flink.api.common.operators.ProcessingTimeService noTimers() {
    return new org.apache.flink.api.common.operators.ProcessingTimeService() {
      @Override
      public long getCurrentProcessingTime() {
        return System.currentTimeMillis();
      }

      @Override
      public java.util.concurrent.ScheduledFuture<?> registerTimer(long timestamp,
          org.apache.flink.api.common.operators.ProcessingTimeService.ProcessingTimeCallback callback) {
        return null;
      }
    };
  }

  static SinkWriterMetricGroup metrics() {
    return InternalSinkWriterMetricGroup.wrap(UnregisteredMetricGroups.createUnregisteredOperatorMetricGroup());
  }

  @Override
  public void close() {
    ddl("DROP KEYSPACE IF EXISTS " + keyspace);
    session.close();
  }
}
