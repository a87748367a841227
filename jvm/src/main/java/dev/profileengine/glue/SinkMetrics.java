package dev.profileengine.glue;

import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.metrics.Histogram;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.metrics.SimpleCounter;
import org.apache.flink.metrics.ThreadSafeSimpleCounter;
import org.apache.flink.runtime.metrics.DescriptiveStatisticsHistogram;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Flink metrics of the Cassandra sink, group {@code profile_engine}: counters cassandra_writes
 * (acknowledged requests: a batch counts once), cassandra_rows (statements submitted),
 * cassandra_retries, cassandra_failures, histogram cassandra_write_latency_us (first attempt to
 * success, retries included) and gauge cassandra_in_flight.
 *
 * <p>Updated from the driver's I/O threads, hence the thread-safe counters and the lock around the
 * histogram, whose window is a plain array. Retry warnings are rate limited: during an outage every
 * in-flight request retries at once.
 */
final class SinkMetrics implements BoundedAsyncWriter.Listener {
  private static final Logger LOG = LoggerFactory.getLogger(CassandraSink.class);
  private static final long WARN_EVERY_NANOS = 5_000_000_000L;

  private final Counter writes;
  private final Counter rows;
  private final Counter retries;
  private final Counter failures;
  private final Histogram latency;
  private final MetricGroup group;
  private long lastWarnNanos = System.nanoTime() - WARN_EVERY_NANOS;
  private long retriesSinceWarn;
  private final AtomicBoolean failureLogged = new AtomicBoolean();

  SinkMetrics(MetricGroup parent) {
    group = parent.addGroup("profile_engine");
    writes = group.counter("cassandra_writes", new ThreadSafeSimpleCounter());
    rows = group.counter("cassandra_rows", new SimpleCounter());
    retries = group.counter("cassandra_retries", new ThreadSafeSimpleCounter());
    failures = group.counter("cassandra_failures", new ThreadSafeSimpleCounter());
    latency = group.histogram("cassandra_write_latency_us", new DescriptiveStatisticsHistogram(10_000));
  }

  /** Registered once the writer exists, which needs this listener first. */
  void inFlightGauge(Gauge<Integer> inFlight) {
    group.gauge("cassandra_in_flight", inFlight);
  }

  /** One statement handed to the writer, alone or in a group (task thread only). */
  void rowSubmitted() {
    rows.inc();
  }

  long rows() {
    return rows.getCount();
  }

  long writes() {
    return writes.getCount();
  }

  long retries() {
    return retries.getCount();
  }

  long failures() {
    return failures.getCount();
  }

  @Override
  public void succeeded(long latencyMicros) {
    writes.inc();
    synchronized (latency) {
      latency.update(latencyMicros);
    }
  }

  @Override
  public void retrying(Throwable error, int retry, long delayMs) {
    retries.inc();
    long suppressed;
    synchronized (this) {
      retriesSinceWarn++;
      long now = System.nanoTime();
      if (now - lastWarnNanos < WARN_EVERY_NANOS) {
        return;
      }
      lastWarnNanos = now;
      suppressed = retriesSinceWarn - 1;
      retriesSinceWarn = 0;
    }
    LOG.warn("Cassandra write failed, retry {} in {} ms ({} more retries since the last warning): {}",
        retry, delayMs, suppressed, error.toString());
  }

  @Override
  public void failed(Throwable error, int attempts) {
    failures.inc();
    // the requests in flight with it usually fail alike: one stack trace tells it, the counter the rest
    if (failureLogged.compareAndSet(false, true)) {
      LOG.error("Cassandra write failed after {} attempt(s); failing the job", attempts, error);
    } else {
      LOG.debug("another Cassandra write failed after {} attempt(s): {}", attempts, error.toString());
    }
  }
}
