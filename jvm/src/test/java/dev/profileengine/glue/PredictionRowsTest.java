package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.functions.util.ListCollector;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** One batch payload in, one typed row per prediction out, with the types the row type declares. */
class PredictionRowsTest {
  private static String avsc() throws Exception {
    return Files.readString(Paths.get("../schemas/prediction.avsc"));
  }

  private static List<Row> split(PredictionRows f, String payload) {
    List<Row> out = new ArrayList<>();
    f.flatMap(Row.of(payload), new ListCollector<>(out));
    return out;
  }

  @Test
  void everyRowGetsTheDeclaredJavaTypes() throws Exception {
    PredictionRows f = new PredictionRows(avsc());
    RowTypeInfo type = PredictionRows.rowType(avsc());
    String payload = "[[\"u1\",\"e1\",\"view\",1511568000000,0.25,\"new\",\"low\",2,\"browsers\",\"m1\",\"s1\","
        + "1700000000000,[0.5,NaN],true,7],"
        + "[\"u2\",\"e2\",\"cart\",1511568000001,0.1,\"active\",\"high\",0,\"buyers\",\"m1\",\"s1\","
        + "1700000000001,[],null,null]]";
    List<Row> rows = split(f, payload);
    assertEquals(2, rows.size());
    Row r = rows.get(0);
    assertEquals(type.getArity(), r.getArity());
    for (int i = 0; i < r.getArity(); i++) {
      assertTrue(type.getTypeAt(i).getTypeClass().isInstance(r.getField(i)),
          type.getFieldNames()[i] + ": " + r.getField(i).getClass() + " is not " + type.getTypeAt(i));
    }
    assertEquals(1511568000000L, r.getField(type.getFieldIndex("event_time")));
    assertEquals(0.25, r.getField(type.getFieldIndex("score")));
    assertEquals(2, r.getField(type.getFieldIndex("segment")));
    Double[] features = (Double[]) r.getField(type.getFieldIndex("features"));
    assertEquals(0.5, features[0]);
    assertTrue(features[1].isNaN());
    assertNull(rows.get(1).getField(type.getFieldIndex("decision")));
    assertArrayEquals(new Double[0], (Double[]) rows.get(1).getField(type.getFieldIndex("features")));
  }

  @Test
  void aMalformedPayloadFailsLoudly() throws Exception {
    PredictionRows f = new PredictionRows(avsc());
    assertThrows(IllegalArgumentException.class, () -> split(f, "{\"not\":\"rows\"}"));
    assertThrows(IllegalArgumentException.class, () -> split(f, "[[\"u1\",\"e1\"]]"));
    assertTrue(split(f, "[]").isEmpty());
  }
}
