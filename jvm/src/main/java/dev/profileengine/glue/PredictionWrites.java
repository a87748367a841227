package dev.profileengine.glue;

import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.types.Row;

/**
 * The Cassandra write request of a prediction row (prediction.avsc order in, {@link
 * CassandraSink#elementType()} out): op "prediction", the user, USING TIMESTAMP = event time in
 * microseconds (as udfs/cassandra_rows.prediction_write_ts), payload = JSON of the predictions
 * table's columns.
 *
 * <p>Why in the JVM: the Python operator already emits the prediction row for Kafka; deriving the
 * Cassandra request from it here saves a JSON encoding and a second Python-to-Java conversion per
 * event on the Python thread, the job's scarcest resource (one GIL per TaskManager).
 */
public final class PredictionWrites implements MapFunction<Row, Row> {
  private static final long serialVersionUID = 1L;
  private final String[] columns;
  private final int[] positions;
  private final int userPos;
  private final int eventTimePos;

  /**
   * @param fields prediction.avsc field names in row order
   * @param columns columns of the predictions table (schemas/cassandra.cql), each one a field
   */
  public PredictionWrites(List<String> fields, List<String> columns) {
    this.columns = columns.toArray(new String[0]);
    this.positions = new int[columns.size()];
    List<String> missing = new ArrayList<>();
    for (int i = 0; i < columns.size(); i++) {
      positions[i] = fields.indexOf(columns.get(i));
      if (positions[i] < 0) {
        missing.add(columns.get(i));
      }
    }
    if (!missing.isEmpty()) {
      throw new IllegalArgumentException("predictions columns " + missing + " are not fields of " + fields);
    }
    this.userPos = fields.indexOf("user_id");
    this.eventTimePos = fields.indexOf("event_time");
    if (userPos < 0 || eventTimePos < 0) {
      throw new IllegalArgumentException("a prediction row needs user_id and event_time: " + fields);
    }
  }

  @Override
  public Row map(Row prediction) {
    StringBuilder sb = new StringBuilder(256);
    sb.append('{');
    for (int i = 0; i < columns.length; i++) {
      if (i > 0) {
        sb.append(',');
      }
      Json.string(sb, columns[i]);
      sb.append(':');
      Json.append(sb, prediction.getField(positions[i]));
    }
    sb.append('}');
    long eventTime = ((Number) prediction.getField(eventTimePos)).longValue();
    return Row.of("prediction", prediction.getField(userPos), eventTime * 1000L, sb.toString());
  }
}
