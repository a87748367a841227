package dev.profileengine.glue;

import java.nio.charset.StandardCharsets;
import java.util.Base64;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * Turns each record of a control topic (the compacted models topic) into a control record for
 * {@link ControlFanout}: Row(payload) with payload {@code {"<kind>": {"key": "<utf-8 key or null>",
 * "value": "<base64 of the value, or null for a tombstone>", "offset": N}}}.
 *
 * <p>The value is not decoded here: the profile operator validates a model with the same Python
 * code as the publisher (udfs.model_registry), and base64 keeps the Avro bytes intact through the
 * string-typed batch channel. Never throws: every record, even one Python will reject, reaches the
 * operator, which logs and counts the rejection.
 */
public class ControlRecordDeserializer implements KafkaRecordDeserializationSchema<Row> {
  private static final long serialVersionUID = 1L;
  private final String kind;

  public ControlRecordDeserializer(String kind) {
    if (kind == null || kind.isEmpty()) {
      throw new IllegalArgumentException("a control record needs a kind");
    }
    this.kind = kind;
  }

  /** The payload of one record (also used by the tests). */
  public static String payload(String kind, byte[] key, byte[] value, long offset) {
    StringBuilder sb = new StringBuilder(64 + (value == null ? 0 : value.length * 4 / 3 + 4));
    sb.append('{');
    Json.string(sb, kind);
    sb.append(":{\"key\":");
    // a key that is not UTF-8 decodes with replacement characters: the registry rejects it by name
    Json.append(sb, key == null ? null : new String(key, StandardCharsets.UTF_8));
    sb.append(",\"value\":");
    Json.append(sb, value == null ? null : Base64.getEncoder().encodeToString(value));
    sb.append(",\"offset\":").append(offset).append("}}");
    return sb.toString();
  }

  @Override
  public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Row> out) {
    out.collect(Row.of(payload(kind, record.key(), record.value(), record.offset())));
  }

  @Override
  public TypeInformation<Row> getProducedType() {
    return new RowTypeInfo(new TypeInformation<?>[] {Types.STRING}, new String[] {"payload"});
  }
}
