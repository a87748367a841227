package dev.profileengine.glue;

import java.time.Duration;
import org.apache.flink.api.common.eventtime.SerializableTimestampAssigner;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.types.Row;

/** Event time = the event's event_time field. Rejected records carry no event time and must not
 * move the watermark, so they get Long.MIN_VALUE. */
public class EventTimeAssigner implements SerializableTimestampAssigner<Row> {
  private static final long serialVersionUID = 1L;
  private final int eventTimeIndex;
  private final int reasonIndex;

  public EventTimeAssigner(int eventTimeIndex, int reasonIndex) {
    this.eventTimeIndex = eventTimeIndex;
    this.reasonIndex = reasonIndex;
  }

  @Override
  public long extractTimestamp(Row row, long recordTimestamp) {
    Object t = row.getField(eventTimeIndex);
    if (row.getField(reasonIndex) != null || t == null) {
      return Long.MIN_VALUE;
    }
    return (Long) t;
  }

  /** Bounded out-of-orderness per Kafka partition (applied inside the source), with idleness. */
  public static WatermarkStrategy<Row> strategy(String eventSchemaJson, long maxOutOfOrdernessMs, long idleMs) {
    org.apache.avro.Schema s = AvroRows.parse(eventSchemaJson);
    int n = s.getFields().size();
    EventTimeAssigner assigner = new EventTimeAssigner(AvroRows.fieldIndex(s, "event_time"), n);
    return WatermarkStrategy.<Row>forBoundedOutOfOrderness(Duration.ofMillis(maxOutOfOrdernessMs))
        .withTimestampAssigner(assigner)
        .withIdleness(Duration.ofMillis(idleMs));
  }
}
