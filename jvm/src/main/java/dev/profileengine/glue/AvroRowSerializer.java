package dev.profileengine.glue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.types.Row;

/**
 * Row -> Avro binary, by position: row field i is schema field i (both come from one .avsc). Optionally
 * in the Confluent wire format (magic byte 0, 4-byte schema id, Avro), the schema registered under a
 * subject when the sink opens; a registry that refuses or does not answer fails the sink's task.
 */
public class AvroRowSerializer implements SerializationSchema<Row> {
  private static final long serialVersionUID = 1L;
  private final String schemaJson;
  /** null: plain Avro */
  private final SchemaRegistryClient registry;
  private final String subject;
  private transient int schemaId;
  private transient Schema schema;
  private transient GenericDatumWriter<GenericRecord> writer;
  private transient BinaryEncoder encoder;
  private transient ByteArrayOutputStream buffer;

  public AvroRowSerializer(String schemaJson) {
    this(schemaJson, null, null);
  }

  AvroRowSerializer(String schemaJson, SchemaRegistryClient registry, String subject) {
    this.schemaJson = schemaJson;
    this.registry = registry;
    this.subject = subject;
  }

  /** Confluent wire format; the schema registered under {@code subject} (e.g. "topic-value"). */
  public static AvroRowSerializer confluent(String schemaJson, String registryUrl, int timeoutMs, String subject) {
    return new AvroRowSerializer(schemaJson, new SchemaRegistryClient(registryUrl, timeoutMs), subject);
  }

  @Override
  public void open(InitializationContext context) {
    schema = AvroRows.parse(schemaJson);
    writer = new GenericDatumWriter<>(schema);
    buffer = new ByteArrayOutputStream(256);
    if (registry != null) {
      try {
        schemaId = registry.register(subject, schemaJson);
      } catch (IOException e) {
        throw new UncheckedIOException("cannot register " + schema.getFullName() + " as " + subject, e);
      }
    }
  }

  @Override
  public byte[] serialize(Row row) {
    if (schema == null) {
      open(null);
    }
    List<Schema.Field> fields = schema.getFields();
    if (row.getArity() != fields.size()) {
      throw new IllegalArgumentException("row arity " + row.getArity() + " != " + fields.size()
          + " fields of " + schema.getFullName());
    }
    GenericData.Record rec = new GenericData.Record(schema);
    for (Schema.Field f : fields) {
      Object v = row.getField(f.pos());
      if (v instanceof byte[]) {
        v = ByteBuffer.wrap((byte[]) v);
      } else if (v instanceof Object[]) {
        v = Arrays.asList((Object[]) v);
      } else if (v instanceof double[]) {
        v = Arrays.stream((double[]) v).boxed().collect(Collectors.toList());
      }
      rec.put(f.pos(), v);
    }
    buffer.reset();
    if (registry != null) {
      buffer.write(ConfluentReaders.MAGIC);
      buffer.writeBytes(ByteBuffer.allocate(4).putInt(schemaId).array());
    }
    encoder = EncoderFactory.get().binaryEncoder(buffer, encoder);
    try {
      writer.write(rec, encoder);
      encoder.flush();
    } catch (IOException e) {
      throw new IllegalStateException("cannot encode " + schema.getFullName(), e);
    }
    return buffer.toByteArray();
  }
}
