package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.List;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.runtime.state.KeyedStateBackend;
import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.runtime.state.VoidNamespaceSerializer;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.operators.KeyedProcessOperator;
import org.apache.flink.streaming.util.AbstractStreamOperatorTestHarness;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.junit.jupiter.api.Test;

class KeyedStateAccessTest {
  private static final int MAX_PARALLELISM = 128;

  private static final class Noop extends KeyedProcessFunction<Row, Row, Row> {
    @Override
    public void processElement(Row value, Context ctx, Collector<Row> out) {}
  }

  /** Subtask {@code subtask} of {@code parallelism}, keyed by Row(user) as the profile operator. */
  private static KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness(int parallelism, int subtask)
      throws Exception {
    KeySelector<Row, Row> key = r -> UserKeys.keyOf((String) r.getField(0));
    KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h = new KeyedOneInputStreamOperatorTestHarness<>(
        new KeyedProcessOperator<>(new Noop()), key, new RowTypeInfo(Types.STRING), MAX_PARALLELISM,
        parallelism, subtask);
    h.open();
    return h;
  }

  private static KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> restored(
      OperatorSubtaskState state, int parallelism, int subtask) throws Exception {
    KeySelector<Row, Row> key = r -> UserKeys.keyOf((String) r.getField(0));
    KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h = new KeyedOneInputStreamOperatorTestHarness<>(
        new KeyedProcessOperator<>(new Noop()), key, new RowTypeInfo(Types.STRING), MAX_PARALLELISM,
        parallelism, subtask);
    h.initializeState(state);
    h.open();
    return h;
  }

  private static KeyedStateAccess access(KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h) throws Exception {
    KeyedStateBackend<Object> backend = h.getOperator().getKeyedStateBackend();
    ValueState<String> state = backend.getPartitionedState(VoidNamespace.INSTANCE, VoidNamespaceSerializer.INSTANCE,
        new ValueStateDescriptor<>("profile", Types.STRING));
    return KeyedStateAccess.of(backend, state, MAX_PARALLELISM);
  }

  @Test
  void listsTheKeysThatHaveAnEntry() throws Exception {
    try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h = harness(1, 0)) {
      KeyedStateAccess a = access(h);
      a.putAll(List.of("c1", "c2", "*"), List.of("w1", "w2", "wg"));
      a.clear("c2");
      Object[] keys = a.keys("profile");
      Arrays.sort(keys);
      assertArrayEquals(new Object[] {"*", "c1"}, keys);
    }
  }

  @Test
  void readsAndWritesManyUsersPerCallEachUnderItsOwnKey() throws Exception {
    try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h = harness(1, 0)) {
      KeyedStateAccess a = access(h);
      a.putAll(List.of("u1", "u2", "u3"), new Object[] {"p1", "p2", "p3"});
      a.putAll(new Object[] {"u2"}, List.of("p2b"));
      assertArrayEquals(new Object[] {"p3", null, "p2b", "p1"}, a.getAll(List.of("u3", "nobody", "u2", "u1")));
      a.clear("u1");
      assertArrayEquals(new Object[] {null, "p3"}, a.getAll(new Object[] {"u1", "u3"}));
      assertThrows(IllegalArgumentException.class, () -> a.putAll(List.of("u1"), List.of()));
    }
  }

  @Test
  void refusesAUserOfAKeyGroupThisSubtaskDoesNotOwn() throws Exception {
    try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h = harness(2, 0)) {
      KeyedStateAccess a = access(h);
      String foreign = Arrays.stream(new String[] {"a", "b", "c", "d", "e", "f", "g", "h"})
          .filter(u -> UserKeys.subtaskOf(u, MAX_PARALLELISM, 2) == 1).findFirst().orElseThrow();
      IllegalStateException e = assertThrows(IllegalStateException.class, () -> a.putAll(List.of(foreign), List.of("x")));
      assertTrue(e.getMessage().contains("must share (max) parallelism"), e.getMessage());
    }
  }

  @Test
  void keyGroupsArePinnedForThePythonCopy() {
    // tests/integration/keygroups.py derives a user's subtask in Python; these values pin both
    assertEquals(20, UserKeys.keyGroupOf("u1", MAX_PARALLELISM));
    assertEquals(36, UserKeys.keyGroupOf("r0", MAX_PARALLELISM));
    assertEquals(69, UserKeys.keyGroupOf("r1", MAX_PARALLELISM));
    assertEquals(25, UserKeys.keyGroupOf("1000001", MAX_PARALLELISM));
    assertEquals(121, UserKeys.keyGroupOf("\u00e9\u2603", MAX_PARALLELISM));
    assertEquals(2, UserKeys.subtaskOf("\u00e9\u2603", MAX_PARALLELISM, 3));
  }

  @Test
  void groupKeysHitEachKeyGroupOfTheRangeOnce() {
    String[] keys = UserKeys.groupKeys("kg-", MAX_PARALLELISM, 0, MAX_PARALLELISM - 1);
    for (int g = 0; g < MAX_PARALLELISM; g++) {
      assertEquals(g, UserKeys.keyGroupOf(keys[g], MAX_PARALLELISM));
    }
    String[] part = UserKeys.groupKeys("kg-", MAX_PARALLELISM, 64, 127);
    assertArrayEquals(Arrays.copyOfRange(keys, 64, 128), part, "the same key for a group whatever the range");
    assertThrows(IllegalArgumentException.class, () -> UserKeys.groupKeys("kg-", MAX_PARALLELISM, 0, MAX_PARALLELISM));
  }

  @Test
  void aPerGroupValueIsFoundAfterRescalingAndCopiesMustAgree() throws Exception {
    OperatorSubtaskState[] snaps = new OperatorSubtaskState[2];
    for (int subtask = 0; subtask < 2; subtask++) {
      try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h = harness(2, subtask)) {
        KeyedStateAccess a = access(h);
        assertNull(a.getAnyGroup());
        a.putAllGroups("v1");
        a.putAllGroups("v2"); // the latest write wins
        assertEquals("v2", a.getAnyGroup());
        snaps[subtask] = h.snapshot(1, 1);
      }
    }
    OperatorSubtaskState all = AbstractStreamOperatorTestHarness.repackageState(snaps);
    for (int p : new int[] {1, 3, 5}) {
      for (int subtask = 0; subtask < p; subtask++) {
        OperatorSubtaskState mine = AbstractStreamOperatorTestHarness.repartitionOperatorState(
            all, MAX_PARALLELISM, 2, p, subtask);
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h = restored(mine, p, subtask)) {
          assertEquals("v2", access(h).getAnyGroup(), "parallelism " + p + ", subtask " + subtask);
        }
      }
    }
    try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h = harness(1, 0)) {
      KeyedStateAccess a = access(h);
      a.putAllGroups("v1");
      a.putAll(List.of(UserKeys.groupKeys("kg-", MAX_PARALLELISM, 5, 5)[0]), List.of("other"));
      assertThrows(IllegalStateException.class, a::getAnyGroup);
      a.clear(UserKeys.groupKeys("kg-", MAX_PARALLELISM, 5, 5)[0]);
      assertThrows(IllegalStateException.class, a::getAnyGroup, "a missing copy is refused too");
    }
  }
}
