package dev.profileengine.glue;

import static dev.profileengine.glue.EventDeserializerTest.DETAIL;
import static dev.profileengine.glue.EventDeserializerTest.EVENT;
import static dev.profileengine.glue.EventDeserializerTest.EVENT_AVSC;
import static dev.profileengine.glue.EventDeserializerTest.N;
import static dev.profileengine.glue.EventDeserializerTest.RAW_VALUE;
import static dev.profileengine.glue.EventDeserializerTest.REASON;
import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.avro.JsonProperties;
import org.apache.avro.Schema;
import org.apache.flink.types.Row;
import org.apache.flink.util.InstantiationUtil;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The Confluent wire format against a registry that answers like Confluent's and Apicurio's ccompat
 * API (JDK HttpServer on loopback): evolution, incompatible writers, unknown ids, bad framing and a
 * registry outage. tests/integration/test_schema_registry.py runs the same against the real registry.
 */
class ConfluentWireFormatTest {
  static final String BASE = "/apis/ccompat/v7";
  HttpServer server;
  /** id -> body of GET /schemas/ids/{id}; absent ids answer 404 with error_code 40403 */
  final Map<Integer, String> schemas = new ConcurrentHashMap<>();
  final AtomicInteger requests = new AtomicInteger();
  volatile int failWith; // 0: answer normally; else this HTTP status for every request
  /** bodies POSTed to /subjects/{subject}/versions, by subject */
  final Map<String, String> registered = new ConcurrentHashMap<>();

  @BeforeEach
  void start() throws IOException {
    server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
    server.createContext(BASE + "/schemas/ids/", ex -> {
      requests.incrementAndGet();
      String id = ex.getRequestURI().getPath().substring((BASE + "/schemas/ids/").length());
      String body = schemas.get((int) Long.parseLong(id)); // ids are unsigned on the wire
      int status = failWith != 0 ? failWith : body == null ? 404 : 200;
      if (failWith == 0 && body == null) {
        body = "{\"error_code\":40403,\"message\":\"Schema " + id + " not found\"}";
      } else if (failWith != 0) {
        body = "{\"error_code\":50001,\"message\":\"storage unavailable\"}";
      }
      byte[] bytes = body.getBytes(UTF_8);
      ex.sendResponseHeaders(status, bytes.length);
      try (OutputStream out = ex.getResponseBody()) {
        out.write(bytes);
      }
    });
    server.createContext(BASE + "/subjects/", ex -> {
      requests.incrementAndGet();
      String subject = ex.getRequestURI().getPath().split("/")[5];
      registered.put(subject, new String(ex.getRequestBody().readAllBytes(), UTF_8));
      byte[] body = (failWith == 0 ? "{\"id\":42}" : "{\"error_code\":409,\"message\":\"incompatible\"}")
          .getBytes(UTF_8);
      ex.sendResponseHeaders(failWith == 0 ? 200 : failWith, body.length);
      try (OutputStream out = ex.getResponseBody()) {
        out.write(body);
      }
    });
    server.start();
  }

  @AfterEach
  void stop() {
    server.stop(0);
  }

  String url() {
    return "http://127.0.0.1:" + server.getAddress().getPort() + BASE;
  }

  void register(int id, Schema writer) {
    schemas.put(id, "{\"schema\":" + quote(writer.toString()) + "}");
  }

  static String quote(String s) {
    StringBuilder sb = new StringBuilder();
    Json.string(sb, s);
    return sb.toString();
  }

  EventDeserializer deserializer() {
    return EventDeserializer.confluent(EVENT_AVSC, new SchemaRegistryClient(url(), 2000, 1));
  }

  static byte[] framed(int id, byte[] avro) {
    return ByteBuffer.allocate(5 + avro.length).put((byte) 0).putInt(id).put(avro).array();
  }

  static Row one(EventDeserializer d, byte[] value) throws Exception {
    return EventDeserializerTest.one(d, "k".getBytes(UTF_8), value);
  }

