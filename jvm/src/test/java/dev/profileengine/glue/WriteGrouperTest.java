package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class WriteGrouperTest {
  private final List<List<String>> sent = new ArrayList<>();

  private WriteGrouper<String> grouper(int maxRows, int maxBytes) {
    return new WriteGrouper<>(maxRows, maxBytes, g -> sent.add(List.copyOf(g)));
  }

  @Test
  void sendsAGroupWhenItReachesMaxRows() throws Exception {
    WriteGrouper<String> g = grouper(3, 1_000);
    g.add("a", "a1", 10);
    g.add("b", "b1", 10);
    g.add("a", "a2", 10);
    assertEquals(List.of(), sent);
    g.add("a", "a3", 10);
    assertEquals(List.of(List.of("a1", "a2", "a3")), sent);
    assertEquals(1, g.pendingRows());
  }

  @Test
  void neverExceedsMaxBytes() throws Exception {
    WriteGrouper<String> g = grouper(100, 100);
    g.add("a", "a1", 60);
    g.add("a", "a2", 60); // would make 120: a1 leaves alone first
    assertEquals(List.of(List.of("a1")), sent);
    g.add("a", "a3", 40); // exactly 100: full
    assertEquals(List.of(List.of("a1"), List.of("a2", "a3")), sent);
    g.add("b", "big", 500); // bigger than the bound on its own: sent alone, at once
    assertEquals(List.of("big"), sent.get(2));
    assertEquals(0, g.pendingRows());
  }

  @Test
  void drainSendsEveryGroupOldestFirstAndKeepsOrderWithinAGroup() throws Exception {
    WriteGrouper<String> g = grouper(10, 1_000);
    g.add("b", "b1", 1);
    g.add("a", "a1", 1);
    g.add("b", "b2", 1);
    g.drain();
    assertEquals(List.of(List.of("b1", "b2"), List.of("a1")), sent);
    assertEquals(0, g.pendingRows());
    g.drain();
    assertEquals(2, sent.size());
  }

  @Test
  void refusesEmptyBounds() {
    assertThrows(IllegalArgumentException.class, () -> grouper(0, 10));
    assertThrows(IllegalArgumentException.class, () -> grouper(10, 0));
  }

  @Test
  void groupingModesParseAndRejectUnknownValues() {
    assertEquals(WriteRouting.Grouping.REPLICA_SET, WriteRouting.Grouping.parse("replica_set"));
    assertEquals(WriteRouting.Grouping.NONE, WriteRouting.Grouping.parse(" NONE "));
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> WriteRouting.Grouping.parse("replica-set"));
    assertEquals("grouping must be replica_set, partition or none, got 'replica-set'", e.getMessage());
  }
}
