package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.List;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.runtime.state.KeyedStateBackend;
import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.runtime.state.VoidNamespaceSerializer;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.operators.KeyedProcessOperator;
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
}
