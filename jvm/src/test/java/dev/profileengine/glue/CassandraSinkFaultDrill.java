package dev.profileengine.glue;

import java.io.IOException;
import java.nio.file.Paths;
import java.time.Duration;
import org.apache.flink.types.Row;

/**
 * Manual drill against a Cassandra process you started: SIGSTOPs it for a while during 20 000
 * writes (request timeout 1 s) and prints whether the writer recovered through retries or failed
 * once they were spent, with the metrics' counts and, when it recovered, the rows in the table.
 *
 * <p>args: host port schema pid pauseMs maxRetries
 */
public final class CassandraSinkFaultDrill {
  private CassandraSinkFaultDrill() {}

  private static void signal(String sig, String pid) throws IOException, InterruptedException {
    new ProcessBuilder("kill", sig, pid).inheritIO().start().waitFor();
  }

  public static void main(String[] a) throws Exception {
    String pid = a[3];
    long pauseMs = Long.parseLong(a[4]);
    int maxRetries = Integer.parseInt(a[5]);
    try (LiveCassandra db = new LiveCassandra(a[0], Integer.parseInt(a[1]), "sink_fault", Paths.get(a[2]))) {
      CassandraSinkWriter w = new CassandraSinkWriter(db.settings().withMaxInFlight(64).withRequestTimeoutMs(1000)
          .withMaxRetries(maxRetries).withRetryBackoffMs(100, 2000), LiveCassandra.metrics(), LiveCassandra.noTimers());
      Thread pauser = new Thread(() -> {
        try {
          Thread.sleep(1500);
          signal("-STOP", pid);
          Thread.sleep(pauseMs);
        } catch (IOException | InterruptedException e) {
          throw new IllegalStateException(e);
        } finally {
          try {
            signal("-CONT", pid); // whatever happened: never leave the node stopped
          } catch (IOException | InterruptedException e) {
            System.err.println("could not resume " + pid + ": " + e);
          }
        }
      });
      pauser.start();
      long t0 = System.nanoTime();
      String outcome = "flushed";
      try {
        for (int i = 0; i < 20_000; i++) {
          w.write(Row.of("profile", "f-" + i, 10L + i, CassandraSinkBench.profilePayload(i)),
              CassandraSinkLiveTest.NO_CONTEXT);
        }
        w.flush(true);
      } catch (IOException e) {
        outcome = "FAILED: " + e.getMessage();
      }
      pauser.join();
      System.out.printf("paused %d ms, maxRetries %d: %s after %.1f s; writes %d, retries %d, failures %d%n",
          pauseMs, maxRetries, outcome, (System.nanoTime() - t0) / 1e9,
          w.metrics().writes(), w.metrics().retries(), w.metrics().failures());
      w.close();
      if (outcome.equals("flushed")) {
        System.out.println("rows in the table: " + db.session.execute(com.datastax.oss.driver.api.core.cql
            .SimpleStatement.newInstance("SELECT count(*) FROM sink_fault.profiles")
            .setTimeout(Duration.ofSeconds(60))).one().getLong(0));
      }
    }
  }
}
