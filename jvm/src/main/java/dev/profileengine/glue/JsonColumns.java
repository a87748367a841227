package dev.profileengine.glue;

import com.datastax.oss.driver.api.core.type.DataType;
import com.datastax.oss.driver.api.core.type.DataTypes;
import com.datastax.oss.driver.api.core.type.ListType;
import com.datastax.oss.driver.api.core.type.MapType;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * Turns the JSON payload of a write request into the Java values the driver's default codecs
 * take for each column's CQL type (text: String, bigint: Long, int: Integer, double: Double,
 * boolean: Boolean, list&lt;double&gt;: List&lt;Double&gt;, map&lt;text,double&gt;: Map).
 *
 * <p>Strict on purpose: the payload is produced by our own Python operator, so an unknown column,
 * a fractional bigint or a string where a number belongs is a bug there, and writing a guess would
 * corrupt the profile silently. JSON null and a missing column both bind null. NaN and Infinity
 * (what Python's json.dumps writes for them) are accepted for doubles.
 */
final class JsonColumns {
  // the fast double parser: a profile payload is mostly doubles, and the JDK's parse dominated
  private static final ObjectMapper JSON = JsonMapper.builder()
      .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
      .enable(StreamReadFeature.USE_FAST_DOUBLE_PARSER)
      .build();

  private final List<String> columns;
  private final Map<String, Integer> index = new HashMap<>();
  private final List<Function<JsonNode, Object>> converters = new ArrayList<>();

  /** @param columns column names, the partition key user_id first; types: their CQL types */
  JsonColumns(List<String> columns, List<DataType> types) {
    if (columns.size() != types.size() || columns.isEmpty() || !"user_id".equals(columns.get(0))) {
      throw new IllegalArgumentException("need user_id first and one type per column: " + columns + " " + types);
    }
    this.columns = List.copyOf(columns);
    for (int i = 0; i < columns.size(); i++) {
      index.put(columns.get(i), i);
      converters.add(converter(columns.get(i), types.get(i)));
    }
  }

  List<String> columns() {
    return columns;
  }

  /** Values of every column in column order; user_id comes from the row, not from the payload. */
  Object[] values(String userId, String payload) {
    return values(userId, parse(payload));
  }

  /** The payload as a JSON tree (an object for one row, an array for a bundle of profile rows). */
  static JsonNode parse(String payload) {
    try {
      return JSON.readTree(payload == null ? "" : payload);
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException("payload is not valid JSON: " + e.getOriginalMessage());
    }
  }

  /** Values of every column from an already parsed JSON object. */
  Object[] values(String userId, JsonNode root) {
    if (root == null || !root.isObject()) {
      throw new IllegalArgumentException("payload must be a JSON object of column -> value");
    }
    Object[] out = new Object[columns.size()];
    out[0] = userId;
    Iterator<Map.Entry<String, JsonNode>> fields = root.fields();
    while (fields.hasNext()) {
      Map.Entry<String, JsonNode> f = fields.next();
      Integer i = index.get(f.getKey());
      if (i == null) {
        throw new IllegalArgumentException("payload has column '" + f.getKey() + "' not in " + columns);
      }
      Object v = converters.get(i).apply(f.getValue());
      if (i == 0) {
        if (!userId.equals(v)) {
          throw new IllegalArgumentException("payload user_id differs from the row's user_id");
        }
        continue;
      }
      out[i] = v;
    }
    return out;
  }

  private static Function<JsonNode, Object> converter(String column, DataType type) {
    Function<JsonNode, Object> scalar = scalar(column, type);
    if (scalar != null) {
      return nullable(scalar);
    }
    if (type instanceof ListType) {
      Function<JsonNode, Object> element = scalar(column, ((ListType) type).getElementType());
      if (element != null) {
        return nullable(node -> list(column, node, element));
      }
    } else if (type instanceof MapType) {
      MapType map = (MapType) type;
      Function<JsonNode, Object> value = scalar(column, map.getValueType());
      if (DataTypes.TEXT.equals(map.getKeyType()) && value != null) {
        return nullable(node -> map(column, node, value));
      }
    }
    // failing when the writer opens beats failing on the first row that carries the column
    throw new IllegalArgumentException("column '" + column + "' has CQL type " + type.asCql(true, true)
        + ", which the sink cannot bind from JSON");
  }

  private static Function<JsonNode, Object> nullable(Function<JsonNode, Object> f) {
    return node -> node == null || node.isNull() ? null : f.apply(node);
  }

  private static Function<JsonNode, Object> scalar(String column, DataType type) {
    if (DataTypes.TEXT.equals(type) || DataTypes.ASCII.equals(type)) {
      return node -> {
        expect(node.isTextual(), column, type, node);
        return node.textValue();
      };
    }
    if (DataTypes.BIGINT.equals(type)) {
      return node -> integral(column, type, node, Long.MIN_VALUE, Long.MAX_VALUE);
    }
    if (DataTypes.INT.equals(type)) {
      return node -> (int) integral(column, type, node, Integer.MIN_VALUE, Integer.MAX_VALUE);
    }
    if (DataTypes.DOUBLE.equals(type)) {
      return node -> {
        expect(node.isNumber(), column, type, node);
        return node.doubleValue();
      };
    }
    if (DataTypes.BOOLEAN.equals(type)) {
      return node -> {
        expect(node.isBoolean(), column, type, node);
        return node.booleanValue();
      };
    }
    return null;
  }

  /** An integer, or a float with an integral value (Python may hand over 3.0 for a count). */
  private static long integral(String column, DataType type, JsonNode node, long min, long max) {
    expect(node.isNumber(), column, type, node);
    if (node.isIntegralNumber()) {
      expect(node.canConvertToLong() && node.longValue() >= min && node.longValue() <= max, column, type, node);
      return node.longValue();
    }
    double d = node.doubleValue();
    // 2^63 is exactly representable and already out of range, hence the strict upper bound
    expect(d == Math.rint(d) && d >= min && d < 0x1p63 && d <= max, column, type, node);
    return (long) d;
  }

  private static Object list(String column, JsonNode node, Function<JsonNode, Object> element) {
    if (!node.isArray()) {
      throw mismatch(column, "a JSON array", node);
    }
    List<Object> out = new ArrayList<>(node.size());
    for (JsonNode e : node) {
      if (e.isNull()) {
        throw mismatch(column, "no null element (Cassandra collections cannot hold null)", e);
      }
      out.add(element.apply(e));
    }
    return Collections.unmodifiableList(out);
  }

  private static Object map(String column, JsonNode node, Function<JsonNode, Object> value) {
    if (!node.isObject()) {
      throw mismatch(column, "a JSON object", node);
    }
    Map<String, Object> out = new LinkedHashMap<>();
    Iterator<Map.Entry<String, JsonNode>> it = node.fields();
    while (it.hasNext()) {
      Map.Entry<String, JsonNode> e = it.next();
      if (e.getValue().isNull()) {
        throw mismatch(column, "no null value (Cassandra collections cannot hold null)", e.getValue());
      }
      out.put(e.getKey(), value.apply(e.getValue()));
    }
    return Collections.unmodifiableMap(out);
  }

  private static void expect(boolean ok, String column, DataType type, JsonNode node) {
    if (!ok) {
      throw mismatch(column, "a " + type.asCql(false, true) + " value", node);
    }
  }

  private static IllegalArgumentException mismatch(String column, String expected, JsonNode node) {
    String shown = node.toString();
    if (shown.length() > 60) {
      shown = shown.substring(0, 60) + "...";
    }
    return new IllegalArgumentException("column '" + column + "': expected " + expected + ", got " + shown);
  }
}
