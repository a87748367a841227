package dev.profileengine.glue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.Decoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.util.Utf8;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * Decodes and validates one Kafka record of user-events in the JVM. Never throws on bad input:
 * every record becomes one row = the event's fields + provenance + (for a rejected record) a
 * machine-readable reason and the untouched bytes, so that {@link SplitInvalid} can route it to
 * the dead-letter topic. Validation rules are read from the x-* attributes of user_event.avsc;
 * every string must also be valid UTF-8 (reason invalid_utf8), which Avro itself does not check.
 *
 * <p>Two value formats: plain Avro binary of user_event.avsc (the default), or the Confluent wire
 * format (see {@link ConfluentReaders}), whose writer schema is resolved from a schema registry and
 * read into user_event.avsc by Avro's schema resolution (reasons bad_magic_byte, unknown_schema_id,
 * schema_incompatible). A registry that cannot answer makes deserialize throw: Flink restarts the
 * task from the last checkpoint instead of dead-lettering events that may be valid.
 */
public class EventDeserializer implements KafkaRecordDeserializationSchema<Row> {
  private static final long serialVersionUID = 1L;

  /** Extra columns after the event's own fields. */
  public static final String[] EXTRA_NAMES = {
    "dlq_reason", "dlq_detail", "source_topic", "source_partition", "source_offset",
    "source_timestamp", "raw_key", "raw_value"
  };

  static final TypeInformation<?>[] EXTRA_TYPES = {
    Types.STRING, Types.STRING, Types.STRING, Types.INT, Types.LONG, Types.LONG,
    Types.PRIMITIVE_ARRAY(Types.BYTE), Types.PRIMITIVE_ARRAY(Types.BYTE)
  };

  private final String schemaJson;
  /** null: plain Avro; else the Confluent wire format. */
  private final ConfluentReaders confluent;
  private transient Schema schema;
  private transient GenericDatumReader<GenericRecord> reader;
  private transient BinaryDecoder decoder;
  private transient Set<String> eventTypes;
  private transient int maxStringLength;

  public EventDeserializer(String schemaJson) {
    this(schemaJson, null);
  }

  private EventDeserializer(String schemaJson, ConfluentReaders confluent) {
    this.schemaJson = schemaJson;
    this.confluent = confluent;
    init();
  }

  /** Values in the Confluent wire format, writer schemas from the registry API at {@code registryUrl}. */
  public static EventDeserializer confluent(String schemaJson, String registryUrl, int timeoutMs) {
    return new EventDeserializer(schemaJson, new ConfluentReaders(new SchemaRegistryClient(registryUrl, timeoutMs)));
  }

  static EventDeserializer confluent(String schemaJson, SchemaRegistryClient client) {
    return new EventDeserializer(schemaJson, new ConfluentReaders(client));
  }

  /** A reader of {@code writer}'s records as {@code reader} records, strings always as Utf8. */
  static GenericDatumReader<GenericRecord> newReader(Schema writer, Schema reader) {
    return new GenericDatumReader<>(writer, reader) {
      // Always Utf8, whatever avro.java.string says: a String is decoded with replacement
      // characters and would hide the bytes that the UTF-8 check below needs.
      @Override
      protected Object readString(Object old, Schema expected, Decoder in) throws IOException {
        return in.readString(old instanceof Utf8 ? (Utf8) old : null);
      }
    };
  }

  private void init() {
    schema = AvroRows.parse(schemaJson);
    reader = newReader(schema, schema);
    eventTypes = new HashSet<>();
    for (String prop : new String[] {"x-event-types", "x-control-types"}) {
      Object types = schema.getObjectProp(prop);
      if (types instanceof List) {
        for (Object t : (List<?>) types) {
          eventTypes.add(String.valueOf(t));
        }
      }
    }
    Object maxLen = schema.getObjectProp("x-max-string-length");
    maxStringLength = maxLen instanceof Number ? ((Number) maxLen).intValue() : Integer.MAX_VALUE;
  }

  public static RowTypeInfo producedRowType(Schema schema) {
    return AvroRows.rowType(schema, EXTRA_NAMES, EXTRA_TYPES);
  }

  @Override
  public TypeInformation<Row> getProducedType() {
    if (schema == null) {
      init();
    }
    return producedRowType(schema);
  }

  @Override
  public void deserialize(ConsumerRecord<byte[], byte[]> rec, Collector<Row> out) throws IOException {
    if (schema == null) {
      init();
    }
    List<Schema.Field> fields = schema.getFields();
    int n = fields.size();
    Row row = new Row(n + EXTRA_NAMES.length);
    row.setField(n + 2, rec.topic());
    row.setField(n + 3, rec.partition());
    row.setField(n + 4, rec.offset());
    row.setField(n + 5, rec.timestamp());

    String[] problem = decodeAndValidate(rec.value(), row, fields);
    if (problem != null) {
      for (int i = 0; i < n; i++) {
        row.setField(i, null);
      }
      row.setField(n, problem[0]);
      row.setField(n + 1, problem[1]);
      row.setField(n + 6, rec.key());
      row.setField(n + 7, rec.value());
    }
    out.collect(row);
  }

