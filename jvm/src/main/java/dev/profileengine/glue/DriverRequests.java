package dev.profileengine.glue;

import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.cql.Statement;
import com.datastax.oss.driver.api.core.servererrors.QueryValidationException;
import com.datastax.oss.driver.api.core.type.codec.CodecNotFoundException;
import java.util.concurrent.CompletionStage;

/** Sends statements through the driver and tells which failures another attempt may cure. */
final class DriverRequests implements BoundedAsyncWriter.Executor<Statement<?>> {
  private final CqlSession session;

  DriverRequests(CqlSession session) {
    this.session = session;
  }

  @Override
  public CompletionStage<?> execute(Statement<?> request) {
    return session.executeAsync(request);
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
