package dev.profileengine.glue;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import org.apache.avro.Schema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;

/** Maps an Avro record schema (from schemas/) onto a Flink named row type. The Python side
 * derives the same row type from the same file; tests compare the two. */
public final class AvroRows {
  private AvroRows() {}

  public static Schema parse(String json) {
    return new Schema.Parser().parse(json);
  }

  /** The non-null branch of an optional union, or the schema itself. */
  public static Schema nonNull(Schema s) {
    if (s.getType() == Schema.Type.UNION) {
      for (Schema branch : s.getTypes()) {
        if (branch.getType() != Schema.Type.NULL) {
          return branch;
        }
      }
    }
    return s;
  }

  public static boolean isOptional(Schema s) {
    return s.getType() == Schema.Type.UNION
        && s.getTypes().stream().anyMatch(b -> b.getType() == Schema.Type.NULL);
  }

  public static TypeInformation<?> flinkType(Schema s) {
    switch (nonNull(s).getType()) {
      case STRING:
      case ENUM:
        return Types.STRING;
      case LONG:
        return Types.LONG;
      case INT:
        return Types.INT;
      case DOUBLE:
        return Types.DOUBLE;
      case FLOAT:
        return Types.FLOAT;
      case BOOLEAN:
        return Types.BOOLEAN;
      case BYTES:
        return Types.PRIMITIVE_ARRAY(Types.BYTE);
      case ARRAY:
        if (nonNull(nonNull(s).getElementType()).getType() == Schema.Type.DOUBLE) {
          return org.apache.flink.api.common.typeinfo.BasicArrayTypeInfo.DOUBLE_ARRAY_TYPE_INFO;
        }
        throw new IllegalArgumentException("only arrays of double are supported: " + s);
      case MAP:
        return Types.MAP(Types.STRING, flinkType(nonNull(s).getValueType()));
      default:
        throw new IllegalArgumentException("unsupported Avro type in row schema: " + s);
    }
  }

  public static RowTypeInfo rowType(Schema record, String... extraStringFields) {
    return rowType(record, extraStringFields, new TypeInformation<?>[0]);
  }

  /** Row type of the record's fields followed by extra columns. */
  public static RowTypeInfo rowType(Schema record, String[] extraNames, TypeInformation<?>[] extraTypes) {
    List<String> names = new ArrayList<>();
    List<TypeInformation<?>> types = new ArrayList<>();
    for (Schema.Field f : record.getFields()) {
      names.add(f.name());
      types.add(flinkType(f.schema()));
    }
    for (int i = 0; i < extraNames.length; i++) {
      names.add(extraNames[i]);
      types.add(i < extraTypes.length ? extraTypes[i] : Types.STRING);
    }
    return new RowTypeInfo(types.toArray(new TypeInformation<?>[0]), names.toArray(new String[0]));
  }

  public static int fieldIndex(Schema record, String name) {
    Schema.Field f = record.getField(name);
    if (f == null) {
      throw new IllegalArgumentException("no field " + name + " in " + record.getFullName());
    }
    return f.pos();
  }

  /**
   * A JSON value as the Java object {@link #flinkType} declares for an Avro field of this type (JSON
   * rows from the micro-batches and the profile operator become typed Flink rows).
   */
  public static Object fromJson(Schema.Type kind, JsonNode v) {
    if (v == null || v.isNull()) {
      return null;
    }
    switch (kind) {
      case STRING:
      case ENUM:
        return v.asText();
      case LONG:
        return v.asLong();
      case INT:
        return v.asInt();
      case DOUBLE:
        return v.asDouble(); // NaN / Infinity arrive as non-numeric tokens, read as numbers
      case FLOAT:
        return (float) v.asDouble();
      case BOOLEAN:
        return v.asBoolean();
      case ARRAY: {
        Double[] out = new Double[v.size()];
        for (int i = 0; i < out.length; i++) {
          out[i] = v.get(i).isNull() ? null : v.get(i).asDouble();
        }
        return out;
      }
      default:
        throw new IllegalArgumentException("no JSON conversion for Avro type " + kind);
    }
  }
}
