package dev.profileengine.glue;

import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.cql.BatchStatement;
import com.datastax.oss.driver.api.core.cql.BoundStatement;
import com.datastax.oss.driver.api.core.cql.DefaultBatchType;
import com.datastax.oss.driver.api.core.cql.Statement;
import java.io.IOException;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadFactory;
import org.apache.flink.api.common.operators.ProcessingTimeService;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.groups.SinkWriterMetricGroup;
import org.apache.flink.types.Row;

/**
 * Writes the requests of one sink subtask asynchronously. write() binds the row's statements on
 * the task thread, groups them ({@link WriteGrouper}, {@link WriteRouting}: by replica set or
 * partition, up to a row and byte bound, for at most the linger time) and hands each group, as one
 * unlogged batch, to {@link BoundedAsyncWriter}, which blocks when maxInFlight are pending;
 * flush(), which Flink calls before every checkpoint barrier and at the end of input, sends every
 * pending group and waits until every request has succeeded, so a completed checkpoint implies
 * the rows are in Cassandra.
 */
final class CassandraSinkWriter implements SinkWriter<Row> {
  private final CqlSession session;
  private final WriteStatements statements;
  private final BoundedAsyncWriter<Statement<?>> writer;
  private final ScheduledExecutorService retries;
  private final Counter recordsSent;
  private final SinkMetrics metrics;
  private final WriteRouting routing;
  private final WriteGrouper<BoundStatement> grouper;
  private final ProcessingTimeService timers;
  private final long lingerMs;
  private boolean lingerArmed;

  CassandraSinkWriter(CassandraSinkSettings s, SinkWriterMetricGroup metrics, ProcessingTimeService timers)
      throws IOException {
    this.recordsSent = metrics.getNumRecordsSendCounter();
    this.retries = Executors.newSingleThreadScheduledExecutor(daemon("cassandra-sink-retry"));
    CqlSession opened = null;
    try {
      opened = CassandraSessions.open(s);
      this.statements = new WriteStatements(opened, s);
    } catch (RuntimeException | IOException e) {
      if (opened != null) {
        opened.close();
      }
      retries.shutdownNow();
      throw e;
    }
    this.session = opened;
    this.metrics = new SinkMetrics(metrics);
    this.writer = new BoundedAsyncWriter<>(new DriverRequests(session), this.metrics, retries,
        s.maxInFlight(), s.maxRetries(), s.retryBaseDelayMs(), s.retryMaxDelayMs());
    this.metrics.inFlightGauge(writer::inFlight);
    this.routing = new WriteRouting(session, s.keyspace(), s.grouping());
    this.grouper = new WriteGrouper<>(s.batchMaxRows(), s.batchMaxBytes(), this::send);
    this.timers = timers;
    this.lingerMs = s.batchLingerMs();
  }

  @Override
  public void write(Row element, Context context) throws IOException, InterruptedException {
    // bound before the first submit: a bad row fails whole, never half an erase
    List<BoundStatement> bound = statements.statements(element);
    int bytes = WriteStatements.approximateBytes(element, bound.size());
    for (BoundStatement st : bound) {
      metrics.rowSubmitted();
      Object key = routing.groupKey(st);
      if (key == null) {
        writer.submit(st);
      } else {
        grouper.add(key, st, bytes);
      }
    }
    recordsSent.inc();
    armLinger();
  }

  /** A group waits at most lingerMs for more rows: a burst of a batch's writes fills it first. */
  private void armLinger() {
    if (lingerArmed || grouper.pendingRows() == 0) {
      return;
    }
    lingerArmed = true;
    timers.registerTimer(timers.getCurrentProcessingTime() + lingerMs, t -> {
      lingerArmed = false;
      grouper.drain();
    });
  }

  private void send(List<BoundStatement> group) throws IOException, InterruptedException {
    if (group.size() == 1) {
      writer.submit(group.get(0));
      return;
    }
    // one consistency level per group (it is part of the key); the rows keep their own USING TIMESTAMP
    writer.submit(BatchStatement.builder(DefaultBatchType.UNLOGGED)
        .addStatements(group.toArray(new BoundStatement[0]))
        .setConsistencyLevel(group.get(0).getConsistencyLevel())
        .setIdempotence(true)
        .build());
  }

  @Override
  public void flush(boolean endOfInput) throws IOException, InterruptedException {
    grouper.drain();
    writer.flush();
  }

  SinkMetrics metrics() {
    return metrics;
  }

  @Override
  public void close() {
    writer.close();
    retries.shutdownNow();
    session.close();
  }

  private static ThreadFactory daemon(String name) {
    return r -> {
      Thread t = new Thread(r, name);
      t.setDaemon(true);
      return t;
    };
  }
}