  /** user_event.avsc plus an optional field with a default: a compatible evolution (v2). */
  static Schema v2() {
    List<Schema.Field> fields = new ArrayList<>();
    for (Schema.Field f : EVENT.getFields()) {
      fields.add(new Schema.Field(f, f.schema()));
      if (f.name().equals("category_id")) { // in the middle: resolution goes by name, not position
        fields.add(new Schema.Field("coupon", Schema.createUnion(Schema.create(Schema.Type.NULL),
            Schema.create(Schema.Type.STRING)), "added in v2", JsonProperties.NULL_VALUE));
      }
    }
    return Schema.createRecord(EVENT.getName(), null, EVENT.getNamespace(), false, fields);
  }

  /** user_event.avsc with one field's type replaced: an incompatible evolution. */
  static Schema retyped(String field, Schema type) {
    List<Schema.Field> fields = new ArrayList<>();
    for (Schema.Field f : EVENT.getFields()) {
      fields.add(f.name().equals(field) ? new Schema.Field(f.name(), type) : new Schema.Field(f, f.schema()));
    }
    return Schema.createRecord(EVENT.getName(), null, EVENT.getNamespace(), false, fields);
  }

  @Test
  void sameSchemaDecodesToTheSameRowAsPlainAvro() throws Exception {
    register(7, EVENT);
    byte[] avro = EventDeserializerTest.encode("event_id", "e-1", "event_type", "purchase", "price", 9.5,
        "quantity", 2);
    Row viaRegistry = one(deserializer(), framed(7, avro));
    Row plain = EventDeserializerTest.one(avro);
    assertNull(viaRegistry.getField(REASON), String.valueOf(viaRegistry.getField(DETAIL)));
    for (int i = 0; i < N; i++) {
      assertEquals(plain.getField(i), viaRegistry.getField(i), EVENT.getFields().get(i).name());
    }
  }

  @Test
  void writerWithAnAddedOptionalFieldStillDecodes() throws Exception {
    Map<String, Object> e = EventDeserializerTest.event("event_id", "e-2", "item_id", "i-9");
    e.put("coupon", "SPRING");
    Row row = one(deserializer(), framed(8, register8(e)));
    assertNull(row.getField(REASON), String.valueOf(row.getField(DETAIL)));
    assertEquals("e-2", row.getField(EVENT.getField("event_id").pos()));
    assertEquals("i-9", row.getField(EVENT.getField("item_id").pos()));
    assertEquals("c1", row.getField(EVENT.getField("category_id").pos()));
    assertEquals("test", row.getField(EVENT.getField("shop_id").pos()));
  }

  private byte[] register8(Map<String, Object> e) {
    register(8, v2());
    return TestSchemas.encode(v2(), e);
  }

  @Test
  void evolvedRecordsAreStillValidated() throws Exception {
    Map<String, Object> e = EventDeserializerTest.event("event_type", "click");
    Row row = one(deserializer(), framed(8, register8(e)));
    assertEquals("unknown_event_type", row.getField(REASON));
  }

  @Test
  void writerMissingARequiredFieldIsIncompatibleAndNamesIt() throws Exception {
    Schema old = EventDeserializerTest.writerSchema(null, "item_id");
    register(9, old);
    byte[] value = framed(9, TestSchemas.encode(old, EventDeserializerTest.withoutKeys(
        EventDeserializerTest.event(), "item_id")));
    Row row = one(deserializer(), value);
    assertEquals("schema_incompatible", row.getField(REASON));
    String detail = (String) row.getField(DETAIL);
    assertTrue(detail.contains("schema id 9") && detail.contains("item_id: required"), detail);
    assertArrayEquals(value, (byte[]) row.getField(RAW_VALUE));
  }

  @Test
  void writerChangingAFieldTypeIsIncompatibleAndNamesIt() throws Exception {
    Schema stringPrice = retyped("price", Schema.createUnion(Schema.create(Schema.Type.NULL),
        Schema.create(Schema.Type.STRING)));
    register(10, stringPrice);
    Map<String, Object> e = EventDeserializerTest.event();
    e.put("price", "12.50");
    Row row = one(deserializer(), framed(10, TestSchemas.encode(stringPrice, e)));
    assertEquals("schema_incompatible", row.getField(REASON));
    assertTrue(((String) row.getField(DETAIL)).contains("price: "), (String) row.getField(DETAIL));
  }

