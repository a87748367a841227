package dev.profileengine.glue;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.avro.Schema;
import org.apache.avro.util.Utf8;
import org.apache.flink.api.common.functions.util.ListCollector;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.types.Row;
import org.apache.flink.util.InstantiationUtil;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.record.TimestampType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Every bad-input kind of tests/integration/bad_records.py that the deserializer decides, with its
 * exact reason, plus valid records. The Python integration test sends the same corpus through
 * Kafka; this one pins the reasons without a cluster.
 */
class EventDeserializerTest {
  static final String EVENT_AVSC = TestSchemas.text("user_event.avsc");
  static final Schema EVENT = AvroRows.parse(EVENT_AVSC);
  static final int N = EVENT.getFields().size();
  static final int REASON = N;
  static final int DETAIL = N + 1;
  static final int TOPIC = N + 2;
  static final int PARTITION = N + 3;
  static final int OFFSET = N + 4;
  static final int TIMESTAMP = N + 5;
  static final int RAW_KEY = N + 6;
  static final int RAW_VALUE = N + 7;

  static final String TOPIC_NAME = "user-events";
  static final int PARTITION_NO = 3;
  static final long OFFSET_NO = 12_345L;
  static final long KAFKA_TS = 1_700_000_000_123L;
  static final long DAY = 86_400_000L;
  static final int MAX_LEN = ((Number) EVENT.getObjectProp("x-max-string-length")).intValue();

  /** Marks a kind whose reason is incidental (bytes of another layout): any reason will do. */
  static final String ANY = "*";

  /** The base event of bad_records.py, as field -> value. */
  static Map<String, Object> event(Object... overrides) {
    Map<String, Object> e = new LinkedHashMap<>();
    e.put("event_id", "bad-0");
    e.put("user_id", "bad-user");
    e.put("event_type", "view");
    e.put("item_id", "i1");
    e.put("category_id", "c1");
    e.put("price", null);
    e.put("quantity", null);
    e.put("event_time", 1_511_600_000_000L);
    e.put("session_id", null);
    e.put("shop_id", "test");
    for (int i = 0; i < overrides.length; i += 2) {
      if (!e.containsKey((String) overrides[i])) {
        throw new IllegalArgumentException("no field " + overrides[i]);
      }
      e.put((String) overrides[i], overrides[i + 1]);
    }
    return e;
  }

  static byte[] encode(Object... overrides) {
    return TestSchemas.encode(EVENT, event(overrides));
  }

  /** A string field holding exactly these bytes, which need not be UTF-8. */
  static byte[] encodeRawString(String field, byte[] raw) {
    return encode(field, new Utf8(raw));
  }

