package dev.profileengine.glue;

import java.io.IOException;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.apache.avro.Schema;
import org.apache.avro.SchemaCompatibility;
import org.apache.avro.SchemaCompatibility.Incompatibility;
import org.apache.avro.SchemaCompatibility.SchemaPairCompatibility;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;

/**
 * The Confluent wire format of a record value: magic byte 0, the writer schema's id (4 bytes, big
 * endian), then the Avro binary of that schema. Resolves each id once to a datum reader that reads the
 * writer's layout into the reader schema (user_event.avsc), or to the DLQ reason of every record with
 * that id. Resolutions are cached per id (LRU, {@link #MAX_CACHED}); a "no such id" is cached for
 * {@link #UNKNOWN_TTL_MS} only, since a producer may register the schema later. One instance per
 * deserializer, i.e. per source subtask: not thread-safe, and needs no lock there.
 */
final class ConfluentReaders implements Serializable {
  private static final long serialVersionUID = 1L;
  static final byte MAGIC = 0;
  static final int HEADER = 5;
  static final int MAX_CACHED = 1000;
  static final long UNKNOWN_TTL_MS = 60_000;

  /** Either a reader, or the DLQ reason and detail of every record of this writer schema. */
  record Resolution(GenericDatumReader<GenericRecord> reader, String reason, String detail, long expiresAt) {
    static Resolution problem(String reason, String detail, long expiresAt) {
      return new Resolution(null, reason, detail, expiresAt);
    }
  }

  private final SchemaRegistryClient client;
  private transient Map<Integer, Resolution> cache;

  ConfluentReaders(SchemaRegistryClient client) {
    this.client = client;
  }

  /** {reason, detail} when the record has no Confluent header; null when it has one. */
  static String[] checkHeader(byte[] value) {
    if (value.length < HEADER) {
      return new String[] {"bad_magic_byte", "Confluent wire format needs >= 5 header bytes, record has "
          + value.length};
    }
    if (value[0] != MAGIC) {
      return new String[] {"bad_magic_byte", "first byte is " + (value[0] & 0xff) + ", not the Confluent magic byte 0"};
    }
    return null;
  }

  static int schemaId(byte[] value) {
    return ((value[1] & 0xff) << 24) | ((value[2] & 0xff) << 16) | ((value[3] & 0xff) << 8) | (value[4] & 0xff);
  }

  /**
   * The resolution of writer schema {@code id} against {@code readerSchema}; {@code newReader} builds a
   * datum reader for (writer, reader). Throws IOException when the registry cannot answer: the caller
   * fails the task rather than dead-letter records it could not judge.
   */
  Resolution resolve(int id, Schema readerSchema,
      Function<Schema, GenericDatumReader<GenericRecord>> newReader) throws IOException {
    if (cache == null) {
      cache = new LinkedHashMap<>(64, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<Integer, Resolution> eldest) {
          return size() > MAX_CACHED;
        }
      };
    }
    Resolution r = cache.get(id);
    long now = System.currentTimeMillis();
    if (r == null || r.expiresAt() < now) {
      r = lookup(id, readerSchema, newReader, now);
      cache.put(id, r);
    }
    return r;
  }

  int cachedIds() {
    return cache == null ? 0 : cache.size();
  }

  private Resolution lookup(int id, Schema readerSchema,
      Function<Schema, GenericDatumReader<GenericRecord>> newReader, long now) throws IOException {
    String sid = Integer.toUnsignedString(id);
    SchemaRegistryClient.WriterSchema answer = client.fetch(id);
    if (answer == null) {
      return Resolution.problem("unknown_schema_id", "schema id " + sid + " is not in the registry at "
          + client.baseUrl(), now + UNKNOWN_TTL_MS);
    }
    if (!"AVRO".equalsIgnoreCase(answer.type())) {
      return Resolution.problem("schema_incompatible", "schema id " + sid + " is a " + answer.type()
          + " schema, not Avro", Long.MAX_VALUE);
    }
    Schema writer;
    try {
      writer = new Schema.Parser().parse(answer.text());
    } catch (RuntimeException e) {
      return Resolution.problem("schema_incompatible", "schema id " + sid + " does not parse as Avro: "
          + e.getMessage(), Long.MAX_VALUE);
    }
    SchemaPairCompatibility c = SchemaCompatibility.checkReaderWriterCompatibility(readerSchema, writer);
    if (c.getType() != SchemaCompatibility.SchemaCompatibilityType.COMPATIBLE) {
      return Resolution.problem("schema_incompatible", "schema id " + sid + " cannot be read as "
          + readerSchema.getName() + ": " + describe(c, readerSchema), Long.MAX_VALUE);
    }
    return new Resolution(newReader.apply(writer), null, null, Long.MAX_VALUE);
  }

  /** The incompatibilities, each naming the reader field it concerns ("field: what"). */
  static String describe(SchemaPairCompatibility c, Schema readerSchema) {
    List<String> parts = new ArrayList<>();
    for (Incompatibility i : c.getResult().getIncompatibilities()) {
      String field = fieldOf(i.getLocation(), readerSchema);
      String what = switch (i.getType()) {
        case READER_FIELD_MISSING_DEFAULT_VALUE -> "required (no default) but missing from the writer schema";
        default -> i.getType().name().toLowerCase() + " (" + i.getMessage() + ")";
      };
      parts.add((field == null ? i.getLocation() : field) + ": " + what);
    }
    return String.join("; ", parts);
  }

  /** "/fields/3/type/1" -> the name of the reader's field 3; null for another location. */
  static String fieldOf(String location, Schema readerSchema) {
    String[] p = location == null ? new String[0] : location.split("/");
    if (p.length >= 3 && p[1].equals("fields")) {
      try {
        return readerSchema.getFields().get(Integer.parseInt(p[2])).name();
      } catch (RuntimeException e) {
        return null;
      }
    }
    return null;
  }
}
