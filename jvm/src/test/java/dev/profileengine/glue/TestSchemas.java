package dev.profileengine.glue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;

/** The repository's schemas/ (the job's single source of truth) and Avro encoding for tests. */
final class TestSchemas {
  private TestSchemas() {}

  /** Surefire runs in jvm/, so schemas/ is one level up. */
  private static final Path DIR = Path.of("..", "schemas");

  static String text(String file) {
    try {
      return Files.readString(DIR.resolve(file));
    } catch (IOException e) {
      throw new UncheckedIOException("tests read the schemas from " + DIR.toAbsolutePath(), e);
    }
  }

  static Schema schema(String file) {
    return AvroRows.parse(text(file));
  }

  /** Avro binary of a record given as field name -> value; absent fields are null. */
  static byte[] encode(Schema schema, Map<String, ?> fields) {
    GenericData.Record rec = new GenericData.Record(schema);
    fields.forEach(rec::put);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    BinaryEncoder enc = EncoderFactory.get().binaryEncoder(out, null);
    try {
      new GenericDatumWriter<GenericRecord>(schema).write(rec, enc);
      enc.flush();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return out.toByteArray();
  }
}
