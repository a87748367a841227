package dev.profileengine.glue;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Queue;
import org.apache.flink.streaming.api.operators.ProcessOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** Rows straight from EventDeserializer, split by the real operator in Flink's test harness. */
class SplitInvalidTest {
  static final String EVENT_AVSC = EventDeserializerTest.EVENT_AVSC;
  static final String DLQ_AVSC = TestSchemas.text("dead_letter.avsc");
  static final int N = EventDeserializerTest.N;

  static Row deserialize(byte[] key, byte[] value) throws Exception {
    return EventDeserializerTest.one(new EventDeserializer(EVENT_AVSC), key, value);
  }

  /** (main output, dead letters) of the rows, in order. */
  static List<List<Row>> split(Row... rows) throws Exception {
    SplitInvalid fn = new SplitInvalid(EVENT_AVSC, DLQ_AVSC);
    try (OneInputStreamOperatorTestHarness<Row, Row> h =
        new OneInputStreamOperatorTestHarness<>(new ProcessOperator<>(fn))) {
      h.open();
      for (Row r : rows) {
        h.processElement(r, 1L);
      }
      List<Row> dead = new ArrayList<>();
      Queue<StreamRecord<Row>> side = h.getSideOutput(fn.getDlqTag());
      if (side != null) {
        side.forEach(r -> dead.add(r.getValue()));
      }
      return List.of(new ArrayList<>(h.extractOutputValues()), dead);
    }
  }

  @Test
  void validEventLeavesAsUserIdAndEventRow() throws Exception {
    Row in = deserialize("u-7".getBytes(UTF_8), EventDeserializerTest.encode("user_id", "u-7", "event_id", "e-1"));
    List<List<Row>> out = split(in);
    assertEquals(List.of(), out.get(1));
    assertEquals(1, out.get(0).size());
    Row keyed = out.get(0).get(0);
    assertEquals(2, keyed.getArity());
    assertEquals("u-7", keyed.getField(0));
    Row event = (Row) keyed.getField(1);
    assertEquals(N, event.getArity(), "the event row holds the event's fields only, no DLQ columns");
    for (int i = 0; i < N; i++) {
      assertEquals(in.getField(i), event.getField(i), EventDeserializerTest.EVENT.getFields().get(i).name());
    }
  }

  @Test
  void rejectedRecordLeavesAsADeadLetterInDeadLetterOrder() throws Exception {
    byte[] key = "k-1".getBytes(UTF_8);
    byte[] value = EventDeserializerTest.encode("event_type", "click");
    List<List<Row>> out = split(deserialize(key, value));
    assertEquals(List.of(), out.get(0));
    assertEquals(1, out.get(1).size());
    Row dead = out.get(1).get(0);
    assertEquals(AvroRows.parse(DLQ_AVSC).getFields().size(), dead.getArity());
    assertEquals("unknown_event_type", dead.getField(0));
    assertTrue(((String) dead.getField(1)).contains("click"));
    assertEquals(EventDeserializerTest.TOPIC_NAME, dead.getField(2));
    assertEquals(EventDeserializerTest.PARTITION_NO, dead.getField(3));
    assertEquals(EventDeserializerTest.OFFSET_NO, dead.getField(4));
    assertEquals(EventDeserializerTest.KAFKA_TS, dead.getField(5));
    assertArrayEquals(key, (byte[]) dead.getField(6));
    assertArrayEquals(value, (byte[]) dead.getField(7));
  }

  @Test
  void aMixedStreamIsSplitWithoutLosingOrReorderingRecords() throws Exception {
    Row a = deserialize(null, EventDeserializerTest.encode("event_id", "a"));
    Row bad1 = deserialize(null, new byte[0]);
    Row b = deserialize(null, EventDeserializerTest.encode("event_id", "b", "event_type", "erase"));
    Row bad2 = deserialize(null, EventDeserializerTest.encodeRawString("user_id", new byte[] {(byte) 0xff}));
    List<List<Row>> out = split(a, bad1, b, bad2);
    int eventId = EventDeserializerTest.EVENT.getField("event_id").pos();
    assertEquals(List.of("a", "b"), out.get(0).stream().map(r -> ((Row) r.getField(1)).getField(eventId)).toList());
    assertEquals(List.of("empty_record", "invalid_utf8"), out.get(1).stream().map(r -> r.getField(0)).toList());
  }

  @Test
  void deadLetterSchemaCheckAcceptsTheRealSchemaAndRejectsAReorderedOne() {
    SplitInvalid.checkDeadLetterSchema(DLQ_AVSC);
    String swapped = DLQ_AVSC.replace("\"name\": \"reason\"", "\"name\": \"TMP\"")
        .replace("\"name\": \"detail\"", "\"name\": \"reason\"")
        .replace("\"name\": \"TMP\"", "\"name\": \"detail\"");
    IllegalStateException e = assertThrows(IllegalStateException.class,
        () -> SplitInvalid.checkDeadLetterSchema(swapped));
    assertTrue(e.getMessage().contains("must be reason"), e.getMessage());
  }
}
