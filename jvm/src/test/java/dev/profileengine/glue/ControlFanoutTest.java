package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** One copy of each control record per profile subtask, in order, and no event-time hold-back. */
class ControlFanoutTest {
  private static final int MAX_PAR = 128;

  private static OneInputStreamOperatorTestHarness<Row, Row> harness(int parallelism) throws Exception {
    var h = new OneInputStreamOperatorTestHarness<>(new ControlFanout(parallelism, MAX_PAR), MAX_PAR, 1, 0);
    h.open();
    return h;
  }

  private static List<Row> records(OneInputStreamOperatorTestHarness<Row, Row> h) {
    List<Row> out = new ArrayList<>();
    for (Object o : h.getOutput()) {
      if (o instanceof StreamRecord) {
        out.add((Row) ((StreamRecord<?>) o).getValue());
      }
    }
    return out;
  }

  @Test
  void everyRecordReachesEverySubtaskInOrder() throws Exception {
    for (int p : new int[] {1, 2, 4, 7}) {
      try (var h = harness(p)) {
        h.processElement(new StreamRecord<>(Row.of("{\"model\":\"a\"}")));
        h.processElement(new StreamRecord<>(Row.of("{\"model\":\"b\"}")));
        List<Row> out = records(h);
        assertEquals(2 * p, out.size());
        String[] keys = UserKeys.routeKeys(MAX_PAR, p);
        Set<Integer> subtasks = new HashSet<>();
        for (int i = 0; i < p; i++) {
          Row first = out.get(i);
          Row second = out.get(p + i);
          assertEquals(keys[i], first.getField(0));
          assertEquals("{\"model\":\"a\"}", ((Row) first.getField(1)).getField(0));
          assertEquals("{\"model\":\"b\"}", ((Row) second.getField(1)).getField(0));
          subtasks.add(UserKeys.subtaskOf(keys[i], MAX_PAR, p));
        }
        assertEquals(p, subtasks.size(), "one copy per subtask, none twice");
      }
    }
  }

  @Test
  void emitsTheFinalWatermarkAndDropsIncomingOnes() throws Exception {
    try (var h = harness(2)) {
      h.processWatermark(new Watermark(42));
      List<Watermark> marks = new ArrayList<>();
      for (Object o : h.getOutput()) {
        if (o instanceof Watermark) {
          marks.add((Watermark) o);
        }
      }
      assertEquals(List.of(new Watermark(Long.MAX_VALUE)), marks);
    }
  }

  @Test
  void refusesWhatIsNotAJsonObject() throws Exception {
    try (var h = harness(1)) {
      assertThrows(IllegalArgumentException.class, () -> h.processElement(new StreamRecord<>(Row.of("[1]"))));
      assertTrue(records(h).isEmpty());
    }
    assertThrows(IllegalArgumentException.class, () -> new ControlFanout(4, 2));
  }
}
