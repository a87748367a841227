package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** The batcher in Flink's operator test harness: when it flushes, what it emits, where it routes. */
class MicroBatcherTest {
  private static final int MAX_PAR = 128;

  private static OneInputStreamOperatorTestHarness<Row, Row> harness(int maxEvents, int parallelism)
      throws Exception {
    OneInputStreamOperatorTestHarness<Row, Row> h =
        new OneInputStreamOperatorTestHarness<>(new MicroBatcher(maxEvents, 100), MAX_PAR, parallelism, 0);
    h.open();
    return h;
  }

  /** A validated event as SplitInvalid emits it: (user_id, event fields of user_event.avsc). */
  private static Row event(String user, String id) {
    Row ev = Row.of(id, user, "view", "item-1", "cat-1", null, null, 1_511_568_000_000L, null, "shop");
    return Row.of(user, ev);
  }

  private static List<Object> output(OneInputStreamOperatorTestHarness<Row, Row> h) {
    List<Object> out = new ArrayList<>(h.getOutput());
    h.getOutput().clear();
    return out;
  }

  private static String payload(Object record) {
    Row row = (Row) ((StreamRecord<?>) record).getValue();
    return (String) ((Row) row.getField(1)).getField(0);
  }

  private static String key(Object record) {
    return (String) ((Row) ((StreamRecord<?>) record).getValue()).getField(0);
  }

  private static boolean isMarker(Object record) {
    return record instanceof StreamRecord && payload(record).startsWith("{\"checkpoint\":");
  }

  @Test
  void flushesWhenABatchIsFull() throws Exception {
    try (var h = harness(3, 1)) {
      h.processElement(new StreamRecord<>(event("u1", "e1")));
      h.processElement(new StreamRecord<>(event("u2", "e2")));
      assertTrue(output(h).isEmpty(), "nothing before the batch is full");
      h.processElement(new StreamRecord<>(event("u1", "e3")));
      List<Object> out = output(h);
      assertEquals(1, out.size());
      String p = payload(out.get(0));
      assertTrue(p.startsWith("[[\"e1\",\"u1\",\"view\"") && p.contains("\"e2\"") && p.contains("\"e3\""), p);
      assertEquals(UserKeys.routeKeys(MAX_PAR, 1)[0], key(out.get(0)));
    }
  }

  @Test
  void flushesAfterTheDelay() throws Exception {
    try (var h = harness(500, 1)) {
      h.setProcessingTime(1_000);
      h.processElement(new StreamRecord<>(event("u1", "e1")));
      h.setProcessingTime(1_099);
      assertTrue(output(h).isEmpty());
      h.setProcessingTime(1_100);
      List<Object> out = output(h);
      assertEquals(1, out.size());
      assertTrue(payload(out.get(0)).contains("\"e1\""));
    }
  }

  @Test
  void flushesAndSendsCommitMarkersBeforeEveryBarrier() throws Exception {
    try (var h = harness(500, 1)) {
      h.processElement(new StreamRecord<>(event("u1", "e1")));
      h.prepareSnapshotPreBarrier(7L);
      List<Object> out = output(h);
      assertEquals(2, out.size(), out.toString());
      assertTrue(payload(out.get(0)).contains("\"e1\""), "the batch first");
      assertEquals(MicroBatcher.commitMarker(7L), payload(out.get(1)), "then the marker");
      // nothing is held across the barrier: the snapshot needs no state of this operator
      h.prepareSnapshotPreBarrier(8L);
      assertEquals(List.of(MicroBatcher.commitMarker(8L)), output(h).stream().map(MicroBatcherTest::payload).toList());
    }
  }

  @Test
  void flushesAtEndOfInput() throws Exception {
    try (var h = harness(500, 1)) {
      h.processElement(new StreamRecord<>(event("u1", "e1")));
      h.endInput();
      List<Object> out = output(h);
      assertTrue(payload(out.get(0)).contains("\"e1\""), out.toString());
      assertTrue(isMarker(out.get(out.size() - 1)), "pending profiles are committed at the end too");
    }
  }

  @Test
  void neverForwardsAWatermarkAheadOfEventsItHolds() throws Exception {
    try (var h = harness(500, 1)) {
      h.processElement(new StreamRecord<>(event("u1", "e1"), 5L));
      h.processWatermark(new Watermark(10L));
      List<Object> out = output(h);
      assertEquals(2, out.size(), out.toString());
      assertInstanceOf(StreamRecord.class, out.get(0), "the held event leaves before the watermark");
      assertEquals(new Watermark(10L), out.get(1));
    }
  }

  @Test
  void routesEveryUserToTheSubtaskOwningItsKeyGroup() throws Exception {
    int parallelism = 4;
    String[] routes = UserKeys.routeKeys(MAX_PAR, parallelism);
    Set<String> distinct = new HashSet<>(List.of(routes));
    assertEquals(parallelism, distinct.size(), "one route key per subtask");
    for (int i = 0; i < parallelism; i++) {
      assertEquals(i, UserKeys.subtaskOf(routes[i], MAX_PAR, parallelism), "route key of subtask " + i);
    }
    try (var h = harness(1, parallelism)) { // a batch per event: each record is one user's
      for (int u = 0; u < 200; u++) {
        h.processElement(new StreamRecord<>(event("user-" + u, "e" + u)));
      }
      for (Object record : output(h)) {
        String user = payload(record).split("\"")[3]; // [["id","user",...
        int group = KeyGroupRangeAssignment.assignToKeyGroup(UserKeys.keyOf(user), MAX_PAR);
        int owner = KeyGroupRangeAssignment.computeOperatorIndexForKeyGroup(MAX_PAR, parallelism, group);
        assertEquals(routes[owner], key(record), "user " + user);
      }
    }
  }

  @Test
  void aUsersKeyGroupIsTheOneFlinkAssignsToTheKeyedStreamsKey() {
    // PyFlink's KeyByKeySelector wraps field 0 in a one-field Row: the same key as UserKeys.keyOf
    Row asKeyed = new Row(1);
    asKeyed.setField(0, "user-42");
    assertEquals(asKeyed, UserKeys.keyOf("user-42"));
    assertEquals(KeyGroupRangeAssignment.assignToKeyGroup(asKeyed, MAX_PAR), UserKeys.keyGroupOf("user-42", MAX_PAR));
  }

  @Test
  void refusesAParallelismAboveTheKeyGroups() {
    assertThrows(IllegalArgumentException.class, () -> UserKeys.routeKeys(MAX_PAR, MAX_PAR + 1));
    assertThrows(IllegalArgumentException.class, () -> new MicroBatcher(0, 100));
  }
}
