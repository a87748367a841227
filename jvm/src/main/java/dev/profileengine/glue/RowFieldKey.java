package dev.profileengine.glue;

import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.types.Row;

/** Kafka key = one row field: a string as UTF-8, bytes as they are (null stays null). */
public class RowFieldKey implements SerializationSchema<Row> {
  private static final long serialVersionUID = 1L;
  private final int index;

  public RowFieldKey(int index) {
    this.index = index;
  }

  @Override
  public byte[] serialize(Row row) {
    Object v = row.getField(index);
    if (v == null) {
      return null;
    }
    if (v instanceof byte[]) {
      return (byte[]) v;
    }
    return v.toString().getBytes(StandardCharsets.UTF_8);
  }
}