  /**
   * Fills the event fields of row; returns {reason, detail} or null when the record is valid. Throws
   * IOException only when the schema registry cannot answer (Confluent wire format).
   */
  private String[] decodeAndValidate(byte[] value, Row row, List<Schema.Field> fields) throws IOException {
    if (value == null || value.length == 0) {
      return new String[] {"empty_record", "record value is null or empty"};
    }
    GenericDatumReader<GenericRecord> datumReader = reader;
    int start = 0;
    if (confluent != null) {
      String[] bad = ConfluentReaders.checkHeader(value);
      if (bad != null) {
        return bad;
      }
      ConfluentReaders.Resolution r = confluent.resolve(ConfluentReaders.schemaId(value), schema,
              // the reader's own schema (the usual case) needs no resolution step per field
              writer -> writer.equals(schema) ? reader : newReader(writer, schema));
      if (r.reader() == null) {
        return new String[] {r.reason(), r.detail()};
      }
      datumReader = r.reader();
      start = ConfluentReaders.HEADER;
    }
    GenericRecord rec;
    try {
      decoder = DecoderFactory.get().binaryDecoder(value, start, value.length - start, decoder);
      rec = datumReader.read(null, decoder);
      if (!decoder.isEnd()) {
        return new String[] {"trailing_bytes", "bytes left after a complete UserEvent; wrong schema?"};
      }
    } catch (Exception | StackOverflowError | OutOfMemoryError e) {
      // Garbage can claim huge lengths: Avro then fails with EOF, a negative size or OOM.
      return new String[] {"avro_decode_error", String.valueOf(e)};
    }
    for (Schema.Field f : fields) {
      Object v = rec.get(f.pos());
      Schema type = AvroRows.nonNull(f.schema());
      if (v == null) {
        if (!AvroRows.isOptional(f.schema())) {
          return new String[] {"missing_field", f.name() + " is null"};
        }
        row.setField(f.pos(), null);
        continue;
      }
      switch (type.getType()) {
        case STRING:
          String s = v.toString();
          // The lenient decode above replaces every malformed sequence with U+FFFD, so only a
          // string containing U+FFFD needs the strict check (it may also be a genuine U+FFFD).
          // indexOf is free for Latin-1 strings, which cannot hold U+FFFD at all.
          if (s.indexOf('\uFFFD') >= 0) {
            Utf8 u = (Utf8) v; // always a Utf8: see the reader in init()
            int at = firstMalformedUtf8(u.getBytes(), u.getByteLength());
            if (at >= 0) {
              return new String[] {"invalid_utf8", f.name() + " is not valid UTF-8: malformed byte sequence"
                  + " at byte " + at + " of " + u.getByteLength()};
            }
          }
          if (s.isBlank()) {
            return new String[] {"empty_field", f.name() + " is empty"};
          }
          if (s.length() > maxStringLength) {
            return new String[] {"field_too_long", f.name() + " has " + s.length() + " chars > " + maxStringLength};
          }
          row.setField(f.pos(), s);
          break;
        case DOUBLE:
        case FLOAT:
        case INT:
        case LONG:
          double d = ((Number) v).doubleValue();
          String bad = checkRange(f, d);
          if (bad != null) {
            return new String[] {"invalid_" + f.name(), bad};
          }
          row.setField(f.pos(), v);
          break;
        default:
          row.setField(f.pos(), v);
      }
    }
    String eventType = (String) row.getField(schema.getField("event_type").pos());
    if (!eventTypes.isEmpty() && !eventTypes.contains(eventType)) {
      return new String[] {"unknown_event_type", "event_type '" + eventType + "' not in " + eventTypes};
    }
    return null;
  }

  /** Offset of the first malformed UTF-8 sequence in bytes[0, length), or -1 when all is valid. */
  static int firstMalformedUtf8(byte[] bytes, int length) {
    // JDK's strict decoder: rejects overlong forms, encoded surrogates and code points > U+10FFFF.
    CharsetDecoder strict = StandardCharsets.UTF_8.newDecoder()
        .onMalformedInput(CodingErrorAction.REPORT)
        .onUnmappableCharacter(CodingErrorAction.REPORT);
    ByteBuffer in = ByteBuffer.wrap(bytes, 0, length);
    CharBuffer out = CharBuffer.allocate(length); // UTF-8 never yields more UTF-16 units than bytes
    CoderResult r = strict.decode(in, out, true);
    if (!r.isError()) {
      r = strict.flush(out);
    }
    return r.isError() ? in.position() : -1;
  }

  private static String checkRange(Schema.Field f, double d) {
    if (Double.isNaN(d) || Double.isInfinite(d)) {
      return f.name() + " is not finite";
    }
    Object min = f.getObjectProp("x-min");
    Object max = f.getObjectProp("x-max");
    if (min instanceof Number && d < ((Number) min).doubleValue()) {
      return f.name() + "=" + d + " below minimum " + min;
    }
    if (max instanceof Number && d > ((Number) max).doubleValue()) {
      return f.name() + "=" + d + " above maximum " + max;
    }
    Object future = f.getObjectProp("x-max-future-ms");
    if (future instanceof Number && d > System.currentTimeMillis() + ((Number) future).doubleValue()) {
      return f.name() + "=" + (long) d + " is more than " + future + " ms in the future";
    }
    return null;
  }
}
