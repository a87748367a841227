package dev.profileengine.glue;

import org.apache.avro.Schema;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/** Valid rows continue as (user_id, event) pairs, the event being a row of user_event.avsc: the
 * shape PyFlink's keyed operators read, so the key is extracted here in the JVM and no Python
 * operator runs before the keyBy. Rejected rows leave through the DLQ side output as rows of
 * dead_letter.avsc. Stateless, JVM only. */
public class SplitInvalid extends ProcessFunction<Row, Row> {
  private static final long serialVersionUID = 1L;
  private final int nEventFields;
  private final int userIndex;
  private final OutputTag<Row> dlqTag;
  private transient Counter recordsIn;
  private transient Counter deadLetters;
  private transient volatile long watermark;

  public SplitInvalid(String eventSchemaJson, String deadLetterSchemaJson) {
    Schema event = AvroRows.parse(eventSchemaJson);
    this.nEventFields = event.getFields().size();
    this.userIndex = AvroRows.fieldIndex(event, "user_id");
    this.dlqTag = dlqTag(deadLetterSchemaJson);
  }

  public static OutputTag<Row> dlqTag(String deadLetterSchemaJson) {
    return new OutputTag<>("dead-letters", AvroRows.rowType(AvroRows.parse(deadLetterSchemaJson)));
  }

  public static RowTypeInfo eventType(String eventSchemaJson) {
    return AvroRows.rowType(AvroRows.parse(eventSchemaJson));
  }

  /** Type of the main output: Row(f0 = user_id, f1 = event row). */
  public static RowTypeInfo keyedEventType(String eventSchemaJson) {
    return new RowTypeInfo(org.apache.flink.api.common.typeinfo.Types.STRING, eventType(eventSchemaJson));
  }

  public OutputTag<Row> getDlqTag() {
    return dlqTag;
  }

  @Override
  public void open(OpenContext openContext) throws Exception {
    watermark = Long.MIN_VALUE;
    MetricGroup group = getRuntimeContext().getMetricGroup().addGroup("profile_engine");
    recordsIn = group.counter("records_in");
    deadLetters = group.counter("dead_letters");
    // how far event time (the watermark) trails the wall clock: the consumer's event-time lag
    group.gauge("event_time_lag_ms",
        () -> watermark == Long.MIN_VALUE ? -1L : System.currentTimeMillis() - watermark);
  }

  @Override
  public void processElement(Row row, Context ctx, Collector<Row> out) {
    int n = nEventFields;
    recordsIn.inc();
    watermark = ctx.timerService().currentWatermark();
    if (row.getField(n) == null) {
      Row event = new Row(n);
      for (int i = 0; i < n; i++) {
        event.setField(i, row.getField(i));
      }
      out.collect(Row.of(row.getField(userIndex), event));
    } else {
      // dead_letter.avsc order: reason, detail, source_topic, source_partition, source_offset,
      // source_timestamp, key, payload; the same order as EventDeserializer.EXTRA_NAMES.
      Row dead = new Row(8);
      for (int i = 0; i < 8; i++) {
        dead.setField(i, row.getField(n + i));
      }
      ctx.output(dlqTag, dead);
      deadLetters.inc();
    }
  }

  /** Checks at job build time that dead_letter.avsc still lists the extra columns in order. */
  public static void checkDeadLetterSchema(String deadLetterSchemaJson) {
    Schema s = AvroRows.parse(deadLetterSchemaJson);
    String[] expected = {"reason", "detail", "source_topic", "source_partition", "source_offset",
        "source_timestamp", "key", "payload"};
    for (int i = 0; i < expected.length; i++) {
      if (!s.getFields().get(i).name().equals(expected[i])) {
        throw new IllegalStateException("dead_letter.avsc field " + i + " must be " + expected[i]);
      }
    }
  }
}
