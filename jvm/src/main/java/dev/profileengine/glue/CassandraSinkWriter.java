package dev.profileengine.glue;

import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.cql.BoundStatement;
import com.datastax.oss.driver.api.core.cql.Statement;
import java.io.IOException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadFactory;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.groups.SinkWriterMetricGroup;
import org.apache.flink.types.Row;

/**
 * Writes the requests of one sink subtask asynchronously. write() binds the row's statements on
 * the task thread and hands them to {@link BoundedAsyncWriter}, which blocks when maxInFlight are
 * pending; flush(), which Flink calls before every checkpoint barrier and at the end of input,
 * waits until every request has succeeded, so a completed checkpoint implies the rows are in
 * Cassandra.
 */
final class CassandraSinkWriter implements SinkWriter<Row> {
  private final CqlSession session;
  private final WriteStatements statements;
  private final BoundedAsyncWriter<Statement<?>> writer;
  private final ScheduledExecutorService retries;
  private final Counter recordsSent;
  private final SinkMetrics metrics;

  CassandraSinkWriter(CassandraSinkSettings s, SinkWriterMetricGroup metrics)
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
  }

  @Override
  public void write(Row element, Context context) throws IOException, InterruptedException {
    // bound before the first submit: a bad row fails whole, never half an erase
    for (BoundStatement st : statements.statements(element)) {
      writer.submit(st);
    }
    recordsSent.inc();
  }

  @Override
  public void flush(boolean endOfInput) throws IOException, InterruptedException {
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
