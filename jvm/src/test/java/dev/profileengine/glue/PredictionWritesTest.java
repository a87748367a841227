package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

class PredictionWritesTest {
  private static final List<String> FIELDS = List.of("user_id", "event_time", "event_id", "score", "features", "extra");

  @Test
  void writesTheTableColumnsWithEventTimeInMicros() {
    PredictionWrites w = new PredictionWrites(FIELDS, List.of("user_id", "event_time", "event_id", "score", "features"));
    Row out = w.map(Row.of("u\"1", 1_700_000_000_123L, "e-1", 0.25, new Double[] {1.0, 2.5}, "ignored"));
    assertEquals("prediction", out.getField(0));
    assertEquals("u\"1", out.getField(1));
    assertEquals(1_700_000_000_123_000L, out.getField(2));
    assertEquals("{\"user_id\":\"u\\\"1\",\"event_time\":1700000000123,\"event_id\":\"e-1\",\"score\":0.25,"
        + "\"features\":[1.0,2.5]}", out.getField(3));
  }

  @Test
  void theJsonBindsThroughTheSinksColumnReader() {
    PredictionWrites w = new PredictionWrites(FIELDS, List.of("user_id", "score", "features"));
    String payload = (String) w.map(Row.of("u", 1L, "e", null, new Double[0], "x")).getField(3);
    Object[] values = new JsonColumns(List.of("user_id", "score", "features"),
        List.of(com.datastax.oss.driver.api.core.type.DataTypes.TEXT,
            com.datastax.oss.driver.api.core.type.DataTypes.DOUBLE,
            com.datastax.oss.driver.api.core.type.DataTypes.listOf(
                com.datastax.oss.driver.api.core.type.DataTypes.DOUBLE))).values("u", payload);
    assertEquals("u", values[0]);
    assertEquals(null, values[1]);
    assertEquals(List.of(), values[2]);
  }

  @Test
  void refusesColumnsThatAreNotFields() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> new PredictionWrites(FIELDS, List.of("user_id", "segment")));
    assertTrue(e.getMessage().contains("[segment]"), e.getMessage());
  }
}
