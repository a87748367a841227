package dev.profileengine.glue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.List;
import org.apache.avro.Schema;
import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The benchmark's JVM-only floor (bench/floor_job.py): stands where the Python profile operator
 * stands, after the same MicroBatcher and keyBy, and emits one prediction-shaped row per event of
 * each batch, so that decode -> validate -> batch -> shuffle -> parse -> Avro encode -> Kafka is
 * measured with no Python, no state and no model in it.
 *
 * <p>Input: Row(route key, Row(payload)) as the MicroBatcher emits it; commit markers are dropped.
 * Output fields that the event has (user_id, event_id, event_type, event_time) are copied by name;
 * the others get placeholders (score 0, empty strings, no features, scored_at = now), so a record
 * has about the size of a real prediction. Not used by the job.
 */
public class PassThrough implements FlatMapFunction<Row, Row> {
  private static final long serialVersionUID = 1L;
  private final String eventSchemaJson;
  private final String outputSchemaJson;
  private transient ObjectMapper json;
  private transient int[] source; // output field -> event field index, -1 = placeholder
  private transient Schema.Type[] types;

  public PassThrough(String eventSchemaJson, String outputSchemaJson) {
    this.eventSchemaJson = eventSchemaJson;
    this.outputSchemaJson = outputSchemaJson;
    init(); // fail at job build time on a schema it cannot fill
  }

  /** Row type of the output: the rows of the output schema (prediction.avsc). */
  public static RowTypeInfo outputType(String outputSchemaJson) {
    return AvroRows.rowType(AvroRows.parse(outputSchemaJson));
  }

  private void init() {
    Schema event = AvroRows.parse(eventSchemaJson);
    List<Schema.Field> out = AvroRows.parse(outputSchemaJson).getFields();
    source = new int[out.size()];
    types = new Schema.Type[out.size()];
    for (Schema.Field f : out) {
      Schema.Field from = event.getField(f.name());
      source[f.pos()] = from == null ? -1 : from.pos();
      types[f.pos()] = AvroRows.nonNull(f.schema()).getType();
      placeholder(types[f.pos()]); // throws on a type it has no value for
    }
    json = new ObjectMapper();
  }

  @Override
  public void flatMap(Row batch, Collector<Row> out) throws Exception {
    if (json == null) {
      init();
    }
    String payload = (String) ((Row) batch.getField(1)).getField(0);
    if (payload.startsWith("{")) {
      return; // commit marker: nothing pending here
    }
    for (JsonNode event : json.readTree(payload)) {
      Row row = new Row(types.length);
      for (int i = 0; i < types.length; i++) {
        row.setField(i, source[i] < 0 ? placeholder(types[i]) : AvroRows.fromJson(types[i], event.get(source[i])));
      }
      out.collect(row);
    }
  }

  private static Object placeholder(Schema.Type type) {
    switch (type) {
      case STRING:
        return "";
      case DOUBLE:
        return 0.0;
      case INT:
        return 0;
      case LONG:
        return System.currentTimeMillis();
      case ARRAY:
        return new Double[0];
      case BOOLEAN:
        return false;
      default:
        throw new IllegalArgumentException("no placeholder for Avro type " + type);
    }
  }
}
