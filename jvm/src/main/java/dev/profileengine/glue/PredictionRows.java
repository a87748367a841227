package dev.profileengine.glue;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.List;
import org.apache.avro.Schema;
import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Splits the profile operator's per-batch output, Row(payload) with payload a JSON array of
 * prediction rows (each a JSON array in prediction.avsc field order), into one typed Row per
 * prediction ({@link #rowType}).
 *
 * <p>Why: handing each prediction to the JVM as its own Row made pemja convert every field of every
 * row on the Python thread, the job's scarcest resource (one GIL per TaskManager); one JSON string
 * per batch crosses as one object, encoded by CPython's C encoder, and is parsed here.
 */
public final class PredictionRows implements FlatMapFunction<Row, Row> {
  private static final long serialVersionUID = 1L;
  private final String avsc;
  private transient Schema.Type[] kinds;

  public PredictionRows(String predictionAvsc) {
    this.avsc = predictionAvsc;
    kinds(); // fail at job build time, not in the TaskManager
  }

  public static RowTypeInfo rowType(String predictionAvsc) {
    return AvroRows.rowType(AvroRows.parse(predictionAvsc));
  }

  private Schema.Type[] kinds() {
    if (kinds == null) {
      List<Schema.Field> fields = AvroRows.parse(avsc).getFields();
      Schema.Type[] k = new Schema.Type[fields.size()];
      for (int i = 0; i < k.length; i++) {
        Schema s = AvroRows.nonNull(fields.get(i).schema());
        AvroRows.flinkType(s); // the same types the row type declares, or refused
        k[i] = s.getType();
      }
      kinds = k;
    }
    return kinds;
  }

  @Override
  public void flatMap(Row batch, Collector<Row> out) {
    Schema.Type[] k = kinds();
    JsonNode rows = JsonColumns.parse((String) batch.getField(0));
    if (rows == null || !rows.isArray()) {
      throw new IllegalArgumentException("a predictions payload is a JSON array of rows");
    }
    for (JsonNode r : rows) {
      if (!r.isArray() || r.size() != k.length) {
        throw new IllegalArgumentException("a prediction row has " + k.length + " fields, got " + r);
      }
      Row row = new Row(k.length);
      for (int i = 0; i < k.length; i++) {
        row.setField(i, AvroRows.fromJson(k[i], r.get(i)));
      }
      out.collect(row);
    }
  }
}
