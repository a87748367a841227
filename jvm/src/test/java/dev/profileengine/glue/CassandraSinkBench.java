package dev.profileengine.glue;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.apache.flink.types.Row;

/**
 * Throughput of the sink for ~1 KiB profile rows at several maxInFlight bounds, against a real
 * Cassandra, run from the shaded jar (see jvm/README.md). Prints rows/s, the JVM's CPU per row
 * (all threads: task thread, driver I/O, GC) and the task thread's CPU per row (bind + submit).
 *
 * <p>Payloads are built before the clock starts: the figures are the sink's cost, not the bench's.
 *
 * <p>args: host port schema rows maxInFlight...
 */
public final class CassandraSinkBench {
  private CassandraSinkBench() {}

  static String profilePayload(int i) {
    StringBuilder sb = new StringBuilder(1100);
    long t = 1_700_000_000_000L + i;
    sb.append("{\"first_seen\":").append(t - 86_400_000L).append(",\"last_seen\":").append(t)
        .append(",\"n_events\":").append(40 + i % 7).append(",\"n_view\":31,\"n_cart\":5,\"n_fav\":2")
        .append(",\"n_purchase\":2,\"spend\":123.45,\"items\":3,\"last_purchase_time\":").append(t - 5000)
        .append(",\"last_event_id\":\"evt-").append(i).append("-0000000000\",\"session_start\":").append(t - 60_000)
        .append(",\"session_events\":4,\"lifecycle\":\"active\",\"value_tier\":\"mid\",\"top_categories\":{");
    for (int c = 0; c < 5; c++) {
      sb.append(c == 0 ? "" : ",").append("\"cat-").append(1000 + c * 37).append("\":").append(0.1 + c * 0.13);
    }
    sb.append("},\"aggregates\":{");
    String[] aggs = {"views_1h", "carts_1h", "views_24h", "carts_24h", "purchases_7d", "spend_7d", "gap_mean"};
    for (int a = 0; a < aggs.length; a++) {
      sb.append(a == 0 ? "" : ",").append('"').append(aggs[a]).append("\":").append(1.5 * a + i % 3);
    }
    sb.append("},\"features\":[");
    for (int f = 0; f < 24; f++) {
      sb.append(f == 0 ? "" : ",").append(Math.sin(i + f) * 10.0);
    }
    sb.append("],\"score\":0.4231,\"model_version\":\"propensity-2024-06-01\",\"segment\":3,")
        .append("\"segment_name\":\"browsers\"}");
    return sb.toString();
  }

  public static void main(String[] args) throws Exception {
    String host = args[0];
    int port = Integer.parseInt(args[1]);
    int rows = Integer.parseInt(args[3]);
    List<Integer> bounds = new ArrayList<>();
    for (int i = 4; i < args.length; i++) {
      bounds.add(Integer.parseInt(args[i]));
    }
    List<Row> requests = new ArrayList<>(rows);
    long bytes = 0;
    for (int i = 0; i < rows; i++) {
      String p = profilePayload(i);
      bytes += p.length();
      requests.add(Row.of("profile", "bench-" + i, 1_000_000L + i, p));
    }
    System.out.printf(Locale.ROOT, "%d profile rows, payload %.0f bytes on average%n", rows, (double) bytes / rows);
    try (LiveCassandra db = new LiveCassandra(host, port, "sink_bench", Paths.get(args[2]))) {
      // warm-up: JIT and the connection, not reported
      run(db, requests, 256, null);
      bindCost(db, requests);
      for (int bound : bounds) {
        run(db, requests, bound, (secs, cpuNanos, taskNanos, ioNanos, retries) -> System.out.printf(Locale.ROOT,
            "maxInFlight %4d: %6.0f rows/s, %5.1f s; CPU us/row: JVM %5.1f = task thread %4.1f + driver I/O %4.1f"
                + " + rest (GC, JIT, timers) %4.1f; %d retries%n",
            bound, rows / secs, secs, cpuNanos / 1e3 / rows, taskNanos / 1e3 / rows, ioNanos / 1e3 / rows,
            (cpuNanos - taskNanos - ioNanos) / 1e3 / rows, retries));
      }
    }
  }

  interface Report {
    void print(double secs, long cpuNanos, long taskNanos, long ioNanos, long retries);
  }

  /** CPU of the driver's netty event loop threads (named after the session). */
  private static long ioThreadsCpu(ThreadMXBean threads) {
    long sum = 0;
    for (java.lang.management.ThreadInfo t : threads.getThreadInfo(threads.getAllThreadIds())) {
      if (t != null && t.getThreadName().startsWith("profile-engine-sink-io-")) {
        sum += Math.max(0, threads.getThreadCpuTime(t.getThreadId()));
      }
    }
    return sum;
  }

  /** The task thread's share that is not I/O: JSON parse and bind of every row, nothing sent. */
  private static void bindCost(LiveCassandra db, List<Row> requests) {
    WriteStatements statements = new WriteStatements(db.session, db.settings());
    ThreadMXBean threads = ManagementFactory.getThreadMXBean();
    long n = 0;
    int rounds = 4;
    for (int round = 0; round < rounds; round++) { // the first rounds warm the JIT
      long t0 = threads.getCurrentThreadCpuTime();
      for (Row r : requests) {
        n += statements.statements(r).size();
      }
      if (round == rounds - 1) {
        System.out.printf(Locale.ROOT, "parse + bind only: %.1f us/row (task thread CPU)%n",
            (threads.getCurrentThreadCpuTime() - t0) / 1e3 / requests.size());
      }
    }
    if (n != (long) rounds * requests.size()) {
      throw new AssertionError("one statement per profile row expected");
    }
  }

  /** Writes and flushes all requests through one writer; the session's start is not timed. */
  private static void run(LiveCassandra db, List<Row> requests, int maxInFlight, Report report) throws Exception {
    com.sun.management.OperatingSystemMXBean os =
        (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
    ThreadMXBean threads = ManagementFactory.getThreadMXBean();
    CassandraSinkWriter w = new CassandraSinkWriter(db.settings().withMaxInFlight(maxInFlight), LiveCassandra.metrics(), LiveCassandra.noTimers());
    try {
      long cpu0 = os.getProcessCpuTime();
      long io0 = ioThreadsCpu(threads);
      long task0 = threads.getCurrentThreadCpuTime();
      long t0 = System.nanoTime();
      for (Row r : requests) {
        w.write(r, CassandraSinkLiveTest.NO_CONTEXT);
      }
      w.flush(true);
      if (report != null) {
        report.print((System.nanoTime() - t0) / 1e9, os.getProcessCpuTime() - cpu0,
            threads.getCurrentThreadCpuTime() - task0, ioThreadsCpu(threads) - io0, w.metrics().retries());
      }
    } finally {
      w.close();
    }
  }
}