  static byte[] concat(byte[] a, byte[] b) {
    byte[] out = Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, out, a.length, b.length);
    return out;
  }

  /** user_event.avsc as another producer has it: the same fields with some changed or removed. */
  static Schema writerSchema(String nullableField, String... removed) {
    List<Schema.Field> fields = new ArrayList<>();
    for (Schema.Field f : EVENT.getFields()) {
      if (Arrays.asList(removed).contains(f.name())) {
        continue;
      }
      Schema type = f.name().equals(nullableField)
          ? Schema.createUnion(Schema.create(Schema.Type.NULL), Schema.create(Schema.Type.STRING))
          : f.schema();
      fields.add(new Schema.Field(f, type));
    }
    return Schema.createRecord(EVENT.getName(), null, EVENT.getNamespace(), false, fields);
  }

  static byte[] predictionBytes() {
    Schema prediction = TestSchemas.schema("prediction.avsc");
    Map<String, Object> p = new LinkedHashMap<>();
    for (Schema.Field f : prediction.getFields()) {
      switch (AvroRows.nonNull(f.schema()).getType()) {
        case STRING: p.put(f.name(), "x"); break;
        case LONG: p.put(f.name(), 1L); break;
        case INT: p.put(f.name(), 1); break;
        case DOUBLE: p.put(f.name(), 0.5); break;
        case ARRAY: p.put(f.name(), List.of()); break;
        case BOOLEAN: p.put(f.name(), true); break;
        default: throw new IllegalStateException("prediction.avsc has a new type: " + f);
      }
    }
    return TestSchemas.encode(prediction, p);
  }

  static List<Row> deserialize(EventDeserializer d, byte[] key, byte[] value) throws Exception {
    ConsumerRecord<byte[], byte[]> rec = new ConsumerRecord<>(TOPIC_NAME, PARTITION_NO, OFFSET_NO, KAFKA_TS,
        TimestampType.CREATE_TIME, key == null ? -1 : key.length, value == null ? -1 : value.length, key, value,
        new RecordHeaders(), Optional.empty());
    List<Row> out = new ArrayList<>();
    d.deserialize(rec, new ListCollector<>(out));
    return out;
  }

  static Row one(EventDeserializer d, byte[] key, byte[] value) throws Exception {
    List<Row> rows = deserialize(d, key, value);
    assertEquals(1, rows.size(), "every record becomes exactly one row");
    Row row = rows.get(0);
    assertEquals(N + EventDeserializer.EXTRA_NAMES.length, row.getArity());
    assertEquals(TOPIC_NAME, row.getField(TOPIC));
    assertEquals(PARTITION_NO, row.getField(PARTITION));
    assertEquals(OFFSET_NO, row.getField(OFFSET));
    assertEquals(KAFKA_TS, row.getField(TIMESTAMP));
    return row;
  }

  static Row one(byte[] value) throws Exception {
    return one(new EventDeserializer(EVENT_AVSC), "k".getBytes(UTF_8), value);
  }

  /** (description, value, reason or ANY, a fragment the detail must contain or null) */
  static Stream<Arguments> badRecords() {
    long now = System.currentTimeMillis();
    byte[] good = encode("event_id", "bad-trunc");
    return Stream.of(
        // the kinds of tests/integration/bad_records.py, in its order
        bad("garbage bytes", bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'g', 'a', 'r'),
            "avro_decode_error", null),
        bad("truncated record", Arrays.copyOf(good, good.length / 2), "avro_decode_error", null),
        bad("empty value", new byte[0], "empty_record", "empty"),
        bad("tombstone (null value)", null, "empty_record", "null"),
        bad("valid record plus garbage", concat(good, "\0\1extra".getBytes(UTF_8)), "trailing_bytes", "bytes left"),
        bad("record of another schema", predictionBytes(), ANY, null),
        bad("unknown type", encode("event_type", "click"), "unknown_event_type", "'click'"),
        bad("empty user_id", encode("user_id", ""), "empty_field", "user_id"),
        bad("blank event_id", encode("event_id", "   "), "empty_field", "event_id"),
        bad("negative price", encode("event_type", "purchase", "price", -5.0, "quantity", 1), "invalid_price", "below"),
        bad("NaN price", encode("event_type", "purchase", "price", Double.NaN, "quantity", 1), "invalid_price",
            "not finite"),
        bad("absurd quantity", encode("event_type", "purchase", "price", 1.0, "quantity", 10_000_000),
            "invalid_quantity", "above"),
        bad("zero quantity", encode("event_type", "purchase", "price", 1.0, "quantity", 0), "invalid_quantity",
            "below"),
        bad("30 days in the future", encode("event_time", now + 30 * DAY), "invalid_event_time", "future"),
        bad("year 1990", encode("event_time", 631_152_000_000L), "invalid_event_time", "below"),
        bad("10k-char id", encode("event_id", "x".repeat(10_000)), "field_too_long", "event_id has 10000 chars"),
        bad("empty category", encode("category_id", ""), "empty_field", "category_id"),
        bad("absurd price", encode("event_type", "purchase", "price", 1e12, "quantity", 1), "invalid_price", "above"),
        bad("infinite price", encode("event_type", "purchase", "price", Double.POSITIVE_INFINITY, "quantity", 1),
            "invalid_price", "not finite"),
        bad("negative quantity", encode("event_type", "purchase", "price", 1.0, "quantity", -3), "invalid_quantity",
            "below"),
        bad("300-char item id", encode("item_id", "i".repeat(300)), "field_too_long", "item_id"),
        bad("null user_id (writer schema with a nullable user_id)",
            TestSchemas.encode(writerSchema("user_id"), event("user_id", null)), ANY, null),
        bad("required fields missing (older writer schema)",
            TestSchemas.encode(writerSchema(null, "item_id", "category_id"),
                withoutKeys(event(), "item_id", "category_id")), ANY, null),
        bad("500 kB shop id", encode("shop_id", "s".repeat(500_000)), "field_too_long", "shop_id"),
        bad("300 non-ASCII chars", encode("event_id", "é".repeat(300)), "field_too_long", "300 chars"),
        bad("negative timestamp", encode("event_time", -1L), "invalid_event_time", "below"),
        bad("epoch 0", encode("event_time", 0L), "invalid_event_time", "below"),
        bad("year 9999", encode("event_time", 253_402_300_799_000L), "invalid_event_time", "future"),
        bad("whitespace item id", encode("item_id", "\t \n"), "empty_field", "item_id"),
        bad("invalid UTF-8 in event_id", encodeRawString("event_id", bytes('b', 'a', 'd', 0xc3, '(')),
            "invalid_utf8", "event_id"),
        bad("invalid UTF-8 in shop_id", encodeRawString("shop_id", bytes('s', 'h', 'o', 'p', '-', 0xff)),
            "invalid_utf8", "shop_id"),
        // beyond the corpus: the edges of the same rules
        bad("blank optional session_id", encode("session_id", " "), "empty_field", "session_id"),
        bad("257 chars", encode("user_id", "u".repeat(MAX_LEN + 1)), "field_too_long", "user_id"),
        bad("price just above the maximum", encode("price", 1_000_000.01), "invalid_price", "above"),
        bad("quantity just above the maximum", encode("quantity", 100_001), "invalid_quantity", "above"),
        bad("1 ms before the minimum event time", encode("event_time", 946_684_799_999L), "invalid_event_time",
            "below"),
        bad("2 days ahead", encode("event_time", now + 2 * DAY), "invalid_event_time", "future"),
        bad("event type differs in case", encode("event_type", "View"), "unknown_event_type", "View"),
        bad("negative infinite price", encode("price", Double.NEGATIVE_INFINITY), "invalid_price", "not finite"));
  }

  static Arguments bad(String what, byte[] value, String reason, String detailFragment) {
    return Arguments.of(what, value, reason, detailFragment);
  }

  static byte[] bytes(int... b) {
    byte[] out = new byte[b.length];
    for (int i = 0; i < b.length; i++) {
      out[i] = (byte) b[i];
    }
    return out;
  }

  static Map<String, Object> withoutKeys(Map<String, Object> m, String... keys) {
    Arrays.asList(keys).forEach(m::remove);
    return m;
  }

  @ParameterizedTest(name = "{0} -> {2}")
  @MethodSource("badRecords")
  void badRecordGoesToTheDlqWithItsReasonAndItsBytesUntouched(
      String what, byte[] value, String reason, String detailFragment) throws Exception {
    byte[] key = "user-42".getBytes(UTF_8);
    byte[] keyCopy = key.clone();
    byte[] valueCopy = value == null ? null : value.clone();

    Row row = one(new EventDeserializer(EVENT_AVSC), key, value);

    String gotReason = (String) row.getField(REASON);
    String detail = (String) row.getField(DETAIL);
    assertNotNull(gotReason, what + ": accepted");
    if (!ANY.equals(reason)) {
      assertEquals(reason, gotReason, what + ": " + detail);
    }
    assertNotNull(detail, what);
    assertFalse(detail.isBlank(), what);
    if (detailFragment != null) {
      assertTrue(detail.contains(detailFragment), what + ": detail '" + detail + "' lacks '" + detailFragment + "'");
    }
    assertArrayEquals(keyCopy, (byte[]) row.getField(RAW_KEY), "raw key");
    assertArrayEquals(valueCopy, (byte[]) row.getField(RAW_VALUE), "raw value");
    for (int i = 0; i < N; i++) {
      assertNull(row.getField(i), what + ": a rejected row carries no event field, " + EVENT.getFields().get(i));
    }
  }

  @Test
  void everyKindOfTheIntegrationCorpusIsHereWithTheSameReason() throws Exception {
    // The Python corpus is the list of kinds the e2e test sends through Kafka; a kind added there
    // without a row here (or with another reason) fails this test. Its tuples end in
    // `reason, "description"),` with reason a string literal or ANY.
    String py = Files.readString(Path.of("..", "tests", "integration", "bad_records.py"));
    Matcher m = Pattern.compile("(ANY|\"([a-z0-9_]+)\"),\\s*\"([^\"]+)\"\\),").matcher(py);
    Map<String, String> corpus = new LinkedHashMap<>();
    while (m.find()) {
      corpus.put(m.group(3), m.group(2) == null ? ANY : m.group(2));
    }
    assertTrue(corpus.size() >= 30, "cannot read the kinds of bad_records.py any more: " + corpus.keySet());
    Map<String, String> here = new LinkedHashMap<>();
    badRecords().forEach(a -> here.put((String) a.get()[0], (String) a.get()[2]));
    for (Map.Entry<String, String> kind : corpus.entrySet()) {
      assertEquals(kind.getValue(), here.get(kind.getKey()), "bad_records.py kind '" + kind.getKey() + "'");
    }
  }

  @Test
  void aNullKeyIsKeptAsNull() throws Exception {
    Row row = one(new EventDeserializer(EVENT_AVSC), null, new byte[0]);
    assertEquals("empty_record", row.getField(REASON));
    assertNull(row.getField(RAW_KEY));
  }

  // ---- invalid UTF-8 -------------------------------------------------------------------------

  /** (field, bytes that are not UTF-8) */
  static Stream<Arguments> invalidUtf8() {
    return Stream.of(
        Arguments.of("event_id", bytes('a', 0x80, 'b')),                   // lone continuation byte
        Arguments.of("user_id", bytes('u', 's', 'e', 'r', 0xc3)),          // sequence cut off at the end
        Arguments.of("item_id", bytes(0xc3, 0x28)),                        // lead byte, no continuation
        Arguments.of("category_id", bytes('c', 0xc0, 0xaf)),               // overlong '/'
        Arguments.of("event_type", bytes('v', 'i', 'e', 'w', 0xed, 0xa0, 0x80)), // encoded surrogate (CESU-8)
        Arguments.of("session_id", bytes('s', 0xf4, 0x90, 0x80, 0x80)),    // above U+10FFFF
        Arguments.of("shop_id", bytes(0xff)),                              // never valid in UTF-8
        Arguments.of("shop_id", bytes('s', 0xef, 0xbf, 0xbd, 0xfe)));      // a real U+FFFD, then a bad byte
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("invalidUtf8")
  void invalidUtf8GoesToTheDlq(String field, byte[] raw) throws Exception {
    byte[] value = encodeRawString(field, raw);
    Row row = one(value);
    assertEquals("invalid_utf8", row.getField(REASON), String.valueOf(row.getField(DETAIL)));
    assertTrue(((String) row.getField(DETAIL)).startsWith(field + " is not valid UTF-8"),
        String.valueOf(row.getField(DETAIL)));
    assertArrayEquals(value, (byte[]) row.getField(RAW_VALUE));
  }

  @Test
  void detailNamesTheOffsetOfTheFirstBadByte() throws Exception {
    // a, b, é (C3 A9), then FF at byte 4
    Row row = one(encodeRawString("event_id", bytes('a', 'b', 0xc3, 0xa9, 0xff, 'c')));
    assertEquals("event_id is not valid UTF-8: malformed byte sequence at byte 4 of 6", row.getField(DETAIL));
  }

  @ParameterizedTest
  @ValueSource(strings = {"café", "\uFFFD", "a\uFFFDb", "😀 user", "日本語", "\u0000x"})
  void validUtf8IsAcceptedAndDecodedExactly(String s) throws Exception {
    // a genuine U+FFFD (EF BF BD) is valid UTF-8 and must not be mistaken for a replacement
    Row row = one(encode("user_id", s, "shop_id", s));
    assertNull(row.getField(REASON), () -> String.valueOf(row.getField(DETAIL)));
    assertEquals(s, row.getField(EVENT.getField("user_id").pos()));
    assertEquals(s, row.getField(EVENT.getField("shop_id").pos()));
  }

  @Test
  void firstMalformedUtf8FindsTheOffset() {
    byte[] valid = "ok é 😀".getBytes(UTF_8);
    assertEquals(-1, EventDeserializer.firstMalformedUtf8(valid, valid.length));
    assertEquals(0, EventDeserializer.firstMalformedUtf8(bytes(0xff, 'a'), 2));
    assertEquals(2, EventDeserializer.firstMalformedUtf8(bytes('a', 'b', 0xe2, 0x82), 4));
    // only the first length bytes count: Utf8 buffers may be longer than their string
    assertEquals(-1, EventDeserializer.firstMalformedUtf8(bytes('a', 'b', 0xff), 2));
  }

  // ---- valid records ---------------------------------------------------------------------------

  static Stream<Arguments> validEvents() {
    long now = System.currentTimeMillis();
    return Stream.of(
        Arguments.of("view, optional fields null", event("event_id", "e-view", "event_type", "view", "shop_id", null)),
        Arguments.of("cart, all fields present", event("event_id", "e-cart", "event_type", "cart", "price", 19.99,
            "quantity", 2, "session_id", "s-1", "shop_id", "shop-9")),
        Arguments.of("fav", event("event_id", "e-fav", "event_type", "fav", "session_id", "s-2")),
        Arguments.of("purchase", event("event_id", "e-buy", "event_type", "purchase", "price", 0.0, "quantity", 1)),
        Arguments.of("erase (control type)", event("event_id", "e-erase", "event_type", "erase", "item_id", "-",
            "category_id", "-")),
        Arguments.of("bounds: maximum price and quantity", event("event_type", "purchase", "price", 1_000_000.0,
            "quantity", 100_000)),
        Arguments.of("bounds: earliest event time", event("event_time", 946_684_800_000L)),
        Arguments.of("bounds: event time 23 h ahead", event("event_time", now + 23 * 3_600_000L)),
        Arguments.of("bounds: 256 chars", event("event_id", "x".repeat(MAX_LEN), "user_id", "é".repeat(MAX_LEN))),
        Arguments.of("padded but not blank", event("item_id", " i1 ")));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("validEvents")
  void validEventIsDecodedFieldForField(String what, Map<String, Object> e) throws Exception {
    Row row = one(TestSchemas.encode(EVENT, e));
    assertNull(row.getField(REASON), () -> what + ": " + row.getField(DETAIL));
    assertNull(row.getField(DETAIL));
    assertNull(row.getField(RAW_KEY), "valid rows do not carry the raw bytes");
    assertNull(row.getField(RAW_VALUE));
    for (Schema.Field f : EVENT.getFields()) {
      assertEquals(e.get(f.name()), row.getField(f.pos()), what + ": " + f.name());
    }
    // the Java types the row type declares (String, not Avro's Utf8)
    RowTypeInfo type = EventDeserializer.producedRowType(EVENT);
    for (int i = 0; i < N; i++) {
      Object v = row.getField(i);
      if (v != null) {
        assertEquals(type.getTypeAt(i).getTypeClass(), v.getClass(), type.getFieldNames()[i]);
      }
    }
  }

  @Test
  void everyTypeOfTheSchemaIsAccepted() throws Exception {
    List<String> types = new ArrayList<>();
    for (String prop : new String[] {"x-event-types", "x-control-types"}) {
      ((List<?>) EVENT.getObjectProp(prop)).forEach(t -> types.add((String) t));
    }
    assertTrue(types.containsAll(List.of("view", "cart", "fav", "purchase", "erase")), types::toString);
    for (String t : types) {
      Row row = one(encode("event_type", t));
      assertNull(row.getField(REASON), t);
      assertEquals(t, row.getField(EVENT.getField("event_type").pos()));
    }
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  @Test
  void oneInstanceDecodesAGoodRecordAfterEveryKindOfBadOne() throws Exception {
    // the decoder is reused across records: a failed decode must leave nothing behind
    EventDeserializer d = new EventDeserializer(EVENT_AVSC);
    List<Arguments> bad = badRecords().collect(Collectors.toList());
    for (Arguments a : bad) {
      Row rejected = one(d, null, (byte[]) a.get()[1]);
      assertNotNull(rejected.getField(REASON), (String) a.get()[0]);
      Row row = one(d, null, encode("event_id", "after-" + a.get()[0]));
      assertNull(row.getField(REASON), () -> a.get()[0] + " -> " + row.getField(DETAIL));
      assertEquals("after-" + a.get()[0], row.getField(EVENT.getField("event_id").pos()));
    }
  }

  @Test
  void survivesJavaSerializationAsFlinkShipsIt() throws Exception {
    EventDeserializer copy = InstantiationUtil.clone(new EventDeserializer(EVENT_AVSC));
    TypeInformation<Row> type = copy.getProducedType();
    assertEquals(N + EventDeserializer.EXTRA_NAMES.length, type.getArity());
    Row ok = one(copy, null, encode());
    assertNull(ok.getField(REASON));
    Row bad = one(copy, null, encodeRawString("user_id", bytes(0xff)));
    assertEquals("invalid_utf8", bad.getField(REASON));
  }

  @Test
  void producedTypeIsTheEventFieldsThenTheExtraColumns() {
    RowTypeInfo type = (RowTypeInfo) new EventDeserializer(EVENT_AVSC).getProducedType();
    List<String> names = Arrays.asList(type.getFieldNames());
    List<String> expected = new ArrayList<>();
    EVENT.getFields().forEach(f -> expected.add(f.name()));
    expected.addAll(Arrays.asList(EventDeserializer.EXTRA_NAMES));
    assertEquals(expected, names);
  }
}
