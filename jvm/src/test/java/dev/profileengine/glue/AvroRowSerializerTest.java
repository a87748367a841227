package dev.profileengine.glue;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.flink.types.Row;
import org.apache.flink.util.InstantiationUtil;
import org.junit.jupiter.api.Test;

/** Rows encoded by position against the schemas in schemas/, decoded back with plain Avro. */
class AvroRowSerializerTest {
  static final String PREDICTION_AVSC = TestSchemas.text("prediction.avsc");
  static final String DLQ_AVSC = TestSchemas.text("dead_letter.avsc");

  static GenericRecord decode(String avsc, byte[] bytes) throws IOException {
    Schema schema = AvroRows.parse(avsc);
    BinaryDecoder in = DecoderFactory.get().binaryDecoder(bytes, null);
    GenericRecord rec = new GenericDatumReader<GenericRecord>(schema).read(null, in);
    assertTrue(in.isEnd(), "the encoding holds one record and nothing after it");
    return rec;
  }

  static Row prediction(Object features) {
    return Row.of("u-1", "e-1", "purchase", 1_511_600_000_000L, 0.625, "active", "high", 3,
        "frequent buyers", "model-v7", "segments-v2", 1_700_000_000_000L, features, true, 9);
  }

  @Test
  void predictionRoundTrip() throws Exception {
    AvroRowSerializer ser = new AvroRowSerializer(PREDICTION_AVSC);
    ser.open(null);
    Row row = prediction(new Double[] {0.5, -1.25, 3.0});
    GenericRecord rec = decode(PREDICTION_AVSC, ser.serialize(row));
    Schema schema = rec.getSchema();
    assertEquals(row.getArity(), schema.getFields().size(), "the row above must fill every field of prediction.avsc");
    for (Schema.Field f : schema.getFields()) {
      Object got = rec.get(f.pos());
      Object want = row.getField(f.pos());
      if (want instanceof Double[]) {
        assertEquals(List.of((Object[]) want), got, f.name());
      } else if (want instanceof String) {
        assertEquals(want, got.toString(), f.name());
      } else {
        assertEquals(want, got, f.name());
      }
    }
  }

  @Test
  void featuresMayComeAsPrimitiveOrBoxedArrayOrBeEmpty() throws Exception {
    AvroRowSerializer ser = new AvroRowSerializer(PREDICTION_AVSC);
    int features = AvroRows.fieldIndex(AvroRows.parse(PREDICTION_AVSC), "features");
    byte[] boxed = ser.serialize(prediction(new Double[] {1.5, 2.5}));
    byte[] primitive = ser.serialize(prediction(new double[] {1.5, 2.5}));
    assertArrayEquals(boxed, primitive);
    assertEquals(List.of(1.5, 2.5), decode(PREDICTION_AVSC, boxed).get(features));
    assertEquals(List.of(), decode(PREDICTION_AVSC, ser.serialize(prediction(new Double[0]))).get(features));
  }

  @Test
  void deadLetterRoundTripKeepsTheBytesExactly() throws Exception {
    AvroRowSerializer ser = new AvroRowSerializer(DLQ_AVSC);
    byte[] payload = {(byte) 0xff, 0x00, 0x01, (byte) 0x80};
    Row row = Row.of("invalid_utf8", "user_id is not valid UTF-8", "user-events", 2, 99L, 1_700_000_000_000L,
        "k".getBytes(UTF_8), payload);
    GenericRecord rec = decode(DLQ_AVSC, ser.serialize(row));
    assertEquals("invalid_utf8", rec.get("reason").toString());
    assertEquals("user_id is not valid UTF-8", rec.get("detail").toString());
    assertEquals("user-events", rec.get("source_topic").toString());
    assertEquals(2, rec.get("source_partition"));
    assertEquals(99L, rec.get("source_offset"));
    assertEquals(1_700_000_000_000L, rec.get("source_timestamp"));
    assertEquals(ByteBuffer.wrap("k".getBytes(UTF_8)), rec.get("key"));
    assertEquals(ByteBuffer.wrap(payload), rec.get("payload"));
  }

  @Test
  void deadLetterOfATombstoneHasNullKeyAndPayload() throws Exception {
    Row row = Row.of("empty_record", "record value is null or empty", "user-events", 0, 1L, 2L, null, null);
    GenericRecord rec = decode(DLQ_AVSC, new AvroRowSerializer(DLQ_AVSC).serialize(row));
    assertNull(rec.get("key"));
    assertNull(rec.get("payload"));
  }

  @Test
  void anEventRowEncodesToTheBytesItWasDecodedFrom() throws Exception {
    // the late topic carries events "unchanged": decode + encode must be the identity
    for (byte[] original : List.of(
        EventDeserializerTest.encode(),
        EventDeserializerTest.encode("event_type", "purchase", "price", 12.5, "quantity", 3, "session_id", "s",
            "shop_id", null, "user_id", "ü-😀"))) {
      Row row = EventDeserializerTest.one(original);
      assertNull(row.getField(EventDeserializerTest.REASON));
      Row event = Row.project(row, range(EventDeserializerTest.N));
      assertArrayEquals(original, new AvroRowSerializer(EventDeserializerTest.EVENT_AVSC).serialize(event));
    }
  }

  @Test
  void aRowOfTheWrongArityIsRefusedWithBothCounts() {
    AvroRowSerializer ser = new AvroRowSerializer(DLQ_AVSC);
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> ser.serialize(Row.of("reason", "detail")));
    assertTrue(e.getMessage().contains("row arity 2 != 8"), e.getMessage());
  }

  @Test
  void eachResultIsItsOwnArrayAndTheSerializerSurvivesJavaSerialization() throws Exception {
    AvroRowSerializer ser = InstantiationUtil.clone(new AvroRowSerializer(DLQ_AVSC));
    byte[] first = ser.serialize(Row.of("a", "d", "t", 0, 0L, 0L, null, null));
    byte[] copy = first.clone();
    ser.serialize(Row.of("bbbbbbbb", "dddddddd", "tttt", 1, 1L, 1L, new byte[] {1}, new byte[] {2}));
    assertArrayEquals(copy, first, "a later row must not overwrite an earlier result");
  }

  static int[] range(int n) {
    int[] out = new int[n];
    for (int i = 0; i < n; i++) {
      out[i] = i;
    }
    return out;
  }
}
