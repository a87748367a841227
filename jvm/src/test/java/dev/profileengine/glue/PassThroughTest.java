package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.functions.util.ListCollector;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

class PassThroughTest {
  private static String schema(String name) throws Exception {
    return Files.readString(Paths.get("../schemas", name));
  }

  @Test
  void everyEventOfABatchBecomesOnePredictionShapedRowThatEncodes() throws Exception {
    String event = schema("user_event.avsc");
    String prediction = schema("prediction.avsc");
    PassThrough fn = new PassThrough(event, prediction);
    // the MicroBatcher's payload: events as arrays in user_event.avsc order
    String payload = "[[\"e1\",\"u1\",\"pv\",\"i1\",\"c1\",null,null,1511544070000,null,\"taobao\"],"
        + "[\"e2\",\"u2\",\"buy\",\"i2\",\"c2\",9.5,2,1511544071000,\"s\",null]]";
    List<Row> out = new ArrayList<>();
    fn.flatMap(Row.of("r0", Row.of(payload)), new ListCollector<>(out));
    fn.flatMap(Row.of("r0", Row.of(MicroBatcher.commitMarker(7))), new ListCollector<>(out));

    assertEquals(2, out.size());
    Row first = out.get(0);
    assertEquals(PassThrough.outputType(prediction).getArity(), first.getArity());
    assertEquals("u1", first.getField(0));
    assertEquals("e1", first.getField(1));
    assertEquals("pv", first.getField(2));
    assertEquals(1511544070000L, first.getField(3));
    assertEquals("e2", out.get(1).getField(1));
    assertArrayEquals(new Double[0], (Double[]) first.getField(12));
    AvroRowSerializer ser = new AvroRowSerializer(prediction);
    assertTrue(ser.serialize(first).length > 0);
  }
}
