package dev.profileengine.glue;

import java.util.List;
import java.util.stream.Stream;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.runtime.state.CheckpointableKeyedStateBackend;
import org.apache.flink.runtime.state.KeyGroupRange;
import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
import org.apache.flink.runtime.state.KeyedStateBackend;
import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.types.Row;

/**
 * Reads and writes one keyed ValueState under many users' keys in one call from Python.
 *
 * <p>The profile operator is keyed by a route key but keeps one state entry per USER (see {@link
 * UserKeys}). Switching the backend's current key from Python took five pemja calls per user, and
 * with the value call it was the largest single cost on the Python thread (py-spy: a fifth of it
 * at the checkpoint flush). One call per batch or per flush does the switching here, in Java.
 *
 * <p>Refuses a user whose key group this subtask does not own: an entry written there would be
 * missing from this subtask's snapshots.
 */
public final class KeyedStateAccess {
  private KeyedStateBackend<Object> backend;
  private ValueState<Object> state;
  private int maxParallelism;
  private KeyGroupRange owned;

  /**
   * For Python: pemja reaches only Flink's own classpath by name, so the operator loads this class
   * from the job's class loader and calls Class.newInstance() (no arguments to convert), then
   * {@link #bind}.
   */
  public KeyedStateAccess() {}

  /** The operator's Java keyed state backend and ValueState; returns this. */
  @SuppressWarnings("unchecked")
  public KeyedStateAccess bind(Object backend, Object state, int maxParallelism) {
    if (!(backend instanceof CheckpointableKeyedStateBackend)) {
      throw new IllegalArgumentException("not a keyed state backend with key groups: " + backend);
    }
    this.backend = (KeyedStateBackend<Object>) backend;
    this.state = (ValueState<Object>) state;
    this.maxParallelism = maxParallelism;
    this.owned = ((CheckpointableKeyedStateBackend<?>) backend).getKeyGroupRange();
    return this;
  }

  public static KeyedStateAccess of(Object backend, Object state, int maxParallelism) {
    return new KeyedStateAccess().bind(backend, state, maxParallelism);
  }

  /** The value of every user (null where none), in order. */
  public Object[] getAll(Object users) throws Exception {
    Object[] us = array(users);
    Object[] out = new Object[us.length];
    for (int i = 0; i < us.length; i++) {
      switchTo((String) us[i]);
      out[i] = state.value();
    }
    return out;
  }

  /** Writes values[i] under users[i]. */
  public void putAll(Object users, Object values) throws Exception {
    Object[] us = array(users);
    Object[] vs = array(values);
    if (us.length != vs.length) {
      throw new IllegalArgumentException(us.length + " users but " + vs.length + " values");
    }
    for (int i = 0; i < us.length; i++) {
      switchTo((String) us[i]);
      state.update(vs[i]);
    }
  }

  /**
   * The keys (field 0 of the key Row) that have an entry in the named state on this subtask: after
   * a restore, the operator learns what it holds (the popularity stage re-sends those tops).
   */
  public Object[] keys(String stateName) {
    try (Stream<Object> keys = backend.getKeys(stateName, VoidNamespace.INSTANCE)) {
      return keys.map(k -> ((Row) k).getField(0)).toArray();
    }
  }

  public void clear(String user) {
    switchTo(user);
    state.clear();
  }

  private void switchTo(String user) {
    Row key = UserKeys.keyOf(user);
    int group = KeyGroupRangeAssignment.assignToKeyGroup(key, maxParallelism);
    if (!owned.contains(group)) {
      throw new IllegalStateException("user '" + user + "' (key group " + group + ") reached a subtask owning "
          + owned + ": the micro-batcher and the profile operator must share (max) parallelism");
    }
    backend.setCurrentKey(key);
  }

  /** pemja hands a Python list over as a java.util.List or an Object[], depending on the call. */
  private static Object[] array(Object values) {
    if (values instanceof Object[]) {
      return (Object[]) values;
    }
    if (values instanceof List) {
      return ((List<?>) values).toArray();
    }
    throw new IllegalArgumentException("expected a list, got " + (values == null ? "null" : values.getClass()));
  }
}
