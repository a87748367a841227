package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import org.apache.flink.api.common.functions.util.ListCollector;
import org.apache.flink.types.Row;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.junit.jupiter.api.Test;

/** Each models-topic record becomes one control payload; bytes survive, tombstones stay null. */
class ControlRecordDeserializerTest {
  private static List<Row> run(byte[] key, byte[] value, long offset) throws Exception {
    List<Row> out = new ArrayList<>();
    new ControlRecordDeserializer("model").deserialize(new ConsumerRecord<>("models", 0, offset, key, value),
        new ListCollector<>(out));
    return out;
  }

  @Test
  void valueIsBase64AndKeyIsText() throws Exception {
    byte[] value = new byte[256];
    for (int i = 0; i < value.length; i++) {
      value[i] = (byte) i; // every byte value, including ones that are not UTF-8
    }
    List<Row> out = run("active".getBytes(StandardCharsets.UTF_8), value, 42);
    assertEquals(1, out.size());
    String expected = "{\"model\":{\"key\":\"active\",\"value\":\""
        + Base64.getEncoder().encodeToString(value) + "\",\"offset\":42}}";
    assertEquals(expected, out.get(0).getField(0));
  }

  @Test
  void tombstoneAndMissingKeyAreNull() throws Exception {
    assertEquals("{\"model\":{\"key\":\"shadow\",\"value\":null,\"offset\":7}}",
        run("shadow".getBytes(StandardCharsets.UTF_8), null, 7).get(0).getField(0));
    assertEquals("{\"model\":{\"key\":null,\"value\":\"AQ==\",\"offset\":0}}",
        run(null, new byte[] {1}, 0).get(0).getField(0));
  }

  @Test
  void keyIsEscapedAsJson() {
    assertEquals("{\"model\":{\"key\":\"a\\\"b\\n\",\"value\":null,\"offset\":1}}",
        ControlRecordDeserializer.payload("model", "a\"b\n".getBytes(StandardCharsets.UTF_8), null, 1));
    assertThrows(IllegalArgumentException.class, () -> new ControlRecordDeserializer(""));
  }
}
