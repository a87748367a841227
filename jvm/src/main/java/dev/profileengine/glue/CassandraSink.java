package dev.profileengine.glue;

import java.io.IOException;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.types.Row;

/**
 * Asynchronous Cassandra sink of the profile job: the Python operator emits write requests as rows
 * of {@link #elementType()} and this sink writes them, at most maxInFlight at a time, retrying
 * failures, and with every write acknowledged before a checkpoint completes (at-least-once; the
 * statements are idempotent, so a replay after a restore rewrites identical cells).
 *
 * <p>Request rows: op = "profile" | "prediction" (payload: JSON object column -> value, bound by
 * the prepared statement's types) or "erase" (payload ignored: deletes the profile row and the
 * prediction partition); user_id = partition key; write_ts = USING TIMESTAMP in microseconds.
 */
public final class CassandraSink implements Sink<Row> {
  private static final long serialVersionUID = 1L;
  private final CassandraSinkSettings settings;

  public CassandraSink(CassandraSinkSettings settings) {
    this.settings = settings;
  }

  /** Row(op: String, user_id: String, write_ts: Long, payload: String). */
  public static RowTypeInfo elementType() {
    return new RowTypeInfo(
        new TypeInformation<?>[] {Types.STRING, Types.STRING, Types.LONG, Types.STRING},
        new String[] {"op", "user_id", "write_ts", "payload"});
  }

  @Override
  public SinkWriter<Row> createWriter(WriterInitContext context) throws IOException {
    return new CassandraSinkWriter(settings, context.metricGroup(), context.getProcessingTimeService());
  }

  @Override
  public String toString() {
    return "CassandraSink" + settings;
  }
}