  @Test
  void nonAvroAndUnparsableWriterSchemasAreIncompatible() throws Exception {
    schemas.put(11, "{\"schemaType\":\"PROTOBUF\",\"schema\":\"syntax = \\\"proto3\\\";\"}");
    schemas.put(12, "{\"schema\":\"{\\\"type\\\":\\\"nonsense\\\"}\"}");
    EventDeserializer d = deserializer();
    Row proto = one(d, framed(11, new byte[] {2, 'x'}));
    assertEquals("schema_incompatible", proto.getField(REASON));
    assertTrue(((String) proto.getField(DETAIL)).contains("PROTOBUF"));
    assertEquals("schema_incompatible", one(d, framed(12, new byte[] {2, 'x'})).getField(REASON));
  }

  @Test
  void unknownIdIsDeadLetteredAndItsAnswerCached() throws Exception {
    EventDeserializer d = deserializer();
    byte[] value = framed(404, EventDeserializerTest.encode());
    Row row = one(d, value);
    assertEquals("unknown_schema_id", row.getField(REASON));
    assertTrue(((String) row.getField(DETAIL)).contains("schema id 404"));
    one(d, value);
    assertEquals(1, requests.get(), "an unknown id is asked once per minute, not once per record");
  }

  @Test
  void schemaIdsAreReadUnsignedBigEndian() throws Exception {
    register(0x01020304, EVENT);
    byte[] value = framed(0x01020304, EventDeserializerTest.encode());
    assertNull(one(deserializer(), value).getField(REASON));
    assertEquals("unknown_schema_id", one(deserializer(), framed(-1, EventDeserializerTest.encode()))
        .getField(REASON));
    assertEquals(0x01020304, ConfluentReaders.schemaId(value));
  }

  @Test
  void wrongMagicByteOrShortHeaderIsDeadLettered() throws Exception {
    EventDeserializer d = deserializer();
    byte[] plainAvro = EventDeserializerTest.encode(); // a producer without the Confluent serializer
    Row row = one(d, plainAvro);
    assertEquals("bad_magic_byte", row.getField(REASON));
    assertTrue(((String) row.getField(DETAIL)).contains("first byte is " + (plainAvro[0] & 0xff)));
    assertEquals("bad_magic_byte", one(d, new byte[] {0, 0, 1}).getField(REASON));
    assertEquals("empty_record", one(d, new byte[0]).getField(REASON));
    assertEquals(0, requests.get(), "framing errors need no registry");
  }

  @Test
  void truncatedOrPaddedPayloadsAreCaughtAfterTheHeader() throws Exception {
    register(7, EVENT);
    byte[] avro = EventDeserializerTest.encode();
    EventDeserializer d = deserializer();
    assertEquals("avro_decode_error", one(d, framed(7, java.util.Arrays.copyOf(avro, avro.length / 2)))
        .getField(REASON));
    assertEquals("trailing_bytes", one(d, framed(7, EventDeserializerTest.concat(avro, new byte[] {1, 2})))
        .getField(REASON));
  }

  @Test
  void eachIdIsFetchedOnce() throws Exception {
    register(7, EVENT);
    register(8, v2());
    EventDeserializer d = deserializer();
    for (int i = 0; i < 50; i++) {
      one(d, framed(7, EventDeserializerTest.encode("event_id", "a-" + i)));
      one(d, framed(8, TestSchemas.encode(v2(), EventDeserializerTest.event("event_id", "b-" + i))));
    }
    assertEquals(2, requests.get());
  }

  @Test
  void resolutionCacheIsBounded() throws Exception {
    ConfluentReaders readers = new ConfluentReaders(new SchemaRegistryClient(url(), 2000, 1));
    for (int id = 0; id < ConfluentReaders.MAX_CACHED + 20; id++) {
      readers.resolve(id, EVENT, w -> EventDeserializer.newReader(w, EVENT));
    }
    assertEquals(ConfluentReaders.MAX_CACHED, readers.cachedIds());
  }

