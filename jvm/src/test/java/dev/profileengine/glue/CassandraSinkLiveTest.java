package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.datastax.oss.driver.api.core.cql.Row;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.junit.jupiter.api.Test;

/**
 * Against a real Cassandra, when -Dcassandra.host names one (skipped otherwise, so in a plain
 * `mvn package` and CI without a server): rows written by the sink land with their types and
 * write times, an erase removes older cells only, and a rejected statement fails the writer.
 * {@link #main} runs the same from the shaded jar: {@code java -cp glue.jar:test-classes:flink-dist}.
 */
class CassandraSinkLiveTest {
  static final SinkWriter.Context NO_CONTEXT = new SinkWriter.Context() {
    @Override
    public long currentWatermark() {
      return Long.MIN_VALUE;
    }

    @Override
    public Long timestamp() {
      return null;
    }
  };

  private static org.apache.flink.types.Row request(String op, String user, long ts, String payload) {
    return org.apache.flink.types.Row.of(op, user, ts, payload);
  }

  static void check(String host, int port, Path schema) throws Exception {
    try (LiveCassandra db = new LiveCassandra(host, port, "sink_check", schema)) {
      CassandraSinkWriter w = new CassandraSinkWriter(db.settings().withMaxInFlight(4), LiveCassandra.metrics(), LiveCassandra.noTimers());
      try {
        w.write(request("profile", "u1", 1_000_000L, "{\"first_seen\":1700000000000,\"n_events\":3,"
            + "\"spend\":12.5,\"lifecycle\":\"new\",\"segment\":2,\"top_categories\":{\"books\":0.75},"
            + "\"features\":[0.5,1.0,NaN],\"last_event_id\":null}"), NO_CONTEXT);
        w.write(request("prediction", "u1", 1_700_000_000_000_000L, "{\"event_time\":1700000000000,"
            + "\"event_id\":\"e1\",\"score\":0.9,\"segment\":1,\"features\":[1.5]}"), NO_CONTEXT);
        w.write(request("prediction", "u2", 5L, "{\"event_time\":1,\"event_id\":\"old\"}"), NO_CONTEXT);
        w.write(request("prediction", "u2", 50L, "{\"event_time\":2,\"event_id\":\"new\"}"), NO_CONTEXT);
        w.write(request("profile", "u2", 5L, "{\"n_events\":1}"), NO_CONTEXT);
        w.write(request("erase", "u2", 10L, ""), NO_CONTEXT);
        w.write(request("recommendations", "", 0L, "[[\"u1\",2000000,{\"items\":[\"a\",\"b\"],"
            + "\"scores\":[0.9,0.5],\"model_version\":\"blend-v1\",\"as_of\":1700000000000,"
            + "\"computed_at\":1700000000500,\"popular_basis\":\"{}\"}]]"), NO_CONTEXT);
        w.flush(false);
      } finally {
        w.close();
      }
      Row p = db.session.execute("SELECT first_seen, n_events, spend, lifecycle, segment, top_categories, features,"
          + " last_event_id, WRITETIME(spend) AS wt FROM sink_check.profiles WHERE user_id = 'u1'").one();
      assertEquals(1700000000000L, p.getLong("first_seen"));
      assertEquals(3L, p.getLong("n_events"));
      assertEquals(12.5, p.getDouble("spend"));
      assertEquals("new", p.getString("lifecycle"));
      assertEquals(2, p.getInt("segment"));
      assertEquals(Map.of("books", 0.75), p.getMap("top_categories", String.class, Double.class));
      List<Double> f = p.getList("features", Double.class);
      assertEquals(List.of(0.5, 1.0), f.subList(0, 2));
      assertTrue(Double.isNaN(f.get(2)));
      assertNull(p.getString("last_event_id"));
      assertEquals(1_000_000L, p.getLong("wt"));
      Row pred = db.session.execute("SELECT event_id, score, segment, WRITETIME(score) AS wt"
          + " FROM sink_check.predictions WHERE user_id = 'u1'").one();
      assertEquals("e1", pred.getString("event_id"));
      assertEquals(0.9, pred.getDouble("score"));
      assertEquals(1_700_000_000_000_000L, pred.getLong("wt"));
      Row rec = db.session.execute("SELECT items, scores, model_version, WRITETIME(items) AS wt"
          + " FROM sink_check.recommendations WHERE user_id = 'u1'").one();
      assertEquals(List.of("a", "b"), rec.getList("items", String.class));
      assertEquals(List.of(0.9, 0.5), rec.getList("scores", Double.class));
      assertEquals("blend-v1", rec.getString("model_version"));
      assertEquals(2_000_000L, rec.getLong("wt"));
      // the erase at 10 removed the profile (5) and the prediction written at 5, not the one at 50
      assertNull(db.session.execute("SELECT * FROM sink_check.profiles WHERE user_id = 'u2'").one());
      List<Row> left = db.session.execute("SELECT event_id FROM sink_check.predictions WHERE user_id = 'u2'").all();
      assertEquals(1, left.size());
      assertEquals("new", left.get(0).getString("event_id"));

      // a statement the server rejects fails the writer at once, without retries: -1 is no valid timestamp
      CassandraSinkWriter bad = new CassandraSinkWriter(db.settings().withMaxRetries(3), LiveCassandra.metrics(), LiveCassandra.noTimers());
      try {
        bad.write(request("profile", "u3", Long.MIN_VALUE, "{}"), NO_CONTEXT);
        Exception e = assertThrows(java.io.IOException.class, () -> bad.flush(false));
        assertTrue(e.getMessage().contains("after 1 attempt(s) (not retryable)"), e.getMessage());
      } finally {
        bad.close();
      }
    }
  }

  static Path schema() {
    return Paths.get(System.getProperty("cassandra.schema", "../schemas/cassandra.cql"));
  }

  @Test
  void rowsLandWithTheirTypesAndWriteTimes() throws Exception {
    String host = System.getProperty("cassandra.host", "");
    assumeTrue(!host.isEmpty(), "set -Dcassandra.host=... to run against a real Cassandra");
    check(host, Integer.getInteger("cassandra.port", 9042), schema());
  }

  /** args: host [port] [schema path]. */
  public static void main(String[] args) throws Exception {
    check(args[0], args.length > 1 ? Integer.parseInt(args[1]) : 9042,
        args.length > 2 ? Paths.get(args[2]) : schema());
    System.out.println("OK: rows written through " + CassandraSink.class.getProtectionDomain().getCodeSource()
        .getLocation() + " (driver from " + com.datastax.oss.driver.api.core.CqlSession.class.getProtectionDomain()
        .getCodeSource().getLocation() + ") read back with their types and write times");
  }
}
