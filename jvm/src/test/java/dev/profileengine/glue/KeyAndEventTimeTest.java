package dev.profileengine.glue;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;

import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** RowFieldKey (Kafka keys of the sinks) and EventTimeAssigner (event time in the source). */
class KeyAndEventTimeTest {
  @Test
  void keyIsTheFieldAsUtf8BytesAsTheyAreOrNull() {
    RowFieldKey key = new RowFieldKey(1);
    assertArrayEquals("ü-7".getBytes(UTF_8), key.serialize(Row.of("x", "ü-7")));
    byte[] raw = {(byte) 0xff, 0};
    assertSame(raw, key.serialize(Row.of("x", raw)), "a dead letter's key goes out as it came in");
    assertNull(key.serialize(Row.of("x", null)), "a null key stays null: no empty-key partitioning");
  }

  @Test
  void eventTimeIsTheEventsFieldAndRejectedRowsDoNotMoveTheWatermark() throws Exception {
    int n = EventDeserializerTest.N;
    EventTimeAssigner assigner = new EventTimeAssigner(
        AvroRows.fieldIndex(EventDeserializerTest.EVENT, "event_time"), n);
    Row valid = EventDeserializerTest.one(EventDeserializerTest.encode("event_time", 1_600_000_000_123L));
    assertEquals(1_600_000_000_123L, assigner.extractTimestamp(valid, 5L));
    Row rejected = EventDeserializerTest.one(EventDeserializerTest.encode("event_type", "click"));
    assertEquals(Long.MIN_VALUE, assigner.extractTimestamp(rejected, 5L));
  }

  @Test
  void strategyReadsTheFieldPositionsFromTheSchema() throws Exception {
    // built from the schema as the job does; a wrong index would return another field or throw
    var ts = EventTimeAssigner.strategy(EventDeserializerTest.EVENT_AVSC, 1000, 5000)
        .createTimestampAssigner(null);
    Row valid = EventDeserializerTest.one(EventDeserializerTest.encode("event_time", 1_500_000_000_000L));
    assertEquals(1_500_000_000_000L, ts.extractTimestamp(valid, 5L));
    Row rejected = EventDeserializerTest.one(new byte[0]);
    assertEquals(Long.MIN_VALUE, ts.extractTimestamp(rejected, 5L));
  }
}