  @Test
  void registryErrorFailsTheRecordInsteadOfDeadLetteringIt() throws Exception {
    register(7, EVENT);
    failWith = 503;
    EventDeserializer d = deserializer();
    byte[] value = framed(7, EventDeserializerTest.encode());
    IOException e = assertThrows(IOException.class, () -> EventDeserializerTest.deserialize(d, null, value));
    assertTrue(e.getMessage().contains("HTTP 503") && e.getMessage().contains("3 tries"), e.getMessage());
    assertEquals(SchemaRegistryClient.TRIES, requests.get());
    failWith = 0; // the registry is back: the same record now decodes (Flink's restart replays it)
    assertNull(one(d, value).getField(REASON));
  }

  @Test
  void a404WithoutTheRegistryErrorCodeIsAnOutageNotAnUnknownId() throws Exception {
    // a wrong URL path answers 404 for every id: dead-lettering would drop every valid event
    EventDeserializer d = EventDeserializer.confluent(EVENT_AVSC,
        new SchemaRegistryClient("http://127.0.0.1:" + server.getAddress().getPort() + "/wrong", 2000, 1));
    IOException e = assertThrows(IOException.class,
        () -> EventDeserializerTest.deserialize(d, null, framed(7, EventDeserializerTest.encode())));
    assertTrue(e.getMessage().contains("HTTP 404"), e.getMessage());
  }

  @Test
  void unreachableRegistryFailsWithinTheTimeouts() throws Exception {
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort(); // closed again: connections are refused
    }
    EventDeserializer d = EventDeserializer.confluent(EVENT_AVSC,
        new SchemaRegistryClient("http://127.0.0.1:" + port + BASE, 500, 1));
    IOException e = assertThrows(IOException.class,
        () -> EventDeserializerTest.deserialize(d, null, framed(7, EventDeserializerTest.encode())));
    assertTrue(e.getMessage().contains("did not answer"), e.getMessage());
  }

  @Test
  void predictionsAreWrittenInTheWireFormatWithTheRegisteredId() throws Exception {
    String avsc = AvroRowSerializerTest.PREDICTION_AVSC;
    AvroRowSerializer framed = InstantiationUtil.clone(
        new AvroRowSerializer(avsc, new SchemaRegistryClient(url(), 2000, 1), "user-predictions-value"));
    framed.open(null);
    AvroRowSerializer plain = new AvroRowSerializer(avsc);
    plain.open(null);
    Row row = AvroRowSerializerTest.prediction(new Double[] {0.5});
    byte[] bytes = framed.serialize(row);
    assertEquals(0, bytes[0]);
    assertEquals(42, ConfluentReaders.schemaId(bytes));
    assertArrayEquals(plain.serialize(row), java.util.Arrays.copyOfRange(bytes, 5, bytes.length));
    String body = registered.get("user-predictions-value");
    assertTrue(body != null && body.contains("\"schema\"") && body.contains("Prediction"), body);
    assertEquals(1, requests.get(), "registered once, when the sink opens");
  }

  @Test
  void aRefusedRegistrationFailsTheSinkAtOnce() {
    failWith = 409;
    AvroRowSerializer framed = new AvroRowSerializer(AvroRowSerializerTest.PREDICTION_AVSC,
        new SchemaRegistryClient(url(), 2000, 1), "user-predictions-value");
    Exception e = assertThrows(java.io.UncheckedIOException.class, () -> framed.open(null));
    assertTrue(e.getCause().getMessage().contains("HTTP 409"), e.getCause().getMessage());
    assertEquals(1, requests.get(), "a refusal is an answer: not retried");
  }

  @Test
  void survivesJavaSerialization() throws Exception {
    register(8, v2());
    EventDeserializer copy = InstantiationUtil.clone(deserializer());
    Row row = one(copy, framed(8, TestSchemas.encode(v2(), EventDeserializerTest.event())));
    assertNull(row.getField(REASON), String.valueOf(row.getField(DETAIL)));
  }
}
