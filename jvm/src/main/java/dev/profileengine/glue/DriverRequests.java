package dev.profileengine.glue;

import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.cql.BatchStatement;
import com.datastax.oss.driver.api.core.cql.BatchableStatement;
import com.datastax.oss.driver.api.core.cql.Statement;
import com.datastax.oss.driver.api.core.servererrors.InvalidQueryException;
import com.datastax.oss.driver.api.core.servererrors.QueryValidationException;
import com.datastax.oss.driver.api.core.type.codec.CodecNotFoundException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Sends statements through the driver and tells which failures another attempt may cure. */
final class DriverRequests implements BoundedAsyncWriter.Executor<Statement<?>> {
  private static final Logger LOG = LoggerFactory.getLogger(CassandraSink.class);
  private final CqlSession session;

  DriverRequests(CqlSession session) {
    this.session = session;
  }

  @Override
  public CompletionStage<?> execute(Statement<?> request) {
    CompletionStage<?> sent = session.executeAsync(request);
    if (!(request instanceof BatchStatement)) {
      return sent;
    }
    // A cluster with a lower batch_size_fail_threshold than the sink's byte bound assumes rejects
    // the batch for good: the same replay would fail again after every restart. Its rows go alone.
    BatchStatement batch = (BatchStatement) request;
    return sent.handle((ok, error) -> {
      if (error == null) {
        return CompletableFuture.completedFuture(ok);
      }
      Throwable cause = error instanceof CompletionException && error.getCause() != null ? error.getCause() : error;
      if (!(cause instanceof InvalidQueryException) || !String.valueOf(cause.getMessage()).contains("Batch too large")) {
        return CompletableFuture.failedFuture(cause);
      }
      LOG.warn("Cassandra refused a batch of {} rows as too large ({}); writing them one by one. Raise "
          + "batch_size_fail_threshold or lower cassandra_batch_max_rows.", batch.size(), cause.getMessage());
      List<CompletableFuture<?>> each = new ArrayList<>();
      for (BatchableStatement<?> st : batch) {
        each.add(session.executeAsync(st).toCompletableFuture());
      }
      return CompletableFuture.allOf(each.toArray(new CompletableFuture<?>[0]));
    }).thenCompose(f -> f);
  }

  /**
   * Timeouts, unavailable or overloaded replicas, lost connections: worth another attempt (every
   * statement is idempotent). A query the server rejects (syntax, schema, permissions) or a value
   * no codec takes fails the same way every time: retrying it only delays the job's failure.
   */
  @Override
  public boolean isRetryable(Throwable error) {
    return !(error instanceof QueryValidationException
        || error instanceof CodecNotFoundException
        || error instanceof IllegalArgumentException
        || error instanceof IllegalStateException); // the driver's "session is closed"
  }
}
